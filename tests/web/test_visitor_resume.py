"""Resuming a conversation: replay by `last_seq`, idempotent message ids, tokens."""

from __future__ import annotations

import json

import pytest
from itsdangerous import URLSafeTimedSerializer

from tests.support.gunicorn_server import BASE_ENV
from tests.support.ws import bot_says, of_type

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

GREETING = ["Hi there! I'm the Concierge assistant.", "How can I help you today?"]


def chat_a_while(tab) -> None:
    """Have a few exchanges with the default flow, each waited for to its end."""
    tab.talk("opening hours", until=bot_says("anything else"))
    tab.talk("yes", until=bot_says("How can I help you today?"))
    tab.talk("shipping", until=bot_says("anything else"))


def test_reconnecting_with_last_seq_replays_exactly_the_messages_after_it(server, open_visitor,
                                                                           store):
    tab = open_visitor(server)
    hello = tab.hello(None)
    chat_a_while(tab)
    tab.close()
    stored = store.log(hello.conversation)
    assert len(stored) == tab.last_seq == 11

    for last_seq in (0, 1, 5, 10, 11):
        again = open_visitor(server)
        resumed = again.hello(hello.token, last_seq=last_seq)
        assert resumed.errors == []
        assert resumed.conversation == hello.conversation
        assert resumed.welcome["status"] == "bot"
        assert resumed.messages == stored[last_seq:]
        assert resumed.status == {"type": "status", "conversation": hello.conversation,
                                  "status": "bot"}
        again.close()


def test_hello_without_last_seq_replays_the_whole_conversation(server, open_visitor, store):
    tab = open_visitor(server)
    hello = tab.hello(None)
    chat_a_while(tab)

    again = open_visitor(server)
    resumed = again.hello(hello.token)
    assert resumed.messages == store.log(hello.conversation) == tab.messages


def test_a_resumed_socket_goes_on_with_live_messages(server, open_visitor):
    tab = open_visitor(server)
    hello = tab.hello(None)
    tab.close()

    again = open_visitor(server)
    again.hello(hello.token, last_seq=2)
    frames = again.talk("opening hours", message_id="v-after", until=bot_says("anything else"))
    assert frames[0] == {"type": "ack", "id": "v-after", "seq": 3}
    assert [f["seq"] for f in frames[1:]] == [3, 4, 5]


def test_a_repeated_message_id_is_stored_once_and_acked_again_with_the_same_seq(
        server, open_visitor, store, redis):
    tab = open_visitor(server)
    hello = tab.hello(None)
    cid = hello.conversation
    frames = tab.talk("opening hours", message_id="v-dup", until=bot_says("anything else"))
    assert frames[0] == {"type": "ack", "id": "v-dup", "seq": 3}
    stored = store.log(cid)

    # The same id again (a re-send after a lost ack), even with other text: the same ack, nothing
    # else — no second echo, no second answer from the bot.
    for text in ("opening hours", "something else"):
        tab.say(text, message_id="v-dup")
        assert tab.receive() == {"type": "ack", "id": "v-dup", "seq": 3}
        tab.send({"type": "ping"})
        assert tab.receive() == {"type": "pong"}

    # From another tab, and after a reconnect, too.
    again = open_visitor(server)
    again.hello(hello.token, last_seq=tab.last_seq)
    again.say("opening hours", message_id="v-dup")
    assert again.receive() == {"type": "ack", "id": "v-dup", "seq": 3}
    again.send({"type": "ping"})
    assert again.receive() == {"type": "pong"}

    assert store.log(cid) == stored
    assert redis.llen(f"{store.record_key(cid)}:log") == len(stored) == 5
    assert [m["id"] for m in stored].count("v-dup") == 1


def test_seq_counts_every_message_without_gaps(server, open_visitor, store):
    tab = open_visitor(server)
    cid = tab.hello(None).conversation
    chat_a_while(tab)
    tab.talk("bye", until=of_type("status"))

    stored = store.log(cid)  # checks seq == 1, 2, 3 … itself
    assert [m["seq"] for m in tab.messages] == [m["seq"] for m in stored]
    assert int(store.record(cid)["seq"]) == len(stored)
    senders = {m["from"] for m in stored}
    assert senders == {"visitor", "bot", "system"}  # the close is a message of its own
    assert stored[-1]["event"] == "closed"


# --- tokens ------------------------------------------------------------------------------------


def forged_token(cid: str, secret: str = "not-the-servers-secret") -> str:
    """Sign a conversation id the way the server does, with a key of our choosing."""
    return URLSafeTimedSerializer(secret, salt="concierge.conversation").dumps(cid)


def assert_fresh_conversation(resumed, not_this: str | None = None) -> None:
    assert [e["code"] for e in resumed.errors] == ["not_found"], resumed.frames
    assert resumed.conversation != not_this
    assert [m["text"] for m in resumed.messages] == GREETING
    assert [m["seq"] for m in resumed.messages] == [1, 2]
    assert resumed.status["status"] == "bot"


