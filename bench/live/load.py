"""The load: visitor sockets opened as browsers open them, and bot turns sent on a clock."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from bench.live import log

# --- the client's manners -----------------------------------------------------------------
HANDSHAKES_IN_FLIGHT = 100  # sockets opening at once (connect + hello + welcome): no SYN flood
HANDSHAKE_TIMEOUT_S = 30.0  # per socket, TCP + upgrade
WELCOME_TIMEOUT_S = 30.0  # per socket, hello -> welcome
RAMP_TIMEOUT_S = 240.0  # the whole ramp of N sockets
PROGRESS_EVERY = 1_000  # sockets, between progress lines while ramping
CLOSE_TIMEOUT_S = 2.0  # per socket, for the closing handshake at the end
CLOSE_ALL_TIMEOUT_S = 60.0  # all sockets; what is left is aborted

# --- the turns ----------------------------------------------------------------------------
TURN_TEXT = "shipping"  # the default flow's intent: answered by `say`s only (no `call`)
REPLY_PREFIX = "We ship within"  # the first bot message of that answer
PHASE_LEAD_S = 0.05  # from planning a phase to its first send
DRAIN_TIMEOUT_S = 5.0  # after the last send, wait this long for answers; later = lost
YIELD_EVERY = 20  # a late scheduler yields to the readers at least every this many sends

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



async def clock(rate: float, duration_s: float) -> AsyncIterator[float]:
    """Yield the due time of each send of an open-loop phase, `rate` a second for `duration_s`,
    once it is due: a send never waits for an answer, and a clock that fell behind still lets
    the readers read every YIELD_EVERY sends."""
    start = time.perf_counter() + PHASE_LEAD_S
    for index in range(max(1, round(rate * duration_s))):
        due = start + index / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        elif index % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        yield due

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
        async for due in clock(rate, duration_s):
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


HUB_START_TRIES = 60  # sockets opened one at a time, at most, until every worker's hub runs


async def start_hubs(url: str, origin: str, subscribed: Callable[[], int], hubs: int,
                     opened: list[Opened]) -> int:
    """Open visitor sockets one at a time (each left open, in `opened`, for the caller to
    close) until `subscribed()` counts `hubs` subscribed pub/sub connections: every worker's hub
    started by a socket alone. Return the count reached.

    Why: a worker's hub makes its pub/sub on the first socket's `watch`, and on a Redis Cluster
    making it dials the cluster (runtime/redis_clients.py's LazyCluster, made on first use):
    sockets arriving together in that window each start a hub dispatcher of their own on one
    connection (chat/hub.py `_ensure_started`), which then fail in a loop
    (ConcurrentObjectUseError). Started one socket at a time, the benchmark measures the
    service past that; bench/README.md, "Redis Cluster", says so.
    """
    for _ in range(HUB_START_TRIES):
        if subscribed() >= hubs:
            break
        ramp = await open_many(1, url, origin, progress=False)
        opened.extend(ramp.opened)
        await asyncio.sleep(0.05)  # the subscription is sent after the welcome
    return subscribed()
