"""Flows in several languages: one graph, texts per locale, the visitor's locale picks."""

import datetime

import pytest

from bots import engine
from bots.locales import canonical, pick

from .helpers import Chat, diagnostics, errors, make_flow, warnings

P = "flows/test.yaml"

BILINGUAL = """\
locales: [en, de]
start: menu
settings:
  fallback_to: human
intents:
  - keywords: {en: [agent, person], de: [mitarbeiter, mensch]}
    goto: human
  - keywords: [deutsch]
    locale: de
    goto: menu
  - keywords: [english]
    locale: en
    goto: menu
states:
  menu:
    say:
      en: "How can I help, {{ visitor.name or 'there' }}?"
      de: "Wie kann ich helfen, {{ visitor.name or 'du' }}?"
    buttons:
      - title: {en: Track my order, de: Bestellung verfolgen}
        goto: ask_email
      - {title: Deutsch, locale: de, goto: menu}
    on:
      - keywords: {en: [thanks], de: [danke]}
        say: {en: "You're welcome!", de: "Gern geschehen!"}
        goto: menu
  ask_email:
    ask: {en: "Your email?", de: "Ihre E-Mail-Adresse?"}
    save: email
    validate: email
    next: ask_size
  ask_size:
    ask: {en: "Which size?", de: "Welche Größe?"}
    save: size
    validate:
      choices:
        - {en: small, de: klein}
        - {en: large, de: groß}
      error: {en: "Small or large?", de: "Klein oder groß?"}
    buttons:
      - title: {en: small, de: klein}
      - title: {en: large, de: groß}
    next: done
  done:
    say: {en: "Noted: {{ vars.size }}.", de: "Notiert: {{ vars.size | translate }}."}
    end: true
  human:
    escalate: {queue: support, note: "Wants a person ({{ locale }})"}
    no_agents: sorry
  sorry:
    say: {en: "Nobody is here.", de: "Niemand ist da."}
    end: true
"""


def chat(locale=None, **visitor):
    if locale is not None:
        visitor["locale"] = locale
    return Chat(make_flow(BILINGUAL), engine.Context(visitor=visitor))


@pytest.mark.parametrize(("tag", "expected"), [
    ("de", "de-DE"[:2]), ("DE", "de"), ("de-AT", "de"), ("de_CH", "de"), ("en-GB", "en"),
    ("fr", "en"), (None, "en"), ("", "en"), ("not a tag!", "en"), ("x" * 40, "en"),
])
def test_the_visitors_locale_picks_by_tag_then_language_then_the_default(tag, expected):
    assert pick(tag, ("en", "de")) == expected


def test_a_region_is_matched_by_language_when_it_has_no_texts_of_its_own():
    assert pick("pt-PT", ("en", "pt-BR")) == "pt-BR"
    assert pick("de-CH", ("de-DE", "de-CH")) == "de-CH"
    assert pick("de", ("en", "de-DE", "de-CH")) == "de-DE"


def test_tags_are_written_in_their_usual_case():
    assert canonical("zh_hant_tw") == "zh-Hant-TW"
    assert canonical("es-419") == "es-419"
    assert canonical("EN") == "en"
    assert canonical("e") is None and canonical(3) is None and canonical("de--ch") is None


def test_a_german_visitor_reads_german_and_an_english_one_english():
    german = chat("de-AT", name="Eva")
    assert german.messages == ["Wie kann ich helfen, Eva?"]
    assert [b["title"] for b in german.buttons] == ["Bestellung verfolgen", "Deutsch"]
    english = chat("en-US")
    assert english.messages == ["How can I help, there?"]
    assert [b["title"] for b in english.buttons] == ["Track my order", "Deutsch"]
    # the payloads are one for every language, so a click means the same
    assert german.buttons[0]["payload"] == english.buttons[0]["payload"]


def test_a_visitor_whose_language_the_flow_lacks_gets_the_default():
    assert chat("fr-FR").messages == ["How can I help, there?"]
    assert chat().messages == ["How can I help, there?"]


def test_keywords_match_in_the_visitors_language_and_plain_ones_in_every_language():
    german = chat("de")
    german.say("danke schön")
    assert german.messages == ["Gern geschehen!", "Wie kann ich helfen, du?"]
    english = chat("en")
    english.say("danke")  # German keywords are not English ones
    assert english.messages[0] == "Sorry, I didn't catch that."
    english = chat("en")
    english.say("mitarbeiter bitte")
    assert english.state == "menu"  # a miss, not the German intent
    german = chat("de")
    german.say("einen Mitarbeiter bitte")
    assert german.outputs_of("escalate")[0]["note"] == "Wants a person (de)"


