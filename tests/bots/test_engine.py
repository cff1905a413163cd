"""The engine: what each state key makes the bot say and do, turn by turn."""

import json

import pytest

from bots import engine
from bots.calls import CannedClient
from bots.checker import check_text
from bots.locales import builtin

from .helpers import CallError, Chat, RecordingClient, Response, make_flow

# --- say, set, end ---------------------------------------------------------------------------


def test_say_list_sends_one_message_per_item_in_order():
    chat = Chat(make_flow("""\
        start: a
        states:
          a:
            say: ["One", "Two", "Three"]
            end: true
        """))
    assert chat.messages == ["One", "Two", "Three"]


def test_set_runs_before_say_and_stores_text():
    chat = Chat(make_flow("""\
        start: a
        states:
          a:
            set: {count: 3, greeting: "Hi {{ visitor.name }}"}
            say: "{{ vars.greeting }}, you have {{ vars.count }}"
            end: true
        """), engine.Context(visitor={"name": "Ada"}))
    assert chat.messages == ["Hi Ada, you have 3"]
    assert chat.vars == {"count": "3", "greeting": "Hi Ada"}


def test_end_state_sends_its_messages_then_an_end():
    chat = Chat(make_flow("start: a\nstates:\n  a: {say: Bye, end: true}\n"))
    assert chat.turn.outputs == [{"type": "message", "text": "Bye"}, {"type": "end"}]
    assert chat.stored["wait"] == engine.WAIT_NOTHING


def test_an_ended_conversation_takes_no_more_input():
    chat = Chat(make_flow("start: a\nstates:\n  a: {say: Bye, end: true}\n"))
    with pytest.raises(engine.TurnError):
        chat.say("hello?")


def test_next_moves_on_at_once_through_several_states():
    chat = Chat(make_flow("""\
        start: a
        states:
          a: {say: one, next: b}
          b: {say: two, next: c}
          c: {say: three, end: true}
        """))
    assert chat.messages == ["one", "two", "three"]
    assert chat.stored["path"] == ["a", "b", "c"]


def test_next_takes_the_first_true_when_branch():
    flow = make_flow("""\
        start: ask
        states:
          ask: {ask: "How old are you?", save: age, validate: integer, on_invalid: young,
                next: decide}
          decide:
            next:
              - when: "vars.age >= 65"
                goto: senior
              - when: "vars.age >= 18"
                goto: adult
              - goto: young
          senior: {say: senior, end: true}
          adult: {say: adult, end: true}
          young: {say: young, end: true}
        """)
    for answer, expected in [("70", "senior"), ("30", "adult"), ("12", "young")]:
        chat = Chat(flow)
        assert chat.say(answer) == [expected]


def test_next_branch_may_use_the_latest_input():
    flow = make_flow("""\
        start: q
        states:
          q:
            ask: Anything?
            save: a
            next:
              - when: "'urgent' in input"
                goto: fast
              - goto: slow
          fast: {say: fast, end: true}
          slow: {say: slow, end: true}
        """)
    assert Chat(flow).say("this is urgent") == ["fast"]
    assert Chat(flow).say("whenever") == ["slow"]


# --- ask, save, validate ---------------------------------------------------------------------

ASK = """\
start: q
settings: {{fallback_to: fallback}}
states:
  q:
    ask: "Your answer?"
    save: answer
    validate: {validate}
    next: done
  done: {{say: "saved", end: true}}
  fallback: {{say: "fallback", end: true}}
"""


def test_ask_without_validate_saves_any_answer():
    chat = Chat(make_flow("""\
        start: q
        states:
          q: {ask: "Name?", save: name, next: hi}
          hi: {say: "Hi {{ vars.name }}", end: true}
        """))
    assert chat.messages == ["Name?"]
    assert chat.stored["wait"] == engine.WAIT_INPUT
    assert chat.say("Ada Lovelace") == ["Hi Ada Lovelace"]
    assert chat.vars == {"name": "Ada Lovelace"}


@pytest.mark.parametrize("validate,answer,saved", [
    ("number", "12", 12),
    ("number", " -4 ", -4),
    ("number", "3.5", 3.5),
    ("number", "3,5", 3.5),
    ("integer", "42", 42),
    ("integer", "+7", 7),
    ("yes_no", "Yes please", True),
    ("yes_no", "yep", True),
    ("yes_no", "NO", False),
    ("yes_no", "nope, sorry", False),
    ("email", "ada@example.com", "ada@example.com"),
    ("email", "  ada@example.com ", "ada@example.com"),
    ("phone", "+49 30 1234567", "+49 30 1234567"),
    ("phone", "(030) 123-4567", "(030) 123-4567"),
])
def test_valid_answers_are_saved_converted(validate, answer, saved):
    chat = Chat(make_flow(ASK.format(validate=validate)))
    assert chat.say(answer) == ["saved"]
    assert chat.vars["answer"] == saved
    assert type(chat.vars["answer"]) is type(saved)


