"""The conversation-test runner: reading test files, running them, and reporting failures."""

import textwrap

from bots.convtest import read_tests, run_file
from bots.source import COLON_HINT

from .helpers import make_flow

SUPPORT = make_flow("""\
    name: support
    start: greet
    intents:
      - keywords: [human]
        goto: handoff
    states:
      greet:
        say: ["Hi {{ visitor.name or 'there' }}!", "How can I help?"]
        buttons:
          - {title: Track an order, goto: ask_order}
          - {title: Talk to a person, goto: handoff}
        else: {say: "Pick an option below."}
      ask_order:
        ask: "Order number?"
        save: order_id
        validate: {regex: '^[A-Z]{2}\\d{6}$', error: "That's not an order number."}
        on_invalid: handoff
        next: lookup
      lookup:
        call: {url: "https://shop.test/orders/{{ vars.order_id }}", save: order}
        on_error: handoff
        next: shipped
      shipped:
        say: "Order {{ vars.order_id }} is {{ vars.order.json.status }}."
        set: {count: "{{ vars.order.json.n }}"}
        next: bye
      handoff:
        escalate: {queue: support, say: "Connecting you…"}
        no_agents: offline
      offline:
        ask: "Leave your email?"
        save: email
        validate: email
        on_invalid: bye
        next: bye
      bye: {say: "Bye!", end: true}
    """, "flows/support.yaml")
FLOWS = {"support": SUPPORT}


def write_tests(tmp_path, text: str):
    path = tmp_path / "support_test.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run(tmp_path, text: str):
    outcomes, problems = run_file(write_tests(tmp_path, text), FLOWS)
    assert problems == [], [str(p) for p in problems]
    return outcomes


def test_a_passing_test_uses_every_kind_of_step(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        visitor: {name: Ada}
        tests:
          - name: order lookup
            http:
              "GET https://shop.test/orders/AB123456": {status: 200, json: {status: shipped}}
            steps:
              - bot: "Hi Ada!"
              - bot: /help/
              - state: greet
              - click: Track an order
              - bot: "Order number?"
              - user: "AB123456"
              - bot: "Order AB123456 is shipped."
              - bot: "Bye!"
              - vars: {order_id: AB123456}
              - ended: true
        """)
    assert outcome.passed, outcome.report()
    assert outcome.report() == "PASS order lookup"


def test_escalated_step_passes_when_queued(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: a person
            steps:
              - user: "I want a human"
              - escalated: support
              - bot: "Connecting you…"
              - state: handoff
        """)
    assert outcome.passed, outcome.report()


def test_agents_online_zero_goes_on_at_no_agents(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: nobody online
            agents_online: 0
            steps:
              - click: Talk to a person
              - bot: "Leave your email?"
              - state: offline
              - user: ada@example.com
              - bot: "Bye!"
              - vars: {email: ada@example.com}
        """)
    assert outcome.passed, outcome.report()


def test_a_user_step_passes_over_unchecked_bot_messages(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: skip the greeting
            steps:
              - user: "hmm"
              - bot: "Pick an option below."
        """)
    assert outcome.passed, outcome.report()


def test_a_failing_bot_step_reports_expected_and_actual_side_by_side(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: wrong greeting
            steps:
              - bot: "Hi there!"
              - bot: "How may I help?"
        """)
    assert not outcome.passed
    report = outcome.report().splitlines()
    assert report[0] == f"FAIL wrong greeting  ({tmp_path / 'support_test.yaml'}:3)"
    assert report[1] == ('  step at line 6 (bot: "How may I help?"): bot said "How can I help?"')
    rows = [[cell.strip() for cell in line.split(" | ")] for line in report[2:]]
    assert rows[:3] == [["expected", "actual"],
                        ['bot: "Hi there!"', 'bot: "Hi there!"'],
                        ['> bot: "How may I help?"', 'bot said "How can I help?"']]
    assert len({line.index(" | ") for line in report[2:5]}) == 1  # the columns line up


def test_a_bot_step_after_the_bot_fell_silent_fails(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: too many
            steps:
              - bot: "Hi there!"
              - bot: "How can I help?"
              - bot: "Anything else?"
        """)
    assert "the bot said nothing more" in outcome.failure


def test_a_wrong_state_fails_naming_the_actual_state(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: state
            steps:
              - state: handoff
        """)
    assert "the conversation is in state 'greet'" in outcome.failure


def test_vars_are_compared_by_yaml_type(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: types
            http:
              "GET https://shop.test/orders/AB123456": {status: 200, json: {n: 3}}
            steps:
              - click: Track an order
              - user: AB123456
              - vars: {count: 3}
        """)
    assert not outcome.passed
    assert "vars differ: count='3'" in outcome.failure


