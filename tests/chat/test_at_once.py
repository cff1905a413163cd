"""A bot turn in one round trip (chat/at_once.py): the answer stored with the visitor's message
when nothing changed since the worker's last turn, and the lock protocol whenever it did."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bots import calls, engine
from tests.chat.conftest import settle, started

ENGLISH_SHIPPING = "We ship within 1-2 working days"
GERMAN_SHIPPING = "Wir versenden innerhalb von 1-2 Werktagen"


def log_of(parts_store, cid: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in parts_store.redis.lrange(parts_store.keys(cid)[1], 0, -1)]


def script_calls(redis, name: str) -> int:
    """How often Redis ran commands named `name` (lower case), scripts' own included."""
    return redis.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0)


def test_a_plain_answer_is_stored_with_the_message_and_no_turn_lock_is_taken(live, redis,
                                                                             parts_store):
    cid = started(live)  # the greeting's turn leaves what the next answer needs
    before = log_of(parts_store, cid)
    locks_before = script_calls(redis, "set")  # the turn lock is taken with SET NX

    appended = live.visitors.say(cid, "shipping", "m1")

    assert appended.new and appended.began is None
    stored = log_of(parts_store, cid)[len(before):]
    assert [m["from"] for m in stored] == ["visitor", "bot", "bot", "bot"]  # + anything else?
    assert stored[0]["text"] == "shipping" and stored[1]["text"].startswith(ENGLISH_SHIPPING)
    assert [json.loads(raw)["seq"] for raw in appended.answered] == [m["seq"] for m in stored[1:]]
    assert list(appended.answered) == parts_store.redis.lrange(parts_store.keys(cid)[1], -3, -1)
    record = parts_store.redis.hgetall(parts_store.keys(cid)[0])
    assert int(record["bot_seq"]) == appended.seq == stored[0]["seq"]
    assert int(record["seq"]) == stored[-1]["seq"]
    assert json.loads(record["bot"])["state"] == "anything_else"
    assert script_calls(redis, "set") == locks_before
    assert parts_store.redis.get(parts_store.lock_key(cid)) is None
    # its idle deadline is armed as a turn under the lock arms it
    assert parts_store.redis.zscore(live.timers.key, cid) == pytest.approx(
        float(record["idle_at"]), abs=0.001)


def test_the_answer_is_the_one_the_lock_protocol_gives(live, parts_store):
    quick, slow = started(live), started(live)
    live.bot.known.forget(slow)  # as on a worker that did not store the last turn

    answered = live.visitors.say(quick, "hours", "m1")
    waited = live.visitors.say(slow, "hours", "m1")
    settle()

    assert answered.answered and waited.answered is None
    texts = [[m["text"] for m in log_of(parts_store, cid) if m["from"] == "bot"]
             for cid in (quick, slow)]
    assert texts[0] == texts[1] and len(texts[0]) >= 2
    records = [parts_store.redis.hgetall(parts_store.keys(c)[0]) for c in (quick, slow)]
    assert json.loads(records[0]["bot"]) == json.loads(records[1]["bot"])
    assert records[0]["bot_seq"] == records[1]["bot_seq"]


def test_a_visitor_changed_since_the_last_turn_is_answered_under_the_lock_from_the_record(
        live, conversations, parts_store):
    cid = started(live)
    # another tab's hello on another worker switched the visitor to German meanwhile
    conversations.update(cid, visitor={"verified": False, "locale": "de"})

    appended = live.visitors.say(cid, "Versand", "m1")
    settle()

    assert appended.answered is None
    bot_texts = [m["text"] for m in log_of(parts_store, cid) if m["from"] == "bot"]
    assert any(text.startswith(GERMAN_SHIPPING) for text in bot_texts)
    assert not any(text.startswith(ENGLISH_SHIPPING) for text in bot_texts)
    assert live.bot.known.get(cid).visitor == parts_store.redis.hget(
        parts_store.keys(cid)[0], "visitor")  # and the next one may go at once again


