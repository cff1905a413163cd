"""The report: percentiles of a phase, the run's results, and the summary with its verdicts."""

from __future__ import annotations

import argparse
import collections
import math
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.live import KIB, MS_PER_S, log
from bench.live.load import Counters, Opened, Phase, Ramp
from bench.live.meters import GC_LOG_MIN_MS, OTHERS
from bench.live.servers import Servers

ROOT = Path(__file__).resolve().parents[2]  # the repository, whose commit is measured

# --- targets (bench/README.md#targets) ----------------------------------------------------
TARGET_SOCKETS = 10_000  # concurrent visitor sockets on one instance, at least
TARGET_KB_PER_SOCKET = 100.0  # server memory per socket, under
TARGET_P99_MS = 20.0  # bot turn p99, under ...
TARGET_RATE = 500  # ... at this many turns a second
TARGET_OPEN_MS = 1.5  # server CPU (workers + Redis) to open one visitor socket, at most

PERCENTILES = (50, 90, 99)
OTHERS_NOTE_PERCENT = 10.0  # % of a core used by processes not of this benchmark: worth saying
CPU_BOUND_PERCENT = 90.0  # % of one core: a worker this busy (or all cores this busy) is saturated
LATE_NOTE_MS = 5.0  # sends later than this behind the clock (p99) mean the client is short of CPU
WORKER_CONNECTIONS = 10_000  # gunicorn.conf.py's worker_connections (not imported: it patches)


def describe_pauses(pauses: list[tuple[int, float]]) -> str:
    if not pauses:
        return f"none >= {GC_LOG_MIN_MS:g} ms"
    full = sum(1 for generation, _ in pauses if generation == 2)
    return (f"{len(pauses)} (full: {full}), longest {max(ms for _, ms in pauses):.1f} ms, "
            f"total {sum(ms for _, ms in pauses):.0f} ms")


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
    redis_node_ms_per_turn: list[float] = field(default_factory=list)  # each node's, in order

    @property
    def redis_cpu_ms_per_turn(self) -> float:
        return sum(self.redis_node_ms_per_turn) if self.redis_node_ms_per_turn else math.nan

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


def redis_cpu_text(node_ms: list[float], unit: str = "") -> str:
    """Redis's CPU (ms) as the sum of its nodes and, on a cluster, each node's:
    `redis 0.065 ms (nodes 0.030 + 0.020 + 0.015)`."""
    if not node_ms:
        return "redis n/a"
    text = f"redis {sum(node_ms):.3f} ms{unit}"
    if len(node_ms) > 1:
        text += " (nodes " + " + ".join(f"{ms:.3f}" for ms in node_ms) + ")"
    return text


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
                       f"{max(long_pauses):.0f} ms (docs/stack.md, 'Collector pauses')")
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
             f", {redis_cpu_text(result.redis_node_ms_per_turn)}"
             + (f" (the client and redis-server share the {cores} cores with the {workers} "
                "workers)" if workers + 2 > cores else ""))
    return reasons + [split]


def report(options: argparse.Namespace, results: Results, servers: Servers) -> None:
    cores = os.cpu_count() or 1
    log("\n" + "=" * 100)
    log("SUMMARY  (targets: bench/README.md, 'Targets', for a 2-core machine)")
    log(f"machine: {cores} cores (os.cpu_count()), {platform.platform()}, Python "
        f"{platform.python_version()}; the load client runs on the same machine")
    log(f"code: {git_revision()}")
    log(f"server: gunicorn gevent, {options.workers} workers, CONCIERGE_ENV=production, "
        f"open files limit {results.open_files[0]:,}")
    log(f"redis: {servers.redis.describe()}")
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
        + ("the server declined it" if results.deflate_accepted == 0
           else "ACCEPTED (docs/stack.md, 'Compression')"))
    kb = results.kb_per_socket
    log(f"memory per socket    {kb:>8.1f} KB       (target < {TARGET_KB_PER_SOCKET:g} KB)      "
        f"{verdict(kb < TARGET_KB_PER_SOCKET if held else None)}")
    log(f"  workers' RSS {results.rss_before_kb / KIB:,.1f} MB -> {results.rss_after_kb / KIB:,.1f}"
        f" MB; redis-server +{results.redis_rss_delta_kb / KIB:,.1f} MB "
        f"({results.redis_rss_delta_kb / max(held, 1):.1f} KB a conversation, not counted); "
        f"client RSS {results.client_rss_kb / KIB:,.0f} MB")
    opened = len(results.ramp.opened) if results.ramp else 0
    if opened:
        # % of one core over the ramp's seconds -> ms of CPU, per socket opened
        def per_open(name: str) -> float:
            return results.ramp_cpu.get(name, 0.0) * 10.0 * ramp_s / opened
        open_ms = per_open("workers") + per_open("redis-server")
        log(f"server CPU to open   {open_ms:>8.2f} ms a socket (target <= {TARGET_OPEN_MS:g} ms)"
            f"  {verdict(open_ms <= TARGET_OPEN_MS)}   (workers {per_open('workers'):.2f}, "
            f"redis-server {per_open('redis-server'):.2f}; handshake, hello, welcome, greeting)")
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

    log("\nper rate (turns answered while sending; CPU a turn answered; Redis commands a turn "
        "sent" + (", every node's INFO commandstats summed" if servers.redis.is_cluster else "")
        + "):")
    for result in results.rates:
        calls = result.redis_calls.total() / max(result.sent, 1)
        log(f"  @{result.rate:g}/s: p50 {result.latency_ms[50]:.1f} ms, p99 "
            f"{result.latency_ms[99]:.1f} ms, lost {result.lost}; workers "
            f"{result.worker_cpu_ms_per_turn:.2f} ms, "
            f"{redis_cpu_text(result.redis_node_ms_per_turn)}; {calls:.1f} Redis commands")

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
            f"{max(full):.0f} ms (docs/stack.md, 'Collector pauses')")
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
