"""The relay phase of `bench/relay.py`: visitors on one instance, their agents on another, and
visitor messages offered at fixed rates, open loop; and the bare Redis pub/sub floor.

A visitor's message is acked to the visitor by the instance that stored it (A) and delivered
to the agent's socket by the instance that holds it (B): the agent's copy is the delivery, and
its latency runs from the visitor's send to the agent socket's receipt, matched by the client
message id. A message acked but not delivered by the end of the drain is lost.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from bench.live import MS_PER_S, log
from bench.live.agents import AgentClient, Visitor
from bench.live.cluster import Cluster
from bench.live.load import PHASE_LEAD_S, clock
from bench.live.meters import CLK_TCK, OTHERS, CpuMeter
from bench.live.report import PERCENTILES, percentile, redis_cpu_text

DRAIN_TIMEOUT_S = 10.0  # after the last send: every ack and delivery due by then, or lost
QUIET_S = 0.5  # after the drain: the servers are done when nothing came for this long ...
QUIET_TIMEOUT_S = 30.0  # ... or after this long (an overload's backlog must not spill over)
POLL_S = 0.01
MAX_PER_SOCKET_S = 10.0  # messages a second on one visitor socket: half of FRAME_RATE's 20
TEXT = "Hi, my order AB123457 has not arrived yet; could you tell me where it is, please?"
FLOOR_PAYLOAD_BYTES = 300  # about a visitor message's frame as the server publishes it
FLOOR_DRAIN_S = 5.0


class Msg:
    """One visitor message: when it was due, sent, acked (visitor) and delivered (agent)."""

    __slots__ = ("id", "due", "sent", "acked", "delivered", "refused", "phase")

    def __init__(self, message_id: str, due: float, phase: RelayPhase) -> None:
        self.id = message_id
        self.due = due
        self.sent = 0.0
        self.acked: float | None = None
        self.delivered: float | None = None
        self.refused: str | None = None  # the error code that answered it instead of an ack
        self.phase = phase


@dataclass
class RelayPhase:
    rate: float
    messages: list[Msg] = field(default_factory=list)
    done: int = 0  # refused, or acked and delivered
    acked: int = 0
    delivered: int = 0
    drained: float = 0.0  # perf_counter at the end of the drain: later deliveries are lost


class RelayLoad:
    """Offers visitor messages round robin over the visitors and tells their fate apart."""

    def __init__(self, visitors: list[Visitor], agents: list[AgentClient]) -> None:
        self.visitors = visitors
        self.pending: dict[str, Msg] = {}  # by client id, until the phase's drain ends
        self.outstanding: dict[Visitor, collections.deque[Msg]] = {}  # sent, not yet answered
        self.next_visitor = 0
        self.next_id = 0
        for visitor in visitors:
            queue: collections.deque[Msg] = collections.deque()
            self.outstanding[visitor] = queue
            visitor.on_ack = self._acker(queue)
            visitor.on_error = self._refuser(queue)
        for agent in agents:
            agent.on_visitor_message = self.delivered

    def _acker(self, queue: collections.deque[Msg]):
        def on_ack(message_id: str, _seq: int) -> bool:
            msg = self.pending.get(message_id)
            if msg is None:
                return False
            if queue and queue[0] is msg:
                queue.popleft()
            else:
                try:
                    queue.remove(msg)
                except ValueError:
                    pass
            if msg.acked is None:
                msg.acked = time.perf_counter()
                msg.phase.acked += 1
                if msg.delivered is not None:
                    msg.phase.done += 1
            return True
        return on_ack

    def _refuser(self, queue: collections.deque[Msg]):
        def on_error(code: str) -> None:
            # An error frame names no message: the server reads a socket's frames in order, so
            # it answers the oldest one not answered yet.
            if queue:
                msg = queue.popleft()
                if msg.acked is None and msg.refused is None:
                    msg.refused = code
                    msg.phase.done += 1
        return on_error

    def delivered(self, message_id: str, received: float) -> bool:
        msg = self.pending.get(message_id)
        if msg is None:
            return False
        if msg.delivered is None:
            msg.delivered = received
            msg.phase.delivered += 1
            if msg.acked is not None:
                msg.phase.done += 1
        return True

    async def run(self, rate: float, duration_s: float, on_sent=None) -> RelayPhase:
        """Send rate x duration messages on a clock, then wait (bounded) for acks and deliveries."""
        phase = RelayPhase(rate)
        visitors = self.visitors
        async for due in clock(rate, duration_s):
            visitor = visitors[self.next_visitor]
            self.next_visitor = (self.next_visitor + 1) % len(visitors)
            self.next_id += 1
            msg = Msg(f"m{self.next_id}", due, phase)
            phase.messages.append(msg)
            self.pending[msg.id] = msg
            self.outstanding[visitor].append(msg)
            msg.sent = time.perf_counter()
            if not await visitor.send(msg.id, TEXT):
                msg.refused = "socket closed"
                phase.done += 1
        if on_sent is not None:
            on_sent(phase)
        deadline = time.perf_counter() + DRAIN_TIMEOUT_S
        while phase.done < len(phase.messages) and time.perf_counter() < deadline:
            await asyncio.sleep(POLL_S)
        phase.drained = time.perf_counter()
        if phase.done < len(phase.messages):  # overloaded: let the backlog go before the next
            heard, quiet_since = -1, time.perf_counter()
            while time.perf_counter() - phase.drained < QUIET_TIMEOUT_S:
                now_heard = phase.acked + phase.delivered + phase.done
                if now_heard != heard:
                    heard, quiet_since = now_heard, time.perf_counter()
                elif time.perf_counter() - quiet_since >= QUIET_S:
                    break
                await asyncio.sleep(POLL_S)
        for msg in phase.messages:  # a late one is not taken for the next phase's
            self.pending.pop(msg.id, None)
        for queue in self.outstanding.values():
            queue.clear()
        return phase


@dataclass
class RelayRate:
    """One offered rate's figures."""

    rate: float
    sent: int
    acked: int
    delivered: int
    lost: int  # acked, not delivered within the drain (DRAIN_TIMEOUT_S after the last send)
    late: int  # of those, delivered later, while the backlog went
    unanswered: int  # neither acked nor refused
    refused: collections.Counter
    send_s: float  # first send -> last send
    deliver_s: float  # first send -> last delivery
    latency_ms: dict[int, float]
    max_ms: float
    ack_ms: dict[int, float]  # the visitor's send -> its ack (instance A alone)
    late_p99_ms: float  # how late the client sent, behind its clock
    cpu_percent: dict[str, float]  # while sending, % of one core, by group
    worker_percent: dict[str, float]  # while sending, each worker
    ms_per_message: dict[str, float]  # CPU from the first send to the end of the drain, by group
    redis_node_ms: list[float]  # of that, each Redis node's a message sent (one on one server)
    sys_share: dict[str, float]  # of that CPU, the kernel's share (system calls: sockets)
    server_gc: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    server_events: collections.Counter = field(default_factory=collections.Counter)
    redis_calls: collections.Counter = field(default_factory=collections.Counter)  # all nodes'

    @property
    def sent_per_s(self) -> float:
        return self.sent / self.send_s if self.send_s > 0 else math.nan

    @property
    def delivered_per_s(self) -> float:
        return self.delivered / self.deliver_s if self.deliver_s > 0 else math.nan

    @property
    def p99(self) -> float:
        return self.latency_ms[99]


