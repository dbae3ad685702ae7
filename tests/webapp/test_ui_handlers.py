"""UI handlers called directly, as Gradio calls them (with a gr.Request naming the signed-in user):
Reuse fills the Generate form from a colleague's recipe, an unchanged reuse counts a use of the same
prompt, and Remix records the lineage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import gradio as gr
import pytest

from model.engine.request_fields import GUIDANCE_SEMANTICS, recorded_mix_space
from storage.types import HistoryQuery
from tests.webapp.conftest import TEST_STEPS, Live, Person
from tests.webapp.helpers import generate, png_bytes, unique_word, upload
from webapp.context import Studio
from webapp.ui.common import ImageFiles
from webapp.ui.generate import GenerateTab, recorded_guidance_scale
from webapp.ui.review import ReviewTab


@pytest.fixture
def tab(live: Live) -> GenerateTab:
    with gr.Blocks():
        return GenerateTab(live.studio, ImageFiles(live.studio))


def run_generate(tab: GenerateTab, person: Person, values: dict[Any, Any]) -> dict[Any, Any]:
    """Call the Generate handler with the form's values; returns its last streamed update.

    Image paths make the round trip through Gradio's upload folder first, as the browser sends them back."""
    args = [values.get(component, component.value) for component in tab.generate_inputs]
    args = [
        component.move_resource_to_block_cache(value) if isinstance(component, gr.Image) and value else value
        for component, value in zip(tab.generate_inputs, args, strict=True)
    ]
    args[tab.generate_inputs.index(tab.steps)] = TEST_STEPS
    updates = list(tab._generate(gr.Request(username=person.name), *args))
    return updates[-1]


def latest(live: Live, person: Person):
    return live.storage.history.search(person.user.id, HistoryQuery(mine=True)).items[0]


def test_reuse_fills_the_form_with_a_colleagues_recipe(live: Live, tab: GenerateTab) -> None:
    author, colleague = live.person(), live.person()
    client = live.client(author)
    guide = upload(client, png_bytes("green", (24, 24))).json()
    prompt = f"a blue circle {unique_word()}"
    done = generate(
        client,
        prompt,
        seed=99,
        negative_prompt="blurry",
        guidance_image=guide["id"],
        image_guidance_scale=0.02,
        image_guidance_decay="cosine",
        mix=[{"text": "red square", "weight": -0.75}],
    )
    values = tab.recipe_values(colleague.user, done["id"], remix=False)
    assert (values[tab.prompt], values[tab.negative], values[tab.seed]) == (prompt, "blurry", 99)
    assert (values[tab.guidance_scale], values[tab.guidance_decay]) == (0.02, "cosine")
    assert Path(values[tab.guidance_image]).read_bytes() == live.storage.upload_store.read(guide["sha256"])
    assert values[tab.mix_count] == 1
    first = tab.slots[0]
    assert (values[first.kind], values[first.text], values[first.weight]) == ("text", "red square", -0.75)

    final = run_generate(tab, colleague, values)
    assert "Done: 1 image(s)" in str(final[tab.progress]), final[tab.progress]
    mine = latest(live, colleague)
    assert mine.generation.seed == 99 and mine.prompt.text == prompt
    assert mine.prompt.author == colleague.name  # the guidance image became the colleague's own upload
    assert mine.prompt.guidance is not None and mine.prompt.guidance.upload_id != guide["id"]


def test_candidates_per_image_are_recorded_and_reused(live: Live, tab: GenerateTab) -> None:
    author, colleague = live.person(), live.person()
    done = generate(live.client(author), f"a green star {unique_word()}", seed=5, candidates=1)
    assert done["params"]["candidates"] == 1
    values = tab.recipe_values(colleague.user, done["id"], remix=False)
    assert values[tab.candidates] == 1
    run_generate(tab, colleague, {**values, tab.candidates: 3})
    assert latest(live, colleague).generation.params["candidates"] == 3
    default = tab.recipe_values(
        colleague.user, generate(live.client(author), "a red circle")["id"], remix=False
    )
    assert default[tab.candidates] == live.studio.engine.model_info.default_candidates


