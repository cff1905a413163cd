"""Benchmark the visitor socket end to end: sockets held, memory per socket, bot turn latency.

Run from the repository root:

    .venv/bin/python bench/visitors.py              # full run: 10,000 sockets, 5 rates (~2 min)
    .venv/bin/python bench/visitors.py --quick      # smoke run: 500 sockets, 2 short rates (~25 s)
    .venv/bin/python bench/visitors.py --sockets 5000 --workers 2 --rates 250,500 --duration 5
    .venv/bin/python bench/visitors.py --keep out/bench   # keep logs, GC pauses and every turn
    .venv/bin/python bench/visitors.py --redis cluster    # the service on a 3-master cluster

It starts its own Redis (no persistence): one redis-server, or with `--redis cluster` a
Redis Cluster of three masters (tests/support/redis_cluster.py), and its own gunicorn
(`gunicorn -c gunicorn.conf.py app:app`, gevent workers, bound to 127.0.0.1),
drives them with an asyncio WebSocket client (`websockets`) on loopback, and
stops everything at the end, on Ctrl-C and on errors. It measures, against
the targets of bench/README.md#targets (2-core machine):

1. sockets held: N visitor sockets, each `hello` (token null) -> `welcome`, opened
   with a bounded number of handshakes in flight, offering permessage-deflate as
   browsers do; they stay open and idle for the rest of the run;
2. memory per socket: (sum of the workers' VmRSS with N sockets - before) / N;
3. bot turn latency: a second set of visitors sends "shipping" (the default flow
   answers it with messages, no `call`) at fixed offered rates, open loop (sends
   are scheduled on a clock, not on answers); latency = from sending the message
   to receiving the first bot message of the answer (seq above the message's ack);
4. what limits each figure: CPU of the workers, redis-server and this client per
   phase (/proc/<pid>/stat), and garbage-collector pauses of the workers and of
   the client (gc.callbacks; the workers' through a bench-only sitecustomize).

Exit code: 0 whatever the figures; 1 when it cannot measure (a server does not
start, the bot does not answer as the default flow should, a worker restarts).

This file is the command line; the benchmark itself is in bench/live/ (servers,
meters, load, phases, report), and its servers are the tests' (tests/support/).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/visitors.py` puts bench/, not the root, on the path
    sys.path.insert(0, str(ROOT))

from bench.live import log, rate_list  # noqa: E402 - needs the path above
from bench.live.load import close_all  # noqa: E402
from bench.live.phases import ACTIVE_MIN, measure  # noqa: E402
from bench.live.redis_nodes import KINDS  # noqa: E402
from bench.live.report import Results, report  # noqa: E402
from bench.live.servers import Servers, raise_open_files  # noqa: E402

# --- what to measure (defaults; flags override) -------------------------------------------
DEFAULT_SOCKETS = 10_000
DEFAULT_WORKERS = 2
DEFAULT_RATES = (100, 250, 500, 750, 1_000)  # offered turns a second
DEFAULT_DURATION_S = 10.0  # seconds of sending per rate
QUICK = {"sockets": 500, "rates": (100, 250), "duration": 3.0}

# --- the run ------------------------------------------------------------------------------
FD_HEADROOM = 4_096  # open files beyond one per socket: Redis pools, logs, listeners
RUN_TIMEOUT_S = 900.0  # the whole measurement, whatever the flags: the benchmark always ends


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=None,
                        help=f"idle visitor sockets to hold (default {DEFAULT_SOCKETS:,})")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"gunicorn workers, WEB_CONCURRENCY (default {DEFAULT_WORKERS})")
    parser.add_argument("--rates", default=None, type=rate_list,
                        help="offered turns a second, comma-separated (default "
                             + ",".join(map(str, DEFAULT_RATES)) + ")")
    parser.add_argument("--duration", type=float, default=None,
                        help=f"seconds of sending per rate (default {DEFAULT_DURATION_S:g})")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 500 sockets, rates 100,250, 3 s each (~30 s)")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep the servers' logs, the workers' GC pauses and every turn "
                             "(turns.csv) in DIR")
    parser.add_argument("--redis", choices=KINDS, default="single",
                        help="the Redis the service runs on: one redis-server (single, the "
                             "default) or a Redis Cluster of 3 masters (cluster), CPU metered "
                             "per node")
    parser.add_argument("--no-gc-probe", action="store_true",
                        help="do not log the workers' GC pauses (a bench-only sitecustomize)")
    options = parser.parse_args(argv)
    defaults = QUICK if options.quick else {"sockets": DEFAULT_SOCKETS, "rates": DEFAULT_RATES,
                                            "duration": DEFAULT_DURATION_S}
    options.sockets = options.sockets if options.sockets is not None else defaults["sockets"]
    options.duration = options.duration if options.duration is not None else defaults["duration"]
    if options.rates is None:
        options.rates = list(defaults["rates"])
    if options.sockets < 1 or options.workers < 1 or options.duration <= 0 or not options.rates \
            or min(options.rates) <= 0:
        parser.error("--sockets, --workers, --duration and every rate must be positive")
    options.rates = sorted(options.rates)
    return options


def raise_keyboard_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


async def run(options: argparse.Namespace, servers: Servers, results: Results) -> None:
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            await measure(options, servers, results)
    finally:
        opened = results.opened_all
        if opened:
            log(f"\nclosing {len(opened):,} sockets")
            await close_all(item.ws for item in opened)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)  # stop the servers on SIGTERM too
    results = Results()
    wanted_files = options.sockets + max(ACTIVE_MIN, 1_000) + FD_HEADROOM
    results.open_files = raise_open_files(wanted_files)
    if results.open_files[0] < options.sockets + FD_HEADROOM // 2:
        log(f"warning: open files limit {results.open_files[0]:,} is below what "
            f"{options.sockets:,} sockets need; expect failures")
    with tempfile.TemporaryDirectory(prefix="concierge-bench-") as scratch:
        directory = Path(options.keep or scratch)
        directory.mkdir(parents=True, exist_ok=True)
        servers = Servers(directory, options.workers, gc_probe=not options.no_gc_probe,
                          redis_kind=options.redis)
        try:
            log(f"starting Redis: {servers.redis.describe()}; gunicorn :{servers.port} "
                f"({options.workers} workers)")
            servers.start()
            asyncio.run(run(options, servers, results))
            report(options, results, servers)
            return 0
        except KeyboardInterrupt:
            log("\ninterrupted: stopping the servers")
            return 130
        except (RuntimeError, TimeoutError) as exc:
            log(f"\nthe benchmark could not measure: {exc}")
            report(options, results, servers)  # what was measured before it failed
            return 1
        finally:
            servers.stop()
            if options.keep:
                log(f"logs, GC pauses and turns.csv kept in {directory}")


if __name__ == "__main__":
    sys.exit(main())
