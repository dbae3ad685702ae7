"""End to end in Chromium: a member generates and submits, a reviewer (another browser context)
approves, and History shows the image approved.

Uses Debian's Chromium (/usr/bin/chromium, installed by scripts/system_deps.sh), never a downloaded
browser. On failure, screenshots of every open page go to test-artifacts/; a passing run with
DRAFTROOM_SCREENSHOTS=1 refreshes the screenshots of Generate, History and Admin in docs/images/ (the README
shows them; test_browser_studio.py takes Review's, with a guided, mixed image).
"""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import Browser, expect

from tests.webapp.browser_session import DOC_IMAGES, WAIT_MS, Session
from tests.webapp.conftest import Live
from tests.webapp.helpers import unique_word

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_member_generates_reviewer_approves_history_shows_it(
    live: Live, browser: Browser, sessions: list[Session]
) -> None:
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


def test_sign_out_ends_the_session_and_shows_the_sign_in_page(
    live: Live, browser: Browser, sessions: list[Session]
) -> None:
    member = Session(browser, live, live.person())
    sessions.append(member)
    member.page.locator("#sign-out-btn").click()
    expect(member.page.get_by_role("button", name="Login")).to_be_visible(timeout=WAIT_MS)
    member.page.goto(live.url)  # the session is gone, not just this page
    expect(member.page.get_by_role("button", name="Login")).to_be_visible(timeout=WAIT_MS)
    assert member.csp_violations == []
