"""The conversation store: a record and an ordered message log per conversation, in Redis.

Owns the key family `{prefix}conv:{c_…}…` (one hash tag per conversation, so
its keys sit in one Redis Cluster slot), the verified-visitor index
`{prefix}visitor:<user_id>` (and its `:past`, the person's conversations), and the
conversation channels (named by chat/hub.py's Channels: on a cluster they carry
the conversation's hash tag too); the scripts in
chat/lua/ that write them take their keys from here. Longer than one concept's
~300 lines because it is the one owner of that key family: the record, the log,
the client ids, the bot's turn lock and the fenced writes that use them.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import redis as redis_lib

from . import frames, scripts
from .coalesce import Coalescer
from .hub import Channels

log = logging.getLogger("concierge.conversations")

RECORD = "{prefix}conv:{{{cid}}}"  # hash: status, flow, bot state, visitor, seq, …
LOG = "{prefix}conv:{{{cid}}}:log"  # list of message JSON; seq n sits at index n-1
CLIENT_IDS = "{prefix}conv:{{{cid}}}:ids"  # hash: client message id -> seq
VISITOR_ID = "v:{}"  # a visitor's message id in CLIENT_IDS, apart from the server's own ids
STORE_ID = "t:{}"  # a bot turn's store in CLIENT_IDS -> "last seq,more": done once
END_ID = "s:end"  # the server's id for the visitor's `end`: two tabs ending at once store one
TURN_LOCK = "{prefix}conv:{{{cid}}}:turn"  # held while the bot answers
VERIFIED_VISITOR = "{prefix}visitor:{user_id}"  # a verified user_id's open conversation
VERIFIED_PAST = "{prefix}visitor:{user_id}:past"  # zset: a verified user_id's conversations
PAST_KEPT = 50  # conversations remembered per verified visitor (agents see the last few)
TOPIC = "conv:{cid}"  # the hub's topic of one conversation; its channel is the prefix and this

# Short, and renewed by the holder while it works (a `call` may take 30 s): a holder that died, or
# lost Redis mid-turn, holds up the conversation for at most this long.
TURN_LOCK_TTL_MS = 5_000
TURN_LOCK_RENEW_S = 1.5
# A resume replays the whole log: a cap keeps what one hello can make the server send bounded
# (1,000 messages of at most 4,000 characters). Real support chats stay far below it.
DEFAULT_MAX_MESSAGES = 1_000

BOT, QUEUED, AGENT, CLOSED = "bot", "queued", "agent", "closed"
VISITOR_MARK = '"from":"visitor"'  # how a stored visitor message reads (frames are compact)


class NotFound(Exception):
    """The conversation does not exist (never did, or expired)."""


class Closed(Exception):
    """The conversation is closed: it takes no new messages."""


class LockLost(Exception):
    """The turn lock ran out or passed to another worker: this turn must not write."""


class Full(Exception):
    """The conversation holds as many messages as it may (MAX_CONVERSATION_MESSAGES)."""


class NotHeld(Exception):
    """An agent's message to a conversation that agent does not hold (any more)."""


class Moved(Exception):
    """The conversation's status changed under a turn (the visitor ended it, a person took it)."""


@dataclass
class Conversation:
    """A conversation's record; tolerant of missing and unknown fields."""

    id: str
    status: str = BOT
    flow: str = ""
    seq: int = 0
    bot: dict[str, Any] = field(default_factory=dict)  # the engine's stored state
    bot_raw: str = ""  # the `bot` field as stored (what a turn at once checks)
    bot_seq: int = 0  # the last visitor message the bot has answered
    visitor: dict[str, Any] = field(default_factory=dict)
    visitor_raw: str = ""  # the `visitor` field as stored (what a turn at once checks)
    escalation: dict[str, Any] | None = None
    idle_at: float | None = None  # unix time the visitor is deemed idle; None: not watched
    closed_reason: str | None = None
    agent_id: str = ""  # the agent holding it, as the record last heard from routing
    agent_name: str = ""
    created: str = ""
    updated: str = ""

    @classmethod
    def from_hash(cls, cid: str, data: dict[str, str]) -> Conversation:
        def loads(name: str, default: Any) -> Any:
            try:
                return json.loads(data[name]) if data.get(name) else default
            except ValueError:
                return default

        return cls(id=cid, status=data.get("status", BOT), flow=data.get("flow", ""),
                   seq=int(data.get("seq", 0) or 0), bot=loads("bot", {}),
                   bot_raw=data.get("bot", ""),
                   bot_seq=int(data.get("bot_seq", 0) or 0), visitor=loads("visitor", {}),
                   visitor_raw=data.get("visitor", ""),
                   escalation=loads("escalation", None),
                   # a record older than stored deadlines: due whenever its wake-up comes
                   idle_at=_number(data["idle_at"]) if "idle_at" in data else 0.0,
                   closed_reason=data.get("closed_reason") or None,
                   agent_id=data.get("agent_id", ""), agent_name=data.get("agent_name", ""),
                   created=data.get("created", ""), updated=data.get("updated", ""))


