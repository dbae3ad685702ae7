"""The Ray Serve engine: the model runs as a Serve deployment of replicas; this process is a front-end.

- Each replica (``ModelReplica``) loads the model and runs today's ``LocalEngine`` around it, so a replica
  batches, takes fair turns, guides, mixes, previews and cancels exactly like the single-process engine.
- A job is one streaming Serve request (``DeploymentHandle.options(stream=True)``, a generator method on the
  replica): its first item says whether the replica took the job, then every progress change streams back,
  then the result. Ray Serve's docs recommend generator methods for results that arrive piece by piece; a
  stream also ties the job to the replica that runs it, so nothing has to remember where a job went.
- Cancel cancels the stream (``DeploymentResponseGenerator.cancel``): Serve delivers the cancellation to the
  replica that runs the request, where the job leaves its batch at the next step. ``want_previews`` and the
  health endpoint's replica list are control calls broadcast to the replicas (``DeploymentHandle.broadcast``):
  once per watched job and once per health check.
- A replica that dies (its process killed, the node lost) ends its streams with ``ActorDiedError``: the jobs
  it held fail with a clear error and are not retried (see ``_REPLICA_LOST``); other replicas' jobs go on,
  and Serve starts a replacement.

Ray is imported only here, and only ``python app.py serve --engine ray`` imports this module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import inspect
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.serve import Application
from ray.serve.exceptions import RequestCancelledError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from model.device_options import DeviceOptions
from model.engine.engine_base import Engine, JobHandle
from model.engine.engine_common import (
    EngineClosed,
    EngineStatus,
    GenerationRequest,
    GenerationResult,
    JobCancelled,
    JobFailed,
    JobStatus,
    ModelInfo,
    Progress,
    QueueFull,
    ReplicaStatus,
    RequestError,
)
from model.engine.engine_local import LocalEngine, _call, call_on_fresh_thread

log = logging.getLogger(__name__)

DEPLOYMENT = "model"
CONTROL_TIMEOUT_S = 10.0  # a control call (validate, previews, health) that takes longer has failed
QUEUED_ETA_EVERY_S = 0.5  # a queued job whose place has not changed hears of its new ETA at most this often
SUBMIT_TIMEOUT_S = 60.0  # a replica answers a submit at once; more means the cluster has no replica up
# Requests beyond a replica's engine queue: validate, unknown_words and describe calls share the slots.
CONTROL_SLOTS = 16
# Why a lost replica's jobs fail instead of running again elsewhere: a job that kills its replica (out of
# memory, a driver crash) would kill a second one if retried, and its images were part-way through.
_REPLICA_LOST = (
    "the model replica {replica} running this job stopped ({error}); its jobs failed, other replicas' jobs "
    "are unaffected and Ray Serve starts a replacement: submit the job again"
)


@dataclass(frozen=True)
class _Accepted:
    """A stream's first item when the replica took the job."""

    job_id: str
    replica: str
    progress: Progress


@dataclass(frozen=True)
class _Refused:
    """A stream's only item when the replica refused the job (RequestError, QueueFull, EngineClosed)."""

    error: Exception


@dataclass(frozen=True)
class _Finished:
    """A stream's last item: the final progress (previews left out: they are the result's images)."""

    progress: Progress
    result: GenerationResult | None


