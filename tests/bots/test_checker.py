"""The checker: every mistake a flow author can make is an error at its file, line and column."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bots.checker import check_file, check_text

from .helpers import diagnostics, errors, make_flow, warnings

P = "flows/test.yaml"
ROOT = Path(__file__).resolve().parents[2]


def only_error(yaml_text: str) -> str:
    found = errors(yaml_text)
    assert len(found) == 1, "\n".join(found)
    return found[0]


# --- files that are not flows ------------------------------------------------------------


def test_a_yaml_syntax_error_is_reported_at_its_place():
    assert diagnostics("start: a\nstates:\n  a:\n    say: hi\n   end: true\n") == [
        f"{P}:5:4: error: YAML syntax: did not find expected key"]


def test_an_empty_file_is_one_clean_error():
    assert diagnostics("") == [f"{P}:1:1: error: the file is empty: a flow needs start and states"]


def test_a_file_of_only_comments_is_empty():
    assert diagnostics("# nothing yet\n") == [
        f"{P}:1:1: error: the file is empty: a flow needs start and states"]


@pytest.mark.parametrize("text,kind", [("- a\n- b\n", "a list"), ("just text\n", "text"),
                                       ("42\n", "a number (42)")])
def test_a_file_that_is_not_a_mapping_is_one_clean_error(text, kind):
    assert diagnostics(text) == [f"{P}:1:1: error: a flow must be a mapping of keys, not {kind}"]


def test_a_binary_file_is_a_clean_error(tmp_path):
    path = tmp_path / "logo.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    flow, found = check_file(path)
    assert flow is None
    assert [str(d) for d in found] == [f"{path}:1:1: error: not UTF-8 text: invalid start byte"]


def test_a_latin1_file_is_a_clean_error(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_bytes("start: a\nstates: {a: {say: café, end: true}}\n".encode("latin-1"))
    flow, found = check_file(path)
    assert flow is None
    (problem,) = found
    assert str(problem).startswith(f"{path}:1:1: error: not UTF-8 text")


def test_text_with_a_nul_byte_is_a_clean_error():
    flow, found = check_text("start: a\x00\n", P)
    assert flow is None
    assert len(found) == 1 and found[0].is_error


def test_a_utf8_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfstart: a\nstates:\n  a: {say: hi, end: true}\n")
    flow, found = check_file(path)
    assert found == []
    assert flow is not None and flow.start == "a"


def test_a_missing_file_is_a_clean_error(tmp_path):
    flow, found = check_file(tmp_path / "nope.yaml")
    assert flow is None
    assert "cannot read" in str(found[0])


# --- unknown keys, with did-you-mean ------------------------------------------------------


def test_unknown_top_level_key_suggests_the_right_one():
    found = errors("""\
        start: a
        stats:
          a: {say: hi, end: true}
        """)
    assert f"{P}:2:1: error: unknown key 'stats' in the flow (did you mean 'states'?)" in found


def test_unknown_top_level_key_without_a_close_match_lists_the_allowed_keys():
    assert only_error("""\
        start: a
        colour: blue
        states:
          a: {say: hi, end: true}
        """) == (f"{P}:2:1: error: unknown key 'colour' in the flow (allowed: name, description, "
                 "start, locales, settings, intents, states)")


def test_unknown_state_key_suggests_the_right_one():
    assert only_error("""\
        start: a
        states:
          a:
            sya: hi
            end: true
        """) == f"{P}:4:5: error: unknown key 'sya' in state 'a' (did you mean 'say'?)"


def test_unknown_rule_key_suggests_the_right_one():
    assert only_error("""\
        start: a
        states:
          a:
            say: hi
            on:
              - keywords: [x]
                goto: b
                sya: hey
          b: {say: bye, end: true}
        """) == (f"{P}:8:9: error: unknown key 'sya' in a rule in on of state 'a' "
                 "(did you mean 'say'?)")


def test_unknown_intent_key_suggests_the_matcher():
    found = errors("""\
        start: a
        intents:
          - keyword: [help]
            goto: b
        states:
          a: {say: hi, buttons: [{title: x, goto: b}]}
          b: {say: bye, end: true}
        """)
    assert (f"{P}:3:5: error: unknown key 'keyword' in a rule in intents "
            "(did you mean 'keywords'?)") in found


def test_unknown_button_key_suggests_the_right_one():
    found = errors("""\
        start: a
        states:
          a:
            say: hi
            buttons:
              - {titel: Go, goto: b}
          b: {say: bye, end: true}
        """)
    assert f"{P}:6:10: error: unknown key 'titel' in a button (did you mean 'title'?)" in found
    assert f"{P}:6:9: error: a button needs title" in found


def test_unknown_call_key_suggests_the_right_one():
    assert only_error("""\
        start: a
        states:
          a:
            call: {url: "https://x.test/", metod: POST}
            on_error: b
            next: b
          b: {say: bye, end: true}
        """) == f"{P}:4:36: error: unknown key 'metod' in call (did you mean 'method'?)"


def test_unknown_escalate_key_suggests_the_right_one():
    assert only_error("""\
        start: a
        states:
          a:
            escalate: {queue: support, priorty: 2}
            no_agents: b
          b: {say: bye, end: true}
        """) == f"{P}:4:32: error: unknown key 'priorty' in escalate (did you mean 'priority'?)"


def test_unknown_settings_key_suggests_the_right_one():
    assert only_error("""\
        start: a
        settings:
          max_fallback: 3
        states:
          a: {say: hi, end: true}
        """) == (f"{P}:3:3: error: unknown key 'max_fallback' in settings "
                 "(did you mean 'max_fallbacks'?)")


def test_unknown_else_key_suggests_the_right_one():
    assert only_error("""\
        start: a
        states:
          a:
            say: hi
            buttons: [{title: x, goto: b}]
            else: {say: what?, goot: b}
          b: {say: bye, end: true}
        """) == f"{P}:6:24: error: unknown key 'goot' in else (did you mean 'goto'?)"


def test_wrong_case_of_a_key_suggests_the_right_spelling():
    assert only_error("""\
        start: a
        states:
          a: {Say: hi, end: true}
        """) == f"{P}:3:7: error: unknown key 'Say' in state 'a' (did you mean 'say'?)"


# --- wrong types ---------------------------------------------------------------------------


def test_say_true_asks_for_quotes():
    assert only_error("""\
        start: a
        states:
          a:
            say: true
            end: true
        """) == f"{P}:4:10: error: say of state 'a' must be text, not true (put text in quotes)"


def test_say_no_is_the_word_no():
    flow = make_flow("""\
        start: a
        states:
          a: {say: no, end: true}
        """)
    assert flow.states["a"].say[0].source == "no"


def test_retries_must_be_a_whole_number():
    assert only_error("""\
        start: a
        settings: {fallback_to: b}
        states:
          a: {ask: Age?, save: age, validate: integer, retries: "x", next: b}
          b: {say: bye, end: true}
        """) == f"{P}:4:57: error: retries must be a whole number of at least 0, not text"


def test_negative_max_fallbacks_is_an_error():
    assert only_error("""\
        start: a
        settings: {max_fallbacks: 0}
        states:
          a: {say: hi, end: true}
        """) == f"{P}:2:27: error: max_fallbacks must be a whole number of at least 1, not 0"


def test_buttons_that_are_not_a_list_are_an_error():
    assert only_error("""\
        start: a
        states:
          a:
            say: hi
            buttons: {title: Go, goto: b}
          b: {say: bye, end: true}
        """) == f"{P}:5:14: error: buttons must be a list of {{title, goto}}, not a mapping"


def test_end_yes_is_an_error():
    assert only_error("""\
        start: a
        states:
          a: {say: hi, end: "yes"}
        """) == f"{P}:3:21: error: end must be true, not text"


def test_unquoted_end_yes_is_text_too():
    assert "end must be true, not text" in only_error("""\
        start: a
        states:
          a: {say: hi, end: yes}
        """)


def test_a_state_that_is_a_list_is_an_error():
    assert f"{P}:3:6: error: state 'a' must be a mapping of keys, not a list" in errors("""\
        start: a
        states:
          a: [say, hi]
        """)


def test_an_empty_state_is_an_error():
    assert (f"{P}:3:3: error: state 'a' is empty: give it say, ask, buttons, next, "
            "escalate or end") in errors("""\
        start: a
        states:
          a:
        """)


def test_a_broken_state_is_not_also_reported_as_unknown():
    assert not any("unknown state 'a'" in e for e in errors("""\
        start: a
        states:
          a:
        """))


def test_unknown_validator_suggests_the_right_one():
    assert only_error("""\
        start: a
        settings: {fallback_to: b}
        states:
          a: {ask: Mail?, save: mail, validate: emial, next: b}
          b: {say: bye, end: true}
        """).startswith(f"{P}:4:41: error: unknown validator 'emial' (did you mean 'email'?)")


def test_set_value_must_be_text():
    assert "must be text, not a list" in only_error("""\
        start: a
        states:
          a: {set: {x: [1]}, say: hi, end: true}
        """)


def test_a_variable_name_must_be_an_identifier():
    assert "'order-id' is not a valid variable name" in only_error("""\
        start: a
        states:
          a: {ask: Order?, save: order-id, next: b}
          b: {say: bye, end: true}
        """)


def test_call_timeout_above_the_limit_is_an_error():
    assert "timeout must be a number of seconds above 0 and at most 30" in only_error("""\
        start: a
        states:
          a:
            call: {url: "https://x.test/", timeout: 600}
            on_error: b
            next: b
          b: {say: bye, end: true}
        """)


def test_unknown_http_method_is_an_error():
    assert "method 'FETCH' is not one of GET, POST, PUT, PATCH, DELETE" in only_error("""\
        start: a
        states:
          a:
            call: {url: "https://x.test/", method: fetch}
            on_error: b
            next: b
          b: {say: bye, end: true}
        """)


# --- start and gotos -----------------------------------------------------------------------


def test_missing_start_suggests_the_first_state():
    assert only_error("""\
        states:
          greet: {say: hi, end: true}
        """) == f"{P}:1:1: error: the flow has no start state: add 'start: greet'"


def test_missing_states_is_an_error():
    found = errors("start: a\n")
    assert f"{P}:1:1: error: the flow has no states: add 'states:' with at least one state" in found


def test_start_pointing_nowhere_is_an_error_at_the_value():
    assert only_error("""\
        start: greeet
        states:
          greet: {say: hi, end: true}
        """) == f"{P}:1:8: error: unknown state 'greeet' in start (did you mean 'greet'?)"


def test_unknown_goto_suggests_the_closest_state():
    assert only_error("""\
        start: greet
        states:
          greet:
            say: hi
            buttons:
              - {title: Talk to a person, goto: hadnoff}
          handoff:
            escalate: support
            no_agents: bye
          bye: {say: bye, end: true}
        """) == f"{P}:6:41: error: unknown state 'hadnoff' in goto (did you mean 'handoff'?)"


@pytest.mark.parametrize("key", ["on_invalid", "on_error", "no_agents"])
def test_unknown_state_in_other_targets_is_named_by_its_key(key):
    source = {
        "on_invalid": "a: {ask: n?, save: n, validate: number, on_invalid: bey, next: bye}",
        "on_error": "a: {call: {url: 'https://x.test'}, on_error: bey, next: bye}",
        "no_agents": "a: {escalate: support, no_agents: bey}",
    }[key]
    found = only_error(f"start: a\nstates:\n  {source}\n  bye: {{say: bye, end: true}}\n")
    assert found.endswith(f"error: unknown state 'bey' in {key} (did you mean 'bye'?)")


def test_unknown_fallback_to_is_an_error():
    assert "unknown state 'nowhere' in fallback_to" in only_error("""\
        start: a
        settings: {fallback_to: nowhere}
        states:
          a: {say: hi, end: true}
        """)


@pytest.mark.parametrize("source", [
    "start: ''\nstates:\n  a: {say: hi, end: true}\n",
    "start: a\nintents: [{keywords: [help], goto: ''}]\n"
    "states:\n  a: {say: hi, buttons: [{title: x, goto: b}]}\n  b: {say: bye, end: true}\n",
    "start: a\nstates:\n  a: {say: hi, buttons: [{title: x, goto: b}, {title: y, goto: ''}]}\n"
    "  b: {say: bye, end: true}\n",
    "start: a\nstates:\n  a: {call: {url: 'https://x.test/'}, on_error: '', next: b}\n"
    "  b: {say: bye, end: true}\n",
    "start: a\nstates:\n  a: {escalate: support, no_agents: ''}\n",
], ids=["start", "intent goto", "button goto", "on_error", "no_agents"])
def test_an_empty_state_name_is_an_error(source):
    flow, found = check_text(source, P)
    assert flow is None
    assert any(d.is_error for d in found)


# --- regexes, templates, expressions and names ---------------------------------------------


def test_bad_regex_in_a_rule_is_an_error_at_the_regex():
    assert only_error("""\
        start: a
        states:
          a:
            say: hi
            on:
              - regex: '([A-Z]{2}'
                goto: b
          b: {say: bye, end: true}
        """) == (f"{P}:6:17: error: bad regex '([A-Z]{{2}}': this ( is never closed: add a ) where "
                 "the group ends, or write \\( to match a parenthesis")


def test_bad_regex_in_validate_is_an_error():
    assert only_error("""\
        start: a
        states:
          a:
            ask: Code?
            save: code
            validate: {regex: '*abc', error: Nope}
            on_invalid: b
            next: b
          b: {say: bye, end: true}
        """) == (f"{P}:6:24: error: bad regex '*abc': there is nothing before this to repeat: "
                 "write \\*, \\+ or \\? to match the character itself")


def test_bad_template_syntax_is_an_error():
    assert only_error("""\
        start: a
        states:
          a: {say: "Hi {{ visitor.name ", end: true}
        """) == (f"{P}:3:12: error: bad template in say of state 'a': unexpected end of "
                 "template, expected 'end of print statement'.")


def test_bad_template_in_a_block_points_at_the_broken_line():
    found = only_error("""\
        start: a
        states:
          a:
            say: |
              Hello there.
              Your order {{ vars.x | }}.
            set: {x: "1"}
            end: true
        """)
    assert found.startswith(f"{P}:6:")
    assert "bad template in say of state 'a'" in found


def test_bad_when_expression_is_an_error():
    assert only_error("""\
        start: a
        states:
          a:
            say: hi
            next:
              - when: "input =="
                goto: b
              - goto: b
          b: {say: bye, end: true}
        """) == f"{P}:6:15: error: bad expression in when: unexpected 'end of template'"


def test_a_when_with_trailing_text_is_an_error():
    assert "bad expression in when" in only_error("""\
        start: a
        states:
          a:
            say: hi
            next:
              - when: "input == 'a' garbage"
                goto: b
              - goto: b
          b: {say: bye, end: true}
        """)


@pytest.mark.parametrize("escalate", ["''", "{queue: ''}"])
def test_an_empty_queue_is_an_error(escalate):
    assert "queue" in only_error(f"start: a\nstates:\n  a: {{escalate: {escalate}, no_agents: b}}\n"
                                 "  b: {say: bye, end: true}\n")


@pytest.mark.parametrize("source,line", [
    ("start: a\nstates:\n  a: {say: \"{{ 'x' | puper }}\", end: true}\n", 3),
    ("start: a\nstates:\n  a:\n    say: hi\n    next:\n      - when: 'input | lenght > 3'\n"
     "        goto: b\n      - goto: b\n  b: {say: bye, end: true}\n", 6),
], ids=["say", "when"])
def test_an_unknown_filter_is_an_error(source, line):
    flow, found = check_text(source, P)
    assert flow is None
    (problem,) = [str(d) for d in found if d.is_error]
    assert problem.startswith(f"{P}:{line}:")
    assert "puper" in problem or "lenght" in problem


def test_an_unknown_test_is_an_error():
    assert "evn" in only_error("""\
        start: a
        states:
          a: {say: "{% if 3 is evn %}x{% endif %}", end: true}
        """)


def test_unknown_name_in_a_template_hints_at_vars():
    assert only_error("""\
        start: a
        states:
          a: {say: "Order {{ order_id }}", end: true}
        """) == (f"{P}:3:12: error: unknown name 'order_id' in say of state 'a' "
                 "(variables are under vars: vars.order_id)")


def test_a_misspelt_context_name_suggests_it():
    assert "unknown name 'visiter' in say of state 'a' (did you mean 'visitor'?)" in only_error("""\
        start: a
        states:
          a: {say: "Hi {{ visiter.name }}", end: true}
        """)


def test_names_assigned_inside_a_template_are_known():
    make_flow("""\
        start: a
        states:
          a: {say: "{% for w in ['a', 'b'] %}{{ w }}{% endfor %}{% set n = 2 %}{{ n }}", end: true}
        """)


def test_secrets_outside_call_are_an_error():
    assert only_error("""\
        start: a
        states:
          a: {say: "token {{ secrets.TOKEN }}", end: true}
        """) == (f"{P}:3:12: error: secrets can be used only inside call, not in say of "
                 "state 'a': they must never reach the visitor")


def test_secrets_in_a_set_are_an_error():
    assert "secrets can be used only inside call" in only_error("""\
        start: a
        states:
          a: {set: {t: "{{ secrets.TOKEN }}"}, say: hi, end: true}
        """)


def test_secrets_inside_call_url_headers_and_json_are_fine():
    flow = make_flow("""\
        start: a
        states:
          a:
            call:
              method: POST
              url: "https://x.test/{{ secrets.PATH }}"
              headers: {Authorization: "Bearer {{ secrets.TOKEN }}"}
              json: {key: "{{ secrets.KEY }}", list: ["{{ secrets.KEY }}"]}
            on_error: b
            next: b
          b: {say: bye, end: true}
        """)
    assert flow.states["a"].call is not None


def test_unknown_visitor_field_is_a_warning_with_a_suggestion():
    assert warnings("""\
        start: a
        states:
          a: {say: "Hi {{ visitor.nmae }}", end: true}
        """) == [f"{P}:3:12: warning: visitor has no field 'nmae' in say of state 'a' "
                 "(did you mean 'name'?)"]


# --- shapes that cannot work -----------------------------------------------------------------


def test_dead_end_state_is_an_error():
    assert only_error("""\
        start: a
        states:
          a: {say: hi}
        """) == (f"{P}:3:3: error: state 'a' is a dead end: give it next, ask, buttons, on, "
                 "escalate or end: true")


def test_ask_without_next_is_an_error():
    assert only_error("""\
        start: a
        states:
          a: {ask: Name?, save: name}
        """) == (f"{P}:3:7: error: ask needs next in state 'a': where to go after a valid "
                 "answer")


def test_call_without_on_error_is_an_error():
    assert only_error("""\
        start: a
        states:
          a: {call: {url: "https://x.test/"}, next: b}
          b: {say: bye, end: true}
        """) == (f"{P}:3:7: error: call needs on_error in state 'a': where to go when the "
                 "request fails or times out")


def test_call_without_next_is_an_error():
    assert f"{P}:3:7: error: call needs next in state 'a': where to go after a successful " \
        "request" in errors("""\
        start: a
        states:
          a: {call: {url: "https://x.test/"}, on_error: b}
          b: {say: bye, end: true}
        """)


def test_escalate_without_no_agents_is_an_error():
    assert only_error("""\
        start: a
        states:
          a: {escalate: support}
        """) == (f"{P}:3:7: error: escalate needs no_agents in state 'a': where the bot goes "
                 "on when nobody can take it")


def test_validated_ask_without_on_invalid_or_fallback_is_an_error():
    assert only_error("""\
        start: a
        states:
          a: {ask: Mail?, save: mail, validate: email, next: b}
          b: {say: bye, end: true}
        """) == (f"{P}:3:3: error: state 'a' validates its answer but has no on_invalid, and "
                 "the flow has no settings.fallback_to: add one of them")


def test_validated_ask_may_rely_on_fallback_to():
    make_flow("""\
        start: a
        settings: {fallback_to: b}
        states:
          a: {ask: Mail?, save: mail, validate: email, next: b}
          b: {say: bye, end: true}
        """)


def test_a_rule_with_two_matchers_is_an_error():
    assert only_error("""\
        start: a
        states:
          a:
            say: hi
            on:
              - keywords: [order]
                regex: '\\d+'
                goto: b
          b: {say: bye, end: true}
        """) == (f"{P}:7:9: error: a rule has exactly one matcher, this one has keywords and "
                 "regex: split it in two")


def test_a_rule_without_goto_is_an_error():
    assert only_error("""\
        start: a
        states:
          a:
            say: hi
            on:
              - keywords: [order]
                say: ok
            buttons: [{title: Bye, goto: b}]
          b: {say: bye, end: true}
        """) == (f"{P}:6:9: error: a rule in on of state 'a' needs a goto (or a locale, to "
                 "switch language and stay where the visitor is)")


def test_a_rule_without_matcher_is_an_error():
    assert "needs a matcher: one of keywords, regex, payload, when, any" in only_error("""\
        start: a
        states:
          a:
            say: hi
            on:
              - goto: b
          b: {say: bye, end: true}
        """)


def test_next_whose_bare_goto_is_not_last_is_an_error():
    found = errors("""\
        start: a
        states:
          a:
            say: hi
            next:
              - goto: b
              - when: "input"
                goto: c
          b: {say: bye, end: true}
          c: {say: bye, end: true}
        """)
    assert (f"{P}:6:9: error: a choice of next without when must come last: the choices "
            "after it are never used") in found
    assert (f"{P}:7:9: error: next must end with a choice without when (- goto: somewhere), "
            "for when none is true") in found


def test_buttons_without_say_or_ask_are_an_error():
    assert only_error("""\
        start: a
        states:
          a:
            buttons: [{title: Go, goto: b}]
          b: {say: bye, end: true}
        """) == (f"{P}:4:5: error: buttons need a say or an ask in state 'a': they are shown "
                 "with the state's last message")


def test_duplicate_button_titles_are_an_error_even_in_other_case():
    assert only_error("""\
        start: a
        states:
          a:
            say: hi
            buttons:
              - {title: "Yes", goto: b}
              - {title: "YES!", goto: c}
          b: {say: bye, end: true}
          c: {say: bye, end: true}
        """) == f"{P}:7:17: error: two buttons of state 'a' are titled 'YES!' (first at line 6)"


def test_two_buttons_with_the_same_payload_are_an_error():
    assert "have the payload 'b'" in only_error("""\
        start: a
        states:
          a:
            say: hi
            buttons:
              - {title: One, goto: b}
              - {title: Two, goto: b}
          b: {say: bye, end: true}
        """)


def test_two_buttons_to_one_state_are_fine_with_their_own_payloads():
    make_flow("""\
        start: a
        states:
          a:
            say: hi
            buttons:
              - {title: One, goto: b, payload: one}
              - {title: Two, goto: b, payload: two}
          b: {say: bye, end: true}
        """)


def test_end_combined_with_next_is_an_error():
    assert only_error("""\
        start: a
        states:
          a: {say: hi, end: true, next: b}
          b: {say: bye, end: true}
        """) == (f"{P}:3:27: error: next is never used in state 'a': the conversation closes "
                 "after an end state's messages")


def test_next_combined_with_buttons_is_an_error():
    assert only_error("""\
        start: a
        states:
          a: {say: hi, next: b, buttons: [{title: Go, goto: b}]}
          b: {say: bye, end: true}
        """) == (f"{P}:3:25: error: buttons is never used in state 'a': next moves on at once, "
                 "without waiting")


def test_ask_and_call_in_one_state_is_an_error():
    assert "can do only one of ask, call and escalate; it has ask and call" in "\n".join(errors(
        """\
        start: a
        states:
          a:
            ask: Order?
            save: o
            call: {url: "https://x.test/"}
            on_error: b
            next: b
          b: {say: bye, end: true}
        """))


def test_else_without_buttons_or_rules_is_an_error():
    assert (f"{P}:3:7: error: else is used only in a state that waits for buttons or on rules, "
            "and state 'a' has neither") in errors("""\
        start: a
        states:
          a: {else: {say: what?}, say: hi, end: true}
        """)


def test_save_without_ask_is_an_error():
    assert "save needs ask in state 'a'" in only_error("""\
        start: a
        states:
          a: {say: hi, save: x, end: true}
        """)


# --- the graph -------------------------------------------------------------------------------


def test_input_loop_that_never_reaches_a_person_or_end_is_an_error():
    found = errors("""\
        start: menu
        states:
          menu:
            say: Pick one
            buttons: [{title: Ask, goto: question}]
          question:
            ask: Anything?
            save: answer
            next: menu
        """)
    assert found == [
        f"{P}:3:3: error: from state 'menu' the visitor can never reach a person or an end "
        "(add a way out, such as a button or an intent that leads to an escalate or end state)",
        f"{P}:6:3: error: from state 'question' the visitor can never reach a person or an end "
        "(add a way out, such as a button or an intent that leads to an escalate or end state)",
    ]


def test_an_intent_is_a_way_out_of_an_input_loop():
    make_flow("""\
        start: menu
        intents:
          - keywords: [human]
            goto: person
        states:
          menu:
            say: Pick one
            buttons: [{title: Ask, goto: question}]
          question:
            ask: Anything?
            save: answer
            next: menu
          person:
            escalate: support
            no_agents: menu
        """)


def test_instant_loop_of_next_states_is_an_error():
    found = errors("""\
        start: a
        states:
          a: {say: ping, next: b}
          b: {say: pong, next: a}
        """)
    loops = [e for e in found if "go round forever without waiting for the visitor" in e]
    assert loops in (
        [f"{P}:3:3: error: states a -> b -> a go round forever without waiting for the visitor"],
        [f"{P}:4:3: error: states b -> a -> b go round forever without waiting for the visitor"],
    )


def test_instant_loop_through_when_branches_is_an_error():
    found = errors("""\
        start: a
        states:
          a:
            say: ping
            next:
              - when: "vars.done"
                goto: c
              - goto: b
          b: {say: pong, next: a}
          c: {say: bye, end: true}
        """)
    assert any("states a -> b -> a go round forever" in e or
               "states b -> a -> b go round forever" in e for e in found)


def test_unreachable_state_is_a_warning_and_the_flow_is_valid():
    flow, found = check_text("start: a\nstates:\n  a: {say: hi, end: true}\n"
                             "  lost: {say: where am I, end: true}\n", P)
    assert flow is not None
    assert [str(d) for d in found] == [
        f"{P}:4:3: warning: state 'lost' is never reached from start 'a'"]


def test_variable_never_set_is_an_error_at_its_name_with_a_suggestion():
    flow, found = check_text("start: a\nstates:\n  a:\n    set: {name: Ada}\n"
                             "    say: 'Hi {{ vars.nmae }}'\n    end: true\n", P)
    assert flow is None
    assert [str(d) for d in found] == [
        f"{P}:5:17: error: variable 'nmae' is never set by any state (set, save or call save) "
        "(did you mean 'name'?)"]


def test_variables_set_by_save_call_and_buttons_count_as_set():
    assert warnings("""\
        start: a
        states:
          a:
            say: hi
            buttons: [{title: Go, goto: b, set: {picked: go}}]
          b: {ask: Mail?, save: mail, next: c}
          c:
            call: {url: "https://x.test/", save: order}
            on_error: d
            next: d
          d:
            say: "{{ vars.picked }} {{ vars.mail }} {{ vars.order.json.status }}"
            end: true
        """) == []


def test_all_errors_of_a_file_are_reported_at_once():
    found = errors("""\
        start: greet
        states:
          greet:
            say: hi
            buttons:
              - {title: Go, goto: hadnoff}
            on:
              - regex: '(oops'
                goto: handoff
          handoff:
            escalate: {queue: support, priorty: 1}
            no_agents: greet
        """)
    assert len(found) == 3, "\n".join(found)
    assert "unknown state 'hadnoff'" in found[0] and found[0].startswith(f"{P}:6:")
    assert "bad regex '(oops'" in found[1] and found[1].startswith(f"{P}:8:")
    assert "unknown key 'priorty'" in found[2] and found[2].startswith(f"{P}:11:")


def test_diagnostics_come_sorted_by_line():
    found = diagnostics("""\
        start: a
        states:
          a: {say: "{{ vars.x }}", end: true}
          b: {sya: hi, end: true}
          c: {say: hi, end: "y"}
        """)
    lines = [int(d.split(":")[1]) for d in found]
    assert lines == sorted(lines) and len(found) >= 3


def test_the_flow_id_is_its_name_or_the_file_stem():
    assert make_flow("start: a\nstates: {a: {say: hi, end: true}}\n",
                     "flows/support.yaml").id == "support"
    assert make_flow("name: sales\nstart: a\nstates: {a: {say: hi, end: true}}\n",
                     "flows/support.yaml").id == "sales"


def test_a_flow_name_with_spaces_is_an_error():
    assert "flow name 'my flow' may hold only letters, digits" in only_error(
        "name: my flow\nstart: a\nstates: {a: {say: hi, end: true}}\n")


def test_idle_timeout_without_on_idle_is_an_error():
    assert "idle_timeout and on_idle go together: add on_idle" in only_error("""\
        start: a
        settings: {idle_timeout: 60}
        states:
          a: {say: hi, end: true}
        """)


def test_the_shipped_default_flow_is_clean():
    flow, found = check_file(ROOT / "flows" / "default.yaml")
    assert [str(d) for d in found] == []
    assert flow is not None and flow.id == "default"


LOOP = "start: a\nstates:\n  a: {say: ping, next: b}\n  b: {say: pong, next: a}\n"


def test_the_instant_loop_error_is_the_same_on_every_run():
    script = ("import sys; from bots.checker import check_text; "
              "print(*check_text(sys.stdin.read(), 'x.yaml')[1], sep='\\n')")
    outputs = set()
    for seed in range(8):
        done = subprocess.run([sys.executable, "-c", script], input=LOOP, capture_output=True,
                              text=True, env={**os.environ, "PYTHONHASHSEED": str(seed)},
                              check=True, cwd=ROOT)
        outputs.add(done.stdout)
    assert len(outputs) == 1, outputs


# --- mistakes that YAML words badly, said in the author's terms ----------------------------

TAB_HINT = ("YAML syntax: a tab is used to indent this line: indent with spaces only (most "
            "editors can insert spaces when you press Tab)")


@pytest.mark.parametrize("text,where", [
    ("start: a\nstates:\n  a:\n\tsay: hi\n    end: true\n", "4:1"),       # a tab alone
    ("start: a\nstates:\n  a:\n    say: hi\n  \t  end: true\n", "5:3"),  # spaces, then a tab
    ("start: a\nstates:\n\ta:\n    say: hi\n    end: true\n", "3:1"),
])
def test_a_tab_used_for_indentation_is_named_at_the_tab(text, where):
    assert diagnostics(text) == [f"{P}:{where}: error: {TAB_HINT}"]


def test_a_key_of_a_state_indented_like_a_state_is_said_to_be_mis_indented():
    assert diagnostics("""\
        start: menu
        states:
          menu:
            say: "How can I help?"
            buttons:
              - {title: Opening hours, goto: hours}
          hours:
            say: "We're open 9 to 5."
          next: menu
        """) == [f"{P}:9:3: error: 'next' is a key of a state, but it stands where the names of "
                 "states stand, so it looks mis-indented: indent it under state 'hours', to "
                 "column 5"]


def test_every_key_of_a_state_indented_too_little_is_reported_once():
    assert diagnostics("start: a\nstates:\n  a:\n  say: hi\n  end: true\n") == [
        f"{P}:{line}:3: error: '{key}' is a key of a state, but it stands where the names of "
        "states stand, so it looks mis-indented: indent it under state 'a', to column 5"
        for line, key in ((4, "say"), (5, "end"))]


def test_a_mis_indented_key_the_state_above_has_already_is_a_duplicate():
    assert only_error("start: a\nstates:\n  a:\n    say: hi\n    end: true\n  end: true\n") == (
        f"{P}:6:3: error: 'end' is a key of a state, but it stands where the names of states "
        "stand, so it looks mis-indented, and state 'a' above it already has end (line 5): "
        "remove one of them")


def test_a_key_of_a_state_before_any_state_is_mis_indented():
    assert only_error("start: a\nstates:\n  say: hi\n  a: {say: hi, end: true}\n") == (
        f"{P}:3:3: error: 'say' is a key of a state, but it stands where the names of states "
        "stand, so it looks mis-indented: indent it under the state it belongs to")


def test_a_key_of_a_state_at_the_top_of_the_file_is_mis_indented():
    assert f"{P}:4:1: error: 'end' is a key of a state, but it stands at the top level of the " \
           "flow, so it looks mis-indented: indent it under its state, inside states:" in \
           errors("start: a\nstates:\n  a: {say: hi}\nend: true\n")


def test_a_state_named_like_a_key_is_still_a_state():
    flow = make_flow("""\
        start: a
        states:
          a: {say: hi, next: end}
          end: {say: bye, end: true}
        """)
    assert list(flow.states) == ["a", "end"]


def test_a_regex_in_double_quotes_with_backslash_b_says_to_use_single_quotes():
    assert only_error("""\
        start: menu
        states:
          menu:
            say: "Type help for a person."
            on:
              - regex: "(?i)\\bhelp\\b"
                goto: handoff
          handoff: {escalate: support, no_agents: menu}
        """) == (f"{P}:6:21: error: regex in double quotes: YAML reads \\b there as a backspace, "
                 "so the regex cannot match what you meant; write it in single quotes, where \\b "
                 "stays as it is: '(?i)\\bhelp\\b'")


def test_a_doubled_backslash_in_double_quotes_is_a_fine_regex():
    make_flow("""\
        start: menu
        states:
          menu:
            say: hi
            on: [{regex: "(?i)\\\\bhelp\\\\b", goto: handoff}]
          handoff: {escalate: support, no_agents: menu}
        """)


def test_a_regex_escape_in_double_quotes_says_to_use_single_quotes():
    assert diagnostics("""\
        start: a
        states:
          a:
            ask: "Your code?"
            validate: {regex: "^\\d{6}$"}
            on_invalid: a
            next: a
        """) == [f"{P}:5:25: error: YAML syntax: \\d cannot be written inside double quotes, "
                 "where a backslash starts an escape: put the text in single quotes instead "
                 "(there backslashes stay as they are), or write the backslash twice: \\\\d"]


def regex_error(rule: str) -> str:
    """The one error of a flow whose rule (the text of an `on` item) is at line 6."""
    return only_error("start: a\nstates:\n  a:\n    say: hi\n    on:\n" + rule
                      + "\n    buttons: [{title: Bye, goto: b}]\n  b: {say: bye, end: true}\n")


@pytest.mark.parametrize("rule,col", [
    ("      - regex: '(?i)(help'\n        goto: a", 21),    # single quotes: inside them
    ("      - regex: 'it''s (help'\n        goto: a", 23),  # '' is one quote in the regex
    ("      - regex: (?i)(help\n        goto: a", 20),      # plain
    ('      - regex: "\\\\d \\x41 (help"\n        goto: a', 26),  # \\ and \x41 are escapes
    ("      - {regex: '(?i)(help', goto: a}", 22),          # in a flow mapping
])
def test_a_bad_regex_is_pointed_at_where_it_breaks(rule, col):
    found = regex_error(rule)
    assert found.startswith(f"{P}:6:{col}: error: bad regex '")
    assert found.endswith("': this ( is never closed: add a ) where the group ends, or write "
                          "\\( to match a parenthesis")


def test_a_bad_regex_folded_over_lines_points_at_its_start():
    found = only_error("start: a\nstates:\n  a:\n    say: hi\n    on:\n      - regex: 'a b\n"
                       "          (c'\n        goto: b\n  b: {say: bye, end: true}\n")
    assert found.startswith(f"{P}:6:16: error: bad regex 'a b (c': this ( is never closed")


@pytest.mark.parametrize("regex,col,plain", [
    ("a)", 18, "this ) closes nothing: remove it, or write \\) to match a parenthesis"),
    ("[abc", 17, "this [ is never closed: add a ] where the set of characters ends, or write \\[ "
                 "to match a bracket"),
    ("a**", 19, "two repeats in a row (like ** or ++): remove one, or write a backslash before "
                "the character to match it"),
    ("\\q", 17, "\\q is not an escape regexes know: remove the backslash, or write \\\\ to match a "
                "backslash"),
    ("[z-a]", 18, "the range z-a goes backwards: write the earlier character first, as in a-z"),
    ("a(?i)", 18, "(?i) and other flags must come at the very start of the regex"),
    ("a{3,1}", 19, "in {m,n} the first number must not be bigger than the second"),
])
def test_regex_problems_are_said_in_plain_words(regex, col, plain):
    assert regex_error(f"      - regex: '{regex}'\n        goto: a") == (
        f"{P}:6:{col}: error: bad regex '{regex}': {plain}")


def test_a_misspelt_variable_suggests_the_one_it_starts_with():
    assert only_error("""\
        start: ask_phone
        states:
          ask_phone:
            ask: "Your phone number?"
            save: phone
            next: thanks
          thanks:
            say: "We'll call {{ vars.phone_number }}."
            end: true
        """) == (f"{P}:8:25: error: variable 'phone_number' is never set by any state (set, save "
                 "or call save) (did you mean 'phone'?)")


def test_variables_set_by_rules_buttons_asks_and_calls_are_all_known():
    make_flow("""\
        start: menu
        intents:
          - regex: '([A-Z]{2}\\d{6})'
            set: {order_id: "{{ match[1] }}"}
            goto: lookup
        states:
          menu:
            say: "Hi {{ visitor.name or 'there' }}"
            buttons: [{title: Email us, goto: ask_mail, set: {topic: mail}}]
            on: [{keywords: [order], set: {topic: order}, goto: menu}]
          ask_mail: {ask: "Your email?", save: mail, next: lookup}
          lookup:
            call: {url: "/orders/{{ vars.order_id }}", save: order}
            on_error: done
            next: done
          done:
            say: "{{ vars.topic }} {{ vars.mail }} {{ vars.order.json.status }} {{ input }}"
            end: true
        """)


# --- escalate note --------------------------------------------------------------------------

NOTE_FLOW = """\
start: a
states:
  a:
    escalate: {queue: support, note: NOTE}
    no_agents: b
  b: {say: bye, end: true}
