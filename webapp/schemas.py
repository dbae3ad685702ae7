"""Request and response bodies of the REST API (pydantic), with the limits every request must meet.

Limits: prompt and negative prompt 1000 characters (the engine's), steps 1-500, size 16-2048 px a
side, 1-16 images, guidance scale 0-50, image guidance scale 0-1, up to 8 mix ingredients with
weights in [-10, 10]. The engine narrows these further to what the loaded model supports (its steps,
sizes and image count) and names the field when it refuses.
Unknown fields, wrong JSON types, NaN and infinities are refused (422) rather than coerced.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model.engine.validation import MAX_INGREDIENTS as MAX_MIX_INGREDIENTS
from model.engine.validation import MAX_PROMPT_CHARS
from storage.services.reviews import MAX_COMMENT as MAX_COMMENT_CHARS
from storage.services.users import MIN_PASSWORD
from storage.text import bidi_control_in

UploadRef = Annotated[int, Field(ge=1, le=2**62)] | Annotated[str, Field(pattern=r"^[0-9]{1,18}$")]
"""An upload id, as a number or the string of one (the API documents ids as strings)."""
_ALLOWED_CONTROLS = {"\n", "\r", "\t"}


def reject_control_characters(text: str) -> str:
    """Prompts end up in PNG chunks, logs and HTML: control characters have no business there, nor do the
    bidirectional controls that make text read differently from what it says (storage's own rule)."""
    for ch in text:
        if ch not in _ALLOWED_CONTROLS and unicodedata.category(ch) in ("Cc", "Cs"):
            raise ValueError(f"contains the control character U+{ord(ch):04X}")
    control = bidi_control_in(text)
    if control:
        raise ValueError(f"contains the bidirectional control character U+{ord(control):04X}")
    return text


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class MixItem(StrictBody):
    text: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    image: UploadRef | None = Field(default=None, description="an upload id")
    weight: float = Field(default=1.0, ge=-10.0, le=10.0)

    @field_validator("text")
    @classmethod
    def _text_clean(cls, value: str | None) -> str | None:
        return None if value is None else reject_control_characters(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> MixItem:
        if (self.text is None) == (self.image is None):
            raise ValueError("give exactly one of text or image")
        return self


class GenerationBody(StrictBody):
    """`POST /api/v1/generations`; absent fields take the model's defaults."""

    prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    steps: int | None = Field(default=None, ge=1, le=500)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    width: int | None = Field(default=None, ge=16, le=2048)
    height: int | None = Field(default=None, ge=16, le=2048)
    num_images: int = Field(default=1, ge=1, le=16)
    scheduler: str | None = Field(default=None, max_length=32)
    candidates: int | None = Field(default=None, ge=1, le=64,
                                   description="starting noises per image; the model's verifier keeps the best "
                                               "(1 is fastest; absent: the model's default)")
    guidance_image: UploadRef | None = Field(default=None, description="an upload id")
    image_guidance_scale: float = Field(default=0.0, ge=0.0, le=1.0)
    image_guidance_decay: Literal["none", "linear", "cosine"] = "none"
    mix: list[MixItem] = Field(default_factory=list, max_length=MAX_MIX_INGREDIENTS)
    interpolation: float | None = Field(default=None, ge=0.0, le=1.0,
                                        description="slerp position between mix[0] and mix[1]")

    @field_validator("prompt", "negative_prompt")
    @classmethod
    def _clean(cls, value: str) -> str:
        return reject_control_characters(value)

    @model_validator(mode="after")
    def _something_to_draw(self) -> GenerationBody:
        if not self.prompt.strip() and not self.mix:
            raise ValueError("prompt: give a prompt or at least one mix ingredient")
        if self.interpolation is not None and len(self.mix) != 2:
            raise ValueError("interpolation: needs exactly two mix ingredients")
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

    revision_of: int | None = Field(default=None, ge=1, le=2**63 - 1,
                                    description="the id of an earlier image of yours that this one revises")


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


class Accepted(BaseModel):
    id: int
    status: str


class ProgressOut(BaseModel):
    step: int
    total: int
    queue_position: int | None


class ImageOut(BaseModel):
    id: int
    url: str
    sha256: str
    width: int
    height: int
    review_status: str
    revision_of: int | None = Field(default=None, description="the earlier image this one revises")


class GenerationOut(BaseModel):
    id: int
    status: str
    progress: ProgressOut
    seed: int | None
    params: dict[str, Any]
    error: str | None
    images: list[ImageOut]


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


class HealthOut(BaseModel):
    status: str
    model: str
    family: str
    auth: bool
