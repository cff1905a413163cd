"""How visitor input is matched in a waiting state: buttons, intents, `on` rules, `else`."""

import pytest

from bots.matching import has_phrase, normalize

from .helpers import Chat, make_flow

RULES = """\
start: menu
intents:
  - keywords: [agent, "real person"]
    goto: human
  - keywords: [order]
    say: "(intent)"
    goto: orders
states:
  menu:
    say: "How can I help?"
    buttons:
      - {title: Order, goto: button_target}
    on:
      - keywords: [order, "where is"]
        say: "(on rule)"
        goto: orders
      - regex: '\\b([A-Z]{2})(\\d{6})\\b'
        set: {prefix: "{{ match[1] }}", number: "{{ match[2] }}", whole: "{{ match[0] }}"}
        goto: lookup
      - when: "input | length > 40"
        say: "That's a long one."
        goto: long
      - keywords: [café, "good morning"]
        goto: coffee
    else:
      say: "Sorry?"
  button_target: {say: "button", end: true}
  orders: {say: "orders", end: true}
  lookup: {say: "lookup {{ vars.prefix }}-{{ vars.number }} ({{ vars.whole }})", end: true}
  long: {say: "long", end: true}
  coffee: {say: "coffee", end: true}
  human: {escalate: support, no_agents: menu}
"""


@pytest.fixture
def chat():
    return Chat(make_flow(RULES))


def test_a_typed_button_title_wins_over_intents_and_rules(chat):
    assert chat.say("ORDER") == ["button"]


def test_intents_are_tried_before_the_states_on_rules(chat):
    assert chat.say("my order please") == ["(intent)", "orders"]


def test_rule_say_comes_before_the_target_states_messages(chat):
    assert chat.say("where is it?") == ["(on rule)", "orders"]


@pytest.mark.parametrize("text", ["border control", "orders", "reorder", "where island"])
def test_keywords_match_whole_words_only(chat, text):
    assert chat.say(text) == ["Sorry?"]


@pytest.mark.parametrize("text", ["Cafe?", "CAFÉ please", "un café, merci", "Good   MORNING!"])
def test_keywords_ignore_case_accents_and_punctuation(chat, text):
    assert chat.say(text) == ["coffee"]


def test_keyword_phrases_match_as_a_sequence_of_words(chat):
    chat.say("I need a REAL person now")
    assert chat.state == "human"
    chat = Chat(make_flow(RULES))
    assert chat.say("a person who is real") == ["Sorry?"]


def test_regex_groups_are_available_as_match(chat):
    assert chat.say("it is AB123456, thanks") == ["lookup AB-123456 (AB123456)"]
    assert chat.vars == {"prefix": "AB", "number": "123456", "whole": "AB123456"}


def test_regex_is_searched_on_the_original_text_case(chat):
    assert chat.say("ab123456") == ["Sorry?"]


def test_when_rule_can_use_the_input(chat):
    assert chat.say("x" * 41) == ["That's a long one.", "long"]


def test_any_rule_always_matches():
    chat = Chat(make_flow("""\
        start: a
        states:
          a:
            say: "Say anything"
            on:
              - keywords: [stop]
                goto: stop
              - any: true
                set: {said: "{{ input }}"}
                goto: echo
          echo: {say: "You said {{ vars.said }}", end: true}
          stop: {say: stop, end: true}
        """))
    assert chat.say("hello there") == ["You said hello there"]


def test_else_reply_repeats_with_the_buttons(chat):
    for _ in range(3):
        chat.say("gibberish")
        assert chat.turn.outputs == [{"type": "message", "text": "Sorry?",
                                      "buttons": [{"title": "Order", "payload": "button_target"}]}]
        assert chat.state == "menu"


def test_without_else_a_default_reply_carries_the_buttons():
    chat = Chat(make_flow("""\
        start: a
        states:
          a:
            say: "Pick"
            buttons: [{title: Done, goto: b}]
          b: {say: bye, end: true}
        """))
    chat.say("what")
    assert chat.turn.outputs == [{"type": "message", "text": "Sorry, I didn't catch that.",
                                  "buttons": [{"title": "Done", "payload": "b"}]}]


