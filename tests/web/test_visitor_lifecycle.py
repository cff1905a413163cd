"""Status changes as a visitor's tabs see them: system messages in the transcript, then status."""

from __future__ import annotations

from tests.support.ws import Frame


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