@dataclass
class Began:
    """A bot turn that holds the conversation's turn lock (with `token`)."""

    conversation: Conversation  # the record as the turn began
    unseen: list[str]  # the stored messages after bot_seq, as JSON
    token: str
    # With a list here, the turn's stores add the messages they stored, as stored (JSON):
    # a new conversation's greeting, which its socket then sends without reading the log.
    stored: list[str] | None = None


@dataclass(slots=True)
class Known:
    """What a worker knows of a conversation after its last bot turn: enough to answer the
    next visitor message at once (say_and_answer), should nothing have changed since. Kept
    for every conversation a worker's bot spoke in last, so only strings: ~0.5 KB each."""

    seq: int  # the last seq, as the turn stored it
    bot: str  # the record's `bot` field (JSON), as stored
    visitor: str  # the record's `visitor` field, as stored
    flow: str


class Appended(NamedTuple):
    """A message appended to the log (or found there, stored before under its client id)."""

    seq: int
    new: bool  # False: the client id was stored before, and seq is its first seq
    status: str  # the conversation's status as it was stored
    began: Began | None  # the bot's turn, begun with the append (append_and_begin)
    stored: str | None  # the new message's JSON, as stored and published; None if not new
    # the bot's answer stored with it by say_and_answer, as JSON (empty: a turn that said
    # nothing); None: no answer was stored with it
    answered: tuple[str, ...] | None = None


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