def test_a_typed_button_title_is_understood_in_any_language():
    english = chat("en")
    english.say("Bestellung verfolgen")
    assert english.state == "ask_email" and english.messages == ["Your email?"]


def test_the_bots_own_messages_follow_the_conversations_language():
    german = chat("de")
    german.say("was?")
    assert german.messages[0] == "Entschuldigung, das habe ich nicht verstanden."
    german.click("Bestellung verfolgen")
    german.say("keine adresse")
    assert german.messages[0].startswith("Das sieht nicht nach einer E-Mail-Adresse aus")


def test_choices_are_stored_in_the_default_language_whatever_the_visitor_typed():
    german = chat("de")
    german.click("Bestellung verfolgen")
    german.say("eva@example.com")
    assert [b["title"] for b in german.buttons] == ["klein", "groß"]
    german.say("mittel")
    assert german.messages == ["Klein oder groß?", "Welche Größe?"]
    german.click("groß")
    assert german.vars["size"] == "large"
    assert german.messages == ["Notiert: groß."]  # `| translate` says it in German


def test_a_button_or_a_rule_switches_the_language_for_the_rest_of_the_conversation():
    english = chat("en")
    english.click("Deutsch")
    assert english.messages == ["Wie kann ich helfen, du?"]
    english.say("english please")
    assert english.messages == ["How can I help, there?"]
    english.say("deutsch")
    english.click("Bestellung verfolgen")
    assert english.messages == ["Ihre E-Mail-Adresse?"]
    assert english.stored["locale"] == "de"


def test_a_rule_that_only_switches_language_stays_and_says_the_state_again():
    flow = make_flow(BILINGUAL.replace("  - keywords: [deutsch]\n    locale: de\n    goto: menu",
                                       "  - keywords: [deutsch]\n    locale: de"))
    conversation = Chat(flow, engine.Context(visitor={"locale": "en"}))
    conversation.click("Track my order")
    conversation.say("Deutsch")  # the whole message: not taken as the answer
    assert conversation.messages == ["Ihre E-Mail-Adresse?"] and conversation.state == "ask_email"
    free = make_flow("""\
        locales: [en, de]
        start: ask
        intents:
          - {keywords: [Deutsch], locale: de}
        states:
          ask:
            ask: {en: "What happened?", de: "Was ist passiert?"}
            save: story
            next: done
          done: {say: {en: "Noted.", de: "Notiert."}, end: true}
        """)
    story = Chat(free, engine.Context(visitor={"locale": "en"}))
    story.say("my German friend said Deutsch is hard")  # in a sentence it is the answer
    assert story.vars["story"].startswith("my German friend") and story.messages == ["Noted."]


def test_a_switch_stays_until_the_visitors_own_locale_changes():
    conversation = chat("en")
    conversation.click("Deutsch")
    conversation.say("danke")  # same hello locale: the switch holds
    assert conversation.messages[0] == "Gern geschehen!"
    # the site's page is reloaded in English: its hello carries the new locale
    conversation.context = engine.Context(visitor={"locale": "en-GB"})
    conversation.say("thanks")
    assert conversation.messages[0] == "You're welcome!"


GERMAN_ONLY = """\
start: a
states:
  a: {say: Hallo, buttons: [{title: Weiter, goto: b}]}
  b: {say: Tschüss, end: true}
"""


@pytest.mark.parametrize(("top", "visitor", "expected"), [
    ("", "de", "Sorry, I didn't catch that."),  # no locales: unchanged, English built-ins
    ("locales: [de]\n", "en", "Entschuldigung, das habe ich nicht verstanden."),
])
def test_a_one_language_flow_names_its_language_for_the_built_in_messages(top, visitor,
                                                                          expected):
    conversation = Chat(make_flow(top + GERMAN_ONLY), engine.Context(visitor={"locale": visitor}))
    conversation.say("?")
    assert conversation.messages[0] == expected
    assert ("locale" in conversation.stored) == bool(top)


# --- the checker ---------------------------------------------------------------------------


def test_a_text_missing_in_one_language_is_an_error_at_its_line():
    broken = BILINGUAL.replace('      de: "Wie kann ich helfen, {{ visitor.name or \'du\' }}?"\n',
                               "")
    assert errors(broken) == [f"{P}:17:7: error: say of state 'menu' has no text in 'de' (it "
                              "has en): add de: ... under it"]


