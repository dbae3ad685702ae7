"""Properties of the REST request check, before any server is involved: for any JSON a client sends
as `POST /generations`, the body schema either refuses it with errors the API can name field by field,
or hands the engine a request that it resolves or refuses by field. Nothing else can happen."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from model.engine.engine_common import ModelInfo, RequestError
from model.engine.validation import resolve_request
from storage.types import Role, UserInfo
from webapp.api.generations import spec_from_body
from webapp.errors import validation_detail
from webapp.jobs import JobRunner
from webapp.schemas import GenerationBody

EMBEDDED = ModelInfo(name="embedded", family="kandinsky22", path="/m", hash="ab" * 32, default_steps=25,
                     default_guidance=4.0, default_scheduler="ddim", schedulers=("ddpm", "ddim", "dpmpp"),
                     default_size=(64, 64), sizes=((64, 64),))
NOW = datetime.now(UTC)
CALLER = UserInfo(id=1, username="ada", display_name="Ada", role=Role.MEMBER, active=True,
                  must_change_password=False, created_at=NOW, updated_at=NOW, last_login_at=None)

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
printable = st.characters(blacklist_categories=("Cc", "Cs"))
plausible = {
    "prompt": st.text(printable, max_size=30), "negative_prompt": st.text(max_size=10),
    "seed": st.integers(-1, 2**32),
    "steps": st.integers(0, 160), "guidance_scale": st.floats(-1, 55), "width": st.sampled_from([16, 64, 128]),
    "height": st.sampled_from([16, 64, 2048]), "num_images": st.integers(0, 9),
    "scheduler": st.sampled_from(["ddim", "DDPM", "warp"]), "image_guidance_scale": st.floats(-1, 2),
    "image_guidance_decay": st.sampled_from(["none", "cosine", "exp"]), "interpolation": st.floats(-1, 2),
    "mix": st.lists(st.fixed_dictionaries({"text": st.text(printable, max_size=8)},
                                          optional={"weight": st.floats(-12, 12)}),
                    max_size=3),
}
bodies = st.one_of(
    st.fixed_dictionaries({"prompt": st.text(printable, min_size=1, max_size=30)},
                          optional={key: value for key, value in plausible.items() if key != "prompt"}),
    st.fixed_dictionaries({}, optional={key: st.one_of(value, json_values) for key, value in plausible.items()}),
    st.dictionaries(st.sampled_from([*plausible, "user", "colour", "guidance_image"]), json_values, max_size=4),
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
    request = JobRunner._engine_request(CALLER, spec_from_body(parsed), images={})
    try:
        resolved = resolve_request(request, EMBEDDED)
    except RequestError as error:
        assert str(error).startswith(f"{error.field}: ")
        event("refused by the engine")
        return
    event("resolved")
    assert (resolved.width, resolved.height) == (64, 64) and 1 <= resolved.steps <= EMBEDDED.max_steps
    assert resolved.user == "ada" and resolved.prompt == parsed.prompt
