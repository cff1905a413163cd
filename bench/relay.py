"""Benchmark the visitor -> agent relay across instances, and memory per idle agent socket.

Run from the repository root:

    .venv/bin/python bench/relay.py                # full run: memory, then 500-4,000/s (~4 min)
    .venv/bin/python bench/relay.py --runs 3       # three runs on fresh servers, medians (~6 min)
    .venv/bin/python bench/relay.py --quick        # smoke run (~45 s)
    .venv/bin/python bench/relay.py --rates 1000,2000 --duration 5 --memory-agents 0
    .venv/bin/python bench/relay.py --redis cluster  # the service on a 3-master cluster

It starts its own Redis (no persistence: one redis-server, or with `--redis cluster` a Redis
Cluster of three masters, tests/support/redis_cluster.py) and two gunicorns on it, A and B
(`gunicorn -c gunicorn.conf.py app:app`, gevent workers, 127.0.0.1, production mode), through
the tests' harness (tests/support/), makes its agent accounts in Redis with routing/agents.py,
drives everything else through the sockets with an asyncio client (`websockets`) on the same
machine, and stops the servers at the end, on Ctrl-C and on errors. Each run measures:

1. memory per idle agent socket with a full welcome: N agents, each holding conversations
   built through the sockets on A (bot turns, then escalated to them), then one
   fresh socket per agent on B reading its full welcome: (B's workers' RSS after - before) / N;
2. the relay: agents on B, visitors on A (so every message crosses instances and workers),
   every conversation escalated by the default flow and `assigned`; then visitor messages at
   fixed offered rates, open loop; latency = the visitor's send -> the agent socket's copy
   (the delivery), matched by the client id; lost = acked but never delivered; errors; CPU a
   message of A's workers, B's workers and Redis (the sum of its nodes, and each node's);
3. the Redis pub/sub floor: bare PUBLISH -> SUBSCRIBE (redis.asyncio) at the same rates.

Exit code: 0 whatever the figures; 1 when it cannot measure (a server does not start, the
frames are not what docs/protocol.md says, a worker dies); 130 on Ctrl-C.

This file is the command line; the benchmark is in bench/live/ (cluster, agents, relay,
relay_phases, relay_report), beside the modules of bench/visitors.py, which it reuses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/relay.py` puts bench/, not the root, on the path
    sys.path.insert(0, str(ROOT))

from bench.live import log, rate_list  # noqa: E402 - needs the path above
from bench.live.cluster import Cluster  # noqa: E402
from bench.live.redis_nodes import KINDS  # noqa: E402
from bench.live.relay import MAX_PER_SOCKET_S  # noqa: E402
from bench.live.relay_phases import Run, close_run, measure  # noqa: E402
from bench.live.relay_report import report  # noqa: E402
from bench.live.servers import raise_open_files  # noqa: E402

# --- what to measure (defaults; flags override) -------------------------------------------
DEFAULTS = {"rates": (500, 1_000, 2_000, 3_000, 4_000), "duration": 10.0, "agents": 50,
            "memory_agents": 200, "floor_duration": 5.0}
QUICK = {"rates": (250, 500), "duration": 2.0, "agents": 20, "memory_agents": 10,
         "floor_duration": 1.0}
MAX_CHATS = 10  # conversations an agent holds in the relay and in the memory phase
MEMORY_MESSAGES = 50  # in each conversation of the memory phase
MEMORY_IN_FLIGHT = 10  # a welcome's transient objects (~0.5 MB) must not pass for held memory
WORKERS = 2
GRACE_S = 3_600  # AGENT_GRACE_S: an agent's closed sockets keep what it holds for the whole run

RUN_TIMEOUT_S = 900.0  # one run, whatever the flags: the benchmark always ends
FD_HEADROOM = 4_096


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1,
                        help="independent runs, each on fresh servers; medians reported "
                             "(default 1)")
    parser.add_argument("--rates", default=None, type=rate_list,
                        help="offered messages a second, comma-separated (default "
                             + ",".join(map(str, DEFAULTS["rates"])) + ")")
    parser.add_argument("--duration", type=float, default=None,
                        help=f"seconds of sending per rate (default {DEFAULTS['duration']:g})")
    parser.add_argument("--agents", type=int, default=None,
                        help=f"relay agents on B (default {DEFAULTS['agents']}); each holds "
                             "--max-chats conversations")
    parser.add_argument("--max-chats", type=int, default=MAX_CHATS,
                        help=f"conversations per relay agent (default {MAX_CHATS}, at most 50)")
    parser.add_argument("--memory-agents", type=int, default=None,
                        help=f"agents of the memory phase (default {DEFAULTS['memory_agents']};"
                             " 0 skips it)")
    parser.add_argument("--memory-chats", type=int, default=MAX_CHATS,
                        help=f"conversations each holds (default {MAX_CHATS})")
    parser.add_argument("--memory-messages", type=int, default=MEMORY_MESSAGES,
                        help=f"messages in each of them (default {MEMORY_MESSAGES})")
    parser.add_argument("--memory-runs", type=int, default=1,
                        help="runs that measure memory too, the first ones (default 1: its "
                             "figure hardly moves between runs, and building its conversations "
                             "takes the longest)")
    parser.add_argument("--memory-in-flight", type=int, default=MEMORY_IN_FLIGHT,
                        help="fresh agent sockets opening at once (connect + full welcome) in "
                             f"the memory phase (default {MEMORY_IN_FLIGHT})")
    parser.add_argument("--floor-duration", type=float, default=None,
                        help="seconds per rate of the pub/sub floor (default "
                             f"{DEFAULTS['floor_duration']:g})")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help=f"gunicorn workers of each instance (default {WORKERS})")
    parser.add_argument("--frame-rate", type=int, default=None,
                        help="FRAME_RATE for the servers (default: theirs, 20/s a socket)")
    parser.add_argument("--redis", choices=KINDS, default="single",
                        help="the Redis A and B run on: one redis-server (single, the default) "
                             "or a Redis Cluster of 3 masters (cluster), CPU metered per node")
    parser.add_argument("--all-rates", action="store_true",
                        help="run every rate, even past one that saturated the machine")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: rates 250,500 for 2 s, 20 agents, 10 memory agents")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep the servers' logs and the workers' GC pauses in DIR")
    options = parser.parse_args(argv)
    defaults = QUICK if options.quick else DEFAULTS
    for name in ("duration", "agents", "memory_agents", "floor_duration"):
        if getattr(options, name) is None:
            setattr(options, name, defaults[name])
    if options.rates is None:
        options.rates = list(defaults["rates"])
    if not options.rates or min(options.rates) <= 0 or options.duration <= 0 \
            or options.floor_duration <= 0:
        parser.error("--rates, --duration and --floor-duration must be positive")
    if options.runs < 1 or options.agents < 1 or options.workers < 1 \
            or options.memory_agents < 0 or options.memory_in_flight < 1:
        parser.error("--runs, --agents and --workers must be at least 1")
    if not 1 <= options.max_chats <= 50 or not 1 <= options.memory_chats <= 50:
        parser.error("--max-chats and --memory-chats go from 1 to 50 (routing's limit)")
    options.rates = sorted(options.rates)
    options.grace = GRACE_S
    per_socket = max(options.rates) / (options.agents * options.max_chats)
    limit = MAX_PER_SOCKET_S * (options.frame_rate or 20) / 20
    if per_socket > limit:
        parser.error(f"{max(options.rates):g} msg/s over {options.agents * options.max_chats} "
                     f"conversations is {per_socket:.1f}/s a visitor socket, past "
                     f"{limit:g}/s (half of FRAME_RATE): raise --agents, or --frame-rate")
    return options


def raise_keyboard_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


async def one_run(cluster: Cluster, options: argparse.Namespace, run: Run,
                  with_memory: bool) -> None:
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            await measure(cluster, options, run, with_memory)
    finally:
        await close_run(run)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)  # stop the servers on SIGTERM too
    sockets = options.agents * (options.max_chats + 1) + options.memory_agents * (
        options.memory_chats + 1)
    raise_open_files(sockets * 2 + FD_HEADROOM)
    env = {"AGENT_GRACE_S": str(GRACE_S)}
    if options.frame_rate:
        env["FRAME_RATE"] = str(options.frame_rate)
    runs: list[Run] = []
    status = 0
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="concierge-relay-") as scratch:
        for index in range(options.runs):
            directory = Path(options.keep or scratch) / f"run{index + 1}"
            directory.mkdir(parents=True, exist_ok=True)
            cluster = Cluster(directory, ["A", "B"], options.workers, env,
                              redis_kind=options.redis)
            run = Run()
            runs.append(run)
            try:
                log(f"\n##### run {index + 1} of {options.runs}: {cluster.redis.describe()}; "
                    f"gunicorn A :{cluster['A'].port} and B "
                    f":{cluster['B'].port} ({options.workers} workers each)")
                cluster.start()
                log("workers: " + "; ".join(f"{name} {instance.worker_pids}" for name, instance
                                            in cluster.instances.items())
                    + f"; redis-server {cluster.redis_pids}; this client {os.getpid()}")
                asyncio.run(one_run(cluster, options, run, index < options.memory_runs))
            except KeyboardInterrupt:
                log("\ninterrupted: stopping the servers")
                status = 130
                break
            except (RuntimeError, TimeoutError) as exc:
                log(f"\nthe benchmark could not measure: {exc}")
                status = 1
                break
            finally:
                cluster.stop()
    if status != 130:
        report(options, runs)
        log(f"\n{len(runs)} run(s) in {(time.monotonic() - began) / 60:.1f} min"
            + (f"; logs and GC pauses kept in {options.keep}" if options.keep else ""))
    return status


if __name__ == "__main__":
    sys.exit(main())
