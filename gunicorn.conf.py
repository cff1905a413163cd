"""Run Concierge under gunicorn: gevent workers, and the once-per-instance start-up work."""

import gc
import sys

from bots.catalog import load_catalog
from chat.config import Config, ConfigError, ensure_dev_secret

try:
    concierge = Config.from_env()  # not `config`: that name is a gunicorn setting
except ConfigError as error:
    sys.exit(f"concierge: {error}")

bind = f"0.0.0.0:{concierge.port}"
workers = concierge.web_concurrency
worker_class = "gevent"  # one worker holds thousands of idle sockets; gthread needs 2 threads each
worker_connections = 10_000  # per worker; gunicorn's default of 1,000 caps sockets far too low
graceful_timeout = 20  # seconds to finish on SIGTERM, inside the 30 s a PaaS allows before SIGKILL
accesslog = None  # one line per request drowns the service's own log; the PaaS router logs them
errorlog = "-"
loglevel = concierge.log_level.lower()
# gunicorn 27's control socket defaults to one path in $HOME, shared by every instance on the
# machine (and a PaaS home may be read-only); Concierge does not use gunicornc.
control_socket_disable = True


def on_starting(server) -> None:
    """Make the development secret and refuse to start with an invalid flow, before any worker."""
    if concierge.secret_key is None:  # development only: production requires SECRET_KEY
        ensure_dev_secret()
    catalog = load_catalog(concierge.flows_dir)
    for diagnostic in catalog.diagnostics:
        print(diagnostic, file=sys.stderr)
    if catalog.errors:
        print(
            f"concierge: refusing to start: {len(catalog.errors)} error(s) in the flows in "
            f"{concierge.flows_dir} (listed above; `flask flows check` shows them too)",
            file=sys.stderr,
        )
        sys.exit(1)
    server.log.info("loaded %d flow(s) from %s", len(catalog.flows), concierge.flows_dir)


def post_worker_init(worker) -> None:
    """Freeze the app, flows and machines out of the garbage collector, whose pauses set the p99."""
    gc.collect()
    gc.freeze()
