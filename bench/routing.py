"""Benchmark routing at scale: escalation to `assigned`, and a freed slot to the next `assigned`.

Run from the repository root:

    .venv/bin/python bench/routing.py             # full run: up to 1,000 agents, 10,000 waiting
    .venv/bin/python bench/routing.py --quick     # smoke run: 100 agents, 1,000 waiting (~15 s)
    .venv/bin/python bench/routing.py --runs 3    # medians of 3 runs

It starts its own Redis (no persistence): one redis-server, or with `--redis cluster` a
Redis Cluster of three masters (tests/support/redis_cluster.py; bench/live/redis_nodes.py),
and builds the live parts as a gunicorn worker builds them (runtime/wiring.py), under
gevent, in this process. It measures the routing step the service runs, end to
end on the real Redis, against the targets of bench/README.md#targets:

1. free capacity: every agent available with room (max_chats 3, more for fewer agents,
   so the run never fills them); a conversation the
   bot has put in its queue is handed over (`Router.hand_over`: the enqueue script,
   which assigns in the same step, then the record's `assigned` system message and
   the agent's doorbell); latency = the hand-over call, one at a time, and offered at
   100 and 400 a second on a clock;
2. every agent full (max_chats 1) and W conversations waiting: the agent closes one
   (`Lifecycle.apply` of the close: its fenced step, then routing frees the slot,
   matches the head of the queue and announces it); latency = that call, after
   which the next conversation is assigned;
3. growth: the same with 100 and 1,000 agents, 1,000 and 10,000 waiting; the ratio
   of p99s says whether a figure grows with the numbers (it must not grow in step).

With each phase it reads the CPU that Redis ran for it (/proc/<pid>/schedstat): the node
that carries routing (the master of the `{routing}` slot, which every routing key shares: on
a cluster one master carries all of routing), and every node, per assignment; what the
routing node spends on one sets how many assignments a second that one master can carry.

What it leaves out: the WebSocket hop to the agent's console (bench/relay.py measures
a message's way to an agent's socket) and the bot turn that escalates (bench/visitors.py).
Exit code: 0 whatever the figures; 1 when routing does not assign as it should.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.live.meters import proc_cpu_ns  # noqa: E402
from bench.live.redis_nodes import KINDS, BenchRedis  # noqa: E402
from bots.catalog import load_catalog  # noqa: E402
from chat import lifecycle  # noqa: E402
from routing.agents import Agent  # noqa: E402
from runtime import redis_clients, wiring  # noqa: E402
from runtime.config import Config  # noqa: E402

PREFIX = "bench:"
TARGET_P99_MS = 20.0
ESCALATION = {"queue": "support", "priority": 0, "reason": "asked", "path": ["handoff"]}
LIVE_S = 3600  # the benchmark's agents never ping: their sockets stay live this long
RATES = (100, 400)  # escalations a second, offered: a busy site escalates a few a second
SEATING = 50  # agents seated at once
FILLING = 50  # conversations made at once


class Failed(Exception):
    """Routing did not do what the benchmark measures."""


class RedisCpu:
    """The CPU Redis ran, in ns: the routing node's and each node's (their schedstat)."""

    def __init__(self, redis: BenchRedis) -> None:
        self.pids = redis.pids
        self.routing = redis.routing_node()
        self.spent = [0] * len(self.pids)  # ns, summed over the windows measured

    def sample(self) -> list[int]:
        return [proc_cpu_ns(pid) for pid in self.pids]

    def add(self, before: list[int]) -> None:
        for index, (then, now) in enumerate(zip(before, self.sample(), strict=True)):
            self.spent[index] += now - then

    def figures(self, assignments: int) -> dict[str, float]:
        """ms of CPU an assignment: the routing node's, every node's, and each node's, over
        the windows measured since the last call (a phase's); the next phase starts from 0."""
        per = [ns / 1e6 / max(assignments, 1) for ns in self.spent]
        self.spent = [0] * len(self.pids)
        return {"routing_ms": per[self.routing], "redis_ms": sum(per),
                **{f"node{index}_ms": ms for index, ms in enumerate(per)}}


def build(url: str) -> wiring.Live:
    """The live parts as a worker builds them (runtime/wiring.py), on one Redis or a cluster:
    the clients made from REDIS_URL by runtime/redis_clients.py, as the service makes them."""
    config = {**Config().as_flask(), "REDIS_URL": url, "REDIS_PREFIX": PREFIX}
    client = redis_clients.connect(url, wiring.POOL_SIZE)
    return wiring.build(client, redis_clients.pubsub_client(url), load_catalog(ROOT / "flows"),
                        config)


def seat_agents(live: wiring.Live, count: int, max_chats: int) -> list[Agent]:
    agents = [Agent(id=f"agent-{i:05d}", name=f"Agent {i}", queues=["support"],
                    max_chats=max_chats) for i in range(count)]

    def seat(agent: Agent) -> None:
        live.board.seat(agent, "bench", LIVE_S)
        live.board.set_presence(agent.id, "available")

    gevent.pool.Pool(SEATING).map(seat, agents)
    return agents


def queued_conversation(live: wiring.Live) -> str:
    """A conversation the bot has just put in the queue `support` (stored, not handed over)."""
    began = live.conversations.create_and_begin("default", {"verified": False, "name": "V"},
                                                "bench")
    cid = began.conversation.id
    live.conversations.end_turn(cid, "bench")
    live.conversations.change_status(cid, lifecycle.queueing(cid, dict(ESCALATION)), ("bot",))
    return cid


def queued_conversations(live: wiring.Live, count: int) -> list[str]:
    return list(gevent.pool.Pool(FILLING).imap(lambda _i: queued_conversation(live),
                                               range(count)))


def timed(call, *args) -> float:
    start = time.perf_counter()
    call(*args)
    return (time.perf_counter() - start) * 1000


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"n": len(ordered), "p50": at(0.50), "p90": at(0.90), "p99": at(0.99),
            "max": ordered[-1]}


