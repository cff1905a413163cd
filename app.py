"""Build the Concierge app: wire its parts together, holding no logic of its own."""

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from bots.cli import flows_cli
from routing.cli import agents_cli
from runtime import flows, logs, wiring
from runtime.config import Config
from web import auth, console, metrics, pages, sockets, widget


def create_app(config: dict | None = None) -> Flask:
    """Build the app from the environment, with `config` (Flask keys) overriding it."""
    app = Flask(__name__, static_folder="web/static")  # /static/console/… and the like
    # Never strict: the app builds with any environment, so the `flask` commands always run;
    # gunicorn.conf.py refuses to start the server on a bad one, and /readyz names the problems.
    app.config.from_mapping(Config.from_env(strict=False).as_flask())
    app.config.from_mapping(config or {})
    logs.configure(app.config["LOG_LEVEL"])
    app.register_blueprint(pages.bp)
    app.register_blueprint(console.bp)
    app.register_blueprint(widget.bp)  # /widget.js and its stylesheet, for any site
    app.register_blueprint(metrics.bp)  # /metrics, for Prometheus
    app.cli.add_command(flows_cli)
    app.cli.add_command(agents_cli)
    flows.init_app(app)
    wiring.init_app(app)
    sockets.init_app(app)
    auth.init_app(app)  # logins, CSRF and the login limits, on the live parts' Redis
    if hops := app.config.get("TRUSTED_PROXY_HOPS"):  # the client's address, as a proxy saw it
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=0)
    return app


app = create_app()
