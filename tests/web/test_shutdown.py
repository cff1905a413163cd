"""A gunicorn instance that is told to stop closes its visitor sockets with 1001 (going away)."""

from __future__ import annotations

import signal

import pytest

from tests.support.gunicorn_server import GunicornServer
from tests.support.ws import bot_says

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

GRACEFUL_TIMEOUT_S = 20  # gunicorn.conf.py's graceful_timeout: clients must hear by then
SOCKETS = 4  # over two workers, most likely on both


def test_sigterm_closes_open_visitor_sockets_with_1001_and_they_resume_elsewhere(
        redis, redis_server, server, tmp_path, open_visitor, shipped_flows_dir):
    stopping = GunicornServer(tmp_path, {"REDIS_URL": redis_server,
                                         "FLOWS_DIR": str(shipped_flows_dir)})
    try:
        stopping.start()
        tabs = [open_visitor(stopping.url) for _ in range(SOCKETS)]
        greetings = [tab.hello(None) for tab in tabs]
        tabs[0].talk("opening hours", until=bot_says("anything else"))

        stopping.process.send_signal(signal.SIGTERM)
        codes = [tab.wait_closed(timeout=GRACEFUL_TIMEOUT_S) for tab in tabs]
        assert codes == [1001] * SOCKETS
        assert stopping.process.wait(GRACEFUL_TIMEOUT_S + 5) == 0
    finally:
        stopping.stop()

    # 1001 says: reconnect elsewhere. Another instance has the whole conversation.
    again = open_visitor(server)
    resumed = again.hello(greetings[0].token, last_seq=0)
    assert resumed.errors == []
    assert resumed.messages == tabs[0].messages
    frames = again.talk("shipping", message_id="elsewhere", until=bot_says("anything else"))
    assert frames[0] == {"type": "ack", "id": "elsewhere", "seq": len(tabs[0].messages) + 1}
