"""The studio's team loop in Chromium: the reviewer's full picture and decisions, the author's loop
(submitting a draft from History, the inbox), drafting comfort (Ctrl+Enter) and the phone layout.

Uses the browser, sessions and screenshots-on-failure of browser_session.py.
"""

from __future__ import annotations

import os
import re

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from storage.metadata import read_png_metadata
from storage.types import HistoryQuery
from tests.webapp.browser_session import DOC_IMAGES, WAIT_MS, Session
from tests.webapp.conftest import TEST_STEPS, Live
from tests.webapp.helpers import generate, png_bytes, unique_word, upload

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
    live: Live, browser: Browser, sessions: list[Session]
) -> None:
    member = live.person("member", prefix="ada")
    author = live.client(member)
    word = unique_word()
    guide = upload(author, png_bytes("green")).json()["id"]
    ingredient = upload(author, png_bytes("yellow")).json()["id"]
    image_id = submitted_image(
        author,
        f"a red circle {word}",
        guidance_image=guide,
        image_guidance_scale=0.3,
        image_guidance_decay="linear",
        mix=[{"text": "a blue square", "weight": 0.5}, {"image": ingredient, "weight": -0.25}],
    )

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
    if os.environ.get("DRAFTROOM_SCREENSHOTS"):  # the README's Review screenshot: a guided, mixed image
        (DOC_IMAGES / "review.png").write_bytes(page.screenshot(full_page=True))

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


def set_steps(page: Page, count: int) -> None:
    page.locator("#advanced").get_by_text("Advanced settings").first.click()
    steps = page.locator("#steps input[type=number]")
    steps.fill(str(count))
    steps.press("Enter")


def test_ctrl_enter_in_the_prompt_generates(live: Live, browser: Browser, sessions: list[Session]) -> None:
    """...and the result is marked selected, with Submit and Reuse usable only once there is one."""
    member = Session(browser, live, live.person("member", prefix="ada"))
    sessions.append(member)
    page = member.page
    expect(page.locator("#submit-review-btn")).to_be_disabled()
    expect(page.locator("#reuse-btn")).to_be_disabled()
    set_steps(page, TEST_STEPS)
    word = unique_word()
    prompt = page.locator("#prompt").get_by_role("textbox")
    prompt.fill(f"a red circle {word}")
    prompt.press("Control+Enter")
    expect(page.locator("#progress")).to_contain_text("Done", timeout=WAIT_MS)
    [item] = live.storage.history.search(member.person.user.id, HistoryQuery(mine=True)).items
    assert word in item.prompt.text
    assert "\n" not in item.prompt.text  # the keys generated; they did not type a line break
    expect(page.locator("#gallery .selected").first).to_be_visible()
    expect(page.locator("#submit-review-btn")).to_be_enabled(timeout=WAIT_MS)
    expect(page.locator("#reuse-btn")).to_be_enabled()
    page.locator("#submit-review-btn").click()
    expect(page.locator("#gallery")).to_contain_text(
        "pending", timeout=WAIT_MS
    )  # the caption of its thumbnail


def test_the_third_image_of_a_generation_shows_its_own_seed_to_the_reviewer(
    live: Live, browser: Browser, sessions: list[Session]
) -> None:
    member = live.person("member", prefix="ada")
    author = live.client(member)
    done = generate(author, f"a blue square {unique_word()}", num_images=3, candidates=1)
    third = sorted(done["images"], key=lambda image: image["id"])[2]
    author.post(f"/api/v1/images/{third['id']}/submit").raise_for_status()
    png_seed = read_png_metadata(author.get(f"/api/v1/images/{third['id']}").content).seed
    assert png_seed is not None and png_seed != done["seed"]

    page = open_review(browser, live, sessions, member.name).page
    seed_line = page.locator("#review-recipe dt", has_text="Seed").locator("xpath=following-sibling::dd[1]")
    expect(seed_line).to_have_text(str(png_seed), timeout=WAIT_MS)


