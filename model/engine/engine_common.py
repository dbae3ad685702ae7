"""Types shared by every engine: the request, its errors, progress events and results.

These are the contract between the engine and its callers (web app, CLI, a later Ray Serve engine);
see docs/ARCHITECTURE.md "Engine contract". Fields may be added, never renamed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import PIL.Image

from model.engine.request_fields import DEFAULT_MIX_SPACE, GUIDANCE_SEMANTICS, MAX_SIDE, MAX_STEPS

T = TypeVar("T")

SCHEDULERS = ("ddpm", "ddim", "dpmpp")


class RequestError(ValueError):
    """Bad input, refused before it reaches the model. ``field`` names the field; str() says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[RequestError], tuple[str, str]]:
        """Pickle with both fields, so the error crosses a process boundary (the Ray engine's replicas)."""
        return (type(self), (self.field, self.message))


class JobCancelled(Exception):
    """The job was cancelled before it finished."""


class JobFailed(Exception):
    """The job failed while running; the message says why. Other jobs in its batch are unaffected."""


class QueueFull(Exception):
    """The engine's queue, or the caller's share of it, is at capacity; try again later.

    ``limit`` names the limit that was hit: ``max_queue`` (every user's jobs together), ``max_user_jobs`` or
    ``max_user_images`` (one user's waiting jobs or images), so one user cannot fill the queue for everyone."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit

    def __reduce__(self) -> tuple[type[QueueFull], tuple[str, str]]:
        """Pickle with both fields, so the error crosses a process boundary (the Ray engine's replicas)."""
        return (type(self), (self.limit, str(self)))


class EngineClosed(RuntimeError):
    """The engine has been shut down and takes no new jobs."""


def resolved(value: T | None) -> T:
    """A field of a resolved request: validation filled it in, so None here is a bug, not bad input."""
    if value is None:
        raise AssertionError("the request was not resolved (Engine.validate fills every field)")
    return value


@dataclass(frozen=True)
class MixIngredient:
    """One ingredient of an embedding mix: a text or an image, with a signed weight."""

    weight: float
    text: str | None = None
    image: PIL.Image.Image | None = None  # exactly one of text / image


@dataclass(frozen=True)
class GenerationRequest:
    """What a user asks for. ``Engine.validate`` returns a copy with every default resolved and a seed."""

    prompt: str = ""
    negative_prompt: str = ""
    seed: int | None = None  # None -> random; the used seed is always reported
    steps: int | None = None  # None -> model default
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    num_images: int = 1
    scheduler: str | None = None  # "ddpm" | "ddim" | "dpmpp" | the model's own (None -> model default)
    guidance_image: PIL.Image.Image | None = None
    image_guidance_scale: float = 0.0
    image_guidance_decay: str = "none"  # "none" | "linear" | "cosine"
    mix: tuple[MixIngredient, ...] = ()
    interpolation: float | None = None  # slerp position between the two ingredients
    renormalize_mix: bool = True
    mix_space: str = DEFAULT_MIX_SPACE  # "text": texts mixed before one prior call; "image": each alone
    dynamic_thresholding: bool = False
    user: str = "anonymous"  # fairness key
    image_guidance_noised: bool = (
        False  # pull toward the reference noised to the current step (docs/GUIDANCE.md)
    )
    candidates: int | None = (
        None  # starting noises per image, the verifier's pick finished (None -> model default)
    )
    upscale: bool = False  # the model's upsampler turns each finished picture into one 4x its size

    def ingredients(self) -> tuple[MixIngredient, ...]:
        """The mix as the model sees it: a non-empty prompt is the first ingredient, at weight 1."""
        if not self.mix:
            return ()
        head = (MixIngredient(weight=1.0, text=self.prompt),) if self.prompt.strip() else ()
        return head + tuple(self.mix)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Stage(StrEnum):
    """Where a running batch is: the prior (Kandinsky: the text becomes an image embedding), then the
    denoising loop (the decoder's steps, each image's own)."""

    PRIOR = "prior"
    DENOISING = "denoising"


@dataclass(frozen=True)
class Progress:
    """A job's state. ``step``/``total`` count denoising steps over all of the job's images; ``image_step`` of
    ``image_steps`` is where each image now running (``running_images``) is, in the stage ``stage``.

    ``previews`` has one entry per image when previews were asked for (``JobHandle.want_previews``): the
    image's latest live preview (its predicted clean picture, at most the model's size), the finished image
    once it is done, None before the first; empty otherwise."""

    status: JobStatus
    queue_position: int | None  # 0 = starts next; None once running or finished
    step: int
    total: int
    eta_s: float | None
    images_done: int = 0
    num_images: int = 1
    error: str | None = None
    stage: Stage | None = None  # set while running
    running_images: tuple[int, ...] = ()  # 0-based indexes of the job's images in the batch now running
    image_step: int = 0
    image_steps: int = 0
    previews: tuple[PIL.Image.Image | None, ...] = ()


@dataclass(frozen=True)
class GenerationResult:
    images: list[PIL.Image.Image]
    seed: int
    params: dict[str, Any]  # every resolved parameter, JSON-ready (see request_params)
    model_name: str
    model_hash: str
    model_s: float
    queue_wait_s: float
    seeds: list[int] = field(default_factory=list)  # one per image: seed + index


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model can do, and its defaults; requests are validated against it."""

    name: str
    family: str  # "kandinsky22" (the embedded model too) | "stable-diffusion" | "stable-diffusion-xl"
    path: str
    hash: str  # sha256 over the model's safetensors files
    default_steps: int
    default_guidance: float
    default_scheduler: str
    schedulers: tuple[str, ...]
    default_size: tuple[int, int]  # (width, height)
    sizes: tuple[tuple[int, int], ...] = ()  # exact sizes allowed; empty -> the range below
    size_multiple: int = 8
    min_size: int = 64
    max_size: int = MAX_SIDE
    max_images: int = 8
    max_steps: int = MAX_STEPS
    image_ingredients: bool = True  # False: this model cannot mix images (an SD model without IP-Adapter)
    device: str = "cpu"
    dtype: str = "float32"
    prior_steps: int | None = None
    default_candidates: int = 1  # decoder candidates per image (model/families/candidates.py)
    max_candidates: int = 1  # 1: the model has no verifier to pick among candidates
    upscale_factor: int = 1  # 1: the model has no upsampler (model/families/upsampler.py)

    @property
    def short_hash(self) -> str:
        """The first 10 hex characters, as AUTOMATIC1111 shows a model hash."""
        return self.hash[:10]

    def size_allowed(self, width: int, height: int) -> bool:
        if self.sizes:
            return (width, height) in self.sizes
        return all(
            self.min_size <= side <= self.max_size and side % self.size_multiple == 0
            for side in (width, height)
        )

    def describe_sizes(self) -> str:
        if self.sizes:
            return ", ".join(f"{w}x{h}" for w, h in self.sizes)
        return f"multiples of {self.size_multiple} from {self.min_size} to {self.max_size}"


def image_digest(image: PIL.Image.Image) -> str:
    """sha256 of an image's RGB pixels and size: names an uploaded image in params without its file."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def request_params(request: GenerationRequest) -> dict[str, Any]:
    """Every generation parameter of a resolved request, JSON-ready (images appear as pixel digests)."""
    assert request.seed is not None, "resolve the request first"
    return {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": request.seed,
        "seeds": [request.seed + i for i in range(request.num_images)],
        "steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "width": request.width,
        "height": request.height,
        "num_images": request.num_images,
        "scheduler": request.scheduler,
        "guidance_image_sha256": image_digest(request.guidance_image) if request.guidance_image else None,
        "image_guidance_scale": request.image_guidance_scale,
        "image_guidance_semantics": GUIDANCE_SEMANTICS,
        "image_guidance_decay": request.image_guidance_decay,
        "image_guidance_noised": request.image_guidance_noised,
        "mix": [
            {"weight": item.weight, "text": item.text}
            if item.text is not None
            else {"weight": item.weight, "image_sha256": image_digest(resolved(item.image))}
            for item in request.mix
        ],
        "interpolation": request.interpolation,
        "renormalize_mix": request.renormalize_mix,
        "mix_space": request.mix_space,
        "dynamic_thresholding": request.dynamic_thresholding,
        "candidates": request.candidates,
        "upscale": request.upscale,
    }


@dataclass(frozen=True)
class ReplicaStatus:
    """One model replica of a distributed engine, as the health endpoint shows it: no user names, no job
    ids, no addresses (the endpoint needs no sign-in)."""

    id: str  # the replica's stable id (Ray Serve's replica id)
    state: str  # "RUNNING" for a replica that answered; Ray Serve's replica state names
    running_jobs: int  # jobs with images in the batch now running
    queued_jobs: int  # jobs waiting in the replica's fair queue
    succeeded: int  # jobs the replica finished, by outcome, since it started
    failed: int
    cancelled: int


@dataclass(frozen=True)
class EngineStatus:
    """Which engine runs and, for a distributed one, its replicas (``Engine.status``)."""

    kind: str  # "local" | "ray"
    state: str | None = None  # Ray: the Serve deployment's status (HEALTHY, UPSCALING, UNHEALTHY, ...)
    replica_states: dict[str, int] = field(default_factory=dict)  # Ray: replicas per Serve replica state
    replicas: tuple[ReplicaStatus, ...] = ()
