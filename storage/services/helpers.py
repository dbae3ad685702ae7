"""Helpers every storage service shares: the acting-user check, visibility rules, audit, ORM -> dataclass."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import CursorResult, Executable
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import Database
from ..errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from ..models import ApiToken, AuditEvent, Generation, Image, Prompt, Review, Upload, User
from ..types import (
    Actor,
    Decision,
    GenerationInfo,
    GenerationStatus,
    Guidance,
    GuidanceDecay,
    ImageInfo,
    MixIngredientRef,
    Operator,
    PromptInfo,
    ReviewInfo,
    ReviewStatus,
    Role,
    TokenInfo,
    UploadInfo,
    UserInfo,
)

STAFF = (Role.REVIEWER, Role.ADMIN)
MAX_PAGE_SIZE = 100
OPERATOR_NAME = "cli"


class Service:
    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def write(self, conflict_message: str = "That conflicts with existing data.") -> Iterator[Session]:
        """A write transaction whose unique-constraint violations become a readable `Conflict`."""
        try:
            with self.db.write() as session:
                yield session
        except IntegrityError as exc:
            raise Conflict(conflict_message) from exc


def changed_rows(session: Session, statement: Executable) -> int:
    """Run an UPDATE and say how many rows it changed: conditional updates use it to detect lost races."""
    result = session.execute(statement)
    return cast(CursorResult[Any], result).rowcount


def acting_user(session: Session, actor: Actor, *roles: Role, operator: bool = False) -> User | None:
    """The acting user, checked: exists, active, and (when `roles` given) holds one of them.

    Returns None for the command line's OPERATOR where `operator=True` allows it.
    """
    if isinstance(actor, Operator):
        if operator:
            return None
        raise PermissionDenied("This needs a signed-in user.")
    user = session.get(User, actor) if isinstance(actor, int) else None
    if user is None:
        raise PermissionDenied("Unknown user; sign in again.")
    if not user.active:
        raise PermissionDenied("Your account is disabled.")
    if roles and Role(user.role) not in roles:
        names = " and ".join(f"{role.value}s" for role in roles)
        raise PermissionDenied(f"Only {names} can do this.")
    return user


def acting_person(session: Session, actor: Actor, *roles: Role) -> User:
    """Like `acting_user` for actions only a person (not the command line) can take."""
    user = acting_user(session, actor, *roles)
    if user is None:  # unreachable: acting_user refuses OPERATOR unless operator=True
        raise PermissionDenied("This needs a signed-in user.")
    return user


def is_staff(user: User | None) -> bool:
    """Reviewers and admins see everything; the command line (None) too."""
    return user is None or Role(user.role) in STAFF


def can_see_prompt(user: User | None, prompt: Prompt) -> bool:
    return is_staff(user) or prompt.shared or (user is not None and prompt.author_id == user.id)


def can_see_generation(user: User | None, generation: Generation) -> bool:
    return is_staff(user) or (user is not None and generation.user_id == user.id) or generation.prompt.shared


MAX_ROW_ID = 2**63 - 1
"""Ids are 64-bit signed in both databases; a bigger number is no row (and would overflow the driver)."""


def is_row_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ROW_ID


def missing(what: str, ident: object) -> NotFound:
    """The one "does not exist" answer, also given for what exists but the caller may not know of."""
    return NotFound(f"{what} {ident} does not exist.")


def get_or_404(session: Session, model: type[Any], ident: int, what: str) -> Any:
    row = session.get(model, ident) if is_row_id(ident) else None
    if row is None:
        raise missing(what, ident)
    return row


def check_page(page: int, page_size: int) -> None:
    if not isinstance(page, int) or page < 1:
        raise ValidationFailed("page", "The page number starts at 1.")
    if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationFailed("page_size", f"The page size must be between 1 and {MAX_PAGE_SIZE}.")


def audit(
    session: Session,
    user: User | None,
    action: str,
    target_type: str | None = None,
    target_id: object = None,
    **detail: Any,
) -> None:
    """Record who did what, in the caller's transaction: the event commits with the action or not at all."""
    session.add(
        AuditEvent(
            actor_id=user.id if user else None,
            actor_name=user.username if user else OPERATOR_NAME,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            detail=detail,
        )
    )


def user_info(user: User) -> UserInfo:
    return UserInfo(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=Role(user.role),
        active=user.active,
        must_change_password=user.must_change_password,
        created_at=user.created_at,
        updated_at=user.updated_at,
        last_login_at=user.last_login_at,
    )


def token_info(token: ApiToken) -> TokenInfo:
    return TokenInfo(
        id=token.id,
        user_id=token.user_id,
        username=token.user.username,
        label=token.label,
        prefix=token.prefix,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


def upload_info(upload: Upload) -> UploadInfo:
    return UploadInfo(
        id=upload.id,
        uploader_id=upload.uploader_id,
        sha256=upload.sha256,
        relpath=upload.relpath,
        size=upload.size,
        width=upload.width,
        height=upload.height,
        created_at=upload.created_at,
    )


def prompt_info(prompt: Prompt) -> PromptInfo:
    guidance = None
    if prompt.guidance_upload_id is not None:
        guidance = Guidance(
            prompt.guidance_upload_id, prompt.guidance_scale, GuidanceDecay(prompt.guidance_decay)
        )
    return PromptInfo(
        id=prompt.id,
        author_id=prompt.author_id,
        author=prompt.author.username,
        text=prompt.text,
        negative_prompt=prompt.negative_prompt,
        mix=tuple(MixIngredientRef(**item) for item in prompt.mix),
        guidance=guidance,
        tags=tuple(prompt.tags),
        shared=prompt.shared,
        use_count=prompt.use_count,
        parent_id=prompt.parent_id,
        created_at=prompt.created_at,
        updated_at=prompt.updated_at,
    )


def image_info(image: Image) -> ImageInfo:
    return ImageInfo(
        id=image.id,
        generation_id=image.generation_id,
        index=image.index,
        sha256=image.sha256,
        relpath=image.relpath,
        width=image.width,
        height=image.height,
        review_status=ReviewStatus(image.review_status),
        file_missing=image.file_missing,
        created_at=image.created_at,
        revision_of=image.revision_of,
        seed=image.seed,
    )


def generation_info(generation: Generation, with_images: bool = True) -> GenerationInfo:
    return GenerationInfo(
        id=generation.id,
        user_id=generation.user_id,
        username=generation.user.username,
        prompt_id=generation.prompt_id,
        model_id=generation.model_id,
        model_hash=generation.model_hash,
        params=dict(generation.params),
        seed=generation.seed,
        status=GenerationStatus(generation.status),
        error=generation.error,
        created_at=generation.created_at,
        started_at=generation.started_at,
        finished_at=generation.finished_at,
        queue_wait_s=generation.queue_wait_s,
        model_s=generation.model_s,
        images=tuple(image_info(image) for image in generation.images) if with_images else (),
    )


def review_info(review: Review) -> ReviewInfo:
    return ReviewInfo(
        id=review.id,
        image_id=review.image_id,
        reviewer_id=review.reviewer_id,
        reviewer=review.reviewer.username,
        decision=Decision(review.decision),
        comment=review.comment,
        created_at=review.created_at,
    )
