"""The suite's own fixtures and harness run real servers."""

import os
from pathlib import Path

from redis import Redis

from tests.support.gunicorn_server import GunicornServer

LEFT_OVER = "concierge:test:left-over"


def test_redis_fixture_is_a_real_redis_server(redis):
    assert redis.ping()
    assert redis.info("server")["executable"].endswith("redis-server")
    redis.set("concierge:test:greeting", "hello")
    assert redis.get("concierge:test:greeting") == "hello"


def test_redis_fixture_empties_what_an_earlier_test_left(redis_server, request):
    # The earlier test is played here, before the fixture is set up, so that this test proves
    # the flush whichever tests ran before it, or none.
    earlier = Redis.from_url(redis_server)
    try:
        earlier.set(LEFT_OVER, "from an earlier test")
    finally:
        earlier.close()

    redis = request.getfixturevalue("redis")

    assert redis.get(LEFT_OVER) is None
    assert redis.dbsize() == 0


def test_a_gunicorn_server_is_ready_with_every_worker_and_stops_with_them(
        tmp_path, redis_server, minimal_flows_dir):
    server = GunicornServer(tmp_path, {"REDIS_URL": redis_server, "WEB_CONCURRENCY": "2",
                                       "FLOWS_DIR": str(minimal_flows_dir)}, own_session=True)
    server.start()
    try:
        workers = server.worker_pids()
        assert len(workers) == 2
        assert os.getpgid(server.process.pid) == server.process.pid  # a session of its own
    finally:
        server.stop()
    assert [pid for pid in workers if Path(f"/proc/{pid}").exists()] == []