def summarize(phase: RelayPhase) -> dict:
    latencies = sorted((m.delivered - m.sent) * MS_PER_S if m.delivered is not None
                       else math.inf for m in phase.messages if m.refused is None)
    acks = sorted((m.acked - m.sent) * MS_PER_S if m.acked is not None else math.inf
                  for m in phase.messages if m.refused is None)
    lags = sorted(max(0.0, m.sent - m.due) * MS_PER_S for m in phase.messages)
    sends = [m.sent for m in phase.messages]
    deliveries = [m.delivered for m in phase.messages if m.delivered is not None]
    first = min(sends) if sends else 0.0
    return {
        "sent": len(phase.messages),
        "acked": phase.acked,
        "delivered": phase.delivered,
        "lost": sum(1 for m in phase.messages if m.acked is not None and (
            m.delivered is None or m.delivered > phase.drained)),
        "late": sum(1 for m in phase.messages if m.delivered is not None
                    and m.delivered > phase.drained),
        "unanswered": sum(1 for m in phase.messages if m.acked is None and m.refused is None),
        "refused": collections.Counter(m.refused for m in phase.messages if m.refused),
        "send_s": max(sends) - first if sends else 0.0,
        "deliver_s": max(deliveries) - first if deliveries else 0.0,
        "latency_ms": {pct: percentile(latencies, pct) for pct in PERCENTILES},
        "max_ms": latencies[-1] if latencies else math.nan,
        "ack_ms": {pct: percentile(acks, pct) for pct in PERCENTILES},
        "late_p99_ms": percentile(lags, 99),
    }


