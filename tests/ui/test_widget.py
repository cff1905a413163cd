"""The website widget in a real browser, on someone else's site: Debian's chromium driven by
Playwright, the host page on one origin with a strict CSP, Concierge under gunicorn on another,
an agent in the console in a second browser profile."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from routing.agents import Accounts, Agent
from tests.conftest import IDENTITY_SECRET
from tests.support.process import poll_until
from tests.support.ws import AgentSocket, TcpProxy, bot_says, status_is
from tests.ui.host_site import HostSite
from tests.ui.test_console import PASSWORD, go, log_in
from tests.ui.widget_page import GREETING, Chat, WidgetBrowser, no_csp_violation, screenshot

# Not on_cluster: the browser sees the same sockets on any Redis, and tests/web runs those on the
# cluster (make test); here the suite keeps within its 10 minutes.

HANDOFF = "Connecting you with a person"
STORED_S = 10  # the longest a write the browser asked for may take to reach Redis
PHONE = {  # what Playwright's "Pixel 7" descriptor sets, without needing the playwright object
    "viewport": {"width": 412, "height": 839}, "device_scale_factor": 2.625, "is_mobile": True,
    "has_touch": True,
    "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/130.0.0.0 Mobile Safari/537.36",
}


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def host_site() -> Iterator[HostSite]:
    site = HostSite()
    yield site
    site.close()


@pytest.fixture(scope="session")
def widget_server(live_server, host_site) -> str:
    """Concierge, allowing the host site's origin to open the visitor socket."""
    return live_server(ALLOWED_ORIGINS=host_site.origin, IDENTITY_SECRET=IDENTITY_SECRET)


@pytest.fixture
def accounts(redis) -> Accounts:
    return Accounts(redis, "concierge:")


@pytest.fixture
def widget_browser(browser) -> Iterator[WidgetBrowser]:
    widgets = WidgetBrowser(browser)
    yield widgets
    widgets.close()


def add_agent(accounts: Accounts, agent_id: str, name: str, max_chats: int = 3) -> None:
    accounts.add(Agent(id=agent_id, name=name, queues=["support"], max_chats=max_chats), PASSWORD)


def conversation_of(page) -> str:
    return Chat(page).record()["conversation"]


def user_hash(user_id: str) -> str:
    return hmac.new(IDENTITY_SECRET.encode(), user_id.encode(), hashlib.sha256).hexdigest()


# --- privacy, and the page's policy ------------------------------------------------------------


def test_nothing_is_stored_and_no_socket_opens_before_the_visitor_opens_the_chat(
        widget_browser, widget_server, host_site):
    page = widget_browser.visit(host_site.page(widget_server))
    chat = Chat(page)
    expect(chat.launcher).to_have_attribute("aria-expanded", "false")
    expect(chat.panel).to_be_hidden()
    assert widget_browser.audit(page) == []  # closed

    def stored():
        return page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")

    assert stored() == [0, 0, ""]
    page.reload()
    expect(chat.launcher).to_be_visible()
    assert stored() == [0, 0, ""]
    assert page.context.cookies() == []
    assert widget_browser.sockets == []

    chat.open()
    assert widget_browser.sockets == [widget_server.replace("http", "ws") + "/ws/visitor"]
    key = page.evaluate("Object.keys(localStorage)")
    assert key == [f"concierge:{widget_server}:-"]  # namespaced by Concierge's origin and flow
    assert chat.record()["token"]
    assert page.context.cookies() == []  # never a cookie, even then
    expect(chat.launcher).to_have_attribute("aria-expanded", "true")
    assert widget_browser.audit(page) == []  # open
    no_csp_violation(page)
    assert widget_browser.errors == []


def test_a_policy_without_concierge_in_style_src_is_reported_and_the_widget_stays_hidden(
        widget_browser, widget_server, host_site):
    """The recorder the other tests rely on does see what such a policy blocks."""
    url = host_site.page(widget_server, policy=(
        f"default-src 'none'; script-src {widget_server}; "
        f"connect-src {widget_server.replace('http', 'ws')}"))
    page = widget_browser.new_page(widget_browser.new_context())
    page.goto(url)
    page.wait_for_function("window.__csp.length > 0")
    assert {v["directive"] for v in page.evaluate("window.__csp")} == {"style-src-elem"}
    expect(Chat(page).launcher).to_be_hidden()  # never shown unstyled on the page


