"""The shared worker: one thread per device owns the model; every user's jobs enter its queue.

- Cross-user batching: compatible jobs (same family batch key: size, steps, scheduler, thresholding) run
  in one pipeline call, up to ``max_batch`` rows (an image takes one per decoder candidate). Each image
  has its own seed, prompt embedding, CFG scale and guidance image, so a job's images do not depend on its
  batch-mates.
- Fair turns: round-robin between users, one image per turn (fair_queue.FairQueue).
- Progress: queue position, the stage (prior, denoising), each image's step i/N, ETA, through
  ``JobHandle.subscribe``; live previews of the images of jobs someone watches (``want_previews``).
- Cancel: a queued job leaves the queue; a running job's rows leave the batch at the next step.
- A failing batch is retried job by job, so a failing job fails alone.
- Out of GPU memory: a batch that does not fit halves its batch key's row cap (remembered, at most
  ``max_batch``) and its rows run again in batches of the new cap; only an image that does not fit alone fails.
- A bounded queue (QueueFull), with a share per user checked first, and a graceful shutdown.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import PIL.Image
import torch

from model.device_options import DeviceOptions
from model.engine.engine_base import Engine, JobHandle
from model.engine.engine_common import (
    EngineClosed,
    GenerationRequest,
    GenerationResult,
    JobCancelled,
    JobFailed,
    JobStatus,
    Progress,
    QueueFull,
    Stage,
    request_params,
)
from model.engine.fair_queue import FairQueue
from model.engine.validation import resolve_request
from model.families.base import BatchCancelled, Family, Row
from model.families.denoising import StepState

log = logging.getLogger(__name__)

Subscriber = Callable[[Progress], None]
T = TypeVar("T")
BATCH_IMAGES = 8  # the default batch: this many images at the model's default decoder candidates, in rows


class _Job(JobHandle):
    def __init__(self, engine: LocalEngine, request: GenerationRequest, key: Hashable) -> None:
        self.id = uuid.uuid4().hex
        self.request = request
        self.user = request.user
        self.key = key
        self.rows = int(request.candidates or 1)  # batch rows per image: its decoder candidates
        self.pending: deque[int] = deque(range(request.num_images))
        self.images: dict[int, PIL.Image.Image] = {}
        self.steps_done: dict[int, int] = {}
        self.running: tuple[int, ...] = ()  # the images in the batch now running
        self.stage: Stage | None = None
        self.previews_wanted = False
        self.previews: dict[int, PIL.Image.Image] = {}
        self.status = JobStatus.QUEUED
        self.queue_position: int | None = None
        self.eta_s: float | None = None
        self.error: str | None = None
        self.submitted = time.monotonic()
        self.started: float | None = None
        self.model_s = 0.0
        self.cancel_requested = False
        self._engine = engine
        self._done = threading.Event()
        self._subscribers: list[Subscriber] = []
        self._result: GenerationResult | None = None

    # JobHandle
    def progress(self) -> Progress:
        with self._engine._lock:
            return self._snapshot()

    def result(self, timeout: float | None = None) -> GenerationResult:
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.id} still {self.status} after {timeout}s")
        if self.status is JobStatus.CANCELLED:
            raise JobCancelled(f"job {self.id} was cancelled")
        if self.status is JobStatus.FAILED:
            raise JobFailed(self.error or "failed")
        assert self._result is not None
        return self._result

    def cancel(self) -> bool:
        return self._engine._cancel(self)

    def want_previews(self) -> None:
        with self._engine._lock:
            self.previews_wanted = True

    def subscribe(self, callback: Subscriber) -> None:
        with self._engine._lock:
            self._subscribers.append(callback)
            finished = self.status.finished
            snapshot = self._snapshot()
        if finished:
            _call(callback, snapshot)

    # engine side (called with the engine lock held unless noted)
    def image_step(self) -> int:
        """Denoising steps done by the images now running (they step together)."""
        return max((self.steps_done.get(index, 0) for index in self.running), default=0)

    def _snapshot(self) -> Progress:
        steps = int(self.request.steps or 0)
        running = self.status is JobStatus.RUNNING
        return Progress(
            status=self.status,
            queue_position=self.queue_position if self.status is JobStatus.QUEUED else None,
            step=len(self.images) * steps + sum(self.steps_done.values()),
            total=steps * self.request.num_images,
            eta_s=self.eta_s if not self.status.finished else 0.0,
            images_done=len(self.images),
            num_images=self.request.num_images,
            error=self.error,
            stage=self.stage if running else None,
            running_images=self.running if running else (),
            image_step=self.image_step() if running else 0,
            image_steps=steps,
            previews=tuple(
                self.images.get(index, self.previews.get(index)) for index in range(self.request.num_images)
            )
            if self.previews_wanted
            else (),
        )

    def _finish(self, status: JobStatus, error: str | None = None) -> None:
        self.status, self.error = status, error
        self.steps_done.clear()
        self.previews.clear()
        self.running, self.stage = (), None
        self.eta_s = 0.0
        if status is JobStatus.SUCCEEDED:
            self._result = GenerationResult(
                images=[self.images[i] for i in range(self.request.num_images)],
                seed=int(self.request.seed),  # type: ignore[arg-type]
                params=request_params(self.request),
                model_name=self._engine.model_info.name,
                model_hash=self._engine.model_info.hash,
                model_s=self.model_s,
                queue_wait_s=(self.started or time.monotonic()) - self.submitted,
                seeds=[int(self.request.seed) + i for i in range(self.request.num_images)],  # type: ignore[arg-type]
            )
        else:
            self.images.clear()
        self._done.set()

    def _emit_unlocked(self, snapshot: Progress) -> None:
        for callback in list(self._subscribers):
            _call(callback, snapshot)


def _call(callback: Subscriber, progress: Progress) -> None:
    try:
        callback(progress)
    except Exception:  # a subscriber's bug must not stop the worker
        log.exception("progress subscriber failed")


def call_on_fresh_thread(work: Callable[[], T]) -> T:
    """Run ``work`` on a new thread, wait for it, and return its result or raise its error.

    Why: torch's CPU build runs its kernels on libgomp, which gives every thread that runs them a pool of
    helper threads for as long as that thread lives. Once the pools hold more threads than there are cores,
    libgomp stops spin-waiting between kernels and sleeps instead, and a diffusion step is thousands of small
    kernels: on a 2-core CPU a model loaded on the main thread made the engine's worker about 2x slower
    (bench/engine.py). A pool dies with its thread, so torch work done here leaves no pool behind.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = work()
        except BaseException as error:  # re-raised on the caller's thread
            box["error"] = error

    thread = threading.Thread(target=run, name="draftroom-oneoff")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


