"""The app with one socket more, for tests: one transport carrying several conversations' feeds.

`/test/feeds?conversation=c_…&conversation=c_…` is built from the app's own parts (its hub and
conversation store, web/transport.py and web/feeds.py) the way the agent socket will be: it
replays each conversation, sends `{"type": "ready"}`, then relays what each one rings, until
the client closes. Until the agent socket exists, this is how a test puts many feeds on one
socket. `FeedsServer` serves it with real gunicorn and the project's gunicorn.conf.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from flask import Flask, request
from flask_sock import Sock

from app import create_app
from runtime import wiring
from tests.support.gunicorn_server import BASE_ENV, ROOT, START_TIMEOUT_S
from tests.support.process import free_port, stop, wait_until_ready
from web.feeds import Feed
from web.transport import Transport

PATH = "/test/feeds"


def make_app() -> Flask:
    """Build the app, and the socket of many feeds on it (gunicorn calls this in each worker)."""
    app = create_app()
    Sock(app).route(PATH)(feeds)
    return app


def feeds(ws: Any) -> None:
    """Serve one socket that carries a feed for each `conversation` of the query."""
    live = wiring.current_live()
    transport = Transport(ws, "a test socket")
    live.hub.register(transport)
    try:
        for cid in request.args.getlist("conversation"):
            feed = Feed(transport, cid, live.conversations.messages, side="agent")
            live.hub.watch(feed.topic, feed)
            feed.catch_up()
            feed.release_held()
        transport.send({"type": "ready"})
        while not transport.closed and ws.receive() is not None:
            pass  # what the client says is not this socket's business
    finally:
        live.hub.forget(transport)
        transport.close(1000)


class FeedsServer:
    """gunicorn serving this module's app on 127.0.0.1, with `env` on top of the test's."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**BASE_ENV, "PORT": str(self.port), **env}
        self.stderr_path = directory / "gunicorn.err"
        self.process: subprocess.Popen | None = None

    def start(self) -> str:
        """Start gunicorn, wait until /healthz answers, and return the base URL."""
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                   "--bind", f"127.0.0.1:{self.port}", f"{__name__}:make_app()"]  # fmt: skip
        with self.stderr_path.open("w") as err:
            self.process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **self.env},
                                            stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_until_ready(self.process, self._answers, name="gunicorn (feeds)",
                             stderr_path=self.stderr_path, timeout_s=START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1, trust_env=False).status_code == 200
        except httpx.TransportError:
            return False