def test_a_garbage_token_gets_not_found_and_a_fresh_conversation(server, open_visitor, store):
    tab = open_visitor(server)
    resumed = tab.hello("not-a-token", last_seq=0)
    assert_fresh_conversation(resumed)
    assert store.record(resumed.conversation)["status"] == "bot"
    frames = tab.talk("opening hours", message_id="v1", until=bot_says("anything else"))
    assert frames[0] == {"type": "ack", "id": "v1", "seq": 3}


@pytest.mark.parametrize("how", ["signed with another key", "tampered with"])
def test_a_forged_token_reads_nothing_of_the_conversation(server, open_visitor, how):
    owner = open_visitor(server)
    hello = owner.hello(None)
    owner.talk("my secret order AB123457", until=bot_says("anything else"))

    if how == "signed with another key":
        token = forged_token(hello.conversation)
    else:
        token = hello.token[:-2] + ("AA" if not hello.token.endswith("AA") else "BB")
    intruder = open_visitor(server)
    resumed = intruder.hello(token, last_seq=0)
    assert_fresh_conversation(resumed, not_this=hello.conversation)
    assert all("AB123457" not in m["text"] for m in intruder.messages)


def test_a_token_whose_conversation_expired_gets_not_found_and_a_fresh_one(server, open_visitor,
                                                                            store, redis):
    tab = open_visitor(server)
    hello = tab.hello(None)
    tab.close()
    redis.delete(*store.keys(hello.conversation))  # what expiry after RETENTION_DAYS does

    again = open_visitor(server)
    assert_fresh_conversation(again.hello(hello.token), not_this=hello.conversation)


def test_the_test_servers_sign_tokens_with_their_secret_key(server, open_visitor):
    # Guards the forgery tests above: the same signature with the server's key is accepted.
    tab = open_visitor(server)
    hello = tab.hello(None)
    again = open_visitor(server)
    resumed = again.hello(forged_token(hello.conversation, BASE_ENV["SECRET_KEY"]))
    assert resumed.errors == [] and resumed.conversation == hello.conversation


def test_an_unknown_flow_gets_not_found_and_the_default_flow(server, open_visitor, store):
    tab = open_visitor(server)
    hello = tab.hello(None, flow="<b>no-such-flow</b>")
    assert [e["code"] for e in hello.errors] == ["not_found"]
    assert "no such flow" in hello.errors[0]["message"]
    assert "no-such-flow" not in hello.errors[0]["message"]  # what it sent is not quoted back
    assert [m["text"] for m in hello.messages] == GREETING
    assert store.record(hello.conversation)["flow"] == "default"
    frames = tab.talk("opening hours", message_id="v1", until=bot_says("anything else"))
    assert frames[0] == {"type": "ack", "id": "v1", "seq": 3}


def test_naming_the_default_flow_is_no_error(server, open_visitor, store):
    hello = open_visitor(server).hello(None, flow="default")
    assert hello.errors == []
    assert store.record(hello.conversation)["flow"] == "default"


def test_a_last_seq_beyond_the_conversation_replays_nothing_and_live_messages_follow(
        server, open_visitor):
    tab = open_visitor(server)
    hello = tab.hello(None)
    again = open_visitor(server)
    resumed = again.hello(hello.token, last_seq=500)
    assert resumed.messages == [] and resumed.status["status"] == "bot"
    frames = again.talk("opening hours", message_id="v1", until=bot_says("anything else"))
    assert [f.get("seq") for f in frames] == [3, 3, 4, 5]


@pytest.mark.parametrize("why", ["bad token", "conversation expired"])
def test_a_fresh_conversation_for_a_stale_token_is_greeted_whatever_the_last_seq(
        server, open_visitor, store, redis, why):
    old = open_visitor(server)
    hello = old.hello(None)
    chat_a_while(old)  # the widget now holds the token and last_seq 11
    old.close()
    token = "not-a-token"
    if why == "conversation expired":
        token = hello.token
        redis.delete(*store.keys(hello.conversation))

    again = open_visitor(server)
    fresh = again.hello(token, last_seq=old.last_seq)
    assert [e["code"] for e in fresh.errors] == ["not_found"]
    assert [m["text"] for m in fresh.messages] == GREETING


def test_a_long_conversation_is_replayed_in_full(server, open_visitor, store, redis):
    tab = open_visitor(server)
    hello = tab.hello(None)
    tab.close()
    # A conversation of 2,500 messages, as a long one stored by the server would be: copies of its
    # own greeting, numbered on (the log and the record's seq, laid out as docs/protocol.md says).
    cid = hello.conversation
    template = hello.messages[0]
    log = f"{store.record_key(cid)}:log"
    with redis.pipeline() as pipe:
        for seq in range(3, 2_501):
            pipe.rpush(log, json.dumps({**template, "seq": seq, "id": f"m_{seq}"},
                                       separators=(",", ":")))
        pipe.hset(store.record_key(cid), "seq", 2_500)
        pipe.execute()

    again = open_visitor(server)
    resumed = again.hello(hello.token, last_seq=0)
    assert [m["seq"] for m in resumed.messages] == list(range(1, 2_501))
