"""The recipe inside PNGs: A1111 `parameters` text and Draftroom's JSON chunk."""

from __future__ import annotations

import io
import string
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from storage.errors import ValidationFailed
from storage.metadata import Recipe, encode_png, format_a1111, parse_a1111, read_png_metadata

FULL = Recipe(
    prompt="a red circle\non a blue background, top left",
    negative_prompt="blurry, two shapes",
    steps=20,
    sampler="ddpm",
    cfg_scale=6.5,
    seed=1234567890123,
    width=64,
    height=48,
    model_hash="9f86d081884c",
    model_name="embedded",
    mix=({"weight": 1.0, "text": "a red circle"}, {"weight": -0.5, "upload_sha256": "ab" * 32}),
    guidance={"upload_sha256": "cd" * 32, "scale": 0.005, "decay": "linear"},
    generation_id=17,
    image_index=2,
    params={"steps": 20, "scheduler": "ddpm", "dynamic_thresholding": False},
)


def _png_with_text(**chunks: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_full_recipe_round_trips_through_a_png() -> None:
    data = encode_png(Image.new("RGB", (64, 48), "red"), FULL)
    assert read_png_metadata(data) == FULL
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (64, 48) and image.getpixel((0, 0)) == (255, 0, 0)


def _parameters(recipe: Recipe) -> str:
    with Image.open(io.BytesIO(encode_png(Image.new("RGB", (64, 48)), recipe))) as image:
        return str(image.info["parameters"])


def test_other_tools_see_a1111_parameters_of_a_plain_image() -> None:
    plain = replace(FULL, mix=(), guidance=None)
    assert _parameters(plain) == (
        "a red circle\non a blue background, top left\n"
        "Negative prompt: blurry, two shapes\n"
        "Steps: 20, Sampler: ddpm, CFG scale: 6.5, Seed: 1234567890123, Size: 64x48, "
        "Model hash: 9f86d081884c, Model: embedded"
    )


def test_an_upscaled_image_names_the_size_it_was_drawn_at_after_its_own() -> None:
    plain = replace(FULL, mix=(), guidance=None, width=256, height=256)
    upscaled = replace(plain, params={**plain.params, "upscale": True, "width": 64, "height": 64})
    assert "Size: 256x256, Upscale: 64x64 -> 256x256, Model hash" in _parameters(upscaled)
    assert "Upscale" not in _parameters(replace(plain, params={**plain.params, "upscale": False}))
    assert read_png_metadata(encode_png(Image.new("RGB", (256, 256)), upscaled)) == upscaled


def test_a1111_parameters_of_a_guided_mixed_image_name_the_guidance_and_every_ingredient() -> None:
    recipe = replace(FULL, params={**FULL.params, "interpolation": 0.25})
    text = _parameters(recipe)
    assert text.endswith(
        "Model hash: 9f86d081884c, Model: embedded, "
        'Image guidance: "cdcdcdcdcd, scale 0.005, decay linear", '
        'Mix: "\\"a red circle\\" +1, ababababab -0.5", Mix space: image, Interpolation: 0.25'
    ), "a recipe older than mix_space mixed in image space"
    settings = parse_a1111(text)["settings"]
    assert settings["Image guidance"] == "cdcdcdcdcd, scale 0.005, decay linear"
    assert settings["Mix"] == '"a red circle" +1, ababababab -0.5'
    assert parse_a1111(text)["prompt"] == FULL.prompt
    assert read_png_metadata(encode_png(Image.new("RGB", (4, 4)), recipe)) == recipe  # the JSON chunk as is


def test_a1111_parameters_name_the_space_a_mix_used() -> None:
    text_space = replace(FULL, params={**FULL.params, "mix_space": "text"})
    assert parse_a1111(_parameters(text_space))["settings"]["Mix space"] == "text"
    assert "Mix space" not in parse_a1111(_parameters(replace(text_space, mix=())))["settings"]


def test_a_mix_only_image_shows_its_ingredients_on_the_prompt_line() -> None:
    recipe = Recipe(
        prompt="",
        steps=2,
        seed=1,
        mix=({"weight": -1.0, "text": "red"}, {"weight": 1.0, "text": "blue, bright"}),
    )
    parsed = parse_a1111(_parameters(recipe))
    assert parsed["prompt"] == '"red" -1, "blue, bright" +1'
    assert parsed["settings"]["Mix"] == '"red" -1, "blue, bright" +1'
    assert read_png_metadata(encode_png(Image.new("RGB", (4, 4)), recipe)).prompt == ""


def test_non_latin1_prompts_survive() -> None:
    recipe = Recipe(prompt="ein rötlicher Kreis — 赤い円", steps=2, sampler="ddim", cfg_scale=4.0, seed=1)
    data = encode_png(Image.new("RGB", (8, 8)), recipe)
    assert read_png_metadata(data) == recipe
    with Image.open(io.BytesIO(data)) as image:
        assert Recipe.from_a1111(image.info["parameters"]).prompt == recipe.prompt


def test_a1111_only_pngs_from_other_tools_are_read() -> None:
    text = (
        "masterpiece, a castle\nat dusk\n"
        "Negative prompt: lowres,\nbad anatomy\n"
        "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x768, Model hash: 6ce0161689, "
        'Model: v1-5-pruned, Lora hashes: "add_detail: 7c6bad76eb54, more: 1", Version: v1.6.0'
    )
    recipe = read_png_metadata(_png_with_text(parameters=text))
    assert recipe.prompt == "masterpiece, a castle\nat dusk"
    assert recipe.negative_prompt == "lowres,\nbad anatomy"
    assert (recipe.steps, recipe.sampler, recipe.cfg_scale, recipe.seed) == (30, "DPM++ 2M Karras", 7.0, 42)
    assert (recipe.width, recipe.height, recipe.model_name) == (512, 768, "v1-5-pruned")
    assert recipe.extra == {"Lora hashes": "add_detail: 7c6bad76eb54, more: 1", "Version": "v1.6.0"}


def test_a1111_without_negative_prompt_or_settings() -> None:
    assert parse_a1111("a cat\nSteps: 4, Sampler: Euler a, Seed: 9") == {
        "prompt": "a cat",
        "negative_prompt": "",
        "settings": {"Steps": "4", "Sampler": "Euler a", "Seed": "9"},
    }
    only_prompt = parse_a1111("a cat, sitting: on a mat")
    assert only_prompt == {"prompt": "a cat, sitting: on a mat", "negative_prompt": "", "settings": {}}


def test_pngs_without_a_recipe_and_non_pngs_are_refused_by_field() -> None:
    for data, message in (
        (_png_with_text(), "no generation parameters"),
        (b"GIF89a....", "not a readable image"),
    ):
        with pytest.raises(ValidationFailed, match=message) as error:
            read_png_metadata(data)
        assert error.value.field == "image"


_LINE_CHARS = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
_line = (
    st.text(_LINE_CHARS, max_size=30)
    .map(str.strip)
    .filter(lambda line: not line.startswith("Negative prompt:"))
)
_block = st.lists(_line, max_size=4).map("\n".join).map(str.strip)
_key = (
    st.text(string.ascii_letters + string.digits + " _-/", min_size=1, max_size=15)
    .map(str.strip)
    .filter(lambda key: len(key) >= 2 and key[0].isalnum())
)
_value = st.text(st.characters(blacklist_categories=("Cs",)), max_size=25)


@settings(max_examples=300, deadline=None)
@given(prompt=_block, negative=_block, settings_=st.dictionaries(_key, _value, min_size=3, max_size=8))
def test_a1111_format_then_parse_gives_back_what_was_written(
    prompt: str, negative: str, settings_: dict[str, str]
) -> None:
    parsed = parse_a1111(format_a1111(prompt, negative, settings_))
    assert parsed == {"prompt": prompt, "negative_prompt": negative, "settings": settings_}
