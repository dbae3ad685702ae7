"""Requests are validated before they reach a model: defaults resolved, bad fields named."""

from __future__ import annotations

import math

import PIL.Image
import pytest

from model.engine.engine_common import GenerationRequest, MixIngredient, ModelInfo, RequestError
from model.engine.request_fields import MAX_TEXT_CHARS as MAX_PROMPT_CHARS
from model.engine.validation import resolve_request

EMBEDDED = ModelInfo(
    name="embedded",
    family="kandinsky22",
    path="/m",
    hash="ab" * 32,
    default_steps=25,
    default_guidance=4.0,
    default_scheduler="ddpm",
    schedulers=("ddpm", "ddim", "dpmpp"),
    default_size=(64, 64),
    sizes=((64, 64),),
)
SD = ModelInfo(
    name="sd",
    family="stable-diffusion",
    path="/m",
    hash="cd" * 32,
    default_steps=30,
    default_guidance=7.5,
    default_scheduler="pndm",
    schedulers=("ddpm", "ddim", "dpmpp", "pndm"),
    default_size=(512, 512),
    size_multiple=8,
    min_size=128,
    max_size=1024,
    image_ingredients=False,
)
RED = PIL.Image.new("RGB", (8, 8), "red")


def field_of(request: GenerationRequest, info: ModelInfo = EMBEDDED) -> str:
    with pytest.raises(RequestError) as caught:
        resolve_request(request, info)
    assert str(caught.value).startswith(caught.value.field + ": ")
    return caught.value.field


def test_defaults_and_a_seed_are_resolved() -> None:
    resolved = resolve_request(GenerationRequest(prompt="a red circle"), EMBEDDED)
    assert (resolved.steps, resolved.guidance_scale, resolved.width, resolved.height) == (25, 4.0, 64, 64)
    assert resolved.scheduler == "ddpm"
    assert isinstance(resolved.seed, int) and 0 <= resolved.seed < 2**32
    assert (
        resolve_request(GenerationRequest(prompt="x", seed=7, scheduler="DDIM"), EMBEDDED).scheduler == "ddim"
    )
    assert resolve_request(GenerationRequest(prompt="x", seed=7), EMBEDDED).seed == 7


def test_random_seeds_differ() -> None:
    seeds = {resolve_request(GenerationRequest(prompt="x"), EMBEDDED).seed for _ in range(5)}
    assert len(seeds) > 1


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (GenerationRequest(prompt="   "), "prompt"),
        (GenerationRequest(prompt="x" * (MAX_PROMPT_CHARS + 1)), "prompt"),
        (GenerationRequest(prompt="x", negative_prompt="y" * (MAX_PROMPT_CHARS + 1)), "negative_prompt"),
        (GenerationRequest(prompt="x", steps=0), "steps"),
        (GenerationRequest(prompt="x", steps=151), "steps"),
        (GenerationRequest(prompt="x", steps=2.5), "steps"),  # type: ignore[arg-type]
        (GenerationRequest(prompt="x", guidance_scale=math.nan), "guidance_scale"),
        (GenerationRequest(prompt="x", guidance_scale=math.inf), "guidance_scale"),
        (GenerationRequest(prompt="x", guidance_scale=31), "guidance_scale"),
        (GenerationRequest(prompt="x", guidance_scale=-1), "guidance_scale"),
        (GenerationRequest(prompt="x", width=128, height=128), "width"),
        (GenerationRequest(prompt="x", num_images=0), "num_images"),
        (GenerationRequest(prompt="x", num_images=9), "num_images"),
        (GenerationRequest(prompt="x", num_images=True), "num_images"),  # type: ignore[arg-type]
        (GenerationRequest(prompt="x", scheduler="euler"), "scheduler"),
        (GenerationRequest(prompt="x", seed=-1), "seed"),
        (GenerationRequest(prompt="x", seed=2**32), "seed"),
        (GenerationRequest(prompt="x", image_guidance_scale=0.5), "guidance_image"),
        (GenerationRequest(prompt="x", guidance_image=RED, image_guidance_scale=1.5), "image_guidance_scale"),
        (
            GenerationRequest(prompt="x", guidance_image=RED, image_guidance_scale=math.nan),
            "image_guidance_scale",
        ),
        (GenerationRequest(prompt="x", image_guidance_decay="exp"), "image_guidance_decay"),
        (GenerationRequest(prompt="x", guidance_image="red.png"), "guidance_image"),  # type: ignore[arg-type]
        (GenerationRequest(prompt="x", mix=(MixIngredient(weight=math.inf, text="red"),)), "mix[0].weight"),
        (GenerationRequest(prompt="x", mix=(MixIngredient(weight=11, text="red"),)), "mix[0].weight"),
        (GenerationRequest(prompt="x", mix=(MixIngredient(weight=1),)), "mix[0]"),
        (GenerationRequest(prompt="x", mix=(MixIngredient(weight=1, text="a", image=RED),)), "mix[0]"),
        (GenerationRequest(prompt="x", mix=(MixIngredient(weight=1, text=" "),)), "mix[0].text"),
        (GenerationRequest(prompt="x", mix=(MixIngredient(1, text="a"),) * 9), "mix"),
        (GenerationRequest(prompt="x", interpolation=0.5), "interpolation"),
        (GenerationRequest(mix=(MixIngredient(1, text="a"),), interpolation=0.5), "interpolation"),
        (
            GenerationRequest(
                mix=(MixIngredient(1, text="a"), MixIngredient(1, text="b")), interpolation=1.5
            ),
            "interpolation",
        ),
        (GenerationRequest(prompt="x", dynamic_thresholding=1), "dynamic_thresholding"),  # type: ignore[arg-type]
        (GenerationRequest(prompt="x", user=""), "user"),
    ],
)
def test_bad_requests_name_the_field(request_: GenerationRequest, field: str) -> None:
    assert field_of(request_) == field