@pytest.mark.parametrize("validate,answer,error", [
    ("number", "twelve", "Please answer with a number."),
    ("number", "1.2.3", "Please answer with a number."),
    ("integer", "1.5", "Please answer with a whole number."),
    ("yes_no", "maybe", "Please answer yes or no."),
    ("email", "ada at example", "That doesn't look like an email address (like name@example.com)."),
    ("email", "ada@example", "That doesn't look like an email address (like name@example.com)."),
    ("phone", "12", "That doesn't look like a phone number."),
    ("phone", "call me", "That doesn't look like a phone number."),
])
def test_invalid_answer_gets_the_validators_message_and_the_question_again(validate, answer,
                                                                          error):
    chat = Chat(make_flow(ASK.format(validate=validate)))
    assert chat.say(answer) == [error, "Your answer?"]
    assert chat.state == "q"
    assert "answer" not in chat.vars


def test_choices_save_the_flows_spelling_matched_case_insensitively():
    flow = make_flow(ASK.format(validate="{choices: [Small, Médium, Extra large]}"))
    answers = [("small", "Small"), ("MEDIUM", "Médium"), ("extra  LARGE!", "Extra large")]
    for typed, saved in answers:
        chat = Chat(flow)
        assert chat.say(typed) == ["saved"]
        assert chat.vars["answer"] == saved


def test_a_wrong_choice_lists_the_choices():
    chat = Chat(make_flow(ASK.format(validate="{choices: [Small, Large]}")))
    assert chat.say("huge") == ["Please pick one of: Small, Large.", "Your answer?"]


def test_regex_validation_uses_the_custom_error():
    chat = Chat(make_flow(ASK.format(
        validate="{regex: '^[A-Z]{2}\\d{6}$', error: 'Two letters and six digits, please.'}")))
    assert chat.say("12345") == ["Two letters and six digits, please.", "Your answer?"]
    assert chat.say("AB123456") == ["saved"]
    assert chat.vars["answer"] == "AB123456"


def test_regex_validation_without_error_has_a_default_message():
    chat = Chat(make_flow(ASK.format(validate="{regex: '^\\d+$'}")))
    assert chat.say("abc") == ["Sorry, that isn't a valid answer.", "Your answer?"]


# every validator takes the author's error message; without one, its own is said
REFUSED = [
    ("email", "ada at example",
     "That doesn't look like an email address (like name@example.com)."),
    ("phone", "call me", "That doesn't look like a phone number."),
    ("number", "twelve", "Please answer with a number."),
    ("integer", "1.5", "Please answer with a whole number."),
    ("yes_no", "maybe", "Please answer yes or no."),
    ("regex: '^\\d+$'", "abc", "Sorry, that isn't a valid answer."),
    ("choices: [Small, Large]", "huge", "Please pick one of: Small, Large."),
]


@pytest.mark.parametrize("kind,answer,default", REFUSED, ids=[r[0].split(":")[0] for r in REFUSED])
def test_every_validator_says_the_authors_error_when_it_has_one(kind, answer, default):
    spelt = f"{kind}: true" if ":" not in kind else kind
    chat = Chat(make_flow(ASK.format(
        validate=f"{{{spelt}, error: \"Not quite: '{{{{ input }}}}'. Try again?\"}}")))
    assert chat.say(answer) == [f"Not quite: '{answer}'. Try again?", "Your answer?"]
    assert chat.state == "q"


@pytest.mark.parametrize("kind,answer,default", REFUSED, ids=[r[0].split(":")[0] for r in REFUSED])
def test_every_validator_says_its_own_message_without_an_error(kind, answer, default):
    forms = [f"{{{kind}}}"] if ":" in kind else [kind, f"{{{kind}: true}}"]
    for validate in forms:
        chat = Chat(make_flow(ASK.format(validate=validate)))
        assert chat.say(answer) == [default, "Your answer?"], validate


def test_a_named_validator_with_an_error_still_checks_and_converts():
    chat = Chat(make_flow(ASK.format(
        validate="{integer: true, error: 'How many, as a number?'}")))
    assert chat.say("a few") == ["How many, as a number?", "Your answer?"]
    assert chat.say("3") == ["saved"]
    assert chat.vars["answer"] == 3


