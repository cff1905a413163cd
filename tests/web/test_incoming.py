"""The frame parser, by role: what each side may send, and what no frame may hold."""

from __future__ import annotations

import json

import pytest

from tests.web.mutations import AGENT_FRAMES, VISITOR_FRAMES
from web.incoming import AGENT, MAX_DEPTH, VISITOR, FrameError, parse

# Not on_cluster: parsing alone, no Redis.

MAX_TEXT = 4_000

def refusal(frame: dict | str | bytes, role: str = VISITOR) -> FrameError:
    """Parse a frame that must be refused; return the error."""
    raw = json.dumps(frame) if isinstance(frame, dict) else frame
    with pytest.raises(FrameError) as caught:
        parse(raw, role, MAX_TEXT)
    return caught.value


@pytest.mark.parametrize("frame", VISITOR_FRAMES, ids=lambda f: f["type"])
def test_every_visitor_frame_of_the_protocol_is_taken_as_sent(frame):
    assert parse(json.dumps(frame), VISITOR, MAX_TEXT) == frame


@pytest.mark.parametrize("frame", AGENT_FRAMES, ids=lambda f: f["type"])
def test_every_agent_frame_of_the_protocol_is_taken_as_sent(frame):
    assert parse(json.dumps(frame), AGENT, MAX_TEXT) == frame


@pytest.mark.parametrize(("kind", "role"), [("hello", AGENT), ("rating", AGENT),
                                            ("presence", VISITOR), ("transfer", VISITOR)])
def test_a_frame_of_the_other_side_is_an_unknown_type(kind, role):
    error = refusal({"type": kind, "conversation": "c_1"}, role)
    assert error.code == "unknown_type"
    assert "known: " in error.message


@pytest.mark.parametrize(("frame", "code", "named"), [
    ({"type": "presence"}, "bad_frame", "status"),
    ({"type": "presence", "status": "busy"}, "bad_frame", "available or away"),
    ({"type": "accept"}, "bad_frame", "conversation"),
    ({"type": "accept", "conversation": 7}, "bad_frame", "conversation"),
    ({"type": "accept", "conversation": ""}, "bad_frame", "conversation"),
    ({"type": "accept", "conversation": "c" * 101}, "bad_frame", "conversation"),
    ({"type": "message", "conversation": "c_1", "text": "hi"}, "bad_frame", "id"),
    ({"type": "message", "conversation": "c_1", "id": "a1"}, "bad_frame", "text"),
    ({"type": "message", "conversation": "c_1", "id": "a1", "text": "  "}, "bad_frame", "empty"),
    ({"type": "message", "conversation": "c_1", "id": "a1", "text": "x" * 4001}, "too_long",
     "4000"),
    ({"type": "message", "id": "a1", "text": "hi"}, "bad_frame", "conversation"),
    ({"type": "typing", "conversation": "c_1", "active": "yes"}, "bad_frame", "active"),
    ({"type": "transfer", "conversation": "c_1"}, "bad_frame", "to"),
    ({"type": "transfer", "conversation": "c_1", "to": "grace"}, "bad_frame", "to"),
    ({"type": "transfer", "conversation": "c_1", "to": {}}, "bad_frame", "exactly one"),
    ({"type": "transfer", "conversation": "c_1", "to": {"agent": "a", "queue": "q"}},
     "bad_frame", "exactly one"),
    ({"type": "transfer", "conversation": "c_1", "to": {"human": "a"}}, "bad_frame",
     "exactly one"),
    ({"type": "transfer", "conversation": "c_1", "to": {"queue": 3}}, "bad_frame", "to.queue"),
    ({"type": "transfer", "conversation": "c_1", "to": {"bot": ""}}, "bad_frame", "to.bot"),
    ({"type": "transfer", "conversation": "c_1", "to": {"agent": "a" * 101}}, "too_long",
     "to.agent"),
    ({"type": "transfer", "conversation": "c_1", "to": {"agent": "a"}, "note": 1}, "bad_frame",
     "note"),
    ({"type": "transfer", "conversation": "c_1", "to": {"agent": "a"}, "note": "n" * 2001},
     "too_long", "note"),
    ({"type": "close", "conversation": "c_1", "tags": "refund"}, "bad_frame", "tags"),
    ({"type": "close", "conversation": "c_1", "tags": ["ok", 3]}, "bad_frame", "tags"),
    ({"type": "close", "conversation": "c_1", "tags": [""]}, "bad_frame", "tags"),
    ({"type": "close", "conversation": "c_1", "tags": ["t" * 51]}, "too_long", "tag"),
    ({"type": "close", "conversation": "c_1", "tags": ["t"] * 21}, "too_long", "tags"),
    ({"type": "history", "conversation": "c_1"}, "bad_frame", "before_seq"),
    ({"type": "history", "conversation": "c_1", "before_seq": 0}, "bad_frame", "before_seq"),
    ({"type": "history", "conversation": "c_1", "before_seq": "9"}, "bad_frame", "before_seq"),
    ({"type": "history", "conversation": "c_1", "before_seq": True}, "bad_frame", "before_seq"),
])
def test_an_agent_frame_that_breaks_a_rule_is_refused_naming_what_to_fix(frame, code, named):
    error = refusal(frame, AGENT)
    assert (error.code, named in error.message) == (code, True), error.message


