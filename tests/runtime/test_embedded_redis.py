"""The embedded Redis of `make run`: a real redis-server on a unix socket that commands find."""

from __future__ import annotations

import redis as redis_lib

from runtime.embedded_redis import EmbeddedRedis, running_url


def test_a_running_embedded_redis_is_found_by_its_data_dir_and_forgotten_once_stopped(tmp_path):
    assert running_url(tmp_path) is None
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    try:
        assert running_url(tmp_path) == url
        assert redis_lib.Redis.from_url(url).ping()
    finally:
        server.stop()
    assert running_url(tmp_path) is None
