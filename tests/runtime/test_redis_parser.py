"""The worker's Redis clients read replies with hiredis (its C parser), not pure Python."""

import re
from pathlib import Path

import pytest
import redis.utils
from redis._parsers import _HiredisParser

from app import create_app
from runtime import wiring
from tests.support.process import poll_until

WORKER_BOOT_S = 30  # a gevent worker importing the app on a busy 2-core machine
REPLY_WAIT_S = 10  # get_message returns as soon as the reply is there; this only bounds a failure


def hiredis_parses_for(client: redis.Redis) -> bool:
    """Tell whether a connection of `client`'s pool parses its replies with hiredis."""
    connection = client.connection_pool.get_connection()
    try:
        return isinstance(connection._parser, _HiredisParser)
    finally:
        client.connection_pool.release(connection)


def test_hiredis_is_installed_at_a_version_redis_py_uses():
    assert redis.utils.HIREDIS_AVAILABLE


def test_the_workers_redis_clients_parse_replies_with_hiredis(minimal_flows_dir, redis_server,
                                                              redis):
    app = create_app({"FLOWS_DIR": minimal_flows_dir, "REDIS_URL": redis_server})
    client = app.extensions[wiring.EXTENSION].redis
    assert hiredis_parses_for(client)
    client.set("greeting", "grüezi")
    assert client.get("greeting") == "grüezi"  # decoded to text through the hiredis reader

    pubsub_client = wiring.pubsub_redis(redis_server)
    subscription = pubsub_client.pubsub()
    subscription.subscribe("doorbell")
    try:
        assert isinstance(subscription.connection._parser, _HiredisParser)
        assert subscription.get_message(timeout=REPLY_WAIT_S)["type"] == "subscribe"
        redis.publish("doorbell", "ring")
        message = subscription.get_message(timeout=REPLY_WAIT_S)
        assert (message["type"], message["data"]) == ("message", "ring")
    finally:
        subscription.close()
        pubsub_client.close()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc (Linux)")
def test_gunicorn_workers_load_hiredis(live_server, minimal_flows_dir):
    url = live_server(flows_dir=minimal_flows_dir)
    workers = set(re.findall(r"Booting worker with pid: (\d+)", live_server.stderr(url)))
    assert workers

    def every_worker_has_hiredis() -> bool:
        return all("hiredis" in Path(f"/proc/{pid}/maps").read_text() for pid in workers)

    assert poll_until(every_worker_has_hiredis, timeout_s=WORKER_BOOT_S)
