"""The summary of `bench/relay.py`: per offered rate the medians of the runs (each run's
figure beside it), the highest rates that meet the latency marks, the verdicts against the
targets, and memory per agent socket."""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path

from bench.live import log
from bench.live.meters import OTHERS
from bench.live.relay import RelayRate
from bench.live.relay_phases import KEPT_UP_MS, Run
from bench.live.report import CPU_BOUND_PERCENT, git_revision, redis_cpu_text, verdict

# --- targets (bench/README.md#targets and the issue) --------------------------------------
FAST_MS = 10.0  # p99 under this ...
FAST_RATES = (1_000, 2_000)  # ... at these rates: the README's row (1,000), the issue (2,000)
KEPT_UP_RATE = 3_000  # ... at this rate (the issue)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    return (f"{os.cpu_count() or 1} cores (os.cpu_count()), {cpu_model()}, "
            f"{platform.platform()}, Python {platform.python_version()}")


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def each(values: list[float], fmt: str = "{:.1f}") -> str:
    return "" if len(values) < 2 else " (" + ", ".join(fmt.format(v) for v in values) + ")"


def by_rate(runs: list[Run]) -> dict[float, list[RelayRate]]:
    rates: dict[float, list[RelayRate]] = {}
    for run in runs:
        for result in run.rates:
            rates.setdefault(result.rate, []).append(result)
    return rates


def clean(results: list[RelayRate]) -> bool:
    """Nothing lost, unanswered or refused in any run."""
    return all(r.lost == 0 and r.unanswered == 0 and not r.refused for r in results)


def highest(rates: dict[float, list[RelayRate]], ok: Callable[[list[RelayRate]], bool]
            ) -> float | None:
    """The highest rate that is ok, every lower rate measured being ok too."""
    best = None
    for rate in sorted(rates):
        if not ok(rates[rate]):
            break
        best = rate
    return best


def fast(results: list[RelayRate]) -> bool:
    return median([r.p99 for r in results]) < FAST_MS and clean(results)


def kept_up(results: list[RelayRate]) -> bool:
    return median([r.p99 for r in results]) < KEPT_UP_MS and clean(results)


def limits(result: RelayRate, cores: int) -> str:
    cpu = result.cpu_percent
    total = sum(cpu.values())
    busy = [name for name, value in result.worker_percent.items() if value >= CPU_BOUND_PERCENT]
    notes = []
    if total >= CPU_BOUND_PERCENT * cores:
        notes.append(f"the {cores} cores are saturated ({total:.0f}% of {100 * cores}%)")
    if busy:
        notes.append("CPU-bound workers: " + ", ".join(busy))
    if result.late_p99_ms > 5:
        notes.append(f"the client sent late (p99 {result.late_p99_ms:.0f} ms behind its clock)")
    if cpu[OTHERS] >= 10:
        notes.append(f"other processes took {cpu[OTHERS]:.0f}% of a core")
    long_pauses = [ms for pauses in result.server_gc.values() for _, ms in pauses if ms >= 10]
    if long_pauses:
        notes.append(f"{len(long_pauses)} worker GC pauses >= 10 ms (longest "
                     f"{max(long_pauses):.0f} ms)")
    return "; ".join(notes) or "no saturation seen"


