"""Benchmark the visitor socket end to end: sockets held, memory per socket, bot turn latency.

Run from the repository root:

    .venv/bin/python bench/visitors.py              # full run: 10,000 sockets, 5 rates (~2 min)
    .venv/bin/python bench/visitors.py --quick      # smoke run: 500 sockets, 2 short rates (~25 s)
    .venv/bin/python bench/visitors.py --sockets 5000 --workers 2 --rates 250,500 --duration 5
    .venv/bin/python bench/visitors.py --keep out/bench   # keep logs, GC pauses and every turn

It starts its own redis-server (no persistence) and its own gunicorn
(`gunicorn -c gunicorn.conf.py app:app`, gevent workers, bound to 127.0.0.1),
drives them with an asyncio WebSocket client (`websockets`) on loopback, and
stops everything at the end, on Ctrl-C and on errors. It measures, against
DESIGN.md ("Figures we hold ourselves to", 2-core machine):

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
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import functools
import gc
import http.client
import json
import math
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"

# --- targets (DESIGN.md, "Figures we hold ourselves to") ----------------------------------
TARGET_SOCKETS = 10_000  # concurrent visitor sockets on one instance, at least
TARGET_KB_PER_SOCKET = 100.0  # server memory per socket, under
TARGET_P99_MS = 20.0  # bot turn p99, under ...
TARGET_RATE = 500  # ... at this many turns a second

# --- what to measure (defaults; flags override) -------------------------------------------
DEFAULT_SOCKETS = 10_000
DEFAULT_WORKERS = 2
DEFAULT_RATES = (100, 250, 500, 750, 1_000)  # offered turns a second
DEFAULT_DURATION_S = 10.0  # seconds of sending per rate
QUICK = {"sockets": 500, "rates": (100, 250), "duration": 3.0}

# --- the client's manners -----------------------------------------------------------------
HANDSHAKES_IN_FLIGHT = 100  # sockets opening at once (connect + hello + welcome): no SYN flood
HANDSHAKE_TIMEOUT_S = 30.0  # per socket, TCP + upgrade
WELCOME_TIMEOUT_S = 30.0  # per socket, hello -> welcome
RAMP_TIMEOUT_S = 240.0  # the whole ramp of N sockets
PROGRESS_EVERY = 1_000  # sockets, between progress lines while ramping
CLOSE_TIMEOUT_S = 2.0  # per socket, for the closing handshake at the end
CLOSE_ALL_TIMEOUT_S = 60.0  # all sockets; what is left is aborted
WARMUP_SOCKETS = 100  # opened and closed before the baseline: first-use costs are not per socket
SETTLE_S = 3.0  # idle time before reading memory, so the ramp's garbage is collected
RSS_SAMPLES = 3  # memory readings, SAMPLE_GAP_S apart; the median is used
SAMPLE_GAP_S = 1.0

# --- the turn phases ----------------------------------------------------------------------
ACTIVE_MIN = 200  # conversations that take turns, at least
MAX_TURNS_PER_CONVERSATION_S = 2.0  # the server serialises a conversation's turns: spread the rate
TURN_TEXT = "shipping"  # the default flow's intent: answered by `say`s only (no `call`)
REPLY_PREFIX = "We ship within"  # the first bot message of that answer
WARMUP_RATE = 200  # turns a second while every active conversation takes one unmeasured turn
PHASE_LEAD_S = 0.05  # from planning a phase to its first send
DRAIN_TIMEOUT_S = 5.0  # after the last send, wait this long for answers; later = lost
PHASE_GAP_S = 1.0  # idle between phases
YIELD_EVERY = 20  # a late scheduler yields to the readers at least every this many sends
PERCENTILES = (50, 90, 99)
OTHERS_NOTE_PERCENT = 10.0  # % of a core used by processes not of this benchmark: worth saying
CPU_BOUND_PERCENT = 90.0  # % of one core: a worker this busy (or all cores this busy) is saturated
LATE_NOTE_MS = 5.0  # sends later than this behind the clock (p99) mean the client is short of CPU

# --- processes ----------------------------------------------------------------------------
START_TIMEOUT_S = 60.0  # gunicorn: two workers importing gevent, Flask and the flows
REDIS_START_TIMEOUT_S = 10.0
POLL_S = 0.05
STOP_TIMEOUT_S = 30.0  # above gunicorn's graceful_timeout (20 s): SIGTERM gets its chance
WORKER_CONNECTIONS = 10_000  # gunicorn.conf.py's worker_connections (not imported: it patches)
FD_HEADROOM = 4_096  # open files beyond one per socket: Redis pools, logs, listeners
RUN_TIMEOUT_S = 900.0  # the whole measurement, whatever the flags: the benchmark always ends
GC_LOG_MIN_MS = 1.0  # collector pauses at least this long are logged (and every full one)

CLK_TCK = os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat counts CPU time in these ticks
KIB = 1024
MS_PER_S = 1_000.0

# Put on the workers' PYTHONPATH (never in the repository): logs the collector's pauses of each
# process to GC_LOG.<pid> as "monotonic_s generation pause_ms". CLOCK_MONOTONIC is system-wide,
# so the benchmark can place each pause in its phases.
SITECUSTOMIZE = textwrap.dedent("""\
    # Written by bench/visitors.py: log this process's garbage-collector pauses.
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
# chat/logs.py: "%(asctime)s %(levelname)s [%(process)d] ..."; gunicorn's own: "[time +0000] [pid]"
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
LOG_PREFIX = re.compile(r"^(\S+ \S+ |\[[^]]*\] )(\S+ )?\[\d+\] ")
CONVERSATION_ID = re.compile(r"c_[A-Za-z0-9_-]{10,}")
WALL_MINUS_MONOTONIC_S = time.time() - time.monotonic()  # to place log lines on the run's clock


