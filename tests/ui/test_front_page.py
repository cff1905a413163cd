"""The front page in a real browser: the demo shop carrying the widget with one script tag, under
the console's strict policy; the README's picture of the widget comes from this run."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from routing.agents import Accounts, Agent
from tests.support.ws import AgentSocket, of_type
from tests.ui.test_console import PASSWORD
from tests.ui.widget_page import Chat, WidgetBrowser, no_csp_violation, screenshot

# Not on_cluster: the shop's page, the same on any Redis.


@pytest.fixture
def widget_browser(browser) -> Iterator[WidgetBrowser]:
    widgets = WidgetBrowser(browser)
    yield widgets
    widgets.close()


def test_the_shop_carries_the_widget_and_says_where_the_console_is(
        widget_browser, server, redis):
    answer = widget_browser.new_context().request.get(server + "/")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "style-src 'self';" in policy
    assert "unsafe" not in policy
    assert answer.text().count("<script") == 1  # the widget's tag, nothing inline

    accounts = Accounts(redis, "concierge:")
    accounts.add(Agent(id="ada", name="Ada Lovelace", queues=["support"], max_chats=3), PASSWORD)
    agent = AgentSocket(server, accounts.new_token("ada"))
    try:
        agent.welcomed()
        agent.presence("available")

        page = widget_browser.visit(server + "/", viewport={"width": 1200, "height": 760})
        expect(page.get_by_role("heading", level=1)).to_contain_text("Small batches")
        hint = page.locator(".demo-hint")
        expect(hint.get_by_role("link", name="/console")).to_have_attribute("href", "/console")
        expect(hint).to_contain_text("make run")
        # The banner wraps between words, never inside a code label, at any width.
        broken = hint.evaluate("""(hint) => {
            const widths = [];
            for (let width = 280; width <= 1200; width += 1) {  // through the CSSOM: no policy
                hint.style.width = width + "px";
                const codes = [...hint.querySelectorAll("code")];
                if (codes.some((code) => code.getClientRects().length !== 1)) widths.push(width);
            }
            hint.style.width = "";
            return widths;
        }""")
        assert broken == []
        assert widget_browser.audit(page) == []  # the shop, the widget closed

        chat = Chat(page)
        chat.open()
        expect(chat.panel).to_have_accessible_name("Harbour Bean")
        expect(chat.host.get_by_text("Ask about an order, shipping or our coffee.")).to_be_visible()
        chat.reply("Track my order").click()
        expect(chat.log).to_contain_text("What's your order number?")
        chat.write("AB123454")
        expect(chat.log).to_contain_text("has shipped with DHL")
        chat.reply("Talk to a person").click()
        conversation = agent.receive_until(of_type("assigned"))[-1]["conversation"]["id"]
        expect(chat.subtitle).to_have_text("Ada Lovelace")
        agent.say(conversation, "Hi, I'm Ada. Your parcel left Hamburg this morning.")
        expect(chat.bubbles("agent").last).to_contain_text("left Hamburg")
        chat.input.fill("Great, thank you!")
        # The open panel leaves the shop's header alone: its menu still works.
        header = page.locator(".masthead").bounding_box()
        assert chat.panel.bounding_box()["y"] >= header["y"] + header["height"]
        page.get_by_role("navigation", name="Shop").get_by_role("link", name="Shipping").click()
        expect(page).to_have_url(re.compile("#shipping$"))
        expect(chat.panel).to_be_visible()
        assert widget_browser.audit(page) == []  # open, with a person in the conversation
        screenshot(page, "widget-shop.png", readme=True)  # docs/img/widget.png
        expect(chat.host.locator(".launcher")).to_have_css(
            "background-color", re.compile(r"rgb\(122, 59, 18\)"))  # data-color="#7a3b12"
        no_csp_violation(page)
        assert widget_browser.errors == []
    finally:
        agent.close()


def test_a_german_browser_gets_the_shop_the_widget_and_the_bot_in_german(widget_browser,
                                                                        server):
    page = widget_browser.visit(server + "/", locale="de-DE")  # Accept-Language: de-DE
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Kleine Chargen")
    chat = Chat(page)
    chat.launcher.click()
    expect(chat.launcher).to_have_accessible_name("Chatten Sie mit uns")
    expect(chat.log).to_contain_text("Wie kann ich Ihnen heute helfen?")
    chat.reply("Öffnungszeiten").click()
    expect(chat.log).to_contain_text("Unser Team antwortet im Chat montags bis freitags")
    assert widget_browser.audit(page) == []
    no_csp_violation(page)

    # The shop's own switch, as a site's language menu: the page, and so the bot, in English.
    page.get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    chat = Chat(page)
    expect(chat.panel).to_be_visible()  # the tab's open chat stays open across the navigation
    expect(chat.launcher).to_have_accessible_name("Chat with us")
    chat.write("shipping")
    expect(chat.log).to_contain_text("We ship within 1-2 working days")
    assert widget_browser.errors == []
