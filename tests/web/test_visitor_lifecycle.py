"""Status changes as a visitor's tabs see them: system messages in the transcript, then status."""

from __future__ import annotations

import pytest

from tests.support.ws import Frame

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)


def closed_status(frame: Frame) -> bool:
    return frame["type"] == "status" and frame["status"] == "closed"


def system_messages(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f["type"] == "message" and f["from"] == "system"]


def test_a_tab_opened_after_the_close_replays_the_system_message_then_the_closed_status(
        server, open_visitor):
    first = open_visitor(server)
    greeting = first.hello(None)
    first.talk("bye", until=closed_status)  # the flow says goodbye and ends

    later = open_visitor(server).hello(greeting.token)

    assert later.welcome["status"] == "closed"
    closing = system_messages(later.messages)
    assert [(m["event"], m["status"], m["reason"]) for m in closing] == [
        ("closed", "closed", "bot")]
    assert later.messages[-1] == closing[0]  # the last thing the transcript says
    assert later.status == {"type": "status", "conversation": greeting.conversation,
                            "status": "closed", "reason": "bot"}


def test_the_status_frame_follows_the_system_message_that_caused_it(server, open_visitor):
    tab = open_visitor(server)
    cid = tab.hello(None).conversation

    tab.send({"type": "end"})
    frames = tab.receive_until(closed_status)

    said = system_messages(frames)[-1]
    assert (said["event"], said["reason"], said["text"]) == (
        "closed", "visitor", "The visitor ended the conversation.")
    assert frames.index(said) == len(frames) - 2  # the message, then its status
    assert frames[-1] == {"type": "status", "conversation": cid, "status": "closed",
                          "reason": "visitor"}


@pytest.mark.parametrize("frame", [
    {"type": "message", "id": "v-after", "text": "opening hours"},
    {"type": "end"}, {"type": "rating", "score": 5}, {"type": "leave_queue"}])
def test_a_conversation_gone_from_redis_under_its_socket_is_said_and_the_socket_closed(
        server, live_server, open_visitor, store, redis, frame):
    tab = open_visitor(server)
    greeting = tab.hello(None)
    redis.delete(*store.keys(greeting.conversation))  # a Redis that came back without its data

    tab.send(frame)

    assert tab.wait_closed() == 1013
    assert [(f["type"], f.get("code")) for f in tab.frames[-1:]] == [("error", "not_found")]
    assert "no longer exists" in tab.frames[-1]["message"]
    assert "NotFound" not in live_server.stderr(server)  # no traceback of the vanished one
    again = open_visitor(server).hello(greeting.token)  # the client reconnects, as told
    assert [e["code"] for e in again.errors] == ["not_found"]
    assert again.conversation != greeting.conversation


def test_a_conversation_full_of_messages_refuses_the_next_with_too_long(live_server,
                                                                        open_visitor, store):
    server = live_server(MAX_CONVERSATION_MESSAGES="4")  # the greeting is 2 of them
    tab = open_visitor(server)
    cid = tab.hello(None).conversation
    tab.say("hi", message_id="v1")
    tab.receive_until(lambda f: f["type"] == "message" and f.get("from") == "bot"
                      and f["seq"] > 3)  # the bot's answer may go past the cap

    tab.say("and another", message_id="v2")

    error = tab.receive_until(lambda f: f["type"] == "error")[-1]
    assert error["code"] == "too_long" and "start a new one" in error["message"]
    assert "v2" not in {m.get("id") for m in store.log(cid)}
    tab.send({"type": "ping"})
    assert tab.receive_until(lambda f: f["type"] == "pong")  # the socket stays usable
