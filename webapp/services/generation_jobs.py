"""The generation job service: where a request becomes a stored, queued, finished generation.

Both front ends (the REST routes in `webapp/api/generations.py` and the Generate tab in
`webapp/ui/generate.py`) only parse their input into a `JobRequest`, call `GenerationJobs` and render
what it returns, so the same checks and the same bookkeeping apply to both:

1. the request names its images by reference (upload ids); each must be the caller's own upload
   (a colleague's recipe is reused by re-uploading); anyone else's reads as missing, so ids do not
   reveal which uploads exist;
2. it is validated once, by the engine (`Engine.validate`: the declared limits of
   `model/engine/request_fields.py`, narrowed to the model), which also resolves defaults and the seed;
3. storage records the prompt and a `queued` generation, then the engine gets the resolved job;
4. engine progress events go to a single finisher thread, which marks the row `running` and, at the
   end, writes the PNGs (recipe inside) and the `succeeded` status in one storage call, or records
   `failed` / `cancelled`.

The database is the record of every job's state; the engine's queue is only the work in progress,
and each job's engine handle lives in the memory of the front-end that submitted it (its `frontend_id`
is on the row). Where the two disagree the database wins: a row that is already final (cancelled by its
owner a moment before the engine finished) stays as it is, and the late engine event is dropped.

Several front-ends may share one database and data directory (docs/DEPLOY.md). Each beats a heartbeat
(`storage.frontends`) and polls, lightly, for its jobs that became final in the database meanwhile: a
cancel made through another front-end, which has no handle to cancel, is only recorded there, and the
front-end holding the handle cancels it through the engine at its next poll. A front-end that stops
marks its own unfinished jobs `interrupted`; so does a restart under the same id; the jobs of a
front-end that stopped beating are marked by whichever front-end notices. They are never requeued:
silently re-running a job minutes or hours later, maybe on a different model, would surprise its owner
more than a clear "interrupted, generate again".
"""

from __future__ import annotations

import functools
import io
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable
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
    request_params,
)
from model.engine.request_fields import DEFAULT_MIX_SPACE
from storage.errors import InvalidState, NotFound
from storage.metadata import encode_png, image_recipe
from storage.services.check import ORPHAN_GRACE_S
from storage.services.frontends import MAX_FRONTEND_ID
from storage.types import (
    GenerationInfo,
    Guidance,
    GuidanceDecay,
    MixIngredientRef,
    NewImage,
    UploadInfo,
    UserInfo,
)

if TYPE_CHECKING:
    from storage import Storage

log = logging.getLogger(__name__)


def default_frontend_id(port: int | None = None) -> str:
    """This machine's name, and the port when given: the same after a restart, so the restarted front-end
    recognises its previous run's jobs as its own (`app.py serve --instance-id` overrides it)."""
    suffix = "" if port is None else f":{port}"
    return socket.gethostname()[: MAX_FRONTEND_ID - len(suffix)] + suffix


@dataclass(frozen=True)
class FrontendTiming:
    """How a front-end shows it is alive and learns what other front-ends did to its jobs."""

    heartbeat_s: float = 10.0
    """How often it records that it is alive."""
    stale_after_s: float = 60.0
    """A front-end silent this long is taken for dead: its unfinished jobs become `interrupted`."""
    poll_s: float = 1.0
    """How often it looks for its jobs cancelled (or interrupted) in the database by another front-end."""


