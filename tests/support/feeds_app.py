"""The app with one socket more, for tests: one transport carrying several conversations' feeds.

`/test/feeds?conversation=c_…&conversation=c_…` is built from the app's own parts (its hub and
conversation store, web/transport.py and web/feeds.py) the way the agent socket will be: it
replays each conversation, sends `{"type": "ready"}`, then relays what each one rings, until
the client closes. Until the agent socket exists, this is how a test puts many feeds on one
socket. `many_feeds_server` serves it with real gunicorn and the project's gunicorn.conf.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, request
from flask_sock import Sock

from app import create_app
from runtime import wiring
from tests.support.gunicorn_server import GunicornServer
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
        while not transport.closed:
            transport.receive(60.0)  # what the client says is not this socket's business
    finally:
        live.hub.forget(transport)
        transport.close(1000)


def many_feeds_server(directory: Path, env: dict[str, str]) -> GunicornServer:
    """Return a (not yet started) gunicorn serving this module's app, with `env` on top."""
    return GunicornServer(directory, env, app=f"{__name__}:make_app()")
