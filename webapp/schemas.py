"""Request and response bodies of the REST API (pydantic).

A generation body's fields take their ranges, defaults and descriptions from the one declaration in
`model/engine/request_fields.py`, so the API refuses exactly what the engine refuses, naming the same
field; the engine then narrows the ranges to what the loaded model supports (its steps, sizes, image
count and candidates). Unknown fields, wrong JSON types, NaN and infinities are refused (422) rather
than coerced.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model.engine.request_fields import (
    EMPTY_REQUEST,
    FIELDS,
    Decay,
    MixSpace,
    interpolation_problem,
    text_problem,
)
from storage.services.reviews import MAX_COMMENT as MAX_COMMENT_CHARS
from storage.services.users import MIN_PASSWORD

UploadRef = Annotated[int, Field(ge=1, le=2**62)] | Annotated[str, Field(pattern=r"^[0-9]{1,18}$")]
"""An upload id, as a number or the string of one (the API documents ids as strings)."""


def reject_control_characters(text: str) -> str:
    """Prompts end up in PNG chunks, logs and HTML: control characters have no business there, nor do
    bidirectional controls."""
    problem = text_problem(text)
    if problem:
        raise ValueError(problem)
    return text


def declared(name: str, default: Any = None, **extra: Any) -> Any:
    """A pydantic Field carrying the declared range, length and help of request field ``name``."""
    field = FIELDS[name]
    pairs = (("ge", field.low), ("le", field.high), ("max_length", field.max_length))
    limits: dict[str, Any] = {key: value for key, value in pairs if value is not None}
    if "default_factory" not in extra:
        extra["default"] = field.default if default is None else default
    return Field(description=field.help, **limits, **extra)


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class MixIngredientBody(StrictBody):
    """One mix ingredient as a client sends it: a text or an upload id, with a signed weight."""

    text: str | None = declared("mix.text")
    image: UploadRef | None = Field(default=None, description="an upload id")
    weight: float = declared("mix.weight")

    @field_validator("text")
    @classmethod
    def _text_clean(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is empty")
        return None if value is None else reject_control_characters(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> MixIngredientBody:
        if (self.text is None) == (self.image is None):
            raise ValueError("give exactly one of text or image")
        return self


class GenerationBody(StrictBody):
    """`POST /api/v1/generations`; absent fields take the model's defaults."""

    prompt: str = declared("prompt")
    negative_prompt: str = declared("negative_prompt")
    seed: int | None = declared("seed")
    steps: int | None = declared("steps")
    guidance_scale: float | None = declared("guidance_scale")
    width: int | None = declared("width")
    height: int | None = declared("height")
    num_images: int = declared("num_images")
    scheduler: str | None = declared("scheduler")
    candidates: int | None = declared("candidates")
    guidance_image: UploadRef | None = declared("guidance_image")
    image_guidance_scale: float = declared("image_guidance_scale")
    image_guidance_decay: Decay = declared("image_guidance_decay")
    mix: list[MixIngredientBody] = declared("mix", default_factory=list)
    interpolation: float | None = declared("interpolation")
    mix_space: MixSpace = declared("mix_space")
    upscale: bool = declared("upscale")

    @field_validator("prompt", "negative_prompt")
    @classmethod
    def _clean(cls, value: str) -> str:
        return reject_control_characters(value)

    @model_validator(mode="after")
    def _something_to_draw(self) -> GenerationBody:
        if not self.prompt.strip() and not self.mix:
            raise ValueError(f"prompt: {EMPTY_REQUEST}")
        problem = None if self.interpolation is None else interpolation_problem(self.prompt, len(self.mix))
        if problem:
            raise ValueError(f"interpolation: {problem}")
        return self


class ReviewBody(StrictBody):
    decision: Literal["approve", "reject", "request_changes"]
    comment: str = Field(default="", max_length=MAX_COMMENT_CHARS)

    @field_validator("comment")
    @classmethod
    def _clean(cls, value: str) -> str:
        return reject_control_characters(value)


class SubmitBody(StrictBody):
    """`POST /images/{id}/submit`, optional: the earlier image of yours this one revises."""

    revision_of: int | None = Field(
        default=None,
        ge=1,
        le=2**63 - 1,
        description="the id of an earlier image of yours that this one revises",
    )


class UserCreateBody(StrictBody):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    role: Literal["member", "reviewer", "admin"] = "member"
    password: str | None = Field(default=None, min_length=MIN_PASSWORD, max_length=256)