"""


def test_an_escalate_note_is_a_template_checked_like_any_text():
    make_flow(NOTE_FLOW.replace("NOTE", '"Asked for a refund of {{ visitor.name }}"'))
    assert errors(NOTE_FLOW.replace("NOTE", '"{{ vars.emial }}"')) == [
        f"{P}:4:42: error: variable 'emial' is never set by any state (set, save or call save)"]
    assert errors(NOTE_FLOW.replace("NOTE", '"{{ secrets.TOKEN }}"')) == [
        f"{P}:4:38: error: secrets can be used only inside call, not in the note of escalate "
        "in state 'a': they must never reach the visitor"]


@pytest.mark.parametrize("note,message", [
    ('""', "4:38: error: the note of escalate in state 'a' is empty: write the text, or remove "
           "the key"),
    ("[a, b]", "4:38: error: the note of escalate in state 'a' must be one text, not a list: the "
               "agent sees it as one line with the handoff"),
    ("true", "4:38: error: the note of escalate in state 'a' must be text, not true (put text "
             "in quotes)"),
])
def test_a_note_that_is_no_text_is_an_error(note, message):
    assert errors(NOTE_FLOW.replace("NOTE", note)) == [f"{P}:{message}"]


def test_a_note_on_the_state_says_it_belongs_inside_escalate():
    assert errors("""\
        start: a
        states:
          a:
            escalate: support
            note: "Wants a refund"
            no_agents: b
          b: {say: bye, end: true}
        """) == [f"{P}:5:5: error: unknown key 'note' in state 'a': note belongs inside "
                 'escalate, with the queue: escalate: {queue: support, note: "..."}']


# --- buttons that answer an ask -------------------------------------------------------------------

def test_a_button_without_goto_outside_an_ask_says_only_an_ask_may():
    assert errors("""\
        start: a
        states:
          a:
            say: "Pick"
            buttons: [{title: Yes}]
          b: {say: bye, end: true}
        """)[0] == (f"{P}:5:15: error: a button needs goto (only a button of a state with ask "
                    "may leave out goto: it then answers the question)")


@pytest.mark.parametrize("button,message", [
    ("{title: Maybe}", "the button 'Maybe' of state 'a' answers 'Maybe' (its title), which the "
                       "validator yes_no refuses"),
    ("{title: Yes, payload: jein}", "the button 'Yes' of state 'a' answers 'jein' (its payload), "
                                    "which the validator yes_no refuses"),
])
def test_an_answering_button_the_validator_refuses_is_an_error(button, message):
    assert errors(f"""\
        start: a
        settings: {{fallback_to: b}}
        states:
          a:
            ask: "Sure?"
            save: sure
            validate: yes_no
            buttons: [{{title: "No"}}, {button}]
            next: b
          b: {{say: bye, end: true}}
        """) == [f"{P}:8:30: error: {message}: change the answer, or give the button a goto to "
                 "go elsewhere without answering"]


# --- a validator's error message ---------------------------------------------------------

ERROR_FLOW = """\
    start: a
    settings: {fallback_to: b}
    states:
      a:
        ask: "Email?"
        save: email
        validate: VALIDATE
        next: b
      b: {say: bye, end: true}
    """


@pytest.mark.parametrize("validate", [
    "{email: true, error: 'Like ada@example.com, please.'}",
    "{phone: true, error: 'A phone number, please.'}",
    "{number: true, error: 'A number, please.'}",
    "{integer: true, error: 'A whole number, please.'}",
    "{yes_no: true, error: 'Yes or no, please.'}",
    "{regex: '^a', error: 'Starting with a, please.'}",
    "{choices: [a, b], error: 'a or b, please.'}",
    "{email: true, error: \"'{{ input }}' is no email, {{ visitor.name or 'friend' }}.\"}",
])
def test_every_validator_takes_an_error(validate):
    flow = make_flow(ERROR_FLOW.replace("VALIDATE", validate))
    assert flow.states["a"].validate.message is not None


@pytest.mark.parametrize("validate,message", [
    ('{email: true, error: ""}',
     "7:36: error: the error of validate in state 'a' is empty: write the text, or remove the key"),
    ("{phone: true, error: }",
     "7:36: error: the error of validate in state 'a' is empty: write the text, or remove the key"),
    ("{regex: '^a', error: '  '}",
     "7:36: error: the error of validate in state 'a' is empty: write the text, or remove the key"),
    ("{integer: true, error: [a, b]}",
     "7:38: error: the error of validate in state 'a' must be one text, not a list: the visitor "
     "gets it as one message when an answer is refused"),
    ("{choices: [a], error: {a: b}}",
     "7:37: error: the error of validate in state 'a' is a mapping: to give it per language, "
     "name the flow's languages at its top (locales: [en, de], the default first); otherwise "
     "write it as one text"),
    ("{yes_no: true, error: true}",
     "7:37: error: the error of validate in state 'a' must be text, not true (put text in "
     "quotes)"),
    ('{email: true, error: "{{ vars.nmae }}"}',
     "7:40: error: variable 'nmae' is never set by any state (set, save or call save)"),
    ('{email: "yes", error: Nope}',
     "7:23: error: email in validate must be true, not text: write validate: "
     '{email: true, error: "..."}, or validate: email for the default message'),
    ("{number, error: Nope}",
     "7:22: error: number in validate must be true, not nothing: write validate: "
     '{number: true, error: "..."}, or validate: number for the default message'),
    ("{email: true, phone: true}",
     "7:15: error: validate needs exactly one validator: one of email, phone, number, integer, "
     "yes_no, date, regex, choices, not both email and phone"),
    ("{error: Nope}",
     "7:15: error: validate needs exactly one validator: one of email, phone, number, integer, "
     'yes_no, date, regex, choices (like validate: {email: true, error: "..."})'),
    ("{emial: true, error: Nope}",
     "7:16: error: unknown key 'emial' in validate (did you mean 'email'?)"),
])
def test_a_validator_error_that_is_wrong_is_an_error_at_its_place(validate, message):
    assert errors(ERROR_FLOW.replace("VALIDATE", validate)) == [f"{P}:{message}"]


def test_a_bad_template_in_a_validator_error_is_an_error():
    assert only_error(ERROR_FLOW.replace("VALIDATE", '{email: true, error: "{{ vars.x"}')) == (
        f"{P}:7:36: error: bad template in the error of validate in state 'a': unexpected end "
        "of template, expected 'end of print statement'.")


HINT = ('error belongs inside validate, with the validator: validate: {email: true, error: '
        '"..."} (where a failed call goes is on_error)')


def test_an_error_on_the_state_says_it_belongs_inside_validate():
    assert errors(ERROR_FLOW.replace("VALIDATE", "email").replace(
        "    next: b", "    error: Nope\n        next: b")) == [
        f"{P}:8:5: error: unknown key 'error' in state 'a': {HINT}"]


def test_an_error_on_a_button_or_rule_says_it_belongs_inside_validate():
    assert errors("""\
        start: a
        states:
          a:
            say: hi
            buttons:
              - {title: x, goto: a, error: oops}
            on:
              - {keywords: [y], goto: a, error: oops}
        """) == [f"{P}:6:29: error: unknown key 'error' in a button: {HINT}",
                 f"{P}:8:34: error: unknown key 'error' in a rule in on of state 'a': {HINT}"]


@pytest.mark.parametrize(("text", "message"), [
    ("start: a\nstates:\n  a:\n    say: hi\n    return: true\n"
     "    buttons: [{title: B, goto: b}]\n  b: {say: bye, end: true}\n",
     "5:5: error: unknown key 'return' in state 'a': return belongs on a button or a rule, next "
     "to its goto: - {title: Change my name, goto: ask_name, return: true}"),
    ("start: a\nsettings: {fallback_to: b}\nstates:\n  a:\n    ask: day?\n    save: day\n"
     "    validate: date\n    future: true\n    next: b\n  b: {say: bye, end: true}\n",
     "8:5: error: unknown key 'future' in state 'a': future belongs inside validate, with date: "
     "validate: {date: true, future: true}"),
    ("start: a\ntime_zone: Europe/Berlin\nstates:\n  a: {say: bye, end: true}\n",
     "2:1: error: 'time_zone' is a setting, but it stands at the top level of the flow: indent "
     "it under settings:"),
    ("start: a\nsettings: {fallback_to: b}\nstates:\n  a:\n    ask: day?\n    save: day\n"
     "    validate: {future: true, weekday: true}\n    next: b\n  b: {say: bye, end: true}\n",
     "7:15: error: validate needs exactly one validator: one of email, phone, number, integer, "
     "yes_no, date, regex, choices (future and weekday go with date: validate: {date: true, "
     "future: true})"),
])
def test_a_key_of_the_new_constructs_in_the_wrong_place_says_where_it_belongs(text, message):
    assert only_error(text) == f"{P}:{message}"
