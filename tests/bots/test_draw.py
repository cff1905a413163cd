"""Drawing flows: a big flow stays readable, in topics, with whole conditions and placeholders."""

import re
import shutil

import pytest

from bots.draw import placeholders, to_dot, to_svg, topics

from .helpers import make_flow

# A bicycle repair shop, 40 states, written as a support lead would: one topic per name prefix.
BIKES = make_flow("""\
    name: bikes
    description: Bicycle repair shop - booking, repair status, a mechanic, questions
    start: greet
    settings:
      fallback_to: help_offer
    intents:
      - keywords: [mechanic, person, human]
        goto: mechanic_queue
      - regex: '(?i)\\b(R-\\d{5})\\b'
        set: {ticket: "{{ match[1] | upper }}"}
        goto: status_lookup
    states:
      greet:
        say: "Hi {{ visitor.name or 'there' }}! Welcome to Spoke & Chain."
        next: menu
      menu:
        say: "What can I do for you?"
        buttons:
          - {title: Book a repair, goto: booking_start}
          - {title: Where is my bike?, goto: status_ask}
          - {title: Prices and opening hours, goto: faq_menu}
          - {title: Talk to a mechanic, goto: mechanic_queue}
      booking_start:
        say: "Let's book your repair."
        next: booking_kind
      booking_kind:
        ask: "What kind of bike is it?"
        save: bike_kind
        validate: {choices: [City bike, Road bike, Mountain bike, E-bike, Cargo bike]}
        on_invalid: help_offer
        next:
          - when: "vars.bike_kind == 'E-bike'"
            goto: booking_ebike
          - when: "vars.bike_kind == 'Cargo bike'"
            goto: booking_cargo
          - goto: booking_problem
      booking_ebike:
        say: "E-bikes need our e-bike mechanic; we'll book a longer slot."
        set: {slot: long}
        next: booking_problem
      booking_cargo:
        say: "Cargo bikes are repaired in our back yard workshop."
        set: {slot: yard}
        next: booking_problem
      booking_problem:
        ask: "What's wrong with your {{ vars.bike_kind | lower }}?"
        save: problem
        next: booking_date
      booking_date:
        ask: "Which day would you like to bring it in? (for example 2024-06-03)"
        save: day
        validate: {regex: '^\\d{4}-\\d{2}-\\d{2}$', error: "Please write the day like 2024-06-03."}
        on_invalid: help_offer
        next: booking_name
      booking_name:
        ask: "And your name, {{ visitor.name or 'please' }}?"
        save: name
        next: booking_email
      booking_email:
        ask: "Your email address, for the confirmation?"
        save: email
        validate: email
        on_invalid: help_offer
        next: booking_confirm
      booking_confirm:
        say: "{{ vars.name }}, your {{ vars.bike_kind }} on {{ vars.day }} for: {{ vars.problem }}."
        buttons:
          - {title: "Yes, book it", goto: booking_send}
          - {title: Change something, goto: booking_kind}
          - {title: Pick it up at home, goto: booking_pickup}
          - {title: Cancel, goto: menu}
      booking_send:
        call:
          method: POST
          url: "/api/bookings"
          json: {kind: "{{ vars.bike_kind }}", day: "{{ vars.day }}", email: "{{ vars.email }}"}
          save: booking
        on_error: booking_failed
        next:
          - when: "vars.booking.json.status == 'full'"
            goto: booking_full
          - when: "vars.booking.json.status == 'waitlist'"
            goto: booking_waitlist
          - goto: booking_done
      booking_done:
        say: "Booked! Your ticket is {{ vars.booking.json.ticket }}."
        next: anything_else
      booking_full:
        say: "Sorry, {{ vars.day }} is fully booked."
        next: booking_date
      booking_waitlist:
        say: "{{ vars.day }} is nearly full: you're on the waiting list."
        next: anything_else
      booking_failed:
        say: "Our booking system isn't answering."
        next: mechanic_queue
      status_ask:
        ask: "What's your ticket number? It looks like R-12345."
        save: ticket
        validate: {regex: '(?i)^R-\\d{5}$', error: "A ticket number looks like R-12345."}
        on_invalid: help_offer
        next: status_lookup
      status_lookup:
        call: {url: "/api/repairs/{{ vars.ticket | upper }}", save: repair}
        on_error: status_failed
        next:
          - when: "vars.repair.json.state == 'ready'"
            goto: status_ready
          - when: "vars.repair.json.state == 'waiting_for_parts'"
            goto: status_parts
          - when: "vars.repair.json.state == 'in_repair'"
            goto: status_repair
          - when: "vars.repair.json.late"
            goto: status_late
          - goto: status_received
      status_ready:
        say: "Your bike is ready! Pick it up any time before {{ vars.repair.json.closes }}."
        next: status_pay
      status_pay:
        say: "The bill is {{ vars.repair.json.price }} EUR; you can pay by card at pick-up."
        next: anything_else
      status_parts:
        say: "We're waiting for parts ({{ vars.repair.json.part }}), expected
          {{ vars.repair.json.eta }}."
        next: anything_else
      status_repair:
        say: "Your bike is on the stand right now."
        next: anything_else
      status_received:
        say: "We've got your bike and will start soon."
        next: anything_else
      status_failed:
        say: "{% if vars.repair.status == 404 %}I can't find ticket {{ vars.ticket }}.{% else %}
          Our repair system isn't answering.{% endif %}"
        buttons:
          - {title: Try another number, goto: status_ask}
          - {title: Talk to a mechanic, goto: mechanic_queue}
      faq_menu:
        say: "What would you like to know?"
        buttons:
          - {title: Opening hours, goto: faq_hours}
          - {title: Prices, goto: faq_prices}
          - {title: Where are you?, goto: faq_address}
          - {title: Rental bikes, goto: faq_rental}
          - {title: Parking, goto: faq_parking}
          - {title: Paying, goto: faq_payment}
      faq_hours:
        say: "We're open Tuesday to Saturday, 9:00-18:00."
        next: anything_else
      faq_prices:
        say: "A check-up is 39 EUR, a flat tyre 15 EUR, brakes from 25 EUR."
        next: anything_else
      faq_address:
        say: "Spoke & Chain, Radweg 12, next to the station."
        next: anything_else
      faq_rental:
        say: "Rental bikes are 12 EUR a day while yours is repaired."
        next: anything_else
      faq_parking:
        say: "Park your bike in the yard behind the shop."
        next: anything_else
      faq_payment:
        say: "We take cards and cash; no cheques."
        next: anything_else
      booking_pickup:
        say: "We can pick your bike up at home for 10 EUR."
        next: booking_date
      status_late:
        say: "Sorry it takes longer: {{ vars.repair.json.reason }}."
        next: anything_else
      mechanic_queue:
        escalate: {queue: mechanics, say: "A mechanic will answer in a moment."}
        no_agents: mechanic_away
      mechanic_away:
        say: "All mechanics are busy in the workshop."
        ask: "Leave your phone number and we'll call you back?"
        save: phone
        validate: phone
        on_invalid: goodbye
        next: mechanic_note
      mechanic_note:
        ask: "What should the mechanic know?"
        save: note
        next: mechanic_thanks
      mechanic_thanks:
        say: "Thanks! We'll call {{ vars.phone }} today."
        end: true
      help_offer:
        say: "Sorry, I didn't get that. Shall I find a mechanic?"
        buttons:
          - {title: "Yes, please", goto: mechanic_queue}
          - {title: "No, back to the menu", goto: menu}
      anything_else:
        say: "Anything else?"
        buttons:
          - {title: "Yes", goto: menu}
          - {title: "No, thanks", goto: goodbye}
      goodbye:
        say: "Thanks, and ride safe!"
        end: true
    """, "flows/bikes.yaml")

