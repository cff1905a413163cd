"""The app under real gunicorn, configured by gunicorn.conf.py."""

import re

import httpx
import pytest

from tests.support.flows import INVALID_FLOW, write_flows
from tests.support.gunicorn_server import GunicornServer
from tests.support.process import ServerExited, poll_until


def test_gunicorn_refuses_to_start_with_an_invalid_flow(tmp_path):
    flows_dir = write_flows(tmp_path / "flows", broken=INVALID_FLOW)
    server = GunicornServer(tmp_path, {"FLOWS_DIR": str(flows_dir)})
    try:
        with pytest.raises(ServerExited) as exited:
            server.start()
    finally:
        server.stop()
    assert exited.value.returncode != 0
    assert ": error:" in exited.value.stderr
    assert "refusing to start" in exited.value.stderr


def test_gunicorn_serves_healthz_with_two_workers(live_server, minimal_flows_dir):
    url = live_server(flows_dir=minimal_flows_dir)
    for _ in range(10):
        response = httpx.get(f"{url}/healthz", trust_env=False)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    def booted_workers() -> set[str]:
        return set(re.findall(r"Booting worker with pid: (\d+)", live_server.stderr(url)))

    assert poll_until(lambda: len(booted_workers()) == 2, timeout_s=30), booted_workers()
