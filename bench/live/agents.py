"""Agents for `bench/relay.py`: accounts made in Redis, agent sockets opened with API tokens,
and visitors driven through the bot to a person.

Accounts are made by the benchmark itself with routing/agents.py's `Accounts` (as
`flask agents add` and `flask agents token` do); everything else goes through the sockets, as
the console and the widget use them: `/ws/agent?token=…` (welcome, presence, assigned,
message) and `/ws/visitor` (hello, message, ack, status).
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.live.load import (
    CLOSE_TIMEOUT_S,
    HANDSHAKE_TIMEOUT_S,
    HANDSHAKES_IN_FLIGHT,
    Opened,
    close_all,
)
from bench.live.redis_nodes import BenchRedis
from routing.agents import Accounts, Agent

QUEUE = "support"  # flows/default.yaml's `handoff` escalates here
ESCALATE_TEXT = "I want to talk to a person"  # the default flow's `person` intent: handoff
PASSWORD = "bench-password-0123"  # never used: the agents open their sockets with API tokens
WELCOME_TIMEOUT_S = 30.0  # agent socket opened -> its welcome
PRESENCE_TIMEOUT_S = 15.0
ESCALATIONS_IN_FLIGHT = 50  # bot turns that escalate, at once
ESCALATION_TIMEOUT_S = 30.0  # one visitor's message -> its `status` agent
MAX_SIZE = 64 * 1024 * 1024  # a full welcome (every transcript) is one frame; the server's cap
# A cheap Argon2id for the benchmark's own accounts (they never log in with the password): the
# library's default costs take ~50 ms an account, which 250 accounts would spend on hashing.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def make_agents(redis: BenchRedis, prefix: str, ids: Iterable[str], max_chats: int
                ) -> dict[str, str]:
    """Make an account (queue `support`) and an API token for each id; return id -> token.

    The client is the service's own kind (runtime/redis_clients.py): on a cluster, redis-py's
    RedisCluster, which sends each account's `{routing}` keys to the master of that slot."""
    client = redis.client()
    try:
        accounts = Accounts(client, prefix)
        accounts.hasher = CHEAP_HASHER
        tokens = {}
        for agent_id in ids:
            accounts.add(Agent(id=agent_id, name=f"Agent {agent_id}", queues=[QUEUE],
                               max_chats=max_chats), PASSWORD)
            tokens[agent_id] = accounts.new_token(agent_id)
        return tokens
    finally:
        client.close()


@dataclass
class Seen:
    """What the sockets got that the benchmark does not wait for, by kind."""

    errors: collections.Counter = field(default_factory=collections.Counter)  # code -> count
    closed: collections.Counter = field(default_factory=collections.Counter)  # by close frame,
    # before the benchmark closes its sockets itself (the memory phase's own closes counted)
    unmatched: int = 0  # agent messages from visitors whose id the benchmark no longer waits for
    ending: bool = False  # the benchmark is closing its sockets: closes no longer count

    def count_close(self, side: str, ws: ClientConnection) -> None:
        if not self.ending:
            self.closed[f"{side} {close_reason(ws)}"] += 1


def close_reason(ws: ClientConnection) -> str:
    rcvd = ws.protocol.close_rcvd
    return f"{rcvd.code} {rcvd.reason}" if rcvd else "no close frame"


class AgentClient:
    """One agent socket: its welcome, then a reader that hands on what the benchmark needs.

    `on_assigned(conversation_id, agent)` and `on_visitor_message(message_id, received)` are
    called from the reader; `on_visitor_message` returns whether the id was awaited.
    """

    def __init__(self, agent_id: str, ws: ClientConnection, welcome_raw: str,
                 seen: Seen) -> None:
        self.agent_id = agent_id
        self.ws = ws
        self.welcome_bytes = len(welcome_raw.encode())
        self.welcome = json.loads(welcome_raw)
        self.seen = seen
        self.held: list[str] = []  # conversations assigned on this socket
        self.presence = asyncio.Event()
        self.on_assigned: Callable[[str, AgentClient], None] = lambda _cid, _agent: None
        self.on_visitor_message: Callable[[str, float], bool] = lambda _id, _t: False
        self.reader: asyncio.Task | None = None

    def start_reading(self) -> None:
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                received = time.perf_counter()
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "message":
                    if frame.get("from") == "visitor" and \
                            not self.on_visitor_message(frame.get("id"), received):
                        self.seen.unmatched += 1
                elif kind == "assigned":
                    cid = frame["conversation"]["id"]
                    self.held.append(cid)
                    self.on_assigned(cid, self)
                elif kind == "presence":
                    if frame.get("status") == "available":
                        self.presence.set()
                elif kind == "error":
                    self.seen.errors[f"agent {frame.get('code')}"] += 1
        except ConnectionClosed:
            pass
        self.seen.count_close("agent", self.ws)

    async def available(self) -> None:
        """Turn available (what waits for it is assigned at once) and await the confirmation."""
        await self.ws.send(json.dumps({"type": "presence", "status": "available"}))
        async with asyncio.timeout(PRESENCE_TIMEOUT_S):
            await self.presence.wait()

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self.reader
            except TimeoutError:
                self.reader.cancel()