def log_line_monotonic(line: str) -> float | None:
    """The monotonic time of a chat/logs.py line (its asctime is local wall time), or None."""
    match = LOG_TIME.match(line)
    if match is None:
        return None
    wall = datetime.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").timestamp()
    return wall + int(match[2]) / MS_PER_S - WALL_MINUS_MONOTONIC_S


def log(text: str = "") -> None:
    print(text, flush=True)


# ==========================================================================================
# /proc
# ==========================================================================================


def proc_cpu_ticks(pid: int) -> int:
    """Return the user + system CPU time of a process, in clock ticks (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 is fields[0]
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)


def proc_rss_kb(pid: int) -> int:
    """Return a process's resident memory (VmRSS) in KB, or 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def proc_children(pid: int) -> list[int]:
    """Return the pids whose parent is `pid` (gunicorn's workers, for its master)."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            children.append(int(entry))
    return sorted(children)


class CpuMeter:
    """CPU time of named groups of processes between two samples, as % of one core.

    It adds "others": what the rest of the machine used (/proc/stat busy time minus the
    groups), so a figure taken while something else ran says so.
    """

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups

    def sample(self) -> tuple[float, dict[str, int]]:
        ticks = {name: sum(proc_cpu_ticks(pid) for pid in pids)
                 for name, pids in self.groups.items()}
        ticks[OTHERS] = machine_busy_ticks() - sum(ticks.values())
        return time.monotonic(), ticks

    @staticmethod
    def percent(before: tuple[float, dict[str, int]], after: tuple[float, dict[str, int]]
                ) -> dict[str, float]:
        wall_s = max(after[0] - before[0], 1e-9)
        return {name: max(0.0, 100.0 * (after[1][name] - before[1][name]) / CLK_TCK / wall_s)
                for name in after[1]}


OTHERS = "others"


def machine_busy_ticks() -> int:
    """Busy CPU time of the whole machine (all cores), in clock ticks."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return sum(fields[:8]) - idle - iowait  # user nice system idle iowait irq softirq steal


# ==========================================================================================
# The servers
# ==========================================================================================


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen | None) -> None:
    """SIGTERM; then SIGKILL to its group (the servers run in sessions of their own)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its group: the gunicorn master and its workers
        process.wait()


class Servers:
    """A redis-server and a gunicorn of our own, on free loopback ports, in `directory`."""

    def __init__(self, directory: Path, workers: int, gc_probe: bool) -> None:
        self.directory = directory
        self.workers = workers
        self.gc_probe = gc_probe
        self.redis_port = free_port()
        self.port = free_port()
        self.redis: subprocess.Popen | None = None
        self.gunicorn: subprocess.Popen | None = None
        self.gunicorn_log = directory / "gunicorn.log"
        self.gc_log = directory / "gc"
        self.worker_pids: list[int] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/visitor"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"  # the server's own origin: allowed by default

    def start(self) -> None:
        self._start_redis()
        self._start_gunicorn()

    def stop(self) -> None:
        stop_process(self.gunicorn)
        stop_process(self.redis)

    def _start_redis(self) -> None:
        command = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                   "--dir", str(self.directory), "--save", "", "--appendonly", "no",
                   "--daemonize", "no"]
        with (self.directory / "redis.log").open("w") as out:
            self.redis = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)  # Ctrl-C is ours to handle
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while not self._redis_answers():
            if self.redis.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start:\n"
                                   + (self.directory / "redis.log").read_text()[-2000:])
            time.sleep(POLL_S)

    def _redis_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _start_gunicorn(self) -> None:
        env = {**os.environ, "PORT": str(self.port),
               "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0", "SECRET_KEY": "bench",
               "WEB_CONCURRENCY": str(self.workers), "CONCIERGE_ENV": "production",
               "ALLOWED_ORIGINS": self.origin}
        if self.gc_probe:
            probe_dir = self.directory / "probe"
            probe_dir.mkdir()
            (probe_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(probe_dir),
                                                              env.get("PYTHONPATH")]))
            env["CONCIERGE_BENCH_GC_LOG"] = str(self.gc_log)
            env["CONCIERGE_BENCH_GC_MIN_MS"] = str(GC_LOG_MIN_MS)
        # --bind overrides the config's 0.0.0.0: the benchmark listens on loopback only.
        command = [str(GUNICORN), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}",
                   "app:app"]
        with self.gunicorn_log.open("w") as out:
            self.gunicorn = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (self._healthz() and len(proc_children(self.gunicorn.pid)) == self.workers):
            if self.gunicorn.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start:\n" + self.log_tail())
            time.sleep(POLL_S)
        self.worker_pids = proc_children(self.gunicorn.pid)

    def _healthz(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def redis_commands(self) -> collections.Counter:
        """Calls per command so far (INFO commandstats), read over a plain socket."""
        with socket.create_connection(("127.0.0.1", self.redis_port), timeout=5) as conn:
            conn.sendall(b"INFO commandstats\r\n")
            reply = b""
            while not reply.startswith(b"$") or len(reply) < reply.index(b"\r\n") + 2 + int(
                    reply[1:reply.index(b"\r\n")]):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                reply += chunk
        calls: collections.Counter = collections.Counter()
        for name, count in re.findall(r"cmdstat_([^:]+):calls=(\d+)", reply.decode()):
            if name != "info":
                calls[name] = int(count)
        return calls

    def workers_unchanged(self) -> bool:
        return self.gunicorn is not None and proc_children(self.gunicorn.pid) == self.worker_pids

    def workers_rss_kb(self) -> int:
        return sum(proc_rss_kb(pid) for pid in self.worker_pids)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.gunicorn_log.read_text()[-chars:]
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
            lines = self.gunicorn_log.read_text().splitlines()
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


# ==========================================================================================
# The client's own collector
# ==========================================================================================


class ClientGc:
    """Record this process's collector pauses (a pause here delays what the client measures)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, int, float]] = []  # (monotonic end, generation, ms)
        self._began = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        pause_ms = (time.perf_counter() - self._began) * MS_PER_S
        if pause_ms >= GC_LOG_MIN_MS or info["generation"] == 2:
            self.pauses.append((time.monotonic(), info["generation"], pause_ms))

    def between(self, start: float, end: float) -> list[tuple[int, float]]:
        return [(generation, ms) for stamp, generation, ms in self.pauses if start <= stamp <= end]