def test_a_message_stored_by_another_worker_meanwhile_gets_its_answer_too(live, conversations,
                                                                         parts_store):
    from tests.chat.conftest import visitor_says  # noqa: PLC0415

    cid = started(live)
    # a second tab on another worker stored a message whose turn that worker has not run yet
    visitor_says(conversations, cid, "hours", "other-tab", token="")

    appended = live.visitors.say(cid, "shipping", "m1")
    settle()

    assert appended.answered is None
    stored = log_of(parts_store, cid)
    visitor_seqs = [m["seq"] for m in stored if m["from"] == "visitor"]
    assert [m["text"] for m in stored if m["from"] == "visitor"] == ["hours", "shipping"]
    assert int(parts_store.redis.hget(parts_store.keys(cid)[0], "bot_seq")) == visitor_seqs[-1]
    answers = [m["text"] for m in stored if m["from"] == "bot" and m["seq"] > visitor_seqs[0]]
    assert any(text.startswith(ENGLISH_SHIPPING) for text in answers)
    assert len(answers) >= 4  # both messages answered, each once


def test_a_repeated_message_id_is_stored_and_answered_once(live, parts_store):
    cid = started(live)

    first = live.visitors.say(cid, "shipping", "m1")
    again = live.visitors.say(cid, "shipping", "m1")
    settle()

    assert first.answered and not again.new and again.seq == first.seq
    assert [m["text"] for m in log_of(parts_store, cid)].count("shipping") == 1
    assert sum(m["text"].startswith(ENGLISH_SHIPPING) for m in log_of(parts_store, cid)) == 1


def test_asking_for_a_person_with_nobody_there_goes_under_the_lock_and_the_flow_goes_on(
        live, conversations, parts_store):
    cid = started(live)

    asked = live.visitors.say(cid, "agent", "m1")
    settle()
    # nobody is there: the flow went on at its no_agents state, which asks for an email
    record = conversations.get(cid)
    assert asked.answered is None and record.status == "bot"
    assert record.escalation["outcome"] == "no_agents"
    assert log_of(parts_store, cid)[-1]["text"] == "What's your email address?"

    # what the folded turn left is what the next answer starts from, at once
    answered = live.visitors.say(cid, "ada@example.com", "m2")
    settle()

    assert answered.answered
    assert "what would you like to tell us" in json.loads(answered.answered[-1])["text"]
    assert json.loads(conversations.get(cid).bot and parts_store.redis.hget(
        parts_store.keys(cid)[0], "bot"))["vars"]["email"] == "ada@example.com"


