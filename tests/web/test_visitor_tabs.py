"""Several sockets on one conversation — tabs of one browser, workers, instances — stay in step."""

from __future__ import annotations

import json
import threading

import pytest

from tests.support.ws import RECEIVE_TIMEOUT_S, bot_says, closed_status, message_with_seq, of_type

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

# Answers of the default flow that are the same from the menu or from "anything else?", so that
# who answered what can be read back from the log: each visitor text -> the bot's messages.
ANSWERS = {
    "opening hours": ["Our team answers chats", "Is there anything else"],
    "shipping": ["We ship within", "You can return", "Is there anything else"],
}
ROUNDS = 6  # messages each tab sends at once
ENDED = "The visitor ended the conversation."


def label(text: str) -> str:
    """Name a bot message by the answer part it starts with."""
    return next(part for parts in ANSWERS.values() for part in parts if text.startswith(part))


def check_bot_turns_never_interleave(log: list[dict]) -> None:
    """Each visitor message's whole answer follows it, before the next message's answer starts."""
    visitor = [m for m in log if m["from"] == "visitor"]
    bot = [m for m in log[2:] if m["from"] == "bot"]  # after the greeting
    expected = [part for m in visitor for part in ANSWERS[m["text"]]]
    assert [label(m["text"]) for m in bot] == expected, [(m["seq"], m["text"]) for m in log]
    at = 0
    for message in visitor:
        answer = bot[at:at + len(ANSWERS[message["text"]])]
        assert answer[0]["seq"] > message["seq"], (message, answer)
        at += len(answer)


def check_acks(tab, sent: list[str]) -> None:
    """Every message the tab sent got one ack, before its echo, with the seq of that echo."""
    acks = {f["id"]: (i, f["seq"]) for i, f in enumerate(tab.frames) if f["type"] == "ack"}
    assert sorted(acks) == sorted(sent), (acks, sent)
    for message_id in sent:
        echo = next(i for i, f in enumerate(tab.frames)
                    if f["type"] == "message" and f["id"] == message_id)
        ack_at, ack_seq = acks[message_id]
        assert ack_at < echo, f"ack of {message_id} after its echo: {tab.frames}"
        assert ack_seq == tab.frames[echo]["seq"]


@pytest.fixture(params=["one instance", "two instances"])
def tab_urls(request, server) -> tuple[str, str]:
    """Return where tab A and tab B connect: the same server, or two instances on one Redis."""
    if request.param == "one instance":
        return server, server
    return server, request.getfixturevalue("second_instance")


def test_two_tabs_see_the_same_messages_in_the_same_order(tab_urls, open_visitor, store):
    url_a, url_b = tab_urls
    tab_a = open_visitor(url_a)
    hello = tab_a.hello(None)
    tab_b = open_visitor(url_b)
    resumed = tab_b.hello(hello.token, last_seq=0)
    assert resumed.conversation == hello.conversation
    assert resumed.messages == hello.messages

    # One after the other: each tab sees the other's message and the bot's answer.
    tab_a.say("opening hours", message_id="a0")
    for tab in (tab_a, tab_b):
        tab.receive_until(bot_says("anything else"))
    tab_b.say("shipping", message_id="b0")
    for tab in (tab_a, tab_b):
        tab.receive_until(message_with_seq(9))

    # Both at once: every message is acked, the bot answers them one at a time.
    sent_a, sent_b = ["a0"], ["b0"]
    texts = list(ANSWERS)
    for i in range(ROUNDS):
        sent_a.append(tab_a.say(texts[i % 2], message_id=f"a{i + 1}"))
        sent_b.append(tab_b.say(texts[(i + 1) % 2], message_id=f"b{i + 1}"))
    total = 2 + sum(1 + len(ANSWERS[t]) for t in ["opening hours", "shipping"] * (ROUNDS + 1))
    for tab in (tab_a, tab_b):
        tab.receive_until(message_with_seq(total))

    log = store.log(hello.conversation)
    assert len(log) == total
    assert tab_a.messages == tab_b.messages == log
    check_acks(tab_a, sent_a)
    check_acks(tab_b, sent_b)
    assert not any(f["type"] == "ack" and f["id"].startswith("b") for f in tab_a.frames)
    check_bot_turns_never_interleave(log)


def test_a_tab_that_joins_late_catches_up_and_goes_on_in_step(tab_urls, open_visitor, store):
    url_a, url_b = tab_urls
    tab_a = open_visitor(url_a)
    hello = tab_a.hello(None)
    tab_a.talk("shipping", until=bot_says("anything else"))

    tab_b = open_visitor(url_b)
    joined = tab_b.hello(hello.token, last_seq=2)
    assert [m["seq"] for m in joined.messages] == [3, 4, 5, 6]
    tab_b.say("opening hours", message_id="late")
    for tab in (tab_a, tab_b):
        tab.receive_until(message_with_seq(9))
    assert tab_a.messages == store.log(hello.conversation)
    assert tab_b.messages == store.log(hello.conversation)[2:]


ENDING_ROUNDS = 3  # conversations ended by two tabs at once: each is a fresh chance to race


def test_two_tabs_ending_at_once_close_the_conversation_once(server, open_visitor, store,
                                                              redis):
    for _ in range(ENDING_ROUNDS):
        check_two_tabs_end_at_once(server, open_visitor, store, redis)


def check_two_tabs_end_at_once(server, open_visitor, store, redis) -> None:
    tab_a = open_visitor(server)
    hello = tab_a.hello(None)
    cid = hello.conversation
    tab_b = open_visitor(server)
    tab_b.hello(hello.token, last_seq=hello.last_seq)

    both = threading.Barrier(2)

    def end(tab) -> None:
        both.wait(RECEIVE_TIMEOUT_S)
        tab.send({"type": "end"})

    senders = [threading.Thread(target=end, args=(tab,)) for tab in (tab_a, tab_b)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(RECEIVE_TIMEOUT_S)
    for tab in (tab_a, tab_b):  # a ping is answered after the tab's own `end` is handled
        tab.send({"type": "ping"})
        tab.receive_until(of_type("pong"))
    # Both ends are done and published; a last frame on the doorbell flushes what is on its way.
    marker = {"type": "typing", "conversation": cid, "from": "test", "active": False}
    store.publish(cid, json.dumps(marker))
    for tab in (tab_a, tab_b):
        tab.receive_until(lambda f: f == marker)

    ended = [m for m in store.log(cid) if m["text"] == ENDED]
    assert len(ended) == 1 and ended[0]["from"] == "system", store.log(cid)
    for tab in (tab_a, tab_b):
        assert [m["text"] for m in tab.messages].count(ENDED) == 1
        statuses = [f for f in tab.frames if closed_status(f)]
        assert statuses == [{"type": "status", "conversation": cid, "status": "closed",
                             "reason": "visitor"}], tab.frames
    assert store.record(cid)["closed_reason"] == "visitor"
    tab_a.close()
    tab_b.close()
