"""The agent console in a real browser: Debian's chromium driven by Playwright, the app under real
gunicorn, visitors on real sockets. Also web/canned.py, the canned replies' file."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from routing.agents import Accounts, Agent
from tests.conftest import IDENTITY_SECRET
from tests.support.ws import VisitorSocket, bot_says, closed_status
from web import canned

# Not on_cluster: the browser sees the same sockets on any Redis, and tests/web runs those on the
# cluster (make test); here the suite keeps within its 10 minutes.

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "img" / "console.png"
PASSWORD = "a-long-enough-password"
HANDOFF = "I want to talk to a person"
MANUAL_QUEUES = "support:\n  strategy: manual\n  max_wait: 600\n"
SERIOUS = ("serious", "critical")


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def accounts(redis) -> Accounts:
    return Accounts(redis, "concierge:")


def add_agent(accounts: Accounts, agent_id: str, name: str, *, role: str = "agent",
              max_chats: int = 3) -> None:
    accounts.add(Agent(id=agent_id, name=name, queues=["support"], max_chats=max_chats,
                       role=role), PASSWORD)


def log_in(page, base: str, agent_id: str) -> None:
    """Log in through the real form, from /console (which sends us to /login and back)."""
    page.goto(base + "/console")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Agent id").fill(agent_id)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(base + "/console")
    expect(page.locator("#connection")).to_have_text("Online")


def go(page, presence: str) -> None:
    page.get_by_role("radio", name=presence).check()
    expect(page.get_by_role("radio", name=presence)).to_be_checked()
    expect(page.locator("body")).to_have_attribute("data-presence", presence.lower())


def escalate(open_visitor, base: str, name: str, *, first: tuple[str, str] | None = None,
             identity: dict | None = None, **hello) -> VisitorSocket:
    """A visitor says hello (and `first` = (text, what the bot answers)), then asks for a
    person; return the socket once the bot handed over."""
    visitor = open_visitor(base)
    visitor.hello(identity=identity or {"name": name, "email": f"{name.lower()}@example.com"},
                  **hello)
    if first:
        visitor.talk(first[0], until=bot_says(first[1]))
    visitor.talk(HANDOFF, until=bot_says("Connecting you with a person"))
    return visitor


def user_hash(user_id: str) -> str:
    """What the site's backend computes: hex(HMAC-SHA256(IDENTITY_SECRET, user_id))."""
    return hmac.new(IDENTITY_SECRET.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def agent_says(text: str):
    return lambda frame: (frame.get("type") == "message" and frame.get("from") == "agent"
                          and frame.get("text") == text)


def typing_frame(active: bool):
    return lambda frame: frame.get("type") == "typing" and frame.get("active") is active


def audit(page) -> list[str]:
    """Run axe-core on the page; return its serious and critical violations, readably."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} — "
            f"{[node['target'] for node in v['nodes']][:5]}"
            for v in results.response["violations"] if v["impact"] in SERIOUS]


def no_csp_violation(page) -> None:
    assert page.evaluate("window.__csp") == []


def transcript(page):
    return page.locator("#transcript ol:not([hidden]) > li")


# --- the console -----------------------------------------------------------------------------


def test_an_agent_answers_a_visitor_and_hands_the_conversation_on(
        console_browser, live_server, accounts, open_visitor, store):
    base = live_server()
    add_agent(accounts, "ada", "Ada Lovelace", role="lead")
    page = console_browser.new_page(viewport=(1200, 760))  # also the size of the screenshot
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(page, base, "ada")
    go(page, "Available")
    # notifications are granted here, so the console does not ask; sound plays without a click
    expect(page.get_by_role("button", name="Enable desktop notifications")).to_be_hidden()
    expect(page.get_by_role("button", name="Click to enable sound")).to_be_hidden()

    # A visitor asks for a person: a tab, the whole transcript with the bot's part marked.
    vera = escalate(open_visitor, base, "Vera", first=("where is AB123457?", "being prepared"),
                    page={"url": "https://shop.example.com/cart", "title": "Your cart",
                          "referrer": "https://search.example.org/?q=shop"}, locale="en-GB")
    tab = page.get_by_role("tab", name=re.compile("Vera"))
    expect(tab).to_have_attribute("aria-selected", "true")
    log = page.get_by_role("log")
    expect(log).to_contain_text("Connecting you with a person from our team")
    bot = transcript(page).filter(has_text="Connecting you with a person")
    expect(bot).to_have_class(re.compile(r"\bmsg-bot\b"))
    expect(bot.locator(".who")).to_have_text("Bot")
    expect(transcript(page).filter(has_text=HANDOFF)).to_have_class(re.compile("msg-visitor"))
    expect(transcript(page).filter(has_text="joined the conversation")).to_have_class(
        re.compile("msg-system"))

    panel = page.get_by_role("complementary")
    expect(panel.get_by_role("heading", name="Vera")).to_be_visible()
    for text in ("vera@example.com", "Not verified", "Your cart", "https://shop.example.com/cart",
                 "https://search.example.org/?q=shop", "en-GB", "support",
                 "the visitor asked for a person"):
        expect(panel).to_contain_text(text)
    expect(panel.locator(".path li").first).to_have_text("greet")
    expect(panel.locator(".path li").last).to_have_text("handoff")
    order_id = panel.locator(".vars .fact").filter(has=page.get_by_text("order_id", exact=True))
    expect(order_id.locator("dd")).to_have_text("AB123457")

    # The agent types (the visitor sees it) and sends with Enter.
    reply = page.get_by_label("Reply to Vera")
    reply.press_sequentially("Hello Vera")
    vera.receive_until(typing_frame(True))
    reply.press_sequentially(", how can I help?")
    reply.press("Enter")
    vera.receive_until(agent_says("Hello Vera, how can I help?"))
    vera.receive_until(typing_frame(False))  # sending ends the typing
    mine = transcript(page).filter(has_text="Hello Vera, how can I help?")
    expect(mine.locator(".delivery")).to_have_text("Sent")
    expect(reply).to_have_value("")

    # The visitor's reply and typing show up.
    vera.send({"type": "typing", "active": True})
    expect(page.locator("#typing")).to_have_text("Vera is typing…")
    vera.say("Where is my parcel?")
    expect(transcript(page).filter(has_text="Where is my parcel?")).to_have_class(
        re.compile("msg-visitor"))
    expect(page.locator("#typing")).to_be_hidden()

    # A canned reply through "/": filled in from the conversation, as plain text.
    reply.press_sequentially("/")
    listbox = page.get_by_role("listbox", name="Canned replies")
    expect(listbox.get_by_role("option", name=re.compile(r"\/orderlook"))).to_contain_text(
        "Thanks! I'm looking into order AB123457 now")
    if os.environ.get("UPDATE_SCREENSHOTS") or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)  # docs/img/console.png
        page.screenshot(path=str(SCREENSHOT))
    reply.press_sequentially("h")
    expect(listbox.get_by_role("option").first).to_contain_text("/hi")
    expect(listbox.get_by_role("option").first).to_have_attribute("aria-selected", "true")
    reply.press("ArrowDown")
    expect(listbox.get_by_role("option").first).to_have_attribute("aria-selected", "false")
    reply.press("ArrowUp")
    reply.press("Enter")
    greeting = "Hi Vera, I'm Ada Lovelace from the support team. How can I help?"
    expect(reply).to_have_value(greeting)
    expect(listbox).to_be_hidden()
    reply.press("Enter")
    vera.receive_until(agent_says(greeting))

    # Markup from a visitor is text, never HTML.
    vera.say("<img src=x onerror=alert(1)>")
    vera.say("<b>bold</b>")
    expect(transcript(page).last).to_contain_text("<b>bold</b>")
    expect(log).to_contain_text("<img src=x onerror=alert(1)>")
    assert page.locator("#transcript img, #transcript b").count() == 0
    assert page.locator("#tabs b, #tabs img, #visitor-panel b").count() == 0

    reply.press_sequentially("/nothing-like-it")
    expect(listbox).to_contain_text("No canned reply starts with /nothing-like-it")
    reply.press("Escape")
    expect(listbox).to_be_hidden()
    reply.fill("")
    assert audit(page) == []

    # The socket drops; a message written meanwhile waits, the visitor writes too; on reconnect
    # (the browser's `online` event) the inbox is rebuilt from the new welcome and the message
    # goes out once, with its id.
    page.evaluate("""() => {
        const c = window.__conciergeConsole;
        c.connection.held = true;  // no reconnect until the test says so
        c.socket.close();
    }""")
    expect(page.locator("#offline")).to_be_visible()
    expect(page.locator("#connection")).to_have_text("Offline")
    reply.fill("Written while offline")
    reply.press("Enter")
    expect(transcript(page).last.locator(".delivery")).to_have_text(
        "Waiting for the connection…")
    vera.say("Are you still there?")
    page.evaluate("""() => {
        window.__conciergeConsole.connection.held = false;
        window.dispatchEvent(new Event("online"));
    }""")
    expect(page.locator("#offline")).to_be_hidden()
    expect(page.locator("#connection")).to_have_text("Online")
    vera.receive_until(agent_says("Written while offline"))
    expect(transcript(page).filter(has_text="Are you still there?")).to_have_count(1)
    expect(transcript(page).filter(has_text="Written while offline").locator(".delivery")
             ).to_have_text("Sent")
    seqs = [int(s) for s in transcript(page).evaluate_all("els => els.map(e => e.dataset.seq)")]
    assert seqs == list(range(1, len(seqs) + 1)), seqs  # the whole log, once, in order
    expect(page.get_by_role("tab")).to_have_count(1)

    # A second conversation while the first is open: its tab waits, unread, and rings.
    otto = escalate(open_visitor, base, "Otto")
    otto_tab = page.get_by_role("tab", name=re.compile("Otto"))
    expect(otto_tab).to_have_attribute("aria-selected", "false")
    expect(otto_tab).to_contain_text("1 unread")
    expect(page.locator("body")).to_have_attribute("data-ringing", "true")
    otto.say("Hello?")
    expect(otto_tab).to_contain_text("2 unread")
    expect(page).to_have_title("(2) Console — Concierge")

    # Back to the bot at a state: the tab goes, the bot speaks again.
    page.get_by_role("button", name="Transfer…").click()
    dialog = page.get_by_role("dialog", name="Transfer the conversation")
    dialog.get_by_label("Back to the bot").check()
    dialog.get_by_label("Bot state").fill("menu")
    dialog.get_by_label("Note for whoever").fill("asked about the parcel")
    dialog.get_by_role("button", name="Transfer").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("tab", name=re.compile("Vera"))).to_have_count(0)
    expect(page.locator("#notice")).to_contain_text("Transferred the conversation with Vera")
    vera.receive_until(bot_says("How can I help you today?"))

    # Otto's conversation opens in its place: seen, it stops ringing; closed with tags.
    expect(otto_tab).to_have_attribute("aria-selected", "true")
    expect(otto_tab).not_to_contain_text("unread")
    expect(page.locator("body")).to_have_attribute("data-ringing", "false")
    expect(page).to_have_title("Console — Concierge")
    expect(transcript(page).last).to_contain_text("Hello?")
    page.get_by_role("button", name="Close…").click()
    dialog = page.get_by_role("dialog", name="Close the conversation")
    dialog.get_by_label("Tags").fill("shipping, parcel")
    dialog.get_by_role("button", name="Close conversation").click()
    expect(dialog).to_be_hidden()
    status = otto.receive_until(closed_status)[-1]
    assert status["reason"] == "agent"
    expect(page.get_by_role("tab")).to_have_count(0)
    assert sorted(store.field(otto.greeting.conversation, "tags")) == ["parcel", "shipping"]

    # How canned texts are filled in: plain text, and a missing value leaves no gap behind.
    filled = page.evaluate("""async () => {
        const { fillTemplate } = await import("/static/console/canned.js");
        const context = {visitor: {name: ""}, agent: {name: "Ada"}, vars: {order: {id: "AB1"}}};
        return ["Hi {{ visitor.name }}, I'm {{ agent.name }}.", "Thanks, {{visitor.name}}!",
                "Order {{ vars.order.id }} and {{ vars.missing }} done", "<b>{{ agent.name }}</b>",
                "{{ vars.order }}"].map((text) => fillTemplate(text, context));
    }""")
    assert filled == ["Hi, I'm Ada.", "Thanks!", "Order AB1 and done", "<b>Ada</b>",
                      '{"id":"AB1"}']

    assert dialogs == []
    no_csp_violation(page)
    assert console_browser.errors == []


def test_the_login_page_passes_axe_and_tabs_follow_presence_and_logout(
        console_browser, live_server, accounts):
    base = live_server()
    add_agent(accounts, "bob", "Bob Builder")
    first = console_browser.new_page()
    first.goto(base + "/login")
    assert audit(first) == []
    log_in(first, base, "bob")
    second = console_browser.new_page(first.context)
    second.goto(base + "/console")
    expect(second.locator("#connection")).to_have_text("Online")
    expect(second.get_by_role("radio", name="Away")).to_be_checked()  # a first login is away

    go(second, "Available")  # one presence for all the agent's tabs
    expect(first.get_by_role("radio", name="Available")).to_be_checked()

    # The console's JSON, for a logged-in agent, with the pages' security headers.
    answer = first.request.get(base + "/console/canned")
    assert answer.ok and answer.headers["content-type"] == "application/json"
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
    assert answer.json()["error"] is None
    assert {"hi", "order", "bye"} <= {reply["shortcut"] for reply in answer.json()["replies"]}
    states = first.request.get(base + "/console/flows/default/states").json()
    assert {"menu", "handoff", "offline"} <= set(states["states"])
    assert first.request.get(base + "/console/flows/nope/states").status == 404

    # Logging out in one tab ends the session: the other tab's socket is closed, its
    # reconnect is refused (1008) and it goes to the login page by itself.
    second.get_by_role("button", name="Log out").click()
    expect(second).to_have_url(re.compile(r"/login$"))
    expect(first).to_have_url(re.compile(r"/login\?next=(/|%2F)console$"))
    no_csp_violation(first)
    assert console_browser.errors == []


def test_a_manual_queue_rings_until_taken_and_missed_ones_can_be_followed_up(
        console_browser, live_server, accounts, open_visitor, tmp_path):
    queues = tmp_path / "queues.yaml"
    queues.write_text(MANUAL_QUEUES)
    base = live_server(QUEUES_FILE=str(queues), IDENTITY_SECRET=IDENTITY_SECRET)
    add_agent(accounts, "ada", "Ada Lovelace", role="lead")
    page = console_browser.new_page()
    log_in(page, base, "ada")
    go(page, "Available")

    # A verified visitor who was here before, now waiting in a manual queue: listed with its
    # Accept button, counted in the title, ringing.
    wanda = {"user_id": "w-1", "name": "Wanda", "email": "wanda@example.com",
             "hash": user_hash("w-1")}
    earlier = open_visitor(base)
    earlier.hello(identity=wanda)
    earlier.talk("bye", until=closed_status)
    escalate(open_visitor, base, "Wanda", identity=wanda)
    waiting = page.get_by_role("list", name=re.compile("Waiting"))
    item = waiting.get_by_role("listitem").filter(has_text="Wanda")
    expect(item).to_contain_text("wanda@example.com")
    expect(item).to_contain_text(HANDOFF)
    expect(item).to_contain_text(re.compile(r"Waiting \d+ s"))
    expect(item).to_contain_text("Verified")
    expect(page).to_have_title("(1) Console — Concierge")
    expect(page.locator("body")).to_have_attribute("data-ringing", "true")
    page.wait_for_function("window.__conciergeConsole.alerts.beeps > 0")
    expect(page.get_by_role("button", name="Enable sound")).to_have_count(0)

    # Keyboard only: W goes to the waiting list, A takes the oldest.
    page.locator("body").press("w")
    expect(item.get_by_role("button", name="Accept the chat with Wanda")).to_be_focused()
    page.locator("body").press("a")
    expect(page.get_by_role("tab", name=re.compile("Wanda"))).to_have_attribute(
        "aria-selected", "true")
    expect(page.get_by_label("Reply to Wanda")).to_be_focused()
    expect(waiting.get_by_role("listitem")).to_have_count(0)
    expect(page.locator("body")).to_have_attribute("data-ringing", "false")
    expect(page).to_have_title("Console — Concierge")
    panel = page.get_by_role("complementary")
    expect(panel).to_contain_text("Verified (user id w-1)")
    expect(panel.locator(".past li")).to_have_count(1)
    expect(panel.locator(".past li")).to_contain_text("closed (the bot ended it)")

    # The help dialog behind "?" (not while typing), closed with Escape.
    page.get_by_label("Reply to Wanda").press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_hidden()
    page.get_by_role("tab", name=re.compile("Wanda")).focus()
    page.keyboard.press("?")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(help_dialog).to_be_visible()
    expect(help_dialog).to_contain_text("Accept the chat waiting longest")
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()

    # Nobody available: a visitor is missed, with what the bot collected; read and followed up.
    go(page, "Away")
    missy = open_visitor(base)
    missy.hello(identity={"name": "Missy", "email": "missy@example.com"})
    missy.talk(HANDOFF, until=bot_says("What's your email address?"))
    missy.talk("missy@example.com", until=bot_says("what would you like to tell us"))
    page.locator("body").press("m")
    missed = page.locator("#missed-list > li").filter(has_text="Missy")
    expect(missed).to_contain_text("nobody was available")
    expect(missed).to_contain_text("missy@example.com")
    missed.get_by_role("button", name="Read").click()
    reader = page.locator("#reader-messages")
    expect(reader).to_contain_text(HANDOFF)
    expect(reader).to_contain_text("what would you like to tell us")
    expect(reader.locator("li.msg-bot").first).to_contain_text("Hi Missy!")
    expect(page.get_by_role("complementary")).to_contain_text("missy@example.com")
    page.get_by_role("button", name="Mark followed up").click()
    expect(page.locator("#reader-state")).to_contain_text("followed up by Ada Lovelace")
    page.get_by_role("button", name="Back to the list").click()
    expect(missed).to_contain_text("Followed up by Ada Lovelace")

    # The lead's team view.
    page.get_by_role("button", name="Team").click()
    agents = page.get_by_role("table", name="Agents")
    expect(agents.get_by_role("row", name=re.compile("Ada Lovelace"))).to_contain_text("Away")
    expect(agents.get_by_role("row", name=re.compile("Ada Lovelace"))).to_contain_text("1 of 3")
    expect(page.get_by_role("table", name="Queues").get_by_role("row", name=re.compile(
        "support"))).to_contain_text("Open")
    assert audit(page) == []
    no_csp_violation(page)
    assert console_browser.errors == []


def test_the_console_says_offline_as_soon_as_the_network_drops_and_reconnects_when_back(
        console_browser, live_server, accounts, open_visitor):
    base = live_server()
    add_agent(accounts, "ada", "Ada Lovelace")
    page = console_browser.new_page()
    log_in(page, base, "ada")
    go(page, "Available")
    vera = escalate(open_visitor, base, "Vera")
    reply = page.get_by_label("Reply to Vera")
    expect(reply).to_be_visible()
    connection = page.locator("#connection")

    # The browser's `offline` event: said at once (the socket the browser keeps open delivers
    # nothing), not after the next ping; presence cannot be changed, a reply waits.
    page.context.set_offline(True)
    expect(connection).to_have_text("Offline", timeout=3_000)
    expect(page.locator("#offline")).to_be_visible()
    expect(page.get_by_role("radio", name="Away")).to_be_disabled()
    reply.fill("Written while the network was down")
    reply.press("Enter")
    expect(transcript(page).last.locator(".delivery")).to_have_text(
        "Waiting for the connection…", timeout=3_000)
    # The ping gets no pong: the suspect socket is replaced, and retried with back-off.
    expect(page.locator("#offline-countdown")).to_contain_text(re.compile("Next try|Trying"),
                                                               timeout=15_000)
    expect(connection).to_have_text("Offline")

    page.context.set_offline(False)  # `online`: reconnect at once, not at the next retry
    expect(connection).to_have_text("Online", timeout=5_000)
    expect(page.locator("#offline")).to_be_hidden()
    vera.receive_until(agent_says("Written while the network was down"))
    expect(transcript(page).filter(has_text="Written while the network was down").locator(
        ".delivery")).to_have_text("Sent")
    expect(page.get_by_role("radio", name="Away")).to_be_enabled()
    no_csp_violation(page)
    assert [e for e in console_browser.errors if "WebSocket" not in e] == []


def test_a_long_transcript_comes_in_part_and_its_earlier_messages_on_request(
        console_browser, live_server, accounts, open_visitor, redis, store):
    from tests.web.test_feeds import LONG_TEXT, bot_message, ring  # noqa: PLC0415

    base = live_server()
    add_agent(accounts, "ada", "Ada Lovelace")
    page = console_browser.new_page()
    log_in(page, base, "ada")
    go(page, "Available")
    vera = open_visitor(base)
    vera.hello(identity={"name": "Vera"})
    ring(redis, store, vera.greeting.conversation,
         *(bot_message(f"part {n}: {LONG_TEXT}", n) for n in range(60)),
         rung=False)  # ~1 MB said before the visitor asks for a person
    vera.talk(HANDOFF, until=bot_says("Connecting you with a person"))
    expect(page.get_by_label("Reply to Vera")).to_be_visible()

    earlier = page.get_by_role("button", name="Load earlier messages")
    expect(earlier).to_be_visible()
    expect(transcript(page).filter(has_text="part 0:")).to_have_count(0)  # not in the first part
    expect(transcript(page).filter(has_text=HANDOFF)).to_have_count(1)  # the last part is
    pages = 0
    while earlier.count() and pages < 10:  # a page at a time, until the very start
        shown = transcript(page).count()
        earlier.click()
        expect(transcript(page)).not_to_have_count(shown)  # the page came, above the rest
        page.wait_for_function("() => !document.querySelector('#transcript button.earlier')"
                               "?.disabled")
        pages += 1
    assert pages >= 2  # ~1 MB in parts of at most 256 KB
    expect(earlier).to_have_count(0)
    expect(transcript(page).filter(has_text="part 0:")).to_have_count(1)
    expect(transcript(page).filter(has_text="part 59:")).to_have_count(1)
    assert audit(page) == []
    no_csp_violation(page)


# --- web/canned.py ---------------------------------------------------------------------------


def test_the_shipped_canned_replies_are_valid_and_useful():
    replies = {reply.shortcut: reply for reply in canned.load(ROOT / "canned.yaml")}
    assert {"hi", "order", "bye"} <= set(replies)
    assert "{{ visitor.name }}" in replies["hi"].text


def test_canned_replies_come_as_a_mapping_or_a_list(tmp_path):
    assert canned.parse("hi: Hello {{ visitor.name }}!\nbye: |\n  Bye,\n  {{ agent.name }}\n") \
        == [canned.Canned("hi", "hi", "Hello {{ visitor.name }}!"),
            canned.Canned("bye", "bye", "Bye,\n{{ agent.name }}")]
    assert canned.parse("- {shortcut: order, title: Order number, text: 'Your order? "
                        "{{ vars.order_id }}'}\n- {shortcut: x, text: y}\n") == [
        canned.Canned("order", "Order number", "Your order? {{ vars.order_id }}"),
        canned.Canned("x", "x", "y")]
    assert canned.parse("") == [] and canned.parse("# nothing yet\n") == []
    assert canned.load(tmp_path / "missing.yaml") == []


@pytest.mark.parametrize(("source", "message"), [
    ("hi: [oops", "canned.yaml, line 1, column 10: not valid YAML"),
    ("just text", "line 1, column 1: the file must be a mapping"),
    ("hi: 42", "line 1, column 5: the text of 'hi' must be text"),
    ("'hello world': Hi", "the shortcut 'hello world' is not one an agent can type"),
    ("hi: Hello\nHi: Again", "line 2, column 1: the shortcut 'Hi' is used already, on line 1"),
    ("hi: ''", "the text of 'hi' is empty"),
    ("hi: Hello {{ visitor.phone }}", "uses {{ visitor.phone }}, which the console cannot"),
    ("- text: no shortcut", "line 1, column 3: this canned reply has no 'shortcut'"),
    ("- {shortcut: a, text: b, colour: red}", "unknown field 'colour'"),
    ("- plain", "each item of the list must be a mapping"),
    ("hi: " + "x" * 4001, "is 4001 characters long; a message holds at most 4000"),
])
def test_a_broken_canned_file_says_where_and_what(source, message):
    with pytest.raises(canned.CannedError) as caught:
        canned.parse(source, "canned.yaml")
    assert message in str(caught.value)


def test_the_canned_route_serves_json_and_survives_a_broken_file(tmp_path):
    from app import create_app

    path = tmp_path / "canned.yaml"
    app = create_app({"CANNED_FILE": path, "TESTING": True, "WTF_CSRF_ENABLED": False})
    with app.test_request_context():
        assert canned.current().replies() == ([], None)  # no file: no canned replies
        path.write_text("hi: Hello\n")
        assert canned.current().replies() == ([canned.Canned("hi", "hi", "Hello")], None)
        path.write_text("hi: [broken\n")
        replies, error = canned.current().replies()
        assert replies == [] and f"{path}, line 2, column 1: not valid YAML" in error
    client = app.test_client()
    answer = client.get("/console/canned")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]  # login first

