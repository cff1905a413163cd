"""A visitor talks to the shipped default flow over `/ws/visitor`, on real gunicorn and Redis."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.ws import bot_says, closed_status, of_type

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ENDED = "The visitor ended the conversation."
MENU = ["Track my order", "Shipping & returns", "Opening hours", "Talk to a person"]


def answered(frames: list[dict[str, Any]], message_id: str, seq: int, text: str
             ) -> list[dict[str, Any]]:
    """Check an exchange opens with the ack, then the echo; return the frames after them."""
    assert len(frames) >= 2, frames
    ack, echo, *rest = frames
    assert ack == {"type": "ack", "id": message_id, "seq": seq}
    assert echo["type"] == "message" and echo["from"] == "visitor", echo
    assert (echo["id"], echo["seq"], echo["text"]) == (message_id, seq, text)
    return rest


def bot_texts(frames: list[dict[str, Any]]) -> list[str]:
    return [f["text"] for f in frames if f["type"] == "message" and f["from"] == "bot"]


def test_a_whole_conversation_with_the_default_flow(server, open_visitor, store):
    tab = open_visitor(server)
    hello = tab.hello(None, page={"url": "https://shop.example.com/cart", "title": "Cart"},
                      locale="en-GB")
    cid = hello.conversation

    assert hello.errors == []
    assert hello.welcome["status"] == "bot"
    assert cid.startswith("c_") and hello.token
    assert [(m["seq"], m["from"], m["text"]) for m in hello.messages] == [
        (1, "bot", "Hi there! I'm the Concierge assistant."),
        (2, "bot", "How can I help you today?"),
    ]
    assert "buttons" not in hello.messages[0]
    assert [b["title"] for b in hello.messages[1]["buttons"]] == MENU
    assert hello.status == {"type": "status", "conversation": cid, "status": "bot"}
    for message in hello.messages:
        assert message["conversation"] == cid and message["id"]
        assert TIMESTAMP.fullmatch(message["ts"]), message["ts"]

    # A button click: its title as text, its payload; the ack comes first, then the echo.
    frames = tab.talk("Track my order", payload="ask_order", message_id="v1",
                      until=bot_says("What's your order number?"))
    rest = answered(frames, "v1", 3, "Track my order")
    assert frames[1]["payload"] == "ask_order"
    assert [(f["seq"], f["from"]) for f in rest] == [(4, "bot")]

    # An order lookup through the demo shop's API on the server itself (even digit: shipped).
    frames = tab.talk("where is AB123454?", message_id="v2", until=bot_says("anything else"))
    rest = answered(frames, "v2", 5, "where is AB123454?")
    assert bot_texts(rest) == [
        "Good news: order AB123454 has shipped with DHL and should arrive by 2026-11-26.",
        "Is there anything else I can help with?",
    ]
    assert [f["seq"] for f in rest] == [6, 7]

    # Nobody is there to take the escalation: the flow goes on at its offline form at once.
    frames = tab.talk("I want a person", message_id="v3", until=bot_says("email address"))
    rest = answered(frames, "v3", 8, "I want a person")
    assert bot_texts(rest) == ["Our team isn't available right now, but we'll get back to you.",
                               "What's your email address?"]
    assert not any(f["type"] == "status" for f in frames)  # still with the bot: never queued
    record = store.record(cid)
    assert record["status"] == "bot"
    escalation = store.field(cid, "escalation")
    assert escalation["queue"] == "support"
    assert escalation["reason"] == "asked"
    assert escalation["outcome"] == "no_agents"
    assert escalation["path"][-1] == "handoff" and escalation["path"][0] == "greet"

    frames = tab.talk("ada@example.com", message_id="v4", until=bot_says("tell us"))
    assert bot_texts(answered(frames, "v4", 11, "ada@example.com")) == [
        "And what would you like to tell us?"]

    # The end of the offline form ends the conversation.
    frames = tab.talk("Please call me back.", message_id="v5", until=closed_status)
    rest = answered(frames, "v5", 13, "Please call me back.")
    assert bot_texts(rest) == ["Thanks! We've got your message and will answer at "
                               "ada@example.com, usually within one working day."]
    assert rest[-1] == {"type": "status", "conversation": cid, "status": "closed",
                        "reason": "bot"}
    record = store.record(cid)
    assert (record["status"], record["closed_reason"]) == ("closed", "bot")

    # What the visitor saw is what is stored, message for message.
    assert store.log(cid) == tab.messages
    visitor = store.field(cid, "visitor")
    assert visitor["page_url"] == "https://shop.example.com/cart"
    assert visitor["locale"] == "en-GB"


def test_the_pages_locale_picks_the_bots_language_and_a_reload_in_another_switches(
        server, open_visitor, store):
    tab = open_visitor(server)
    hello = tab.hello(None, locale="de-CH")
    assert [m["text"] for m in hello.messages] == ["Hallo! Ich bin der Concierge-Assistent.",
                                                   "Wie kann ich Ihnen heute helfen?"]
    assert hello.messages[1]["buttons"][0] == {"title": "Bestellung verfolgen",
                                               "payload": "ask_order"}
    frames = tab.talk("Öffnungszeiten", until=bot_says("sonst noch helfen"))
    assert bot_texts(frames)[0].startswith("Unser Team antwortet im Chat montags bis freitags")
    assert store.field(hello.conversation, "bot")["locale"] == "de"

    # The site's page is reloaded in English: its hello resumes the conversation in English.
    again = open_visitor(server)
    again.hello(hello.token, last_seq=tab.last_seq, locale="en-US")
    frames = again.talk("shipping", until=bot_says("anything else"))
    assert bot_texts(frames)[0].startswith("We ship within 1-2 working days")
    assert store.field(hello.conversation, "visitor")["locale"] == "en-US"


def test_a_message_after_the_conversation_closed_gets_conflict(server, open_visitor, store):
    tab = open_visitor(server)
    cid = tab.hello(None).conversation
    tab.talk("goodbye", until=closed_status)
    stored = len(store.log(cid))

    tab.say("one more thing")
    error = tab.receive()
    assert error["type"] == "error" and error["code"] == "conflict", error
    tab.send({"type": "ping"})
    assert tab.receive() == {"type": "pong"}
    assert len(store.log(cid)) == stored


def test_the_visitor_ends_the_conversation(server, open_visitor, store):
    tab = open_visitor(server)
    cid = tab.hello(None).conversation
    tab.send({"type": "end"})
    frames = tab.receive_until(closed_status)
    assert frames[-1] == {"type": "status", "conversation": cid, "status": "closed",
                          "reason": "visitor"}
    assert [m["from"] for m in frames if m["type"] == "message"] == ["system"]
    record = store.record(cid)
    assert (record["status"], record["closed_reason"]) == ("closed", "visitor")
    assert store.log(cid)[-1]["from"] == "system"


def test_rating_before_the_close_is_a_conflict_and_after_it_is_stored(server, open_visitor,
                                                                     store):
    tab = open_visitor(server)
    cid = tab.hello(None).conversation
    tab.send({"type": "rating", "score": 5})
    error = tab.receive()
    assert (error["type"], error["code"], error["request"]) == ("error", "conflict", "rating")
    assert "after it has closed" in error["message"]
    assert store.field(cid, "rating") is None
    tab.send({"type": "hello", "token": None})  # a second one, on a socket that has its own
    error = tab.receive()
    assert (error["code"], error["request"]) == ("bad_frame", "hello") and \
        "already said hello" in error["message"], error

    tab.talk("bye", until=closed_status)
    tab.send({"type": "rating", "score": 4, "comment": "Quick and friendly"})
    tab.send({"type": "ping"})
    assert tab.receive() == {"type": "pong"}  # no frame answers a rating, and no error
    rating = store.field(cid, "rating")
    assert (rating["score"], rating["comment"]) == (4, "Quick and friendly")


def test_a_closed_conversation_resumes_closed_and_can_still_be_rated(server, open_visitor,
                                                                      store):
    tab = open_visitor(server)
    hello = tab.hello(None)
    tab.talk("bye", until=closed_status)
    tab.close()

    again = open_visitor(server)
    resumed = again.hello(hello.token, last_seq=tab.last_seq)
    assert resumed.welcome["status"] == "closed"
    assert resumed.messages == []
    assert resumed.status["status"] == "closed" and resumed.status["reason"] == "bot"
    again.send({"type": "rating", "score": 2})
    again.send({"type": "ping"})
    assert again.receive() == {"type": "pong"}
    assert store.field(hello.conversation, "rating")["score"] == 2


def test_leave_queue_when_not_waiting_for_a_person_is_a_conflict(server, open_visitor):
    tab = open_visitor(server)
    tab.hello(None)
    tab.send({"type": "leave_queue"})
    error = tab.receive()
    assert (error["type"], error["code"]) == ("error", "conflict"), error
    frames = tab.talk("opening hours", message_id="after", until=bot_says("anything else"))
    assert frames[0] == {"type": "ack", "id": "after", "seq": 3}


def test_ping_gets_pong_before_and_after_hello(server, open_visitor):
    tab = open_visitor(server)
    tab.send({"type": "ping"})
    assert tab.receive() == {"type": "pong"}
    tab.hello(None)
    tab.send({"type": "ping"})
    assert tab.receive() == {"type": "pong"}


def test_typing_is_taken_silently_and_not_echoed_to_the_visitors_tabs(server, open_visitor):
    tab = open_visitor(server)
    hello = tab.hello(None)
    other = open_visitor(server)
    other.hello(hello.token, last_seq=hello.last_seq)

    tab.send({"type": "typing", "active": True})
    tab.send({"type": "ping"})
    assert tab.receive() == {"type": "pong"}
    # The other tab sees the next stored message, and no typing before it.
    tab.say("opening hours")
    frames = other.receive_until(of_type("message"))
    assert [f["type"] for f in frames] == ["message"]


def test_a_button_click_may_come_with_a_payload_and_no_text(server, open_visitor):
    tab = open_visitor(server)
    tab.hello(None)
    frames = tab.talk("", payload="hours", message_id="click", until=bot_says("anything else"))
    assert frames[0] == {"type": "ack", "id": "click", "seq": 3}
    assert frames[1]["payload"] == "hours"
    assert bot_texts(frames)[0].startswith("Our team answers chats")


def test_the_visitor_ending_in_one_tab_closes_every_tab(server, open_visitor):
    tab = open_visitor(server)
    hello = tab.hello(None)
    other = open_visitor(server)
    other.hello(hello.token, last_seq=hello.last_seq)
    tab.send({"type": "end"})
    for each in (tab, other):
        assert each.receive_until(closed_status)[-1]["reason"] == "visitor"
    other.say("still there?")
    assert other.receive()["code"] == "conflict"


def test_a_message_sent_again_after_the_close_is_acked_again(server, open_visitor, store):
    tab = open_visitor(server)
    hello = tab.hello(None)
    frames = tab.talk("bye", message_id="last", until=closed_status)
    assert frames[0] == {"type": "ack", "id": "last", "seq": 3}
    tab.close()  # as if the connection dropped before the ack arrived

    again = open_visitor(server)
    again.hello(hello.token, last_seq=2)
    again.say("bye", message_id="last")
    assert again.receive() == {"type": "ack", "id": "last", "seq": 3}
    assert [m["id"] for m in store.log(hello.conversation)].count("last") == 1


@pytest.mark.parametrize("message_id", ["end_{cid}", "s:end"])
def test_a_message_id_like_the_servers_own_does_not_swallow_the_end(server, open_visitor,
                                                                    store, message_id):
    tab = open_visitor(server)
    cid = tab.hello(None).conversation
    message_id = message_id.format(cid=cid)
    frames_ = tab.talk("opening hours", message_id=message_id, until=bot_says("anything else"))
    assert frames_[0] == {"type": "ack", "id": message_id, "seq": 3}

    tab.send({"type": "end"})
    tab.receive_until(closed_status)

    log = store.log(cid)
    assert [m["id"] for m in log if m["from"] == "visitor"] == [message_id]
    ended = [m for m in log if m["text"] == ENDED]
    assert len(ended) == 1 and ended[0]["from"] == "system" and ended[0] == log[-1], log
    assert [m["text"] for m in tab.messages][-1] == ENDED