def test_unexpected_http_request_fails_the_test(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: no canned answer
            steps:
              - click: Track an order
              - user: AB123456
        """)
    assert not outcome.passed
    assert outcome.failure == ('step at line 6 (user: "AB123456"): the flow made a request the '
                               "test has no answer for: GET https://shop.test/orders/AB123456 "
                               "(add it under http:)")


def test_click_on_a_missing_button_lists_the_offered_buttons(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: missing button
            steps:
              - click: Opening hours
        """)
    assert outcome.failure == ('step at line 5 (click: "Opening hours"): no button "Opening hours" '
                               '(buttons offered: "Track an order", "Talk to a person")')


def test_escalated_step_fails_when_the_bot_did_not_escalate(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: not escalated
            steps:
              - escalated: support
        """)
    assert "the conversation was not escalated" in outcome.failure


def test_ended_step_fails_when_the_conversation_goes_on(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: not ended
            steps:
              - ended: true
        """)
    assert "the conversation has not ended (state 'greet')" in outcome.failure


def test_typing_to_a_person_fails_the_test(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: after escalation
            steps:
              - user: human
              - user: hello?
        """)
    assert "the conversation is with a person (escalated to 'support')" in outcome.failure


def test_typing_after_the_end_fails_the_test(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: after the end
            agents_online: 0
            steps:
              - user: human
              - user: not an email
              - user: still not
              - user: nope
              - ended: true
              - user: hello?
        """)
    assert "the conversation has ended" in outcome.failure


def test_each_test_starts_a_new_conversation(tmp_path):
    outcomes = run(tmp_path, """\
        flow: support
        tests:
          - name: first
            steps:
              - user: human
              - escalated: support
          - name: second
            steps:
              - state: greet
              - escalated: support
        """)
    assert [o.passed for o in outcomes] == [True, False]


def test_vars_step_compares_nested_values(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: nested
            http:
              "GET https://shop.test/orders/AB123456": {status: 200, json: {status: shipped}}
            steps:
              - click: Track an order
              - user: AB123456
              - vars: {order: {status: 200, json: {status: shipped}}}
        """)
    assert outcome.passed, outcome.report()


def test_vars_step_compares_nested_values_by_yaml_type(tmp_path):
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: nested, wrong type
            http:
              "GET https://shop.test/orders/AB123456": {status: 200, json: {status: shipped}}
            steps:
              - click: Track an order
              - user: AB123456
              - vars: {order: {status: "200", json: {status: shipped}}}
        """)
    assert not outcome.passed
    assert "vars differ: order=" in outcome.failure


def test_a_malformed_http_entry_is_an_error(tmp_path):
    path = tmp_path / "support_test.yaml"
    assert read_problems(tmp_path, """\
        flow: support
        tests:
          - name: bad http
            http:
              "https://shop.test/orders/1": {status: 200}
            steps: [{state: greet}]
        """) == [f'{path}:5:7: error: http entries look like "GET https://...": '
                 "{status: 200, json: {...}}; check 'https://shop.test/orders/1'"]


def test_escalated_step_with_nobody_online_fails_and_says_why(tmp_path):
    """`escalated` means queued or assigned (docs/flows.md); with agents_online: 0 neither is."""
    (outcome,) = run(tmp_path, """\
        flow: support
        tests:
          - name: nobody online
            agents_online: 0
            steps:
              - user: human
              - escalated: support
        """)
    assert not outcome.passed
    assert "the conversation was not escalated (it tried 'support', but agents_online is 0, " \
           "so it went on at no_agents)" in outcome.failure


# --- malformed test files ------------------------------------------------------------------------


def read_problems(tmp_path, text: str) -> list[str]:
    _flow, _cases, problems = read_tests(write_tests(tmp_path, text))
    return [str(p) for p in problems]


def test_an_unknown_step_is_a_positioned_error_with_a_suggestion(tmp_path):
    path = tmp_path / "support_test.yaml"
    assert read_problems(tmp_path, """\
        flow: support
        tests:
          - name: typo
            steps:
              - bots: "Hi"
        """) == [f"{path}:5:9: error: unknown step 'bots' (did you mean 'bot'?)"]


def test_unknown_keys_and_bad_values_are_positioned_errors(tmp_path):
    path = tmp_path / "support_test.yaml"
    assert read_problems(tmp_path, """\
        flow: support
        test:
          - name: typo
        """) == [
        f"{path}:2:1: error: unknown key 'test' in the test file (did you mean 'tests'?)",
        f"{path}:1:1: error: the test file needs tests: a list of tests with name and steps",
    ]