class _Orders(BaseHTTPRequestHandler):
    """The site's order API, as the default flow's lookup calls it."""

    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).seen.append(self.path)
        body = json.dumps({"status": "shipped", "carrier": "DHL", "eta": "Friday"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def orders_api():
    _Orders.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Orders)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_turn_that_calls_the_sites_api_is_never_answered_at_once_and_calls_once(
        live, parts_store, orders_api):
    client = calls.WebClient(orders_api)
    live.bot.context = lambda visitor: engine.Context(visitor=visitor, http=client)
    cid = started(live)

    appended = live.visitors.say(cid, "AB123456", "m1")
    settle()

    assert appended.answered is None
    assert _Orders.seen == ["/demo/api/orders/AB123456"]
    bot_texts = [m["text"] for m in log_of(parts_store, cid) if m["from"] == "bot"]
    assert any("AB123456 has shipped with DHL" in text for text in bot_texts)


def test_an_answer_that_says_nothing_is_still_an_answer_and_no_turn_follows(live, conversations,
                                                                          parts_store):
    from chat import frames  # noqa: PLC0415
    from chat.conversations import Known  # noqa: PLC0415

    cid = started(live)
    record = parts_store.redis.hgetall(parts_store.keys(cid)[0])
    known = Known(seq=int(record["seq"]), bot=record["bot"], visitor=record["visitor"],
                  flow=record["flow"])

    appended = conversations.say_and_answer(
        cid, frames.message(cid, "visitor", "hmm", message_id="m1"), "v:m1", "tok", known, [],
        {"bot": record["bot"]})

    assert appended.answered == () and appended.began is None
    assert parts_store.redis.get(parts_store.lock_key(cid)) is None  # no turn begun
    assert int(parts_store.redis.hget(parts_store.keys(cid)[0], "bot_seq")) == appended.seq


def test_a_resume_here_of_a_conversation_another_worker_spoke_in_answers_at_once(
        live, conversations, parts_store):
    cid = started(live)
    live.bot.known.forget(cid)  # the greeting was another worker's

    live.visitors.resumed(conversations.get(cid))  # the hello of a reloaded page, here
    appended = live.visitors.say(cid, "shipping", "m1")

    assert appended.answered
    assert json.loads(appended.answered[0])["text"].startswith(ENGLISH_SHIPPING)


def test_a_resume_with_a_message_left_unanswered_answers_it_first_under_the_lock(
        live, conversations, parts_store):
    from tests.chat.conftest import visitor_says  # noqa: PLC0415

    cid = started(live)
    live.bot.known.forget(cid)
    visitor_says(conversations, cid, "hours", "cut-short", token="")  # its turn died with it

    live.visitors.resumed(conversations.get(cid))
    settle()
    live.visitors.say(cid, "shipping", "m1")
    settle()

    stored = log_of(parts_store, cid)
    hours_at = next(n for n, m in enumerate(stored) if m["text"] == "hours")
    shipping_at = next(n for n, m in enumerate(stored) if m["text"] == "shipping")
    assert any(m["from"] == "bot" for m in stored[hours_at + 1:shipping_at])  # answered first
    assert any(m["text"].startswith(ENGLISH_SHIPPING) for m in stored[shipping_at + 1:])
    assert int(parts_store.redis.hget(parts_store.keys(cid)[0], "bot_seq")) == \
        stored[shipping_at]["seq"]


@pytest.mark.parametrize("sent_again", [True, False])
def test_a_message_whose_stored_reply_was_lost_is_still_answered(redis, redis_server,
                                                                 parts_store, sent_again):
    # The store ran (the message kept, the turn's lock taken) and its reply was lost: the
    # turn the first run began must still happen, whether the client sends it again (and finds
    # it stored) or goes away.
    import gevent  # noqa: PLC0415
    import redis as redis_lib  # noqa: PLC0415

    from bots.catalog import load_catalog  # noqa: PLC0415
    from chat import scripts  # noqa: PLC0415
    from runtime import wiring  # noqa: PLC0415
    from runtime.config import Config  # noqa: PLC0415
    from tests.chat.conftest import PREFIX  # noqa: PLC0415
    from tests.support.gunicorn_server import ROOT  # noqa: PLC0415
    from tests.support.redis_proxy import RedisProxy  # noqa: PLC0415

    proxy = RedisProxy(int(redis_server.rsplit(":", 1)[1].split("/")[0]))
    config = {**Config().as_flask(), "REDIS_URL": proxy.url, "REDIS_PREFIX": PREFIX}
    live = wiring.build(redis_lib.Redis.from_url(proxy.url, decode_responses=True),
                        redis_lib.Redis.from_url(redis_server, decode_responses=True,
                                                 protocol=2),
                        load_catalog(ROOT / "flows"), config)
    cid = started(live)
    live.bot.known.forget(cid)  # the append path: it takes the turn lock with the message
    live.redis.script_load(scripts.source("append.lua"))  # Redis runs it at the first send
    live.redis.ping()  # the pooled connection is open: the next reply lost is the store's

    proxy.lose_next_reply()
    with pytest.raises(redis_lib.ConnectionError):
        live.visitors.say(cid, "shipping", "m1")
    assert proxy.replies_lost == 1
    if sent_again:  # as the widget does with a message that got no ack
        assert not live.visitors.say(cid, "shipping", "m1").new
    deadline = time.monotonic() + 15  # past the lost turn's lock (5 s)
    while time.monotonic() < deadline and not any(
            m["text"].startswith(ENGLISH_SHIPPING) for m in log_of(parts_store, cid)):
        gevent.sleep(0.1)
    stored = log_of(parts_store, cid)
    assert sum(m["text"].startswith(ENGLISH_SHIPPING) for m in stored) == 1
    assert [m["text"] for m in stored].count("shipping") == 1
    live.redis.close()
    proxy.close()
