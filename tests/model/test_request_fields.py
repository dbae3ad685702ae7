"""The one declaration of a generation request's fields: docs/LIMITS.md states it, the REST schema and the
engine enforce it, and a model can only narrow it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from model.engine.engine_common import GenerationRequest, ModelInfo, RequestError
from model.engine.request_fields import FIELDS, MAX_STEPS, model_bounds
from model.engine.validation import resolve_request
from webapp.schemas import GenerationBody, MixIngredientBody

LIMITS = Path(__file__).resolve().parents[2] / "docs" / "LIMITS.md"
INFO = ModelInfo(
    name="m",
    family="kandinsky22",
    path="/m",
    hash="ab" * 32,
    default_steps=25,
    default_guidance=4.0,
    default_scheduler="ddim",
    schedulers=("ddim",),
    default_size=(64, 64),
    sizes=((64, 64),),
)


def documented() -> dict[str, str]:
    """The 'declared' column of the first table in docs/LIMITS.md, by field name."""
    rows: dict[str, str] = {}
    for line in LIMITS.read_text().split("\n## ")[0].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("field", "---"):
            rows.update({name.strip(): cells[1] for name in cells[0].split(",")})
    return rows


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_limits_md_states_each_declared_range(name: str) -> None:
    assert documented().get(name) == FIELDS[name].describe(), f"docs/LIMITS.md disagrees on {name}"


def json_bounds(schema: dict) -> dict[str, object]:
    options = schema.get("anyOf", [schema])
    found: dict[str, object] = {}
    for option in options:
        found.update(
            {key: option[key] for key in ("minimum", "maximum", "maxLength", "maxItems") if key in option}
        )
    return found


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_the_rest_schema_uses_the_declared_range_and_help(name: str) -> None:
    body, _, item = name.partition(".")
    model = MixIngredientBody if item else GenerationBody
    schema = model.model_json_schema()["properties"][item or body]
    declared = FIELDS[name]
    bounds = (("minimum", declared.low), ("maximum", declared.high))
    expected = {key: value for key, value in bounds if value is not None}
    if declared.max_length is not None:
        expected["maxItems" if declared.kind is list else "maxLength"] = declared.max_length
    if name != "guidance_image":  # over REST an upload id, whose range is the id's (webapp.schemas.UploadRef)
        assert json_bounds(schema) == expected
    assert schema["description"] == declared.help


def test_a_model_narrows_the_declared_ranges_but_never_widens_them() -> None:
    generous = dataclasses.replace(INFO, max_steps=MAX_STEPS * 3, max_images=99)
    assert model_bounds(generous)["steps"] == (1, MAX_STEPS)
    with pytest.raises(RequestError, match="steps"):
        resolve_request(GenerationRequest(prompt="x", steps=MAX_STEPS + 1), generous)
    narrow = dataclasses.replace(INFO, max_steps=10, max_images=2)
    assert model_bounds(narrow)["steps"] == (1, 10) and model_bounds(narrow)["num_images"] == (1, 2)
    with pytest.raises(RequestError, match="num_images"):
        resolve_request(GenerationRequest(prompt="x", num_images=3), narrow)


def test_the_declared_seed_range_is_the_one_every_layer_takes() -> None:
    high = int(FIELDS["seed"].high or 0)
    assert resolve_request(GenerationRequest(prompt="x", seed=high), INFO).seed == high
    with pytest.raises(RequestError, match="seed"):
        resolve_request(GenerationRequest(prompt="x", seed=high + 1), INFO)
    assert re.search(rf"\b{high}\b", LIMITS.read_text())
