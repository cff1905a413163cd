"""The app through Flask's test client (and the `flask` command): health, readiness, the front
page, the demo API, and building with any environment."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import runtime.config
from app import create_app
from runtime.config import ensure_dev_secret
from tests.support.flows import INVALID_FLOW, write_flows
from tests.support.process import free_port

ROOT = Path(__file__).resolve().parents[2]  # where app.py and the shipped flows are
COMMAND_TIMEOUT_S = 60  # one `flask` command importing the app on a busy 2-core machine


@pytest.fixture
def client(minimal_flows_dir, redis_server):
    return create_app({"FLOWS_DIR": minimal_flows_dir, "REDIS_URL": redis_server,
                       "TESTING": True}).test_client()


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_is_ready_when_the_flows_load_cleanly(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"ready": True}


def test_readyz_is_not_ready_when_redis_does_not_answer(minimal_flows_dir):
    port = free_port()  # nothing listens there
    app = create_app({"FLOWS_DIR": minimal_flows_dir, "REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"ready": False, "reason": "Redis does not answer"}


def test_the_app_builds_with_a_cluster_away_and_readyz_says_so(minimal_flows_dir):
    # Nothing dials as the app is made (the login limits' storage neither): the worker boots.
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    app = create_app({"FLOWS_DIR": minimal_flows_dir, "REDIS_URL": url})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"ready": False, "reason": "Redis Cluster does not answer"}


def test_readyz_is_not_ready_without_redis_configured(minimal_flows_dir):
    response = create_app({"FLOWS_DIR": minimal_flows_dir, "REDIS_URL": None}).test_client() \
        .get("/readyz")
    assert response.status_code == 503
    assert "no Redis configured" in response.json["reason"]


def test_app_builds_with_an_invalid_flow_and_is_not_ready(tmp_path):
    app = create_app({"FLOWS_DIR": write_flows(tmp_path, broken=INVALID_FLOW)})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["ready"] is False
    assert "flask flows check" in response.json["reason"]


def test_app_builds_when_the_flow_loader_crashes(monkeypatch, minimal_flows_dir):
    def crash(directory):
        raise RuntimeError("bug in the loader")

    monkeypatch.setattr("runtime.flows.load_catalog", crash)
    response = create_app({"FLOWS_DIR": minimal_flows_dir}).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {
        "ready": False,
        "reason": "the flows could not be loaded (see the log)",
    }


def test_app_builds_with_an_invalid_environment_and_readyz_names_every_problem(
        monkeypatch, minimal_flows_dir, redis_server):
    monkeypatch.setenv("CONCIERGE_ENV", "production")
    monkeypatch.setenv("REDIS_URL", redis_server)
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://shop.example.com")
    monkeypatch.setenv("RETENTION_DAYS", "a month")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    app = create_app({"FLOWS_DIR": minimal_flows_dir})
    problems = ["RETENTION_DAYS='a month' is not a whole number",
                "SECRET_KEY is required when CONCIERGE_ENV=production"]
    assert app.config["CONFIG_PROBLEMS"] == problems
    assert app.config["RETENTION_DAYS"] == 30  # the default in place of the bad value
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"ready": False, "reason": (
        "invalid configuration: RETENTION_DAYS='a month' is not a whole number; "
        "SECRET_KEY is required when CONCIERGE_ENV=production")}
    # once the environment is fixed the app is ready: the problems were the reason
    monkeypatch.setenv("SECRET_KEY", "s3cret")
    monkeypatch.delenv("RETENTION_DAYS")
    fixed = create_app({"FLOWS_DIR": minimal_flows_dir}).test_client().get("/readyz")
    assert (fixed.status_code, fixed.json) == (200, {"ready": True})


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["check"], "checked 1 flow: 0 errors"),
        (["test"], " passed, 0 failed"),
        (["draw", "default", "--format", "dot"], "digraph"),
    ],
)
def test_flows_commands_run_in_production_without_a_secret_key(command, says, shipped_flows_dir):
    unset = ("SECRET_KEY", "REDIS_URL", "ALLOWED_ORIGINS", "FLOWS_DIR", "HOST")
    env = {**{k: v for k, v in os.environ.items() if k not in unset},
           "CONCIERGE_ENV": "production", "FLOWS_DIR": str(shipped_flows_dir)}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "flows", *command],
                            cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=COMMAND_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert says in result.stdout + result.stderr


def test_flows_commands_are_registered(minimal_flows_dir):
    app = create_app({"FLOWS_DIR": minimal_flows_dir})
    result = app.test_cli_runner().invoke(args=["flows", "--help"])
    assert result.exit_code == 0, result.output
    assert "check" in result.output


def test_front_page_is_the_demo_shop_carrying_the_widget(client):
    response = client.get("/")
    assert response.status_code == 200
    assert '<script src="/widget.js"' in response.text  # one tag, as a site owner writes it
    assert 'href="/console"' in response.text  # where to answer as an agent
    assert "script-src 'self';" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("order_id", "status", "carrier"),
    [
        ("AB123456", "shipped", "DHL"),
        ("XY000002", "shipped", "UPS"),
        ("AB123457", "processing", None),
    ],
)
def test_demo_order_api_answers_known_orders(client, order_id, status, carrier):
    response = client.get(f"/demo/api/orders/{order_id}")
    assert response.status_code == 200
    assert response.json["order_id"] == order_id
    assert response.json["status"] == status
    assert response.json["carrier"] == carrier
    assert response.json == client.get(f"/demo/api/orders/{order_id}").json  # deterministic


def test_demo_order_api_matches_the_documented_example(client):
    assert client.get("/demo/api/orders/AB123456").json == {
        "order_id": "AB123456",
        "status": "shipped",
        "carrier": "DHL",
        "eta": "2026-11-28",
    }


@pytest.mark.parametrize("order_id", ["AB123450", "ab123456", "AB12345", "AB1234567", "ABC12345"])
def test_demo_order_api_has_no_such_order(client, order_id):
    response = client.get(f"/demo/api/orders/{order_id}")
    assert response.status_code == 404
    assert response.json == {"error": "no such order"}


def test_create_app_reads_but_never_writes_the_dev_secret(monkeypatch, tmp_path, minimal_flows_dir):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("CONCIERGE_ENV", "development")
    monkeypatch.setattr(runtime.config, "VAR_DIR", tmp_path)
    create_app({"FLOWS_DIR": minimal_flows_dir})
    assert list(tmp_path.iterdir()) == []
    secret = ensure_dev_secret()
    assert create_app({"FLOWS_DIR": minimal_flows_dir}).config["SECRET_KEY"] == secret