class LocalEngine(Engine):
    """The in-process engine: one worker thread owning one loaded model family.

    On a CPU, load ``family`` on a thread that does no other torch work while the engine runs (``from_path``
    does; see ``call_on_fresh_thread``)."""

    kind = "local"

    def __init__(
        self,
        family: Family,
        *,
        max_batch: int | None = None,
        max_queue: int = 64,
        max_user_jobs: int = 8,
        max_user_images: int = 32,
        gather_s: float = 0.01,
        preview_every_s: float = 0.5,
    ) -> None:
        """``max_batch``: rows per pipeline call, an image taking one per decoder candidate (default: BATCH_IMAGES
        images at the model's default candidates); ``max_queue``: queued jobs (all users) before QueueFull;
        ``max_user_jobs`` / ``max_user_images``: one user's queued jobs / images not yet started, checked
        before ``max_queue`` so one user's burst cannot lock the others out;
        ``gather_s``: after an idle spell, wait this long so requests sent together share a batch;
        ``preview_every_s``: the pause between live previews of a batch (the first comes at its first step)."""
        if max_batch is None:
            max_batch = BATCH_IMAGES * family.info.default_candidates
        if min(max_batch, max_queue, max_user_jobs, max_user_images) < 1:
            raise ValueError("max_batch, max_queue, max_user_jobs and max_user_images must be at least 1")
        if preview_every_s < 0:
            raise ValueError("preview_every_s must be at least 0")
        self.model_info = family.info
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_user_jobs = max_user_jobs
        self.max_user_images = max_user_images
        self.preview_every_s = preview_every_s
        self._family = family
        self._gather_s = gather_s
        self._queue: FairQueue[_Job] = FairQueue()
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._drain = True
        self._running: list[_Job] = []
        self._batch_started = 0.0
        self._step_s: float | None = None  # seconds per denoising step of a batch (moving average)
        # seconds from a batch's start to its denoising loop: prior, encoders (moving average)
        self._prelude_s: float | None = None
        # rows per batch that a batch key's batches fit in (GPU memory), learned from out-of-memory errors
        self._row_caps: dict[Hashable, int] = {}
        self._thread = threading.Thread(
            target=self._work, name=f"draftroom-engine-{family.info.device}", daemon=True
        )
        self._thread.start()

    @classmethod
    def from_path(
        cls,
        source: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        options: DeviceOptions | None = None,
        **limits: int | float | None,
    ) -> LocalEngine:
        """Load the model at ``source`` (see model.families.load_family) and start its worker.

        The model loads on a short-lived thread (see ``call_on_fresh_thread``), so the worker is the only
        live thread that has run torch's CPU kernels."""
        from model.families import load_family

        family = call_on_fresh_thread(
            lambda: load_family(source, device=device, dtype=dtype, options=options)
        )
        return cls(family, **limits)  # type: ignore[arg-type]

    @property
    def row_caps(self) -> dict[Hashable, int]:
        """Batch keys whose batches ran out of GPU memory, each with the rows per batch it is now held to."""
        with self._lock:
            return dict(self._row_caps)

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)

    # Engine
    def validate(self, request: GenerationRequest) -> GenerationRequest:
        resolved = resolve_request(request, self.model_info)
        self._family.check_request(resolved)
        return resolved

    def unknown_words(self, text: str) -> list[str]:
        return self._family.unknown_words(text)

    def submit(self, request: GenerationRequest) -> JobHandle:
        resolved = self.validate(request)
        job = _Job(self, resolved, self._family.batch_key(resolved))
        with self._lock:
            if self._closed:
                raise EngineClosed("the engine is shutting down")
            self._check_room(resolved)
            self._queue.push(job)
            updates = self._reposition()
            self._wake.notify_all()
        self._emit(updates)
        return job

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
            self._drain = wait
            updates = []
            if not wait:
                for job in self._queue.jobs() + self._running:
                    updates += self._cancel_locked(job)
            self._wake.notify_all()
        self._emit(updates)
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    # queue bookkeeping (lock held)
    def _check_room(self, request: GenerationRequest) -> None:
        """Raise QueueFull naming the limit ``request`` would break: per-user ones first, then max_queue."""
        waiting = self._queue.jobs_of(request.user)
        if len(waiting) >= self.max_user_jobs:
            raise QueueFull(
                "max_user_jobs",
                f"you have {len(waiting)} jobs waiting, the per-user limit "
                f"(max_user_jobs = {self.max_user_jobs}); wait until one starts",
            )
        images = sum(len(job.pending) for job in waiting)
        if images + request.num_images > self.max_user_images:
            raise QueueFull(
                "max_user_images",
                f"you have {images} images waiting and ask for "
                f"{request.num_images} more; the per-user limit is max_user_images = "
                f"{self.max_user_images}; wait until some start",
            )
        if len(self._queue) >= self.max_queue:
            raise QueueFull(
                "max_queue",
                f"the shared queue holds {self.max_queue} jobs, its limit (max_queue); try again shortly",
            )

    def _reposition(self) -> list[tuple[_Job, Progress]]:
        """New queue positions and ETAs for queued jobs; returns the progress events to send."""
        updates = []
        running_left = self._running_seconds_left()
        position = 0
        for job, ahead in self._queue.order():
            assert isinstance(job, _Job)
            eta = None
            if self._step_s is not None:
                eta = running_left + self._batches(ahead + len(job.pending), job) * self._batch_s(job)
            if job.status is JobStatus.QUEUED:
                if (job.queue_position, job.eta_s) != (position, eta):
                    job.queue_position, job.eta_s = position, eta
                    updates.append((job, job._snapshot()))
                position += 1
            else:
                job.eta_s = eta
        return updates

    def _batches(self, images: int, job: _Job) -> int:
        """Batches that ``images`` images take, each as many rows as ``job``'s."""
        return math.ceil(images / max(1, self.max_batch // job.rows))

    def _batch_s(self, job: _Job) -> float:
        """Seconds a batch of ``job``'s images takes, by the moving averages (lock held, ``_step_s`` known)."""
        assert self._step_s is not None
        return (self._prelude_s or 0.0) + int(job.request.steps) * self._step_s  # type: ignore[arg-type]

    def _batch_seconds_left(self, job: _Job) -> float:
        """Seconds until the running batch that holds ``job`` ends (lock held, ``_step_s`` known)."""
        assert self._step_s is not None
        if job.stage is Stage.DENOISING:
            return (int(job.request.steps) - job.image_step()) * self._step_s  # type: ignore[arg-type]
        prelude_left = max(0.0, (self._prelude_s or 0.0) - (time.monotonic() - self._batch_started))
        return prelude_left + int(job.request.steps) * self._step_s  # type: ignore[arg-type]

    def _running_seconds_left(self) -> float:
        if self._step_s is None or not self._running:
            return 0.0
        return max(self._batch_seconds_left(job) for job in self._running)

    def _running_eta(self, job: _Job) -> float | None:
        """A running job's ETA: the rest of its batch, then batches for its images still waiting."""
        if self._step_s is None:
            return None
        later = self._batches(len(job.pending), job) * self._batch_s(job)
        return self._batch_seconds_left(job) + later

    def _cancel_locked(self, job: _Job) -> list[tuple[_Job, Progress]]:
        if job.status.finished:
            return []
        job.cancel_requested = True
        self._queue.remove(job)
        job._finish(JobStatus.CANCELLED)
        return [(job, job._snapshot()), *self._reposition()]

    def _cancel(self, job: _Job) -> bool:
        with self._lock:
            if job.status.finished:
                return False
            updates = self._cancel_locked(job)
        self._emit(updates)
        return True

    @staticmethod
    def _emit(updates: Sequence[tuple[_Job, Progress]]) -> None:
        for job, snapshot in updates:
            job._emit_unlocked(snapshot)

    # the worker
    def _work(self) -> None:
        while True:
            with self._lock:
                idle = not len(self._queue)
                while not len(self._queue) and not self._closed:
                    self._wake.wait()
                if not len(self._queue) or (self._closed and not self._drain):
                    return
            if idle and self._gather_s > 0:
                time.sleep(self._gather_s)
            with self._lock:
                key = self._queue.next_key()
                items = self._queue.take(self._row_caps.get(key, self.max_batch))
                jobs = list(dict.fromkeys(job for job, _ in items))
                updates = []
                self._batch_started = time.monotonic()
                for job in jobs:
                    job.running = tuple(index for owner, index in items if owner is job)
                    if job.status is JobStatus.QUEUED:
                        job.status, job.started = JobStatus.RUNNING, self._batch_started
                    updates.append((job, job._snapshot()))
                self._running = jobs
                updates += self._reposition()
            self._emit(updates)
            self._run([Row(job.request, index, tag=job) for job, index in items])
            with self._lock:
                for job in self._running:
                    job.running, job.stage = (), None
                self._running = []

    def _run(self, rows: list[Row], isolate: bool = True) -> None:
        """Run one batch; on an error, rerun each job alone so that only the failing job fails; out of GPU memory,
        rerun the rows in smaller batches (``_out_of_memory``)."""
        control = _Control(self)
        started = time.monotonic()
        out_of_memory = None
        try:
            images = self._family.generate(rows, control, _Previews(self))
        except BatchCancelled:
            images = [None] * len(rows)
        except torch.OutOfMemoryError as error:
            out_of_memory = str(error)  # handled below, once the error's frames (and their tensors) are freed
        except Exception as error:
            jobs = _jobs(rows)
            if isolate and len(jobs) > 1:
                log.warning("batch of %d jobs failed (%s); retrying each job alone", len(jobs), error)
                for job in jobs:
                    self._run([row for row in rows if row.tag is job], isolate=False)
                return
            log.exception("job failed")
            self._fail(jobs, f"{type(error).__name__}: {error}")
            return
        if out_of_memory is not None:
            self._out_of_memory(rows, out_of_memory)
            return
        elapsed = time.monotonic() - started
        updates = []
        with self._lock:
            for job in _jobs(rows):
                job.model_s += elapsed
            for row, image in zip(rows, images, strict=True):
                job = _job(row)
                job.steps_done.pop(row.index, None)
                if image is not None and not job.status.finished:
                    job.images[row.index] = image
            for job in _jobs(rows):
                if job.status.finished:
                    continue
                if len(job.images) == job.request.num_images:
                    job._finish(JobStatus.SUCCEEDED)
                updates.append((job, job._snapshot()))
        self._emit(updates)

    def _out_of_memory(self, rows: list[Row], error: str) -> None:
        """A batch ran out of GPU memory: halve its key's row cap, keep it for later batches (logged once per
        change), and run the same rows again in batches of the new cap, so nobody's job fails for sharing a
        batch. A lone image that does not fit fails its job, saying so."""
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # return the failed batch's cached blocks before the smaller ones run
        with self._lock:
            for row in rows:
                _job(row).steps_done.pop(row.index, None)
        request = rows[0].request
        if len(rows) == 1:
            log.error("out of GPU memory for a lone image: %s", error)
            candidates = int(request.candidates or 1)
            self._fail(
                _jobs(rows),
                f"out of GPU memory for one {request.width}x{request.height} image"
                + (f" with {candidates} candidates" if candidates > 1 else "")
                + ", even alone: ask for a smaller size"
                + (" or fewer candidates" if candidates > 1 else ""),
            )
            return
        key = _job(rows[0]).key
        held = sum(_job(row).rows for row in rows)  # model rows: an image takes one per decoder candidate
        cap = max(1, held // 2)
        with self._lock:
            lowered = cap < self._row_caps.get(key, self.max_batch)
            if lowered:
                self._row_caps[key] = cap
        if lowered:
            log.warning(
                "out of GPU memory with %d rows of %dx%d px, %s steps; batches of that kind now take at most %d "
                "rows (%s)",
                held,
                request.width,
                request.height,
                request.steps,
                cap,
                error.splitlines()[0] if error else "",
            )
        left = rows
        while left:  # each part at the cap as it is then: a part that ran out of memory has lowered it
            cap = self.row_caps.get(key, cap)
            part, used = (
                [left[0]],
                _job(left[0]).rows,
            )  # at least one image, even one with more rows than the cap
            for row in left[1:]:
                if used + _job(row).rows > cap:
                    break
                part.append(row)
                used += _job(row).rows
            self._run(part)
            left = left[len(part) :]

    def _fail(self, jobs: Sequence[_Job], message: str) -> None:
        updates = []
        with self._lock:
            for job in jobs:
                if not job.status.finished:
                    self._queue.remove(job)
                    job._finish(JobStatus.FAILED, message)
                    updates += [(job, job._snapshot()), *self._reposition()]
        self._emit(updates)


class _Control:
    """The engine's side of a running batch: its stage, per-step progress and ETA, and which rows are still
    wanted. Stage and step times feed the engine's moving averages."""

    def __init__(self, engine: LocalEngine) -> None:
        self._engine = engine
        self._started = self._last = time.monotonic()

    def on_stage(self, stage: Stage, rows: Sequence[Row]) -> None:
        engine = self._engine
        now = time.monotonic()
        updates = []
        with engine._lock:
            if stage is Stage.DENOISING:
                engine._prelude_s = _average(engine._prelude_s, now - self._started)
                self._last = now
            for job in _jobs(rows):
                if not job.status.finished:
                    job.stage = stage
                    job.eta_s = engine._running_eta(job)
                    updates.append((job, job._snapshot()))
        engine._emit(updates)

    def on_step(self, step: int, total: int, rows: Sequence[Row]) -> None:
        engine = self._engine
        now = time.monotonic()
        spent, self._last = now - self._last, now
        updates = []
        with engine._lock:
            engine._step_s = _average(engine._step_s, spent)
            for row in rows:
                job = _job(row)
                job.steps_done[row.index] = round(step * int(job.request.steps or 0) / total)
            for job in _jobs(rows):
                if not job.status.finished:
                    job.eta_s = engine._running_eta(job)
                    updates.append((job, job._snapshot()))
            updates += engine._reposition()
        engine._emit(updates)

    def wanted(self, row: Row) -> bool:
        return not row.tag.cancel_requested


class _Previews:
    """A batch's step hook: live previews of the images someone watches, then a pause of ``preview_every_s``.

    An image's preview is the predicted clean picture of its first live row (its first decoder candidate
    until the verifier keeps one). The last step is skipped: the finished picture comes right after it."""

    def __init__(self, engine: LocalEngine) -> None:
        self._engine = engine
        self._next = 0.0  # monotonic time of the next preview; the first comes at the first step

    def __call__(self, state: StepState) -> None:
        if state.step + 1 >= state.total or time.monotonic() < self._next:
            return
        engine = self._engine
        picks: dict[tuple[_Job, int], int] = {}  # (job, image index) -> live row
        with engine._lock:
            for live, position in enumerate(state.positions):
                row = state.rows[position]
                job = _job(row)
                if job.previews_wanted and not job.status.finished:
                    picks.setdefault((job, row.index), live)
        if not picks:
            return
        pictures = engine._family.preview_images(state.predicted_clean()[list(picks.values())])
        updates = []
        with engine._lock:
            for (job, index), picture in zip(picks, pictures, strict=True):
                if not job.status.finished:  # cancelled while the preview was decoded
                    job.previews[index] = picture
            for job in dict.fromkeys(job for job, _ in picks):
                if not job.status.finished:
                    updates.append((job, job._snapshot()))
        engine._emit(updates)
        self._next = time.monotonic() + engine.preview_every_s


def _job(row: Row) -> _Job:
    """The job a row of the engine's batches belongs to (its tag)."""
    assert isinstance(row.tag, _Job)
    return row.tag


def _jobs(rows: Sequence[Row]) -> list[_Job]:
    """The jobs of ``rows``, each once, in order."""
    return list(dict.fromkeys(_job(row) for row in rows))


def _average(mean: float | None, sample: float) -> float:
    """A moving average that follows the machine's speed within a few samples."""
    return sample if mean is None else 0.8 * mean + 0.2 * sample
