"""Generations (jobs) and their images.

Life cycle: queued -> running -> succeeded | failed | cancelled; queued -> cancelled | failed;
queued | running -> interrupted (the front-end holding the job stopped before it finished). Every change is a
conditional UPDATE on the current status, so two racing changes cannot both win.

Images: files are written (atomically, fsynced) *before* their rows commit; if the commit fails the
files this call created are removed. A crash between the two leaves only orphan files, which
`db check --repair` deletes; never a row without its file.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.orm import Session

from model.engine.request_fields import MAX_IMAGE_SEED, MAX_SEED

from ..db import Database
from ..errors import InvalidState, NotFound, PermissionDenied, ValidationFailed
from ..images import ImageStore, StoredFile
from ..models import Frontend, Generation, Image, utcnow
from ..types import Actor, GenerationInfo, GenerationStatus, ImageInfo, NewImage, ReviewStatus, Role
from .frontends import check_frontend_id
from .helpers import (
    Service,
    acting_person,
    audit,
    can_see_generation,
    changed_rows,
    generation_info,
    get_or_404,
    image_info,
)
from .prompts import count_use, visible_prompt

Q, R = GenerationStatus.QUEUED, GenerationStatus.RUNNING
LIVE = (Q, R)
MAX_PARAMS_BYTES = 64 * 1024
MAX_ERROR = 4000
MAX_IMAGES = 64
MAX_SIDE = 8192
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
INTERRUPTED_MESSAGE = "Interrupted: the server stopped before this generation finished."


def _check_seed(seed: object, field: str = "seed", high: int = MAX_SEED) -> int | None:
    """A generation's seed is a request's (0..MAX_SEED); an image's may pass it (image i uses seed + i)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= high:
        raise ValidationFailed(field, f"A seed is a whole number from 0 to {high}.")
    return seed


