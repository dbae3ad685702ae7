"""The studio's team loop in Chromium: the reviewer's full picture and decisions, the author's loop
(submitting a draft from History, the inbox), drafting comfort (Ctrl+Enter) and the phone layout.

Uses the browser, sessions and screenshots-on-failure of test_browser.py.
"""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.webapp.conftest import Live
from tests.webapp.helpers import generate, png_bytes, unique_word, upload
from tests.webapp.test_browser import WAIT_MS, Session, browser, sessions  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def submitted_image(author: httpx.Client, prompt: str, **fields: object) -> int:
    image_id = generate(author, prompt, **fields)["images"][0]["id"]
    author.post(f"/api/v1/images/{image_id}/submit").raise_for_status()
    return image_id


def open_review(browser: Browser, live: Live, sessions: list[Session], author: str) -> Session:
    reviewer = Session(browser, live, live.person("reviewer", prefix="grace"))
    sessions.append(reviewer)
    reviewer.tab("Review")
    reviewer.page.locator("#review-author").get_by_role("textbox").fill(author)
    reviewer.page.locator("#review-refresh").click()
    return reviewer


def test_the_reviewer_sees_guidance_and_mix_and_cannot_reject_without_a_comment(
        live: Live, browser: Browser, sessions: list[Session]) -> None:
    member = live.person("member", prefix="ada")
    author = live.client(member)
    word = unique_word()
    guide = upload(author, png_bytes("green")).json()["id"]
    ingredient = upload(author, png_bytes("yellow")).json()["id"]
    image_id = submitted_image(author, f"a red circle {word}", guidance_image=guide, image_guidance_scale=0.3,
                               image_guidance_decay="linear",
                               mix=[{"text": "a blue square", "weight": 0.5}, {"image": ingredient, "weight": -0.25}])

    page = open_review(browser, live, sessions, member.name).page
    recipe = page.locator("#review-recipe")
    expect(recipe).to_contain_text(word, timeout=WAIT_MS)
    expect(recipe).to_contain_text("scale 0.3")
    expect(recipe).to_contain_text("decay linear")
    expect(recipe.locator("img[alt='guidance image']")).to_be_visible()
    mix = recipe.locator("ul.mix li")
    expect(mix).to_have_count(2)
    expect(mix.nth(0)).to_contain_text("a blue square")
    expect(mix.nth(0)).to_contain_text("weight 0.5")
    expect(mix.nth(1).locator("img")).to_be_visible()
    expect(mix.nth(1)).to_contain_text("weight -0.25")
    expect(page.locator("#review-image img")).to_have_css("image-rendering", "pixelated")
    expect(page.locator("#review-gallery .thumbnail-item.selected")).to_have_count(1)

    page.locator("#review-reject").click()
    expect(page.get_by_text("Say why it is rejected.").first).to_be_visible(timeout=WAIT_MS)
    page.locator("#review-recipe").click()  # focus leaves the text fields: the key is a shortcut
    page.keyboard.press("r")
    expect(page.get_by_text("Say why it is rejected.")).not_to_have_count(0)
    assert live.storage.generations.image(member.user.id, image_id).review_status.value == "pending"

    page.locator("#review-comment").get_by_role("textbox").fill("The circle is off-centre.")
    page.locator("#review-reject").click()
    expect(page.locator("#review-message")).to_contain_text(f"Rejected image #{image_id}", timeout=WAIT_MS)
    assert live.storage.generations.image(member.user.id, image_id).review_status.value == "rejected"