@dataclass(frozen=True)
class JobRequest:
    """A generation request as the web layer parses it: images by reference (upload ids), not pixels.

    Absent values take the model's defaults; the engine checks every limit (model/engine/request_fields.py).
    """

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
    mix: tuple[MixIngredientRef, ...] = ()
    interpolation: float | None = None
    mix_space: str = DEFAULT_MIX_SPACE
    upscale: bool = False
    prompt_id: int | None = None
    """Reuse this stored prompt (a use is counted) instead of recording a new one."""
    parent_prompt_id: int | None = None
    """Record the new prompt as a remix of this one."""

    def upload_ids(self) -> list[tuple[str, int]]:
        """Every referenced upload with the field that names it."""
        wanted = [] if self.guidance_upload_id is None else [("guidance_image", self.guidance_upload_id)]
        return wanted + [
            (f"mix.{n}.image", item.upload_id)
            for n, item in enumerate(self.mix)
            if item.upload_id is not None
        ]

    def engine_request(self, user: str, images: dict[int, Image.Image]) -> GenerationRequest:
        """The engine's request, the referenced uploads' pixels (`images`, by upload id) filled in."""
        mix = tuple(
            MixIngredient(weight=item.weight, text=item.text)
            if item.upload_id is None
            else MixIngredient(weight=item.weight, image=images[item.upload_id])
            for item in self.mix
        )
        return GenerationRequest(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            seed=self.seed,
            steps=self.steps,
            guidance_scale=self.guidance_scale,
            width=self.width,
            height=self.height,
            num_images=self.num_images,
            scheduler=self.scheduler,
            candidates=self.candidates,
            guidance_image=None if self.guidance_upload_id is None else images[self.guidance_upload_id],
            image_guidance_scale=self.image_guidance_scale,
            image_guidance_decay=self.image_guidance_decay,
            mix=mix,
            interpolation=self.interpolation,
            mix_space=self.mix_space,
            upscale=self.upscale,
            user=user,
        )


@dataclass(frozen=True)
class CheckedJob:
    """A job request the engine accepted: the resolved request and the caller's uploads it references."""

    request: GenerationRequest
    uploads: dict[int, UploadInfo]