def free_capacity(live: wiring.Live, cpu: RedisCpu, agents: int, escalations: int,
                  rate: int | None) -> dict[str, float]:
    """Escalation to `assigned` while every agent has room: one after another (rate None), or
    offered at `rate` a second on a clock (open loop: a slow one does not hold the next back)."""
    live.redis.flushall()
    # room for every escalation, as agents hold a few each: the run never fills them up
    seat_agents(live, agents, max_chats=min(50, max(3, escalations // agents + 1)))
    cids = queued_conversations(live, escalations)
    samples: list[float] = []

    def hand_over(cid: str) -> None:
        samples.append(timed(live.router.hand_over, cid, dict(ESCALATION)))

    before = cpu.sample()  # only hand-overs run from here to the last one's end
    if rate is None:
        for cid in cids:
            hand_over(cid)
    else:
        start = time.perf_counter()
        running = []
        for index, cid in enumerate(cids):
            gevent.sleep(max(0.0, start + index / rate - time.perf_counter()))
            running.append(gevent.spawn(hand_over, cid))
        gevent.joinall(running)
    cpu.add(before)
    unheld = [cid for cid in cids if live.board.holder(cid) is None]
    if unheld:
        raise Failed(f"{len(unheld)} of {len(cids)} escalations were not assigned")
    if any(live.conversations.status(cid) != "agent" for cid in cids[:50]):
        raise Failed("an assigned conversation's record does not say `agent`")
    return {**percentiles(samples), **cpu.figures(len(samples))}


def freed_slot(live: wiring.Live, cpu: RedisCpu, agents: int, waiting: int, closes: int
               ) -> dict[str, float]:
    """A freed slot to the next `assigned`, with every agent full and `waiting` in the queue."""
    live.redis.flushall()
    seat_agents(live, agents, max_chats=1)
    held = queued_conversations(live, agents)
    gevent.pool.Pool(FILLING).map(lambda cid: live.router.hand_over(cid, dict(ESCALATION)), held)
    queue = queued_conversations(live, waiting)
    gevent.pool.Pool(FILLING).map(lambda cid: live.router.hand_over(cid, dict(ESCALATION)), queue)
    if live.board.counts(["support"])["support"][0] != waiting:
        raise Failed("the queue does not hold every waiting conversation")
    samples: list[float] = []
    for cid in held[:closes]:
        head = live.board.everyone_waiting("support")[0]
        visitor = live.conversations.get(cid).visitor
        before = cpu.sample()  # around the close alone: not the benchmark's own reads
        samples.append(timed(live.lifecycle.apply, cid,
                             lifecycle.closing(cid, "agent", visitor), lifecycle.OPEN))
        cpu.add(before)
        if live.board.holder(head) is None or live.conversations.status(head) != "agent":
            raise Failed("the head of the queue was not assigned when a slot freed")
    return {**percentiles(samples), **cpu.figures(len(samples))}


def row(label: str, figures: dict[str, float]) -> str:
    return (f"  {label:<58} n={figures['n']:>5}  p50 {figures['p50']:6.2f}  p90 "
            f"{figures['p90']:6.2f}  p99 {figures['p99']:6.2f}  max {figures['max']:7.2f} ms")


def cpu_row(label: str, figures: dict[str, float], nodes: int) -> str:
    each = " + ".join(f"{figures[f'node{index}_ms']:.3f}" for index in range(nodes))
    return (f"  {label:<58} routing node {figures['routing_ms']:.3f} ms -> ~"
            f"{1000 / max(figures['routing_ms'], 1e-9):,.0f}/s on that one core; all nodes "
            f"{figures['redis_ms']:.3f} ms" + (f" ({each})" if nodes > 1 else ""))


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 agents, 1,000 waiting")
    parser.add_argument("--runs", type=int, default=1, help="medians of this many runs")
    parser.add_argument("--redis", choices=KINDS, default="single",
                        help="one redis-server (single, the default) or a Redis Cluster of 3 "
                             "masters (cluster)")
    options = parser.parse_args()
    sizes_free = [100] if options.quick else [100, 1_000]
    sizes_full = [(100, 1_000)] if options.quick else [(100, 1_000), (1_000, 1_000),
                                                       (1_000, 10_000)]
    escalations, closes = (300, 100) if options.quick else (2_000, 500)
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}; medians of {options.runs} run(s)")
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as directory, \
            BenchRedis(Path(directory), options.redis) as redis:
        print(f"redis: {redis.describe()}; routing (the {{routing}} slot) on node "
              f"{redis.routing_node()} (:{redis.ports[redis.routing_node()]})")
        cpu = RedisCpu(redis)
        nodes = len(redis.nodes)
        live = build(redis.service_url)
        gc.collect()
        gc.freeze()  # as each worker does after start-up (gunicorn.conf.py)
        try:
            for _run in range(options.runs):
                for agents in sizes_free:
                    for rate in (None, *RATES):
                        how = "one at a time" if rate is None else f"{rate}/s offered"
                        key = f"escalation → assigned, {agents} agents, {how}"
                        results.setdefault(key, []).append(
                            free_capacity(live, cpu, agents, escalations, rate))
                for agents, waiting in sizes_full:
                    key = f"freed slot → next assigned, {agents} agents, {waiting} waiting"
                    results.setdefault(key, []).append(freed_slot(live, cpu, agents, waiting,
                                                                  closes))
        except Failed as exc:
            print(f"FAILED to measure: {exc}")
            return 1
    on = "a Redis Cluster of 3 masters" if options.redis == "cluster" else "one redis-server"
    print(f"\nlatency of the routing step (ms), on {on}:")
    figures = {key: median_of(runs) for key, runs in results.items()}
    for key, value in figures.items():
        print(row(key, value))
    print(f"\nRedis CPU an assignment (ms, /proc/<pid>/schedstat; {options.redis}: "
          + ("the routing node is the master of the {routing} slot" if nodes > 1 else
             "one redis-server carries everything") + "):")
    for key, value in figures.items():
        print(cpu_row(key, value, nodes))
    print("\ntargets:")
    worst = max(value["p99"] for value in figures.values())
    print(f"  p99 under {TARGET_P99_MS:g} ms everywhere: "
          f"{'PASS' if worst < TARGET_P99_MS else 'FAIL'} (worst p99 {worst:.2f} ms)")
    if not options.quick:
        small = figures["escalation → assigned, 100 agents, one at a time"]["p99"]
        large = figures["escalation → assigned, 1000 agents, one at a time"]["p99"]
        print(f"  escalation p99, 1,000 agents / 100 agents: {large / small:.2f}× "
              f"(10× the agents; {'PASS' if large / small < 3 else 'FAIL'}: not in step)")
        small = figures["freed slot → next assigned, 1000 agents, 1000 waiting"]["p99"]
        large = figures["freed slot → next assigned, 1000 agents, 10000 waiting"]["p99"]
        few = figures["freed slot → next assigned, 100 agents, 1000 waiting"]["p99"]
        verdict = "PASS" if max(large / small, small / few) < 3 else "FAIL"
        print(f"  freed-slot p99, 10,000 / 1,000 waiting: {large / small:.2f}×; 1,000 / 100 "
              f"agents: {small / few:.2f}× ({verdict}: not in step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
