"""The web layer's job runner: one place where a request becomes a stored, queued, finished generation.

Both front ends (REST and UI) submit here, so the same checks and the same bookkeeping apply:

1. referenced uploads must be the caller's own (a colleague's recipe is reused by re-uploading); anyone
   else's reads as missing, so ids do not reveal which uploads exist;
2. the engine resolves defaults and the seed (`Engine.validate`), refusing bad input by field;
3. storage records the prompt and a `queued` generation, then the engine gets the job;
4. engine progress events go to a single finisher thread, which marks the row `running` and, at
   the end, writes the PNGs (recipe inside) and the `succeeded` status in one storage call, or
   records `failed` / `cancelled`.

After a crash or a restart, rows still `queued` or `running` are marked `interrupted` (never
requeued): the engine's queue lived in memory, and silently re-running a job hours later would
surprise its owner more than a clear "interrupted, generate again".
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image

from model.engine.engine_base import Engine, JobHandle
from model.engine.engine_common import (
    EngineClosed,
    GenerationRequest,
    GenerationResult,
    JobCancelled,
    JobFailed,
    JobStatus,
    MixIngredient,
    Progress,
    QueueFull,
    image_digest,
    request_params,
)
from storage.errors import InvalidState, NotFound
from storage.metadata import Recipe, encode_png
from storage.types import (
    GenerationInfo,
    Guidance,
    MixItem,
    NewImage,
    UploadInfo,
    UserInfo,
)

if TYPE_CHECKING:
    from storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ingredient:
    """A mix ingredient as the web layer receives it: a text, or the id of one of the caller's uploads."""

    weight: float
    text: str | None = None
    upload_id: int | None = None


@dataclass(frozen=True)
class JobSpec:
    """A generation request in storage terms (upload ids), before the engine sees any image."""

    prompt: str = ""
    negative_prompt: str = ""
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    num_images: int = 1
    scheduler: str | None = None
    candidates: int | None = None
    guidance_upload_id: int | None = None
    image_guidance_scale: float = 0.0
    image_guidance_decay: str = "none"
    mix: tuple[Ingredient, ...] = ()
    interpolation: float | None = None
    prompt_id: int | None = None
    """Reuse this stored prompt (a use is counted) instead of recording a new one."""
    parent_prompt_id: int | None = None
    """Record the new prompt as a remix of this one."""


