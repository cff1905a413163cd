"""Agent accounts in Redis: who may work in the console, on which queues, how many chats at once.

Owns the key family `{prefix}{routing}:agent…`, `…:token:…` and `…:session:…`
(routing's keys share one hash tag, so the atomic assignment scripts to come can
reach them with presence and the queues): a hash per agent, the set of all
agents, each agent's API tokens and console sessions. Passwords are kept only as
Argon2id hashes (argon2-cffi); API tokens, for clients that are not a browser,
and session nonces, for the console's cookie, only as SHA-256 digests, so none
can be read back from Redis, and every token or session of an agent can be
ended at once.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# Every key shares routing's hash tag: the pipelines below say transaction=True, so they stay one
# MULTI on Redis Cluster too (where a bare pipeline() is not a transaction).
AGENT = "{prefix}{{routing}}:agent:{id}"  # hash: name, queues (JSON), max_chats, role, password
AGENTS = "{prefix}{{routing}}:agents"  # set of every agent id
TOKENS = "{prefix}{{routing}}:agent:{id}:tokens"  # set of the agent's API token digests
TOKEN = "{prefix}{{routing}}:token:{digest}"  # API token digest -> agent id
SESSION = "{prefix}{{routing}}:session:{digest}"  # hash: agent, started (epoch s); nonce digest
SESSIONS = "{prefix}{{routing}}:agent:{id}:sessions"  # set of the agent's session nonce digests

ROLES = ("agent", "lead")
AGENT_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # safe in keys, logs and URLs
QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MIN_PASSWORD_CHARS = 10  # with Argon2id and the login rate limit, long enough to be out of reach
MAX_NAME_CHARS = 100
MAX_CHATS_LIMIT = 50  # more at once than anybody can answer well
TOKEN_BYTES = 32  # 256 random bits
SESSION_BYTES = 32  # a session nonce: 256 random bits, like a token
# A console session ends after 12 hours without a request (a night away from the desk), and
# 24 hours after its login however busy (a stolen cookie does not live on): one login a shift.
SESSION_IDLE_S = 12 * 3600
SESSION_MAX_S = 24 * 3600
SESSION_SEPARATOR = ":"  # between agent id and nonce in a session id; no agent id holds one


class AccountError(Exception):
    """An account cannot be made or changed as asked; the message says what to fix."""


@dataclass
class Agent:
    """An agent's account, without its secrets."""

    id: str
    name: str
    queues: list[str] = field(default_factory=list)
    max_chats: int = 3
    role: str = "agent"

    @classmethod
    def from_hash(cls, agent_id: str, data: dict[str, str]) -> Agent:
        try:
            queues = json.loads(data.get("queues") or "[]")
        except ValueError:
            queues = []
        return cls(id=agent_id, name=data.get("name", agent_id), queues=list(queues),
                   max_chats=int(data.get("max_chats") or 3),
                   role=data.get("role") if data.get("role") in ROLES else "agent")

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "queues": self.queues,
                "max_chats": self.max_chats, "role": self.role}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """Make, read, change and remove agent accounts; check passwords and API tokens."""

    def __init__(self, redis: redis_lib.Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.hasher = PasswordHasher()  # Argon2id with argon2-cffi's current recommended costs

    def _key(self, template: str, **names: str) -> str:
        return template.format(prefix=self.prefix, **names)

    # --- accounts --------------------------------------------------------------------------

    def add(self, agent: Agent, password: str) -> None:
        """Make an account; raise AccountError if it exists or a value is not allowed."""
        self._check(agent)
        self._check_password(password)
        fields = {"name": agent.name, "queues": json.dumps(agent.queues),
                  "max_chats": agent.max_chats, "role": agent.role,
                  "password": self.hasher.hash(password)}
        key = self._key(AGENT, id=agent.id)
        if not self.redis.hsetnx(key, "name", agent.name):
            raise AccountError(f"there is an agent '{agent.id}' already: choose another id, or "
                               f"`flask agents remove {agent.id}` first")
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.sadd(self._key(AGENTS), agent.id)
            pipe.execute()

    def get(self, agent_id: str) -> Agent | None:
        data = self.redis.hgetall(self._key(AGENT, id=agent_id))
        return Agent.from_hash(agent_id, data) if data else None

    def all(self) -> list[Agent]:
        """Return every agent, by id."""
        return [agent for agent_id in sorted(self.redis.smembers(self._key(AGENTS)))
                if (agent := self.get(agent_id)) is not None]

    def remove(self, agent_id: str) -> bool:
        """Remove an account, end its sessions and revoke its tokens; False if there was none."""
        existed = self.redis.exists(self._key(AGENT, id=agent_id))
        self.revoke_tokens(agent_id)
        self.end_sessions(agent_id)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(AGENT, id=agent_id))
            pipe.srem(self._key(AGENTS), agent_id)
            pipe.execute()
        return bool(existed)

    def set_password(self, agent_id: str, password: str) -> int:
        """Set an agent's password and end every session of theirs; return how many ended."""
        self._require(agent_id)
        self._check_password(password)
        self.redis.hset(self._key(AGENT, id=agent_id), "password", self.hasher.hash(password))
        # whoever logged in with the old password (maybe why it changed) is logged out
        return self.end_sessions(agent_id)

    def check_password(self, agent_id: str, password: str) -> Agent | None:
        """Return the agent if `password` is theirs, else None (also for an unknown id)."""
        stored = self.redis.hget(self._key(AGENT, id=agent_id), "password")
        if not stored:
            self.hasher.hash(password)  # as slow as a real check: no timing says who exists
            return None
        try:
            self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if self.hasher.check_needs_rehash(stored):  # the library's costs went up since
            self.redis.hset(self._key(AGENT, id=agent_id), "password", self.hasher.hash(password))
        return self.get(agent_id)

    # --- API tokens ------------------------------------------------------------------------

    def new_token(self, agent_id: str) -> str:
        """Make an API token for an agent (its earlier ones stay valid until revoked)."""
        self._require(agent_id)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        digest = _digest(token)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(TOKEN, digest=digest), agent_id)
            pipe.sadd(self._key(TOKENS, id=agent_id), digest)
            pipe.execute()
        return token

    def token_agent(self, token: str) -> Agent | None:
        """Return the agent an API token belongs to, or None for an unknown or revoked one."""
        agent_id = self.redis.get(self._key(TOKEN, digest=_digest(token)))
        return self.get(agent_id) if agent_id else None

    def revoke_tokens(self, agent_id: str) -> int:
        """Revoke every API token of an agent; return how many there were."""
        digests = self.redis.smembers(self._key(TOKENS, id=agent_id))
        with self.redis.pipeline(transaction=True) as pipe:
            for digest in digests:
                pipe.delete(self._key(TOKEN, digest=digest))
            pipe.delete(self._key(TOKENS, id=agent_id))
            pipe.execute()
        return len(digests)

    # --- console sessions ------------------------------------------------------------------

    def new_session(self, agent_id: str) -> str:
        """Start a console session for an agent; return its id (`agent:nonce`) for the cookie."""
        self._require(agent_id)
        nonce = secrets.token_urlsafe(SESSION_BYTES)
        digest = _digest(nonce)
        key = self._key(SESSION, digest=digest)
        mine = self._key(SESSIONS, id=agent_id)
        stale = [d for d in self.redis.smembers(mine)  # sessions that expired meanwhile
                 if not self.redis.exists(self._key(SESSION, digest=d))]
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"agent": agent_id, "started": int(time.time())})
            pipe.expire(key, SESSION_IDLE_S)
            pipe.sadd(mine, digest)
            if stale:
                pipe.srem(mine, *stale)
            pipe.expire(mine, SESSION_MAX_S)  # no session it names lives longer than that
            pipe.execute()
        return f"{agent_id}{SESSION_SEPARATOR}{nonce}"

    def session_agent(self, session_id: str) -> str | None:
        """Return the agent of a live session and renew its idle time; None if it has ended."""
        agent_id, _, nonce = session_id.partition(SESSION_SEPARATOR)
        if not agent_id or not nonce:
            return None
        key = self._key(SESSION, digest=_digest(nonce))
        with self.redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.hmget(key, "agent", "started")
            pipe.expire(key, SESSION_IDLE_S)  # renewal on use; does nothing to an ended one
            (owner, started), _renewed = pipe.execute()
        if owner != agent_id:  # ended, expired, or the nonce of another agent's session
            return None
        if time.time() - int(started or 0) > SESSION_MAX_S:
            self.end_session(session_id)
            return None
        return agent_id

    def end_session(self, session_id: str) -> None:
        """End one session (a logout); ending one that has ended already does nothing."""
        agent_id, _, nonce = session_id.partition(SESSION_SEPARATOR)
        if not agent_id or not nonce:
            return
        digest = _digest(nonce)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(SESSION, digest=digest))
            pipe.srem(self._key(SESSIONS, id=agent_id), digest)
            pipe.execute()

    def end_sessions(self, agent_id: str) -> int:
        """End every console session of an agent; return how many were live."""
        digests = self.redis.smembers(self._key(SESSIONS, id=agent_id))
        with self.redis.pipeline(transaction=True) as pipe:
            for digest in digests:
                pipe.delete(self._key(SESSION, digest=digest))
            pipe.delete(self._key(SESSIONS, id=agent_id))
            deleted = pipe.execute()
        return sum(deleted[:-1])

    # --- checks ----------------------------------------------------------------------------

    def _require(self, agent_id: str) -> None:
        if not self.redis.exists(self._key(AGENT, id=agent_id)):
            raise AccountError(f"there is no agent '{agent_id}' (`flask agents list` shows them)")

    @staticmethod
    def _check(agent: Agent) -> None:
        if not AGENT_ID.fullmatch(agent.id):
            raise AccountError(f"the id '{agent.id}' must be 1-64 lower-case letters, digits, "
                               "'.', '_' or '-', starting with a letter or digit")
        if not agent.name.strip() or len(agent.name) > MAX_NAME_CHARS:
            raise AccountError(f"--name must be 1 to {MAX_NAME_CHARS} characters")
        bad = [queue for queue in agent.queues if not QUEUE_NAME.fullmatch(queue)]
        if not agent.queues or bad:
            raise AccountError("--queues must name at least one queue, comma-separated, each "
                               "lower-case letters, digits, '_' or '-'"
                               + (f" (not: {', '.join(bad)})" if bad else ""))
        if not 1 <= agent.max_chats <= MAX_CHATS_LIMIT:
            raise AccountError(f"--max-chats must be from 1 to {MAX_CHATS_LIMIT}")
        if agent.role not in ROLES:
            raise AccountError(f"--role must be one of: {', '.join(ROLES)}")

    @staticmethod
    def _check_password(password: str) -> None:
        if len(password) < MIN_PASSWORD_CHARS:
            raise AccountError(f"the password must be at least {MIN_PASSWORD_CHARS} characters")
