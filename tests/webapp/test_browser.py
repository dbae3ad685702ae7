"""End to end in Chromium: a member generates and submits, a reviewer (another browser context)
approves, and History shows the image approved.

Uses Debian's Chromium (/usr/bin/chromium, installed by scripts/system_deps.sh), never a downloaded
browser. On failure, screenshots of every open page go to test-artifacts/; a passing run with
DRAFTROOM_SCREENSHOTS=1 refreshes the screenshots of each tab in docs/images/ (the README shows them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.webapp.conftest import Live, Person
from tests.webapp.helpers import unique_word

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
DOC_IMAGES = REPO / "docs" / "images"
WAIT_MS = 120_000

pytestmark = [pytest.mark.browser, pytest.mark.slow]


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
        self.page.on("console", lambda message: self.csp_violations.append(message.text)
                     if "Content Security Policy" in message.text else None)
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
            session.page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{n}-{session.person.name}.png"),
                                    full_page=True)
        session.context.close()


def test_member_generates_reviewer_approves_history_shows_it(live: Live, browser: Browser,
                                                              sessions: list[Session]) -> None:
    word = unique_word()
    prompt = f"a red circle on a blue background {word}"
    shots: dict[str, bytes] = {}

    member = Session(browser, live, live.person("member", prefix="ada"))
    sessions.append(member)
    page = member.page
    page.locator("#prompt").get_by_role("textbox").fill(prompt)
    page.locator("#generate").click()
    expect(page.locator("#progress")).to_contain_text("Done", timeout=WAIT_MS)
    expect(page.locator("#gallery img").first).to_be_visible()
    expect(page.locator("#recipe").get_by_role("textbox")).to_have_value(re.compile(re.escape(prompt)))
    page.locator("#submit-review-btn").click()
    expect(page.locator("#generate-message")).to_contain_text("submitted for review", timeout=WAIT_MS)
    shots["generate"] = page.screenshot(full_page=True)

    reviewer = Session(browser, live, live.person("reviewer", prefix="grace"))
    sessions.append(reviewer)
    reviewer.tab("Review")
    review = reviewer.page
    review.locator("#review-author").get_by_role("textbox").fill(member.person.name)
    review.locator("#review-refresh").click()
    expect(review.locator("#review-recipe")).to_contain_text(word, timeout=WAIT_MS)
    expect(review.locator("#review-gallery img").first).to_be_visible()
    review.locator("#review-comment").get_by_role("textbox").fill("Clean shapes; approved.")
    shots["review"] = review.screenshot(full_page=True)
    review.locator("#review-approve").click()
    expect(review.locator("#review-message")).to_contain_text("Approved image", timeout=WAIT_MS)
    expect(review.locator("#review-count")).to_contain_text("Nothing is waiting")

    member.tab("History")
    page.locator("#history-search").get_by_role("textbox").fill(word)
    page.locator("#history-search-btn").click()
    results = page.locator("#history-results")
    expect(results).to_contain_text(word, timeout=WAIT_MS)
    expect(results).to_contain_text("approved")
    results.locator(".history-card").first.click()
    expect(page.locator("#history-reviews")).to_contain_text("Clean shapes; approved.", timeout=WAIT_MS)
    expect(page.locator("#history-gallery img").first).to_be_visible()
    shots["history"] = page.screenshot(full_page=True)

    admin = Session(browser, live, live.person("admin", prefix="root"))
    sessions.append(admin)
    admin.tab("Admin")
    expect(admin.page.locator("#admin-users")).to_contain_text(member.person.name, timeout=WAIT_MS)
    shots["admin"] = admin.page.screenshot(full_page=True)

    assert [session.csp_violations for session in sessions] == [[]] * len(sessions)

    if os.environ.get("DRAFTROOM_SCREENSHOTS"):  # opt-in, so a plain test run leaves the tree clean
        for name, png in shots.items():
            (DOC_IMAGES / f"{name}.png").write_bytes(png)


def test_sign_out_ends_the_session_and_shows_the_sign_in_page(live: Live, browser: Browser,
                                                             sessions: list[Session]) -> None:
    member = Session(browser, live, live.person())
    sessions.append(member)
    member.page.locator("#sign-out-btn").click()
    expect(member.page.get_by_role("button", name="Login")).to_be_visible(timeout=WAIT_MS)
    member.page.goto(live.url)  # the session is gone, not just this page
    expect(member.page.get_by_role("button", name="Login")).to_be_visible(timeout=WAIT_MS)
    assert member.csp_violations == []
