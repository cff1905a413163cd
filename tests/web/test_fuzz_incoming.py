"""Property tests of the frame parser: frames mutated from valid ones, for both roles.

Whatever a client sends, `parse` returns a frame or raises FrameError with a documented code;
nothing else escapes. A frame it returns can be stored (every string encodes as UTF-8), and an
error's message can be sent (it encodes, and stays short whatever the frame held).
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.web.mutations import AGENT_FRAMES, VISITOR_FRAMES, mutated
from web.incoming import AGENT, VISITOR, FrameError, parse

# Not on_cluster: parsing alone, no Redis.

PARSER_CODES = {"bad_frame", "unknown_type", "too_long"}  # docs/protocol.md, "Limits"
MAX_ERROR_CHARS = 400  # an error names a field and a limit; it never carries the frame

FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

def assert_documented(raw: str | bytes, role: str) -> None:
    try:
        frame = parse(raw, role, 4_000)
    except FrameError as error:
        assert error.code in PARSER_CODES, error.code
        assert len(error.message) <= MAX_ERROR_CHARS, error.message
        error.message.encode()
        return
    assert isinstance(frame, dict) and isinstance(frame["type"], str)
    json.dumps(frame, ensure_ascii=False).encode()  # storable: no lone surrogate anywhere


@FUZZ
@given(mutated(VISITOR_FRAMES))
def test_a_mutated_visitor_frame_is_taken_or_refused_with_a_documented_code(raw):
    assert_documented(raw, VISITOR)


@FUZZ
@given(mutated(AGENT_FRAMES))
def test_a_mutated_agent_frame_is_taken_or_refused_with_a_documented_code(raw):
    assert_documented(raw, AGENT)


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=50),
                 st.text(st.sampled_from('[]{}",:\\u0d8 '), max_size=300)),
       st.sampled_from([VISITOR, AGENT]))
def test_any_text_at_all_is_taken_or_refused_with_a_documented_code(raw, role):
    assert_documented(raw, role)