class UserPatchBody(StrictBody):
    role: Literal["member", "reviewer", "admin"] | None = None
    active: bool | None = None


class TokenCreateBody(StrictBody):
    user: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field(default="api", pattern=r"^[A-Za-z0-9_. -]{1,64}$")


class PasswordChangeBody(StrictBody):
    current_password: str = Field(max_length=256)
    new_password: str = Field(min_length=MIN_PASSWORD, max_length=256)


# Responses -------------------------------------------------------------------------------------


class FieldError(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """Every error answer (webapp.errors): a stable kind, and why: a message, or one entry per bad field."""

    error: str
    detail: list[FieldError] | str | None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorOut, "description": "invalid request: `detail` names each bad field"},
    "default": {"model": ErrorOut, "description": "an error (401, 403, 404, 409, 413, 415, 429, 500, 503)"},
}
"""Documented on every API route, replacing FastAPI's default 422 schema, which is not what we send."""


class UploadOut(BaseModel):
    id: int
    sha256: str
    width: int
    height: int


WARNINGS_HELP = (
    "words the model does not know (it reads each as its unknown token), one string per word naming the "
    'field and the word, e.g. "prompt: not known to this model: teal"'
)


class Accepted(BaseModel):
    id: int
    status: str
    warnings: list[str] = Field(default_factory=list, description=WARNINGS_HELP)


class ProgressOut(BaseModel):
    step: int = Field(description="denoising steps done, over all of the generation's images")
    total: int
    queue_position: int | None = Field(description="while queued: 0 starts next")
    eta_s: float | None = Field(default=None, description="estimated seconds left, once the engine can tell")
    stage: str | None = Field(default=None, description="while running: `prior` or `denoising`")
    images_done: int = 0
    running_images: list[int] = Field(
        default=[], description="indexes of the images being made now (they step together)"
    )
    image_step: int = Field(default=0, description="denoising steps done by each image being made now")
    image_steps: int = Field(default=0, description="denoising steps of one image")


class ImageOut(BaseModel):
    id: int
    url: str
    sha256: str
    width: int
    height: int
    review_status: str
    seed: int | None = Field(description="this image's own seed (image i of a generation uses seed + i)")
    revision_of: int | None = Field(default=None, description="the earlier image this one revises")


class GenerationOut(BaseModel):
    id: int
    status: str
    progress: ProgressOut
    seed: int | None
    params: dict[str, Any]
    error: str | None
    images: list[ImageOut]
    warnings: list[str] = Field(default_factory=list, description=WARNINGS_HELP)


class ReviewOut(BaseModel):
    id: int
    image_id: int
    decision: str
    comment: str
    reviewer: str
    review_status: str


class MeOut(BaseModel):
    name: str
    role: str
    must_change_password: bool


class UserOut(BaseModel):
    name: str
    role: str
    active: bool


class TokenOut(BaseModel):
    id: int
    user: str
    name: str
    token: str = Field(description="shown once; only its hash is kept")


class PromptItemOut(BaseModel):
    """One generation in the shared history, with its prompt."""

    generation_id: int
    prompt_id: int
    prompt: str
    negative_prompt: str
    author: str
    status: str
    seed: int | None
    created_at: datetime
    favourite: bool
    parent_prompt_id: int | None
    use_count: int
    images: list[ImageOut]


class PromptPage(BaseModel):
    items: list[PromptItemOut]
    total: int
    page: int
    page_size: int


class TokenInfoOut(BaseModel):
    id: int
    user: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ReplicaOut(BaseModel):
    """One model replica (``--engine ray``): no user names, job ids or addresses, as health needs no token."""

    id: str
    state: str
    running_jobs: int
    queued_jobs: int
    succeeded: int
    failed: int
    cancelled: int


class EngineOut(BaseModel):
    kind: str = Field(
        description="local: the model runs in the studio's process; ray: a Ray Serve deployment"
    )
    state: str | None = Field(None, description="ray: the Serve deployment's status, e.g. HEALTHY")
    replica_states: dict[str, int] = Field(default_factory=dict, description="ray: replicas per Serve state")
    replicas: list[ReplicaOut] = Field(default_factory=list, description="ray: each replica that answered")


class HealthOut(BaseModel):
    status: str
    model: str
    family: str
    auth: bool
    engine: EngineOut