def test_an_error_template_can_use_the_variables_and_falls_back_when_empty():
    flow = make_flow("""\
        start: n
        states:
          n: {ask: "Name?", save: name, next: q}
          q:
            ask: "Email?"
            save: email
            validate: {email: true, error: "Sorry {{ vars.name }}, '{{ input }}' is no email."}
            on_invalid: done
            next: done
          done: {say: done, end: true}
        """)
    chat = Chat(flow)
    chat.say("Ada")
    assert chat.say("ada at home") == ["Sorry Ada, 'ada at home' is no email.", "Email?"]
    empty = make_flow("""\
        start: q
        states:
          q:
            set: {nothing: ""}
            ask: "Sure?"
            save: sure
            validate: {yes_no: true, error: "{{ vars.nothing }}"}
            on_invalid: done
            next: done
          done: {say: done, end: true}
        """)
    assert Chat(empty).say("maybe") == ["Please answer yes or no.", "Sure?"]


def test_two_retries_by_default_then_on_invalid_without_the_error():
    chat = Chat(make_flow("""\
        start: q
        states:
          q: {ask: "Email?", save: email, validate: email, on_invalid: sorry, next: done}
          done: {say: done, end: true}
          sorry: {say: "Never mind.", end: true}
        """))
    error = "That doesn't look like an email address (like name@example.com)."
    assert chat.say("one") == [error, "Email?"]
    assert chat.say("two") == [error, "Email?"]
    assert chat.say("three") == ["Never mind."]
    assert chat.state == "sorry"


def test_retries_zero_goes_to_on_invalid_at_the_first_invalid_answer():
    chat = Chat(make_flow("""\
        start: q
        states:
          q: {ask: "Age?", save: age, validate: integer, retries: 0, on_invalid: sorry,
              next: done}
          done: {say: done, end: true}
          sorry: {say: "Never mind.", end: true}
        """))
    assert chat.say("old") == ["Never mind."]


def test_a_valid_answer_after_an_invalid_one_is_saved():
    chat = Chat(make_flow(ASK.format(validate="integer")))
    chat.say("x")
    assert chat.say("5") == ["saved"]
    assert chat.vars["answer"] == 5


def test_on_invalid_defaults_to_fallback_to():
    chat = Chat(make_flow(ASK.format(validate="integer")))
    chat.say("a")
    chat.say("b")
    assert chat.say("c") == ["fallback"]
    assert chat.state == "fallback"


def test_retries_count_again_when_the_question_is_asked_anew():
    flow = make_flow("""\
        start: q
        settings: {fallback_to: q}
        states:
          q: {ask: "Number?", save: n, validate: integer, retries: 1, next: done}
          done: {say: done, end: true}
        """)
    chat = Chat(flow)
    chat.say("a")
    assert chat.say("b") == ["Number?"]  # on_invalid (fallback_to) asks again, no error
    assert chat.say("c") == ["Please answer with a whole number.", "Number?"]


def test_a_valid_answer_is_not_tried_against_intents():
    flow = make_flow("""\
        start: q
        intents:
          - keywords: [person, operator]
            goto: human
        states:
          q: {ask: "Email?", save: email, validate: email, on_invalid: bye, next: bye}
          bye: {say: "Thanks {{ vars.email }}", end: true}
          human: {escalate: support, no_agents: bye}
        """)
    chat = Chat(flow)
    assert chat.say("person@example.com") == ["Thanks person@example.com"]
    assert chat.vars == {"email": "person@example.com"}


def test_an_invalid_answer_is_tried_against_intents():
    flow = make_flow("""\
        start: q
        intents:
          - keywords: [person, operator]
            goto: human
        states:
          q: {ask: "Email?", save: email, validate: email, on_invalid: bye, next: bye}
          bye: {say: "Thanks {{ vars.email }}", end: true}
          human: {escalate: support, no_agents: bye}
        """)
    chat = Chat(flow)
    chat.say("operator")
    (escalation,) = chat.outputs_of("escalate")
    assert escalation["queue"] == "support"
    assert chat.state == "human"


def test_an_unvalidated_answer_is_never_tried_against_intents():
    chat = Chat(make_flow("""\
        start: q
        intents:
          - keywords: [person]
            goto: human
        states:
          q: {ask: "Anything to add?", save: note, next: bye}
          bye: {say: "Noted: {{ vars.note }}", end: true}
          human: {escalate: support, no_agents: bye}
        """))
    assert chat.say("a person called") == ["Noted: a person called"]


