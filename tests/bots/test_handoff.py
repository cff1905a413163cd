"""Folding a turn's escalations: nobody there goes on at no_agents; somebody there takes it."""

from typing import Any

from bots import engine
from bots.flow import Flow
from bots.handoff import settle, standing_escalation
from tests.bots.helpers import assert_plain_json, make_flow

SUPPORT = """\
start: greet
states:
  greet:
    say: Hello
    buttons:
      - {title: Talk to a person, goto: handoff}
  handoff:
    say: One moment.
    escalate: {queue: support, priority: 3, say: "Connecting you with a person."}
    no_agents: offline
  offline:
    say: "Nobody is here right now."
    ask: "What's your email?"
    save: email
    next: thanks
  thanks: {say: "Thanks!", end: true}
"""

# sales first; when nobody is there, support; when nobody is there either, an apology
TWO_QUEUES = """\
start: greet
states:
  greet:
    say: Hello
    buttons:
      - {title: Buy something, goto: sales}
  sales:
    escalate: {queue: sales, say: "Sales will take you."}
    no_agents: support
  support:
    say: "Sales is away; trying support."
    escalate: {queue: support, say: "Support will take you."}
    no_agents: sorry
  sorry:
    say: "Nobody is here, sorry."
    end: true
"""


def escalating_turn(yaml_text: str, click: str) -> tuple[Flow, engine.Turn]:
    """Start the flow and click the button that escalates; return the flow and that turn."""
    flow = make_flow(yaml_text)
    started = engine.start(flow)
    [button] = [b for o in started.outputs for b in o.get("buttons", []) if b["title"] == click]
    return flow, engine.reply(flow, started.stored, button["title"], button["payload"])


def messages(turn: engine.Turn) -> list[str]:
    return [o["text"] for o in turn.outputs if o["type"] == "message"]


def escalations(turn: engine.Turn) -> list[tuple[str, bool]]:
    return [(o["queue"], o["taken"]) for o in turn.outputs if o["type"] == "escalate"]


def test_with_nobody_there_the_no_agents_turn_follows_and_the_say_is_not_said():
    flow, turn = escalating_turn(SUPPORT, "Talk to a person")
    asked: list[dict[str, Any]] = []

    def nobody(escalation: dict[str, Any]) -> bool:
        asked.append(escalation)
        return False

    settled = settle(flow, turn, None, nobody)
    assert [(e["queue"], e["priority"]) for e in asked] == [("support", 3)]
    assert messages(settled) == ["One moment.", "Nobody is here right now.", "What's your email?"]
    assert "Connecting you with a person." not in messages(settled)
    assert escalations(settled) == [("support", False)]
    assert (settled.stored["state"], settled.stored["wait"]) == ("offline", engine.WAIT_INPUT)
    assert standing_escalation(settled) is None
    assert_plain_json(settled.stored)
    # the conversation goes on from the no_agents state like any other
    assert messages(engine.reply(flow, settled.stored, "ada@example.com")) == ["Thanks!"]


def test_with_somebody_there_the_escalation_stands_and_is_taken():
    flow, turn = escalating_turn(SUPPORT, "Talk to a person")
    settled = settle(flow, turn, None, lambda escalation: True)
    assert messages(settled) == ["One moment."]
    assert escalations(settled) == [("support", True)]
    assert settled.outputs[-1]["say"] == ["Connecting you with a person."]
    assert (settled.stored["state"], settled.stored["wait"]) == ("handoff",
                                                                engine.WAIT_ESCALATION)
    assert standing_escalation(settled) is settled.outputs[-1]


def test_a_turn_without_an_escalation_is_left_as_it_is():
    flow = make_flow(SUPPORT)
    started = engine.start(flow)
    settled = settle(flow, started, None, lambda escalation: False)
    assert settled.outputs == started.outputs
    assert settled.stored == started.stored
    assert standing_escalation(settled) is None


def test_a_no_agents_that_escalates_again_is_asked_again():
    flow, turn = escalating_turn(TWO_QUEUES, "Buy something")
    settled = settle(flow, turn, None, lambda escalation: escalation["queue"] == "support")
    assert escalations(settled) == [("sales", False), ("support", True)]
    assert messages(settled) == ["Sales is away; trying support."]
    assert settled.stored["state"] == "support"
    assert standing_escalation(settled)["queue"] == "support"


def test_a_no_agents_that_escalates_again_with_nobody_there_goes_on_at_the_last_no_agents():
    flow, turn = escalating_turn(TWO_QUEUES, "Buy something")
    settled = settle(flow, turn, None, lambda escalation: False)
    assert escalations(settled) == [("sales", False), ("support", False)]
    assert messages(settled) == ["Sales is away; trying support.", "Nobody is here, sorry."]
    assert "Support will take you." not in messages(settled)
    assert settled.outputs[-1] == {"type": "end"}
    assert settled.stored["wait"] == engine.WAIT_NOTHING
    assert standing_escalation(settled) is None


def test_the_note_reaches_the_conversations_escalation_record():
    """chat/decisions.py builds the record the console reads (`assigned.escalation.note`)."""
    from chat.conversations import Conversation
    from chat.decisions import decide

    flow = make_flow(SUPPORT.replace("priority: 3, say:",
                                     'priority: 3, note: "Visitor {{ visitor.name }}", say:'))
    turn = engine.reply(flow, engine.start(flow).stored, "Talk to a person", "handoff",
                        engine.Context(visitor={"name": "Ada"}))
    for taken in (True, False):
        settled = settle(flow, turn, None, lambda _output, taken=taken: taken)
        decision = decide(Conversation(id="c1", flow=flow.id), flow, settled, now=0.0)
        record = decision.fields["escalation"]
        assert record["note"] == "Visitor Ada" and record["reason"] == "asked"
    plain = make_flow(SUPPORT)
    turn = engine.reply(plain, engine.start(plain).stored, "Talk to a person", "handoff")
    decision = decide(Conversation(id="c1", flow=plain.id),
                      plain, settle(plain, turn, None, lambda _: True), now=0.0)
    assert "note" not in decision.fields["escalation"]