@dataclass
class _RunningJob:
    """A job this process handed to the engine and follows until its final status is stored."""

    generation_id: int
    handle: JobHandle
    job: JobRequest
    checked: CheckedJob
    started: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class GenerationJobs:
    """Submits to the shared engine and keeps storage, the record of every job, in step with it."""

    def __init__(
        self,
        storage: Storage,
        engine: Engine,
        *,
        frontend_id: str | None = None,
        timing: FrontendTiming | None = None,
    ) -> None:
        self.storage = storage
        self.engine = engine
        self.frontend_id = frontend_id or default_frontend_id()
        self.timing = timing or FrontendTiming()
        self._jobs: dict[int, _RunningJob] = {}
        self._lock = threading.Lock()
        self._events: queue.Queue[tuple[int, Progress] | None] = queue.Queue()
        self._stopping = threading.Event()
        self._finisher = threading.Thread(target=self._finish_loop, name="draftroom-finisher", daemon=True)
        self._finisher.start()
        self._monitor = threading.Thread(target=self._monitor_loop, name="draftroom-frontend", daemon=True)

    # Start-up and shutdown -------------------------------------------------------------------

    def recover(self) -> int:
        """At start-up, before accepting work: register this front-end, mark `interrupted` the jobs no live
        front-end holds (returns how many): its own previous run's and those of front-ends whose heartbeat
        went stale; delete the files a dead process wrote but never recorded, so `db check` is clean after
        a crash. `start` then begins the heartbeat."""
        self.storage.frontends.register(self.frontend_id)
        count = self.storage.generations.interrupt_jobs_of(self.frontend_id)
        count += self.storage.generations.interrupt_orphaned(self.timing.stale_after_s)
        if count:
            log.warning("marked %d unfinished generation(s) as interrupted", count)
        others = set(self.storage.frontends.live(self.timing.stale_after_s)) - {self.frontend_id}
        # A live front-end may be between writing a file and committing its row: spare young files then.
        for leftover in self.storage.check.remove_interrupted_writes(ORPHAN_GRACE_S if others else 0.0):
            log.warning(
                "removed %s %s/%s (%s)", leftover.kind, leftover.store, leftover.relpath, leftover.detail
            )
        return count

    def start(self) -> None:
        """Begin beating the heartbeat and polling for jobs cancelled elsewhere (when the server starts
        serving: a studio built but never served, as in some tests, leaves no thread behind)."""
        self._monitor.start()

    def shutdown(self) -> None:
        """Stop: jobs still queued or running leave the engine and are marked `interrupted`, as after a
        crash; results that arrived before are still recorded. Other front-ends' jobs are not touched."""
        self._stopping.set()
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.handle.cancel()
        self._events.put(None)
        self._finisher.join(timeout=30)
        if self._monitor.ident is not None:
            self._monitor.join(timeout=30)
        # No file sweep here: a finisher that outlived the join may still be writing.
        count = self.storage.generations.interrupt_jobs_of(self.frontend_id)
        if count:
            log.warning("marked %d unfinished generation(s) as interrupted", count)
        self.storage.frontends.remove(self.frontend_id)

    # Other front-ends -------------------------------------------------------------------------

    def _monitor_loop(self) -> None:
        next_beat = time.monotonic() + self.timing.heartbeat_s
        while not self._stopping.wait(self.timing.poll_s):
            try:
                self.cancel_finished_elsewhere()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.timing.heartbeat_s
                    self.beat()
            except Exception:  # a database hiccup must not end the heartbeat for good
                log.exception("front-end %s: heartbeat or poll failed", self.frontend_id)

    def beat(self) -> None:
        """Record that this front-end is alive, and interrupt the jobs of front-ends that are not."""
        if not self.storage.frontends.beat(self.frontend_id):
            log.warning(
                "front-end %s was taken for dead; its unfinished jobs were interrupted", self.frontend_id
            )
        count = self.storage.generations.interrupt_orphaned(self.timing.stale_after_s)
        if count:
            log.warning("marked %d generation(s) of stopped front-ends as interrupted", count)

    def cancel_finished_elsewhere(self) -> int:
        """Cancel, through their handles, this front-end's jobs that the database says are final: cancelled
        through another front-end, or interrupted by one that took this one for dead. Returns how many."""
        with self._lock:
            held = dict(self._jobs)
        finished = self.storage.generations.finished_among(held.keys())
        for generation_id in finished:
            held[generation_id].handle.cancel()
        return len(finished)

    # Submitting ------------------------------------------------------------------------------

    def check(self, user: UserInfo, job: JobRequest) -> CheckedJob:
        """Validate once: the referenced uploads must be the caller's, and the engine must accept the request.
        Raises NotFound (naming the field) or RequestError; stores nothing."""
        uploads = self._own_uploads(user, job)
        images = {upload_id: self._load(upload) for upload_id, upload in uploads.items()}
        return CheckedJob(self.engine.validate(job.engine_request(user.username, images)), uploads)

    def submit(self, user: UserInfo, job: JobRequest) -> GenerationInfo:
        """Check, record as queued and hand to the engine. Raises what `check` raises, or QueueFull /
        EngineClosed (the row is then recorded as failed); nothing is stored when the check fails."""
        checked = self.check(user, job)
        prompt_id = job.prompt_id if job.prompt_id is not None else self._record_prompt(user, job)
        info = self.engine.model_info
        generation = self.storage.generations.create(
            user.id,
            prompt_id,
            model_id=info.name,
            model_hash=info.hash,
            params=request_params(checked.request),
            seed=checked.request.seed,
            frontend_id=self.frontend_id,
        )
        try:
            handle = self.engine.submit(checked.request)
        except (QueueFull, EngineClosed) as exc:
            self.storage.generations.mark_failed(generation.id, f"Refused by the engine: {exc}")
            raise
        with self._lock:
            self._jobs[generation.id] = _RunningJob(generation.id, handle, job, checked)
        handle.subscribe(functools.partial(self._enqueue, generation.id))
        return generation

    def _own_uploads(self, user: UserInfo, job: JobRequest) -> dict[int, UploadInfo]:
        uploads: dict[int, UploadInfo] = {}
        for field_name, upload_id in job.upload_ids():
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

    def _record_prompt(self, user: UserInfo, job: JobRequest) -> int:
        guidance = None
        if job.guidance_upload_id is not None:
            guidance = Guidance(
                job.guidance_upload_id, job.image_guidance_scale, GuidanceDecay(job.image_guidance_decay)
            )
        prompt = self.storage.prompts.create(
            user.id,
            text=job.prompt,
            negative_prompt=job.negative_prompt,
            mix=job.mix,
            guidance=guidance,
            parent_id=job.parent_prompt_id,
        )
        return prompt.id

    # What the model does not know -----------------------------------------------------------------

    def unknown_words(self, texts: Iterable[tuple[str, str | None]]) -> list[tuple[str, list[str]]]:
        """For each (field, text), the words the model does not know (Engine.unknown_words); fields with none
        are left out."""
        found = [(field_name, self.engine.unknown_words(text)) for field_name, text in texts if text]
        return [(field_name, words) for field_name, words in found if words]

    def warnings(self, generation: GenerationInfo) -> list[str]:
        """One warning per word of the generation's texts (prompt, negative prompt, mix texts) the model does
        not know, naming the field and the word. Recomputed from the recorded parameters; none when the
        generation was made by another model, whose vocabulary this process cannot check."""
        if generation.model_hash != self.engine.model_info.hash:
            return []
        params = generation.params
        mix = params.get("mix") or []
        texts = [
            ("prompt", params.get("prompt")),
            ("negative_prompt", params.get("negative_prompt")),
            *((f"mix.{n}.text", item.get("text")) for n, item in enumerate(mix) if isinstance(item, dict)),
        ]
        return [
            f"{field_name}: not known to this model: {word}"
            for field_name, words in self.unknown_words(texts)
            for word in words
        ]

    # Following jobs --------------------------------------------------------------------------

    def progress(self, generation_id: int) -> Progress | None:
        """The engine's latest progress for a job this front-end holds, or None when it is not held here
        (finished, or submitted through another front-end: callers show the stored status)."""
        with self._lock:
            job = self._jobs.get(generation_id)
        return None if job is None else job.handle.progress()

    def watch(self, generation_id: int) -> None:
        """Someone is looking at the job: the engine decodes live previews of its images (`Progress.previews`,
        in memory only, never stored). A job not running here has nothing to show."""
        with self._lock:
            job = self._jobs.get(generation_id)
        if job is not None:
            job.handle.want_previews()

    def wait(self, generation_id: int, timeout: float) -> bool:
        """Block until the job's final status is stored (True) or `timeout` passes (False)."""
        with self._lock:
            job = self._jobs.get(generation_id)
        return True if job is None else job.done.wait(timeout)

    def cancel(self, user: UserInfo, generation_id: int) -> GenerationInfo:
        """Owner or admin: storage decides (and records `cancelled`) first, then the engine drops the job:
        at once when this front-end holds it, else at the holder's next poll (`cancel_finished_elsewhere`)."""
        generation = self.storage.generations.cancel(user.id, generation_id)
        with self._lock:
            job = self._jobs.get(generation_id)
        if job is not None:
            job.handle.cancel()
        return generation

    def _enqueue(self, generation_id: int, progress: Progress) -> None:
        """Called on the engine's thread: hand the event to the finisher thread, which does the storage work."""
        self._events.put((generation_id, progress))

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

    def _record_outcome(self, job: _RunningJob) -> None:
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
        _ignore_state(
            lambda: generations.mark_succeeded(
                job.generation_id,
                images=images,
                seed=result.seed,
                model_s=result.model_s,
                queue_wait_s=result.queue_wait_s,
                params=result.params,
            )
        )

    def _encode(self, job: _RunningJob, result: GenerationResult) -> list[NewImage]:
        """PNG bytes with the recipe (storage.metadata.image_recipe) in both chunks, and each image's own seed."""
        uploads = job.checked.uploads
        sources = [None if item.upload_id is None else uploads[item.upload_id].sha256 for item in job.job.mix]
        guidance_id = job.job.guidance_upload_id
        images = []
        for index, image in enumerate(result.images):
            recipe = image_recipe(
                job.checked.request,
                result,
                index,
                model_hash=self.engine.model_info.short_hash,
                mix_sources=sources,
                guidance_source=None if guidance_id is None else uploads[guidance_id].sha256,
                generation_id=job.generation_id,
            )
            images.append(
                NewImage(index, encode_png(image, recipe), image.width, image.height, seed=recipe.seed)
            )
        return images


def _ignore_state(action: Callable[..., object], *args: object) -> None:
    """A job's row may already be final (cancelled by its owner a moment before): that is not an error."""
    try:
        action(*args)
    except InvalidState as exc:
        log.info("generation state already final: %s", exc)