class ModelReplica:
    """One replica of the Serve deployment: the model and a ``LocalEngine`` worker around it."""

    def __init__(
        self,
        model: str,
        device: str | None,
        dtype: str | None,
        device_options: DeviceOptions | None,
        options: dict[str, float],
    ) -> None:
        from model.families import load_family

        family = call_on_fresh_thread(
            lambda: load_family(model, device=device, dtype=dtype, options=device_options)
        )
        self._engine = LocalEngine(family, **options)  # type: ignore[arg-type]
        self._options = options
        self._jobs: dict[str, JobHandle] = {}
        self._outcomes: Counter[JobStatus] = Counter()
        self.replica_id = serve.get_replica_context().replica_id.unique_id

    def describe(self) -> tuple[ModelInfo, dict[str, float]]:
        """The model this replica serves and its engine options."""
        return self._engine.model_info, self._options

    def validate(self, request: GenerationRequest) -> GenerationRequest | _Refused:
        try:
            return self._engine.validate(request)
        except RequestError as error:
            return _Refused(error)

    def unknown_words(self, text: str) -> list[str]:
        return self._engine.unknown_words(text)

    def want_previews(self, job_id: str) -> bool:
        """True when this replica runs ``job_id`` (the call is broadcast to every replica)."""
        handle = self._jobs.get(job_id)
        if handle is not None:
            handle.want_previews()
        return handle is not None

    def stats(self) -> ReplicaStatus:
        states = Counter(handle.progress().status for handle in list(self._jobs.values()))
        return ReplicaStatus(
            id=self.replica_id,
            state="RUNNING",
            running_jobs=states[JobStatus.RUNNING],
            queued_jobs=states[JobStatus.QUEUED],
            succeeded=self._outcomes[JobStatus.SUCCEEDED],
            failed=self._outcomes[JobStatus.FAILED],
            cancelled=self._outcomes[JobStatus.CANCELLED],
        )

    async def run(
        self, request: GenerationRequest
    ) -> AsyncIterator[_Accepted | _Refused | Progress | _Finished]:
        """One job: accepted or refused, then its progress events, then its result.

        When the caller cancels the request (or goes away), Serve raises CancelledError at the ``await``;
        the ``finally`` then cancels the job, which leaves its batch at the next step."""
        try:
            handle = self._engine.submit(request)
        except (RequestError, QueueFull, EngineClosed) as error:
            yield _Refused(error)
            return
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Progress] = asyncio.Queue()

        def deliver(progress: Progress) -> None:  # on the engine's worker thread
            loop.call_soon_threadsafe(events.put_nowait, progress)

        handle.subscribe(deliver)
        self._jobs[handle.id] = handle
        try:
            sent = handle.progress()
            yield _Accepted(handle.id, self.replica_id, sent)
            sent_at = time.monotonic()
            while not (progress := await events.get()).status.finished:
                if _eta_only(sent, progress) and time.monotonic() - sent_at < QUEUED_ETA_EVERY_S:
                    continue
                sent, sent_at = progress, time.monotonic()
                yield progress
            result = handle.result(0) if progress.status is JobStatus.SUCCEEDED else None
            yield _Finished(dataclasses.replace(progress, previews=()), result)
        finally:
            handle.cancel()  # no-op when the job finished
            self._jobs.pop(handle.id, None)
            self._outcomes[handle.progress().status] += 1


def _eta_only(sent: Progress, progress: Progress) -> bool:
    """Whether ``progress`` only moves a queued job's ETA. Every step re-estimates the ETA of every queued
    job; streamed one by one, 32 queued jobs cost a replica more than its batches (bench/scale.py)."""
    return (
        sent.status is progress.status is JobStatus.QUEUED and sent.queue_position == progress.queue_position
    )


