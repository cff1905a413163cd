"""Build the Concierge app: wire its parts together, holding no logic of its own."""

from flask import Flask

from bots.cli import flows_cli
from runtime import flows, logs, wiring
from runtime.config import Config
from web import pages, sockets


def create_app(config: dict | None = None) -> Flask:
    """Build the app from the environment, with `config` (Flask keys) overriding it."""
    app = Flask(__name__)
    app.config.from_mapping(Config.from_env().as_flask())
    app.config.from_mapping(config or {})
    logs.configure(app.config["LOG_LEVEL"])
    app.register_blueprint(pages.bp)
    app.cli.add_command(flows_cli)
    flows.init_app(app)
    wiring.init_app(app)
    sockets.init_app(app)
    return app


app = create_app()
