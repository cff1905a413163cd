"""The suite's own fixtures run real servers."""


def test_redis_fixture_is_a_real_empty_redis(redis):
    assert redis.ping()
    assert redis.dbsize() == 0
    redis.set("concierge:test:greeting", "hello")
    assert redis.get("concierge:test:greeting") == "hello"


def test_redis_fixture_is_flushed_between_tests(redis):
    assert redis.get("concierge:test:greeting") is None
