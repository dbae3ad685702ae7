"""A guided or mixed draft never looks like a plain one: its PNG's A1111 `parameters`, the Generate tab's
recipe box and the History detail name the guidance image (short hash, scale, decay), every mix ingredient
with its weight, the space its texts were mixed in, and the interpolation; a mix-only image shows its ingredients where the prompt would be."""

from __future__ import annotations

import io
from typing import Any

import gradio as gr
import pytest
from PIL import Image

from storage.metadata import parse_a1111
from tests.webapp.conftest import Live, Person
from tests.webapp.helpers import generate, png_bytes, unique_word, upload
from webapp.ui.common import ImageFiles
from webapp.ui.generate import GenerateTab
from webapp.ui.history import HistoryTab


@pytest.fixture
def tabs(live: Live) -> tuple[GenerateTab, HistoryTab]:
    files = ImageFiles(live.studio)
    with gr.Blocks(), gr.Tabs() as tabs:
        with gr.Tab("Generate"):
            generate_tab = GenerateTab(live.studio, files)
        with gr.Tab("History"):
            history = HistoryTab(live.studio, files, generate_tab, tabs)
    return generate_tab, history


def parameters(png: bytes) -> str:
    with Image.open(io.BytesIO(png)) as image:
        return str(image.info["parameters"])


def recipe_box(tab: GenerateTab, live: Live, author: Person, generation: dict[str, Any]) -> str:
    """What the Generate tab's recipe box shows for a generation's first result."""
    shown = tab._show_results(live.storage.generations.get(author.user.id, generation["id"]))
    return str(shown[tab.recipe])


def test_a_guided_mixed_image_shows_guidance_and_mix_everywhere(
    live: Live, tabs: tuple[GenerateTab, HistoryTab]
) -> None:
    generate_tab, history = tabs
    author = live.person()
    client = live.client(author)
    guide = upload(client, png_bytes("green", (24, 24))).json()
    ingredient = upload(client, png_bytes("blue", (24, 24))).json()
    done = generate(
        client,
        f"a red circle {unique_word()}",
        seed=3,
        guidance_image=guide["id"],
        image_guidance_scale=0.02,
        image_guidance_decay="linear",
        mix=[{"text": "red", "weight": -1}, {"image": ingredient["id"], "weight": 0.5}],
    )
    guidance = f"{guide['sha256'][:10]}, scale 0.02, decay linear"
    mix = f'"red" -1, {ingredient["sha256"][:10]} +0.5'
    text = parameters(client.get(done["images"][0]["url"]).content)
    settings = parse_a1111(text)["settings"]
    assert (settings["Image guidance"], settings["Mix"], settings["Mix space"]) == (guidance, mix, "text")

    assert recipe_box(generate_tab, live, author, done) == text
    detail = str(history.details(author.user, done["id"])[1])
    assert "**Image guidance:**" in detail and "**Mix:**" in detail and "**Mix space:** text" in detail
    assert guide["sha256"][:10] in detail and ingredient["sha256"][:10] in detail
    assert "scale 0\\.02, decay linear" in detail and '"red" \\-1' in detail


def test_a_mix_only_image_shows_its_ingredients_as_the_prompt(
    live: Live, tabs: tuple[GenerateTab, HistoryTab]
) -> None:
    _, history = tabs
    author = live.person()
    client = live.client(author)
    done = generate(
        client,
        "",
        seed=4,
        mix=[{"text": "a red circle", "weight": 1}, {"text": "blue", "weight": 1}],
        interpolation=0.25,
    )
    parsed = parse_a1111(parameters(client.get(done["images"][0]["url"]).content))
    assert parsed["prompt"] == '"a red circle" +1, "blue" +1'
    assert parsed["settings"]["Interpolation"] == "0.25"
    detail = str(history.details(author.user, done["id"])[1])
    assert '**Prompt:** (mix only) "a red circle" \\+1, "blue" \\+1' in detail
    assert "**Interpolation:** 0\\.25" in detail


def test_an_upscaled_image_says_so_everywhere(live: Live, tabs: tuple[GenerateTab, HistoryTab]) -> None:
    generate_tab, history = tabs
    if live.studio.engine.model_info.upscale_factor == 1:  # type: ignore[attr-defined]
        pytest.skip("the model serving these tests has no upsampler")
    author = live.person()
    client = live.client(author)
    done = generate(client, f"a red circle {unique_word()}", seed=8, upscale=True)
    [image] = done["images"]
    upscaled = f"{done['params']['width']}x{done['params']['height']} -> {image['width']}x{image['height']}"
    assert parse_a1111(parameters(client.get(image["url"]).content))["settings"]["Upscale"] == upscaled
    assert f"Upscale: {upscaled}" in recipe_box(generate_tab, live, author, done)
    assert upscaled in str(history.details(author.user, done["id"])[1])