def _check_seconds(value: float | None, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValidationFailed(field, "Must be a non-negative number of seconds.")
    return float(value)


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise ValidationFailed("params", "Parameters must be a mapping.")
    try:
        encoded = json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed("params", f"Parameters must be plain JSON values: {exc}") from exc
    if len(encoded) > MAX_PARAMS_BYTES:
        raise ValidationFailed("params", "The parameters are too large.")
    return json.loads(encoded)


def _check_images(images: Sequence[NewImage]) -> list[NewImage]:
    checked = [NewImage(*image) for image in images]
    if not checked:
        raise ValidationFailed("images", "No images given.")
    if len(checked) > MAX_IMAGES:
        raise ValidationFailed("images", f"At most {MAX_IMAGES} images per generation.")
    if len({image.index for image in checked}) != len(checked):
        raise ValidationFailed("images", "Two images have the same index.")
    for image in checked:
        field = f"images[{image.index}]"
        if (
            isinstance(image.index, bool)
            or not isinstance(image.index, int)
            or not 0 <= image.index < MAX_IMAGES
        ):
            raise ValidationFailed(field, f"An image index is a whole number from 0 to {MAX_IMAGES - 1}.")
        png = image.png
        if not isinstance(png, bytes) or len(png) < 24 or png[:8] != PNG_SIGNATURE or png[12:16] != b"IHDR":
            raise ValidationFailed(field, "Not PNG data.")
        if struct.unpack(">II", png[16:24]) != (image.width, image.height):
            raise ValidationFailed(
                field, f"The PNG is {struct.unpack('>II', png[16:24])}, not {image.width}x{image.height}."
            )
        if not 1 <= image.width <= MAX_SIDE or not 1 <= image.height <= MAX_SIDE:
            raise ValidationFailed(field, f"Image sides must be 1 to {MAX_SIDE} pixels.")
        _check_seed(image.seed, f"{field}.seed", MAX_IMAGE_SEED)
    return checked


class GenerationService(Service):
    def __init__(self, db: Database, store: ImageStore) -> None:
        super().__init__(db)
        self.store = store

    def create(
        self,
        actor: Actor,
        prompt_id: int,
        *,
        model_id: str,
        model_hash: str,
        params: dict[str, Any],
        seed: int | None = None,
        frontend_id: str | None = None,
    ) -> GenerationInfo:
        """Record a requested generation as `queued`; counts as a use of its prompt. `frontend_id` names the
        front-end that will hold its engine handle (FrontendService)."""
        if not isinstance(model_id, str) or not 0 < len(model_id) <= 200:
            raise ValidationFailed("model_id", "A model id is 1 to 200 characters.")
        if not isinstance(model_hash, str) or len(model_hash) > 128:
            raise ValidationFailed("model_hash", "A model hash has at most 128 characters.")
        params = _check_params(params)
        seed = _check_seed(seed)
        if frontend_id is not None:
            check_frontend_id(frontend_id)
        with self.write() as session:
            user = acting_person(session, actor)
            prompt = visible_prompt(session, user, prompt_id)
            generation = Generation(
                user_id=user.id,
                prompt_id=prompt.id,
                model_id=model_id,
                model_hash=model_hash,
                params=params,
                seed=seed,
                status=Q.value,
                frontend_id=frontend_id,
            )
            session.add(generation)
            count_use(session, prompt.id)
            session.flush()
            audit(
                session,
                user,
                "generation.request",
                "generation",
                generation.id,
                prompt_id=prompt.id,
                model=model_id,
            )
            return generation_info(generation)

    def get(self, actor: Actor, generation_id: int) -> GenerationInfo:
        with self.db.read() as session:
            return generation_info(self._visible(session, actor, generation_id))

    def image(self, actor: Actor, image_id: int) -> ImageInfo:
        """An image's record (its file: `storage.images.path_for(info.sha256)`), if the actor may see it."""
        with self.db.read() as session:
            image: Image = get_or_404(session, Image, image_id, "Image")
            self._visible(session, actor, image.generation_id)
            return image_info(image)

    @staticmethod
    def _visible(session: Session, actor: Actor, generation_id: int) -> Generation:
        user = acting_person(session, actor)
        generation: Generation = get_or_404(session, Generation, generation_id, "Generation")
        if not can_see_generation(user, generation):
            raise NotFound(f"Generation {generation_id} does not exist.")
        return generation

    def mark_running(self, generation_id: int) -> GenerationInfo:
        """The worker started the job (called by the engine glue, not on behalf of a user)."""
        with self.write() as session:
            return self._move(session, generation_id, R, (Q,), started_at=utcnow())

    def mark_succeeded(
        self,
        generation_id: int,
        *,
        images: Sequence[NewImage] = (),
        seed: int | None = None,
        model_s: float | None = None,
        queue_wait_s: float | None = None,
        params: dict[str, Any] | None = None,
    ) -> GenerationInfo:
        """Finish a job: its images (if given) and the `succeeded` status commit together."""
        values: dict[str, Any] = {"finished_at": utcnow()}
        if seed is not None:
            values["seed"] = _check_seed(seed)
        if params is not None:
            values["params"] = _check_params(params)
        for name, value in (("model_s", model_s), ("queue_wait_s", queue_wait_s)):
            if value is not None:
                values[name] = _check_seconds(value, name)
        checked = _check_images(images) if images else []
        written = self._write_files(checked)
        try:
            with self.write() as session:
                info = self._move(session, generation_id, GenerationStatus.SUCCEEDED, LIVE, **values)
                if checked:
                    self._insert_images(session, generation_id, checked, written)
                    session.expire_all()
                    info = generation_info(session.get_one(Generation, generation_id))
                return info
        except BaseException:
            self._remove_new(written)
            raise

    def _write_files(self, images: list[NewImage]) -> list[StoredFile]:
        written: list[StoredFile] = []
        try:
            for image in images:
                written.append(self.store.put(image.png))
        except BaseException:
            self._remove_new(written)
            raise
        return written

    def _remove_new(self, written: list[StoredFile]) -> None:
        for stored in written:
            if stored.created:
                self.store.delete(stored.sha256)

    @staticmethod
    def _insert_images(
        session: Session, generation_id: int, images: list[NewImage], written: list[StoredFile]
    ) -> list[ImageInfo]:
        rows = [
            Image(
                generation_id=generation_id,
                index=image.index,
                sha256=stored.sha256,
                relpath=stored.relpath,
                width=image.width,
                height=image.height,
                seed=image.seed,
                review_status=ReviewStatus.DRAFT.value,
                file_missing=False,
            )
            for image, stored in zip(images, written, strict=True)
        ]
        session.add_all(rows)
        session.flush()
        return [image_info(row) for row in rows]

    def mark_failed(self, generation_id: int, error: str) -> GenerationInfo:
        with self.write() as session:
            return self._move(
                session,
                generation_id,
                GenerationStatus.FAILED,
                LIVE,
                error=str(error)[:MAX_ERROR],
                finished_at=utcnow(),
            )

    def cancel(self, actor: Actor, generation_id: int) -> GenerationInfo:
        """Cancel a queued or running job: its owner or an admin."""
        with self.write() as session:
            user = acting_person(session, actor)
            generation = self._visible(session, actor, generation_id)
            if generation.user_id != user.id and user.role != Role.ADMIN:
                raise PermissionDenied(
                    "Only the person who asked for a generation, or an admin, can cancel it."
                )
            return self._move(session, generation_id, GenerationStatus.CANCELLED, LIVE, finished_at=utcnow())

    def interrupt_jobs_of(self, frontend_id: str) -> int:
        """Mark `interrupted` the queued and running jobs of one front-end; returns how many.

        A front-end calls it about itself: when it starts (a restart under the same id: its previous run's
        engine handles are gone) and when it stops. It never touches another live front-end's jobs.
        """
        with self.write() as session:
            return self._interrupt(session, Generation.frontend_id == frontend_id)

    def interrupt_orphaned(self, stale_after_s: float) -> int:
        """Mark `interrupted` the queued and running jobs no live front-end holds: those of a front-end whose
        heartbeat is older than `stale_after_s` seconds (or gone), and those recorded with none. Whichever
        front-end notices first does it; the stale front-ends' rows are removed. Returns how many jobs."""
        cutoff = utcnow() - timedelta(seconds=stale_after_s)
        with self.write() as session:
            live = select(Frontend.id).where(Frontend.heartbeat_at >= cutoff)
            count = self._interrupt(
                session, or_(Generation.frontend_id.is_(None), Generation.frontend_id.not_in(live))
            )
            session.execute(delete(Frontend).where(Frontend.heartbeat_at < cutoff))
            return count

    @staticmethod
    def _interrupt(session: Session, which: ColumnElement[bool]) -> int:
        return changed_rows(
            session,
            update(Generation)
            .where(Generation.status.in_([s.value for s in LIVE]), which)
            .values(
                status=GenerationStatus.INTERRUPTED.value, error=INTERRUPTED_MESSAGE, finished_at=utcnow()
            ),
        )

    def finished_among(self, generation_ids: Iterable[int]) -> set[int]:
        """Which of these jobs are no longer queued or running in the database: a front-end that holds their
        engine handles learns this way that another one cancelled them (or took it for dead)."""
        ids = list(generation_ids)
        if not ids:
            return set()
        with self.db.read() as session:
            return set(
                session.scalars(
                    select(Generation.id).where(
                        Generation.id.in_(ids), Generation.status.not_in([s.value for s in LIVE])
                    )
                )
            )

    @staticmethod
    def _move(
        session: Session,
        generation_id: int,
        new: GenerationStatus,
        allowed: tuple[GenerationStatus, ...],
        **values: Any,
    ) -> GenerationInfo:
        changed = changed_rows(
            session,
            update(Generation)
            .where(Generation.id == generation_id, Generation.status.in_([s.value for s in allowed]))
            .values(status=new.value, **values),
        )
        generation: Generation | None = session.get(Generation, generation_id, populate_existing=True)
        if generation is None:
            raise NotFound(f"Generation {generation_id} does not exist.")
        if changed != 1:
            raise InvalidState(
                f"Generation {generation_id} is {generation.status}; it cannot become {new.value}."
            )
        if generation.started_at is None and new == GenerationStatus.SUCCEEDED:  # never seen running
            generation.started_at = values["finished_at"]
        _fill_timings(generation)
        session.flush()
        return generation_info(generation)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else max(0.0, (end - start).total_seconds())


def _fill_timings(generation: Generation) -> None:
    """Timings the engine did not report, from our own timestamps."""
    if generation.queue_wait_s is None and generation.started_at is not None:
        generation.queue_wait_s = _seconds(generation.created_at, generation.started_at)
    if generation.model_s is None and generation.finished_at is not None and generation.status == "succeeded":
        generation.model_s = _seconds(generation.started_at, generation.finished_at)