def test_bad_step_values_are_errors_at_the_value(tmp_path):
    path = tmp_path / "support_test.yaml"
    assert read_problems(tmp_path, """\
        flow: support
        tests:
          - name: bad values
            agents_online: many
            steps:
              - bot: /(unclosed/
              - ended: yes
              - vars: [a]
              - {bot: a, user: b}
        """) == [
        f"{path}:4:20: error: agents_online must be a whole number (0 or more)",
        f"{path}:6:14: error: bad regex /(unclosed/: this ( is never closed: add a ) where the "
        "group ends, or write \\( to match a parenthesis",
        f"{path}:7:16: error: ended must be true",
        f"{path}:8:15: error: vars must be a mapping of expected variables, not a list",
        f"{path}:9:9: error: a step is one of bot:, user:, click:, state:, vars:, escalated:, "
        "reason:, note:, ended:, locale:, leave_queue:",
    ]


def test_a_test_without_steps_is_an_error(tmp_path):
    path = tmp_path / "support_test.yaml"
    assert read_problems(tmp_path, """\
        flow: support
        tests:
          - name: empty
        """) == [f"{path}:3:5: error: test 'empty' has no steps"]


def test_a_test_file_without_flow_is_an_error(tmp_path):
    path = tmp_path / "support_test.yaml"
    assert read_problems(tmp_path, """\
        tests:
          - name: x
            steps: [{state: greet}]
        """) == [f"{path}:1:1: error: the test file needs flow: the id of the flow it tests"]


def test_a_yaml_error_in_a_test_file_is_positioned(tmp_path):
    path = tmp_path / "support_test.yaml"
    (problem,) = read_problems(tmp_path, """\
        flow: support
        tests:
          - name: x
            steps:
              - bot: Good news: it shipped
        """)
    assert problem == f"{path}:5:23: error: YAML syntax: {COLON_HINT}"


def test_a_test_of_an_unknown_flow_suggests_the_right_one(tmp_path):
    path = write_tests(tmp_path, """\
        flow: suport
        tests:
          - name: x
            steps: [{state: greet}]
        """)
    outcomes, problems = run_file(path, FLOWS)
    assert outcomes == []
    assert [str(p) for p in problems] == [
        f"{path}:1:1: error: no valid flow 'suport' to test (did you mean 'support'?) "
        "(flows: support)"]


# --- answers to calls: missing, misspelt, unused -------------------------------------------------

REPAIRS = make_flow("""\
    name: repairs
    start: ask_ticket
    states:
      ask_ticket:
        ask: "What's your repair ticket number?"
        save: ticket
        next: lookup
      lookup:
        call: {url: "/repairs/{{ vars.ticket }}", save: repair}
        on_error: not_found
        next: status
      status: {say: "Your bike is {{ vars.repair.json.status }}.", end: true}
      not_found: {say: "I couldn't find that ticket.", end: true}
    """, "flows/repairs.yaml")


def run_repairs(tmp_path, text: str):
    return run_file(write_tests(tmp_path, text), {"repairs": REPAIRS})


def test_a_missing_answer_is_the_failure_and_a_misspelt_one_is_suggested(tmp_path):
    (outcome,), problems = run_repairs(tmp_path, """\
        flow: repairs
        tests:
          - name: ready for pick-up
            http:
              "GET /repairs/R-12345": {json: {status: ready}}
            steps:
              - user: "r-12345"
              - bot: "Your bike is ready."
        """)
    assert problems == []
    assert outcome.failure == (
        'step at line 7 (user: "r-12345"): the flow made a request the test has no answer '
        "for: GET /repairs/r-12345 (add it under http:) (did you mean 'GET /repairs/R-12345'?)")


def test_a_missing_answer_without_a_near_miss_names_only_the_request(tmp_path):
    (outcome,), _ = run_repairs(tmp_path, """\
        flow: repairs
        tests:
          - name: no answers at all
            steps:
              - user: "R-12345"
              - bot: "Your bike is ready."
        """)
    assert outcome.failure == (
        'step at line 5 (user: "R-12345"): the flow made a request the test has no answer '
        "for: GET /repairs/R-12345 (add it under http:)")


def test_an_answer_a_passing_test_never_used_is_a_warning_at_its_line(tmp_path):
    (outcome,), problems = run_repairs(tmp_path, """\
        flow: repairs
        tests:
          - name: ready for pick-up
            http:
              "GET /repairs/R-12345": {json: {status: ready}}
              "POST /repairs/R-12345": {json: {status: ready}}
            steps:
              - user: "R-12345"
              - bot: "Your bike is ready."
        """)
    assert outcome.passed
    assert [str(p) for p in problems] == [
        f"{tmp_path / 'support_test.yaml'}:6:7: warning: the answer to 'POST /repairs/R-12345' "
        "is never used by test 'ready for pick-up': the flow made no such request (check the "
        "method and url, or remove the answer)"]


# --- one broken test does not hide the others ----------------------------------------------------


