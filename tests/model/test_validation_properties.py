"""Properties of request validation: whatever a caller puts in any field, `resolve_request` either
returns a request inside every limit (and resolving it again changes nothing) or raises a
RequestError naming one of the request's fields; it never fails any other way."""

from __future__ import annotations

import dataclasses
import math

import PIL.Image
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from model.engine.engine_common import GenerationRequest, MixIngredient, ModelInfo, RequestError
from model.engine.request_fields import MAX_GUIDANCE, MAX_INGREDIENTS, MAX_SEED
from model.engine.request_fields import MAX_TEXT_CHARS as MAX_PROMPT_CHARS
from model.engine.validation import resolve_request

MODELS = [
    ModelInfo(
        name="embedded",
        family="kandinsky22",
        path="/m",
        hash="ab" * 32,
        default_steps=25,
        default_guidance=4.0,
        default_scheduler="ddim",
        schedulers=("ddpm", "ddim", "dpmpp"),
        default_size=(64, 64),
        sizes=((64, 64),),
    ),
    ModelInfo(
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
    ),
]
FIELDS = {f.name for f in dataclasses.fields(GenerationRequest)} | {"request"}
PICTURE = PIL.Image.new("RGB", (8, 8), "red")

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
)
weights = st.one_of(st.floats(), st.integers(-20, 20), st.booleans(), st.none())
ingredients = st.builds(
    MixIngredient,
    weight=weights,
    text=st.one_of(st.none(), st.text(max_size=10), st.just(" ")),
    image=st.one_of(st.none(), st.just(PICTURE), st.just(PIL.Image.new("RGB", (0, 4)))),
)
good_ingredients = st.builds(
    MixIngredient, weight=st.floats(-10, 10), text=st.text(min_size=1).filter(str.strip)
)
valid = st.builds(
    GenerationRequest,
    prompt=st.text(min_size=1, max_size=40).filter(str.strip),
    negative_prompt=st.text(max_size=20).filter(lambda text: "\x00" not in text),
    seed=st.none() | st.integers(0, MAX_SEED),
    steps=st.none() | st.integers(1, 150),
    guidance_scale=st.none() | st.floats(0, MAX_GUIDANCE),
    num_images=st.integers(1, 8),
    scheduler=st.sampled_from([None, "ddpm", "DDIM", "dpmpp"]),
    guidance_image=st.none() | st.just(PICTURE),
    image_guidance_decay=st.sampled_from(["none", "linear", "cosine"]),
    mix=st.lists(good_ingredients, max_size=3).map(tuple),
    user=st.text(min_size=1, max_size=200),
)
"""Requests every model here accepts (the image guidance scale stays 0: it needs a guidance image)."""
EDGES: dict[str, st.SearchStrategy] = {
    "prompt": st.one_of(
        st.text(min_size=MAX_PROMPT_CHARS - 1, max_size=MAX_PROMPT_CHARS + 1),
        st.sampled_from(["", "   ", "a\x00b"]),
    ),
    "negative_prompt": st.text(min_size=MAX_PROMPT_CHARS - 1, max_size=MAX_PROMPT_CHARS + 1),
    "seed": st.sampled_from([-1, 0, MAX_SEED, MAX_SEED + 1]),
    "steps": st.sampled_from([0, 1, 150, 151]),
    "guidance_scale": st.floats(-1, MAX_GUIDANCE + 1),
    "num_images": st.integers(0, 9),
    "width": st.sampled_from([63, 64, 128, 512, 1024, 1032]),
    "height": st.sampled_from([64, 128, 512, 2048]),
    "scheduler": st.sampled_from(["pndm", "euler", "", "DDPM"]),
    "guidance_image": st.sampled_from(["red.png", PIL.Image.new("RGB", (0, 4))]),
    "image_guidance_scale": st.floats(-0.1, 1.1),
    "image_guidance_decay": st.sampled_from(["exp", "NONE"]),
    "mix": st.lists(ingredients, max_size=MAX_INGREDIENTS + 1).map(tuple),
    "interpolation": st.floats(-0.1, 1.1),
    "user": st.text(min_size=199, max_size=201),
}
"""Values on both sides of each field's limits, and values a confused caller might send."""
FIELD_NAMES = sorted(FIELDS - {"request"})


@st.composite
def requests(draw: st.DrawFn) -> GenerationRequest:
    """A valid request with up to three fields replaced by an edge value or a value of any type."""
    names = draw(st.sets(st.sampled_from(FIELD_NAMES), max_size=3))
    changes = {name: draw(st.one_of(EDGES.get(name, anything), anything)) for name in names}
    return dataclasses.replace(draw(valid), **changes)


def within_limits(resolved: GenerationRequest, info: ModelInfo) -> None:
    assert isinstance(resolved.prompt, str) and len(resolved.prompt) <= MAX_PROMPT_CHARS
    assert "\x00" not in resolved.prompt + resolved.negative_prompt
    assert resolved.prompt.strip() or resolved.mix
    assert type(resolved.steps) is int and 1 <= resolved.steps <= info.max_steps
    assert type(resolved.num_images) is int and 1 <= resolved.num_images <= info.max_images
    assert type(resolved.seed) is int and 0 <= resolved.seed <= MAX_SEED
    assert isinstance(resolved.guidance_scale, float) and 0 <= resolved.guidance_scale <= MAX_GUIDANCE
    assert info.size_allowed(resolved.width, resolved.height)
    assert resolved.scheduler in info.schedulers
    assert math.isfinite(resolved.image_guidance_scale) and 0 <= resolved.image_guidance_scale <= 1
    assert resolved.image_guidance_scale == 0 or resolved.guidance_image is not None
    assert resolved.interpolation is None or 0 <= resolved.interpolation <= 1
    assert len(resolved.mix) <= MAX_INGREDIENTS
    for item in resolved.mix:
        assert math.isfinite(item.weight) and abs(item.weight) <= 10
        assert (item.text is None) != (item.image is None)
        assert item.image is None or info.image_ingredients


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests(), info=st.sampled_from(MODELS))
def test_any_request_resolves_within_limits_or_names_its_field(
    request: GenerationRequest, info: ModelInfo
) -> None:
    try:
        resolved = resolve_request(request, info)
    except RequestError as error:
        assert error.field in FIELDS or error.field.startswith("mix["), error.field
        assert str(error).startswith(f"{error.field}: ") and len(str(error)) > len(error.field) + 2
        event(f"refused: {error.field.split('[')[0]}")
        return
    event("resolved")
    within_limits(resolved, info)
    assert resolve_request(resolved, info) == resolved


@settings(max_examples=200, deadline=None)
@given(value=anything)
def test_anything_that_is_not_a_request_is_refused(value: object) -> None:
    try:
        resolve_request(value, MODELS[0])  # type: ignore[arg-type]
    except RequestError as error:
        assert error.field == "request"
    else:
        raise AssertionError("accepted a non-request")