def report(options: argparse.Namespace, runs: list[Run]) -> None:
    cores = os.cpu_count() or 1
    log("\n" + "=" * 100)
    log("SUMMARY  (targets: bench/README.md, 'Targets', for a 2-core machine)")
    log(f"machine: {machine()}; the load client runs on the same machine")
    log(f"code: {git_revision()}")
    complete = [run for run in runs if run.rates]
    conversations = complete[0].conversations if complete else 0
    log("redis: " + ("a Redis Cluster of 3 masters (tests/support/redis_cluster.py), no "
                     "replicas, no persistence; REDIS_URL=redis+cluster://every node; Redis CPU "
                     "is the sum of the nodes' redis-servers, each node's beside it"
                     if options.redis == "cluster" else "one redis-server, no persistence"))
    log(f"servers: gunicorn A (visitors) and B (agents), "
        f"{options.workers} gevent workers each, CONCIERGE_ENV=production, AGENT_GRACE_S="
        f"{options.grace}" + (f", FRAME_RATE={options.frame_rate}" if options.frame_rate else
                              ", FRAME_RATE default (20/s)"))
    log(f"load: {options.agents} agents x max_chats {options.max_chats} = {conversations} "
        f"conversations, every message A -> B; {options.duration:g} s a rate, open loop; "
        f"{len(complete)} run(s)" + (", medians of the runs, each run's figure in ()"
                                     if len(complete) > 1 else ""))
    rates = by_rate(complete)
    floors: dict[float, list] = {}
    for run in complete:
        for floor in run.floor:
            floors.setdefault(floor.rate, []).append(floor)
    log(f"\n{'offered':>8} {'sent/s':>7} {'deliv/s':>7} {'lost':>5} {'late':>5} {'errors':>6} "
        f"{'p50 ms':>7} "
        f"{'p90 ms':>7} {'p99 ms':>7} {'max ms':>7}  {'CPU ms a message: A':>19} {'B':>5} "
        f"{'redis':>6}  {'floor p50':>9} {'p99':>6}  {'others %':>8}")
    for rate, results in sorted(rates.items()):
        floor = floors.get(rate, [])
        errors = sum(sum(r.refused.values()) + r.unanswered for r in results)
        log(f"{rate:>8g} {median([r.sent_per_s for r in results]):>7.0f} "
            f"{median([r.delivered_per_s for r in results]):>7.0f} "
            f"{sum(r.lost for r in results):>5} {sum(r.late for r in results):>5} {errors:>6} "
            f"{median([r.latency_ms[50] for r in results]):>7.2f} "
            f"{median([r.latency_ms[90] for r in results]):>7.2f} "
            f"{median([r.p99 for r in results]):>7.2f} "
            f"{median([r.max_ms for r in results]):>7.1f}  "
            f"{median([r.ms_per_message['A'] for r in results]):>19.2f} "
            f"{median([r.ms_per_message['B'] for r in results]):>5.2f} "
            f"{median([r.ms_per_message['redis-server'] for r in results]):>6.3f}  "
            f"{median([f.latency_ms[50] for f in floor]):>9.2f} "
            f"{median([f.latency_ms[99] for f in floor]):>6.2f}  "
            f"{median([r.cpu_percent[OTHERS] for r in results]):>8.0f}")
        if len(results) > 1:
            log(f"{'':>8} runs: p50{each([r.latency_ms[50] for r in results], '{:.2f}')}, p99"
                f"{each([r.p99 for r in results], '{:.1f}')}, lost"
                f"{each([r.lost for r in results], '{:d}')}, A ms"
                f"{each([r.ms_per_message['A'] for r in results], '{:.2f}')}, B ms"
                f"{each([r.ms_per_message['B'] for r in results], '{:.2f}')}")
    if rates:
        log("\nRedis per message (medians of the runs; CPU from the first send to the end of the "
            "drain, a message sent; commands: INFO commandstats"
            + (", every node's summed" if options.redis == "cluster" else "") + "):")
    for rate, results in sorted(rates.items()):
        nodes = [median([r.redis_node_ms[i] for r in results])
                 for i in range(len(results[0].redis_node_ms))]
        calls = [r.redis_calls.total() / max(r.sent, 1) for r in results]
        top = results[0].redis_calls.most_common(4)
        log(f"{rate:>8g} {redis_cpu_text(nodes)}"
            f"{each([r.ms_per_message['redis-server'] for r in results], '{:.3f}')}; "
            f"{median(calls):.1f} commands{each(calls)} ("
            + ", ".join(f"{name} {n / max(results[0].sent, 1):.2f}" for name, n in top) + ")")
    never = [rate for rate in options.rates if rate not in rates]
    some = sorted({rate for run in complete for rate in run.skipped} - set(never))
    if never or some:
        log(f"{'':>8} not run: " + ", ".join(f"{rate:g}" for rate in never)
            + (f"; in some runs only: {', '.join(f'{rate:g}' for rate in some)}" if some else "")
            + " msg/s (a lower rate saturated the machine; --all-rates runs them)")
    log("  lost: acked to the visitor, not on the agent's socket within the drain (10 s after the "
        "last send); late: of those, the ones that came later, while the backlog went; errors: "
        "refused (an error "
        "frame) or never answered, all runs together; floor: bare PUBLISH -> subscriber; "
        "others: what processes not of this benchmark took of the machine while it sent (% of "
        "a core)")
    if rates:
        top = max(rates)  # near saturation: the per-message cost that sets the ceiling
        servers = median([r.ms_per_message["A"] + r.ms_per_message["B"]
                          + r.ms_per_message["redis-server"] for r in rates[top]])
        client = median([r.ms_per_message["client"] for r in rates[top]])
        log(f"  CPU a message at {top:g}/s, the highest rate run: the servers {servers:.2f} ms "
            f"(A + B + redis-server), this client {client:.2f} ms: {cores} cores carry at most "
            f"~{cores * 1000 / servers:,.0f} msg/s with nothing else running, "
            f"~{cores * 1000 / (servers + client):,.0f} with this client beside them")

    best_fast, best_kept = highest(rates, fast), highest(rates, kept_up)
    log(f"\nhighest rate with p99 < {FAST_MS:g} ms and nothing lost: "
        + (f"{best_fast:g} msg/s" if best_fast else "none of the rates run meets it")
        + f"   (up to {max(rates, default=0):g} measured)")
    log(f"highest rate kept up (p99 < {KEPT_UP_MS:g} ms, nothing lost): "
        + (f"{best_kept:g} msg/s" if best_kept else "none of the rates run meets it"))
    for target_rate in FAST_RATES:
        results = rates.get(target_rate)
        p99 = median([r.p99 for r in results]) if results else math.nan
        log(f"target: p99 < {FAST_MS:g} ms at {target_rate:,} msg/s   "
            + (f"p99 {p99:.1f} ms, lost {sum(r.lost for r in results)}   "
               f"{verdict(fast(results))}" if results else f"SKIP (rate {target_rate} not run)"))
    results = rates.get(KEPT_UP_RATE)
    log(f"target: kept up at {KEPT_UP_RATE:,} msg/s            "
        + (f"p99 {median([r.p99 for r in results]):.1f} ms, lost "
           f"{sum(r.lost for r in results)}   {verdict(kept_up(results))}" if results
           else f"SKIP (rate {KEPT_UP_RATE} not run)"))
    if floors:
        log("Redis pub/sub floor p50 | the relay's p50, per rate: " + "; ".join(
            f"{rate:g}/s {median([f.latency_ms[50] for f in floors[rate]]):.2f} | "
            f"{median([r.latency_ms[50] for r in rates.get(rate, [])]):.2f} ms"
            for rate in sorted(floors)))

    memories = [run.memory for run in runs if run.memory is not None and run.memory.rss_after_kb]
    if memories:
        first = memories[0]
        kb = [m.kb_per_socket for m in memories]
        welcome = [statistics.median(m.welcome_bytes) for m in memories]
        log(f"\nmemory per idle agent socket with a full welcome ({first.agents} agents x "
            f"{first.chats} conversations x {first.messages}+ messages, on B, {first.in_flight} "
            f"opening at a time): {median(kb):,.1f} KB{each(kb)}; the welcome: "
            f"{median(welcome):,.0f} bytes (median{each(welcome, '{:,.0f}')})")
        storm = [(m.rss_storm_kb - m.rss_before_kb) / m.agents for m in memories
                 if m.rss_storm_kb]
        if storm:
            log(f"  the same sockets opened {first.storm_in_flight} at a time (a reconnect storm):"
                f" {median(storm):,.1f} KB an agent{each(storm)} (the welcomes built at once)")
    elif options.memory_agents:
        log("\nmemory per agent socket: not measured (the run stopped before)")

    log("\nwhat limits each rate (while sending; CPU % of one core):")
    for rate, results in sorted(rates.items()):
        result = sorted(results, key=lambda r: r.p99)[len(results) // 2]  # the median run
        cpu = result.cpu_percent
        log(f"  @{rate:g}/s (p99 {result.p99:.1f} ms): A {cpu['A']:.0f}%, B {cpu['B']:.0f}%, "
            f"redis {cpu['redis-server']:.0f}%, client {cpu['client']:.0f}%, others "
            f"{cpu[OTHERS]:.0f}% = {sum(cpu.values()):.0f}% of {100 * cores}%: "
            f"{limits(result, cores)}")
    seen = [run.seen for run in runs]
    errors = sum((s.errors for s in seen), start=type(seen[0].errors)()) if seen else {}
    closed = sum((s.closed for s in seen), start=type(seen[0].closed)()) if seen else {}
    if errors:
        log(f"  error frames over the whole run(s): {dict(errors)}")
    unexpected = {kind: n for kind, n in closed.items() if not kind.startswith(("visitor 1000",
                                                                                "agent 1000"))}
    if unexpected:
        log(f"  sockets the server closed or cut off while measuring: {unexpected}")
    unmatched = sum(s.unmatched for s in seen)
    if unmatched:
        log(f"  visitor messages on agents' sockets after their phase's drain: {unmatched:,}")
