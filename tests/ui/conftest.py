"""A real browser for UI tests: Debian's chromium, driven by Playwright (no downloaded browser)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

CHROMIUM_FLAGS = [  # the sandbox needs user namespaces CI may not have; the rest keeps it offline
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",  # the console's alert sound, without a click
]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    path = _chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: .ci/run installs Debian's chromium")
        pytest.skip("no chromium on PATH (apt-get install chromium); CI runs these")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 900, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


# Records every CSP violation of the page into window.__csp. Playwright injects init scripts
# outside the page's policy, so this one is not itself an inline script the policy sees.
CSP_RECORDER = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__csp.push({directive: event.violatedDirective, blocked: event.blockedURI,
                     sample: event.sample, source: event.sourceFile, line: event.lineNumber});
});
"""


class ConsoleBrowser:
    """Contexts for the agent console: notifications granted, CSP violations and page errors
    recorded; each context is a browser profile of its own (its own cookies)."""

    def __init__(self, browser) -> None:
        self.browser = browser
        self.contexts: list = []
        self.errors: list[str] = []  # uncaught exceptions and console errors of every page

    def new_page(self, context=None, viewport=(1280, 800)):
        if context is None:
            context = self.browser.new_context(
                viewport={"width": viewport[0], "height": viewport[1]},
                permissions=["notifications"])
            context.add_init_script(CSP_RECORDER)
            self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        page.on("console", lambda message: self.errors.append(f"{page.url}: {message.text}")
                if message.type == "error" and "Failed to load resource" not in message.text
                else None)  # failed loads are told apart below, by their URL
        page.on("response", lambda response: self.errors.append(
            f"{response.status} for {response.url}") if response.status >= 400
            and not response.url.endswith("/favicon.ico") else None)  # the login page has none
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def console_browser(browser) -> Iterator[ConsoleBrowser]:
    """Yield a ConsoleBrowser; its contexts close after the test."""
    console = ConsoleBrowser(browser)
    yield console
    console.close()