def describe_pauses(pauses: list[tuple[int, float]]) -> str:
    if not pauses:
        return f"none >= {GC_LOG_MIN_MS:g} ms"
    full = sum(1 for generation, _ in pauses if generation == 2)
    return (f"{len(pauses)} (full: {full}), longest {max(ms for _, ms in pauses):.1f} ms, "
            f"total {sum(ms for _, ms in pauses):.0f} ms")


# ==========================================================================================
# Visitors
# ==========================================================================================

HELLO = json.dumps({"type": "hello", "token": None})


@dataclass
class Opened:
    """A visitor socket past `welcome`."""

    ws: ClientConnection
    conversation: str
    deflate_offered: bool
    deflate_accepted: bool


async def open_visitor(url: str, origin: str) -> Opened:
    """Open a visitor socket as a browser does (offering compression), say hello, await welcome."""
    ws = await connect(url, origin=Origin(origin), compression="deflate", proxy=None,
                       ping_interval=None, ping_timeout=None,  # browsers send no pings
                       open_timeout=HANDSHAKE_TIMEOUT_S, close_timeout=CLOSE_TIMEOUT_S)
    try:
        await ws.send(HELLO)
        async with asyncio.timeout(WELCOME_TIMEOUT_S):
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("type") == "welcome":
                    break
        offered = "permessage-deflate" in ws.request.headers.get("Sec-WebSocket-Extensions", "")
        accepted = any(ext.name == "permessage-deflate" for ext in ws.protocol.extensions)
        return Opened(ws, frame["conversation"], offered, accepted)
    except BaseException:
        ws.transport.abort()
        raise


@dataclass
class Ramp:
    opened: list[Opened] = field(default_factory=list)
    failures: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0


async def open_many(count: int, url: str, origin: str, progress: bool) -> Ramp:
    """Open `count` visitor sockets, at most HANDSHAKES_IN_FLIGHT at a time."""
    ramp = Ramp()
    gate = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
    began = time.monotonic()

    async def one() -> None:
        async with gate:
            try:
                ramp.opened.append(await open_visitor(url, origin))
            except Exception as exc:  # noqa: BLE001 - every failure is counted by its kind
                ramp.failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
            done = len(ramp.opened) + sum(ramp.failures.values())
            if progress and done % PROGRESS_EVERY == 0:
                log(f"  {done:>6,} / {count:,} tried, {len(ramp.opened):,} open, "
                    f"{time.monotonic() - began:5.1f} s")

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    try:
        async with asyncio.timeout(RAMP_TIMEOUT_S):
            await asyncio.gather(*tasks)
    except TimeoutError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ramp.failures[f"not open within the ramp's {RAMP_TIMEOUT_S:g} s"] += (
            count - len(ramp.opened) - sum(ramp.failures.values()))
    ramp.seconds = time.monotonic() - began
    return ramp


async def close_all(sockets: Iterable[ClientConnection]) -> None:
    """Close sockets with a closing handshake, bounded in time; abort whatever is left."""
    sockets = list(sockets)
    gate = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT * 5)

    async def one(ws: ClientConnection) -> None:
        async with gate:
            await ws.close()

    try:
        async with asyncio.timeout(CLOSE_ALL_TIMEOUT_S):
            await asyncio.gather(*(one(ws) for ws in sockets), return_exceptions=True)
    except TimeoutError:
        pass
    for ws in sockets:
        if ws.transport is not None and not ws.transport.is_closing():
            ws.transport.abort()


def still_open(sockets: Iterable[Opened]) -> int:
    return sum(1 for item in sockets if item.ws.close_code is None
               and item.ws.protocol.close_rcvd is None and not item.ws.transport.is_closing())


# ==========================================================================================
# Bot turns
# ==========================================================================================

# MONITOR prints `+<time> [<db> <client address, or "lua" inside a script>] "<command>" ...`
MONITOR_LINE = re.compile(rb'^\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"')


