"""Visitor identity in `hello`: as the visitor says it, verified by HMAC, or refused."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from chat.conversations import VERIFIED_VISITOR
from tests.conftest import CONFIGURED_PREFIX, IDENTITY_SECRET
from tests.support.ws import bot_says, closed_status

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

ADA = {"user_id": "42", "name": "Ada", "email": "ada@example.com"}


def user_hash(user_id: str, secret: str = IDENTITY_SECRET) -> str:
    """What the site's backend computes: hex(HMAC-SHA256(IDENTITY_SECRET, user_id))."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def test_an_identity_without_hash_is_taken_as_said_and_not_verified(configured_server,
                                                                     open_visitor,
                                                                     configured_store):
    hello = open_visitor(configured_server).hello(None, identity=ADA)
    assert hello.errors == []
    assert hello.messages[0]["text"] == "Hi Ada! I'm the Concierge assistant."
    visitor = configured_store.field(hello.conversation, "visitor")
    assert visitor == {**ADA, "verified": False}


def test_an_identity_with_a_wrong_hash_is_forbidden_and_the_visitor_anonymous(
        configured_server, open_visitor, configured_store):
    tab = open_visitor(configured_server)
    hello = tab.hello(None, identity={**ADA, "hash": user_hash("43")})
    assert [e["code"] for e in hello.errors] == ["forbidden"]
    assert hello.messages[0]["text"] == "Hi there! I'm the Concierge assistant."
    visitor = configured_store.field(hello.conversation, "visitor")
    assert visitor["verified"] is False and "name" not in visitor and "user_id" not in visitor
    frames = tab.talk("opening hours", message_id="v1", until=bot_says("anything else"))
    assert frames[0] == {"type": "ack", "id": "v1", "seq": 3}


def test_any_hash_is_forbidden_where_identity_secret_is_unset(server, open_visitor, store):
    hello = open_visitor(server).hello(None, identity={**ADA, "hash": user_hash("42")})
    assert [e["code"] for e in hello.errors] == ["forbidden"]
    assert store.field(hello.conversation, "visitor")["verified"] is False


def test_a_right_hash_is_verified_and_resumes_on_a_second_device(configured_server,
                                                                 open_visitor, configured_store):
    identity = {**ADA, "hash": user_hash("42")}
    laptop = open_visitor(configured_server)
    hello = laptop.hello(None, identity=identity)
    assert hello.errors == []
    assert hello.messages[0]["text"] == "Hi Ada! I'm the Concierge assistant."
    assert configured_store.field(hello.conversation, "visitor")["verified"] is True
    laptop.talk("shipping", until=bot_says("anything else"))

    phone = open_visitor(configured_server)  # no token: the verified user_id finds it
    resumed = phone.hello(None, identity=identity)
    assert resumed.errors == []
    assert resumed.conversation == hello.conversation
    assert resumed.messages == configured_store.log(hello.conversation) == laptop.messages

    # Both devices are now tabs of one conversation.
    phone.say("opening hours", message_id="from-phone")
    laptop.receive_until(lambda f: f.get("id") == "from-phone")


def test_a_claimed_user_id_without_the_right_hash_does_not_resume_its_conversation(
        configured_server, open_visitor):
    owner = open_visitor(configured_server)
    verified = owner.hello(None, identity={**ADA, "hash": user_hash("42")})

    for identity in ({"user_id": "42"}, {"user_id": "42", "hash": user_hash("42", "guess")}):
        impostor = open_visitor(configured_server)
        hello = impostor.hello(None, identity=identity)
        assert hello.conversation != verified.conversation
        assert [m["seq"] for m in hello.messages] == [1, 2]


def test_a_verified_visitor_whose_conversation_closed_starts_a_new_one(configured_server,
                                                                       open_visitor):
    identity = {**ADA, "hash": user_hash("42")}
    first = open_visitor(configured_server)
    hello = first.hello(None, identity=identity)
    first.talk("bye", until=closed_status)

    later = open_visitor(configured_server).hello(None, identity=identity)
    assert later.conversation != hello.conversation
    assert later.welcome["status"] == "bot"


def test_a_verified_visitor_still_named_by_a_closed_conversation_starts_a_new_one(
        configured_server, open_visitor, redis):
    """Right after a close, the index of verified visitors may still name the closed one
    (the close forgets it just after storing): a new hello in that moment starts afresh."""
    identity = {**ADA, "hash": user_hash("42")}
    first = open_visitor(configured_server)
    hello = first.hello(None, identity=identity)
    first.talk("bye", until=closed_status)
    index = VERIFIED_VISITOR.format(prefix=CONFIGURED_PREFIX, user_id="42")
    redis.set(index, hello.conversation)  # as in that moment

    later = open_visitor(configured_server).hello(None, identity=identity)
    assert later.conversation != hello.conversation
    assert later.welcome["status"] == "bot"
    assert redis.get(index) == later.conversation
    resumed = open_visitor(configured_server).hello(hello.token)  # its own token: closed
    assert resumed.conversation == hello.conversation
    assert resumed.welcome["status"] == "closed"


def verified(user_id: str, name: str) -> dict[str, str]:
    return {"user_id": user_id, "name": name, "email": f"{user_id}@example.com",
            "hash": user_hash(user_id)}


def test_a_verified_visitor_with_another_verified_visitors_token_gets_a_new_conversation(
        configured_server, open_visitor, configured_store):
    alice = verified("alice-7", "Alice")
    first = open_visitor(configured_server)
    hello = first.hello(None, identity=alice)
    first.talk("opening hours? I live at 1 Private Road", until=bot_says("anything else"))
    first.close()  # the widget keeps Alice's token in the browser

    bob = open_visitor(configured_server)  # Bob signs in on the same browser
    greeting = bob.hello(hello.token, identity=verified("bob-8", "Bob"), last_seq=0)
    assert greeting.conversation != hello.conversation
    assert [m["seq"] for m in greeting.messages] == [1, 2]
    assert greeting.messages[0]["text"] == "Hi Bob! I'm the Concierge assistant."
    assert all("Private Road" not in m["text"] for m in bob.messages)
    bob.talk("shipping", until=bot_says("anything else"))
    assert all("Private Road" not in m["text"] for m in bob.messages)

    alices = configured_store.field(hello.conversation, "visitor")
    assert (alices["user_id"], alices["name"], alices["verified"]) == ("alice-7", "Alice", True)
    assert configured_store.field(greeting.conversation, "visitor")["user_id"] == "bob-8"
    # Alice, on another device, still finds her own conversation.
    again = open_visitor(configured_server).hello(None, identity=alice)
    assert again.conversation == hello.conversation