def test_a_button_title_or_keywords_missing_a_language_is_an_error_at_its_line():
    broken = BILINGUAL.replace("{en: Track my order, de: Bestellung verfolgen}",
                               "{en: Track my order}")
    broken = broken.replace("{en: [agent, person], de: [mitarbeiter, mensch]}",
                            "{de: [mitarbeiter, mensch]}")
    assert errors(broken) == [
        f"{P}:6:15: error: keywords has no text in 'en' (it has de): add en: ... under it",
        f"{P}:20:16: error: title has no text in 'de' (it has en): add de: ... under it",
    ]


def test_a_locale_the_flow_does_not_name_is_an_error_with_a_hint():
    assert errors(BILINGUAL.replace("de: \"Ihre E-Mail", "fr: \"Ihre E-Mail")) == [
        f"{P}:28:10: error: ask of state 'ask_email' has no text in 'de' (it has en): add "
        "de: ... under it",
        f"{P}:28:30: error: 'fr' in ask of state 'ask_email' is not one of the flow's locales: "
        "add it to locales at the top (en, de), or remove this text",
    ]
    assert errors(BILINGUAL.replace("de: \"Ihre E-Mail", "DE: \"Ihre E-Mail")) == []
    # a likely typo is the one mistake there, not also a missing German text
    for typo in ("deu", "ed"):
        assert errors(BILINGUAL.replace("de: \"Ihre E-Mail", f"{typo}: \"Ihre E-Mail")) == [
            f"{P}:28:30: error: '{typo}' in ask of state 'ask_email' is not one of the flow's "
            "locales (did you mean 'de'?)"]


def test_a_region_the_flow_names_for_a_language_is_suggested_once_per_text():
    found = errors(BILINGUAL.replace("locales: [en, de]", "locales: [en, de_DE]"))
    assert f"{P}:28:30: error: 'de' in ask of state 'ask_email' is not one of the flow's " \
           "locales (did you mean 'de-DE'? Or write 'de' in locales at the top instead: it " \
           "serves every de-... visitor)" in found
    assert not any("has no text in" in e for e in found)


def test_a_wrong_list_of_locales_is_the_one_error_not_each_text():
    assert errors(BILINGUAL.replace("locales: [en, de]", "locales: [en, german]")) == [
        f"{P}:1:15: error: 'german' in locales is not a language tag: write one like en, de, "
        "de-CH or pt-BR (BCP 47)"]


def test_a_choice_given_once_in_a_flow_of_languages_is_a_warning():
    once = BILINGUAL.replace("- {en: large, de: groß}", "- large").replace(
        "- title: {en: large, de: groß}", "- title: {en: large, de: large}")
    assert warnings(once) == [
        f"{P}:38:11: warning: a choice is one text for every language, so every visitor reads "
        "it as written: if it needs translating, give it per language ({en: ..., de: ...})"]


def test_missed_compared_with_a_value_it_never_has_is_an_error():
    assert errors("""\
        start: h
        states:
          h: {escalate: support, no_agents: o}
          o:
            next:
              - {when: "missed == 'left-queue'", goto: b}
              - goto: b
          b: {say: bye, end: true}
        """) == [f"{P}:6:28: error: missed is never 'left-queue' in when: it is one of "
                 "no_agents, left_queue, max_wait (or empty) (did you mean 'left_queue'?)"]


def test_texts_per_language_need_the_flows_locales():
    assert errors("""\
        start: a
        states:
          a: {say: {en: Hi, de: Hallo}, end: true}
        """) == [f"{P}:3:12: error: say of state 'a' is a mapping: to give it per language, name "
                 "the flow's languages at its top (locales: [en, de], the default first); "
                 "otherwise write it as one text"]


def test_one_text_for_every_language_is_a_warning_unless_it_has_no_words():
    found = warnings(BILINGUAL.replace('say: {en: "Nobody is here.", de: "Niemand ist da."}',
                                       'say: "Nobody is here."')
                     .replace('say: {en: "Noted: {{ vars.size }}.", de: "Notiert: '
                              '{{ vars.size }}."}', 'say: "{{ vars.size }}!"'))
    assert found == [f"{P}:51:10: warning: say of state 'sorry' is one text for every language, "
                     "so every visitor reads it as written: if it needs translating, give it "
                     "per language ({en: ..., de: ...})"]


