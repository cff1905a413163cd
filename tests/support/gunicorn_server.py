"""Serve the app under real gunicorn, configured by gunicorn.conf.py, on a free local port:
for the tests and the benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.process import child_pids, free_port, stop, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]  # where gunicorn.conf.py and app.py are
START_TIMEOUT_S = 60  # two workers importing gevent, Flask and the flows on a busy 2-core machine
BASE_ENV = {
    "CONCIERGE_ENV": "development",
    "SECRET_KEY": "test-secret-key",  # so gunicorn does not write var/secret_key in the checkout
    "WEB_CONCURRENCY": "2",
    "LOG_LEVEL": "INFO",
    # Every socket of the suite comes from 127.0.0.1, and it starts thousands of conversations:
    # the per-address limits are lifted here and tested with servers that set them low.
    "NEW_CONVERSATIONS_PER_ADDRESS": "1000000",
    "MAX_SOCKETS_PER_ADDRESS": "100000",
    "LOGIN_RATE": "1000/minute",  # console logins, per address and per account
}


class GunicornServer:
    """gunicorn serving `app` (default `app:app`) on 127.0.0.1, with `env` on top of the test
    environment.

    It listens on `port` (default: a free one, so a caller that must know it first, to put the
    server's own origin in `env`, picks it). `own_session=True` starts it in a session of its
    own, out of reach of a Ctrl-C meant for the caller; a stop that has to SIGKILL it then takes
    its workers too. Its stderr (its log and the app's) goes to `stderr_path`.
    """

    def __init__(self, directory: Path, env: dict[str, str], *, port: int | None = None,
                 own_session: bool = False, app: str = "app:app") -> None:
        self.directory = directory
        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **BASE_ENV, "PORT": str(self.port), **env}
        workers = self.env.get("WEB_CONCURRENCY", "")
        self.workers = int(workers) if workers.isdigit() else None  # None: the config's default
        self.own_session = own_session
        self.stderr_path = directory / "gunicorn.err"
        self.process: subprocess.Popen | None = None

    def start(self) -> str:
        """Start gunicorn, wait until /healthz answers and every worker runs; return the URL."""
        # --bind pins the address: tests listen on loopback only, whatever HOST says.
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                   "--bind", f"127.0.0.1:{self.port}", self.app]  # fmt: skip
        with (self.directory / "gunicorn.out").open("w") as out, self.stderr_path.open("w") as err:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out,
                                            stderr=err, start_new_session=self.own_session)
        try:
            wait_until_ready(
                self.process,
                self._is_ready,
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

    def worker_pids(self) -> list[int]:
        """Return the pids of the workers running now (the master's children)."""
        return child_pids(self.process.pid) if self.process is not None else []

    def stderr(self) -> str:
        """Return what gunicorn has written to stderr so far (its log and the flow diagnostics)."""
        return self.stderr_path.read_text()

    def _is_ready(self) -> bool:
        # /healthz is answered by the first worker that boots; the others may still be forking.
        return self._answers_healthz() and (
            self.workers is None or len(self.worker_pids()) == self.workers)

    def _answers_healthz(self) -> bool:
        try:  # trust_env=False: no proxy from the environment may stand between us and loopback
            return httpx.get(f"{self.url}/healthz", timeout=1, trust_env=False).status_code == 200
        except httpx.TransportError:
            return False