def test_a_site_whose_origin_is_not_allowed_is_told_the_chat_is_not_available_here(
        widget_browser, widget_server):
    other = HostSite()  # another origin: not in the server's ALLOWED_ORIGINS
    try:
        page = widget_browser.visit(other.page(widget_server))
        warnings: list[str] = []
        page.on("console", lambda line: warnings.append(line.text)
                if line.type == "warning" else None)
        chat = Chat(page)
        chat.launcher.click()
        expect(chat.offline).to_contain_text("not available on this page")  # no retrying
        expect(chat.offline.get_by_role("button")).to_be_hidden()
        # what the site owner reads: said before the close that the banner follows
        assert any("ALLOWED_ORIGINS" in text for text in warnings), warnings
        assert len(widget_browser.sockets) == 1  # told once, tried once
    finally:
        other.close()


# --- a whole conversation ------------------------------------------------------------------------


def test_a_visitor_talks_to_the_bot_then_a_person_who_closes_and_is_rated(
        widget_browser, widget_server, host_site, accounts, store):
    add_agent(accounts, "ada", "Ada Lovelace")
    console = widget_browser.new_page(viewport=(1200, 760))
    log_in(console, widget_server, "ada")
    go(console, "Available")

    page = widget_browser.visit(host_site.page(widget_server, attributes={"title": "Acme help"}))
    chat = Chat(page)
    chat.open()
    expect(chat.panel).to_have_accessible_name("Acme help")
    expect(chat.bubbles("bot").first).to_contain_text("Hi there! I'm the Concierge assistant.")

    # Quick replies: one click says it; the buttons then go.
    chat.reply("Shipping & returns").click()
    expect(chat.log).to_contain_text("We ship within 1-2 working days")
    expect(chat.bubbles("visitor").last).to_contain_text("Shipping & returns")
    expect(chat.bubbles("visitor").last.locator(".state")).to_have_text("Sent")
    expect(chat.reply("Shipping & returns")).to_have_count(0)

    # Markup typed by the visitor is text, and runs nothing.
    chat.write("<img src=x onerror=\"document.title='owned'\"><b>bold?</b>")
    expect(chat.bubbles("visitor").last).to_contain_text("<b>bold?</b>")
    expect(chat.log).to_contain_text("Let me show you what I can help with.")
    assert chat.log.locator("img, b").count() == 0

    # Asking for a person: the agent gets it, the visitor sees who joined.
    chat.reply("Talk to a person").click()
    expect(chat.log).to_contain_text(HANDOFF)
    expect(chat.subtitle).to_have_text("Ada Lovelace")
    expect(chat.log.locator(".system").last).to_have_text("Ada Lovelace joined the conversation.")
    reply = console.get_by_label(re.compile("^Reply to"))
    expect(console.get_by_role("log")).to_contain_text("<b>bold?</b>")

    # Both ways, with typing: the agent's markup and link are text and a safe link.
    reply.press_sequentially("Hello")
    expect(chat.host.locator(".typing")).to_be_visible()
    expect(chat.host.locator(".typing")).to_contain_text("Ada Lovelace is typing")
    reply.press_sequentially(" <i>there</i>, see https://example.com/help.")
    reply.press("Enter")
    agent_bubble = chat.bubbles("agent").last
    expect(agent_bubble).to_contain_text("Hello <i>there</i>, see https://example.com/help.")
    expect(agent_bubble.locator(".name")).to_have_text("Ada Lovelace")
    link = agent_bubble.get_by_role("link", name="https://example.com/help")
    expect(link).to_have_attribute("href", "https://example.com/help")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(link).to_have_attribute("target", "_blank")
    assert chat.log.locator("i").count() == 0
    expect(chat.host.locator(".typing")).to_be_hidden()
    chat.write("Where is my parcel?")
    expect(console.get_by_role("log")).to_contain_text("Where is my parcel?")
    assert page.title() != "owned" and console.title() != "owned"

    # Closed, an agent's message raises the unread badge, said by the status region too.
    page.keyboard.press("Escape")
    expect(chat.panel).to_be_hidden()
    expect(chat.launcher).to_be_focused()
    reply.fill("Found it: it leaves today.")
    reply.press("Enter")
    expect(chat.badge).to_have_text("1")
    expect(chat.unread_status).to_have_text("1 new message in the chat")
    chat.launcher.click()
    expect(chat.badge).to_be_hidden()
    expect(chat.unread_status).to_have_text("")
    assert widget_browser.audit(page) == []

    # A reload in the middle: the same conversation, nothing lost, nothing twice, still open.
    before, seqs = chat.transcript(), chat.seqs()
    page.reload()
    expect(chat.panel).to_be_visible()
    expect(chat.bubbles()).to_have_count(len(before))
    assert chat.transcript() == before
    assert chat.seqs() == seqs == sorted(seqs)
    expect(chat.subtitle).to_have_text("Ada Lovelace")
    screenshot(page, "widget-other-site.png")
    screenshot(console, "console-with-widget-visitor.png")

    # The agent closes; the visitor sees it clearly and rates it; the rating is stored.
    cid = conversation_of(page)
    console.get_by_role("button", name="Close…").click()
    console.get_by_role("dialog", name="Close the conversation").get_by_role(
        "button", name="Close conversation").click()
    expect(chat.host.get_by_text("This conversation has ended.")).to_be_visible()
    expect(chat.input).to_be_hidden()
    expect(chat.subtitle).to_have_text("Conversation ended")
    stars = chat.host.get_by_role("group", name="How was this conversation?")
    stars.get_by_role("button", name="4 of 5").click()
    expect(chat.host.get_by_text("Thank you for your rating.")).to_be_visible()
    assert poll_until(lambda: (store.field(cid, "rating") or {}).get("score") == 4, STORED_S)
    assert widget_browser.audit(page) == []

    # A new conversation begins with the bot again.
    chat.host.get_by_role("button", name="Start a new conversation").click()
    expect(chat.log).to_contain_text(GREETING)
    expect(chat.bubbles()).to_have_count(2)
    expect(chat.input).to_be_focused()
    assert conversation_of(page) != cid
    no_csp_violation(page)
    no_csp_violation(console)
    assert widget_browser.errors == []


