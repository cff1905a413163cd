"""The run, phase by phase: a warm-up, N sockets held (and the memory they take), then bot
turns at each offered rate with those sockets still open."""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import math
import os
import time

from bench.live import KIB, MS_PER_S, log
from bench.live.load import (
    HANDSHAKES_IN_FLIGHT,
    PROGRESS_EVERY,
    REPLY_PREFIX,
    TURN_TEXT,
    Phase,
    Talker,
    TurnClock,
    close_all,
    open_many,
    start_hubs,
    still_open,
    write_turns,
)
from bench.live.meters import (
    CLK_TCK,
    OTHERS,
    ClientGc,
    CpuMeter,
    RedisMonitor,
    proc_fd_count,
    proc_rss_kb,
)
from bench.live.report import Results, describe_pauses, redis_cpu_text, summarize_phase
from bench.live.servers import Servers

WARMUP_SOCKETS = 100  # opened and closed before the baseline: first-use costs are not per socket
SETTLE_S = 3.0  # idle time before reading memory, so the ramp's garbage is collected
RSS_SAMPLES = 3  # memory readings, SAMPLE_GAP_S apart; the median is used
SAMPLE_GAP_S = 1.0
ACTIVE_MIN = 200  # conversations that take turns, at least
MAX_TURNS_PER_CONVERSATION_S = 2.0  # the server serialises a conversation's turns: spread the rate
WARMUP_RATE = 200  # turns a second while every active conversation takes one unmeasured turn
PHASE_GAP_S = 1.0  # idle between phases


def median_rss(servers: Servers) -> int:
    samples = []
    for index in range(RSS_SAMPLES):
        if index:
            time.sleep(SAMPLE_GAP_S)  # blocking on purpose: the sockets are idle
        samples.append(servers.workers_rss_kb())
    return sorted(samples)[len(samples) // 2]


async def measure(options: argparse.Namespace, servers: Servers, results: Results) -> None:
    """Every phase of the run; sockets it opens are closed by the caller's `finally`."""
    groups = {"workers": servers.worker_pids, "redis-server": servers.redis_pids,
              "gunicorn master": [servers.master_pid], "client": [os.getpid()]}
    meter = CpuMeter(groups)
    worker_meter = CpuMeter({str(pid): [pid] for pid in servers.worker_pids})
    worker_names = [str(pid) for pid in servers.worker_pids]
    redis = servers.redis
    node_meter = CpuMeter(dict(zip(redis.node_names, ([pid] for pid in redis.pids), strict=True)))
    client_gc = ClientGc()
    gc.callbacks.append(client_gc)
    opened_all = results.opened_all  # closed by run()'s finally, whatever happens here

    # Every worker's hub started by a socket alone (bench/live/load.py, start_hubs).
    first: list = []
    hubs = await start_hubs(servers.url, servers.origin, redis.subscribed_connections,
                            len(servers.worker_pids), first)
    log(f"hubs started one socket at a time: {hubs} of {len(servers.worker_pids)} workers' "
        f"pub/sub connections subscribed after {len(first)} sockets")
    await close_all(item.ws for item in first)

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
    redis_before_kb = redis.rss_kb()
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
    results.redis_rss_delta_kb = redis.rss_kb() - redis_before_kb
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
    async with RedisMonitor(servers.redis_ports) as monitor:  # what one turn asks of Redis
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
        into.update(cpu=meter.sample(), workers=worker_meter.sample(), nodes=node_meter.sample(),
                    commands=redis.commands(), answered=phase.answered)

    log(f"{'offered/s':>9} {'sent':>6} {'lost':>5} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'late p99':>8}  CPU % of a core: workers (each) | redis | client | "
        "other processes")
    for rate in rates:
        await asyncio.sleep(PHASE_GAP_S)
        t0, commands_before = time.monotonic(), redis.commands()
        before, worker_before, nodes_before = meter.sample(), worker_meter.sample(), \
            node_meter.sample()
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
        # Redis's CPU a turn answered, over the same window, node by node (one on one server)
        result.redis_node_ms_per_turn = [
            (at_last_send["nodes"][1][name] - nodes_before[1][name]) / CLK_TCK * MS_PER_S
            / max(at_last_send["answered"], 1) for name in redis.node_names]
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
        log(f"{'':>9} a turn answered: {result.worker_cpu_ms_per_turn:.2f} ms of worker CPU, "
            f"{redis_cpu_text(result.redis_node_ms_per_turn)}; per turn sent, Redis ran "
            f"{result.redis_calls.total() / max(result.sent, 1):.1f} commands"
            + (f" over its {len(redis.nodes)} nodes" if redis.is_cluster else "")
            + " (scripts' included: " + ", ".join(f"{name} {calls / max(result.sent, 1):.1f}"
                              for name, calls in result.redis_calls.most_common(5)) + ")")
        for kind, times in result.server_events.most_common(3):
            log(f"{'':>9} server log x{times}: {kind}")
        if not servers.workers_unchanged():
            raise RuntimeError("a gunicorn worker died and was replaced: figures are void\n"
                               + servers.log_tail())
    results.held_at_end = still_open(ramp.opened)