class _RayJob(JobHandle):
    """The front-end's mirror of a job running on a replica, kept current by the job's stream."""

    def __init__(self, engine: RayEngine, accepted: _Accepted, stream: DeploymentResponseGenerator) -> None:
        self.id = accepted.job_id
        self.replica = accepted.replica
        self._engine = engine
        self._stream = stream
        self._progress = accepted.progress
        self._result: GenerationResult | None = None
        self._previews_wanted = False
        self._subscribers: list[Callable[[Progress], None]] = []
        self._done = threading.Event()

    # JobHandle
    def progress(self) -> Progress:
        with self._engine._lock:
            return self._progress

    def result(self, timeout: float | None = None) -> GenerationResult:
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.id} still {self._progress.status} after {timeout}s")
        progress = self.progress()
        if progress.status is JobStatus.CANCELLED:
            raise JobCancelled(f"job {self.id} was cancelled")
        if progress.status is JobStatus.FAILED:
            raise JobFailed(progress.error or "failed")
        assert self._result is not None
        return self._result

    def cancel(self) -> bool:
        """Marked cancelled here at once; the stream's cancellation reaches the replica that runs the job."""
        if not self._update(self._final(JobStatus.CANCELLED)):
            return False
        self._engine._loop.call_soon_threadsafe(self._stream.cancel)
        return True

    def want_previews(self) -> None:
        with self._engine._lock:
            if self._previews_wanted or self._progress.status.finished:
                return
            self._previews_wanted = True
        self._engine._broadcast("want_previews", self.id)

    def subscribe(self, callback: Callable[[Progress], None]) -> None:
        with self._engine._lock:
            self._subscribers.append(callback)
            finished, progress = self._progress.status.finished, self._progress
        if finished:
            _call(callback, progress)

    # the stream's side (on the engine's event loop)
    async def follow(self) -> None:
        """Apply the stream's events until the job ends; a lost replica fails the job."""
        try:
            async for event in self._stream:
                if isinstance(event, _Finished):
                    self._result = event.result
                    previews = tuple(event.result.images) if event.result and self._previews_wanted else ()
                    self._update(dataclasses.replace(event.progress, previews=previews))
                    break  # the replica's generator ends here too
                self._update(event)
        except RequestCancelledError:
            pass  # our own cancel: the job is marked cancelled already
        except Exception as error:
            log.warning("job %s lost its replica %s (%s)", self.id, self.replica, type(error).__name__)
            message = _REPLICA_LOST.format(replica=self.replica, error=type(error).__name__)
            self._update(self._final(JobStatus.FAILED, message))
        finally:
            self._engine._forget(self)
        if not self._done.is_set():
            self._update(self._final(JobStatus.FAILED, "the replica ended the job without a result"))

    def _final(self, status: JobStatus, error: str | None = None) -> Progress:
        with self._engine._lock:
            return dataclasses.replace(
                self._progress,
                status=status,
                error=error,
                queue_position=None,
                eta_s=0.0,
                stage=None,
                running_images=(),
                image_step=0,
                previews=(),
            )

    def _update(self, progress: Progress) -> bool:
        """Record ``progress`` and tell the subscribers; False (nothing changes) once the job has finished."""
        with self._engine._lock:
            if self._progress.status.finished:
                return False
            self._progress = progress
            subscribers = list(self._subscribers)
        if progress.status.finished:
            self._done.set()
        for callback in subscribers:
            _call(callback, progress)
        return True