def test_a_yaml_error_in_one_test_still_runs_the_others(tmp_path):
    path = write_tests(tmp_path, """\
        flow: support
        visitor: {name: Ada}
        tests:
          - name: greets by name
            steps:
              - bot: "Hi Ada!"

          - name: broken quoting
            steps:
              - bot: Good news: it shipped

          - name: a person is one click away
            steps:
              - click: Talk to a person
              - escalated: support
          - name: also broken
            steps:
              - user: "unclosed
        """)
    outcomes, problems = run_file(path, FLOWS)
    assert [(o.case.name, o.passed) for o in outcomes] == [("greets by name", True),
                                                          ("a person is one click away", True)]
    assert [str(p) for p in problems] == [
        f"{path}:10:23: error: YAML syntax: {COLON_HINT}",
        f"{path}:19:1: error: YAML syntax: found unexpected end of stream",
    ]


def test_a_yaml_error_before_the_tests_is_reported_with_those_of_the_tests(tmp_path):
    path = write_tests(tmp_path, """\
        flow: support
        visitor: {name: Ada
        tests:
          - name: broken
            steps:
              - bot: Good news: it shipped
        """)
    outcomes, problems = run_file(path, FLOWS)
    assert outcomes == []
    assert [str(p)[len(str(path)):] for p in problems] == [
        ":3:6: error: YAML syntax: did not find expected ',' or '}'",
        f":6:23: error: YAML syntax: {COLON_HINT}",
    ]


def test_a_mistake_in_one_test_leaves_it_out_and_runs_the_others(tmp_path):
    path = write_tests(tmp_path, """\
        flow: support
        tests:
          - name: typo
            steps:
              - clik: Talk to a person
          - name: greets
            steps:
              - bot: "Hi there!"
        """)
    outcomes, problems = run_file(path, FLOWS)
    assert [(o.case.name, o.passed) for o in outcomes] == [("greets", True)]
    assert [str(p) for p in problems] == [
        f"{path}:5:9: error: unknown step 'clik' (did you mean 'click'?)"]


def test_an_empty_list_of_tests_is_an_error(tmp_path):
    assert read_problems(tmp_path, "flow: support\ntests: []\n") == [
        f"{tmp_path / 'support_test.yaml'}:2:8: error: the test file needs tests: a list of "
        "tests with name and steps"]


NOTED = make_flow("""\
    name: noted
    start: menu
    states:
      menu:
        say: "Hi"
        buttons: [{title: Talk to a person, goto: ask_email}]
      ask_email: {ask: "Email?", save: email, next: handoff}
      handoff:
        escalate: {queue: support, note: "Write to {{ vars.email }}"}
        no_agents: bye
      bye: {say: bye, end: true}
    """, "flows/noted.yaml")


def test_reason_and_note_steps_check_the_latest_escalation(tmp_path):
    path = tmp_path / "noted_test.yaml"
    path.write_text(textwrap.dedent("""\
        flow: noted
        tests:
          - name: passes
            agents_online: 0
            steps:
              - click: Talk to a person
              - user: ada@example.com
              - reason: asked
              - note: "Write to ada@example.com"
              - note: /ada@/
          - name: fails
            steps:
              - click: Talk to a person
              - user: ada@example.com
              - note: "Write to bob"
          - name: too early
            steps:
              - reason: asked
        """), encoding="utf-8")
    outcomes, problems = run_file(path, {"noted": NOTED})
    assert problems == []
    assert [o.passed for o in outcomes] == [True, False, False]
    assert outcomes[1].failure == ('step at line 15 (note: Write to bob): the note is '
                                   '"Write to ada@example.com"')
    assert outcomes[2].failure == ("step at line 18 (reason: asked): the conversation has not "
                                   "escalated")


def test_a_reason_step_names_the_reasons(tmp_path):
    path = tmp_path / "noted_test.yaml"
    path.write_text("flow: noted\ntests:\n  - name: x\n    steps:\n      - reason: aksed\n",
                    encoding="utf-8")
    _flow, _cases, problems = read_tests(path)
    assert [p.message for p in problems] == [
        "reason must be one of asked, fallback, invalid, flow (did you mean 'asked'?)"]


def test_today_that_is_no_day_says_so_and_locale_must_be_a_tag(tmp_path):
    path = write_tests(tmp_path, """\
        flow: support
        today: 2027-02-30
        tests:
          - name: x
            locale: Deutsch!
            today: tomorrow
            steps:
              - locale: "12"
        """)
    _flow, _cases, problems = read_tests(path)
    assert [str(p)[len(str(path)):] for p in problems] == [
        ":2:8: error: today: there is no day 2027-02-30 in the calendar",
        ":5:13: error: locale must be a language tag like en, de or de-CH (BCP 47), not "
        "'Deutsch!'",
        ":6:12: error: today must be a date like 2026-12-01, not 'tomorrow'",
        ":8:17: error: locale must be a language tag like en, de or de-CH (BCP 47), not '12'",
    ]