def test_a_validation_error_carries_the_states_buttons_again():
    chat = Chat(make_flow("""\
        start: q
        states:
          q:
            ask: "How many?"
            save: n
            validate: integer
            on_invalid: bye
            buttons: [{title: Skip, goto: bye}]
            next: bye
          bye: {say: bye, end: true}
        """))
    assert chat.buttons == [{"title": "Skip", "payload": "bye"}]
    chat.say("lots")
    assert chat.turn.outputs[-1]["buttons"] == [{"title": "Skip", "payload": "bye"}]
    assert chat.click("Skip") == ["bye"]


def test_a_huge_number_answer_is_just_invalid():
    chat = Chat(make_flow(ASK.format(validate="number")))
    assert chat.say("9" * 5000) == ["Please answer with a number.", "Your answer?"]


def test_a_huge_integer_answer_is_just_invalid():
    chat = Chat(make_flow(ASK.format(validate="integer")))
    assert chat.say("9" * 5000) == ["Please answer with a whole number.", "Your answer?"]


def test_a_number_too_big_for_a_float_keeps_the_stored_form_json():
    flow = make_flow(ASK.format(validate="number"))
    turn = engine.reply(flow, engine.start(flow).stored, "1" * 400 + ".5")
    json.dumps(turn.stored, allow_nan=False)


# --- buttons -----------------------------------------------------------------------------------

MENU = """\
start: menu
states:
  menu:
    say: "Pick one"
    buttons:
      - {title: Café au lait, goto: coffee}
      - {title: Tea, goto: tea, payload: TEA, set: {drink: "tea for {{ visitor.name }}"}}
    on:
      - keywords: [water]
        goto: water
    else:
      say: "Sorry?"
  coffee: {say: "Coffee {{ vars.drink }}", end: true}
  tea: {say: "Tea: {{ vars.drink }}", end: true}
  water: {say: "Water", end: true}
"""


def test_buttons_are_shown_on_the_last_message_with_payloads():
    chat = Chat(make_flow(MENU))
    assert chat.turn.outputs == [{"type": "message", "text": "Pick one", "buttons": [
        {"title": "Café au lait", "payload": "coffee"}, {"title": "Tea", "payload": "TEA"}]}]


def test_click_by_payload_takes_the_buttons_goto():
    chat = Chat(make_flow(MENU))
    assert chat.say("whatever the client shows", payload="coffee") == ["Coffee "]


def test_button_set_assigns_variables_when_clicked():
    chat = Chat(make_flow(MENU), engine.Context(visitor={"name": "Ada"}))
    assert chat.click("Tea") == ["Tea: tea for Ada"]
    assert chat.vars == {"drink": "tea for Ada"}


@pytest.mark.parametrize("typed", ["Café au lait", "cafe au lait", "CAFÉ AU LAIT!",
                                   " café  au lait "])
def test_typed_button_title_counts_as_click(typed):
    chat = Chat(make_flow(MENU))
    assert chat.say(typed) == ["Coffee "]


def test_typed_text_containing_a_title_is_not_a_click():
    chat = Chat(make_flow(MENU))
    assert chat.say("no tea today") == ["Sorry?"]


def test_stale_payload_from_another_state_counts_as_typed_text():
    chat = Chat(make_flow(MENU))
    assert chat.say("I want water", payload="old-button") == ["Water"]
    chat = Chat(make_flow(MENU))
    assert chat.say("Tea", payload="old-button") == ["Tea: tea for "]
    chat = Chat(make_flow(MENU))
    assert chat.say("Old title", payload="old-button") == ["Sorry?"]


def test_a_payload_rule_matches_a_button_payload_of_a_previous_message():
    chat = Chat(make_flow("""\
        start: a
        states:
          a:
            say: hi
            buttons: [{title: Next, goto: b}]
          b:
            say: "Rate us"
            on:
              - payload: rate-5
                goto: thanks
            buttons: [{title: Bye, goto: thanks}]
          thanks: {say: thanks, end: true}
        """))
    chat.click("Next")
    assert chat.say("5 stars", payload="rate-5") == ["thanks"]


# --- call ------------------------------------------------------------------------------------

