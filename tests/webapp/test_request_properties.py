"""Properties of the request check.

For any JSON a client sends as `POST /generations`, the body schema either refuses it with errors the API
can name field by field, or hands the engine a request that it resolves or refuses by field.

And the three ways in, the REST API, the Generate tab's handler and the engine itself, accept and refuse
exactly the same requests, naming the same field: all three read one declaration
(model/engine/request_fields.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import gradio as gr
import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from model.engine.engine_common import GenerationRequest, MixIngredient, ModelInfo, RequestError
from model.engine.request_fields import DEFAULT_MIX_SPACE, FIELDS, MAX_TEXT_CHARS, MIX_SPACES
from model.engine.validation import resolve_request
from storage.types import Role, UserInfo
from tests.webapp.conftest import Live
from webapp.api.generations import job_request
from webapp.errors import validation_detail
from webapp.schemas import GenerationBody
from webapp.ui.common import ImageFiles
from webapp.ui.generate import RANDOM_SEED, GenerateTab

EMBEDDED = ModelInfo(
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
)
NOW = datetime.now(UTC)
CALLER = UserInfo(
    id=1,
    username="ada",
    display_name="Ada",
    role=Role.MEMBER,
    active=True,
    must_change_password=False,
    created_at=NOW,
    updated_at=NOW,
    last_login_at=None,
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
printable = st.characters(blacklist_categories=("Cc", "Cs"))
plausible = {
    "prompt": st.text(printable, max_size=30),
    "negative_prompt": st.text(max_size=10),
    "seed": st.integers(-1, 2**32),
    "steps": st.integers(0, 160),
    "guidance_scale": st.floats(-1, 55),
    "width": st.sampled_from([16, 64, 128]),
    "height": st.sampled_from([16, 64, 2048]),
    "num_images": st.integers(0, 9),
    "scheduler": st.sampled_from(["ddim", "DDPM", "warp"]),
    "image_guidance_scale": st.floats(-1, 2),
    "image_guidance_decay": st.sampled_from(["none", "cosine", "exp"]),
    "interpolation": st.floats(-1, 2),
    "mix": st.lists(
        st.fixed_dictionaries(
            {"text": st.text(printable, max_size=8)}, optional={"weight": st.floats(-12, 12)}
        ),
        max_size=3,
    ),
}
bodies = st.one_of(
    st.fixed_dictionaries(
        {"prompt": st.text(printable, min_size=1, max_size=30)},
        optional={key: value for key, value in plausible.items() if key != "prompt"},
    ),
    st.fixed_dictionaries(
        {}, optional={key: st.one_of(value, json_values) for key, value in plausible.items()}
    ),
    st.dictionaries(
        st.sampled_from([*plausible, "user", "colour", "guidance_image"]), json_values, max_size=4
    ),
    json_values,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
def test_any_json_body_is_refused_by_field_or_resolved_within_limits(body: object) -> None:
    try:
        parsed = GenerationBody.model_validate_json(json.dumps(body))
    except ValidationError as exc:
        detail = validation_detail(RequestValidationError(exc.errors()))
        assert detail and all(isinstance(item["field"], str) and item["message"] for item in detail)
        event("refused by the schema")
        return
    request = job_request(parsed).engine_request(CALLER.username, images={})
    try:
        resolved = resolve_request(request, EMBEDDED)
    except RequestError as error:
        assert str(error).startswith(f"{error.field}: ")
        event("refused by the engine")
        return
    event("resolved")
    assert (resolved.width, resolved.height) == (64, 64) and 1 <= resolved.steps <= EMBEDDED.max_steps
    assert resolved.user == "ada" and resolved.prompt == parsed.prompt


# REST, UI and engine agree ------------------------------------------------------------------------

texts = st.one_of(
    st.text(printable, min_size=1, max_size=12).filter(str.strip),
    st.sampled_from(["", "  ", "a\x01b", "tab\tok", "x" * (MAX_TEXT_CHARS + 1)]),
)


def edges(name: str, *, high: float | None = None) -> st.SearchStrategy:
    """Values on both sides of a declared range (or of the model's narrower ``high``)."""
    field = FIELDS[name]
    low, top = field.low, field.high if high is None else high
    if field.kind is int:
        return st.sampled_from([int(low) - 1, int(low), int(top), int(top) + 1, int(field.high) + 1])
    return st.one_of(st.sampled_from([low, top]), st.floats(low - 1, top + 1, allow_nan=False))


good_texts = st.text(printable, min_size=1, max_size=12).filter(str.strip)


@st.composite
def form_requests(draw: st.DrawFn, info: ModelInfo) -> dict[str, Any]:
    """A valid request every front end can express, with one field set to any value, limits' edges included
    (one field, so that every layer has exactly one field to name when it refuses). The form spells an absent
    seed -1 ("random"), so that value means something else there and is left out."""
    mix = draw(st.lists(st.fixed_dictionaries({"text": good_texts, "weight": st.floats(-2, 2)}), max_size=3))
    prompt = draw(good_texts) if not mix else draw(st.one_of(st.just(""), good_texts))
    fields: dict[str, Any] = {"prompt": prompt, "seed": 7, **({"mix": mix} if mix else {})}
    choices = {
        "prompt": texts,
        "negative_prompt": texts,
        "seed": st.one_of(edges("seed").filter(lambda seed: seed != RANDOM_SEED), st.just(-2)),
        "steps": edges("steps", high=info.max_steps),
        "guidance_scale": edges("guidance_scale"),
        "num_images": edges("num_images", high=info.max_images),
        "interpolation": edges("interpolation"),
        "mix_space": st.sampled_from(MIX_SPACES),
    }
    if mix:
        choices |= {"mix.text": texts, "mix.weight": edges("mix.weight")}
    name = draw(st.sampled_from(sorted(choices)))
    if name.startswith("mix."):
        index = draw(st.integers(0, len(mix) - 1))
        mix[index] = {**mix[index], name.split(".")[1]: draw(choices[name])}
    else:
        fields[name] = draw(choices[name])
    return fields


def rest_outcome(
    live: Live, user: UserInfo, fields: dict[str, Any]
) -> tuple[set[str], GenerationRequest | None]:
    try:
        body = GenerationBody.model_validate_json(json.dumps(fields))
    except ValidationError as exc:
        return {item["field"] for item in validation_detail(RequestValidationError(exc.errors()))}, None
    return service_outcome(live, user, job_request(body))


def ui_outcome(
    live: Live, tab: GenerateTab, user: UserInfo, fields: dict[str, Any]
) -> tuple[set[str], GenerationRequest | None]:
    """The Generate handler's own parse, then the service call it makes (without running the job)."""
    values = {component: component.value for component in tab.generate_inputs}
    mix = fields.get("mix", [])
    values.update(
        {
            tab.prompt: fields["prompt"],
            tab.negative: fields.get("negative_prompt", ""),
            tab.seed: fields["seed"],
            tab.mix_count: len(mix),
            tab.interp_on: "interpolation" in fields,
            tab.interp: fields.get("interpolation", 0.5),
            tab.mix_space: fields.get("mix_space", DEFAULT_MIX_SPACE),
        }
    )
    numbers = (("steps", tab.steps), ("guidance_scale", tab.cfg), ("num_images", tab.count))
    values.update({component: fields[name] for name, component in numbers if name in fields})
    for slot, item in zip(tab.slots, mix, strict=False):
        values.update({slot.kind: "text", slot.text: item["text"], slot.weight: item["weight"]})
    return service_outcome(live, user, tab.job_request(user, values))


def service_outcome(live: Live, user: UserInfo, job: Any) -> tuple[set[str], GenerationRequest | None]:
    try:
        return set(), live.studio.jobs.check(user, job).request
    except RequestError as error:
        return {rest_spelling(error.field)}, None


def engine_outcome(
    live: Live, user: UserInfo, fields: dict[str, Any]
) -> tuple[set[str], GenerationRequest | None]:
    mix = tuple(MixIngredient(weight=item["weight"], text=item["text"]) for item in fields.get("mix", []))
    request = GenerationRequest(
        user=user.username, mix=mix, **{k: v for k, v in fields.items() if k != "mix"}
    )
    try:
        return set(), live.engine.validate(request)
    except RequestError as error:
        return {rest_spelling(error.field)}, None


def rest_spelling(field: str) -> str:
    """The engine names mix items `mix[0].text`; JSON paths, as the API reports them, `mix.0.text`."""
    return re.sub(r"\[(\d+)\]", r".\1", field)


@pytest.fixture(scope="module")
def front_ends(live: Live) -> Iterator[tuple[GenerateTab, UserInfo]]:
    with gr.Blocks():
        tab = GenerateTab(live.studio, ImageFiles(live.studio))
    yield tab, live.person().user


def test_rest_ui_and_engine_accept_and_refuse_the_same_requests(live: Live, front_ends: tuple) -> None:
    tab, user = front_ends

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(fields=form_requests(live.engine.model_info))
    def agree(fields: dict[str, Any]) -> None:
        engine = engine_outcome(live, user, fields)
        rest, ui = rest_outcome(live, user, fields), ui_outcome(live, tab, user, fields)
        event("accepted" if engine[1] else f"refused: {sorted(engine[0])}")
        assert rest == engine, (fields, rest, engine)
        assert ui == engine, (fields, ui, engine)

    agree()
