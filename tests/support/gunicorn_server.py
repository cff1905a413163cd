"""Serve the app under real gunicorn, configured by gunicorn.conf.py, on a free local port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.process import free_port, stop, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]  # where gunicorn.conf.py and app.py are
START_TIMEOUT_S = 60  # two workers importing gevent, Flask and the flows on a busy 2-core machine
BASE_ENV = {
    "CONCIERGE_ENV": "development",
    "SECRET_KEY": "test-secret-key",  # so gunicorn does not write var/secret_key in the checkout
    "WEB_CONCURRENCY": "2",
    "LOG_LEVEL": "INFO",
}


class GunicornServer:
    """gunicorn serving `app:app` on 127.0.0.1, with `env` on top of the test environment."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **BASE_ENV, "PORT": str(self.port), **env}
        self.stderr_path = directory / "gunicorn.err"
        self.process: subprocess.Popen | None = None

    def start(self) -> str:
        """Start gunicorn, wait until /healthz answers, and return the base URL."""
        # --bind overrides the config file's 0.0.0.0 so tests listen on loopback only.
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                   "--bind", f"127.0.0.1:{self.port}", "app:app"]  # fmt: skip
        with (self.directory / "gunicorn.out").open("w") as out, self.stderr_path.open("w") as err:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=err)
        try:
            wait_until_ready(
                self.process,
                self._answers_healthz,
                name="gunicorn",
                stderr_path=self.stderr_path,
                timeout_s=START_TIMEOUT_S,
            )
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        """Stop gunicorn (SIGTERM: a graceful shutdown)."""
        if self.process is not None:
            stop(self.process)

    def stderr(self) -> str:
        """Return what gunicorn has written to stderr so far (its log and the flow diagnostics)."""
        return self.stderr_path.read_text()

    def _answers_healthz(self) -> bool:
        try:  # trust_env=False: no proxy from the environment may stand between us and loopback
            return httpx.get(f"{self.url}/healthz", timeout=1, trust_env=False).status_code == 200
        except httpx.TransportError:
            return False