CALL = """\
start: lookup
states:
  lookup:
    set: {order_id: AB123456}
    call:
      method: post
      url: "https://shop.test/orders/{{ vars.order_id }}"
      headers: {Authorization: "Bearer {{ secrets.TOKEN }}", Accept: application/json}
      json:
        id: "{{ vars.order_id }}"
        who: "{{ visitor.name }}"
        count: 2
        flags: ["{{ vars.order_id | lower }}", true, null]
      timeout: 2.5
      save: order
    on_error: failed
    next:
      - when: "vars.order.json.status == 'shipped'"
        goto: shipped
      - goto: other
  shipped: {say: "Shipped ({{ vars.order.status }})", end: true}
  other: {say: "Status {{ vars.order.json.status }}", end: true}
  failed: {say: "Failed {{ vars.order.status }}", end: true}
"""


def run_call(answer):
    client = RecordingClient(answer)
    chat = Chat(make_flow(CALL), engine.Context(visitor={"name": "Ada"}, http=client,
                                                secrets={"TOKEN": "s3cret"}))
    return chat, client


def test_call_sends_the_rendered_request():
    _chat, client = run_call(Response(200, {"status": "shipped"}))
    assert client.requests == [{
        "method": "POST",
        "url": "https://shop.test/orders/AB123456",
        "headers": {"Authorization": "Bearer s3cret", "Accept": "application/json"},
        "json": {"id": "AB123456", "who": "Ada", "count": 2, "flags": ["ab123456", True, None]},
        "timeout": 2.5,
    }]


def test_successful_call_saves_status_and_json_and_goes_next():
    chat, _client = run_call(Response(200, {"status": "shipped"}))
    assert chat.messages == ["Shipped (200)"]
    assert chat.vars["order"] == {"status": 200, "json": {"status": "shipped"}}


def test_successful_call_takes_the_fallback_branch():
    chat, _client = run_call(Response(201, {"status": "packed"}))
    assert chat.messages == ["Status packed"]


@pytest.mark.parametrize("status,message", [(200, "Status None"), (399, "Status None"),
                                            (400, "Failed 400"), (500, "Failed 500")])
def test_a_status_of_400_or_more_is_a_failed_call(status, message):
    chat, _client = run_call(Response(status, {"status": None}))
    assert chat.messages == [message]


def test_call_answered_with_an_error_status_goes_to_on_error():
    chat, _client = run_call(Response(404, {"error": "no such order"}))
    assert chat.messages == ["Failed 404"]
    assert chat.state == "failed"


def test_call_that_cannot_connect_goes_to_on_error():
    chat, _client = run_call(CallError("ConnectTimeout: timed out"))
    assert chat.messages == ["Failed "]
    assert "order" not in chat.vars


class _Answers:
    """An HTTP client that gives its answers in turn: a Response, or raises an error."""

    def __init__(self, *answers: Response | Exception) -> None:
        self.answers = list(answers)

    def request(self, method, url, *, headers, json, timeout) -> Response:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_call_without_an_answer_clears_the_answer_of_an_earlier_call():
    flow = make_flow("""\
        start: ask_order
        states:
          ask_order: {ask: "Order number?", save: order_id, next: lookup}
          lookup:
            call: {url: "https://shop.test/orders/{{ vars.order_id }}", save: order}
            on_error: failed
            next: found
          found: {say: found, end: true}
          failed:
            say: "{% if vars.order.status == 404 %}not found{% else %}not answering{% endif %}"
            next: ask_order
        """)
    chat = Chat(flow, engine.Context(http=_Answers(Response(404, None), CallError("timeout"))))
    assert chat.say("AB123450") == ["not found", "Order number?"]
    assert chat.say("AB123452") == ["not answering", "Order number?"]
    assert "order" not in chat.vars


def test_call_without_an_http_client_goes_to_on_error():
    chat = Chat(make_flow(CALL))
    assert chat.messages == ["Failed "]


def test_secrets_never_reach_the_visitor_or_the_stored_form():
    chat, _client = run_call(Response(200, {"status": "shipped"}))
    assert "s3cret" not in json.dumps(chat.stored)
    assert "s3cret" not in json.dumps(chat.turn.outputs)


def test_canned_client_answers_by_method_and_url():
    client = CannedClient({"POST https://shop.test/orders/AB123456":
                           {"status": 200, "json": {"status": "shipped"}}})
    chat = Chat(make_flow(CALL), engine.Context(http=client, secrets={"TOKEN": "t"}))
    assert chat.messages == ["Shipped (200)"]
    assert client.requests == ["POST https://shop.test/orders/AB123456"]


def test_canned_client_error_answer_goes_to_on_error():
    client = CannedClient({"POST https://shop.test/orders/AB123456": {"error": "timeout"}})
    chat = Chat(make_flow(CALL), engine.Context(http=client))
    assert chat.messages == ["Failed "]