def test_an_unchanged_reuse_counts_a_use_and_remix_records_the_parent(live: Live, tab: GenerateTab) -> None:
    author, colleague = live.person(), live.person()
    done = generate(live.client(author), f"a green triangle {unique_word()}")
    original = live.storage.generations.get(author.user.id, done["id"]).prompt_id

    run_generate(tab, colleague, tab.recipe_values(colleague.user, done["id"], remix=False))
    reused = latest(live, colleague)
    assert reused.prompt.id == original and reused.prompt.use_count == 2

    values = tab.recipe_values(colleague.user, done["id"], remix=True)
    values[tab.prompt] += " on black"
    run_generate(tab, colleague, values)
    remixed = latest(live, colleague)
    assert remixed.prompt.parent_id == original and remixed.prompt.text.endswith("on black")


def test_generate_refuses_a_bad_request_with_a_readable_message(live: Live, tab: GenerateTab) -> None:
    person = live.person()
    with pytest.raises(gr.Error, match="prompt"):
        run_generate(tab, person, {tab.prompt: "   "})
    with pytest.raises(gr.Error, match="Ingredient 1"):
        run_generate(tab, person, {tab.prompt: "a circle", tab.mix_count: 1, tab.slots[0].kind: "image"})
    with pytest.raises(gr.Error, match="Negative prompt: contains the control character U\\+001B"):
        run_generate(tab, person, {tab.prompt: "a circle", tab.negative: "\x1b[2J"})
    with pytest.raises(gr.Error, match="Prompt: contains the bidirectional control character U\\+202E"):
        run_generate(tab, person, {tab.prompt: "a \u202eelcric"})
    assert live.storage.history.search(person.user.id, HistoryQuery(mine=True)).total == 0


def test_removing_an_ingredient_shifts_the_ones_below(live: Live, tab: GenerateTab) -> None:
    person = live.person()
    slots = [("text", "red", None, 0.5), ("text", "green", None, -1.0), ("text", "blue", None, 1.5)]
    slots += [("text", "", None, 1.0)] * (len(tab.slots) - len(slots))
    remove_first = tab._remove_slot(0)
    count, *shown = remove_first(gr.Request(username=person.name), 3, *(v for slot in slots for v in slot))
    assert count == 2
    rows = [shown[n * 5 : (n + 1) * 5] for n in range(len(tab.slots))]
    assert [(row[0].visible, row[2], row[4]) for row in rows] == [
        (True, "green", -1.0),
        (True, "blue", 1.5),
    ] + [(False, "", 1.0)] * (len(tab.slots) - 2)


def test_the_form_reuses_a_mix_as_large_as_the_api_accepts(live: Live, tab: GenerateTab) -> None:
    author, colleague = live.person(), live.person()
    mix = [
        {"text": colour, "weight": 0.25 * (n + 1)}
        for n, colour in enumerate(("red", "orange", "yellow", "green", "blue", "purple", "white", "black"))
    ]
    done = generate(live.client(author), f"a circle {unique_word()}", mix=mix)
    values = tab.recipe_values(colleague.user, done["id"], remix=True)
    assert values[tab.mix_count] == len(mix) == len(tab.slots)
    assert [(values[slot.text], values[slot.weight]) for slot in tab.slots] == [
        (item["text"], item["weight"]) for item in mix
    ]


def test_history_search_pages_and_favourites(live: Live) -> None:
    from webapp.ui.history import PAGE_SIZE, HistoryTab

    author, reader = live.person(), live.person()
    word = unique_word()
    client = live.client(author)
    ids = [generate(client, f"a white square {word} {n}")["id"] for n in range(PAGE_SIZE + 1)]
    with gr.Blocks():
        files = ImageFiles(live.studio)
        with gr.Tabs() as tabs, gr.Tab("History"):
            history = HistoryTab(live.studio, files, GenerateTab(live.studio, files), tabs)
    request = gr.Request(username=reader.name)
    filters = [word, "everyone", "any", False, "", ""]

    cards, shown, page, label = history.first_page(*filters, request)
    assert (cards.count('class="history-card"'), page, label) == (
        PAGE_SIZE,
        1,
        f"Page 1 of 2 · {PAGE_SIZE + 1} generation(s)",
    )
    assert shown == ids[::-1][:PAGE_SIZE]  # newest first
    cards, shown, page, _ = history._turn_page(+1)(*filters, page, request)
    assert (shown, page) == ([ids[0]], 2)
    assert history._turn_page(+1)(*filters, page, request)[2] == 2  # past the end: stays on the last page

    cards, *_ = history._toggle_favourite(ids[0], *filters, 2, request)
    assert f"<b>#{ids[0]}</b>" in cards and cards.count("\u2605") == 1
    favourites = history.first_page(word, "everyone", "any", True, "", "", request)
    assert favourites[1] == [ids[0]]
    assert history.first_page(word, "mine", "any", False, "", "", request)[1] == []
    with pytest.raises(gr.Error, match="YYYY-MM-DD"):
        history.first_page(word, "everyone", "any", False, "yesterday", "", request)


