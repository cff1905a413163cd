"""Frames of both sides of the protocol, valid ones, and hypothesis strategies that mutate them.

Shared by the parser's tests and the fuzz tests of the parser and of the live visitor socket.
"""

from __future__ import annotations

import json
from functools import reduce

from hypothesis import strategies as st

from web.incoming import MAX_DEPTH

VISITOR_FRAMES = [
    {"type": "hello", "token": None, "last_seq": 3, "flow": "default", "locale": "de-CH",
     "identity": {"user_id": "42", "name": "Ada", "email": "ada@example.com", "hash": "ab"},
     "page": {"url": "https://shop.example.com/cart", "title": "Cart", "referrer": ""}},
    {"type": "message", "id": "v1", "text": "Where is my order?"},
    {"type": "message", "id": "v2", "text": "", "payload": "ask_order"},
    {"type": "typing", "active": True},
    {"type": "end"},
    {"type": "rating", "score": 5, "comment": "quick and kind"},
    {"type": "leave_queue"},
    {"type": "ping"},
]

AGENT_FRAMES = [
    {"type": "presence", "status": "available"},
    {"type": "presence", "status": "away"},
    {"type": "accept", "conversation": "c_1"},
    {"type": "message", "conversation": "c_1", "id": "a1", "text": "Hello, I'm Ada."},
    {"type": "typing", "conversation": "c_1", "active": False},
    {"type": "transfer", "conversation": "c_1", "to": {"agent": "grace"}, "note": "VIP"},
    {"type": "transfer", "conversation": "c_1", "to": {"queue": "billing"}},
    {"type": "transfer", "conversation": "c_1", "to": {"bot": "menu"}},
    {"type": "close", "conversation": "c_1", "tags": ["refund", "shipping delay"]},
    {"type": "close", "conversation": "c_1"},
    {"type": "history", "conversation": "c_1", "before_seq": 40},
    {"type": "ping"},
]

FIELDS = sorted({key for frame in VISITOR_FRAMES + AGENT_FRAMES for key in frame}
                | {"identity", "page", "to", "tags", "name", "agent", "queue", "bot"})
TYPES = sorted({frame["type"] for frame in VISITOR_FRAMES + AGENT_FRAMES})

lone_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
odd_strings = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(codec=None), max_size=30),  # any code point, surrogates included
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), lone_surrogates,
              st.text(max_size=5)),
    st.sampled_from(["", " ", "\x00", "\u202e", "📦", "c_1", "available", "v1", "default"]),
    st.sampled_from([36, 100, 101, 200, 201, 2_000, 2_001, 4_000, 4_001]).map("x".__mul__),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), odd_strings)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(FIELDS), odd_strings),
                                            inner, max_size=4)),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, valid: list[dict]) -> str:
    """Draw a valid frame, mutate it a few times, and return it as the client would send it."""
    frame = json.loads(json.dumps(draw(st.sampled_from(valid))))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["drop", "add", "retype", "type", "nest"]))
        if how == "drop" and frame:
            frame.pop(draw(st.sampled_from(sorted(frame))))
        elif how == "add":
            frame[draw(st.one_of(st.sampled_from(FIELDS), odd_strings))] = draw(values)
        elif how == "retype" and frame:
            frame[draw(st.sampled_from(sorted(frame)))] = draw(values)
        elif how == "type":
            frame["type"] = draw(st.one_of(st.sampled_from(TYPES), odd_strings))
        elif how == "nest" and frame:
            depth = draw(st.integers(1, MAX_DEPTH + 8))
            key = draw(st.sampled_from(sorted(frame)))
            frame[key] = reduce(lambda inner, _: [inner], range(depth), frame[key])
    raw = json.dumps(frame)  # ensure_ascii: a lone surrogate goes out as \udxxx, as browsers do
    wrap = draw(st.sampled_from([0, 0, 0, MAX_DEPTH, 1_000, 5_000]))  # deeper than json recurses
    raw = "[" * wrap + raw + "]" * wrap
    cut = draw(st.one_of(st.none(), st.integers(0, len(raw))))
    return raw if cut is None else raw[:cut]  # sometimes not even JSON