RECORD_PROGRESS_JS = """
() => {
  const timeline = [];
  window.progressTimeline = timeline;
  document.getElementById("generate").addEventListener(
    "click", () => { window.generateClickedAt = performance.now(); }, { capture: true, once: true });
  const record = () => {
    const bar = document.querySelector("#progress progress.bar");
    const label = document.querySelector("#progress .label");
    const entry = {
      t: performance.now(),
      bar: bar ? (bar.hasAttribute("value") ? bar.value : -1) : null,
      label: label ? label.textContent : "",
      previews: document.querySelectorAll("#progress img.preview").length,
      images: document.querySelectorAll("#gallery img").length,
    };
    const last = timeline[timeline.length - 1];
    if (!last || ["bar", "label", "previews", "images"].some((key) => last[key] !== entry[key])) {
      timeline.push(entry);
    }
  };
  new MutationObserver(record).observe(
    document.body, { subtree: true, childList: true, attributes: true, characterData: true });
}
"""


def test_the_progress_bar_moves_at_once_and_a_preview_comes_before_the_images(
    live: Live, browser: Browser, sessions: list[Session]
) -> None:
    """What the page showed, recorded in the page itself from the click on: the bar moves within 2 s, each
    image counts its own steps, and a live preview is on screen before the finished images."""
    member = Session(browser, live, live.person("member", prefix="ada"))
    sessions.append(member)
    page = member.page
    set_steps(page, 6)  # several steps, so previews have time to show
    page.locator("#prompt").get_by_role("textbox").fill(f"a red circle {unique_word()}")
    page.evaluate(RECORD_PROGRESS_JS)
    page.locator("#generate").click()
    expect(page.locator("#progress")).to_contain_text("Done", timeout=WAIT_MS)
    expect(page.locator("#gallery img").first).to_be_visible(timeout=WAIT_MS)
    timeline = page.evaluate("window.progressTimeline")
    clicked = page.evaluate("window.generateClickedAt")

    early = [entry for entry in timeline if entry["t"] - clicked <= 2000 and entry["bar"] is not None]
    assert early and re.match(r"Queued|Image 1 of 1", early[0]["label"]), timeline  # -1: animated, queued
    values = [entry["bar"] for entry in timeline if entry["bar"] not in (None, -1)]
    assert values == sorted(values) and 0 < values[0] < 1 and values[-1] == 1, timeline
    assert any(re.match(r"Image 1 of 1, step \d+/\d+", entry["label"]) for entry in timeline), timeline
    first_preview = next(n for n, entry in enumerate(timeline) if entry["previews"])
    first_images = next(n for n, entry in enumerate(timeline) if entry["images"])
    assert first_preview < first_images, timeline
    expect(page.locator("#progress img.preview")).to_have_count(0)  # the finished images took their place


def test_a_mix_ingredient_shows_only_its_own_control(
    live: Live, browser: Browser, sessions: list[Session]
) -> None:
    member = Session(browser, live, live.person("member", prefix="ada"))
    sessions.append(member)
    page = member.page
    page.locator("#mixing").get_by_text("Mixing").first.click()
    page.locator("#mix-add").click()
    text, image = page.locator("#mix-text-0"), page.locator("#mix-image-0")
    expect(text).to_be_visible(timeout=WAIT_MS)
    expect(image).to_be_hidden()
    page.locator("#mix-kind-0").get_by_text("image").click()
    expect(image).to_be_visible(timeout=WAIT_MS)
    expect(text).to_be_hidden()
    slider = page.locator("#interp input[type=range]")
    expect(slider).to_be_disabled()
    page.locator("#interp-on").get_by_role("checkbox").check()
    expect(slider).to_be_enabled(timeout=WAIT_MS)