WAITING = {  # what a waiting visitor reads, in the page's language (the shipped flow speaks both)
    "en": {"greeting": GREETING, "ask": "person", "handoff": HANDOFF,
           "waiting": "Waiting for a person",
           "next": "You are next in line.", "leave": "Leave a message instead",
           "left": "You left the queue; back with the assistant.",
           "form": "Of course: leave us a message", "email": "What's your email address?",
           "bot": "Assistant", "message": "what would you like to tell us"},
    "de": {"greeting": "Ich bin der Concierge-Assistent", "ask": "Mitarbeiter",
           "handoff": "Ich verbinde Sie mit jemandem aus unserem Team",
           "waiting": "Wartet auf eine Person", "next": "Sie sind als Nächstes dran.",
           "leave": "Stattdessen eine Nachricht hinterlassen",
           "left": "Sie haben die Warteschlange verlassen; weiter mit dem Assistenten.",
           "form": "Gern: Hinterlassen Sie uns eine Nachricht",
           "email": "Wie lautet Ihre E-Mail-Adresse?", "bot": "Assistent",
           "message": "was möchten Sie uns mitteilen"},
}


@pytest.mark.parametrize("language", ["en", "de"])
def test_a_waiting_visitor_sees_the_place_in_line_and_may_leave_a_message_instead(
        widget_browser, widget_server, host_site, accounts, open_visitor, language):
    words = WAITING[language]
    add_agent(accounts, "bob", "Bob Builder", max_chats=1)
    agent = AgentSocket(widget_server, accounts.new_token("bob"))
    try:
        agent.welcomed()
        agent.presence("available")
        first = open_visitor(widget_server)  # takes Bob's one slot
        first.hello()
        first.talk("I want to talk to a person", until=status_is("agent"))

        page = widget_browser.visit(host_site.page(widget_server,
                                                   attributes={"locale": language}))
        chat = Chat(page)
        chat.open(words["greeting"])
        chat.write(words["ask"])
        expect(chat.log).to_contain_text(words["handoff"])
        expect(chat.subtitle).to_have_text(words["waiting"])
        expect(chat.queue).to_contain_text(words["next"])
        assert widget_browser.audit(page) == []
        chat.queue.get_by_role("button", name=words["leave"]).click()
        # the bot's words are the flow's, in its language; the system line is the widget's
        expect(chat.log).to_contain_text(words["left"])
        expect(chat.log).to_contain_text(words["form"])
        expect(chat.log).to_contain_text(words["email"])
        expect(chat.queue).to_be_hidden()
        expect(chat.subtitle).to_have_text(words["bot"])
        chat.write("vera@example.com")
        expect(chat.log).to_contain_text(words["message"])
        no_csp_violation(page)
        assert widget_browser.errors == []
    finally:
        agent.close()


# --- never losing a message ----------------------------------------------------------------------


