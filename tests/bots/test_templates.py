"""Templates and expressions at run time: undefined names, errors, and the sandbox."""

import logging
import re
import textwrap

import pytest

from bots.source import Pos
from bots.templates import Expression, Template

from .helpers import Chat, make_flow


def never_reached_state_setting(text: str) -> str:
    """A state that sets every variable `text` reads, and that no conversation ever enters.

    The checker refuses a flow reading a variable no state sets; with this state the
    flow passes, and at run time the variables are still undefined.
    """
    names = sorted(set(re.findall(r"vars\.(\w+)", text)))
    if not names:
        return ""
    return f"  never:\n    set: {{{', '.join(f'{name}: x' for name in names)}}}\n    end: true\n"


def say_once(template: str, **visitor) -> str:
    """Render one `say` of a one-state flow and return the message."""
    flow = make_flow(f"start: a\nstates:\n  a:\n    say: {template!r}\n    end: true\n"
                     + never_reached_state_setting(template))
    from bots import engine

    chat = Chat(flow, engine.Context(visitor=visitor))
    assert len(chat.messages) <= 1
    return chat.messages[0] if chat.messages else ""  # a text that came out empty is not sent


def test_visitor_fields_render():
    assert say_once("Hi {{ visitor.name }} from {{ visitor.page_url }}", name="Ada",
                    page_url="https://shop.test/") == "Hi Ada from https://shop.test/"


@pytest.mark.parametrize("template", [
    "[{{ visitor.name }}]",
    "[{{ vars.order.json.status }}]",
    "[{{ vars.order.json.items[0].name }}]",
    "[{{ vars.nothing | upper }}]",
])
def test_undefined_names_at_any_depth_render_empty(template):
    assert say_once(template) == "[]"


def test_or_gives_a_default_for_an_undefined_name():
    assert say_once("Hi {{ visitor.name or 'there' }}!") == "Hi there!"


def test_undefined_names_are_false_in_when():
    chat = Chat(make_flow("""\
        start: a
        states:
          a:
            next:
              - when: "vars.order.json.status == 'shipped'"
                goto: yes
              - when: "vars.order.json.count > 3"
                goto: yes
              - when: "visitor.verified"
                goto: yes
              - goto: no
          yes: {say: yes, end: true}
          no: {say: no, end: true}
          lookup:
            call: {url: /orders/1, save: order}
            on_error: no
            next: yes
        """))
    assert chat.messages == ["no"]


@pytest.mark.parametrize("template", ["{{ 1 / 0 }}", "{{ 'a' + 1 }}", "{{ vars | int(1, 2, 3) }}"])
def test_a_template_error_renders_empty_and_is_logged(template, caplog):
    with caplog.at_level(logging.WARNING, logger="concierge.flows"):
        assert say_once(template) == ""
    (record,) = [r for r in caplog.records if r.name == "concierge.flows"]
    assert "test:a" in record.getMessage() and "line 4" in record.getMessage()


def test_a_failing_when_is_false_and_logged(caplog):
    flow = make_flow("""\
        start: q
        states:
          q:
            ask: "Number?"
            save: n
            next:
              - when: "input > 3"
                goto: big
              - goto: other
          big: {say: big, end: true}
          other: {say: other, end: true}
        """)
    with caplog.at_level(logging.WARNING, logger="concierge.flows"):
        assert Chat(flow).say("5") == ["other"]
    assert any("expression error in test:q" in r.getMessage() for r in caplog.records)


def test_a_failing_rule_when_does_not_stop_the_conversation():
    chat = Chat(make_flow("""\
        start: a
        states:
          a:
            say: Hi
            on:
              - when: "input / 0"
                goto: b
            buttons: [{title: Bye, goto: b}]
            else: {say: "Sorry?"}
          b: {say: bye, end: true}
        """))
    assert chat.say("anything") == ["Sorry?"]


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os.environ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ vars.__class__.__base__ }}",
    "{{ '{0.__class__.__mro__}'.format(1) }}",
    "{{ range.__self__ }}",
    "{% include '/etc/passwd' %}",
])
def test_the_sandbox_keeps_python_internals_out_of_reach(template):
    rendered = say_once(template)
    assert rendered == ""
    for leak in ("class", "module", "function", "environ", "object", "built"):
        assert leak not in rendered


def test_the_sandbox_does_not_let_a_template_change_variables():
    chat = Chat(make_flow(textwrap.dedent("""\
        start: a
        states:
          a:
            set: {x: "1"}
            say: "{{ vars.update({'x': '2'}) }}{{ vars.x }}"
            end: true
        """) + never_reached_state_setting("vars.update")))
    assert chat.vars == {"x": "1"}


def test_a_huge_range_is_refused_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="concierge.flows"):
        assert say_once("{{ range(10**9) | list | length }}") == ""
    assert caplog.records


def test_the_environment_is_not_reachable(monkeypatch):
    monkeypatch.setenv("FLOW_SECRET_TOKEN", "leaked!")
    assert "leaked!" not in say_once("{{ cycler.__init__.__globals__.os.environ }}")


def test_a_template_with_an_unknown_filter_renders_empty_and_never_raises():
    assert Template("{{ 'x' | puper }}", Pos(3, 9), "test:a").render({}) == ""


def test_an_expression_with_an_unknown_filter_is_false_and_never_raises():
    assert Expression("input | lenght > 3", Pos(6, 15), "test:a").test({"input": "hello"}) is False


def test_an_unknown_test_renders_empty_and_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="concierge.flows"):
        assert Template("{% if 3 is evn %}x{% endif %}", Pos(3, 9), "test:a").render({}) == ""
    assert "No test named 'evn'" in caplog.text