class RedisMonitor:
    """Count the commands clients send to Redis, not those run inside scripts.

    A pipeline's commands count one by one, so this is an upper bound on round trips.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.calls: collections.Counter = collections.Counter()

    async def __aenter__(self) -> RedisMonitor:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(b"MONITOR\r\n")
        await self.writer.drain()
        await self.reader.readline()  # +OK
        self.task = asyncio.create_task(self.read())
        return self

    async def read(self) -> None:
        while line := await self.reader.readline():
            match = MONITOR_LINE.match(line)
            if match and match[1] != b"lua":
                self.calls[match[2].decode().lower()] += 1

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.sleep(0.2)  # the last answers' commands are still on their way
        self.task.cancel()
        self.writer.close()


class Turn:
    """One visitor message and the bot's answer to it."""

    __slots__ = ("id", "due", "sent", "ack_seq", "answered", "phase")

    def __init__(self, turn_id: str, due: float, phase: Phase) -> None:
        self.id = turn_id
        self.due = due  # when the clock said to send it (perf_counter seconds)
        self.sent = 0.0  # when it was handed to the socket
        self.ack_seq: int | None = None
        self.answered: float | None = None  # when the answer's first bot message arrived
        self.phase = phase


@dataclass
class Phase:
    rate: float
    turns: list[Turn] = field(default_factory=list)
    answered: int = 0


@dataclass
class Counters:
    """What the readers saw that no turn accounts for."""

    errors: collections.Counter = field(default_factory=collections.Counter)
    closed: collections.Counter = field(default_factory=collections.Counter)  # by close frame
    unmatched_replies: int = 0
    sends_on_closed: int = 0


class Talker:
    """An active visitor: takes turns and reads everything its socket gets."""

    def __init__(self, opened: Opened, counters: Counters) -> None:
        self.ws = opened.ws
        self.counters = counters
        self.pending: collections.deque[Turn] = collections.deque()  # oldest first
        self.unacked: dict[str, Turn] = {}
        self.reader = asyncio.create_task(self.read())

    async def send(self, turn: Turn) -> None:
        turn.sent = time.perf_counter()
        if self.ws.close_code is not None or self.ws.protocol.close_rcvd is not None:
            self.counters.sends_on_closed += 1  # the server closed it: this turn is lost
            return
        self.pending.append(turn)
        self.unacked[turn.id] = turn
        try:
            await self.ws.send(json.dumps({"type": "message", "id": turn.id, "text": TURN_TEXT}))
        except ConnectionClosed:
            self.counters.sends_on_closed += 1

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                received = time.perf_counter()
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "ack":
                    turn = self.unacked.pop(frame.get("id"), None)
                    if turn is not None:
                        turn.ack_seq = int(frame["seq"])
                elif kind == "message" and frame.get("from") == "bot":
                    if str(frame.get("text", "")).startswith(REPLY_PREFIX):
                        self.answer(int(frame["seq"]), received)
                elif kind == "error":
                    self.counters.errors[frame.get("code")] += 1
        except ConnectionClosed:
            pass
        rcvd = self.ws.protocol.close_rcvd
        self.counters.closed[f"{rcvd.code} {rcvd.reason}" if rcvd else "no close frame"] += 1

    def answer(self, seq: int, received: float) -> None:
        """The first message of an answer: it answers the oldest acked turn below it."""
        if self.pending and self.pending[0].ack_seq is not None and seq > self.pending[0].ack_seq:
            turn = self.pending.popleft()
            turn.answered = received
            turn.phase.answered += 1
        else:
            self.counters.unmatched_replies += 1

    def forget_pending(self) -> None:
        self.pending.clear()
        self.unacked.clear()


class TurnClock:
    """Send turns at a fixed offered rate, round robin over the talkers: open loop."""

    def __init__(self, talkers: list[Talker]) -> None:
        self.talkers = talkers
        self.next_talker = 0
        self.next_id = 0

    async def run(self, rate: float, duration_s: float,
                  on_sent: Callable[[Phase], None] | None = None) -> Phase:
        """Send `rate` x `duration_s` turns, call `on_sent`, then wait (bounded) for answers."""
        phase = Phase(rate)
        count = max(1, round(rate * duration_s))
        start = time.perf_counter() + PHASE_LEAD_S
        for index in range(count):
            due = start + index / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            elif index % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # behind the clock: still let the readers read
            talker = self.talkers[self.next_talker]
            self.next_talker = (self.next_talker + 1) % len(self.talkers)
            self.next_id += 1
            turn = Turn(f"t{self.next_id}", due, phase)
            phase.turns.append(turn)
            await talker.send(turn)
        if on_sent is not None:
            on_sent(phase)
        deadline = time.perf_counter() + DRAIN_TIMEOUT_S
        while phase.answered < len(phase.turns) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        for talker in self.talkers:  # a late answer must not be taken for the next phase's
            talker.forget_pending()
        return phase


def write_turns(path: Path, phase: Phase) -> None:
    """Append a phase's turns: offered rate, monotonic send time (s), latency (ms; empty: lost)."""
    new = not path.exists()
    offset = time.monotonic() - time.perf_counter()  # to the clock the GC logs use
    with path.open("a") as out:
        if new:
            out.write("rate,sent_monotonic_s,latency_ms\n")
        for turn in phase.turns:
            latency = "" if turn.answered is None else f"{(turn.answered - turn.sent) * 1e3:.3f}"
            out.write(f"{phase.rate:g},{turn.sent + offset:.6f},{latency}\n")


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (inf stands for an unanswered turn)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class RateResult:
    rate: float
    sent: int
    answered: int
    seconds: float  # from the first send to the last one
    latency_ms: dict[int, float]
    max_ms: float
    lag_p99_ms: float  # how late the client sent, behind its clock
    cpu: dict[str, float]
    worker_cpu: list[float]
    server_gc: list[tuple[int, float]]
    client_gc: list[tuple[int, float]]
    server_events: collections.Counter = field(default_factory=collections.Counter)
    redis_calls: collections.Counter = field(default_factory=collections.Counter)  # by command
    worker_cpu_ms_per_turn: float = math.nan

    @property
    def lost(self) -> int:
        return self.sent - self.answered