def proc_sys_ticks(pid: int) -> int:
    """The system (kernel) part of a process's CPU time, in clock ticks (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat[stat.rindex(")") + 2:].split()[12])  # stime: field 15 of proc(5)


def sys_ticks(groups: dict[str, list[int]]) -> dict[str, int]:
    return {name: sum(proc_sys_ticks(pid) for pid in pids) for name, pids in groups.items()}


def meters(cluster: Cluster) -> tuple[CpuMeter, CpuMeter, list[str]]:
    """CPU by group (instance A's workers, B's, redis-server, masters, client) and by worker."""
    groups = {name: instance.worker_pids for name, instance in cluster.instances.items()}
    groups.update({"redis-server": cluster.redis_pids, "client": [os.getpid()],
                   "masters": [instance.master_pid for instance in cluster.instances.values()]})
    per_worker = {f"{name}:{pid}": [pid] for name, instance in cluster.instances.items()
                  for pid in instance.worker_pids}
    return CpuMeter(groups), CpuMeter(per_worker), list(per_worker)


def node_meters(cluster: Cluster) -> CpuMeter:
    """CPU of each Redis node (its own redis-server), by node name; its OTHERS means nothing."""
    redis = cluster.redis
    return CpuMeter(dict(zip(redis.node_names, ([pid] for pid in redis.pids), strict=True)))


async def measure_rate(load: RelayLoad, cluster: Cluster, rate: float, duration_s: float,
                       ingest: str, deliver: str) -> RelayRate:
    """One rate: the messages, the CPU while sending and per message, the servers' incidents."""
    meter, worker_meter, _names = meters(cluster)
    node_meter = node_meters(cluster)
    t0 = time.monotonic()
    before, worker_before, nodes_before = meter.sample(), worker_meter.sample(), \
        node_meter.sample()
    sys_before = sys_ticks(meter.groups)
    commands_before = cluster.redis.commands()  # every node's INFO commandstats, summed
    at_last_send: dict = {}

    def sent(_phase: RelayPhase) -> None:
        at_last_send.update(cpu=meter.sample(), workers=worker_meter.sample())

    phase = await load.run(rate, duration_s, on_sent=sent)
    after, nodes_after = meter.sample(), node_meter.sample()
    sys_after = sys_ticks(meter.groups)
    redis_calls = cluster.redis.commands() - commands_before
    t1 = time.monotonic()
    figures = summarize(phase)
    ticks = {name: after[1][name] - before[1][name] for name in after[1]}
    per_message = {
        ingest: ticks[ingest] / CLK_TCK * MS_PER_S / max(figures["acked"], 1),
        deliver: ticks[deliver] / CLK_TCK * MS_PER_S / max(figures["delivered"], 1),
        "redis-server": ticks["redis-server"] / CLK_TCK * MS_PER_S / max(figures["sent"], 1),
        "client": ticks["client"] / CLK_TCK * MS_PER_S / max(figures["sent"], 1),
    }
    redis_node_ms = [(nodes_after[1][name] - nodes_before[1][name]) / CLK_TCK * MS_PER_S
                     / max(figures["sent"], 1) for name in cluster.redis.node_names]
    sys_share = {name: (sys_after[name] - sys_before[name]) / ticks[name] if ticks[name] else
                 math.nan for name in (ingest, deliver, "redis-server", "client")}
    result = RelayRate(rate=rate, **figures, sys_share=sys_share,
                       cpu_percent=CpuMeter.percent(before, at_last_send["cpu"]),
                       worker_percent=CpuMeter.percent(worker_before, at_last_send["workers"]),
                       ms_per_message=per_message, redis_node_ms=redis_node_ms)
    result.worker_percent.pop(OTHERS, None)
    result.server_gc = {name: instance.gc_pauses(t0, t1)
                        for name, instance in cluster.instances.items()}
    result.server_events = cluster.log_events(t0, t1)
    result.redis_calls = redis_calls
    return result


# --- the floor: Redis pub/sub alone ---------------------------------------------------------