@dataclass
class _Job:
    generation_id: int
    handle: JobHandle
    request: GenerationRequest
    upload_sha: dict[str, str]
    """Pixel digest (as the engine reports images in params) -> the upload's stored file hash."""
    started: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class JobRunner:
    """Submits to the shared engine and keeps storage in step with every job's life."""

    def __init__(self, storage: Storage, engine: Engine) -> None:
        self.storage = storage
        self.engine = engine
        self._jobs: dict[int, _Job] = {}
        self._lock = threading.Lock()
        self._events: queue.Queue[tuple[int, Progress] | None] = queue.Queue()
        self._stopping = threading.Event()
        self._finisher = threading.Thread(target=self._finish_loop, name="draftroom-finisher", daemon=True)
        self._finisher.start()

    # Start-up and shutdown -------------------------------------------------------------------

    def recover(self) -> int:
        """At start-up: mark jobs a previous process left unfinished as `interrupted` (returns how
        many) and delete the files it wrote but never recorded, so `db check` is clean after a crash."""
        count = self._mark_interrupted()
        for leftover in self.storage.check.remove_interrupted_writes():
            log.warning("removed %s %s/%s (%s)", leftover.kind, leftover.store, leftover.relpath, leftover.detail)
        return count

    def _mark_interrupted(self) -> int:
        count = self.storage.generations.mark_interrupted_on_startup()
        if count:
            log.warning("marked %d unfinished generation(s) as interrupted", count)
        return count

    def shutdown(self) -> None:
        """Stop: jobs still queued or running leave the engine and are marked `interrupted`, as after a
        crash; results that arrived before are still recorded."""
        self._stopping.set()
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.handle.cancel()
        self._events.put(None)
        self._finisher.join(timeout=30)
        self._mark_interrupted()  # no file sweep here: a finisher that outlived the join may still be writing

    # Submitting ------------------------------------------------------------------------------

    def submit(self, user: UserInfo, spec: JobSpec) -> GenerationInfo:
        """Validate, record as queued and hand to the engine. Raises RequestError, NotFound (a storage
        error) or QueueFull; nothing is stored when validation fails."""
        uploads = self._own_uploads(user, spec)
        images = {upload_id: self._load(upload) for upload_id, upload in uploads.items()}
        request = self.engine.validate(self._engine_request(user, spec, images))
        prompt_id = spec.prompt_id if spec.prompt_id is not None else self._record_prompt(user, spec)
        info = self.engine.model_info
        generation = self.storage.generations.create(
            user.id, prompt_id, model_id=info.name, model_hash=info.hash,
            params=request_params(request), seed=request.seed)
        try:
            handle = self.engine.submit(request)
        except (QueueFull, EngineClosed) as exc:
            self.storage.generations.mark_failed(generation.id, f"Refused by the engine: {exc}")
            raise
        upload_sha = {image_digest(images[upload_id]): upload.sha256 for upload_id, upload in uploads.items()}
        with self._lock:
            self._jobs[generation.id] = _Job(generation.id, handle, request, upload_sha)
        handle.subscribe(lambda progress, gid=generation.id: self._events.put((gid, progress)))
        return generation

    def _own_uploads(self, user: UserInfo, spec: JobSpec) -> dict[int, UploadInfo]:
        wanted: list[tuple[str, int]] = []
        if spec.guidance_upload_id is not None:
            wanted.append(("guidance_image", spec.guidance_upload_id))
        wanted += [(f"mix.{n}.image", item.upload_id) for n, item in enumerate(spec.mix)
                   if item.upload_id is not None]
        uploads: dict[int, UploadInfo] = {}
        for field_name, upload_id in wanted:
            try:
                upload = self.storage.uploads.get(user.id, upload_id)
            except NotFound:
                upload = None
            if upload is None or upload.uploader_id != user.id:  # the same answer: existence is not told
                raise NotFound(f"{field_name}: upload {upload_id} does not exist among your uploads.")
            uploads[upload_id] = upload
        return uploads

    def _load(self, upload: UploadInfo) -> Image.Image:
        with Image.open(io.BytesIO(self.storage.upload_store.read(upload.sha256))) as image:
            return image.convert("RGB")

    @staticmethod
    def _engine_request(user: UserInfo, spec: JobSpec, images: dict[int, Image.Image]) -> GenerationRequest:
        mix = tuple(
            MixIngredient(weight=item.weight, text=item.text) if item.upload_id is None
            else MixIngredient(weight=item.weight, image=images[item.upload_id])
            for item in spec.mix
        )
        return GenerationRequest(
            prompt=spec.prompt, negative_prompt=spec.negative_prompt, seed=spec.seed, steps=spec.steps,
            guidance_scale=spec.guidance_scale, width=spec.width, height=spec.height,
            num_images=spec.num_images, scheduler=spec.scheduler, candidates=spec.candidates,
            guidance_image=images.get(spec.guidance_upload_id) if spec.guidance_upload_id is not None else None,
            image_guidance_scale=spec.image_guidance_scale, image_guidance_decay=spec.image_guidance_decay,
            mix=mix, interpolation=spec.interpolation, user=user.username,
        )

    def _record_prompt(self, user: UserInfo, spec: JobSpec) -> int:
        guidance = None
        if spec.guidance_upload_id is not None:
            guidance = Guidance(spec.guidance_upload_id, spec.image_guidance_scale, spec.image_guidance_decay)
        prompt = self.storage.prompts.create(
            user.id, text=spec.prompt, negative_prompt=spec.negative_prompt,
            mix=tuple(MixItem(weight=i.weight, text=i.text, upload_id=i.upload_id) for i in spec.mix),
            guidance=guidance, parent_id=spec.parent_prompt_id)
        return prompt.id

    # Following jobs --------------------------------------------------------------------------

    def progress(self, generation_id: int) -> Progress | None:
        """The engine's latest progress for a job this process runs, or None when it is not running here."""
        with self._lock:
            job = self._jobs.get(generation_id)
        return None if job is None else job.handle.progress()

    def wait(self, generation_id: int, timeout: float) -> bool:
        """Block until the job's final status is stored (True) or `timeout` passes (False)."""
        with self._lock:
            job = self._jobs.get(generation_id)
        return True if job is None else job.done.wait(timeout)

    def cancel(self, user: UserInfo, generation_id: int) -> GenerationInfo:
        """Owner or admin: storage decides (and records `cancelled`) first, then the engine drops the job."""
        generation = self.storage.generations.cancel(user.id, generation_id)
        with self._lock:
            job = self._jobs.get(generation_id)
        if job is not None:
            job.handle.cancel()
        return generation

    def _finish_loop(self) -> None:
        while (event := self._events.get()) is not None:
            generation_id, progress = event
            try:
                self._on_progress(generation_id, progress)
            except Exception:  # one bad job must not stop the bookkeeping of the others
                log.exception("recording progress of generation %s failed", generation_id)

    def _on_progress(self, generation_id: int, progress: Progress) -> None:
        with self._lock:
            job = self._jobs.get(generation_id)
        if job is None or job.done.is_set():
            return
        if progress.status == JobStatus.RUNNING and not job.started:
            job.started = True
            _ignore_state(self.storage.generations.mark_running, generation_id)
        if not progress.status.finished:
            return
        try:
            self._record_outcome(job)
        finally:
            job.done.set()
            with self._lock:
                self._jobs.pop(generation_id, None)

    def _record_outcome(self, job: _Job) -> None:
        generations = self.storage.generations
        try:
            result = job.handle.result(timeout=0)
        except JobCancelled:
            if not self._stopping.is_set():  # when stopping, `shutdown` marks the row interrupted
                _ignore_state(generations.mark_failed, job.generation_id, "Cancelled by the engine.")
            return
        except JobFailed as exc:
            _ignore_state(generations.mark_failed, job.generation_id, str(exc) or "The generation failed.")
            return
        images = self._encode(job, result)
        _ignore_state(lambda: generations.mark_succeeded(
            job.generation_id, images=images, seed=result.seed, model_s=result.model_s,
            queue_wait_s=result.queue_wait_s, params=result.params))

    def _encode(self, job: _Job, result: GenerationResult) -> list[NewImage]:
        """PNG bytes with the recipe in both chunks (A1111 `parameters` and Draftroom JSON)."""
        request, params = job.request, result.params
        seeds: Sequence[int] = result.seeds or [result.seed + i for i in range(len(result.images))]
        mix = tuple(
            {"weight": item["weight"], "text": item["text"]} if item.get("text") is not None
            else {"weight": item["weight"], "upload_sha256": job.upload_sha.get(item.get("image_sha256", ""))}
            for item in params.get("mix") or ()
        )
        guidance = None
        if request.guidance_image is not None:
            guidance = {"upload_sha256": job.upload_sha.get(params.get("guidance_image_sha256") or ""),
                        "scale": request.image_guidance_scale, "decay": request.image_guidance_decay}
        images = []
        for index, image in enumerate(result.images):
            recipe = Recipe(
                prompt=request.prompt, negative_prompt=request.negative_prompt, steps=request.steps,
                sampler=request.scheduler, cfg_scale=request.guidance_scale, seed=seeds[index],
                width=image.width, height=image.height, model_hash=self.engine.model_info.short_hash,
                model_name=result.model_name, mix=mix, guidance=guidance,
                generation_id=job.generation_id, image_index=index, params=params)
            images.append(NewImage(index, encode_png(image, recipe), image.width, image.height))
        return images


def _ignore_state(action: Callable[..., object], *args: object) -> None:
    """A job's row may already be final (cancelled by its owner a moment before): that is not an error."""
    try:
        action(*args)
    except InvalidState as exc:
        log.info("generation state already final: %s", exc)