PAGE_WIDTH_PT = 1600  # the old left-to-right drawing of this flow was 5,488 pt wide


def test_the_big_flow_has_forty_states():
    assert len(BIKES.states) == 40


def test_states_are_grouped_in_one_box_per_topic():
    assert {key: len(names) for key, names in topics(BIKES).items()} == {
        "booking": 15, "status": 9, "faq": 7, "mechanic": 4}
    dot = to_dot(BIKES)
    booking = dot[dot.index('subgraph "cluster_booking" {'):]
    booking = booking[: booking.index("\n  }\n")]
    assert '    graph [label="booking"' in booking
    assert re.findall(r'^    "(\w+)" \[label=', booking, flags=re.M) == topics(BIKES)["booking"]


def test_two_states_starting_alike_are_not_a_topic():
    flow = make_flow("""\
        start: ask_order
        states:
          ask_order: {ask: "Order?", save: order_id, next: ask_mail}
          ask_mail: {ask: "Email?", save: mail, next: bye}
          bye: {say: bye, end: true}
        """)
    assert topics(flow) == {}
    assert "subgraph" not in to_dot(flow)


def edge_labels(dot: str, source: str) -> list[str]:
    """The labels of the arrows out of `source`, with their line breaks undone."""
    found = re.findall(rf'^  "{source}" -> "\w+" \[label="(.*?)"', dot, flags=re.M)
    return [label.replace("\\n", " ") for label in found]


def test_conditions_are_shown_whole_so_different_ones_look_different():
    labels = edge_labels(to_dot(BIKES), "status_lookup")
    assert labels == ["when vars.repair.json.state == 'ready'",
                      "when vars.repair.json.state == 'waiting_for_parts'",
                      "when vars.repair.json.state == 'in_repair'",
                      "when vars.repair.json.late",
                      "",  # the last choice: a plain arrow is next
                      "error"]
    assert edge_labels(to_dot(BIKES), "booking_send")[:2] == [
        "when vars.booking.json.status == 'full'", "when vars.booking.json.status == 'waitlist'"]


def test_templates_are_drawn_as_readable_placeholders():
    dot = to_dot(BIKES)
    confirm = re.search(r'^    "booking_confirm" \[label="(.*?)"\]', dot, flags=re.M).group(1)
    assert confirm.replace("\\n", " ") == ("booking_confirm ‹name›, your ‹bike_kind› on ‹day› "
                                           "for: ‹problem›.")
    assert "{{" not in dot and "{%" not in dot


@pytest.mark.parametrize("source,shown", [
    ("Hi {{ visitor.name or 'there' }}!", "Hi ‹name›!"),
    ("Order {{ vars.order_id | trim | upper }} is {{ vars.order.json.status }}.",
     "Order ‹order_id› is ‹order›."),
    ("{{ match[1] }} / {{ input }} / {{ 1 + 2 }}", "‹match 1› / ‹input› / ‹…›"),
    ("{% if vars.repair.status == 404 %}Not found.{% else %}Not answering.{% endif %}",
     "Not found. / Not answering."),
    ("Hi{# a comment #}!", "Hi!"),
])
def test_placeholders(source, shown):
    assert placeholders(source) == shown


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_the_big_flow_is_drawn_down_the_page_not_across_it():
    svg = to_svg(to_dot(BIKES)).decode()
    width, height = map(int, re.search(r'<svg width="(\d+)pt" height="(\d+)pt"', svg).groups())
    assert width <= PAGE_WIDTH_PT
    assert height > width  # the topics are stacked, not side by side
