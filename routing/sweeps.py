"""Routing's timers, with many workers and no leader: deadlines kept on the board, swept by one.

Every worker runs the loop; each round, the one that takes the round's short
lock in Redis does it:
- sockets that stopped answering pings (their worker died, the network went) are
  forgotten, so their agent goes offline (routing/board.py, `sockets`);
- agents offline past AGENT_GRACE_S give back what they held: each conversation goes
  back to the head of its queue and the visitor is told;
- conversations waiting past their queue's `max_wait` go on at the flow's no_agents;
- assignments a dead worker made but never announced are announced;
- visitors whose position changed are told it, and every waiting one at least every
  POSITIONS_EVERY_S.
Each of these is one script on the board, so a round cut short by a dead worker is
taken up by the next round on another, and no entry is handled twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import redis as redis_lib

from chat import frames, lifecycle
from chat.conversations import AGENT, NotFound

from .board import Board, now_ms
from .router import Router

log = logging.getLogger("concierge.routing")

ROUND_S = 1.0  # deadlines are seconds to minutes long; a second late is fine
ROUND_LOCK_MS = 900  # one worker a round; a dead one's lock is gone before the next round
POSITIONS_EVERY_S = 20.0  # inside the 30 s within which a waiting visitor hears again
ANNOUNCE_AFTER_MS = 3_000  # an assignment not announced by then lost its worker


class Sweeps:
    """The sweeping loop of one worker."""

    def __init__(self, board: Board, router: Router, grace_s: float,
                 no_agents: Callable[[str, str], Any]) -> None:
        self.board = board
        self.router = router
        self.grace_s = grace_s
        self.no_agents = no_agents  # (cid, why) -> the bot goes on at no_agents
        self.lock_key = board.base + "sweep"
        self._started = False
        self._positions_due = 0.0
        self.stopping = False

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        gevent.spawn(self._loop)

    def _loop(self) -> None:
        failing = False
        while not self.stopping:
            try:
                # Nothing on the board (no agent ever came): no lock taken, no key written.
                if self.board.has_timers() and self.board.redis.set(
                        self.lock_key, "1", nx=True, px=ROUND_LOCK_MS):
                    self.sweep_once()
                failing = False
            except (redis_lib.RedisError, OSError) as exc:
                if not failing:
                    log.warning("cannot sweep routing's timers (%s); retrying", exc)
                failing = True
            except Exception:  # noqa: BLE001 - the loop must outlive one bad round
                log.exception("a routing sweep failed")
            gevent.sleep(ROUND_S)

    def sweep_once(self, everyone: bool = False) -> None:
        """Do one round (`everyone`: tell every waiting visitor its position now)."""
        self.board.expire_sockets(self.grace_s)
        for agent, cid, queue in self.board.requeue_due():
            self._requeued(agent, cid, queue)
        for cid in self.board.give_up_due():
            self.no_agents(cid, "max_wait")
        for cid, _assigned in self.board.unannounced(now_ms() - ANNOUNCE_AFTER_MS):
            self.router.announce_again(cid)
        now = time.monotonic()
        if everyone or now >= self._positions_due:
            self._positions_due = now + POSITIONS_EVERY_S
            queues = self.board.queue_names()
            self.board.take_dirty()
        else:
            queues = self.board.take_dirty()
        for queue in queues:
            self.router.tell_positions(queue)

    def _requeued(self, agent: str, cid: str, queue: str) -> None:
        """A conversation came back from an agent whose grace ran out: its record says so (the
        visitor is told), and only then is it queued again, at the head of its queue."""
        self.router.ring_agent(agent, frames.unassigned(cid, "agent_lost"))
        try:
            conversation = self.router.conversations.get(cid)
        except NotFound:
            return
        if conversation.status != AGENT or conversation.agent_id not in ("", agent):
            return  # closed or back with the bot meanwhile; nothing to hand on
        escalation = {**(conversation.escalation or {}), "queue": queue or (
            conversation.escalation or {}).get("queue", "support"), "front": True}
        # The change's hand-over (Lifecycle.after) puts it back in line.
        self.router.lifecycle.apply(cid, lifecycle.requeueing(
            cid, escalation, "agent_lost", conversation.agent_name,
            client_id=f"s:requeued:{agent}:{conversation.seq}"), leaving=(AGENT,))