class RayEngine(Engine):
    """The Engine contract over a Ray Serve deployment: this process is a front-end, replicas hold the model.

    Joins the Ray cluster at ``address`` (else ``RAY_ADDRESS``, else starts a local Ray instance). Deploys
    the Serve application ``app_name`` unless one runs already, in which case this front-end shares it
    (several front-ends, one engine). ``engine_options`` are each replica's ``LocalEngine`` options
    (max_batch, max_queue, ...); the queue limits hold per replica."""

    kind = "ray"

    def __init__(
        self,
        model: str | Path,
        *,
        address: str | None = None,
        app_name: str = "draftroom",
        replicas: int = 1,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        gpus_per_replica: float | None = None,
        cpus_per_replica: float = 1.0,
        device: str | None = None,
        dtype: str | None = None,
        device_options: DeviceOptions | None = None,
        **engine_options: float | None,
    ) -> None:
        scaling = _scaling(replicas, min_replicas, max_replicas, gpus_per_replica, cpus_per_replica)
        self._owns_ray = not ray.is_initialized() and not (address or os.environ.get("RAY_ADDRESS"))
        if not ray.is_initialized():
            ray.init(address=address)
        serve.start(proxy_location="Disabled")  # the front-ends serve HTTP: no Serve proxy, handles only
        self.app_name = app_name
        if _app_running(app_name):
            log.info("joining the running Ray Serve application %r (its replicas and options stay)", app_name)
            self._handle: DeploymentHandle = serve.get_app_handle(app_name)
        else:
            log.info("deploying %s on Ray Serve as %r (%s)", model, app_name, scaling)
            application = build_app(
                {
                    "model": str(model),
                    **scaling,
                    "device": device,
                    "dtype": dtype,
                    "device_options": device_options,
                    **engine_options,
                }
            )
            self._handle = serve.run(application, name=app_name, route_prefix=None)
        self._streaming = self._handle.options(stream=True)
        self.model_info, self.engine_options = self._control(self._handle.describe.remote())
        if self.engine_options != {
            name: value for name, value in engine_options.items() if value is not None
        }:
            log.warning(
                "the running replicas keep their options %s, not %s", self.engine_options, engine_options
            )
        self._lock = threading.RLock()
        self._jobs: dict[str, _RayJob] = {}
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="draftroom-ray-engine", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)

    # Engine
    def validate(self, request: GenerationRequest) -> GenerationRequest:
        answer = self._control(self._handle.validate.remote(request))
        if isinstance(answer, _Refused):
            raise answer.error
        return answer

    def unknown_words(self, text: str) -> list[str]:
        return self._control(self._handle.unknown_words.remote(text))

    def submit(self, request: GenerationRequest) -> JobHandle:
        with self._lock:
            if self._closed:
                raise EngineClosed("the engine is shutting down")
        started = asyncio.run_coroutine_threadsafe(self._start(request), self._loop)
        try:
            return started.result(SUBMIT_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            started.cancel()  # cancels the request too: no job runs that nobody follows
            raise EngineClosed(f"no model replica answered within {SUBMIT_TIMEOUT_S:.0f}s") from None

    def shutdown(self, wait: bool = True) -> None:
        """Stop this front-end: ``wait`` lets its jobs finish, else cancels them. The deployment stays for
        the other front-ends, unless this engine started the local Ray instance: then Ray stops too."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            if wait:
                job._done.wait()
            else:
                job.cancel()
        if self._owns_ray and ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)

    def status(self) -> EngineStatus:
        """The deployment's state and each replica that answers: its jobs now and those it served."""
        deployment = serve.status().applications.get(self.app_name)
        overview = deployment.deployments.get(DEPLOYMENT) if deployment else None
        replicas = sorted(self._broadcast("stats"), key=lambda replica: replica.id)
        return EngineStatus(
            kind=self.kind,
            state=_name(overview.status) if overview else None,
            replica_states={_name(state): count for state, count in overview.replica_states.items()}
            if overview
            else {},
            replicas=tuple(replicas),
        )

    # internals
    async def _start(self, request: GenerationRequest) -> _RayJob:
        """Send the job (a streaming request) and wait for the replica's first answer."""
        stream = self._streaming.run.remote(request)
        assert isinstance(stream, DeploymentResponseGenerator), "a generator method answers with a stream"
        try:
            first = await stream.__anext__()
        except asyncio.CancelledError:  # submit gave up waiting
            stream.cancel()
            raise
        except Exception as error:  # no replica took it (none up, or it died at once)
            raise EngineClosed(f"no model replica took the job ({type(error).__name__}: {error})") from error
        if isinstance(first, _Refused):
            raise first.error
        job = _RayJob(self, first, stream)
        with self._lock:
            self._jobs[job.id] = job
        self._loop.create_task(job.follow())
        return job

    def _forget(self, job: _RayJob) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)

    def _control(self, response: Any) -> Any:
        return response.result(timeout_s=CONTROL_TIMEOUT_S)

    def _broadcast(self, method: str, *args: object) -> list[Any]:
        """Call ``method`` on every running replica; the answers of those that replied in time."""
        try:
            answers = self._handle.broadcast(method, *args).results(
                timeout_s=CONTROL_TIMEOUT_S, return_exceptions=True
            )
        except TimeoutError:
            log.warning("broadcast %s: the replicas did not answer within %ss", method, CONTROL_TIMEOUT_S)
            return []
        for answer in answers:
            if isinstance(answer, Exception):  # a replica that died meanwhile: Serve replaces it
                log.warning("broadcast %s: a replica failed: %s", method, answer)
        return [answer for answer in answers if not isinstance(answer, Exception)]


# each replica's LocalEngine options, as LocalEngine declares them (max_batch, max_queue, gather_s, ...)
ENGINE_OPTIONS = tuple(
    name
    for name, parameter in inspect.signature(LocalEngine.__init__).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)


