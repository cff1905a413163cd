"""The conversation store: a record and an ordered message log per conversation, in Redis.

Owns the key family `{prefix}conv:{c_…}…` (one hash tag per conversation, so
its keys sit in one Redis Cluster slot), the verified-visitor index
`{prefix}visitor:<user_id>`, and the conversation channels.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as redis_lib

from . import frames

RECORD = "{prefix}conv:{{{cid}}}"  # hash: status, flow, bot state, visitor, seq, …
LOG = "{prefix}conv:{{{cid}}}:log"  # list of message JSON; seq n sits at index n-1
CLIENT_IDS = "{prefix}conv:{{{cid}}}:ids"  # hash: client message id -> seq
VISITOR_ID = "v:{}"  # a visitor's message id in CLIENT_IDS, apart from the server's own ids
END_ID = "s:end"  # the server's id for the visitor's `end`: two tabs ending at once store one
TURN_LOCK = "{prefix}conv:{{{cid}}}:turn"  # held while the bot answers
VERIFIED_VISITOR = "{prefix}visitor:{user_id}"  # a verified user_id's open conversation
CHANNEL = "{prefix}conv:{cid}"  # pub/sub doorbell for frames of one conversation

# Short, and renewed by the holder while it works (a `call` may take 30 s): a holder that died, or
# lost Redis mid-turn, holds up the conversation for at most this long.
TURN_LOCK_TTL_MS = 5_000
TURN_LOCK_RENEW_S = 1.5

BOT, QUEUED, AGENT, CLOSED = "bot", "queued", "agent", "closed"
VISITOR_MARK = '"from":"visitor"'  # how a stored visitor message reads (frames are compact)
_LUA = Path(__file__).with_name("lua")


class NotFound(Exception):
    """The conversation does not exist (never did, or expired)."""


class Closed(Exception):
    """The conversation is closed: it takes no new messages."""


class LockLost(Exception):
    """The turn lock ran out or passed to another worker: this turn must not write."""


@dataclass
class Conversation:
    """A conversation's record; tolerant of missing and unknown fields."""

    id: str
    status: str = BOT
    flow: str = ""
    seq: int = 0
    bot: dict[str, Any] = field(default_factory=dict)  # the engine's stored state
    bot_seq: int = 0  # the last visitor message the bot has answered
    visitor: dict[str, Any] = field(default_factory=dict)
    escalation: dict[str, Any] | None = None
    closed_reason: str | None = None
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
                   bot_seq=int(data.get("bot_seq", 0) or 0), visitor=loads("visitor", {}),
                   escalation=loads("escalation", None),
                   closed_reason=data.get("closed_reason") or None,
                   created=data.get("created", ""), updated=data.get("updated", ""))


