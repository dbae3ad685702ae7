"""Chromium sessions for the browser tests: Debian's /usr/bin/chromium (never a downloaded browser), one
signed-in context per person, and screenshots of every open page in test-artifacts/ when a test fails.

`browser` and `sessions` are fixtures; tests/webapp/conftest.py makes them visible to every test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

if TYPE_CHECKING:
    from tests.webapp.conftest import Live, Person

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
DOC_IMAGES = REPO / "docs" / "images"
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/system_deps.sh (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Session:
    """One person's browser context, signed in to the studio; it keeps what the page reports as a
    Content-Security-Policy violation (the studio's policy must not break the UI)."""

    def __init__(self, browser: Browser, live: Live, person: Person) -> None:
        self.context: BrowserContext = browser.new_context(viewport={"width": 1280, "height": 1000})
        self.page: Page = self.context.new_page()
        self.person = person
        self.csp_violations: list[str] = []
        self.page.on(
            "console",
            lambda message: (
                self.csp_violations.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )
        self.page.goto(live.url)
        self.page.get_by_label("username").fill(person.name)
        self.page.get_by_label("password").fill(person.password)
        self.page.get_by_role("button", name="Login").click()
        expect(self.page.locator("#whoami")).to_contain_text(person.name, timeout=WAIT_MS)

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name).click()


@pytest.fixture
def sessions(browser: Browser, request: pytest.FixtureRequest) -> Iterator[list[Session]]:
    """Open sessions; screenshots of each when the test fails."""
    opened: list[Session] = []
    yield opened
    report = getattr(request.node, "rep_call", None)  # set by the hook in conftest.py
    failed = report is None or report.failed
    for n, session in enumerate(opened):
        if failed:
            ARTIFACTS.mkdir(exist_ok=True)
            session.page.screenshot(
                path=str(ARTIFACTS / f"{request.node.name}-{n}-{session.person.name}.png"), full_page=True
            )
        session.context.close()
