"""Prompts: text, negative text, the embedding mix, image guidance, tags, sharing, remix lineage, favourites.

A prompt is never edited after creation (only its tags and shared flag change): a remix is a new
prompt whose `parent_id` points at the original, so lineage and the images made from each version
stay true. `use_count` counts generations run from a prompt plus remixes made of it; it drives
"most reused".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from model.engine.request_fields import FIELDS, MAX_INGREDIENTS, MAX_MIX_WEIGHT

from ..errors import NotFound, PermissionDenied, ValidationFailed
from ..models import Favourite, Prompt, Upload, User
from ..text import checked_text
from ..types import Actor, Guidance, GuidanceDecay, MixIngredientRef, PromptInfo, Role
from .helpers import Service, acting_person, can_see_prompt, get_or_404, is_row_id, prompt_info

MAX_TEXT = 2000
MAX_GUIDANCE_SCALE = float(FIELDS["image_guidance_scale"].high or 0)
MAX_TAGS = 20
MAX_TAG = 32


def _finite(value: object, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationFailed(field, "Must be a number.")
    if not low <= value <= high:
        raise ValidationFailed(field, f"Must be between {low:g} and {high:g}.")
    return float(value)


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationFailed(field, "Must be text.")
    value = checked_text(value.strip(), field)
    if len(value) > MAX_TEXT:
        raise ValidationFailed(field, f"At most {MAX_TEXT} characters.")
    return value


def normalise_tags(tags: Sequence[str]) -> list[str]:
    """Lower-case, trimmed, unique tags in the order given."""
    if isinstance(tags, str):
        raise ValidationFailed("tags", "Give tags as a list.")
    result: list[str] = []
    for tag in tags:
        tag = checked_text(str(tag).strip().casefold(), "tags")
        if not tag:
            continue
        if len(tag) > MAX_TAG:
            raise ValidationFailed("tags", f"A tag has at most {MAX_TAG} characters.")
        if tag not in result:
            result.append(tag)
    if len(result) > MAX_TAGS:
        raise ValidationFailed("tags", f"At most {MAX_TAGS} tags.")
    return result


def _upload_exists(session: Session, upload_id: object, field: str) -> int:
    if not is_row_id(upload_id) or session.get(Upload, upload_id) is None:
        raise ValidationFailed(field, f"Upload {upload_id} does not exist.")
    assert isinstance(upload_id, int)  # is_row_id accepted it
    return upload_id


def _mix_json(session: Session, mix: Sequence[MixIngredientRef]) -> list[dict[str, Any]]:
    if len(mix) > MAX_INGREDIENTS:
        raise ValidationFailed("mix", f"A mix has at most {MAX_INGREDIENTS} ingredients.")
    result: list[dict[str, Any]] = []
    for n, item in enumerate(mix):
        field = f"mix[{n}]"
        weight = _finite(item.weight, f"{field}.weight", -MAX_MIX_WEIGHT, MAX_MIX_WEIGHT)
        if (item.text is None) == (item.upload_id is None):
            raise ValidationFailed(field, "Each ingredient is either a text or an uploaded image.")
        if item.text is not None:
            text = _text(item.text, f"{field}.text")
            if not text:
                raise ValidationFailed(f"{field}.text", "An ingredient's text is empty.")
            result.append({"weight": weight, "text": text})
        else:
            result.append(
                {"weight": weight, "upload_id": _upload_exists(session, item.upload_id, f"{field}.image")}
            )
    return result


class PromptService(Service):
    def create(
        self,
        actor: Actor,
        *,
        text: str,
        negative_prompt: str = "",
        mix: Sequence[MixIngredientRef] = (),
        guidance: Guidance | None = None,
        tags: Sequence[str] = (),
        shared: bool = True,
        parent_id: int | None = None,
    ) -> PromptInfo:
        """A new prompt; with `parent_id` it is a remix of a prompt the actor can see (which counts as a
        use)."""
        text = _text(text, "text")
        negative_prompt = _text(negative_prompt, "negative_prompt")
        tags = normalise_tags(tags)
        with self.write() as session:
            author = acting_person(session, actor)
            mix_json = _mix_json(session, mix)
            if not text and not mix_json:
                raise ValidationFailed("text", "Write a prompt or add a mix ingredient.")
            prompt = Prompt(
                author_id=author.id,
                text=text,
                negative_prompt=negative_prompt,
                mix=mix_json,
                tags=tags,
                shared=bool(shared),
                use_count=0,
            )
            if guidance is not None:
                prompt.guidance_upload_id = _upload_exists(session, guidance.upload_id, "guidance.image")
                prompt.guidance_scale = _finite(guidance.scale, "guidance.scale", 0.0, MAX_GUIDANCE_SCALE)
                try:
                    prompt.guidance_decay = GuidanceDecay(guidance.decay).value
                except ValueError:
                    raise ValidationFailed("guidance.decay", "Use none, linear or cosine.") from None
            if parent_id is not None:
                parent = visible_prompt(session, author, parent_id)
                prompt.parent_id = parent.id
                count_use(session, parent.id)
            session.add(prompt)
            session.flush()
            return prompt_info(prompt)

    def get(self, actor: Actor, prompt_id: int) -> PromptInfo:
        with self.db.read() as session:
            return prompt_info(visible_prompt(session, acting_person(session, actor), prompt_id))

    def update(
        self, actor: Actor, prompt_id: int, *, tags: Sequence[str] | None = None, shared: bool | None = None
    ) -> PromptInfo:
        """Change tags or sharing: the author's or an admin's call."""
        with self.write() as session:
            user = acting_person(session, actor)
            prompt = visible_prompt(session, user, prompt_id)
            if prompt.author_id != user.id and user.role != Role.ADMIN:
                raise PermissionDenied("Only the author can change this prompt.")
            if tags is not None:
                prompt.tags = normalise_tags(tags)
            if shared is not None:
                prompt.shared = bool(shared)
            session.flush()
            return prompt_info(prompt)

    def set_favourite(self, actor: Actor, prompt_id: int, favourite: bool = True) -> None:
        with self.write() as session:
            user = acting_person(session, actor)
            visible_prompt(session, user, prompt_id)
            exists = session.get(Favourite, (user.id, prompt_id)) is not None
            if favourite and not exists:
                session.add(Favourite(user_id=user.id, prompt_id=prompt_id))
            elif not favourite and exists:
                session.execute(
                    delete(Favourite).where(Favourite.user_id == user.id, Favourite.prompt_id == prompt_id)
                )

    def favourites(self, actor: Actor) -> list[PromptInfo]:
        """The actor's favourite prompts still visible to them, most recently starred first."""
        with self.db.read() as session:
            user = acting_person(session, actor)
            prompts = session.scalars(
                select(Prompt)
                .join(Favourite, Favourite.prompt_id == Prompt.id)
                .where(Favourite.user_id == user.id)
                .order_by(Favourite.created_at.desc())
            )
            return [prompt_info(p) for p in prompts if can_see_prompt(user, p)]


def count_use(session: Session, prompt_id: int) -> None:
    """One more use, as an atomic UPDATE so concurrent uses are all counted."""
    session.execute(update(Prompt).where(Prompt.id == prompt_id).values(use_count=Prompt.use_count + 1))


def visible_prompt(session: Session, user: User, prompt_id: int) -> Prompt:
    """The prompt, or NotFound when it does not exist or `user` may not see it (same answer: no leak)."""
    prompt: Prompt = get_or_404(session, Prompt, prompt_id, "Prompt")
    if not can_see_prompt(user, prompt):
        raise NotFound(f"Prompt {prompt_id} does not exist.")
    return prompt