def test_canned_client_refuses_an_unlisted_request():
    client = CannedClient({})
    chat = Chat(make_flow(CALL), engine.Context(http=client))
    assert chat.messages == ["Failed "]
    assert client.unexpected == ["POST https://shop.test/orders/AB123456"]


# --- escalate ----------------------------------------------------------------------------------

ESCALATE = """\
start: menu
settings: {fallback_to: human, max_fallbacks: 2}
intents:
  - keywords: [human]
    goto: human
states:
  menu:
    say: "Menu"
    buttons:
      - {title: Person, goto: human}
      - {title: Form, goto: form}
      - {title: Auto, goto: auto}
  form: {ask: "Age?", save: age, validate: integer, retries: 0, on_invalid: human, next: menu}
  auto: {say: "Passing you on", next: human}
  human:
    say: "One moment"
    escalate:
      queue: billing
      priority: 5
      say: ["Connecting you…", "A person will answer"]
    no_agents: offline
  offline: {say: "Nobody is here", end: true}
"""


@pytest.mark.parametrize("steps,reason,path", [
    ([("Person", "human")], "asked", ["menu", "human"]),
    ([("I want a human", None)], "asked", ["menu", "human"]),
    ([("blah", None), ("blah", None)], "fallback", ["menu", "human"]),
    ([("Form", "form"), ("old", None)], "invalid", ["menu", "form", "human"]),
    ([("Auto", "auto")], "asked", ["menu", "auto", "human"]),
])
def test_escalation_output_names_queue_priority_reason_and_path(steps, reason, path):
    chat = Chat(make_flow(ESCALATE))
    for text, payload in steps:
        chat.say(text, payload)
    (escalation,) = chat.outputs_of("escalate")
    assert escalation == {"type": "escalate", "queue": "billing", "priority": 5,
                          "reason": reason, "path": path,
                          "say": ["Connecting you…", "A person will answer"]}
    assert chat.stored["wait"] == "escalation"


def test_escalation_from_start_has_reason_flow():
    chat = Chat(make_flow("""\
        start: human
        states:
          human: {escalate: support, no_agents: bye}
          bye: {say: bye, end: true}
        """))
    (escalation,) = chat.outputs_of("escalate")
    assert escalation["reason"] == "flow"
    assert escalation["queue"] == "support" and escalation["priority"] == 0


def test_escalate_say_is_not_sent_as_messages():
    chat = Chat(make_flow(ESCALATE))
    assert chat.click("Person") == ["One moment"]


def test_no_agents_goes_on_at_no_agents_without_the_escalate_say():
    chat = Chat(make_flow(ESCALATE))
    chat.click("Person")
    assert chat.no_agents() == ["Nobody is here"]
    assert chat.state == "offline"
    assert not chat.outputs_of("escalate")
    assert "Connecting you…" not in chat.messages


def test_a_conversation_with_a_person_takes_no_bot_input():
    chat = Chat(make_flow(ESCALATE))
    chat.click("Person")
    with pytest.raises(engine.TurnError):
        chat.say("hello?")


def test_no_agents_outside_an_escalation_is_refused():
    chat = Chat(make_flow(ESCALATE))
    with pytest.raises(engine.TurnError):
        chat.no_agents()


# --- resume, idle, edits -----------------------------------------------------------------------


def test_resume_hands_the_conversation_back_at_a_state():
    flow = make_flow(ESCALATE)
    chat = Chat(flow)
    chat.click("Person")
    turn = engine.resume(flow, chat.stored, "form")
    assert turn.messages == ["Age?"]
    assert turn.stored["state"] == "form"
    assert turn.stored["wait"] == "input"
    assert "escalation" not in turn.stored


def test_resume_at_an_unknown_state_is_refused():
    flow = make_flow(ESCALATE)
    with pytest.raises(engine.TurnError):
        engine.resume(flow, engine.start(flow).stored, "nowhere")


IDLE = """\
start: menu
settings: {idle_timeout: 60, on_idle: bye}
states:
  menu:
    say: "Menu"
    buttons: [{title: Person, goto: human}]
  human: {escalate: support, no_agents: bye}
  bye: {say: "Still there? Bye!", end: true}
"""


def test_idle_moves_a_silent_visitor_to_on_idle():
    flow = make_flow(IDLE)
    turn = engine.idle(flow, engine.start(flow).stored)
    assert turn.messages == ["Still there? Bye!"]
    assert turn.outputs[-1] == {"type": "end"}