async def open_agent(url: str, agent_id: str, token: str, seen: Seen) -> AgentClient:
    """Open an agent socket with its API token (no Origin: not a browser) and read `welcome`."""
    ws = await connect(f"{url}?token={token}", proxy=None, compression=None, max_size=MAX_SIZE,
                       ping_interval=None, ping_timeout=None,  # the server pings; we answer
                       open_timeout=HANDSHAKE_TIMEOUT_S, close_timeout=CLOSE_TIMEOUT_S)
    try:
        async with asyncio.timeout(WELCOME_TIMEOUT_S):
            raw = await ws.recv()
        frame = json.loads(raw)
        if frame.get("type") != "welcome" or frame.get("agent", {}).get("id") != agent_id:
            raise RuntimeError(f"agent {agent_id}: the first frame is not its welcome: "
                               f"{str(raw)[:200]}")
        return AgentClient(agent_id, ws, raw, seen)
    except BaseException:
        ws.transport.abort()
        raise


async def open_agents(url: str, tokens: dict[str, str], seen: Seen,
                      in_flight: int = HANDSHAKES_IN_FLIGHT) -> list[AgentClient]:
    """Open one socket per agent, `in_flight` at a time (connect + welcome); any failure is
    fatal."""
    gate = asyncio.Semaphore(in_flight)
    opened: list[AgentClient] = []

    async def one(agent_id: str, token: str) -> None:
        async with gate:
            opened.append(await open_agent(url, agent_id, token, seen))

    results = await asyncio.gather(*(one(agent_id, token) for agent_id, token in tokens.items()),
                                   return_exceptions=True)
    failures = collections.Counter(f"{type(r).__name__}: {str(r)[:120]}" for r in results
                                   if isinstance(r, BaseException))
    if failures:
        await close_agents(opened)
        raise RuntimeError(f"{sum(failures.values())} of {len(tokens)} agent sockets did not "
                           f"open: {dict(failures.most_common(3))}")
    return opened


async def close_agents(agents: Iterable[AgentClient]) -> None:
    """Close agent sockets as bench/live/load.py closes any: bounded in time, then aborted."""
    agents = list(agents)
    await close_all(agent.ws for agent in agents)
    for agent in agents:  # their readers end with their sockets; any still waiting goes too
        if agent.reader is not None and not agent.reader.done():
            agent.reader.cancel()


class Visitor:
    """A visitor socket past `welcome`, read all along: acks, errors, the conversation's status.

    `on_ack(message_id, seq)` is called for each ack; it returns whether the id was awaited.
    """

    def __init__(self, opened: Opened, seen: Seen) -> None:
        self.ws = opened.ws
        self.conversation = opened.conversation
        self.seen = seen
        self.status = "bot"
        self.last_seq = 0  # the highest message seq this socket got
        self.with_agent = asyncio.Event()
        self.greeted = asyncio.Event()  # the `status` that ends the hello's replay came
        self.on_seq: Callable[[int], None] = lambda _seq: None
        self.on_ack: Callable[[str, int], bool] = lambda _id, _seq: False
        self.on_error: Callable[[str], None] = lambda _code: None
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "ack":
                    self.on_ack(frame.get("id"), int(frame["seq"]))
                elif kind == "message":
                    self.last_seq = max(self.last_seq, int(frame.get("seq", 0)))
                    self.on_seq(self.last_seq)
                elif kind == "status":
                    self.greeted.set()
                    self.status = frame.get("status")
                    if self.status == "agent":
                        self.with_agent.set()
                elif kind == "error":
                    self.seen.errors[f"visitor {frame.get('code')}"] += 1
                    self.on_error(frame.get("code"))
        except ConnectionClosed:
            pass
        self.seen.count_close("visitor", self.ws)

    async def send(self, message_id: str, text: str) -> bool:
        """Send a message; False if the socket is closed."""
        try:
            await self.ws.send(json.dumps({"type": "message", "id": message_id, "text": text}))
            return True
        except ConnectionClosed:
            return False


async def escalate_all(visitors: list[Visitor], expected: Callable[[], int]) -> list[float]:
    """Ask for a person on every visitor socket, ESCALATIONS_IN_FLIGHT at a time; wait until each
    visitor's status is `agent` and `expected()` (the `assigned` frames counted on the agents'
    sockets) reaches the number of visitors. Return the seconds each took, ascending."""
    gate = asyncio.Semaphore(ESCALATIONS_IN_FLIGHT)
    took: list[float] = []

    async def one(index: int, visitor: Visitor) -> None:
        async with gate:
            if not await visitor.send(f"esc-{index}", ESCALATE_TEXT):
                raise RuntimeError(f"visitor {visitor.conversation}: the socket closed "
                                   f"({close_reason(visitor.ws)})")
            sent = time.monotonic()
            try:
                async with asyncio.timeout(ESCALATION_TIMEOUT_S):
                    await visitor.with_agent.wait()
                took.append(time.monotonic() - sent)
            except TimeoutError:
                raise RuntimeError(
                    f"{visitor.conversation}: no `status` agent {ESCALATION_TIMEOUT_S:g} s after "
                    f"'{ESCALATE_TEXT}' (status {visitor.status}); has flows/default.yaml stopped "
                    f"escalating it to '{QUEUE}', or did routing find nobody?") from None

    results = await asyncio.gather(*(one(i, v) for i, v in enumerate(visitors)),
                                   return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(visitors)} escalations failed; the first: "
                           f"{failures[0]}")
    deadline = time.monotonic() + ESCALATION_TIMEOUT_S
    while expected() < len(visitors):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the agents got {expected()} `assigned` frames for "
                               f"{len(visitors)} conversations")
        await asyncio.sleep(0.05)
    return sorted(took)
