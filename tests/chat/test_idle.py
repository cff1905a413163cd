"""A flow's idle_timeout in live conversations: fired from Redis by whichever worker sweeps."""

from __future__ import annotations

import pytest

from tests.support.flows import write_flows
from tests.support.process import poll_until
from tests.support.ws import bot_says

IDLE_FLOW = """\
start: greet
settings:
  idle_timeout: 1
  on_idle: still_there
states:
  greet:
    say: "Hello! Ask me anything."
    on:
      - {keywords: [bye], goto: bye}
      - {any: true, goto: greet}
  still_there:
    say: "Are you still there?"
    buttons:
      - {title: "Yes", goto: greet}
      - {title: "No", goto: bye}
  bye:
    say: "Goodbye!"
    end: true
"""
IDLE_WAIT_S = 15  # 1 s of silence, a sweep a second, two workers: far more than it needs
# Other modules' servers share the session's Redis and sweep their prefix's wake-ups with other
# flows: this server's conversations keep to a prefix of their own.
PREFIX = "idle-test:"
IDLE_WAKE_UPS = f"{PREFIX}timers:idle"


@pytest.fixture(scope="module")
def idle_server(live_server, tmp_path_factory) -> str:
    return live_server(write_flows(tmp_path_factory.mktemp("idle"), default=IDLE_FLOW),
                       REDIS_PREFIX=PREFIX)


def test_a_silent_visitor_is_moved_to_on_idle_once(idle_server, open_visitor, redis):
    tab = open_visitor(idle_server)
    greeting = tab.hello(None)
    tab.receive_until(bot_says("Are you still there?"), timeout=IDLE_WAIT_S)
    # Once per silence: the on_idle state waits, and is not said again until the visitor writes.
    assert redis.zscore(IDLE_WAKE_UPS, greeting.conversation) is None

    tab.talk("Yes", until=bot_says("Hello! Ask me anything."))
    # armed again by the answer (stored just after the bot's messages are sent)
    assert poll_until(lambda: redis.zscore(IDLE_WAKE_UPS, greeting.conversation) is not None, 5)
    tab.receive_until(bot_says("Are you still there?"), timeout=IDLE_WAIT_S)
    said = [m["text"] for m in tab.messages if m["from"] == "bot"]
    assert said.count("Are you still there?") == 2


def test_a_closed_conversation_is_never_idle(idle_server, open_visitor, redis):
    tab = open_visitor(idle_server)
    greeting = tab.hello(None)
    tab.talk("bye", until=bot_says("Goodbye!"))
    assert poll_until(lambda: redis.zscore(IDLE_WAKE_UPS, greeting.conversation) is None, 5)