def test_idle_does_nothing_while_a_person_has_the_conversation():
    flow = make_flow(IDLE)
    chat = Chat(flow)
    chat.click("Person")
    turn = engine.idle(flow, chat.stored)
    assert turn.outputs == []
    assert turn.stored["state"] == "human"


def test_idle_without_on_idle_does_nothing():
    flow = make_flow(MENU)
    turn = engine.idle(flow, engine.start(flow).stored)
    assert turn.outputs == []
    assert turn.stored["state"] == "menu"


def test_a_state_lost_in_an_edit_restarts_with_an_apology():
    before = make_flow("""\
        start: menu
        states:
          menu: {say: "Old menu", buttons: [{title: Old, goto: old}]}
          old: {ask: "Old question?", save: x, next: bye}
          bye: {say: bye, end: true}
        """)
    after = make_flow("""\
        start: menu
        states:
          menu: {say: "New menu", buttons: [{title: Done, goto: done}]}
          done: {say: bye, end: true}
        """)
    chat = Chat(before)
    chat.click("Old")
    assert chat.state == "old"
    turn = engine.reply(after, chat.stored, "my answer")
    assert turn.messages == [builtin("restart", None), "New menu"]
    assert turn.stored["state"] == "menu"
    assert turn.stored["version"] == after.version != before.version
    assert turn.stored["vars"] == {}


def test_a_state_kept_in_an_edit_runs_the_new_version():
    before = make_flow("""\
        start: menu
        states:
          menu: {say: "Menu", buttons: [{title: Go, goto: a}]}
          a: {say: "old a", end: true}
        """)
    after = make_flow("""\
        start: menu
        states:
          menu: {say: "Menu", buttons: [{title: Go, goto: b}]}
          b: {say: "new b", end: true}
        """)
    stored = engine.start(before).stored
    assert engine.reply(after, stored, "Go").messages == ["new b"]


def test_stored_form_from_an_older_deploy_with_missing_fields_still_works():
    flow = make_flow(MENU)
    turn = engine.reply(flow, {"state": "menu"}, "water")
    assert turn.messages == ["Water"]


def test_stored_form_is_plain_json_at_every_turn():
    flow = make_flow(ESCALATE)
    chat = Chat(flow)  # Chat checks the strict JSON round trip of every stored form
    chat.click("Form")
    chat.say("41")
    chat.say("nonsense")
    chat.say("nonsense")
    chat.no_agents()
    assert set(chat.stored) >= {"v", "flow", "version", "state", "vars", "wait"}


# --- the step guard --------------------------------------------------------------------------


def next_chain(moving: int) -> str:
    """A flow whose start is `moving` states that move on at once, then a state that waits."""
    lines = ["start: s0", "intents: [{keywords: [help], goto: done}]", "states:"]
    lines += [f"  s{i}: {{say: m{i}, next: s{i + 1}}}" for i in range(moving)]
    lines += [f"  s{moving}: {{say: pick, buttons: [{{title: ok, goto: done}}]}}",
              "  done: {say: bye, end: true}"]
    return "\n".join(lines) + "\n"


def test_the_longest_chain_of_next_states_the_checker_accepts_runs_in_one_turn():
    flow = make_flow(next_chain(49))  # 49 states move on, the 50th waits: one turn's limit
    chat = Chat(flow)
    assert len(chat.messages) == 50
    assert chat.state == "s49"
    assert chat.say("help") == ["bye"]


def test_a_chain_of_next_states_longer_than_one_turn_is_rejected():
    flow, found = check_text(next_chain(50), "flows/chain.yaml")
    assert flow is None
    assert [str(d) for d in found if d.is_error] == [
        "flows/chain.yaml:4:3: error: from state 's0', 50 states in a row move on without "
        "waiting; one turn enters at most 50 states: let one of them wait (ask, buttons or on)"]


# --- why a person is needed: the escalation's note and reason ----------------------------------

NOTE = """\
start: menu
settings: {fallback_to: human}
states:
  menu:
    say: "Menu"
    buttons:
      - {title: Person, goto: ask_email}
      - {title: Order, goto: ask_order}
  ask_email:
    ask: "Your email?"
    save: email
    validate: email
    next: human
  ask_order:
    ask: "Order number?"
    save: order
    next: human
  human:
    escalate:
      queue: support
      note: "Wants a person; write to {{ vars.email or 'no email given' }} {{ vars.order }}"
    no_agents: bye
  bye: {say: bye, end: true}
"""