def test_two_tabs_stay_in_step_and_follow_a_new_conversation(
        widget_browser, widget_server, host_site):
    url = host_site.page(widget_server)
    first = widget_browser.visit(url)
    one = Chat(first)
    one.open()
    second = widget_browser.visit(url, first.context)  # a conversation exists: it resumes
    two = Chat(second)
    two.launcher.click()
    expect(two.log).to_contain_text(GREETING)

    two.write("opening hours")
    expect(one.bubbles("visitor").last).to_have_text(re.compile("opening hours"))
    expect(one.log).to_contain_text("Our team answers chats Monday to Friday")
    one.reply("No, that's all").click()
    for chat in (one, two):
        expect(chat.log).to_contain_text("Thanks for visiting")
        expect(chat.host.get_by_text("This conversation has ended.")).to_be_visible()
    assert one.transcript() == two.transcript()
    assert one.seqs() == two.seqs()

    one.host.get_by_role("button", name="Start a new conversation").click()
    expect(one.bubbles()).to_have_count(2)
    expect(two.bubbles()).to_have_count(2)  # the other tab follows to the new one
    expect(two.input).to_be_visible()
    assert one.transcript() == two.transcript()
    two.write("shipping")
    expect(one.log).to_contain_text("We ship within 1-2 working days")
    no_csp_violation(first)
    no_csp_violation(second)
    assert widget_browser.errors == []


def test_a_dropped_network_and_a_reload_lose_no_message(
        widget_browser, widget_server, host_site, open_visitor, store):
    proxy = TcpProxy(widget_server)  # to drop the live socket: set_offline leaves it open
    try:
        page = widget_browser.visit(host_site.page(proxy.url))
        chat = Chat(page)
        chat.open()
        token = chat.record()["token"]
        cid = chat.record()["conversation"]

        page.context.set_offline(True)
        proxy.cut()
        expect(chat.offline).to_be_visible()
        expect(chat.offline).to_contain_text("Connection lost")
        chat.write("shipping")
        expect(chat.bubbles("visitor").last.locator(".state")).to_have_text(
            "Waiting for the connection…")
        assert [item["text"] for item in chat.record()["pending"]] == ["shipping"]
        # Meanwhile the conversation goes on elsewhere (another device of the visitor's).
        elsewhere = open_visitor(widget_server)
        elsewhere.hello(token, last_seq=1_000_000)
        elsewhere.talk("opening hours", until=bot_says("anything else"))

        page.context.set_offline(False)  # the `online` event: reconnect at once
        expect(chat.offline).to_be_hidden()
        expect(chat.log).to_contain_text("Our team answers chats Monday to Friday")
        expect(chat.log).to_contain_text("We ship within 1-2 working days")
        expect(chat.bubbles("visitor").filter(has_text="shipping").locator(".state")).to_have_text(
            "Sent")
        assert chat.record()["pending"] == []
        seqs = chat.seqs()
        assert seqs == list(range(1, len(seqs) + 1)), seqs  # the whole log, once, in order

        # Unsent messages outlive a reload too: kept in localStorage, sent with their ids.
        # While the gate is shut, every new socket is closed at once with 1013 (try later).
        gate = {"open": False}
        page.route_web_socket(re.compile("/ws/visitor"), lambda socket: (
            socket.connect_to_server() if gate["open"] else socket.close(code=1013)))
        proxy.cut()
        expect(chat.offline).to_be_visible()
        chat.write("Are you there?")
        page.reload()
        expect(chat.bubbles("visitor").last).to_contain_text("Are you there?")
        expect(chat.bubbles("visitor").last.locator(".state")).to_have_text(
            "Waiting for the connection…")
        expect(chat.offline).to_be_visible()
        gate["open"] = True
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(chat.bubbles("visitor").filter(has_text="Are you there?").locator(
            ".state")).to_have_text("Sent")
        texts = [m["text"] for m in store.log(cid) if m["from"] == "visitor"]
        assert texts == ["opening hours", "shipping", "Are you there?"]  # each once
        no_csp_violation(page)
        assert [e for e in widget_browser.errors if "WebSocket" not in e] == []
    finally:
        proxy.close()


# --- phones, keyboards, settings -----------------------------------------------------------------


