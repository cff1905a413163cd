"""What an outside probe sent to break the visitor socket, and what it gets now: `bad_frame`,
nothing stored, and the socket and the conversation still working.

Before the fix, a lone UTF-16 surrogate (`"\\ud83d"` in the JSON, as a browser's JSON.stringify
writes half an emoji) in a message closed the socket with 1011, in a resumed identity poisoned
the stored record for good, and in an echoed `type` killed the socket's writer with the frames
it held; 2 KB of nested brackets closed with 1011 and logged a RecursionError traceback.
"""

from __future__ import annotations

import pytest

from tests.support.ws import expect_error, still_serves, still_takes_messages

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

LONE = "\ud83d"  # the first half of 📦; json.dumps sends it as \ud83d
SURROGATE_SAID = "lone UTF-16 surrogate"


def expect_bad_frame(tab, *said: str) -> dict:
    return expect_error(tab, "bad_frame", *said)


def stored_ids(store, cid: str) -> set[str]:
    return {message.get("id") for message in store.log(cid)}


@pytest.mark.parametrize("field", ["text", "id"])
def test_a_lone_surrogate_in_a_message_is_refused_and_never_stored(server, open_visitor, store,
                                                                    field):
    tab = open_visitor(server)
    cid = tab.hello(None).conversation
    frame = {"type": "message", "id": "v-cut", "text": "my parcel " + LONE}
    if field == "id":
        frame = {"type": "message", "id": "v-" + LONE, "text": "my parcel"}
    before = store.log(cid)
    for _ in range(2):  # a client re-sends what has no ack: it gets the same answer, no 1011
        tab.send(frame)
        expect_bad_frame(tab, f"'{field}'", SURROGATE_SAID, "\\ud83d")
    assert store.log(cid) == before
    still_takes_messages(tab)


def test_a_lone_surrogate_in_the_name_of_a_resume_leaves_the_conversation_working(
        server, open_visitor, store):
    first = open_visitor(server)
    hello = first.hello(None, identity={"name": "Ada"})
    token, cid = hello.token, hello.conversation
    probe = open_visitor(server)
    probe.send({"type": "hello", "token": token, "identity": {"name": "Ada " + LONE}})
    expect_bad_frame(probe, "'identity.name'", SURROGATE_SAID)
    assert store.field(cid, "visitor")["name"] == "Ada"  # the record is as it was
    assert probe.hello(token).conversation == cid  # that socket may still say hello
    other = open_visitor(server)
    assert other.hello(token, last_seq=first.last_seq).conversation == cid
    still_takes_messages(other)


@pytest.mark.parametrize("when", ["before hello", "after hello"])
def test_a_lone_surrogate_as_the_type_is_refused_without_echoing_it(server, open_visitor, when):
    tab = open_visitor(server)
    if when == "after hello":
        tab.hello(None)
    tab.send({"type": "\ud800"})
    error = expect_bad_frame(tab, "'type'", SURROGATE_SAID)
    assert "\ud800" not in error["message"]
    still_serves(tab)


def test_a_refused_type_takes_no_other_frame_down_with_it(server, open_visitor):
    tab = open_visitor(server)
    tab.hello(None)
    message_id = "v-before-the-probe"
    # Sent at once, so the server's answers go out together, in the batches of one writer.
    for frame in ({"type": "message", "id": message_id, "text": "opening hours"},
                  {"type": "\ud800"}, {"type": "ping"}):
        tab.send(frame)
    wanted = {("ack", message_id), ("message", message_id), ("error", "bad_frame"),
              ("pong", None)}  # the echo comes by the doorbell: maybe after the pong
    seen: set[tuple[str, str | None]] = set()

    def all_seen(frame: dict) -> bool:
        seen.add((frame["type"], frame.get("id") or frame.get("code")))
        return wanted <= seen

    tab.receive_until(all_seen)


@pytest.mark.parametrize("raw", [
    "[" * 2_048,  # the probe's 2 KB
    '{"type": "ping", "a": ' + "[" * 969 + "]" * 969 + "}",
    '{"type": "message", "id": "v1", "text": "hi", "x": ' + '{"a":' * 1_000 + "1" + "}" * 1_000
    + "}",
])
def test_deep_nesting_is_a_bad_frame_and_logs_no_traceback(live_server, server, open_visitor,
                                                           raw):
    tab = open_visitor(server)
    tab.hello(None)
    tab.send_text(raw)
    expect_bad_frame(tab, "nested at most 32 levels")
    still_serves(tab)
    still_takes_messages(tab)
    log = live_server.stderr(server)
    assert "RecursionError" not in log
