"""One run of `bench/relay.py`, phase by phase, on a fresh cluster (instances A and B):

1. memory per idle agent socket with a full welcome: agents whose conversations are built
   through the sockets on A (bot turns, then escalated to them), then one
   fresh socket per agent on B, each reading its full welcome; (B's workers' RSS after -
   before) / N;
2. the relay: agents on B, visitors on A, every conversation escalated and `assigned`, then
   visitor messages at each offered rate (bench/live/relay.py);
3. the Redis pub/sub floor at the same rates.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import statistics
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection

from bench.live import KIB, log
from bench.live.agents import (
    ESCALATIONS_IN_FLIGHT,
    AgentClient,
    Seen,
    Visitor,
    close_agents,
    escalate_all,
    make_agents,
    open_agents,
)
from bench.live.cluster import PREFIX, Cluster
from bench.live.load import HANDSHAKES_IN_FLIGHT, close_all, open_many, start_hubs
from bench.live.meters import OTHERS, proc_rss_kb
from bench.live.phases import SETTLE_S, median_rss
from bench.live.relay import (
    MAX_PER_SOCKET_S,
    FloorRate,
    RelayLoad,
    RelayRate,
    measure_rate,
    pubsub_floor,
)
from bench.live.report import describe_pauses, percentile, redis_cpu_text

AGENT_PATH, VISITOR_PATH = "/ws/agent", "/ws/visitor"
WARMUP_RATE = 500.0  # messages a second of the relay's unmeasured warm-up (one per conversation)
PHASE_GAP_S = 1.0
FILL_IN_FLIGHT = 200  # memory build: visitor messages awaiting their ack, at once
FILL_SPACING_S = 1 / MAX_PER_SOCKET_S  # and at most this many a second on one visitor socket
FILL_ACK_TIMEOUT_S = 30.0
FILL_TRIES = 5  # a message refused (rate_limited, unavailable) is sent again, this many times
FILL_RETRY_S = 0.5
FILL_TEXT = ("Message {n}: I ordered a blue jacket two weeks ago and it still says processing; "
             "can you check what is going on with it?")
BOT_TEXT = "shipping"  # the default flow answers it with three messages (bench/visitors.py's turn)
BOT_ANSWER = 3  # "We ship within…", "You can return…", "Is there anything else…"
ESCALATION_MESSAGES = 4  # the visitor's, the escalation's `say`, `queued` and `assigned`
GREETED_TIMEOUT_S = 30.0
MEMORY_BATCH = 20  # memory build: agents online at once while their conversations escalate
MEMORY_WARMUP_AGENTS = 10  # agent sockets opened and closed on B before its baseline
KEPT_UP_MS = 250.0  # p99 under this and nothing lost: the relay kept up with the rate
SATURATED_SHARE = 0.9  # delivering less than this share of the offered rate: saturated


@dataclass
class Memory:
    agents: int
    chats: int
    messages: int  # wanted in each conversation's log
    build_s: float = 0.0
    bot_turns: int = 0
    fill_messages: int = 0
    fill_refused: int = 0
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    rss_storm_kb: int = 0  # the same sockets opened again, storm_in_flight at a time
    storm_in_flight: int = 0
    in_flight: int = 0  # fresh sockets opening at once for the reading
    rss_per_worker_kb: list[int] = field(default_factory=list)
    redis_rss_kb: int = 0
    welcome_bytes: list[int] = field(default_factory=list)
    transcript_lengths: list[int] = field(default_factory=list)
    open_s: float = 0.0

    @property
    def kb_per_socket(self) -> float:
        return (self.rss_after_kb - self.rss_before_kb) / self.agents if self.agents else 0.0


@dataclass
class Run:
    """What one run measured."""

    conversations: int = 0
    agents: int = 0
    escalate_s: float = 0.0
    memory: Memory | None = None
    rates: list[RelayRate] = field(default_factory=list)
    floor: list[FloorRate] = field(default_factory=list)
    skipped: list[float] = field(default_factory=list)  # rates not run: a lower one saturated
    seen: Seen = field(default_factory=Seen)
    sockets: list[ClientConnection] = field(default_factory=list)  # to close at the end
    agent_clients: list[AgentClient] = field(default_factory=list)


def escalation(took: list[float]) -> str:
    """The time from a visitor's 'I want to talk to a person' to its `status` agent."""
    return (f"{ESCALATIONS_IN_FLIGHT} at a time; each: p50 {percentile(took, 50) * 1e3:.0f} ms, "
            f"p99 {percentile(took, 99) * 1e3:.0f} ms, max {took[-1] * 1e3:.0f} ms")