def test_else_with_goto_moves_on():
    chat = Chat(make_flow("""\
        start: a
        states:
          a:
            say: "Yes or no?"
            on:
              - keywords: ["yes"]
                goto: yes
            else: {say: "Let's start over.", goto: b}
          yes: {say: yes, end: true}
          b: {say: "Menu", buttons: [{title: Bye, goto: yes}]}
        """))
    assert chat.say("purple") == ["Let's start over.", "Menu"]
    assert chat.state == "b"


def test_else_with_goto_does_not_offer_the_old_states_buttons():
    chat = Chat(make_flow("""\
        start: a
        states:
          a:
            say: "Pick"
            buttons: [{title: Old, goto: b}]
            else: {say: "Let's start over.", goto: b}
          b: {say: "Menu", buttons: [{title: New, goto: c}]}
          c: {say: bye, end: true}
        """))
    chat.say("purple")
    assert chat.turn.outputs == [
        {"type": "message", "text": "Let's start over."},
        {"type": "message", "text": "Menu", "buttons": [{"title": "New", "payload": "c"}]},
    ]


FALLBACK = """\
start: a
settings: {{max_fallbacks: {n}, fallback_to: help}}
states:
  a:
    say: "Pick"
    buttons: [{{title: Done, goto: bye}}]
    else: {{say: "Sorry?"}}
  help: {{say: "Let me get help", buttons: [{{title: Bye, goto: bye}}]}}
  bye: {{say: bye, end: true}}
"""


def test_the_max_fallbacks_th_miss_goes_to_fallback_to_without_the_else_reply():
    chat = Chat(make_flow(FALLBACK.format(n=2)))
    assert chat.say("x") == ["Sorry?"]
    assert chat.say("y") == ["Let me get help"]
    assert chat.state == "help"


def test_max_fallbacks_of_three_allows_two_else_replies():
    chat = Chat(make_flow(FALLBACK.format(n=3)))
    assert chat.say("x") == ["Sorry?"]
    assert chat.say("y") == ["Sorry?"]
    assert chat.say("z") == ["Let me get help"]


def test_a_match_resets_the_count_of_misses():
    chat = Chat(make_flow("""\
        start: a
        settings: {max_fallbacks: 2, fallback_to: help}
        states:
          a:
            say: "Pick"
            on:
              - keywords: [again]
                goto: a
            buttons: [{title: Done, goto: bye}]
            else: {say: "Sorry?"}
          help: {say: "Let me get help", buttons: [{title: Bye, goto: bye}]}
          bye: {say: bye, end: true}
        """))
    assert chat.say("x") == ["Sorry?"]
    assert chat.say("again") == ["Pick"]
    assert chat.say("y") == ["Sorry?"]


def test_without_fallback_to_the_else_reply_repeats_forever():
    chat = Chat(make_flow("""\
        start: a
        settings: {max_fallbacks: 2}
        states:
          a:
            say: "Pick"
            buttons: [{title: Done, goto: bye}]
            else: {say: "Sorry?"}
          bye: {say: bye, end: true}
        """))
    for _ in range(5):
        assert chat.say("nonsense") == ["Sorry?"]


# --- normalize and has_phrase ----------------------------------------------------------------


@pytest.mark.parametrize("text,folded", [
    ("  Où est   MA commande?! ", "ou est ma commande"),
    ("Straße", "strasse"),
    ("ＡＢＣ", "abc"),
    ("e-mail_address", "e mail address"),
    ("...", ""),
])
def test_normalize_folds_case_accents_and_punctuation(text, folded):
    assert normalize(text) == folded


def test_has_phrase_needs_whole_words():
    assert has_phrase("where is my order", "my order")
    assert not has_phrase("where is my border", "order")
    assert not has_phrase("anything", "")
