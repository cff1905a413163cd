"""Fuzz the live visitor socket: after hello, frames mutated from valid ones.

Every frame the server answers with is one docs/protocol.md documents for the visitor (an
`error` with a documented code), and after each mutated frame the socket still answers `ping`
with `pong`: no close, no 1011, no writer taken down.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings

from tests.support.ws import VisitorSocket, of_type
from tests.web.mutations import VISITOR_FRAMES, mutated

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

FRAME_LIMIT = 16 * 1024  # bytes; a bigger frame closes the socket with 1009, as documented
VISITOR_FRAME_TYPES = {"welcome", "message", "ack", "status", "typing", "error", "pong"}
ERROR_CODES = {"bad_frame", "unknown_type", "too_long", "rate_limited", "not_found",
               "forbidden", "conflict", "unavailable"}

# One socket an example (a fresh rate limit each), 5-20 ms each: the test stays under 5 s.
LIVE_FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.filter_too_much])


def assert_documented(frame: dict) -> None:
    assert frame.get("type") in VISITOR_FRAME_TYPES, frame
    if frame["type"] == "error":
        assert frame["code"] in ERROR_CODES and isinstance(frame["message"], str), frame
    if frame["type"] == "message":
        assert isinstance(frame["seq"], int) and frame["seq"] >= 1, frame


@LIVE_FUZZ
@given(raw=mutated(VISITOR_FRAMES))
def test_every_answer_to_a_mutated_frame_is_documented_and_the_socket_stays_usable(server, raw):
    assume(len(raw.encode()) <= FRAME_LIMIT)
    tab = VisitorSocket(server)
    try:
        greeting = tab.hello(None)
        tab.send_text(raw)
        tab.send({"type": "ping"})
        answers = tab.receive_until(of_type("pong"))
        for frame in greeting.frames + answers:
            assert_documented(frame)
    finally:
        tab.close()