def test_fallback_locale_lets_a_draft_translation_deploy_with_warnings():
    draft = BILINGUAL.replace("locales: [en, de]", "locales: [en, de, fr]").replace(
        "  fallback_to: human", "  fallback_to: human\n  fallback_locale: en")
    assert errors(draft) == []
    found = warnings(draft)
    assert f"{P}:18:7: warning: say of state 'menu' has no text in 'fr' (it has de, en): " \
           "visitors in 'fr' read the 'en' one (fallback_locale)" in found
    assert any("the bot's own messages" in w and "visitors in fr get them in English" in w
               for w in found)
    french = Chat(make_flow(draft), engine.Context(visitor={"locale": "fr-CA"}))
    assert french.messages == ["How can I help, there?"]


@pytest.mark.parametrize(("locales", "message"), [
    ("locales: []", "2:10: error: locales must be a list of languages, the default first (like "
                    "locales: [en, de]), not an empty list"),
    ("locales: [en, german!]", "2:15: error: 'german!' in locales is not a language tag: "
                               "write one like en, de, de-CH or pt-BR (BCP 47)"),
    ("locales: [en, de, DE]", "2:19: error: 'de' is twice in locales"),
])
def test_a_bad_list_of_locales_is_an_error_at_its_place(locales, message):
    text = f"start: a\n{locales}\nstates:\n  a: {{say: hi, end: true}}\n"
    assert f"{P}:{message}" in [d for d in diagnostics(text) if "error" in d]


def test_a_switch_to_a_language_the_flow_lacks_is_an_error():
    assert errors(BILINGUAL.replace("locale: de\n    goto: menu", "locale: fr\n    goto: menu")
                  ) == [f"{P}:9:13: error: locale 'fr' is not one of the flow's locales (en, de)"]


def test_a_choice_that_is_also_another_choices_text_is_an_error():
    clash = BILINGUAL.replace("- {en: large, de: groß}", "- {en: large, de: small}")
    assert f"{P}:38:11: error: the choice 'small' (de) is also the text of another choice (en) " \
           "(line 37): the bot could not tell which one the visitor meant; give one of them " \
           "other words" in errors(clash)


def test_an_answering_button_is_checked_in_every_language():
    broken = BILINGUAL.replace("- title: {en: large, de: groß}", "- title: {en: large, de: riesig}")
    assert errors(broken) == [
        f"{P}:42:9: error: the button 'riesig' of state 'ask_size' answers 'riesig' (its "
        "title), "
        "which the validator choices refuses: change the answer, or give the button a goto to "
        "go elsewhere without answering"]


def test_two_buttons_may_not_share_a_title_in_any_language():
    clash = BILINGUAL.replace("- {title: Deutsch, locale: de, goto: menu}",
                              "- {title: {en: Deutsch, de: Bestellung verfolgen}, goto: menu}")
    assert f"{P}:22:17: error: two buttons of state 'menu' are titled 'Bestellung verfolgen' " \
           "(first at line 20)" in errors(clash)


def test_an_unknown_time_zone_is_an_error_with_a_suggestion():
    assert errors("""\
        start: a
        settings: {time_zone: Europe/Berln}
        states:
          a: {say: hi, end: true}
        """) == [f"{P}:2:23: error: unknown time_zone 'Europe/Berln' (did you mean "
                 "'Europe/Berlin'?)"]


def test_dates_are_read_and_written_as_the_visitors_region_does():
    flow = make_flow("""\
        locales: [en, de]
        start: ask
        settings: {fallback_to: done}
        states:
          ask:
            ask: {en: "Which day?", de: "Welcher Tag?"}
            save: day
            validate: date
            next: done
          done: {say: {en: "{{ vars.day | date }}", de: "{{ vars.day | date }}"}, end: true}
        """)
    today = datetime.date(2026, 12, 1)
    for tag, typed, said in (("en-GB", "31/12", "Thursday, 31 December 2026"),
                             ("en-US", "12/31", "Thursday, December 31, 2026"),
                             ("de-CH", "31.12.", "Donnerstag, 31. Dezember 2026")):
        conversation = Chat(flow, engine.Context(visitor={"locale": tag}, today=today))
        conversation.say(typed)
        assert conversation.messages == [said], tag


# --- what a hostile run found ----------------------------------------------------------------