def test_a_question_on_the_way_to_a_person_keeps_the_reason_asked():
    chat = Chat(make_flow(NOTE))
    chat.click("Person")
    chat.say("ada@example.com")
    (escalation,) = chat.outputs_of("escalate")
    assert escalation["reason"] == "asked"
    assert escalation["path"] == ["menu", "ask_email", "human"]


def test_an_invalid_answer_then_a_valid_one_still_keeps_asked():
    chat = Chat(make_flow(NOTE))
    chat.click("Person")
    chat.say("not an email")
    chat.say("ada@example.com")
    assert chat.outputs_of("escalate")[0]["reason"] == "asked"


def test_a_question_from_the_start_escalates_for_reason_flow():
    chat = Chat(make_flow("""\
        start: ask_name
        states:
          ask_name: {ask: "Name?", save: name, next: human}
          human: {escalate: support, no_agents: bye}
          bye: {say: bye, end: true}
        """))
    chat.say("Ada")
    assert chat.outputs_of("escalate")[0]["reason"] == "flow"


def test_a_stored_conversation_without_a_reason_answers_as_before():
    chat = Chat(make_flow(NOTE))
    chat.click("Person")
    del chat.turn.stored["reason"]  # stored by a version without it
    chat.say("ada@example.com")
    assert chat.outputs_of("escalate")[0]["reason"] == "flow"


def test_the_note_is_rendered_at_escalation_and_kept_with_the_escalation():
    chat = Chat(make_flow(NOTE))
    chat.click("Person")
    assert chat.say("ada@example.com") == []  # the note is never said to the visitor
    (escalation,) = chat.outputs_of("escalate")
    assert escalation["note"] == "Wants a person; write to ada@example.com"
    assert chat.stored["escalation"]["note"] == escalation["note"]


def test_a_note_that_renders_empty_is_left_out():
    chat = Chat(make_flow(NOTE.replace("{{ vars.email or 'no email given' }}", "")
                          .replace("Wants a person; write to ", "{{ vars.nothing }}")
                          .replace("    save: email\n", "    save: email\n    set: {nothing: ''}\n",
                                   1)))
    chat.click("Person")
    chat.say("ada@example.com")
    assert "note" not in chat.outputs_of("escalate")[0]


def test_without_a_note_the_escalation_has_none():
    chat = Chat(make_flow(ESCALATE))
    chat.click("Person")
    assert "note" not in chat.outputs_of("escalate")[0]


# --- buttons that answer an ask ---------------------------------------------------------------

ANSWERS = """\
start: ask_size
settings: {fallback_to: human}
states:
  ask_size:
    ask: "Which size?"
    save: size
    validate: {choices: [Small, Large]}
    buttons:
      - {title: Small}
      - {title: Large, set: {picked: button}}
      - {title: Talk to a person, goto: human}
    next: ask_bikes
  ask_bikes:
    ask: "How many bikes?"
    save: bikes
    validate: integer
    buttons:
      - {title: One, payload: "1"}
      - {title: Two, payload: "2"}
    next: done
  done: {say: "{{ vars.size }} x {{ vars.bikes }}", end: true}
  human: {escalate: support, no_agents: done}
"""


def test_a_button_without_goto_answers_the_ask_with_its_title():
    chat = Chat(make_flow(ANSWERS))
    assert chat.buttons[0] == {"title": "Small", "payload": "Small"}
    assert chat.click("Small") == ["How many bikes?"]
    assert chat.vars == {"size": "Small"} and chat.state == "ask_bikes"


def test_a_button_with_a_payload_answers_with_its_payload_through_the_validator():
    chat = Chat(make_flow(ANSWERS))
    chat.click("Large")
    assert chat.vars == {"size": "Large", "picked": "button"}
    assert chat.click("Two") == ["Large x 2"]
    assert chat.vars["bikes"] == 2  # converted by integer, as a typed "2" would be


def test_typing_an_answering_buttons_title_answers_like_a_click():
    chat = Chat(make_flow(ANSWERS))
    chat.say("small")
    chat.say("two")
    assert chat.vars == {"size": "Small", "bikes": 2}


def test_a_button_with_goto_on_an_ask_goes_there_and_saves_nothing():
    chat = Chat(make_flow(ANSWERS))
    chat.click("Talk to a person")
    assert chat.outputs_of("escalate") and "size" not in chat.vars


def test_an_answering_button_of_an_older_message_counts_as_typed():
    chat = Chat(make_flow(ANSWERS))
    chat.click("Small")
    assert chat.say("Small", "Small") == ["Please answer with a whole number.", "How many bikes?"]
