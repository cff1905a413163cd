"""The app under real gunicorn, configured by gunicorn.conf.py."""

import json
import os
import re
import subprocess
import sys

import httpx
import pytest

from tests.support.flows import INVALID_FLOW, write_flows
from tests.support.gunicorn_server import ROOT, GunicornServer
from tests.support.process import ServerExited, poll_until

SETTINGS = ("CONCIERGE_ENV", "HOST", "PORT", "SECRET_KEY", "REDIS_URL", "ALLOWED_ORIGINS")
PRODUCTION = {
    "CONCIERGE_ENV": "production",
    "SECRET_KEY": "s3cret",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "ALLOWED_ORIGINS": "https://shop.example.com",
}
# gunicorn reads gunicorn.conf.py and its command line as `gunicorn -c gunicorn.conf.py app:app`
# does, and prints the addresses it would bind, without binding them.
READ_ADDRESSES = ("import json, sys; from gunicorn.app.wsgiapp import WSGIApplication; "
                  "sys.argv = ['gunicorn', '-c', 'gunicorn.conf.py', 'app:app']; "
                  "print(json.dumps(WSGIApplication().cfg.address))")
COMMAND_TIMEOUT_S = 60  # one python importing gevent and the flows on a busy 2-core machine


def refused_start(server: GunicornServer) -> ServerExited:
    """Start `server`, which must exit before it is ready; return how it exited."""
    try:
        with pytest.raises(ServerExited) as exited:
            server.start()
    finally:
        server.stop()
    assert exited.value.returncode != 0
    return exited.value


def test_gunicorn_refuses_to_start_with_an_invalid_flow(tmp_path):
    flows_dir = write_flows(tmp_path / "flows", broken=INVALID_FLOW)
    exited = refused_start(GunicornServer(tmp_path, {"FLOWS_DIR": str(flows_dir)}))
    assert ": error:" in exited.stderr
    assert "refusing to start" in exited.stderr


def test_gunicorn_serves_healthz_with_two_workers(live_server, minimal_flows_dir):
    url = live_server(flows_dir=minimal_flows_dir)
    for _ in range(10):
        response = httpx.get(f"{url}/healthz", trust_env=False)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    def booted_workers() -> set[str]:
        return set(re.findall(r"Booting worker with pid: (\d+)", live_server.stderr(url)))

    assert poll_until(lambda: len(booted_workers()) == 2, timeout_s=30), booted_workers()


@pytest.mark.parametrize(
    ("environ", "address"),
    [
        ({"CONCIERGE_ENV": "development"}, "127.0.0.1"),
        (PRODUCTION, "0.0.0.0"),
        ({"CONCIERGE_ENV": "development", "HOST": "0.0.0.0"}, "0.0.0.0"),
        ({**PRODUCTION, "HOST": "127.0.0.1"}, "127.0.0.1"),
        ({"CONCIERGE_ENV": "development", "HOST": "::"}, "::"),
    ],
    ids=["development", "production", "development-host", "production-host", "ipv6-host"],
)
def test_gunicorn_binds_loopback_in_development_all_interfaces_in_production_or_host(
        environ, address):
    env = {**{k: v for k, v in os.environ.items() if k not in SETTINGS}, **environ, "PORT": "8123"}
    result = subprocess.run([sys.executable, "-c", READ_ADDRESSES], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [[address, 8123]]


def test_gunicorn_refuses_to_start_with_every_config_problem_listed(tmp_path):
    exited = refused_start(GunicornServer(tmp_path, {
        "CONCIERGE_ENV": "production", "SECRET_KEY": "", "REDIS_URL": "", "ALLOWED_ORIGINS": "",
        "HOST": "example.com:80"}))
    assert "concierge: invalid configuration (4 problem(s)):" in exited.stderr
    for problem in ("HOST='example.com:80' must be an IP address",
                    "SECRET_KEY is required when CONCIERGE_ENV=production",
                    "REDIS_URL is required when CONCIERGE_ENV=production",
                    "ALLOWED_ORIGINS is required when CONCIERGE_ENV=production"):
        assert f"  - {problem}" in exited.stderr