def test_a_recipe_from_before_the_total_pull_scale_loads_as_the_scale_of_the_same_pull() -> None:
    """Older recipes recorded the per-step pull (no image_guidance_semantics): 0.05 per step over 25
    steps pulls 72% of the way, which today is scale 0.256; a current recipe's scale loads as recorded."""
    old = {"steps": 25}
    assert recorded_guidance_scale(0.05, "none", old) == 0.256
    assert recorded_guidance_scale(0.05, "linear", old) < recorded_guidance_scale(0.05, "none", old)
    current = {"steps": 25, "image_guidance_semantics": GUIDANCE_SEMANTICS}
    assert recorded_guidance_scale(0.05, "none", current) == 0.05


def test_the_mix_space_is_reused_and_older_recipes_read_as_image_space(live: Live, tab: GenerateTab) -> None:
    """Reuse keeps the space a mix used; recipes older than the field mixed in image space, and say so."""
    author, colleague = live.person(), live.person()
    mix = [{"text": "red", "weight": -1}, {"text": "blue", "weight": 1}]
    done = generate(live.client(author), f"a red circle {unique_word()}", seed=8, mix=mix, mix_space="image")
    values = tab.recipe_values(colleague.user, done["id"], remix=False)
    assert values[tab.mix_space] == "image"
    run_generate(tab, colleague, {**values, tab.mix_space: "text"})
    assert latest(live, colleague).generation.params["mix_space"] == "text"
    assert recorded_mix_space({"steps": 25, "mix": mix}) == "image"
    assert recorded_mix_space({"mix_space": "text"}) == "text"


def test_upscale_is_recorded_reused_and_shown_at_its_size(live: Live, tab: GenerateTab) -> None:
    """The Generate tab's checkbox reaches the engine; Reuse restores it; Review's recipe names the upscale.
    A model without an upsampler shows the checkbox inactive and refuses the flag by name."""
    author, colleague = live.person(), live.person()
    studio = cast(Studio, live.studio)
    info = studio.engine.model_info
    if info.upscale_factor == 1:
        assert tab.upscale.interactive is False and "no upsampler" in str(tab.upscale.info)
        final = None
        with pytest.raises(gr.Error, match="no upsampler"):
            final = run_generate(tab, author, {tab.prompt: "a red circle", tab.upscale: True})
        assert final is None
        return
    assert tab.upscale.interactive is True
    run_generate(tab, author, {tab.prompt: f"a red circle {unique_word()}", tab.seed: 11, tab.upscale: True})
    made = latest(live, author)
    assert made.generation.params["upscale"] is True
    [image] = made.generation.images
    width, height = made.generation.params["width"], made.generation.params["height"]
    assert (image.width, image.height) == (width * info.upscale_factor, height * info.upscale_factor)
    assert tab.recipe_values(colleague.user, made.generation.id, remix=False)[tab.upscale] is True
    plain = generate(live.client(author), "a red circle")
    assert tab.recipe_values(colleague.user, plain["id"], remix=False)[tab.upscale] is False
    with gr.Blocks():
        review = ReviewTab(studio, ImageFiles(studio))
    prompt = live.storage.prompts.get(author.user.id, made.generation.prompt_id)
    recipe = review.recipe_html(author.user, made.generation, prompt, image)
    assert f"{width}x{height} -&gt; {image.width}x{image.height}" in recipe