class Conversations:
    """Store and read conversations; one instance per worker, sharing its Redis pool."""

    def __init__(self, redis: redis_lib.Redis, prefix: str, retention_s: int,
                 max_messages: int = DEFAULT_MAX_MESSAGES,
                 shared: Coalescer | None = None, channels: Channels | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        self.retention_s = retention_s
        self.max_messages = max_messages
        self.channels = channels or Channels(prefix)  # classic pub/sub unless told otherwise

        def register(name: str) -> Any:
            return scripts.register(redis, name, sharded=self.channels.sharded)

        append = register("append.lua")
        # the hottest call of all, one per message: in shared round trips under load
        self._append = shared.wrap(append) if shared is not None else append
        self.shared = shared
        self._change = register("change_status.lua")
        self._extend = register("extend.lua")
        self._begin = register("begin_turn.lua")
        self._end = register("end_turn.lua")
        self._store = register("store_turn.lua")
        self._forget = register("forget_visitor.lua")
        self._say_and_answer = register("say_and_answer.lua")
        self._tell_place = register("tell_place.lua")

    def _keys(self, cid: str) -> tuple[str, str, str, str]:
        """Name a conversation's record, log, client ids and turn lock."""
        return (RECORD.format(prefix=self.prefix, cid=cid), LOG.format(prefix=self.prefix, cid=cid),
                CLIENT_IDS.format(prefix=self.prefix, cid=cid),
                TURN_LOCK.format(prefix=self.prefix, cid=cid))

    @staticmethod
    def topic(cid: str) -> str:
        """Name the hub's topic on which a conversation's frames are published."""
        return TOPIC.format(cid=cid)

    def channel(self, cid: str) -> str:
        """Name the pub/sub channel of a conversation's topic."""
        return self.channels.name(TOPIC.format(cid=cid))

    def _verified_key(self, user_id: str) -> str:
        return VERIFIED_VISITOR.format(prefix=self.prefix, user_id=user_id)

    # --- records ---------------------------------------------------------------------------

    def create_and_begin(self, flow: str, visitor: dict[str, Any], token: str) -> Began:
        """Make a new conversation with the bot, its turn lock held with `token`, in one step."""
        cid = "c_" + secrets.token_urlsafe(16)  # 128 random bits: unguessable
        record, _log, _ids, lock = self._keys(cid)
        stamp = frames.now_iso()
        fields = {"status": BOT, "flow": flow, "seq": 0, "bot_seq": 0,
                  "visitor": json.dumps(visitor), "created": stamp, "updated": stamp}
        with self.redis.pipeline() as pipe:
            pipe.hset(record, mapping=fields)
            pipe.expire(record, self.retention_s)
            pipe.set(lock, token, px=TURN_LOCK_TTL_MS)
            if visitor.get("verified") and visitor.get("user_id"):
                pipe.set(self._verified_key(visitor["user_id"]), cid, ex=self.retention_s)
                past = VERIFIED_PAST.format(prefix=self.prefix, user_id=visitor["user_id"])
                pipe.zadd(past, {cid: time.time()})
                pipe.zremrangebyrank(past, 0, -(PAST_KEPT + 1))
                pipe.expire(past, self.retention_s)
            pipe.execute()
        return Began(Conversation.from_hash(cid, {k: str(v) for k, v in fields.items()}), [],
                     token)

    def get(self, cid: str) -> Conversation:
        """Read a conversation's record; raise NotFound."""
        data = self.redis.hgetall(RECORD.format(prefix=self.prefix, cid=cid))
        if not data:
            raise NotFound(cid)
        return Conversation.from_hash(cid, data)

    def get_with_recent(self, cid: str, count: int) -> tuple[Conversation, list[str]]:
        """Read a record and its last `count` messages (JSON) in one round trip; raise NotFound."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(RECORD.format(prefix=self.prefix, cid=cid))
            pipe.lrange(LOG.format(prefix=self.prefix, cid=cid), -count, -1)
            data, recent = pipe.execute()
        if not data:
            raise NotFound(cid)
        return Conversation.from_hash(cid, data), recent

    def get_many(self, cids: list[str]) -> list[Conversation | None]:
        """Read many records in one round trip; None for one that does not exist."""
        with self.redis.pipeline(transaction=False) as pipe:
            for cid in cids:
                pipe.hgetall(RECORD.format(prefix=self.prefix, cid=cid))
            found = pipe.execute() if cids else []
        return [Conversation.from_hash(cid, data) if data else None
                for cid, data in zip(cids, found, strict=True)]

    def status(self, cid: str) -> str:
        """Read only a conversation's status; raise NotFound."""
        value = self.redis.hget(RECORD.format(prefix=self.prefix, cid=cid), "status")
        if value is None:
            raise NotFound(cid)
        return value

    def update(self, cid: str, **fields: Any) -> None:
        """Set fields of a record (dicts are stored as JSON); keep it for the retention period."""
        with self.redis.pipeline(transaction=False) as pipe:
            self._update(pipe, cid, fields)
            pipe.execute()

    def _update(self, pipe: Any, cid: str, fields: dict[str, Any]) -> None:
        pipe.hset(RECORD.format(prefix=self.prefix, cid=cid), mapping=self._values(fields))
        for key in self._keys(cid)[:3]:  # every write refreshes the expiry
            pipe.expire(key, self.retention_s)

    def change_status(self, cid: str, change: Any, leaving: tuple[str, ...]) -> bool:
        """Store a status change (chat/lifecycle.py) if the status is one of `leaving`.

        One step: the record's new fields, the system message and its doorbell; then, when
        closing, the verified visitor's index. Returns False (storing nothing) when the status is
        not one of `leaving` or the change's client id was stored before; raises NotFound.
        """
        keys = list(self._keys(cid)[:3])
        fields = self._values(change.record_fields())
        outcome = self._change(keys=keys, args=[
            ",".join(leaving), change.client_id or "", frames.dump(change.message)[1:],
            self.channel(cid), self.retention_s, cid,
            *(item for pair in fields.items() for item in pair)])
        if outcome == -1:
            raise NotFound(cid)
        if outcome == 1 and change.forget_verified:
            self.forget_visitor(cid, change.forget_verified)
        return outcome == 1

    def forget_visitor(self, cid: str, user_id: str) -> None:
        """Clear a verified visitor's index of its open conversation, if it is still `cid`.

        A step of its own after a close: the index is the visitor's key, in another slot of a
        Redis Cluster than the conversation's keys (docs/operating.md, "Redis Cluster").
        """
        self._forget(keys=[self._verified_key(user_id)], args=[cid])

    # --- messages --------------------------------------------------------------------------

    def append_and_begin(self, cid: str, frame: dict[str, Any], client_id: str,
                         token: str) -> Appended:
        """Store a visitor's message (once per client id), publish it, and begin the bot's turn.

        A repeated `client_id` is not stored again: its first seq comes back with is_new False,
        even after the close. A new message to a closed conversation raises Closed, one past
        the cap Full.

        The turn begins only for a new message to a conversation with the bot whose turn lock
        is free: then `began` is what `begin_turn` would have returned, one round trip sooner;
        else it is None.
        """
        return self._append_message(cid, frame, client_id, True, token)

    def append_agent(self, cid: str, frame: dict[str, Any], client_id: str,
                     agent_id: str) -> Appended:
        """Store an agent's message (once per client id) while that agent holds the
        conversation. Raises NotHeld, Closed, Full, NotFound."""
        return self._append_message(cid, frame, client_id, True, "", agent_id)

    def _append_message(self, cid: str, frame: dict[str, Any], client_id: str | None,
                        open_only: bool, token: str, agent_id: str = "") -> Appended:
        body = frames.dump(frame)
        seq, outcome, *rest = self._append(
            keys=self._keys(cid), args=[client_id or "", body[1:], self.channel(cid),
                                        self.retention_s, "1" if open_only else "0", token,
                                        TURN_LOCK_TTL_MS, self.max_messages, agent_id,
                                        frames.now_iso()])
        return self._appended(cid, token, body[1:], seq, outcome, rest)

    def _appended(self, cid: str, token: str, body: str, seq: int, outcome: int,
                  rest: list[Any]) -> Appended:
        """Read append.lua's reply; raise for a message it refused."""
        if outcome == -1:
            raise NotFound(cid)
        if outcome == -2:
            raise Closed(cid)
        if outcome == -3:
            raise Full(cid)
        if outcome == -4:
            raise NotHeld(cid)
        status, *began = rest
        new = outcome == 1
        return Appended(int(seq), new, status, self._began(cid, token, *began) if began else None,
                        f'{{"seq":{seq},{body}' if new else None)  # as append.lua stores it

    def say_and_answer(self, cid: str, frame: dict[str, Any], client_id: str, token: str,
                       known: Known, said: list[dict[str, Any]], fields: dict[str, Any],
                       also: Sequence[tuple[Any, ...]] = ()) -> Appended:
        """Store a visitor's message and the bot's answer to it in one step, if `known` (what
        the worker knew of the conversation when it computed the answer) still holds.

        Then the result's `answered` holds the bot's messages as stored. Otherwise it is
        append_and_begin's result: the message is stored, and the turn may have begun. `also`
        goes in the same round trip, as with store_turn.
        """
        body = frames.dump(frame)[1:]
        keys = self._keys(cid)
        bodies = [frames.dump(message)[1:] for message in said]
        args = [client_id, body, self.channel(cid), self.retention_s, "1", token,
                TURN_LOCK_TTL_MS, self.max_messages, known.seq, known.bot, known.visitor,
                len(bodies), *bodies,
                *(item for pair in self._values(fields).items() for item in pair)]
        seq, outcome, *rest = self._run_with(cid, self._say_and_answer, keys, args, also)
        if outcome != 2:
            return self._appended(cid, token, body, seq, outcome, rest)
        return Appended(int(seq), True, rest[0], None, f'{{"seq":{seq},{body}',
                        tuple(f'{{"seq":{int(seq) + 1 + n},{text}'
                              for n, text in enumerate(bodies)))

    def _run_with(self, cid: str, script: Any, keys: Sequence[str], args: list[Any],
                  also: Sequence[tuple[Any, ...]]) -> Any:
        """Run a turn's script and then `also` (commands: name, key, …) in one round trip (a
        shared one, in a worker); the script's reply, or raise its error. A failure of `also`
        is logged, not raised: the turn itself is stored (or refused)."""
        if self.shared is not None:
            reply, *others = self.shared.many(
                [(script, ("EVALSHA", script.sha, len(keys), *keys, *args), keys[0]),
                 *((None, command, command[1]) for command in also)])
            if isinstance(reply, Exception):
                raise reply
        else:  # a `flask` command or a test calling in: one caller, nothing to share
            reply = script(keys=keys, args=args)
            others = [self._try(command) for command in also]
        for result in others:
            if isinstance(result, Exception):
                log.warning("a command sent with the turn of %s failed: %s", cid, result)
        return reply

    def _try(self, command: tuple[Any, ...]) -> Any:
        try:
            return self.redis.execute_command(*command)
        except redis_lib.RedisError as exc:
            return exc

    @staticmethod
    def _values(fields: dict[str, Any]) -> dict[str, Any]:
        """Spell record fields as Redis stores them; stamp the update."""
        values = {key: json.dumps(value) if isinstance(value, (dict, list)) else
                  ("" if value is None else value) for key, value in fields.items()}
        values["updated"] = frames.now_iso()
        return values

    def store_turn(self, cid: str, token: str, said: list[dict[str, Any]],
                   fields: dict[str, Any], *, status: str, release: bool = False,
                   forget_verified: str | None = None,
                   also: Sequence[tuple[Any, ...]] = ()) -> bool:
        """Store a bot turn (see stored_turn); tell whether a visitor message waits."""
        return self.stored_turn(cid, token, said, fields, status=status, release=release,
                                forget_verified=forget_verified, also=also)[0]

    def stored_turn(self, cid: str, token: str, said: list[dict[str, Any]],
                    fields: dict[str, Any], *, status: str, release: bool = False,
                    forget_verified: str | None = None,
                    also: Sequence[tuple[Any, ...]] = (),
                    keep: list[str] | None = None) -> tuple[bool, int]:
        """Store a bot turn in one atomic step: its messages, then the record's new fields.

        Fenced: only while `token` holds the turn lock (else LockLost) and the conversation is
        still in the `status` the turn began in (else Moved: the visitor ended it, a person took
        it). A status change the turn makes is among `said` (its system message) and `fields`;
        closing also forgets `forget_verified`'s open conversation. With `release`, the lock is
        freed once stored, as `end_turn` does, and the result is `end_turn`'s: whether a visitor
        message still waits for the bot (always False without `release`), with the last seq
        stored. `also` holds
        commands (name, key, …) that go to Redis in the same round trip, just after the turn,
        whatever its outcome; their failures are logged, not raised. In a worker the whole
        goes in a shared round trip (chat/coalesce.py). `keep` gets the messages as stored.
        """
        keys = list(self._keys(cid))
        # the store's id: the client ids' hash remembers it, so a store sent again (its reply
        # lost with its connection) stores nothing twice (chat/coalesce.py)
        store_id = STORE_ID.format(secrets.token_hex(8))
        bodies = [frames.dump(frame)[1:] for frame in said]  # store_turn.lua puts the seq first
        args = [self.channel(cid), self.retention_s, token, "1" if release else "0", status,
                store_id, len(said), *bodies,
                *(item for pair in self._values(fields).items() for item in pair)]
        stored = self._run_with(cid, self._store, keys, args, also)
        outcome, more = stored
        if outcome == -1:
            raise NotFound(cid)
        if outcome == -2:
            raise LockLost(cid)
        if outcome == -3:
            raise Moved(cid)
        if forget_verified:
            self.forget_visitor(cid, forget_verified)
        if keep is not None:  # the script gave them the seqs up to `outcome`, in order
            first = int(outcome) - len(bodies) + 1
            keep.extend(f'{{"seq":{first + index},{body}' for index, body in enumerate(bodies))
        return bool(more), int(outcome)

    def unanswered(self, cid: str) -> bool:
        """Tell whether the last stored message is the visitor's (the bot owes an answer)."""
        last = self.redis.lindex(LOG.format(prefix=self.prefix, cid=cid), -1)
        return bool(last) and VISITOR_MARK in last

    def messages(self, cid: str, after_seq: int, until_seq: int = -1) -> list[str]:
        """Return the stored messages with after_seq < seq (<= until_seq), as JSON text."""
        stop = -1 if until_seq < 0 else until_seq - 1
        if 0 <= stop < after_seq:
            return []
        return self.redis.lrange(LOG.format(prefix=self.prefix, cid=cid), after_seq, stop)

    def publish(self, cid: str, frame: dict[str, Any]) -> None:
        """Ring a conversation's doorbell with a frame that is not stored (typing, status)."""
        self.channels.publish(self.redis, TOPIC.format(cid=cid), frames.dump(frame))

    def tell_places(self, places: Sequence[tuple[str, str]]) -> None:
        """Ring waiting conversations' doorbells with their places in line (cid, status frame
        as JSON), each only while it still waits: what routing's steps leave to this with
        sharded pub/sub (chat/lua/tell_place.lua). In shared round trips in a worker."""
        calls = [(self._tell_place, RECORD.format(prefix=self.prefix, cid=cid),
                  self.channel(cid), frame) for cid, frame in places]
        if self.shared is not None:
            replies = self.shared.many([(script, ("EVALSHA", script.sha, 1, key, channel, frame),
                                         key) for script, key, channel, frame in calls])
        else:  # a `flask` command or a test calling in
            replies = [self._try_script(script, key, channel, frame)
                       for script, key, channel, frame in calls]
        for (_script, key, _channel, _frame), reply in zip(calls, replies, strict=True):
            if isinstance(reply, Exception):  # the next change of the queue tells it again
                log.warning("telling %s its place failed: %s", key, reply)

    @staticmethod
    def _try_script(script: Any, key: str, *args: Any) -> Any:
        try:
            return script(keys=[key], args=list(args))
        except redis_lib.RedisError as exc:
            return exc

    # --- the bot's turn lock ---------------------------------------------------------------

    def begin_turn(self, cid: str, token: str) -> Began | None:
        """Take the turn lock and read the record and the unseen messages, in one step.

        Returns None when another worker holds the lock.
        """
        record, messages, _ids, lock = self._keys(cid)
        began = self._begin(keys=[lock, record, messages], args=[token, TURN_LOCK_TTL_MS])
        return self._began(cid, token, *began) if began else None

    @staticmethod
    def _began(cid: str, token: str, flat: list[str], unseen: list[str]) -> Began:
        if not flat:
            raise NotFound(cid)
        return Began(Conversation.from_hash(cid, dict(zip(flat[::2], flat[1::2], strict=True))),
                     unseen, token)

    def end_turn(self, cid: str, token: str) -> bool:
        """Free the turn lock; tell whether a visitor message still waits for the bot."""
        record, messages, _ids, lock = self._keys(cid)
        return bool(self._end(keys=[lock, record, messages], args=[token]))

    def extend_turn(self, cid: str, token: str) -> bool:
        """Keep holding the turn lock; False if it was lost."""
        return bool(self._extend(keys=[TURN_LOCK.format(prefix=self.prefix, cid=cid)],
                                 args=[token, TURN_LOCK_TTL_MS]))

    def turn_lock_left_ms(self, cid: str) -> int:
        """Milliseconds until the turn lock expires (0 if it is free)."""
        return max(0, int(self.redis.pttl(TURN_LOCK.format(prefix=self.prefix, cid=cid))))

    # --- verified visitors -----------------------------------------------------------------

    def past_of(self, user_id: str, limit: int = 10) -> list[str]:
        """The verified visitor's conversations, newest first."""
        return self.redis.zrevrange(VERIFIED_PAST.format(prefix=self.prefix, user_id=user_id),
                                    0, limit - 1)

    def verified_conversation(self, user_id: str) -> str | None:
        """Return the open conversation of a verified user_id, if any."""
        return self.redis.get(VERIFIED_VISITOR.format(prefix=self.prefix, user_id=user_id))