@pytest.mark.parametrize(("frame", "where"), [
    ({"type": "message", "id": "v1", "text": "cut emoji \ud83d"}, "'text'"),
    ({"type": "message", "id": "\ud83d", "text": "hi"}, "'id'"),
    ({"type": "hello", "identity": {"name": "Ada \udc4d"}}, "'identity.name'"),
    ({"type": "\ud800"}, "'type'"),
    ({"type": "ping", "extra": ["ok", {"deep": "\udfff"}]}, "'extra[1].deep'"),
    ({"type": "ping", "\ud83d": 1}, "a field name"),
])
def test_a_lone_surrogate_anywhere_is_a_bad_frame_naming_where(frame, where):
    error = refusal(frame)  # json.dumps writes a lone surrogate as \\udxxx, as a browser does
    assert error.code == "bad_frame"
    assert error.message.startswith(where), error.message
    assert "lone UTF-16 surrogate" in error.message
    error.message.encode()  # the answer itself can be sent


def test_a_surrogate_pair_is_a_whole_character_and_is_taken():
    frame = parse('{"type": "message", "id": "v1", "text": "parcel \\ud83d\\udce6"}', VISITOR,
                  MAX_TEXT)
    assert frame["text"] == "parcel 📦"


def test_an_escaped_backslash_before_u_is_no_surrogate():
    frame = parse('{"type": "message", "id": "v1", "text": "C:\\\\ud83d"}', VISITOR, MAX_TEXT)
    assert frame["text"] == "C:\\ud83d"


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    """Return a ping frame whose `a` holds lists nested so the frame is `depth` levels deep."""
    inner = depth - 1  # the frame's own object is the first level
    return '{"type": "ping", "a": ' + opener * inner + closer * inner + "}"


def test_a_frame_nested_up_to_the_bound_is_taken():
    assert parse(nested(MAX_DEPTH), VISITOR, MAX_TEXT)["type"] == "ping"


@pytest.mark.parametrize("raw", [
    nested(MAX_DEPTH + 1),
    '{"type": "ping", "a": ' + '{"b": ' * MAX_DEPTH + "1" + "}" * MAX_DEPTH + "}",
    "[" * 2048,  # what the outside probe sent: 2 KB, deep enough to exhaust the recursion
    "[" * 100_000,
    '{"type": "ping", "a": "\\\\", "b": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}",
])
def test_a_frame_nested_deeper_is_a_bad_frame_before_it_is_parsed(raw):
    error = refusal(raw)
    assert error.code == "bad_frame" and f"at most {MAX_DEPTH} levels" in error.message


def test_brackets_inside_strings_are_not_nesting():
    text = "[" * 200 + '\\"' + "{" * 200
    frame = parse(json.dumps({"type": "message", "id": "v1", "text": text}), VISITOR, MAX_TEXT)
    assert frame["text"] == text


def test_an_unknown_type_is_quoted_back_cut_short_and_printable():
    error = refusal({"type": "\x07bell" + "x" * 5000})
    assert error.code == "unknown_type"
    assert "'?bell" + "x" * 35 + "…'" in error.message
    assert len(error.message) < 200


@pytest.mark.parametrize(("raw", "said"), [
    (b'{"type": "ping"}', "not binary"),
    ("not JSON", "one JSON object"),
    ("[1, 2]", "a JSON object"),
    ('{"type": 7}', "string 'type'"),
    ('{"type": "ping", "n": ' + "9" * 5000 + "}", "number in the frame is too long"),
])
def test_what_is_no_frame_at_all_is_a_bad_frame(raw, said):
    error = refusal(raw)
    assert error.code == "bad_frame" and said in error.message


@pytest.mark.parametrize("payload", ["", None])
def test_a_visitor_message_with_no_text_and_no_payload_is_empty(payload):
    frame = {"type": "message", "id": "v1", "text": "", "payload": payload}
    error = refusal(frame)
    assert error.code == "bad_frame" and "the message is empty" in str(error)
    assert parse(json.dumps({**frame, "payload": "shipping"}), VISITOR, MAX_TEXT)["payload"] == \
        "shipping"  # a button click may come with no title
