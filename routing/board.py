"""The routing board in Redis: presence, waiting lists, who holds what, and agents' loads.

Owns the key family `{prefix}{routing}:…` but the accounts (routing/agents.py):
every key here shares the `{routing}` hash tag, so each step below is one Lua
script in routing/lua/ that reaches all it needs in one Redis Cluster slot, and
no conversation is ever held by two agents nor an agent given more than its
`max_chats`, whichever workers and instances race. The board is the truth about
who holds a conversation; the conversation's record follows, idempotently
(routing/router.py).

Layout (`B` = `{prefix}{routing}:`):
- `B seat:<agent>` hash: name, max (max_chats), queues (comma-separated), role, presence
  (`available`/`away`, the agent's last choice), online ("1" while a socket lives), load
  (conversations held), last (unix ms of its last assignment); `B seats` set of them.
- `B sockets:<agent>` zset socket id -> live-until (unix ms); `B sockets` zset
  `<agent>|<socket>` -> the same, swept for sockets that stopped answering pings.
- `B grace` zset agent -> when its held conversations go back to their queues.
- `B present:<queue>` set: online, available agents of the queue (busy ones too);
  `B free:<queue>` zset: those below max_chats, by load then last assignment;
  `B idle:<queue>` zset: the same by last assignment alone.
- `B waiting:<queue>` zset conversation -> score: priority band, then time queued;
  `B entry` hash conversation -> JSON (queue, priority, queued_ms, max_wait_ms, visitor,
  preview, reason); `B deadlines` zset conversation -> when max_wait runs out;
  `B queues` set of queue names seen; `B dirty` set of queues whose positions changed.
- `B holder` hash conversation -> agent; `B held:<agent>` set; `B had:<agent>` zset of the
  conversations it held (for `history`); `B taken:<queue>` zset of recent assignments (for
  the wait estimate); `B unannounced` zset conversation -> assignment time, until the
  record says so and the agent was told.
- `B missed:<queue>` zset conversation -> when it was missed (escalated, never reached a
  person); `B missed_info` hash conversation -> JSON (queue, why, at_ms, visitor, preview,
  followed: who followed it up and when). The newest MISSED_KEEP per queue are kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis as redis_lib

from chat import scripts
from chat.conversations import TOPIC
from chat.hub import Channels

LUA = Path(__file__).with_name("lua")
BOARD = "{prefix}{{routing}}:"
PRIORITY_TOP = 99  # priorities are clamped to 0..99: higher is served first
BAND = 10 ** 13  # a priority band in waiting scores: more than any unix time in ms
MATCH_LIMIT = 50  # assignments one step makes at most; a bigger backlog goes on in the next
SWEEP_LIMIT = 200  # entries a sweep takes at a time
WAITING_SHOWN = 100  # conversations an agent's `queue` frame lists per queue, oldest first
RECENT_TAKES_S = 30 * 60  # assignments this recent measure a queue's service rate (board.lua)
POSITIONS_BATCH = 500  # waiting visitors told their place per script: Redis is held ~1 ms


class NotHolder(Exception):
    """The agent acting on a conversation does not hold it (any more): another took it."""


def now_ms() -> int:
    return int(time.time() * 1000)


def waiting_score(priority: int, queued_ms: int) -> int:
    """Score a waiting conversation: higher priority first, then the longest waiting."""
    return (PRIORITY_TOP - max(0, min(PRIORITY_TOP, int(priority)))) * BAND + queued_ms


@dataclass(frozen=True)
class Assignment:
    """A conversation the board gave an agent, with what announcing it needs."""

    cid: str
    agent: str
    name: str  # the agent's, as its seat has it
    at_ms: str  # the board's time of it: names the assignment (announced once)


@dataclass
class Seat:
    agent: str
    name: str
    presence: str  # available | away (the agent's choice)
    online: bool
    load: int
    max_chats: int
    queues: list[str]
    role: str
    last_ms: int


class Board:
    """The routing board's steps, each one script; one instance per worker."""

    def __init__(self, redis: redis_lib.Redis, prefix: str, channels: Channels | None = None,
                 tell_places: Callable[[Sequence[tuple[str, str]]], None] | None = None
                 ) -> None:
        self.redis = redis
        self.pubsub = channels or Channels(prefix)  # classic pub/sub unless told otherwise
        # what the scripts put before a routing topic to name its channel (board.lua)
        self.channels = self.pubsub.routing
        # With sharded pub/sub, who rings the places in line a step told (Conversations'
        # tell_places, which checks each still waits); without one they are rung as they are.
        self.tell_places = tell_places or self._ring_places
        self.base = BOARD.format(prefix=prefix)
        self.holder_key = self.base + "holder"
        self._scripts = {name: scripts.register(redis, f"{name}.lua", LUA,
                                                sharded=self.pubsub.sharded) for name in (
            "seat", "leave", "expire", "presence", "enqueue", "match", "accept", "release",
            "leave_queue", "transfer_agent", "transfer_queue", "give_up", "requeue",
            "announced", "miss", "positions", "position")}

    def _run(self, name: str, *args: Any) -> Any:
        return self._scripts[name](keys=[self.holder_key],
                                   args=[self.base, self.channels, now_ms(), *args])

    def _run_telling(self, name: str, *args: Any) -> Any:
        """Run a step that may tell waiting conversations their places; its reply.

        With sharded pub/sub the step cannot reach their channels (each in its
        conversation's slot): it hands the places back, rung here once it is done."""
        reply = self._run(name, *args)
        if not self.pubsub.sharded:
            return reply
        reply, told = reply
        if told:
            self.tell_places(list(zip(told[::2], told[1::2], strict=True)))
        return reply

    def _ring_places(self, places: Sequence[tuple[str, str]]) -> None:
        for cid, frame in places:
            self.pubsub.publish(self.redis, TOPIC.format(cid=cid), frame)

    def publish(self, topic: str, data: str) -> None:
        """Ring a routing topic's doorbell (an agent's, a queue's, the team's)."""
        self.pubsub.publish(self.redis, topic, data)

    # --- presence ----------------------------------------------------------------------------

    def seat(self, agent: Any, socket: str, live_s: float) -> tuple[str, int, bool]:
        """Keep an agent's socket live for `live_s`; return (presence, load, back in grace)."""
        presence, load, _max, graced = self._run(
            "seat", agent.id, socket, now_ms() + int(live_s * 1000), agent.name,
            agent.max_chats, ",".join(agent.queues), agent.role)
        return presence, int(load), bool(graced)

    def leave(self, agent: str, socket: str, grace_s: float) -> bool:
        """Forget a closed socket; True if the agent went offline with it."""
        return bool(self._run("leave", agent, socket, int(grace_s * 1000)))

    def expire_sockets(self, grace_s: float) -> list[str]:
        """Forget sockets that stopped answering; return the agents that went offline."""
        return self._run("expire", SWEEP_LIMIT, int(grace_s * 1000))

    def set_presence(self, agent: str, presence: str) -> bool:
        """Record the agent's choice; False if it has no seat."""
        return self._run("presence", agent, presence)[0] != -1

    # --- queues and assignment ----------------------------------------------------------------

    def enqueue(self, cid: str, queue: str, strategy: str, entry: dict[str, Any],
                max_wait_s: int, only_if_present: bool = True
                ) -> tuple[int, int, list[Assignment]]:
        """Put a conversation in its queue and assign what can be.

        Returns (outcome, position, assignments): outcome 0 nobody present, 1 queued, 2 held.
        """
        queued_ms = int(entry["queued_ms"])
        # one back from a lost agent goes ahead of everyone of its priority
        result = self._run_telling("enqueue", cid, queue, strategy,
                           waiting_score(entry.get("priority", 0),
                                         0 if entry.get("front") else queued_ms),
                           json.dumps(entry), queued_ms + max_wait_s * 1000,
                           "1" if only_if_present else "0", MATCH_LIMIT)
        if result[0] != 1:
            return int(result[0]), 0, []
        return 1, int(result[1]), _assignments(result[2:])

    def match(self, queues: Iterable[tuple[str, str]]) -> list[Assignment]:
        """Assign waiting conversations of these (queue, strategy) to free agents."""
        flat = [item for pair in queues for item in pair]
        return _assignments(self._run("match", MATCH_LIMIT, *flat)) if flat else []

    def accept(self, cid: str, agent: str, any_queue: bool = False
               ) -> tuple[int, Assignment | None]:
        """Take a waiting conversation (`any_queue`: a lead's, of any queue): 1, or -1 held
        already, -2 not waiting, -3 not now."""
        result = self._run("accept", cid, agent, "1" if any_queue else "0")
        if result[0] != 1:
            return int(result[0]), None
        return 1, Assignment(cid, agent, result[1], result[2])

    def release(self, cid: str, why: str, default_strategy: str,
                named: Iterable[tuple[str, str]], held_by: str = ""
                ) -> tuple[str | None, bool, dict[str, Any] | None, list[Assignment]]:
        """Take a conversation out of routing, in one step: its holder is told (`unassigned`
        with `why`) and given what waits in its queues (`named`: queue, strategy).

        Returns (the former holder, whether it waited, its entry, the assignments made).
        With `held_by`, only while that agent holds it: else raises NotHolder.
        """
        result = self._run("release", cid, why, MATCH_LIMIT, held_by, default_strategy,
                           *(item for pair in named for item in pair))
        if result[0] == -1:
            raise NotHolder(cid)
        agent, waited, entry, *made = result
        return (agent or None, bool(waited), json.loads(entry) if entry else None,
                _assignments(made))

    def leave_queue(self, cid: str) -> bool:
        """Stop a conversation waiting, if it still waits (not assigned meanwhile)."""
        return bool(self._run("leave_queue", cid))

    def transfer_to_agent(self, cid: str, by: str, to: str
                          ) -> tuple[int, str | None, Assignment | None]:
        """Hand a held conversation to agent `to` (`by` "" for a lead); the former holder is
        told. Returns (outcome, former, the assignment)."""
        result = self._run("transfer_agent", cid, by, to)
        if result[0] != 1:
            return int(result[0]), None, None
        return 1, result[1], Assignment(cid, to, result[2], result[3])

    def transfer_to_queue(self, cid: str, by: str, queue: str, strategy: str,
                          entry: dict[str, Any], max_wait_s: int
                          ) -> tuple[int, str | None, int, list[Assignment]]:
        """Put a held conversation back in a queue, its former holder told: (outcome, former,
        position, assignments)."""
        queued_ms = int(entry["queued_ms"])
        result = self._run_telling("transfer_queue", cid, by, queue, strategy,
                           waiting_score(entry.get("priority", 0), queued_ms),
                           json.dumps(entry), now_ms() + max_wait_s * 1000, MATCH_LIMIT)
        if result[0] != 1:
            return int(result[0]), None, 0, []
        return 1, result[1], int(result[2]), _assignments(result[3:])

    def give_up_due(self) -> list[str]:
        """Take the conversations that waited past max_wait out of their queues."""
        return self._run("give_up", SWEEP_LIMIT)

    def requeue_due(self) -> list[tuple[str, str, str]]:
        """Put back in their queues what agents gone past their grace held: (agent, cid, q)."""
        flat = self._run("requeue", SWEEP_LIMIT)
        return [tuple(flat[i:i + 3]) for i in range(0, len(flat), 3)]

    def announced(self, assignment: Assignment) -> None:
        """The record says so: ring the agent's sockets, and strike it off `unannounced`."""
        self._run("announced", assignment.cid, assignment.at_ms, assignment.agent)

    def miss(self, cid: str, queue: str, info: dict[str, Any]) -> None:
        """List a conversation as missed in its queue (the newest are kept)."""
        self._run("miss", cid, queue, json.dumps(info))

    def missed(self, queues: Iterable[str], limit: int = WAITING_SHOWN
               ) -> list[tuple[str, dict[str, Any]]]:
        """The newest missed conversations of `queues`: (cid, info), newest first."""
        found: list[tuple[float, str]] = []
        for queue in queues:
            found += [(score, cid) for cid, score in self.redis.zrevrange(
                self.base + f"missed:{queue}", 0, limit - 1, withscores=True)]
        found = sorted(found, reverse=True)[:limit]
        cids = [cid for _score, cid in found]
        infos = self.redis.hmget(self.base + "missed_info", cids) if cids else []
        return [(cid, json.loads(info)) for cid, info in zip(cids, infos, strict=True) if info]

    def missed_info(self, cid: str) -> dict[str, Any] | None:
        raw = self.redis.hget(self.base + "missed_info", cid)
        return json.loads(raw) if raw else None

    def follow_up(self, cid: str, who: dict[str, Any]) -> bool:
        """Mark a missed conversation as followed up (by `who`); False if it is not listed."""
        info = self.missed_info(cid)
        if info is None:
            return False
        info["followed"] = who
        self.redis.hset(self.base + "missed_info", cid, json.dumps(info))
        return True

    # --- reading ------------------------------------------------------------------------------

    def has_timers(self) -> bool:
        """Tell whether anything on the board may fall due (one read, no key made)."""
        return bool(self.redis.exists(*(self.base + name for name in (
            "sockets", "grace", "deadlines", "unannounced", "dirty", "queues"))))

    def holder(self, cid: str) -> str | None:
        return self.redis.hget(self.holder_key, cid)

    def held(self, agent: str) -> list[str]:
        return sorted(self.redis.smembers(self.base + f"held:{agent}"))

    def had(self, agent: str, cid: str) -> bool:
        return self.redis.zscore(self.base + f"had:{agent}", cid) is not None

    def entry(self, cid: str) -> dict[str, Any] | None:
        raw = self.redis.hget(self.base + "entry", cid)
        return json.loads(raw) if raw else None

    def unannounced(self, older_than_ms: int) -> list[tuple[str, str]]:
        """Assignments not yet announced since before `older_than_ms`: (cid, assigned ms)."""
        found = self.redis.zrangebyscore(self.base + "unannounced", "-inf", older_than_ms,
                                         start=0, num=SWEEP_LIMIT, withscores=True)
        return [(cid, str(int(score))) for cid, score in found]

    def assigned_ms(self, cid: str) -> str | None:
        score = self.redis.zscore(self.base + "unannounced", cid)
        return None if score is None else str(int(score))

    def anybody_present(self, queue: str) -> bool:
        return bool(self.redis.scard(self.base + f"present:{queue}"))

    def seat_of(self, agent: str) -> Seat | None:
        return _seat(agent, self.redis.hgetall(self.base + f"seat:{agent}"))

    def seats(self) -> list[Seat]:
        """Every agent that ever had a socket, with its presence and load."""
        agents = sorted(self.redis.smembers(self.base + "seats"))
        with self.redis.pipeline(transaction=False) as pipe:
            for agent in agents:
                pipe.hgetall(self.base + f"seat:{agent}")
            found = pipe.execute()
        return [seat for agent, data in zip(agents, found, strict=True)
                if (seat := _seat(agent, data)) is not None]

    def queue_names(self) -> list[str]:
        return sorted(self.redis.smembers(self.base + "queues"))

    def waiting(self, queues: Iterable[str], limit: int = WAITING_SHOWN
                ) -> dict[str, list[tuple[str, float, dict[str, Any]]]]:
        """The first `limit` waiting conversations of each queue: (cid, score, entry)."""
        queues = list(queues)
        with self.redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.zrange(self.base + f"waiting:{queue}", 0, limit - 1, withscores=True)
            found = pipe.execute()
        heads = dict(zip(queues, found, strict=True))
        cids = [cid for listed in heads.values() for cid, _score in listed]
        entries = dict(zip(cids, self.redis.hmget(self.base + "entry", cids), strict=True)) \
            if cids else {}
        return {queue: [(cid, score, json.loads(entries[cid]) if entries.get(cid) else {})
                        for cid, score in listed] for queue, listed in heads.items()}

    def counts(self, queues: Iterable[str]) -> dict[str, tuple[int, float | None]]:
        """Per queue: (how many wait, unix ms the longest-waiting one was queued)."""
        queues = list(queues)
        with self.redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.zcard(self.base + f"waiting:{queue}")
            for queue in queues:
                pipe.zrange(self.base + f"waiting:{queue}", 0, 0)
            found = pipe.execute()
        sizes, heads = found[:len(queues)], found[len(queues):]
        head_entries = [head[0] for head in heads if head]
        entries = dict(zip(head_entries, self.redis.hmget(self.base + "entry", head_entries),
                           strict=True)) if head_entries else {}
        result = {}
        for queue, size, head in zip(queues, sizes, heads, strict=True):
            oldest = None
            if head and entries.get(head[0]):
                oldest = float(json.loads(entries[head[0]]).get("queued_ms") or 0) or None
            result[queue] = (int(size), oldest)
        return result

    def position(self, cid: str, queue: str) -> int | None:
        """1 for the next to be served; None if it does not wait in `queue`."""
        rank = self.redis.zrank(self.base + f"waiting:{queue}", cid)
        return None if rank is None else rank + 1

    def place(self, cid: str, queue: str) -> tuple[int | None, int | None]:
        """(position, estimated wait in seconds or None) of a waiting conversation.

        The wait is the position over the queue's recent service rate: how many of its
        conversations agents took a second over the last RECENT_TAKES_S (so it follows how
        many agents serve it, and how fast); None with fewer than two taken in that time.
        """
        position, wait_s = self._run("position", cid, queue)
        return (position or None), (None if wait_s < 0 else wait_s)

    def tell_positions(self, queue: str, batch: int = POSITIONS_BATCH) -> int:
        """Tell everyone waiting in `queue` their place and wait, `batch` per step; how many."""
        told = first = 0
        while True:
            count = self._run_telling("positions", queue, first, first + batch - 1)
            told += count
            if count < batch:
                return told
            first += batch

    def take_dirty(self) -> list[str]:
        """The queues whose positions changed since the last call (each taken once)."""
        with self.redis.pipeline(transaction=True) as pipe:  # MULTI: read and empty together
            pipe.smembers(self.base + "dirty")
            pipe.delete(self.base + "dirty")
            members, _ = pipe.execute()
        return sorted(members)

    def everyone_waiting(self, queue: str) -> list[str]:
        return self.redis.zrange(self.base + f"waiting:{queue}", 0, -1)
def _assignments(flat: list[str]) -> list[Assignment]:
    return [Assignment(*flat[i:i + 4]) for i in range(0, len(flat), 4)]


def _seat(agent: str, data: dict[str, str]) -> Seat | None:
    if not data:
        return None
    return Seat(agent=agent, name=data.get("name", agent),
                presence=data.get("presence", "away"), online=data.get("online") == "1",
                load=int(data.get("load") or 0), max_chats=int(data.get("max") or 0),
                queues=[q for q in (data.get("queues") or "").split(",") if q],
                role=data.get("role", "agent"), last_ms=int(float(data.get("last") or 0)))