def test_on_a_phone_the_panel_fills_the_screen_and_follows_the_visual_viewport(
        widget_browser, widget_server, host_site):
    page = widget_browser.visit(host_site.page(widget_server), reduced_motion="reduce", **PHONE)
    chat = Chat(page)
    chat.launcher.tap()
    expect(chat.log).to_contain_text(GREETING)
    assert chat.panel.evaluate("panel => panel.getAnimations().length") == 0  # reduced motion
    box = chat.panel.bounding_box()
    assert box == {"x": 0, "y": 0, "width": 412, "height": 839}, box
    expect(chat.launcher).to_be_hidden()  # the panel's own close button takes its place
    expect(chat.panel).to_have_attribute("aria-modal", "true")
    chat.reply("Opening hours").tap()
    expect(chat.log).to_contain_text("Our team answers chats Monday to Friday")
    screenshot(page, "widget-phone.png")

    # The on-screen keyboard shrinks the visual viewport only: the panel follows it.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Emulation.setPageScaleFactor", {"pageScaleFactor": 2})
    page.wait_for_function("window.visualViewport.scale === 2")
    page.evaluate("window.scrollTo(0, 200)")
    view = page.evaluate("({top: visualViewport.offsetTop, height: visualViewport.height})")
    page.wait_for_function(
        "(view) => { const p = document.querySelector('concierge-chat').shadowRoot"
        ".querySelector('.panel').getBoundingClientRect();"
        " return Math.abs(p.height - view.height) < 1 && Math.abs(p.top - view.top) < 1; }",
        arg=view)
    cdp.send("Emulation.setPageScaleFactor", {"pageScaleFactor": 1})

    # Modal here: focus stays inside the panel.
    chat.input.focus()
    for _ in range(12):
        page.keyboard.press("Tab")
        assert page.evaluate(
            "document.querySelector('concierge-chat').shadowRoot.activeElement"
            "?.closest('.panel') != null")
    no_csp_violation(page)
    assert widget_browser.errors == []


