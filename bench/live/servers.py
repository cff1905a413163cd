"""The servers the benchmark measures: the tests' redis-server and gunicorn (tests/support/),
run the way the benchmark needs them, with a probe of the workers' collector and a reading of
their log."""

from __future__ import annotations

import collections
import datetime
import math
import os
import re
import resource
import textwrap
import time
from pathlib import Path

from bench.live import MS_PER_S
from bench.live.meters import GC_LOG_MIN_MS, proc_rss_kb
from bench.live.redis_nodes import BenchRedis
from tests.support.gunicorn_server import GunicornServer
from tests.support.process import free_port

# Put on the workers' PYTHONPATH (never in the repository): logs the collector's pauses of each
# process to GC_LOG.<pid> as "monotonic_s generation pause_ms". CLOCK_MONOTONIC is system-wide,
# so the benchmark can place each pause in its phases.
SITECUSTOMIZE = textwrap.dedent("""\
    # Written by bench/live/servers.py: log this process's garbage-collector pauses.
    import gc, os, time
    _log = os.environ.get("CONCIERGE_BENCH_GC_LOG")
    if _log:
        _min_s = float(os.environ.get("CONCIERGE_BENCH_GC_MIN_MS", "1")) / 1000
        _began = [0.0]

        def _bench_gc_probe(phase, info):
            if phase == "start":
                _began[0] = time.perf_counter()
                return
            pause = time.perf_counter() - _began[0]
            if pause >= _min_s or info["generation"] == 2:
                with open(f"{_log}.{os.getpid()}", "a") as out:
                    out.write(f"{time.monotonic():.6f} {info['generation']} {pause * 1000:.3f}\\n")

        gc.callbacks.append(_bench_gc_probe)
""")


LOG_PROBLEM_WORDS = (" WARNING ", " ERROR ", " CRITICAL ", "[WARNING]", "[ERROR]", "[CRITICAL]",
                     "WORKER TIMEOUT")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b.*")  # ends a traceback
LOG_KIND_CHARS = 140
# runtime/logs.py: "%(asctime)s %(levelname)s [%(process)d] ..."; gunicorn: "[time +0000] [pid]"
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
LOG_PREFIX = re.compile(r"^(\S+ \S+ |\[[^]]*\] )(\S+ )?\[\d+\] ")
CONVERSATION_ID = re.compile(r"c_[A-Za-z0-9_-]{10,}")
WALL_MINUS_MONOTONIC_S = time.time() - time.monotonic()  # to place log lines on the run's clock


def log_line_monotonic(line: str) -> float | None:
    """The monotonic time of a runtime/logs.py line (its asctime is local wall time), or None."""
    match = LOG_TIME.match(line)
    if match is None:
        return None
    wall = datetime.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").timestamp()
    return wall + int(match[2]) / MS_PER_S - WALL_MINUS_MONOTONIC_S


def raise_open_files(wanted: int) -> tuple[int, int]:
    """Raise this process's open-files limit (inherited by the servers); return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted and os.geteuid() == 0:
        ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
        hard = min(wanted, ceiling)  # root may raise the hard limit, up to the kernel's
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class Servers:
    """A Redis (one redis-server, or a 3-master cluster: `redis_kind`; no persistence) and a
    gunicorn of our own, on free loopback ports, with their files in `directory`.

    The gunicorn serves in production mode, with its own origin allowed. Both run in sessions
    of their own: a Ctrl-C is the benchmark's to handle, and it stops them itself.
    """

    def __init__(self, directory: Path, workers: int, gc_probe: bool,
                 redis_kind: str = "single") -> None:
        self.directory = directory
        self.workers = workers
        self.gc_probe = gc_probe
        self.gc_log = directory / "gc"
        self.probe_dir = directory / "probe"
        self.redis = BenchRedis(directory, redis_kind)
        port = free_port()  # known before the start: the server's own origin is in its settings
        env = {"REDIS_URL": self.redis.service_url, "SECRET_KEY": "bench",
               "WEB_CONCURRENCY": str(workers), "CONCIERGE_ENV": "production",
               "ALLOWED_ORIGINS": f"http://127.0.0.1:{port}"}
        if gc_probe:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.probe_dir),
                                                              os.environ.get("PYTHONPATH")]))
            env["CONCIERGE_BENCH_GC_LOG"] = str(self.gc_log)
            env["CONCIERGE_BENCH_GC_MIN_MS"] = str(GC_LOG_MIN_MS)
        self.gunicorn = GunicornServer(directory, env, port=port, own_session=True)
        self.worker_pids: list[int] = []

    @property
    def port(self) -> int:
        return self.gunicorn.port

    @property
    def redis_ports(self) -> list[int]:
        return self.redis.ports

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/visitor"

    @property
    def origin(self) -> str:
        return self.gunicorn.url  # the server's own origin: allowed by its ALLOWED_ORIGINS

    @property
    def redis_pids(self) -> list[int]:
        return self.redis.pids

    @property
    def master_pid(self) -> int:
        return self.gunicorn.process.pid

    def start(self) -> None:
        """Start Redis (every node), then gunicorn, and wait until every worker runs."""
        if self.gc_probe:
            self.probe_dir.mkdir()
            (self.probe_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.redis.start()
        self.gunicorn.start()
        self.worker_pids = self.gunicorn.worker_pids()

    def stop(self) -> None:
        self.gunicorn.stop()
        self.redis.stop()

    def workers_unchanged(self) -> bool:
        return self.gunicorn.process is not None and \
            self.gunicorn.worker_pids() == self.worker_pids

    def workers_rss_kb(self) -> int:
        return sum(proc_rss_kb(pid) for pid in self.worker_pids)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.gunicorn.stderr()[-chars:]
        except OSError:
            return ""


    def log_events(self, start: float = -math.inf, end: float = math.inf
                   ) -> collections.Counter:
        """Warnings and errors of the server's log between two monotonic times, by kind.

        A kind is the line without its time, pid and conversation ids, so that 5,000 failed
        subscriptions count as one kind. A traceback's last line (the exception) is a kind of
        its own, at the time of the record it belongs to.
        """
        try:
            lines = self.gunicorn.stderr().splitlines()
        except OSError:
            return collections.Counter()
        kinds: collections.Counter = collections.Counter()
        stamp: float | None = None  # of the last line that had a time
        for line in lines:
            stamp = log_line_monotonic(line) or stamp
            if any(word in line for word in LOG_PROBLEM_WORDS):
                kind = LOG_PREFIX.sub("", line)
            elif EXCEPTION_LINE.match(line):
                kind = "exception: " + line
            else:
                continue
            if stamp is not None and not start <= stamp <= end:
                continue
            kinds[CONVERSATION_ID.sub("c_…", kind).strip()[:LOG_KIND_CHARS]] += 1
        return kinds

    def gc_pauses(self, start: float, end: float) -> list[tuple[int, float]]:
        """The workers' collector pauses (generation, ms) logged between two monotonic times."""
        pauses = []
        for pid in self.worker_pids:
            try:
                lines = Path(f"{self.gc_log}.{pid}").read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                stamp, generation, pause_ms = line.split()
                if start <= float(stamp) <= end:
                    pauses.append((int(generation), float(pause_ms)))
        return pauses