class Conversations:
    """Store and read conversations; one instance per worker, sharing its Redis pool."""

    def __init__(self, redis: redis_lib.Redis, prefix: str, retention_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.retention_s = retention_s
        self._append = redis.register_script((_LUA / "append.lua").read_text())
        self._unlock = redis.register_script((_LUA / "unlock.lua").read_text())
        self._extend = redis.register_script((_LUA / "extend.lua").read_text())
        self._begin = redis.register_script((_LUA / "begin_turn.lua").read_text())
        self._end = redis.register_script((_LUA / "end_turn.lua").read_text())
        self._store = redis.register_script((_LUA / "store_turn.lua").read_text())

    def _keys(self, cid: str) -> tuple[str, str, str]:
        return (RECORD.format(prefix=self.prefix, cid=cid), LOG.format(prefix=self.prefix, cid=cid),
                CLIENT_IDS.format(prefix=self.prefix, cid=cid))

    def channel(self, cid: str) -> str:
        """Name the pub/sub channel on which a conversation's frames are published."""
        return CHANNEL.format(prefix=self.prefix, cid=cid)

    def channel_conversation(self, channel: str) -> str:
        """Recover the conversation id from its channel name."""
        return channel[len(CHANNEL.format(prefix=self.prefix, cid="")):]

    # --- records ---------------------------------------------------------------------------

    def create(self, flow: str, visitor: dict[str, Any]) -> str:
        """Make a new conversation with the bot and return its id."""
        cid = "c_" + secrets.token_urlsafe(16)  # 128 random bits: unguessable
        record = RECORD.format(prefix=self.prefix, cid=cid)
        stamp = frames.now_iso()
        with self.redis.pipeline() as pipe:
            pipe.hset(record, mapping={"status": BOT, "flow": flow, "seq": 0, "bot_seq": 0,
                                       "visitor": json.dumps(visitor), "created": stamp,
                                       "updated": stamp})
            pipe.expire(record, self.retention_s)
            pipe.execute()
        return cid

    def get(self, cid: str) -> Conversation:
        """Read a conversation's record; raise NotFound."""
        data = self.redis.hgetall(RECORD.format(prefix=self.prefix, cid=cid))
        if not data:
            raise NotFound(cid)
        return Conversation.from_hash(cid, data)

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
        for key in self._keys(cid):  # every write refreshes the expiry
            pipe.expire(key, self.retention_s)

    def close(self, cid: str, reason: str) -> None:
        """Mark a conversation closed; it is kept for the retention period, then expires."""
        self.update(cid, status=CLOSED, closed_reason=reason, closed_at=frames.now_iso())
        visitor = self.get(cid).visitor
        if visitor.get("verified") and visitor.get("user_id"):
            key = VERIFIED_VISITOR.format(prefix=self.prefix, user_id=visitor["user_id"])
            if self.redis.get(key) == cid:
                self.redis.delete(key)

    # --- messages --------------------------------------------------------------------------

    def append(self, cid: str, frame: dict[str, Any], client_id: str | None = None,
               open_only: bool = False) -> tuple[int, bool, str]:
        """Store a message frame (without seq) and publish it; return (seq, is_new, status).

        A repeated `client_id` is not stored again: its first seq comes back with False, even
        after the close. With `open_only`, a new message to a closed conversation raises Closed.
        """
        seq, outcome, *status = self._append(
            keys=self._keys(cid), args=self._append_args(cid, frame, client_id, open_only))
        if outcome == -1:
            raise NotFound(cid)
        if outcome == -2:
            raise Closed(cid)
        return int(seq), outcome == 1, status[0]

    @staticmethod
    def _values(fields: dict[str, Any]) -> dict[str, Any]:
        """Spell record fields as Redis stores them; stamp the update."""
        values = {key: json.dumps(value) if isinstance(value, (dict, list)) else
                  ("" if value is None else value) for key, value in fields.items()}
        values["updated"] = frames.now_iso()
        return values

    def _append_args(self, cid: str, frame: dict[str, Any], client_id: str | None,
                     open_only: bool) -> list[Any]:
        body = frames.dump(frame)
        return [client_id or "", body[1:], self.channel(cid), self.retention_s,
                "1" if open_only else "0"]

    def store_turn(self, cid: str, token: str, said: list[dict[str, Any]],
                   fields: dict[str, Any]) -> None:
        """Store a bot turn in one atomic step: its messages, then the record's new fields.

        Only while `token` holds the turn lock (else LockLost), and not once the conversation
        closed (Closed).
        """
        keys = [*self._keys(cid), TURN_LOCK.format(prefix=self.prefix, cid=cid)]
        args = [self.channel(cid), self.retention_s, token, len(said),
                *(frames.dump(frame)[1:] for frame in said),
                *(item for pair in self._values(fields).items() for item in pair)]
        outcome = self._store(keys=keys, args=args)
        if outcome == -1:
            raise NotFound(cid)
        if outcome == -2:
            raise LockLost(cid)
        if outcome == -3:
            raise Closed(cid)

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
        self.redis.publish(self.channel(cid), frames.dump(frame))

    # --- the bot's turn lock ---------------------------------------------------------------

    def begin_turn(self, cid: str, token: str) -> tuple[Conversation, list[str]] | None:
        """Take the turn lock and read the record and the unseen messages, in one step.

        Returns None when another worker holds the lock.
        """
        record, log = self._keys(cid)[:2]
        began = self._begin(keys=[TURN_LOCK.format(prefix=self.prefix, cid=cid), record, log],
                            args=[token, TURN_LOCK_TTL_MS])
        if not began:
            return None
        flat, unseen = began
        if not flat:
            raise NotFound(cid)
        return Conversation.from_hash(cid, dict(zip(flat[::2], flat[1::2], strict=True))), unseen

    def end_turn(self, cid: str, token: str, bot_seq: int) -> bool:
        """Free the turn lock; tell whether a visitor message still waits for the bot."""
        record, log = self._keys(cid)[:2]
        return bool(self._end(keys=[TURN_LOCK.format(prefix=self.prefix, cid=cid), record, log],
                              args=[token, bot_seq]))

    def lock_turn(self, cid: str) -> str | None:
        """Take the conversation's turn lock; return its token, or None if it is held."""
        token = secrets.token_hex(8)
        key = TURN_LOCK.format(prefix=self.prefix, cid=cid)
        return token if self.redis.set(key, token, nx=True, px=TURN_LOCK_TTL_MS) else None

    def unlock_turn(self, cid: str, token: str) -> None:
        self._unlock(keys=[TURN_LOCK.format(prefix=self.prefix, cid=cid)], args=[token])

    def extend_turn(self, cid: str, token: str) -> bool:
        """Keep holding the turn lock; False if it was lost."""
        return bool(self._extend(keys=[TURN_LOCK.format(prefix=self.prefix, cid=cid)],
                                 args=[token, TURN_LOCK_TTL_MS]))

    def turn_lock_left_ms(self, cid: str) -> int:
        """Milliseconds until the turn lock expires (0 if it is free)."""
        return max(0, int(self.redis.pttl(TURN_LOCK.format(prefix=self.prefix, cid=cid))))

    # --- verified visitors -----------------------------------------------------------------

    def verified_conversation(self, user_id: str) -> str | None:
        """Return the open conversation of a verified user_id, if any."""
        return self.redis.get(VERIFIED_VISITOR.format(prefix=self.prefix, user_id=user_id))

    def remember_verified(self, user_id: str, cid: str) -> None:
        self.redis.set(VERIFIED_VISITOR.format(prefix=self.prefix, user_id=user_id), cid,
                       ex=self.retention_s)