def test_mix_makes_the_prompt_optional_and_counts_it_as_an_ingredient() -> None:
    two = (MixIngredient(1.0, text="red"), MixIngredient(-0.5, text="blue"))
    assert resolve_request(GenerationRequest(mix=two, interpolation=0.3), EMBEDDED).interpolation == 0.3
    with_prompt = GenerationRequest(prompt="a circle", mix=two[:1], interpolation=0.3)
    assert resolve_request(with_prompt, EMBEDDED).ingredients()[0].text == "a circle"
    assert field_of(GenerationRequest(prompt="a circle", mix=two, interpolation=0.3)) == "interpolation"


def test_stable_diffusion_sizes_are_multiples_within_bounds() -> None:
    assert resolve_request(GenerationRequest(prompt="x", width=256, height=768), SD).width == 256
    assert field_of(GenerationRequest(prompt="x", width=260, height=256), SD) == "width"
    assert field_of(GenerationRequest(prompt="x", width=2048, height=256), SD) == "width"


def test_image_ingredients_need_a_model_that_can_mix_images() -> None:
    request = GenerationRequest(prompt="x", mix=(MixIngredient(1.0, image=RED),))
    assert field_of(request, SD) == "mix[0].image"
    assert resolve_request(request, EMBEDDED).mix[0].image is RED


def test_dynamic_thresholding_needs_a_thresholding_scheduler() -> None:
    assert field_of(GenerationRequest(prompt="x", dynamic_thresholding=True), SD) == "dynamic_thresholding"
    resolve_request(GenerationRequest(prompt="x", dynamic_thresholding=True, scheduler="ddim"), SD)


def test_not_a_request() -> None:
    with pytest.raises(RequestError) as caught:
        resolve_request({"prompt": "x"}, EMBEDDED)  # type: ignore[arg-type]
    assert caught.value.field == "request"


@pytest.mark.parametrize(
    ("size", "limit"),
    [((16_000_000, 1), "4096 pixels per side"), ((9, 1), "aspect ratio limit is 1:8"), ((1, 9), "1:8")],
)
def test_reference_and_mix_images_that_would_not_fit_are_refused_before_running(
    size: tuple[int, int], limit: str
) -> None:
    strip = PIL.Image.new("L", size)
    for request, field in (
        (GenerationRequest(prompt="x", guidance_image=strip, image_guidance_scale=0.5), "guidance_image"),
        (GenerationRequest(prompt="x", mix=(MixIngredient(1.0, image=strip),)), "mix[0].image"),
    ):
        with pytest.raises(RequestError, match=limit) as caught:
            resolve_request(request, EMBEDDED)
        assert caught.value.field == field
    resolve_request(
        GenerationRequest(prompt="x", mix=(MixIngredient(1.0, image=PIL.Image.new("L", (8, 1))),)), EMBEDDED
    )