def check_workers(cluster: Cluster) -> None:
    if not cluster.workers_unchanged():
        raise RuntimeError("a gunicorn worker died and was replaced: figures are void\n"
                           + "".join(i.log_tail() for i in cluster.instances.values()))


async def open_visitors(url: str, origin: str, count: int, run: Run) -> list[Visitor]:
    ramp = await open_many(count, url, origin, progress=count >= 2_000)
    run.sockets.extend(item.ws for item in ramp.opened)
    if ramp.failures or len(ramp.opened) < count:
        raise RuntimeError(f"only {len(ramp.opened)} of {count} visitor sockets opened: "
                           f"{dict(ramp.failures.most_common(3))}")
    return [Visitor(item, run.seen) for item in ramp.opened]


async def agents_on(url: str, tokens: dict[str, str], run: Run) -> tuple[list[AgentClient],
                                                                          dict[str, str]]:
    """Open the agents' sockets, read along, and turn each available; return them and the
    map conversation -> agent that their `assigned` frames fill."""
    agents = await open_agents(url, tokens, run.seen)
    run.agent_clients.extend(agents)
    assigned: dict[str, str] = {}
    for agent in agents:
        agent.on_assigned = lambda cid, who: assigned.__setitem__(cid, who.agent_id)
        agent.start_reading()
    gate = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)

    async def available(agent: AgentClient) -> None:
        async with gate:
            await agent.available()

    await asyncio.gather(*(available(agent) for agent in agents))
    return agents, assigned