def summarize_phase(phase: Phase, cpu: dict[str, float], worker_cpu: list[float],
                    server_gc: list[tuple[int, float]], client_gc: list[tuple[int, float]]
                    ) -> RateResult:
    latencies = sorted((turn.answered - turn.sent) * MS_PER_S if turn.answered is not None
                       else math.inf for turn in phase.turns)
    lags = sorted(max(0.0, turn.sent - turn.due) * MS_PER_S for turn in phase.turns)
    sends = [turn.sent for turn in phase.turns]
    return RateResult(
        rate=phase.rate, sent=len(phase.turns), answered=phase.answered,
        seconds=max(sends) - min(sends) if sends else 0.0,
        latency_ms={pct: percentile(latencies, pct) for pct in PERCENTILES},
        max_ms=latencies[-1] if latencies else math.nan,
        lag_p99_ms=percentile(lags, 99), cpu=cpu, worker_cpu=worker_cpu,
        server_gc=server_gc, client_gc=client_gc)


# ==========================================================================================
# The run
# ==========================================================================================


@dataclass
class Results:
    sockets_wanted: int = 0
    ramp: Ramp | None = None
    held_after_measure: int = 0
    held_at_end: int = 0
    deflate_offered: int = 0
    deflate_accepted: int = 0
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    rss_per_worker_kb: list[int] = field(default_factory=list)
    fds_per_worker: list[int] = field(default_factory=list)
    redis_rss_delta_kb: int = 0
    client_rss_kb: int = 0
    ramp_cpu: dict[str, float] = field(default_factory=dict)
    hold_gc: list[tuple[int, float]] = field(default_factory=list)  # workers', ramp + hold
    idle_cpu: dict[str, float] = field(default_factory=dict)
    active: int = 0
    round_trips: collections.Counter = field(default_factory=collections.Counter)  # warm-up's
    warmup_turns: int = 0
    rates: list[RateResult] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    open_files: tuple[int, int] = (0, 0)
    opened_all: list[Opened] = field(default_factory=list)  # every socket this run opened

    @property
    def held(self) -> int:
        return len(self.ramp.opened) if self.ramp else 0

    @property
    def kb_per_socket(self) -> float:
        return (self.rss_after_kb - self.rss_before_kb) / self.held if self.held else math.nan