def _scaling(
    replicas: int | None,
    min_replicas: int | None,
    max_replicas: int | None,
    gpus_per_replica: float | None,
    cpus_per_replica: float,
) -> dict[str, Any]:
    """The replica options, checked (ValueError), before anything starts."""
    autoscale = min_replicas is not None or max_replicas is not None
    if autoscale and not (min_replicas and max_replicas and 1 <= min_replicas <= max_replicas):
        raise ValueError("min_replicas and max_replicas go together, with 1 <= min_replicas <= max_replicas")
    if replicas is not None and replicas < 1:
        raise ValueError("replicas must be at least 1")
    if cpus_per_replica < 0 or (gpus_per_replica is not None and gpus_per_replica < 0):
        raise ValueError("cpus_per_replica and gpus_per_replica must be at least 0")
    counts = (
        {"min_replicas": min_replicas, "max_replicas": max_replicas} if autoscale else {"replicas": replicas}
    )
    return {**counts, "gpus_per_replica": gpus_per_replica, "cpus_per_replica": cpus_per_replica}


def build_app(args: dict[str, Any]) -> Application:
    """The Serve application of model replicas. ``RayEngine`` deploys it; a KubeRay ``RayService`` (or
    ``serve deploy``) imports it as ``model.engine.engine_ray:build_app`` (docs/DEPLOY.md).

    ``args``: ``model`` (a path every node can read), ``replicas`` or ``min_replicas``/``max_replicas``,
    ``gpus_per_replica`` (default 1 when the cluster has GPUs, else 0), ``cpus_per_replica`` (default 1),
    ``device``, ``dtype``, ``device_options`` and ``LocalEngine``'s options (``max_batch``, ``max_queue``,
    ``max_user_jobs``, ``max_user_images``, ...), which hold per replica."""
    unknown = set(args) - {"model", "replicas", "min_replicas", "max_replicas", "gpus_per_replica"}
    unknown -= {"cpus_per_replica", "device", "dtype", "device_options", *ENGINE_OPTIONS}
    if unknown or "model" not in args:
        raise ValueError(f"build_app takes a model and known options; unknown: {sorted(unknown)}")
    scaling = _scaling(
        args.get("replicas", 1 if args.get("min_replicas") is None else None),
        args.get("min_replicas"),
        args.get("max_replicas"),
        args.get("gpus_per_replica"),
        float(args.get("cpus_per_replica", 1.0)),
    )
    gpus = scaling["gpus_per_replica"]
    if gpus is None:
        gpus = 1.0 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    engine_options = {name: args[name] for name in ENGINE_OPTIONS if args.get(name) is not None}
    max_batch = int(engine_options.get("max_batch", 8))
    counts: dict[str, Any] = (
        {
            "autoscaling_config": {
                "min_replicas": scaling["min_replicas"],
                "max_replicas": scaling["max_replicas"],
                "target_ongoing_requests": max_batch,  # one full batch per replica
            }
        }
        if "min_replicas" in scaling
        else {"num_replicas": scaling["replicas"]}
    )
    deployment = serve.deployment(
        name=DEPLOYMENT,
        ray_actor_options={"num_cpus": scaling["cpus_per_replica"], "num_gpus": gpus},
        # every job is one ongoing request for its whole life: room for the replica's whole queue
        max_ongoing_requests=int(engine_options.get("max_queue", 64)) + max_batch + CONTROL_SLOTS,
        graceful_shutdown_timeout_s=600,  # a replica scaled down finishes its jobs first
        **counts,
    )(ModelReplica)
    return deployment.bind(
        str(args["model"]), args.get("device"), args.get("dtype"), args.get("device_options"), engine_options
    )


def _name(state: object) -> str:
    """A Serve state's name: Serve's status objects hold enums or, once parsed from JSON, plain strings."""
    return str(getattr(state, "value", state))


def _app_running(name: str) -> bool:
    application = serve.status().applications.get(name)
    return application is not None and application.status == "RUNNING"