def test_a_date_button_is_checked_the_same_on_every_day():
    # "Tomorrow" is a Saturday on Fridays, and "24.12." is today on 24 December: neither may
    # make a flow valid on one day and refused on another
    flow = """\
        start: ask
        settings: {fallback_to: done}
        states:
          ask:
            ask: "Which day?"
            save: day
            validate: {date: true, future: true, weekday: true}
            buttons: [{title: Tomorrow}, {title: "24.12."}]
            next: done
          done: {say: "{{ vars.day }}", end: true}
        """
    assert errors(flow) == []
    assert errors(flow.replace('{title: "24.12."}', '{title: "31.02."}')) == [
        f"{P}:8:34: error: the button '31.02.' of state 'ask' answers '31.02.' (its title), "
        "which the validator date refuses: change the answer, or give the button a goto to go "
        "elsewhere without answering"]


def test_fallback_locale_serves_keywords_too():
    flow = make_flow("""\
        locales: [en, de]
        start: menu
        settings: {fallback_locale: en}
        intents:
          - {keywords: {en: [help]}, goto: helped}
        states:
          menu: {say: {en: Hi, de: Hallo}, buttons: [{title: {en: Bye, de: Tschüss}, goto: done}]}
          helped: {say: {en: Helped, de: Geholfen}, end: true}
          done: {say: {en: Bye, de: Tschüss}, end: true}
        """)
    german = Chat(flow, engine.Context(visitor={"locale": "de"}))
    german.say("help")
    assert german.messages == ["Geholfen"]


def test_a_return_to_the_question_the_visitor_is_at_is_that_question_once():
    flow = make_flow("""\
        start: ask_name
        intents:
          - {keywords: [change], goto: ask_email, return: true}
        settings: {fallback_to: done}
        states:
          ask_name: {ask: "Name?", save: name, next: ask_email}
          ask_email: {ask: "Email?", save: email, validate: email, next: done}
          done: {say: "Done {{ vars.email }}", end: true}
        """)
    chat = Chat(flow)
    chat.say("Ada")
    chat.say("change")
    chat.say("ada@example.com")
    assert chat.messages == ["Done ada@example.com"]


def test_the_same_locale_written_otherwise_keeps_a_switch():
    conversation = chat("en")
    conversation.click("Deutsch")
    conversation.context = engine.Context(visitor={"locale": "EN"})
    conversation.say("danke")
    assert conversation.messages[0] == "Gern geschehen!"


@pytest.mark.parametrize(("text", "message"), [
    ('say: ""', "5:10: error: say of state 'a' is empty: write the text, or remove the key"),
    ('say: {en: "", de: Hallo}', "5:15: error: say of state 'a' (en) is empty: write the text, "
                                 "or remove the key"),
    ('say: {en: {x: Hi}, de: Hallo}', "5:15: error: say of state 'a' (en) must be text, not a "
                                      "mapping: under a language comes its text"),
    ("say: {en: Hi, de: Hallo}\n    buttons: [{title: {en: '', de: Eins}, goto: b}]",
     "6:28: error: title (en) of a button is empty: write what the button says"),
])
def test_empty_and_nested_texts_are_errors(text, message):
    flow = (f"locales: [en, de]\nstart: a\nstates:\n  a:\n    {text}\n    end: true\n"
            if "buttons" not in text else
            f"locales: [en, de]\nstart: a\nstates:\n  a:\n    {text}\n"
            "  b: {say: {en: Bye, de: Tschüss}, end: true}\n")
    assert f"{P}:{message}" in errors(flow)


def test_tags_and_time_zones_are_read_strictly():
    assert canonical("en-US-u-nu-thai") == "en-US-u-nu-thai"
    assert errors("start: a\nsettings: {time_zone: localtime}\nstates:\n"
                  "  a: {say: hi, end: true}\n")[0].startswith(
        f"{P}:2:23: error: unknown time_zone 'localtime'")


def test_a_restart_after_an_edit_forgets_why_nobody_came():
    turn = engine.no_agents(make_flow("""\
        start: h
        states:
          h: {escalate: support, no_agents: o}
          o: {say: "{{ missed }}", buttons: [{title: again, goto: h}]}
        """), engine.new_stored(make_flow("start: h\nstates:\n  h: {escalate: support, "
                                          "no_agents: o}\n  o: {say: x, end: true}\n")),
        why="left_queue")
    assert turn.stored["missed"] == "left_queue"
    edited = make_flow("start: n\nstates:\n  n: {say: '[{{ missed }}]', buttons: "
                       "[{title: again, goto: e}]}\n  e: {say: bye, end: true}\n")
    conversation = Chat(edited)
    conversation.turn = engine.Turn({**turn.stored, "state": "gone"})
    conversation.say("hi")
    assert conversation.messages[-1] == "[]" and "missed" not in conversation.stored
