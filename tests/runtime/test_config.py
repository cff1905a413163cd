"""Configuration from the environment: defaults, validation and the development secret."""

import stat

import pytest

from runtime.config import (
    ClusterURL,
    Config,
    ConfigError,
    ensure_dev_secret,
    is_cluster_url,
    parse_cluster_url,
    read_dev_secret,
)

PRODUCTION = {
    "CONCIERGE_ENV": "production",
    "SECRET_KEY": "s3cret",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "ALLOWED_ORIGINS": "https://shop.example.com",
}


def problems(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Config.from_env(environ)
    return caught.value.problems


def test_empty_environment_gives_development_defaults():
    config = Config.from_env({})
    assert config.env == "development"
    assert config.port == 5000
    assert config.redis_url is None
    assert config.secret_key is None
    assert config.allowed_origins == ()
    assert str(config.flows_dir) == "flows"
    assert config.default_flow == "default"
    assert str(config.queues_file) == "queues.yaml"
    assert config.web_concurrency >= 1
    assert config.redis_prefix == "concierge:"
    assert config.log_level == "INFO"
    assert config.self_url == "http://127.0.0.1:5000"
    assert config.flow_secrets == {}


def test_empty_values_count_as_unset():
    assert Config.from_env({"PORT": "", "LOG_LEVEL": "  "}) == Config.from_env({})


@pytest.mark.parametrize("value", ["abc", "0", "-1", "65536", "50.5"])
def test_bad_port_is_refused(value):
    [problem] = problems({"PORT": value})
    assert problem.startswith(f"PORT={value!r}")


@pytest.mark.parametrize("value", ["0", "two"])
def test_bad_web_concurrency_is_refused(value):
    [problem] = problems({"WEB_CONCURRENCY": value})
    assert problem.startswith("WEB_CONCURRENCY=")


def test_acks_wait_for_replicas_only_when_asked_and_within_bounds():
    assert Config.from_env({}).redis_wait_replicas == 0
    waiting = Config.from_env({"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_MS": "250"})
    assert (waiting.redis_wait_replicas, waiting.redis_wait_ms) == (1, 250)
    assert problems({"REDIS_WAIT_REPLICAS": "-1"}) == [
        "REDIS_WAIT_REPLICAS='-1' must be between 0 and 16"]
    assert problems({"REDIS_WAIT_MS": "0"}) == ["REDIS_WAIT_MS='0' must be between 1 and 10000"]


def test_self_url_follows_port():
    assert Config.from_env({"PORT": "8080"}).self_url == "http://127.0.0.1:8080"
    assert Config.from_env({"SELF_URL": "https://chat.example.com/"}).self_url == (
        "https://chat.example.com"
    )
    assert problems({"SELF_URL": "chat.example.com"}) == [
        "SELF_URL='chat.example.com' must be an http:// or https:// URL with a host"
    ]


def test_enumerations_are_case_insensitive_and_checked():
    config = Config.from_env({"CONCIERGE_ENV": "Development", "LOG_LEVEL": "debug"})
    assert (config.env, config.log_level) == ("development", "DEBUG")
    assert problems({"CONCIERGE_ENV": "staging", "LOG_LEVEL": "loud"}) == [
        "CONCIERGE_ENV='staging' must be one of: development, production",
        "LOG_LEVEL='loud' must be one of: DEBUG, INFO, WARNING, ERROR, CRITICAL",
    ]


def test_production_requires_secret_key_redis_and_origins():
    assert problems({"CONCIERGE_ENV": "production"}) == [
        "SECRET_KEY is required when CONCIERGE_ENV=production",
        "REDIS_URL is required when CONCIERGE_ENV=production",
        "ALLOWED_ORIGINS is required when CONCIERGE_ENV=production",
    ]
    assert Config.from_env(PRODUCTION).production


def test_bad_redis_url_is_refused_without_echoing_its_password():
    [problem] = problems({"REDIS_URL": "http://:hunter2@redis.internal"})
    assert "REDIS_URL must start with" in problem
    assert "hunter2" not in problem


@pytest.mark.parametrize("url", [
    "redis+cluster://redis-1.internal:7000",
    "redis+cluster://:s3cret@redis-1.internal:7000,redis-2.internal:7001/",
    "rediss+cluster://app:s3cret@10.0.0.1:7000,[fd00::2]:7000/0",
])
def test_a_cluster_url_is_accepted(url):
    config = Config.from_env({"REDIS_URL": url})
    assert config.redis_url == url and is_cluster_url(config.redis_url)


def test_a_cluster_url_is_read_as_the_limits_library_reads_it():
    assert parse_cluster_url("rediss+cluster://app:p%40ss@10.0.0.1:7000,[fd00::2]:7001/") == \
        ClusterURL(nodes=(("10.0.0.1", 7000), ("fd00::2", 7001)), tls=True, username="app",
                   password="p@ss")
    assert parse_cluster_url("redis+cluster://:s3cret@redis-1.internal:7000") == ClusterURL(
        nodes=(("redis-1.internal", 7000),), password="s3cret")
    assert not is_cluster_url("redis://redis.internal:6379/0")
    assert not is_cluster_url(None)


@pytest.mark.parametrize(("url", "says"), [
    ("redis+cluster://:hunter2@r1:7000/2", "a Redis Cluster has only database 0: drop the /2"),
    ("redis+cluster://:hunter2@r1", "a cluster node is host:port, with a port from 1 to 65535 "
     "(got 'r1')"),
    ("redis+cluster://:hunter2@r1:7000,r2", "(got 'r2')"),
    ("redis+cluster://:hunter2@r1:7000,r2:seven", "(got 'r2:seven')"),
    ("redis+cluster://:hunter2@r1:70000", "(got 'r1:70000')"),
    ("redis+cluster://:hunter2@r1:7000,,r2:7000", "no empty one between commas"),
    ("redis+cluster://", "names at least one node"),
    ("redis+cluster://:hunter2@r1:7000?ssl_cert_reqs=none", "takes no ?options"),
    ("redis+cluster://:hunter2@r1:7000/cache", "has no path"),
    ("redis+cluster://:hunter@2@r1:7000", "write it as %40"),
    ("redis+cluster://:hunter2@[::1:7000", "not a valid URL (Invalid IPv6 URL): write "
     "redis+cluster://"),
    ("redis+cluster://:hunter2@r1:7000,[::1", "not a valid URL"),
    ("redis+cluster://:hunter2@[zz]:7000", "not a valid URL"),
    ("redis+cluster://:hunter2@[::1]]:7000", "(got '[::1]]:7000')"),
    ("redis+cluster://:hunter2@r1:7000 ,r2:7000", "(got 'r1:7000 ')"),
])
def test_a_bad_cluster_url_says_what_to_fix_without_echoing_its_password(url, says):
    [problem] = problems({"REDIS_URL": url})
    assert problem.startswith("REDIS_URL: ") and says in problem, problem
    assert "hunter" not in problem


@pytest.mark.parametrize("url", ["redis://:hunter2@[::1:6379/0", "redis://:hunter2@h:abc/0"])
def test_a_malformed_single_redis_url_says_what_to_fix_without_echoing_it(url):
    [problem] = problems({"REDIS_URL": url})
    assert "not a valid URL" in problem and "redis://[[user]:password@]host" in problem
    assert "hunter2" not in problem


def test_a_bad_cluster_url_shows_the_form():
    [problem] = problems({"REDIS_URL": "redis+cluster://r1"})
    assert "redis+cluster://[[user]:password@]host:port[,host:port…]" in problem


def test_a_prefix_with_braces_is_refused():
    assert problems({"REDIS_PREFIX": "shop{1}:"}) == [
        "REDIS_PREFIX='shop{1}:' may not hold { or }: they would make the prefix a hash tag, "
        "and put every conversation in one Redis Cluster slot"]


def test_allowed_origins_are_normalised_and_checked():
    config = Config.from_env(
        {"ALLOWED_ORIGINS": "HTTPS://Shop.example.com/, http://localhost:8000,"}
    )
    assert config.allowed_origins == ("https://shop.example.com", "http://localhost:8000")
    found = problems({"ALLOWED_ORIGINS": "https://shop.example.com/cart, shop.example.com"})
    assert len(found) == 2
    assert "'https://shop.example.com/cart' is not an origin" in found[0]
    assert "'shop.example.com' is not an origin" in found[1]


def test_flow_secrets_are_collected_by_name():
    config = Config.from_env({"FLOW_SECRET_ORDERS_TOKEN": "t0k", "OTHER": "x"})
    assert config.flow_secrets == {"ORDERS_TOKEN": "t0k"}
    [problem] = problems({"FLOW_SECRET_": "x"})
    assert problem.startswith("FLOW_SECRET_: a flow secret's name")


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        Config.from_env({"PORT": "x", "LOG_LEVEL": "y", "CONCIERGE_ENV": "production"})
    assert len(caught.value.problems) == 5  # PORT, LOG_LEVEL and the three production musts
    assert all(f"  - {problem}\n" in f"{caught.value}\n" for problem in caught.value.problems)


def test_flask_config_carries_every_setting():
    flask_config = Config.from_env({**PRODUCTION, "FLOW_SECRET_A": "b"}).as_flask()
    assert flask_config["SECRET_KEY"] == "s3cret"
    assert flask_config["REDIS_URL"] == "redis://redis.internal:6379/0"
    assert flask_config["ALLOWED_ORIGINS"] == ("https://shop.example.com",)
    assert flask_config["FLOW_SECRETS"] == {"A": "b"}
    assert all(key.isupper() for key in flask_config)


def test_dev_secret_is_made_once_readable_only_by_its_owner(tmp_path):
    var_dir = tmp_path / "var"
    assert read_dev_secret(var_dir) is None
    secret = ensure_dev_secret(var_dir)
    assert len(secret) >= 64
    assert ensure_dev_secret(var_dir) == secret
    assert read_dev_secret(var_dir) == secret
    assert stat.S_IMODE((var_dir / "secret_key").stat().st_mode) == 0o600


def test_host_is_loopback_in_development_and_every_interface_in_production():
    development = Config.from_env({"PORT": "8080"})
    assert (development.host, development.bind) == ("127.0.0.1", "127.0.0.1:8080")
    production = Config.from_env({**PRODUCTION, "PORT": "8080"})
    assert (production.host, production.bind) == ("0.0.0.0", "0.0.0.0:8080")


@pytest.mark.parametrize(
    ("environ", "bind"),
    [
        ({"HOST": "0.0.0.0"}, "0.0.0.0:5000"),
        ({**PRODUCTION, "HOST": "127.0.0.1"}, "127.0.0.1:5000"),
        ({"HOST": "::"}, "[::]:5000"),
        ({"HOST": "[::1]"}, "[::1]:5000"),
        ({"HOST": "LocalHost"}, "localhost:5000"),
        ({"HOST": "  "}, "127.0.0.1:5000"),
    ],
)
def test_host_overrides_where_the_server_listens(environ, bind):
    assert Config.from_env(environ).bind == bind


@pytest.mark.parametrize("value", ["0.0.0.0:5000", "http://0.0.0.0", "10.0.0", "my host",
                                   "-bad.example.com", "[localhost]"])
def test_bad_host_is_refused(value):
    [problem] = problems({"HOST": value})
    assert problem.startswith(f"HOST={value!r} must be an IP address")


def test_self_url_follows_a_host_that_names_one_address():
    assert Config.from_env({"HOST": "192.0.2.10"}).self_url == "http://192.0.2.10:5000"
    assert Config.from_env({"HOST": "::"}).self_url == "http://[::1]:5000"
    assert Config.from_env({**PRODUCTION}).self_url == "http://127.0.0.1:5000"


def test_not_strict_puts_defaults_in_place_of_bad_values_and_lists_the_problems():
    environ = {"CONCIERGE_ENV": "production", "PORT": "x", "HOST": "0.0.0.0:80",
               "LOG_LEVEL": "debug", "REDIS_URL": "redis://redis.internal:6379/0"}
    config = Config.from_env(environ, strict=False)
    assert config.problems == tuple(problems(environ))
    assert config.problems == (
        "PORT='x' is not a whole number",
        "HOST='0.0.0.0:80' must be an IP address (such as 127.0.0.1 or 0.0.0.0) or a host name, "
        "without a port (PORT sets the port)",
        "SECRET_KEY is required when CONCIERGE_ENV=production",
        "ALLOWED_ORIGINS is required when CONCIERGE_ENV=production",
    )
    assert (config.port, config.host, config.secret_key) == (5000, "0.0.0.0", None)
    assert (config.log_level, config.redis_url) == ("DEBUG", "redis://redis.internal:6379/0")
    flask_config = config.as_flask()
    assert flask_config["CONFIG_PROBLEMS"] == list(config.problems)
    assert flask_config["SECRET_KEY"]  # a key for this process, so the app still builds


def test_a_valid_environment_has_no_problems():
    assert Config.from_env(PRODUCTION, strict=False).problems == ()
    assert Config.from_env(PRODUCTION).as_flask()["CONFIG_PROBLEMS"] == []
