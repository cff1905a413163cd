"""Run Concierge under gunicorn: gevent workers, and the once-per-instance start-up work."""

# Patch before anything imports ssl, sockets or threads (httpx and redis do): the gevent worker
# patches only after the master has imported them, which gevent warns can break ssl.
import gevent
from gevent import monkey

monkey.patch_all()
# No record of who spawned each greenlet (its spawner, spawn-tree locals, a stack summary):
# debugging aid only, paid on every spawn and kept by every live greenlet (docs/operating.md,
# "Memory").
gevent.config.track_greenlet_tree = False

import gc  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent.pool  # noqa: E402

from bots.catalog import load_catalog  # noqa: E402
from routing import settings as queue_settings  # noqa: E402
from routing.first_agent import announce_first_agent  # noqa: E402
from runtime import collector  # noqa: E402
from runtime.config import (  # noqa: E402
    VAR_DIR,
    Config,
    ConfigError,
    ensure_dev_secret,
    export_redis_url,
)
from runtime.embedded_redis import EmbeddedRedis, EmbeddedRedisError  # noqa: E402

try:
    concierge = Config.from_env()  # not `config`: that name is a gunicorn setting
except ConfigError as error:
    sys.exit(f"concierge: {error}")

bind = concierge.bind  # HOST:PORT; HOST defaults to 127.0.0.1, and to 0.0.0.0 in production
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
    """Make the development secret, refuse to start with an invalid flow, start the embedded
    Redis and say how to log in to the console (development), before any worker."""
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
    try:
        queues = queue_settings.load(concierge.queues_file)
    except queue_settings.QueueFileError as error:
        sys.exit(f"concierge: refusing to start: {error}")
    server.log.info("queues: %s", ", ".join(f"{name} ({q.strategy})" for name, q in
                                            queues.named.items()) or "all with the defaults")
    if concierge.redis_url is None:  # development: a private, real Redis for this instance
        global embedded_redis
        embedded_redis = EmbeddedRedis(VAR_DIR / "redis")
        try:
            export_redis_url(embedded_redis.start())
        except EmbeddedRedisError as error:
            sys.exit(f"concierge: {error}")
        server.log.info("REDIS_URL is unset: using the embedded Redis at %s (development only)",
                        embedded_redis.url)
        if not concierge.production:  # a first account to log in with, and how (every start)
            print(announce_first_agent(embedded_redis.url, concierge.redis_prefix,
                                       f"{concierge.self_url}/console"), file=sys.stderr)


embedded_redis = None
SESSIONS_EXIT_S = 5.0  # at a worker's exit, for its visitor sessions to end after their 1001


def on_exit(server) -> None:
    """Stop the embedded Redis, if this instance started one."""
    if embedded_redis is not None:
        embedded_redis.stop()


def worker_exit(server, worker) -> None:
    """Let the visitor sessions end (closed with 1001 at SIGTERM) before the worker does."""
    app = getattr(worker, "wsgi", None)  # None where the master forgets a vanished worker
    services = app.extensions.get("concierge.live") if app is not None else None
    if services is not None:
        services.sessions.join(timeout=SESSIONS_EXIT_S)


def post_worker_init(worker) -> None:
    """Close sockets with 1001 on SIGTERM; freeze start-up objects out of the collector."""
    services = worker.wsgi.extensions.get("concierge.live")
    if services is not None:
        stop = worker.handle_exit

        def handle_exit(sig, frame) -> None:
            # gunicorn would hold the sockets for graceful_timeout and then drop them without a
            # close frame (clients see 1006); 1001 tells them to reconnect elsewhere at once.
            stop(sig, frame)
            gevent.spawn(services.hub.shutdown)

        signal.signal(signal.SIGTERM, handle_exit)
        services.start_timers()
        # Visitor sessions leave gunicorn's pool with their requests (web/sockets.py): as many
        # may run as it would have held, and worker_exit waits for them.
        services.sessions = gevent.pool.Pool(worker.worker_connections)
    # The app, flows and machines live as long as the worker: keep the collector's full passes,
    # whose pauses set the p99 (docs/stack.md, "Collector pauses"), from walking them again and
    # again; then keep freezing what the sockets build up (runtime/collector.py).
    gc.collect()
    gc.freeze()
    collector.start()