async def talk_to_bot(visitors: list[Visitor], length: int, memory: Memory) -> None:
    """Fill most of each conversation with bot turns before it escalates: a turn stores four
    messages for one frame, cheaper for both sides than four visitor messages. Each visitor
    takes its turns one after another, FILL_IN_FLIGHT at once over all of them."""
    gate = asyncio.Semaphore(FILL_IN_FLIGHT)
    loop = asyncio.get_running_loop()

    async def one(index: int, visitor: Visitor) -> None:
        async with asyncio.timeout(GREETED_TIMEOUT_S):
            await visitor.greeted.wait()
        turns = max(0, (length - visitor.last_seq - ESCALATION_MESSAGES) // (1 + BOT_ANSWER))
        for n in range(turns):
            for _try in range(FILL_TRIES):
                began = time.perf_counter()
                answered: asyncio.Future = loop.create_future()
                until = [math.inf]  # the seq of the answer's last message, once acked

                def seen(seq: int, answered=answered, until=until) -> None:
                    if seq >= until[0] and not answered.done():
                        answered.set_result(True)

                def acked(_id: str, seq: int, until=until, seen=seen) -> bool:
                    until[0] = seq + BOT_ANSWER
                    seen(visitor.last_seq)
                    return True

                def refused(code: str, answered=answered) -> None:
                    if not answered.done():
                        answered.set_result(code)

                visitor.on_seq, visitor.on_ack, visitor.on_error = seen, acked, refused
                async with gate:
                    if not await visitor.send(f"bot-{index}-{n}", BOT_TEXT):
                        raise RuntimeError(f"{visitor.conversation}: the socket closed while "
                                           "talking to the bot")
                    try:
                        async with asyncio.timeout(FILL_ACK_TIMEOUT_S):
                            answer = await answered
                    except TimeoutError:
                        raise RuntimeError(
                            f"{visitor.conversation}: no {BOT_ANSWER}-message answer to "
                            f"'{BOT_TEXT}' within {FILL_ACK_TIMEOUT_S:g} s; has "
                            "flows/default.yaml changed it?") from None
                if answer is True:
                    memory.bot_turns += 1
                    break
                memory.fill_refused += 1
                await asyncio.sleep(FILL_RETRY_S)
            else:
                raise RuntimeError(f"{visitor.conversation}: {FILL_TRIES} turns refused in a "
                                   "row")
            await asyncio.sleep(max(0.0, FILL_SPACING_S - (time.perf_counter() - began)))
        visitor.on_seq = lambda _seq: None

    await asyncio.gather(*(one(index, visitor) for index, visitor in enumerate(visitors)))


async def fill(visitors: list[Visitor], length: int, memory: Memory) -> None:
    """Have each visitor write until its conversation's log holds `length` messages: one at a
    time per socket (the next after the ack), FILL_IN_FLIGHT at once over all of them."""
    gate = asyncio.Semaphore(FILL_IN_FLIGHT)
    loop = asyncio.get_running_loop()

    async def one(index: int, visitor: Visitor) -> None:
        waiting: list[asyncio.Future] = [loop.create_future()]

        def answered(answer: int | str) -> bool:
            if waiting[0].done():
                return False
            waiting[0].set_result(answer)  # the seq of an ack, or the code of an error
            return True

        visitor.on_ack = lambda _id, seq: answered(seq)
        visitor.on_error = answered
        n = 0
        while visitor.last_seq < length:
            n += 1
            for _try in range(FILL_TRIES):
                began = time.perf_counter()
                async with gate:
                    waiting[:] = [loop.create_future()]
                    if not await visitor.send(f"fill-{index}-{n}", FILL_TEXT.format(n=n)):
                        raise RuntimeError(f"{visitor.conversation}: the socket closed while "
                                           "filling the conversation")
                    async with asyncio.timeout(FILL_ACK_TIMEOUT_S):
                        answer = await waiting[0]
                memory.fill_messages += 1
                if isinstance(answer, int):
                    visitor.last_seq = max(visitor.last_seq, answer)
                    break
                memory.fill_refused += 1
                await asyncio.sleep(FILL_RETRY_S)
            else:
                raise RuntimeError(f"{visitor.conversation}: {FILL_TRIES} messages refused in a "
                                   "row while filling the conversation")
            await asyncio.sleep(max(0.0, FILL_SPACING_S - (time.perf_counter() - began)))

    await asyncio.gather(*(one(index, visitor) for index, visitor in enumerate(visitors)))


async def measure_memory(cluster: Cluster, options: argparse.Namespace, run: Run) -> Memory:
    """Memory per idle agent socket with a full welcome, on instance B."""
    a, b = cluster["A"], cluster["B"]
    memory = Memory(options.memory_agents, options.memory_chats, options.memory_messages)
    count = memory.agents * memory.chats
    log(f"\n== memory per agent socket: {memory.agents} agents x {memory.chats} conversations "
        f"x {memory.messages} messages, built on A, fresh sockets on B ==")
    began = time.monotonic()
    ids = [f"mem-{index:04d}" for index in range(memory.agents)]
    tokens = make_agents(cluster.redis, PREFIX, ids, memory.chats)
    visitors = await open_visitors(a.ws_url(VISITOR_PATH), a.origin, count, run)
    talked = time.monotonic()
    await talk_to_bot(visitors, memory.messages, memory)
    log(f"  {count:,} visitors took {memory.bot_turns:,} bot turns ('{BOT_TEXT}') in "
        f"{time.monotonic() - talked:.1f} s")
    # A few agents online at a time: every escalation sends each agent of the queue a `queue`
    # frame, and 200 agents online would make the build pay for that 200 times over.
    escalated, took = time.monotonic(), []
    for first in range(0, memory.agents, MEMORY_BATCH):
        batch = dict(list(tokens.items())[first:first + MEMORY_BATCH])
        agents, assigned = await agents_on(a.ws_url(AGENT_PATH), batch, run)
        took += await escalate_all(visitors[first * memory.chats:
                                            (first + len(batch)) * memory.chats],
                                   lambda assigned=assigned: len(assigned))
        full = [agent for agent in agents if len(agent.held) != memory.chats]
        if full:
            raise RuntimeError(f"{len(full)} agents hold other than {memory.chats} "
                               f"conversations, e.g. {full[0].agent_id}: {len(full[0].held)}")
        await close_agents(agents)  # AGENT_GRACE_S keeps what they hold
    took.sort()
    log(f"  {count:,} conversations escalated and assigned in "
        f"{time.monotonic() - escalated:.1f} s, {MEMORY_BATCH} agents online at a time "
        f"({escalation(took)}); their sockets closed (AGENT_GRACE_S keeps what they hold)")
    filled = time.monotonic()
    await fill(visitors, memory.messages, memory)
    if memory.fill_messages:
        log(f"  filled to {memory.messages} messages each: {memory.fill_messages:,} more "
            f"visitor messages in {time.monotonic() - filled:.1f} s")
    await asyncio.gather(*(visitor.ws.close() for visitor in visitors), return_exceptions=True)
    memory.build_s = time.monotonic() - began
    check_workers(cluster)

    # Baseline on B after a few full welcomes: first uses are not per socket.
    warm = await open_agents(b.ws_url(AGENT_PATH), dict(list(tokens.items())[
        :MEMORY_WARMUP_AGENTS]), run.seen)
    await close_agents(warm)
    await asyncio.sleep(SETTLE_S)
    gc.collect()
    memory.rss_before_kb = median_rss(b)
    opened = time.monotonic()
    memory.in_flight = options.memory_in_flight
    fresh = await open_agents(b.ws_url(AGENT_PATH), tokens, run.seen, memory.in_flight)
    memory.open_s = time.monotonic() - opened
    run.agent_clients.extend(fresh)
    for agent in fresh:
        agent.start_reading()  # answer the server's pings; nothing else should come
    memory.welcome_bytes = sorted(agent.welcome_bytes for agent in fresh)
    for agent in fresh:
        conversations = agent.welcome.get("conversations", [])
        if len(conversations) != memory.chats:
            raise RuntimeError(f"{agent.agent_id}'s welcome lists {len(conversations)} "
                               f"conversations, not {memory.chats}")
        memory.transcript_lengths.extend(len(c.get("transcript", [])) for c in conversations)
    memory.transcript_lengths.sort()
    if memory.transcript_lengths[0] < memory.messages:
        raise RuntimeError(f"a welcome's transcript holds {memory.transcript_lengths[0]} "
                           f"messages, fewer than the {memory.messages} built")
    await asyncio.sleep(SETTLE_S)
    memory.rss_after_kb = median_rss(b)
    memory.rss_per_worker_kb = [proc_rss_kb(pid) for pid in b.worker_pids]
    memory.redis_rss_kb = cluster.redis.rss_kb()
    log(f"  B's workers' RSS {memory.rss_before_kb / KIB:,.1f} MB -> "
        f"{memory.rss_after_kb / KIB:,.1f} MB with {len(fresh)} agent sockets (opened in "
        f"{memory.open_s:.1f} s, {options.memory_in_flight} at a time): "
        f"{memory.kb_per_socket:,.1f} KB a socket; welcome "
        f"{statistics.median(memory.welcome_bytes) / KIB:,.1f} KB (median; "
        f"{memory.welcome_bytes[0]:,}-{memory.welcome_bytes[-1]:,} bytes), transcripts of "
        f"{memory.transcript_lengths[0]}-{memory.transcript_lengths[-1]} messages")
    await close_agents(fresh)
    # The same sockets again, HANDSHAKES_IN_FLIGHT at a time (a reconnect storm, as after a
    # deploy): what B grows by beyond the first reading is the welcomes' transient objects.
    storm = await open_agents(b.ws_url(AGENT_PATH), tokens, run.seen, HANDSHAKES_IN_FLIGHT)
    run.agent_clients.extend(storm)
    for agent in storm:
        agent.start_reading()
    await asyncio.sleep(SETTLE_S)
    memory.rss_storm_kb = median_rss(b)
    memory.storm_in_flight = HANDSHAKES_IN_FLIGHT
    await close_agents(storm)
    log(f"  closed and opened again, {HANDSHAKES_IN_FLIGHT} at a time: "
        f"{memory.rss_storm_kb / KIB:,.1f} MB (+"
        f"{(memory.rss_storm_kb - memory.rss_after_kb) / memory.agents:,.1f} KB an agent beyond "
        "the first reading: the welcomes being built at once)")
    check_workers(cluster)
    return memory


async def measure_relay(cluster: Cluster, options: argparse.Namespace, run: Run) -> None:
    a, b = cluster["A"], cluster["B"]
    run.agents, run.conversations = options.agents, options.agents * options.max_chats
    per_socket = max(options.rates) / run.conversations
    log(f"\n== relay: {run.agents} agents (max_chats {options.max_chats}) on B, "
        f"{run.conversations} visitors on A; up to {per_socket:.1f} messages/s a visitor socket"
        f" (FRAME_RATE {options.frame_rate or 20}/s) ==")
    began = time.monotonic()
    ids = [f"relay-{index:03d}" for index in range(run.agents)]
    tokens = make_agents(cluster.redis, PREFIX, ids, options.max_chats)
    agents, assigned = await agents_on(b.ws_url(AGENT_PATH), tokens, run)
    visitors = await open_visitors(a.ws_url(VISITOR_PATH), a.origin, run.conversations, run)
    escalated = time.monotonic()
    took = await escalate_all(visitors, lambda: len(assigned))
    missing = [v.conversation for v in visitors if v.conversation not in assigned]
    if missing:
        raise RuntimeError(f"{len(missing)} conversations were never `assigned` to the "
                           f"benchmark's agents, e.g. {missing[0]}")
    run.escalate_s = time.monotonic() - began
    log(f"  {run.conversations} conversations opened, escalated and assigned in "
        f"{run.escalate_s:.1f} s; escalating took {time.monotonic() - escalated:.1f} s "
        f"({escalation(took)})")
    load = RelayLoad(visitors, agents)
    warm = await load.run(WARMUP_RATE, run.conversations / WARMUP_RATE)
    if warm.delivered < len(warm.messages) or warm.acked < len(warm.messages):
        raise RuntimeError(f"warm-up: of {len(warm.messages)} visitor messages {warm.acked} "
                           f"were acked and {warm.delivered} reached the agents' sockets; "
                           f"errors {dict(run.seen.errors)}")
    log(f"  warm-up: {len(warm.messages)} messages at {WARMUP_RATE:g}/s, each acked and "
        "delivered")
    log(f"{'offered':>8} {'sent/s':>7} {'deliv/s':>7} {'lost':>5} {'late':>5} {'unans':>5} "
        f"{'errors':>6} "
        f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'late99':>6}  "
        "CPU % of a core: A (each) | B (each) | redis | client | others")
    for rate in options.rates:
        await asyncio.sleep(PHASE_GAP_S)
        gc.collect()
        gc.disable()  # the client's own collections must not show up as latency
        try:
            result = await measure_rate(load, cluster, rate, options.duration, "A", "B")
        finally:
            gc.enable()
        run.rates.append(result)
        log(rate_line(result))
        log(f"{'':>8} CPU a message: A {result.ms_per_message['A']:.2f} ms, B "
            f"{result.ms_per_message['B']:.2f} ms, "
            f"{redis_cpu_text(result.redis_node_ms)}, client "
            f"{result.ms_per_message['client']:.2f} ms (in the kernel: " + ", ".join(
                f"{name} {share:.0%}" for name, share in result.sys_share.items())
            + f"); ack p50 {result.ack_ms[50]:.2f} ms, p99 "
            f"{result.ack_ms[99]:.2f} ms; worker GC pauses: A "
            f"{describe_pauses(result.server_gc['A'])}; B {describe_pauses(result.server_gc['B'])}")
        sent = max(result.sent, 1)
        log(f"{'':>8} Redis ran {result.redis_calls.total() / sent:.1f} commands a message sent"
            + (f" over its {len(cluster.redis.nodes)} nodes" if cluster.redis.is_cluster else "")
            + " (INFO commandstats, scripts' included: " + ", ".join(
                f"{name} {calls / sent:.2f}" for name, calls in result.redis_calls.most_common(5))
            + ")")
        for kind, times in result.server_events.most_common(3):
            log(f"{'':>8} server log x{times}: {kind}")
        check_workers(cluster)
        higher = [r for r in options.rates if r > rate]
        if higher and saturated(result) and not options.all_rates:
            run.skipped = higher
            log(f"{'':>8} saturated: {result.delivered_per_s:,.0f} of {rate:g} msg/s delivered, "
                f"p99 {result.p99:,.0f} ms; higher rates not run (--all-rates runs them)")
            break