def test_a_draft_is_submitted_from_history_after_a_reload(
    live: Live, browser: Browser, sessions: list[Session]
) -> None:
    person = live.person("member", prefix="ada")
    word = unique_word()
    image_id = generate(live.client(person), f"a blue square {word}")["images"][0]["id"]
    member = Session(browser, live, person)
    sessions.append(member)
    page = member.page
    page.reload()
    expect(page.locator("#whoami")).to_contain_text(person.name, timeout=WAIT_MS)
    member.tab("History")
    page.locator("#history-search").get_by_role("textbox").fill(word)
    page.locator("#history-search-btn").click()
    card = page.locator("#history-results .history-card")
    expect(card).to_have_count(1, timeout=WAIT_MS)
    expect(card.locator("img")).to_have_count(1)
    card.click()
    expect(page.locator("#history-detail")).to_contain_text(word, timeout=WAIT_MS)
    page.locator("#history-submit").click()
    expect(page.locator("#history-message")).to_contain_text(
        f"Image #{image_id} is submitted", timeout=WAIT_MS
    )
    expect(card).to_contain_text("review: pending")
    assert live.storage.generations.image(person.user.id, image_id).review_status.value == "pending"


def test_the_author_revises_from_the_inbox_and_the_reviewer_sees_the_lineage(
    live: Live, browser: Browser, sessions: list[Session]
) -> None:
    person, reviewer_person = live.person("member", prefix="ada"), live.person("reviewer", prefix="grace")
    word = unique_word()
    first = submitted_image(live.client(person), f"a small red circle {word}")
    live.client(reviewer_person).post(
        f"/api/v1/images/{first}/reviews",
        json={"decision": "request_changes", "comment": "Make the circle bigger."},
    ).raise_for_status()

    member = Session(browser, live, person)
    sessions.append(member)
    page = member.page
    expect(page.get_by_role("tab", name="Inbox (1)")).to_be_visible(timeout=WAIT_MS)
    member.tab("Inbox (1)")
    expect(page.locator("#inbox-list")).to_contain_text("Make the circle bigger.", timeout=WAIT_MS)
    page.locator("#inbox-list .inbox-revise").click()
    prompt = page.locator("#prompt").get_by_role("textbox")
    expect(prompt).to_have_value(re.compile(word), timeout=WAIT_MS)
    expect(page.locator("#revising-note")).to_contain_text(f"Revising image #{first}")
    prompt.fill(f"a big red circle {word}")
    page.locator("#generate").click()
    expect(page.locator("#progress")).to_contain_text("Done", timeout=WAIT_MS)
    page.locator("#submit-review-btn").click()
    expect(page.locator("#generate-message")).to_contain_text(
        f"as a revision of image #{first}", timeout=WAIT_MS
    )

    reviewer = open_review(browser, live, sessions, person.name)
    expect(reviewer.page.locator("#review-recipe")).to_contain_text(f"image #{first}", timeout=WAIT_MS)
    lineage = reviewer.page.locator("#review-context .lineage")
    expect(lineage).to_contain_text("Make the circle bigger.")
    expect(lineage.locator("img")).to_have_count(1)


def test_history_and_review_fit_a_phone(live: Live, browser: Browser, sessions: list[Session]) -> None:
    person = live.person("member", prefix="ada")
    word = unique_word()
    submitted_image(live.client(person), f"a green triangle {word} on a very long prompt that wraps")
    member = Session(browser, live, person)
    sessions.append(member)
    reviewer = Session(browser, live, live.person("reviewer", prefix="grace"))
    sessions.append(reviewer)
    for session in (member, reviewer):
        session.page.set_viewport_size({"width": 390, "height": 844})

    def inside_the_screen(locator: Locator) -> None:
        box = locator.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box

    page = member.page
    member.tab("History")
    page.locator("#history-search").get_by_role("textbox").fill(word)
    page.locator("#history-search-btn").click()
    card = page.locator("#history-results .history-card")
    expect(card).to_have_count(1, timeout=WAIT_MS)
    for field in (word, person.name, "succeeded", "review: pending", "UTC"):  # every former column
        expect(card).to_contain_text(field)
    inside_the_screen(card)

    review = reviewer.page
    reviewer.tab("Review")
    review.locator("#review-author").get_by_role("textbox").fill(person.name)
    review.locator("#review-refresh").click()
    expect(review.locator("#review-recipe")).to_contain_text(word, timeout=WAIT_MS)
    for element in (
        "#review-image",
        "#review-recipe",
        "#review-comment",
        "#review-approve",
        "#review-reject",
        "#review-changes",
    ):
        review.locator(element).scroll_into_view_if_needed()
        inside_the_screen(review.locator(element))
