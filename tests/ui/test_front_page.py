"""The front page in a real browser: talk to the bot over /ws/visitor, resume after a reload."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.flows import write_flows

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "img" / "front-page.png"

MARKUP_FLOW = """\
start: greet
states:
  greet:
    say: "<img src=x onerror=\\"document.title='owned'\\"><b>bold?</b>"
    buttons:
      - {title: "<i>click</i>", goto: bye}
  bye:
    say: "Bye {{ input }}"
    end: true
"""


def bubbles(page, kind: str) -> list[str]:
    return page.locator(f"#log li.{kind}").all_inner_texts()


def test_a_visitor_talks_to_the_bot_and_resumes_after_a_reload(page, live_server):
    page.goto(live_server())
    page.get_by_text("How can I help you today?").wait_for()
    assert bubbles(page, "bot")[0] == "Hi there! I'm the Concierge assistant."

    page.get_by_role("button", name="Shipping & returns").click()
    page.get_by_text("We ship within 1-2 working days", exact=False).wait_for()

    page.get_by_label("Message").fill("where is AB123454?")
    page.get_by_role("button", name="Send").click()
    page.get_by_text("has shipped with DHL", exact=False).wait_for()
    assert "where is AB123454?" in bubbles(page, "visitor")
    page.get_by_text("status: bot").wait_for()
    if os.environ.get("UPDATE_SCREENSHOTS"):  # the README's picture comes from this real run
        page.screenshot(path=str(SCREENSHOT))

    before = page.locator("#log li").all_inner_texts()
    page.reload()
    page.get_by_text("has shipped with DHL", exact=False).wait_for()
    page.get_by_text("status: bot").wait_for()
    assert page.locator("#log li").all_inner_texts() == before  # same conversation, no duplicates


def test_bot_text_is_shown_as_text_never_as_html(page, live_server, tmp_path):
    page.goto(live_server(write_flows(tmp_path, default=MARKUP_FLOW)))
    page.get_by_text("<b>bold?</b>", exact=False).wait_for()
    assert page.locator("#log img, #log b, #log i").count() == 0
    assert page.title() != "owned"
    page.get_by_role("button", name="<i>click</i>").click()
    page.get_by_text("Bye <i>click</i>").wait_for()
    page.get_by_text("The conversation has ended (the assistant ended it).").wait_for()


def test_a_closed_conversation_says_so_where_the_visitor_types_and_a_new_one_opens_it(
        page, live_server):
    page.goto(live_server())
    page.get_by_text("How can I help you today?").wait_for()
    page.get_by_label("Message").fill("bye")
    page.get_by_role("button", name="Send").click()

    page.get_by_text("The conversation has ended.").wait_for()  # the system message
    assert page.get_by_label("Message").is_disabled()
    assert page.get_by_role("button", name="Send").is_disabled()
    assert page.get_by_role("button", name="Shipping & returns").is_disabled()  # old buttons too

    page.get_by_role("button", name="New conversation").click()
    page.get_by_text("How can I help you today?").wait_for()
    assert page.get_by_label("Message").is_enabled()