@dataclass
class FloorRate:
    rate: float
    sent: int
    received: int
    latency_ms: dict[int, float]
    max_ms: float
    late_p99_ms: float
    redis_ms_per_message: float
    redis_node_ms: list[float] = field(default_factory=list)  # each node's a message


async def pubsub_floor(cluster: Cluster, rates: list[float], duration_s: float,
                       channels: int) -> list[FloorRate]:
    """PUBLISH -> a subscriber's receipt, open loop at each rate, with redis.asyncio (redis-py).

    One subscriber connection holds `channels` channels (as a worker's hub holds its sockets'
    conversations); the publisher sends each clock tick's due messages in one pipeline, off
    the clock's path, so a round trip never holds the next send back. On a cluster, as in the
    service: the subscriber's one connection goes to one node (the first), and each channel is
    published on the master of its slot (where the service's scripts publish a conversation's
    messages), one publisher connection per node, one pipeline per node a tick; the cluster's
    bus carries the publish to the subscriber's node.
    """
    redis = cluster.redis
    names = [f"bench:floor:{index}" for index in range(channels)]
    node_urls = redis.node_urls()
    publishers = [aioredis.Redis.from_url(url, decode_responses=True) for url in node_urls]
    route = redis.nodes_of(names)
    subscriber = aioredis.Redis.from_url(node_urls[0], decode_responses=True)
    pubsub = subscriber.pubsub()
    sent_at: dict[str, float] = {}
    received_at: dict[str, float] = {}
    padding = "x" * FLOOR_PAYLOAD_BYTES
    meter = CpuMeter({"redis-server": redis.pids})
    node_meter = node_meters(cluster)

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                received_at.setdefault(message["data"].partition(" ")[0], time.perf_counter())

    try:
        await pubsub.subscribe(*names)
        listener = asyncio.create_task(listen())
        tasks: set[asyncio.Task] = set()
        results = []
        serial = 0
        for rate in rates:
            sent_at.clear()
            received_at.clear()
            count = max(1, round(rate * duration_s))
            before, nodes_before = meter.sample(), node_meter.sample()
            start = time.perf_counter() + PHASE_LEAD_S
            index = 0
            lags = []
            while index < count:
                wait = start + index / rate - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                now = time.perf_counter()
                pipes: dict[int, object] = {}
                while index < count and start + index / rate <= now:
                    serial += 1
                    key = f"f{serial}"
                    sent_at[key] = now
                    lags.append(max(0.0, now - start - index / rate) * MS_PER_S)
                    channel = serial % channels
                    node = route[channel]
                    if node not in pipes:
                        pipes[node] = publishers[node].pipeline(transaction=False)
                    pipes[node].publish(names[channel], f"{key} {padding}")
                    index += 1
                for pipe in pipes.values():
                    task = asyncio.create_task(pipe.execute())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            deadline = time.perf_counter() + FLOOR_DRAIN_S
            while len(received_at) < len(sent_at) and time.perf_counter() < deadline:
                await asyncio.sleep(POLL_S)
            ticks = meter.sample()[1]["redis-server"] - before[1]["redis-server"]
            nodes_after = node_meter.sample()
            latencies = sorted((received_at[key] - sent) * MS_PER_S if key in received_at
                               else math.inf for key, sent in sent_at.items())
            results.append(FloorRate(
                rate=rate, sent=len(sent_at), received=len(received_at),
                latency_ms={pct: percentile(latencies, pct) for pct in PERCENTILES},
                max_ms=latencies[-1], late_p99_ms=percentile(sorted(lags), 99),
                redis_ms_per_message=ticks / CLK_TCK * MS_PER_S / max(len(sent_at), 1),
                redis_node_ms=[(nodes_after[1][name] - nodes_before[1][name]) / CLK_TCK
                               * MS_PER_S / max(len(sent_at), 1) for name in redis.node_names]))
            log(f"  floor {rate:>6g}/s: {len(received_at):,} of {len(sent_at):,} received, "
                f"p50 {results[-1].latency_ms[50]:.2f} ms, p99 {results[-1].latency_ms[99]:.2f} "
                f"ms, max {results[-1].max_ms:.2f} ms; "
                f"{redis_cpu_text(results[-1].redis_node_ms)} a message")
            await asyncio.sleep(0.5)
        listener.cancel()
        await asyncio.gather(listener, *tasks, return_exceptions=True)
        return results
    finally:
        try:
            await pubsub.aclose()
        finally:
            await subscriber.aclose()
            for publisher in publishers:
                await publisher.aclose()
