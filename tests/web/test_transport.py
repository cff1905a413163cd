"""The transport under a socket: frames that cannot be encoded, and clients that never read.

A frame that has no UTF-8 goes out escaped and takes nothing else down with it. A client that
never reads is cut off once it leaves MAX_UNREAD_BYTES untaken, counting what the kernel holds
for it, and its connection is reset so the kernel lets go of those bytes at once.
"""

from __future__ import annotations

import json

import pytest

from tests.support.process import poll_until
from tests.support.raw_ws import RawSocket, server_side
from tests.support.ws import bot_says, message_with_seq, of_type
from tests.web.test_feeds import LONG_TEXT, bot_message, ring
from web.transport import MAX_UNREAD_BYTES

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

HALF_AN_EMOJI = "\ud83d"  # the first half of U+1F600's UTF-16 pair: no UTF-8 for it
CUT_OFF_WAIT_S = 30  # the cut-off comes with the write that passes the limit, at once
LONG_BYTES = len(json.dumps(bot_message(LONG_TEXT, 0), ensure_ascii=False).encode())
# What rings for the deaf tab: past the limit, yet less than the kernel takes without a write
# ever blocking (~3-4 MB), so only counting the kernel's bytes cuts it off.
FLOOD = int(1.3 * MAX_UNREAD_BYTES / LONG_BYTES)


def test_a_status_that_cannot_be_encoded_goes_out_escaped_and_takes_nothing_down(
        server, open_visitor, redis, store):
    tab = open_visitor(server)
    cid = tab.hello(None).conversation
    tab.talk("opening hours", until=bot_says("anything else"))
    in_step = tab.last_seq
    # A person joins whose name, stored JSON-escaped, holds half an emoji; the status frame made
    # from that system message cannot be encoded as it is. It rings with a message after it:
    # the three go out in one write.
    name = f"Zoë {HALF_AN_EMOJI}"
    assigned = {**bot_message("Zoë joined the conversation.", 1), "from": "system",
                "event": "assigned", "status": "agent", "agent": {"name": name}}
    ring(redis, store, cid, assigned, bot_message("Zoë will be with you in a moment.", 2),
         ascii_only=True)

    frames = tab.receive_until(message_with_seq(in_step + 2))
    assert [f["type"] for f in frames] == ["message", "status", "message"]
    assert frames[1] == {"type": "status", "conversation": cid, "status": "agent",
                         "agent": {"name": name}}  # as it was: the half escaped, the rest not
    # The writer goes on: a pong, an ack and an echo come as ever.
    tab.send({"type": "ping"})
    assert tab.receive() == {"type": "pong"}
    answer = tab.talk("opening hours", message_id="after", until=bot_says("anything else"))
    assert [f["type"] for f in answer[:2]] == ["ack", "message"]
    assert answer[0] == {"type": "ack", "id": "after", "seq": in_step + 3}
    assert tab.open


def test_frames_of_every_length_class_reach_the_client_whole(server, open_visitor, redis, store):
    """The transport writes a text frame's header itself (web/transport.py, `_encode`): lengths
    under 126 bytes, up to 64 KiB and past it each have their own; a real client reads each."""
    tab = open_visitor(server)
    cid = tab.hello(None).conversation
    texts = ["é", "x" * 124, "é" * 63, "ü" * 32_766, "ø" * 32_767, "\N{GRINNING FACE}" * 20_000]
    sizes = [len(json.dumps(bot_message(text, 0), ensure_ascii=False).encode())
             for text in texts]
    assert min(sizes) < 126 and any(126 <= size < 65_536 for size in sizes) and \
        max(sizes) > 65_536
    sent = ring(redis, store, cid, *(bot_message(text, n) for n, text in enumerate(texts)))
    got = tab.receive_until(message_with_seq(sent[-1]["seq"]))
    assert [frame["text"] for frame in got if frame["type"] == "message"][-len(texts):] == texts
    assert tab.open


@pytest.fixture(scope="module")
def unpinged_server(live_server) -> str:
    """The app with pings far apart: a client that stops reading is not cut off for pongs."""
    return live_server(PING_INTERVAL_S="600", WEB_CONCURRENCY="1")


def test_a_client_that_never_reads_is_cut_off_counting_what_the_kernel_holds_for_it(
        unpinged_server, open_visitor, redis, store):
    url = unpinged_server
    tab = open_visitor(url)
    greeting = tab.hello(None)
    deaf = RawSocket(url, rcvbuf=4096)  # a second tab of the conversation, that never reads
    try:
        deaf.send({"type": "hello", "token": greeting.token, "last_seq": greeting.last_seq})
        deaf.receive_until(of_type("status"))
        other = open_visitor(url)  # another visitor, on the same worker
        other.hello(None)

        for start in range(0, FLOOD, 10):  # messages the reading tab takes, and the deaf one not
            end = min(start + 10, FLOOD)
            ring(redis, store, greeting.conversation,
                 *(bot_message(LONG_TEXT, n) for n in range(start, end)))
            # Paced by the reader: a loaded machine must not make it a slow reader too.
            tab.receive_until(message_with_seq(greeting.last_seq + end))

        # The deaf tab is cut off, and reset: the kernel keeps nothing for it.
        assert poll_until(lambda: server_side(deaf) is None, CUT_OFF_WAIT_S), server_side(deaf)
        assert deaf.read_to_end() in ("reset", "eof")
        assert len(deaf.frames) < FLOOD
        # The worker goes on: the other visitor and the reading tab get answers.
        other.talk("opening hours", until=bot_says("anything else"))
        tab.talk("opening hours", message_id="after", until=bot_says("anything else"))
    finally:
        deaf.close()