def test_the_keyboard_alone_opens_the_chat_answers_and_closes_it(
        widget_browser, widget_server, host_site):
    page = widget_browser.visit(host_site.page(widget_server))
    chat = Chat(page)
    page.keyboard.press("Tab")
    expect(chat.launcher).to_be_focused()
    page.keyboard.press("Enter")
    expect(chat.input).to_be_focused()
    expect(chat.log).to_contain_text(GREETING)
    page.keyboard.press("Shift+Tab")  # the last quick reply, just above the input
    expect(chat.reply("Talk to a person")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(chat.reply("Opening hours")).to_be_focused()
    page.keyboard.press("Enter")
    expect(chat.log).to_contain_text("Our team answers chats Monday to Friday")
    expect(chat.input).to_be_focused()  # the buttons went; the focus did not get lost
    page.keyboard.type("thanks, bye")
    page.keyboard.press("Enter")
    expect(chat.log).to_contain_text("Thanks for visiting")
    start_again = chat.host.get_by_role("button", name="Start a new conversation")
    expect(start_again).to_be_focused()  # the input went with the conversation's end
    page.keyboard.press("Shift+Tab")
    expect(chat.host.get_by_role("button", name="5 of 5")).to_be_focused()
    page.keyboard.press("Enter")
    expect(chat.host.get_by_text("Thank you for your rating.")).to_be_visible()
    expect(chat.host.get_by_role("textbox", name="Anything to add? (optional)")).to_be_focused()
    page.keyboard.press("Tab")
    expect(chat.host.get_by_role("button", name="Send comment")).to_be_focused()
    page.keyboard.press("Tab")
    expect(start_again).to_be_focused()
    page.keyboard.press("Escape")
    expect(chat.panel).to_be_hidden()
    expect(chat.launcher).to_be_focused()
    no_csp_violation(page)
    assert widget_browser.errors == []


def test_settings_come_from_data_attributes_and_a_signed_in_visitor_is_verified(
        widget_browser, widget_server, host_site, store):
    settings = {"user_id": "u-42", "name": "Ada", "email": "ada@example.com",
                "user_hash": user_hash("u-42")}
    url = host_site.page(widget_server, settings=settings, attributes={
        "title": "Hilfe", "color": "#ffd400", "position": "left", "locale": "de-CH",
        "greeting": "Fragen Sie uns!", "flow": "default"})
    page = widget_browser.visit(url)
    chat = Chat(page)
    launcher = chat.host.get_by_role("button", name="Chatten Sie mit uns")
    assert launcher.bounding_box()["x"] < 100  # on the left
    assert launcher.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(255, 212, 0)"
    assert launcher.evaluate("b => getComputedStyle(b).color") == "rgb(17, 17, 17)"  # readable
    launcher.click()
    # the page's locale picks the bot's language too: the shipped flow speaks German
    expect(chat.log).to_contain_text("Hallo Ada! Ich bin der Concierge-Assistent.")
    expect(chat.host.get_by_text("Fragen Sie uns!")).to_be_visible()
    expect(chat.host.get_by_role("textbox", name="Nachricht")).to_be_focused()
    record = chat.record()
    assert page.evaluate("Object.keys(localStorage)") == [f"concierge:{widget_server}:default"]
    visitor = store.field(record["conversation"], "visitor")
    assert visitor["verified"] is True and visitor["user_id"] == "u-42"
    assert visitor["locale"] == "de-CH" and visitor["page_url"] == url
    assert widget_browser.audit(page) == []

    # Another person signs in on this browser: the stored conversation is not theirs.
    other = host_site.page(widget_server, settings={"user_id": "u-7", "name": "Bo"},
                           attributes={"flow": "default"})
    page.goto(other)
    expect(chat.launcher).to_be_visible()
    assert page.evaluate("localStorage.length") == 0
    chat.open()
    assert chat.record()["conversation"] != record["conversation"]
    no_csp_violation(page)
    assert widget_browser.errors == []


# --- the newest message in view, the connection's state, ending, signing out ----------------------

LONG = "\n".join(f"line {n} of a long question" for n in range(1, 25))  # taller than the log
AT_END_JS = """() => { const log = document.querySelector('concierge-chat').shadowRoot
    .querySelector('.log'); return log.scrollHeight - log.scrollTop - log.clientHeight < 2; }"""


def at_the_end(page) -> None:
    """Wait until the transcript shows its newest message (scrolled to its very end)."""
    page.wait_for_function(AT_END_JS)


def test_when_the_bot_ends_the_conversation_its_last_words_stay_in_view(
        widget_browser, widget_server, host_site):
    page = widget_browser.visit(host_site.page(widget_server),
                                viewport={"width": 900, "height": 600})
    chat = Chat(page)
    chat.open()
    chat.write(LONG)
    expect(chat.log).to_contain_text("Sorry, I didn't quite get that.")
    at_the_end(page)
    chat.input.fill("thanks, bye")  # the bot ends it: the rating box takes room from the log
    chat.input.press("Enter")
    expect(chat.host.get_by_text("This conversation has ended.")).to_be_visible()
    expect(chat.log.locator(".system").last).to_have_text("The conversation has ended.")
    at_the_end(page)
    expect(chat.log.locator(".system").last).to_be_in_viewport()
    no_csp_violation(page)
    assert widget_browser.errors == []


def test_the_visitor_ends_the_chat_from_the_header_and_rates_it_with_a_comment(
        widget_browser, widget_server, host_site, store):
    page = widget_browser.visit(host_site.page(widget_server),
                                viewport={"width": 900, "height": 640})
    chat = Chat(page)
    chat.open()
    chat.write(LONG)
    expect(chat.log).to_contain_text("Sorry, I didn't quite get that.")
    end = chat.host.get_by_role("button", name="End chat")
    ask = chat.host.get_by_role("group", name="End this conversation?")
    expect(ask).to_be_hidden()

    # Asked inline, not with window.confirm; Cancel (or Escape) keeps the conversation.
    end.focus()
    page.keyboard.press("Enter")
    expect(ask).to_be_visible()
    expect(ask.get_by_role("button", name="Cancel")).to_be_focused()
    assert widget_browser.audit(page) == []
    page.keyboard.press("Escape")
    expect(ask).to_be_hidden()
    expect(chat.panel).to_be_visible()
    expect(end).to_be_focused()
    end.click()
    ask.get_by_role("button", name="Cancel").click()
    expect(ask).to_be_hidden()
    expect(chat.input).to_be_visible()

    cid = conversation_of(page)
    end.click()
    ask.get_by_role("button", name="Yes, end it").click()
    expect(chat.host.get_by_text("This conversation has ended.")).to_be_visible()
    expect(chat.log.locator(".system").last).to_have_text("The visitor ended the conversation.")
    expect(chat.subtitle).to_have_text("Conversation ended")
    expect(chat.input).to_be_hidden()
    expect(end).to_be_hidden()
    expect(chat.host.get_by_role("button", name="Start a new conversation")).to_be_focused()
    at_the_end(page)
    assert poll_until(lambda: store.record(cid).get("status") == "closed", STORED_S)

    # The rating is stored at once; a comment may follow it, in the same `rating` frame.
    chat.host.get_by_role("button", name="3 of 5").click()
    expect(chat.host.get_by_text("Thank you for your rating.")).to_be_visible()
    comment = chat.host.get_by_role("textbox", name="Anything to add? (optional)")
    expect(comment).to_be_focused()
    expect(comment).to_have_attribute("maxlength", "4000")
    assert poll_until(lambda: (store.field(cid, "rating") or {}).get("score") == 3, STORED_S)
    assert widget_browser.audit(page) == []
    comment.fill("Quick answers, <b>thanks</b>!")
    chat.host.get_by_role("button", name="Send comment").click()
    expect(chat.host.get_by_text("Thank you for your comment.")).to_be_visible()
    expect(comment).to_be_hidden()
    expect(chat.host.get_by_role("button", name="Start a new conversation")).to_be_focused()
    assert poll_until(lambda: (store.field(cid, "rating") or {}).get("comment")
                      == "Quick answers, <b>thanks</b>!", STORED_S)
    assert store.field(cid, "rating")["score"] == 3
    no_csp_violation(page)
    assert widget_browser.errors == []


def test_going_offline_shows_at_once_messages_wait_and_no_typing_dots_show_meanwhile(
        widget_browser, widget_server, host_site, accounts):
    add_agent(accounts, "ada", "Ada Lovelace")
    agent = AgentSocket(widget_server, accounts.new_token("ada"))
    try:
        agent.welcomed()
        agent.presence("available")
        page = widget_browser.visit(host_site.page(widget_server))
        chat = Chat(page)
        chat.open()
        typing = chat.host.locator(".typing")
        chat.reply("Talk to a person").click()
        cid = agent.assigned()["id"]
        expect(chat.subtitle).to_have_text("Ada Lovelace")
        agent.send({"type": "typing", "conversation": cid, "active": True})
        expect(typing).to_be_visible()

        # The browser's `offline` event: the banner and the waiting label at once (the socket
        # is only tested, by a ping, in the background), the agent's typing dots gone.
        page.context.set_offline(True)
        expect(chat.offline).to_be_visible(timeout=3_000)
        expect(chat.offline).to_contain_text("Connection lost")
        expect(typing).to_be_hidden(timeout=3_000)
        chat.write("Are you still there?")
        expect(chat.bubbles("visitor").last.locator(".state")).to_have_text(
            "Waiting for the connection…", timeout=3_000)
        expect(chat.offline).to_contain_text("What you write is sent when it is back.")

        page.context.set_offline(False)
        expect(chat.offline).to_be_hidden()
        expect(chat.bubbles("visitor").filter(has_text="Are you still there?").locator(
            ".state")).to_have_text("Sent")
        no_csp_violation(page)
        assert [e for e in widget_browser.errors if "WebSocket" not in e] == []
    finally:
        agent.close()


def test_no_typing_dots_for_the_bot_while_offline(widget_browser, widget_server, host_site):
    page = widget_browser.visit(host_site.page(widget_server))
    chat = Chat(page)
    chat.open()
    typing = chat.host.locator(".typing")
    # Every time the dots show, counted: while online the bot "types" after each message.
    page.evaluate("""() => {
        window.__dots = 0;
        const typing = document.querySelector('concierge-chat').shadowRoot.querySelector('.typing');
        new MutationObserver(() => { if (!typing.hidden) window.__dots += 1; })
            .observe(typing, {attributes: true, attributeFilter: ['hidden']});
    }""")
    page.context.set_offline(True)
    expect(chat.offline).to_be_visible(timeout=3_000)
    chat.write("shipping")
    expect(chat.bubbles("visitor").last.locator(".state")).to_have_text(
        "Waiting for the connection…", timeout=3_000)
    expect(typing).to_be_hidden()
    assert page.evaluate("window.__dots") == 0
    page.context.set_offline(False)
    expect(chat.log).to_contain_text("We ship within 1-2 working days")
    expect(chat.offline).to_be_hidden()
    no_csp_violation(page)


def test_reset_begins_anew_in_an_open_panel_and_clears_every_tab(
        widget_browser, widget_server, host_site):
    url = host_site.page(widget_server)
    first = widget_browser.visit(url)
    one = Chat(first)
    one.open()
    one.write("opening hours")
    expect(one.log).to_contain_text("Our team answers chats Monday to Friday")
    second = widget_browser.visit(url, first.context)
    two = Chat(second)
    two.launcher.click()
    expect(two.log).to_contain_text("opening hours")
    old = conversation_of(first)

    first.evaluate("window.Concierge.reset()")  # a sign-out, with the panel open
    expect(one.log).not_to_contain_text("opening hours")
    expect(one.log).to_contain_text(GREETING)  # the new conversation, at once
    expect(one.panel).to_be_visible()
    expect(two.log).not_to_contain_text("opening hours")  # the other tab forgets it too
    expect(two.log).to_contain_text(GREETING)  # and follows the new one
    assert conversation_of(first) != old
    assert one.transcript() == two.transcript()

    # Reset with the panel closed: nothing begins; the other tab's open panel closes, empty.
    first.keyboard.press("Escape")
    expect(one.panel).to_be_hidden()
    first.evaluate("window.Concierge.reset()")
    expect(two.panel).to_be_hidden()
    expect(two.bubbles()).to_have_count(0)
    expect(one.bubbles()).to_have_count(0)
    assert one.record() is None
    no_csp_violation(first)
    no_csp_violation(second)
    assert widget_browser.errors == []


def test_on_a_phone_the_keyboard_opening_keeps_the_newest_message_in_view(
        widget_browser, widget_server, host_site):
    page = widget_browser.visit(host_site.page(widget_server), **PHONE)
    chat = Chat(page)
    chat.launcher.tap()
    expect(chat.log).to_contain_text(GREETING)
    chat.write(LONG)
    expect(chat.log).to_contain_text("Sorry, I didn't quite get that.")
    at_the_end(page)
    # The keyboard shrinks the visual viewport: the panel follows it, the log keeps its end.
    page.set_viewport_size({"width": 412, "height": 420})
    page.wait_for_function("window.visualViewport.height === 420")
    expect(chat.panel).to_have_js_property("offsetHeight", 420)
    at_the_end(page)
    expect(chat.bubbles().last).to_be_in_viewport()
    page.set_viewport_size({"width": 412, "height": 839})  # and closes again
    expect(chat.panel).to_have_js_property("offsetHeight", 839)
    at_the_end(page)
    # The full-screen panel reaches both edges, without a border line at either.
    box = chat.panel.bounding_box()
    assert box["x"] == 0 and box["width"] == 412, box
    # no shadow either: its blur showed as a grey line in the screen's last column of pixels
    assert chat.panel.evaluate("panel => getComputedStyle(panel).boxShadow") == "none"
    no_csp_violation(page)
    assert widget_browser.errors == []


# --- what a hostile or broken page leaves in the widget's storage -------------------------------

UNSENT = 150  # what a visitor leaves unsent typing through a long outage: past FRAME_RATE's burst


def test_many_unsent_messages_go_once_each_in_order_without_flooding_the_server(
        widget_browser, widget_server, host_site, store):
    page = widget_browser.visit(host_site.page(widget_server))
    chat = Chat(page)
    chat.open()
    cid, key = chat.record()["conversation"], f"concierge:{widget_server}:-"
    url = page.url
    # Write the record from a page of the site without a widget (its script tag leads nowhere),
    # so that no tab's copy of the record overwrites it.
    page.goto(host_site.page("http://127.0.0.1:9"))
    page.evaluate("""([key, count]) => {
        const record = JSON.parse(localStorage.getItem(key));
        record.pending = Array.from({length: count},
                                    (_, n) => ({id: "unsent-" + n, text: "line " + n}));
        localStorage.setItem(key, JSON.stringify(record));
    }""", [key, UNSENT])
    sent: list[str] = []
    page.on("websocket", lambda socket: socket.on(
        "framesent", lambda payload: sent.append(payload) if '"message"' in payload else None))
    page.goto(url)

    def visitor_lines() -> list[str]:
        return [m["text"] for m in store.log(cid) if m["from"] == "visitor"]

    poll_until(lambda: len(visitor_lines()) >= UNSENT, 60)
    assert visitor_lines() == [f"line {n}" for n in range(UNSENT)]  # each once, in order
    # One at a time after each ack, and after `rate_limited` one retry a second, not one per error
    assert len(sent) < 2 * UNSENT, len(sent)
    expect(chat.bubbles("visitor").filter(has_text="line 149").locator(".state")).to_have_text(
        "Sent")
    assert widget_browser.errors == []


def test_a_poisoned_record_in_the_sites_storage_leaves_a_working_widget(
        widget_browser, widget_server, host_site):
    page = widget_browser.visit(host_site.page(widget_server))
    key = f"concierge:{widget_server}:-"
    page.evaluate("""(key) => localStorage.setItem(key, JSON.stringify({
        token: 42, conversation: ["x"], seen: 1e308, junk: "x".repeat(100000),
        pending: [null, 1, "s", {id: 5, text: "x"}, {id: "ok", text: 7},
                  {id: "huge", text: "x".repeat(20000)}],
    }))""", key)
    page.reload()
    chat = Chat(page)
    chat.open()  # a fresh conversation: nothing of the record was usable
    chat.write("shipping")
    expect(chat.log).to_contain_text("We ship within 1-2 working days")
    record = chat.record()
    assert "junk" not in record and record["pending"] == [] and record["seen"] < 1_000_000
    assert widget_browser.errors == []