def median_rss(servers: Servers) -> int:
    samples = []
    for index in range(RSS_SAMPLES):
        if index:
            time.sleep(SAMPLE_GAP_S)  # blocking on purpose: the sockets are idle
        samples.append(servers.workers_rss_kb())
    return sorted(samples)[len(samples) // 2]


async def measure(options: argparse.Namespace, servers: Servers, results: Results) -> None:
    """Every phase of the run; sockets it opens are closed by the caller's `finally`."""
    groups = {"workers": servers.worker_pids, "redis-server": [servers.redis.pid],
              "gunicorn master": [servers.gunicorn.pid], "client": [os.getpid()]}
    meter = CpuMeter(groups)
    worker_meter = CpuMeter({str(pid): [pid] for pid in servers.worker_pids})
    worker_names = [str(pid) for pid in servers.worker_pids]
    client_gc = ClientGc()
    gc.callbacks.append(client_gc)
    opened_all = results.opened_all  # closed by run()'s finally, whatever happens here

    # Warm-up: first uses (Redis pools, the hub's subscription, templates) are not per socket.
    log(f"warm-up: {WARMUP_SOCKETS} sockets, opened and closed")
    warm = await open_many(WARMUP_SOCKETS, servers.url, servers.origin, progress=False)
    if not warm.opened:
        raise RuntimeError(f"no warm-up socket opened: {dict(warm.failures)}\n"
                           + servers.log_tail())
    await close_all(item.ws for item in warm.opened)
    await asyncio.sleep(SETTLE_S)
    gc.collect()
    results.rss_before_kb = median_rss(servers)
    redis_before_kb = proc_rss_kb(servers.redis.pid)
    log(f"workers' RSS before: {results.rss_before_kb / KIB:,.1f} MB "
        f"({len(servers.worker_pids)} workers)")

    # 1. Sockets held.
    count = options.sockets
    results.sockets_wanted = count
    log(f"\n== sockets held: opening {count:,} visitor sockets, "
        f"{HANDSHAKES_IN_FLIGHT} handshakes in flight ==")
    before, ramp_began = meter.sample(), time.monotonic()
    ramp = await open_many(count, servers.url, servers.origin, progress=count >= 2 * PROGRESS_EVERY)
    results.ramp_cpu = meter.percent(before, meter.sample())
    results.ramp = ramp
    opened_all.extend(ramp.opened)
    results.deflate_offered = sum(item.deflate_offered for item in ramp.opened)
    results.deflate_accepted = sum(item.deflate_accepted for item in ramp.opened)
    log(f"held {len(ramp.opened):,} of {count:,} in {ramp.seconds:.1f} s "
        f"({len(ramp.opened) / max(ramp.seconds, 1e-9):,.0f} sockets/s)")
    for reason, times in ramp.failures.most_common(5):
        log(f"  failed x{times}: {reason}")
    log(f"permessage-deflate: offered on {results.deflate_offered:,}, accepted by the server on "
        f"{results.deflate_accepted:,}")

    gc.collect()
    gc.freeze()  # the client's sockets are long-lived: keep its own full collections short
    await asyncio.sleep(SETTLE_S)
    before = meter.sample()
    results.rss_after_kb = median_rss(servers)
    results.idle_cpu = meter.percent(before, meter.sample())
    results.rss_per_worker_kb = [proc_rss_kb(pid) for pid in servers.worker_pids]
    results.fds_per_worker = [proc_fd_count(pid) for pid in servers.worker_pids]
    results.redis_rss_delta_kb = proc_rss_kb(servers.redis.pid) - redis_before_kb
    results.client_rss_kb = proc_rss_kb(os.getpid())
    results.held_after_measure = still_open(ramp.opened)
    results.hold_gc = servers.gc_pauses(ramp_began, time.monotonic())
    log(f"worker GC pauses while opening and holding them: {describe_pauses(results.hold_gc)}")
    log(f"workers' RSS with the sockets: {results.rss_after_kb / KIB:,.1f} MB "
        f"-> {results.kb_per_socket:.1f} KB a socket; per worker: "
        + ", ".join(f"{kb / KIB:,.0f} MB / {fds:,} fds" for kb, fds in
                    zip(results.rss_per_worker_kb, results.fds_per_worker, strict=True)))
    log(f"still open after measuring: {results.held_after_measure:,}")

    # 2. Bot turns, with the idle sockets still open.
    rates = options.rates
    active = max(ACTIVE_MIN, math.ceil(max(rates) / MAX_TURNS_PER_CONVERSATION_S))
    results.active = active
    log(f"\n== bot turns: {active} more visitors say '{TURN_TEXT}', open loop, "
        f"{options.duration:g} s a rate; the {len(ramp.opened):,} idle sockets stay open ==")
    talking = await open_many(active, servers.url, servers.origin, progress=False)
    opened_all.extend(talking.opened)
    if len(talking.opened) < active:
        raise RuntimeError(f"only {len(talking.opened)} of {active} active visitors opened: "
                           f"{dict(talking.failures)}")
    talkers = [Talker(item, results.counters) for item in talking.opened]
    clock = TurnClock(talkers)
    async with RedisMonitor(servers.redis_port) as monitor:  # what one turn asks of Redis
        warmup = await clock.run(WARMUP_RATE, active / WARMUP_RATE)
    results.round_trips = monitor.calls
    results.warmup_turns = len(warmup.turns)
    log(f"warm-up: {len(warmup.turns)} turns at {WARMUP_RATE}/s, "
        f"{monitor.calls.total() / max(len(warmup.turns), 1):.1f} Redis commands sent a turn "
        "(a pipeline's one by one; scripts' own not counted: "
        + ", ".join(f"{name} {calls / max(len(warmup.turns), 1):.1f}"
                    for name, calls in monitor.calls.most_common(8)) + ")")
    if warmup.answered < len(warmup.turns):
        raise RuntimeError(
            f"warm-up: the bot answered {warmup.answered} of {len(warmup.turns)} turns with "
            f"'{REPLY_PREFIX}...'; has flows/default.yaml changed its answer to '{TURN_TEXT}'? "
            f"errors: {dict(results.counters.errors)}")
    gc.collect()
    gc.freeze()

    def snapshot(into: dict, phase: Phase) -> None:
        into.update(cpu=meter.sample(), workers=worker_meter.sample(),
                    commands=servers.redis_commands(), answered=phase.answered)

    log(f"{'offered/s':>9} {'sent':>6} {'lost':>5} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'late p99':>8}  CPU % of a core: workers (each) | redis | client | "
        "other processes")
    for rate in rates:
        await asyncio.sleep(PHASE_GAP_S)
        t0, commands_before = time.monotonic(), servers.redis_commands()
        before, worker_before = meter.sample(), worker_meter.sample()
        at_last_send: dict = {}  # CPU while sending at the rate, without the drain's idle tail
        phase = await clock.run(rate, options.duration,
                                on_sent=functools.partial(snapshot, at_last_send))

        t1 = time.monotonic()
        cpu = meter.percent(before, at_last_send["cpu"])
        per_worker = worker_meter.percent(worker_before, at_last_send["workers"])
        worker_cpu = [per_worker[name] for name in worker_names]
        result = summarize_phase(phase, cpu, worker_cpu, servers.gc_pauses(t0, t1),
                                 client_gc.between(t0, t1))
        result.server_events = servers.log_events(t0, t1)
        result.redis_calls = at_last_send["commands"] - commands_before
        worker_ticks = sum(at_last_send["workers"][1][name] - worker_before[1][name]
                           for name in worker_names)
        # per turn answered while sending: under overload, turns sent but unanswered cost less
        result.worker_cpu_ms_per_turn = (worker_ticks / CLK_TCK * MS_PER_S
                                         / max(at_last_send["answered"], 1))
        results.rates.append(result)
        if options.keep:
            write_turns(servers.directory / "turns.csv", phase)
        lat = result.latency_ms
        log(f"{rate:>9g} {result.sent:>6} {result.lost:>5} {lat[50]:>7.1f} {lat[90]:>7.1f} "
            f"{lat[99]:>7.1f} {result.max_ms:>7.1f} {result.lag_p99_ms:>8.1f}  "
            f"{cpu['workers']:.0f} ({'+'.join(f'{c:.0f}' for c in worker_cpu)}) | "
            f"{cpu['redis-server']:.0f} | {cpu['client']:.0f} | {cpu[OTHERS]:.0f}")
        log(f"{'':>9} GC pauses: workers {describe_pauses(result.server_gc)}; "
            f"client {describe_pauses(result.client_gc)}")
        log(f"{'':>9} a turn answered: {result.worker_cpu_ms_per_turn:.2f} ms of worker CPU; "
            f"per turn sent, Redis ran "
            f"{result.redis_calls.total() / max(result.sent, 1):.1f} commands (scripts' included:"
            f" " + ", ".join(f"{name} {calls / max(result.sent, 1):.1f}"
                              for name, calls in result.redis_calls.most_common(5)) + ")")
        for kind, times in result.server_events.most_common(3):
            log(f"{'':>9} server log x{times}: {kind}")
        if not servers.workers_unchanged():
            raise RuntimeError("a gunicorn worker died and was replaced: figures are void\n"
                               + servers.log_tail())
    results.held_at_end = still_open(ramp.opened)


# ==========================================================================================
# The report
# ==========================================================================================


def git_revision() -> str:
    """The commit measured, and whether the working tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"{head or 'unknown'}{' + uncommitted changes' if dirty.strip() else ''}"


def verdict(ok: bool | None) -> str:
    return "SKIP" if ok is None else "PASS" if ok else "FAIL"


def cpu_line(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.0f}%" for name, value in cpu.items())


def latency_limits(result: RateResult, cores: int, workers: int) -> list[str]:
    """Say what plausibly bounds the latency at one rate: CPU, GC pauses, server incidents."""
    total = sum(result.cpu.values())
    busiest = max(result.worker_cpu, default=0.0)
    long_pauses = [ms for _, ms in result.server_gc if ms >= TARGET_P99_MS]
    reasons = []
    if busiest >= CPU_BOUND_PERCENT:
        reasons.append("a gevent worker is CPU-bound (each runs on one core)")
    if total >= CPU_BOUND_PERCENT * cores:
        reasons.append(f"the machine's {cores} cores are saturated")
    if long_pauses:
        reasons.append(f"{len(long_pauses)} worker GC pauses >= {TARGET_P99_MS:g} ms, longest "
                       f"{max(long_pauses):.0f} ms (PITFALLS 16)")
    if result.cpu[OTHERS] >= OTHERS_NOTE_PERCENT:
        reasons.append(f"other processes on the machine used {result.cpu[OTHERS]:.0f}% of a core"
                       " meanwhile: rerun on an idle machine")
    for kind, times in result.server_events.most_common(2):
        reasons.append(f"server log x{times}: {kind}")
    if result.lag_p99_ms > LATE_NOTE_MS:
        reasons.append(f"the client sent late (p99 {result.lag_p99_ms:.1f} ms behind its clock)")
    if not reasons:
        reasons.append("no saturation or pause seen: waits (Redis round trips, pub/sub) set it")
    split = (f"CPU: workers {result.cpu['workers']:.0f}% (each: "
             + "+".join(f"{c:.0f}" for c in result.worker_cpu)
             + f"), redis-server {result.cpu['redis-server']:.0f}%, client "
             f"{result.cpu['client']:.0f}%, others {result.cpu[OTHERS]:.0f}%: all {total:.0f}% of "
             f"{100 * cores}%; {result.worker_cpu_ms_per_turn:.2f} ms of worker CPU a turn answered"
             + (f" (the client and redis-server share the {cores} cores with the {workers} "
                "workers)" if workers + 2 > cores else ""))
    return reasons + [split]


def report(options: argparse.Namespace, results: Results, servers: Servers) -> None:
    cores = os.cpu_count() or 1
    log("\n" + "=" * 100)
    log("SUMMARY  (targets: DESIGN.md, 'Figures we hold ourselves to', for a 2-core machine)")
    log(f"machine: {cores} cores (os.cpu_count()), {platform.platform()}, Python "
        f"{platform.python_version()}; the load client runs on the same machine")
    log(f"code: {git_revision()}")
    log(f"server: gunicorn gevent, {options.workers} workers, CONCIERGE_ENV=production, "
        f"redis-server without persistence; open files limit {results.open_files[0]:,}")
    held = results.held
    wanted = results.sockets_wanted
    sockets_ok = held >= TARGET_SOCKETS if wanted >= TARGET_SOCKETS else None
    ramp_s = results.ramp.seconds if results.ramp else 0.0
    log(f"\nsockets held         {held:>8,} of {wanted:,}  (target {TARGET_SOCKETS:,}+)  "
        f"{verdict(sockets_ok)}" + ("" if sockets_ok is not None else
                                    f" (asked for fewer than {TARGET_SOCKETS:,})"))
    log(f"  opened in {ramp_s:.1f} s; still open after the memory reading "
        f"{results.held_after_measure:,}, at the end {results.held_at_end:,}")
    log(f"  permessage-deflate offered on {results.deflate_offered:,}, accepted on "
        f"{results.deflate_accepted:,}: "
        + ("the server declined it" if results.deflate_accepted == 0 else "ACCEPTED (PITFALLS 5)"))
    kb = results.kb_per_socket
    log(f"memory per socket    {kb:>8.1f} KB       (target < {TARGET_KB_PER_SOCKET:g} KB)      "
        f"{verdict(kb < TARGET_KB_PER_SOCKET if held else None)}")
    log(f"  workers' RSS {results.rss_before_kb / KIB:,.1f} MB -> {results.rss_after_kb / KIB:,.1f}"
        f" MB; redis-server +{results.redis_rss_delta_kb / KIB:,.1f} MB "
        f"({results.redis_rss_delta_kb / max(held, 1):.1f} KB a conversation, not counted); "
        f"client RSS {results.client_rss_kb / KIB:,.0f} MB")
    at_target = next((r for r in results.rates if r.rate == TARGET_RATE), None)
    if at_target is None:
        log(f"bot turn p99 @{TARGET_RATE}/s        n/a          (target < {TARGET_P99_MS:g} ms)"
            f"       SKIP (rate {TARGET_RATE} not run)")
    else:
        p99 = at_target.latency_ms[99]
        log(f"bot turn p99 @{TARGET_RATE}/s   {p99:>8.1f} ms       (target < {TARGET_P99_MS:g} ms)"
            f"       {verdict(p99 < TARGET_P99_MS)}   (p50 {at_target.latency_ms[50]:.1f}, "
            f"max {at_target.max_ms:.1f}, lost {at_target.lost})")
    knee = next((r for r in results.rates if r.latency_ms[99] > TARGET_P99_MS), None)
    below = [r for r in results.rates if r.latency_ms[99] <= TARGET_P99_MS]
    if knee is None:
        log(f"knee (p99 > {TARGET_P99_MS:g} ms)  not reached up to {max(options.rates):g} turns/s")
    else:
        last_ok = max((r.rate for r in below if r.rate < knee.rate), default=0)
        log(f"knee (p99 > {TARGET_P99_MS:g} ms)  {knee.rate:>8g} turns/s  (p99 "
            f"{knee.latency_ms[99]:.1f} ms; the last rate under it: {last_ok:g}/s)")

    log("\nwhat limits each figure:")
    ceiling = options.workers * WORKER_CONNECTIONS
    log(f"  sockets: asked for {wanted:,}; ceilings: gunicorn worker_connections "
        f"{ceiling:,} ({options.workers} x {WORKER_CONNECTIONS:,}), open files "
        f"{results.open_files[0]:,}, "
        f"loopback ephemeral ports ~28,000; ramp CPU: {cpu_line(results.ramp_cpu)}")
    if results.ramp and results.ramp.failures:
        log(f"    failures: {dict(results.ramp.failures.most_common(3))}")
    log(f"  memory: per-socket objects in the workers (greenlet, simple-websocket, wsproto, "
        f"Connection); idle CPU with the sockets open: {cpu_line(results.idle_cpu)}")
    full = [ms for generation, ms in results.hold_gc if generation == 2]
    if full:
        log(f"  those objects are tracked by the collector: {len(full)} full collections while "
            f"opening and holding the sockets, the last {full[-1]:.0f} ms, the longest "
            f"{max(full):.0f} ms (PITFALLS 16)")
    for result in results.rates:
        log(f"  latency @{result.rate:g}/s (p99 {result.latency_ms[99]:.1f} ms):")
        for line in latency_limits(result, cores, options.workers):
            log(f"    - {line}")
    counters = results.counters
    if counters.errors or counters.unmatched_replies or counters.closed:
        log(f"  active visitors saw: error frames {dict(counters.errors)}, replies matching no "
            f"turn {counters.unmatched_replies}, sockets closed by the server "
            f"{dict(counters.closed)}, turns not sent on a closed socket "
            f"{counters.sends_on_closed}")
    events = servers.log_events()
    log(f"  server log over the whole run: {sum(events.values())} warning/error lines"
        + "".join(f"\n    x{times}: {kind}" for kind, times in events.most_common(6)))


# ==========================================================================================
# Main
# ==========================================================================================


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=None,
                        help=f"idle visitor sockets to hold (default {DEFAULT_SOCKETS:,})")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"gunicorn workers, WEB_CONCURRENCY (default {DEFAULT_WORKERS})")
    parser.add_argument("--rates", default=None,
                        help="offered turns a second, comma-separated (default "
                             + ",".join(map(str, DEFAULT_RATES)) + ")")
    parser.add_argument("--duration", type=float, default=None,
                        help=f"seconds of sending per rate (default {DEFAULT_DURATION_S:g})")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 500 sockets, rates 100,250, 3 s each (~30 s)")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep the servers' logs, the workers' GC pauses and every turn "
                             "(turns.csv) in DIR")
    parser.add_argument("--no-gc-probe", action="store_true",
                        help="do not log the workers' GC pauses (a bench-only sitecustomize)")
    options = parser.parse_args(argv)
    defaults = QUICK if options.quick else {"sockets": DEFAULT_SOCKETS, "rates": DEFAULT_RATES,
                                            "duration": DEFAULT_DURATION_S}
    options.sockets = options.sockets if options.sockets is not None else defaults["sockets"]
    options.duration = options.duration if options.duration is not None else defaults["duration"]
    if options.rates is None:
        options.rates = list(defaults["rates"])
    else:
        try:
            options.rates = [float(part) for part in options.rates.split(",") if part.strip()]
        except ValueError:
            parser.error("--rates takes numbers, e.g. 100,250,500")
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
        servers = Servers(directory, options.workers, gc_probe=not options.no_gc_probe)
        try:
            log(f"starting redis-server :{servers.redis_port} and gunicorn :{servers.port} "
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