def saturated(result: RelayRate) -> bool:
    """Not kept up, and delivering clearly less than offered: a higher rate can only be worse."""
    kept_up = result.p99 < KEPT_UP_MS and not (result.lost or result.unanswered or
                                               result.refused)
    return not kept_up and result.delivered_per_s < SATURATED_SHARE * result.rate


def rate_line(result: RelayRate) -> str:
    lat, cpu = result.latency_ms, result.cpu_percent
    each = {name: "+".join(f"{value:.0f}" for key, value in result.worker_percent.items()
                           if key.startswith(name + ":")) for name in ("A", "B")}
    errors = sum(result.refused.values())
    return (f"{result.rate:>8g} {result.sent_per_s:>7.0f} {result.delivered_per_s:>7.0f} "
            f"{result.lost:>5} {result.late:>5} {result.unanswered:>5} {errors:>6} {lat[50]:>7.2f} "
            f"{lat[90]:>7.2f} {lat[99]:>7.2f} {result.max_ms:>7.1f} {result.late_p99_ms:>6.1f}  "
            f"{cpu['A']:.0f} ({each['A']}) | {cpu['B']:.0f} ({each['B']}) | "
            f"{cpu['redis-server']:.0f} | {cpu['client']:.0f} | {cpu[OTHERS]:.0f}")


