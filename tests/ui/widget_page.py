"""The widget on a page, as the browser tests use it: recording browser contexts (CSP violations,
page errors, every WebSocket opened) and the widget found through its open shadow root."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from playwright.sync_api import expect

from tests.ui.conftest import CSP_RECORDER, ConsoleBrowser
from tests.ui.test_console import audit

ROOT = Path(__file__).resolve().parents[2]
README_PICTURE = ROOT / "docs" / "img" / "widget.png"
ARTIFACTS = ROOT / "out" / "screenshots"  # out/ is ignored by git: the pictures of each run
GREETING = "How can I help you today?"


class WidgetBrowser(ConsoleBrowser):
    """ConsoleBrowser's recording contexts, also shaped as phones, and the widget's sockets."""

    def __init__(self, browser) -> None:
        super().__init__(browser)
        self.sockets: list[str] = []  # the URL of every WebSocket any page opened

    def new_context(self, **options):
        context = self.browser.new_context(**{"viewport": {"width": 1100, "height": 800},
                                              **options})
        context.add_init_script(CSP_RECORDER)
        self.contexts.append(context)
        return context

    def audit(self, page) -> list[str]:
        """Run axe-core; the policy refuses the inline style axe adds for itself, so what that
        raises (from code the test evaluated: no source file) is not the widget's."""
        violations, errors = page.evaluate("window.__csp.length"), len(self.errors)
        found = audit(page)
        page.evaluate("""(n) => { window.__csp = window.__csp.filter(
            (v, i) => i < n || v.source !== ""); }""", violations)
        self.errors[errors:] = [error for error in self.errors[errors:]
                                if "Applying inline style violates" not in error]
        return found

    def visit(self, url: str, context=None, **options):
        """Open `url` in a new page (of `context`, or a new one); return it, widget loaded."""
        page = self.new_page(context or self.new_context(**options))
        page.on("websocket", lambda socket: self.sockets.append(socket.url))
        page.goto(url)
        expect(Chat(page).launcher).to_be_visible()  # its stylesheet is in: it shows
        return page


class Chat:
    """The widget on a page, found through its (open) shadow root as people find it: by role."""

    def __init__(self, page) -> None:
        self.page = page
        self.host = page.locator("concierge-chat")
        self.launcher = self.host.get_by_role("button", name=re.compile(
            "^(Chat with us|Chatten Sie mit uns)$"))  # the page's language, or data-locale
        self.panel = self.host.get_by_role("dialog")
        self.log = self.host.get_by_role("log")
        self.input = self.host.get_by_role("textbox", name=re.compile("^(Message|Nachricht)$"))
        self.subtitle = self.host.locator(".sub")
        self.badge = self.host.locator(".badge")
        self.unread_status = self.host.locator(".unread")
        self.offline = self.host.locator(".banner")
        self.queue = self.host.locator(".queue")

    def open(self, greeting: str = GREETING) -> None:
        self.launcher.click()
        expect(self.panel).to_be_visible()
        expect(self.input).to_be_focused()
        expect(self.log).to_contain_text(greeting)

    def reply(self, title: str):
        return self.log.get_by_role("button", name=title, exact=True)

    def write(self, text: str) -> None:
        self.input.fill(text)
        self.input.press("Enter")
        expect(self.input).to_have_value("")

    def bubbles(self, kind: str | None = None):
        return self.log.locator(f".msg.{kind}" if kind else ".msg")

    def transcript(self) -> list[str]:
        """What was said, in order: each message's text (not its delivery state)."""
        return self.log.locator(".msg .text, .msg.system").all_inner_texts()

    def seqs(self) -> list[int]:
        return [int(seq) for seq in self.log.locator("[data-seq]").evaluate_all(
            "nodes => nodes.map(node => node.dataset.seq)")]

    def record(self) -> dict | None:
        """What the widget keeps in the host site's localStorage."""
        raw = self.page.evaluate("""() => {
            const key = Object.keys(localStorage).find((k) => k.startsWith("concierge:"));
            return key ? localStorage.getItem(key) : null;
        }""")
        return None if raw is None else json.loads(raw)


def no_csp_violation(page) -> None:
    assert page.evaluate("window.__csp") == []


def screenshot(page, name: str, readme: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))
    if readme and (os.environ.get("UPDATE_SCREENSHOTS") or not README_PICTURE.exists()):
        page.screenshot(path=str(README_PICTURE))
