"""`return: true`: change one answer before a confirmation and come back to it."""

from .helpers import Chat, make_flow, warnings

P = "flows/test.yaml"

BOOKING = """\
start: ask_name
settings:
  fallback_to: human
intents:
  - keywords: [agent]
    goto: human
  - keywords: [change my email]
    goto: ask_email
    return: true
states:
  ask_name:
    ask: "Your name?"
    save: name
    next: ask_email
  ask_email:
    ask: "Your email?"
    save: email
    validate: email
    next: ask_bike
  ask_bike:
    ask: "Which bike?"
    save: bike
    next: confirm
  confirm:
    say: "{{ vars.name }}, {{ vars.email }}, {{ vars.bike }}. Book it?"
    buttons:
      - {title: Book it, goto: booked}
      - {title: Change the name, goto: ask_name, return: true}
      - {title: Change the bike, goto: ask_bike, return: true}
      - {title: Start over, goto: ask_name}
  booked: {say: "Booked.", end: true}
  human:
    escalate: support
    no_agents: booked
"""


def filled() -> Chat:
    chat = Chat(make_flow(BOOKING))
    chat.say("Eva")
    chat.say("eva@example.com")
    chat.say("Gazelle")
    assert chat.messages == ["Eva, eva@example.com, Gazelle. Book it?"]
    return chat


def test_an_edit_comes_back_to_the_confirmation_instead_of_going_on():
    chat = filled()
    chat.click("Change the name")
    assert chat.messages == ["Your name?"]
    chat.say("Eva Braun")
    assert chat.messages == ["Eva Braun, eva@example.com, Gazelle. Book it?"]
    assert chat.state == "confirm" and "return_to" not in chat.stored


def test_without_return_the_flow_goes_on_as_written():
    chat = filled()
    chat.click("Start over")
    chat.say("Eva B")
    assert chat.messages == ["Your email?"]


def test_an_invalid_answer_in_the_detour_is_asked_again_and_still_comes_back():
    chat = filled()
    chat.say("change my email")
    assert chat.messages == ["Your email?"]
    chat.say("not an address")
    assert chat.state == "ask_email" and chat.stored["return_to"] == "confirm"
    chat.say("eva@example.org")
    assert chat.messages == ["Eva, eva@example.org, Gazelle. Book it?"]


def test_leaving_the_detour_another_way_forgets_where_it_came_from():
    chat = filled()
    chat.say("change my email")
    chat.say("agent")  # not an address: the intent takes it
    assert chat.outputs_of("escalate") and "return_to" not in chat.stored


def test_a_return_that_reaches_no_question_is_a_warning():
    flow = BOOKING.replace("{title: Change the bike, goto: ask_bike, return: true}",
                           "{title: Change the bike, goto: booked, return: true}")
    assert f"{P}:29:48: warning: return: true comes back after the next question answered, " \
           "and from 'booked' the bot asks none before it ends at 'booked': lead the goto to " \
           "a state with ask, or remove return" in warnings(flow)


def test_a_detour_whose_origin_an_edit_removed_goes_on_as_the_flow_says():
    chat = filled()
    chat.click("Change the bike")
    edited = make_flow(BOOKING.replace("  confirm:", "  check:").replace("next: confirm",
                                                                         "next: check"))
    chat.flow = edited
    chat.say("Cube")
    assert chat.state == "check" and "return_to" not in chat.stored