async def measure(cluster: Cluster, options: argparse.Namespace, run: Run,
                  with_memory: bool) -> None:
    """Every phase of one run; the sockets it opens are closed by the caller's `finally`."""
    # Every worker's hub, on A and on B, started by a socket alone (bench/live/load.py,
    # start_hubs); the sockets stay open until each instance's count is reached.
    first: list = []
    hubs = 0
    for instance in cluster.instances.values():
        hubs += len(instance.worker_pids)
        reached = await start_hubs(instance.ws_url(VISITOR_PATH), instance.origin,
                                   cluster.redis.subscribed_connections, hubs, first)
    log(f"hubs started one socket at a time: {reached} of {hubs} workers' pub/sub connections "
        f"subscribed after {len(first)} sockets")
    await close_all(item.ws for item in first)
    if options.memory_agents and with_memory:
        run.memory = await measure_memory(cluster, options, run)
    await measure_relay(cluster, options, run)
    log(f"\n== Redis pub/sub floor: PUBLISH -> SUBSCRIBE, redis.asyncio, "
        f"{run.conversations} channels, {options.floor_duration:g} s a rate ==")
    gc.collect()
    gc.disable()
    try:
        run.floor = await pubsub_floor(cluster, [rate.rate for rate in run.rates],
                                       options.floor_duration,
                                       run.conversations)
    finally:
        gc.enable()


async def close_run(run: Run) -> None:
    run.seen.ending = True
    await close_agents(run.agent_clients)
    await close_all(run.sockets)
