"""What every model family offers the engine, and the per-step hook shared by all of them.

A batch is a list of ``Row``s: one image of one job each. Rows carry their own seed (a CPU
``torch.Generator`` per row), prompt embedding, CFG scale and guidance reference, so a row's image does not
depend on which other rows share its batch (up to floating-point reduction order).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import PIL.Image
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from model.engine.engine_common import GenerationRequest, ModelInfo
from model.guidance import ImageGuidance, RowGuidance

# Schedulers whose only per-sample state is known here, so a batch can shrink between steps.
_SHRINKABLE_SCHEDULERS = (DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler)


@dataclass(frozen=True)
class Row:
    """One image to make: image ``index`` of a job whose resolved request is ``request``."""

    request: GenerationRequest
    index: int = 0
    tag: Hashable = None  # the engine's handle for the job; opaque to families

    @property
    def seed(self) -> int:
        assert self.request.seed is not None, "rows take resolved requests"
        return self.request.seed + self.index


class BatchControl(Protocol):
    """How a running batch reports progress and learns which rows are still wanted (not cancelled)."""

    def on_step(self, step: int, total: int, rows: Sequence[Row]) -> None: ...

    def wanted(self, row: Row) -> bool: ...


class BatchCancelled(Exception):
    """Every row left the batch (all of its jobs were cancelled); the pipeline stopped early."""


class Family(ABC):
    """A loaded model: its ModelInfo, which requests may share a batch, and batch generation."""

    info: ModelInfo

    def check_request(self, request: GenerationRequest) -> None:
        """Family-specific checks beyond ModelInfo's; raises RequestError."""

    @abstractmethod
    def batch_key(self, request: GenerationRequest) -> Hashable:
        """Requests with equal keys can run in one batch (same size, steps, scheduler, ...)."""

    @abstractmethod
    def generate(self, rows: Sequence[Row], control: BatchControl | None = None) -> list[PIL.Image.Image | None]:
        """One image per row, in order; None for rows that left the batch. Raises BatchCancelled if all left."""

    @abstractmethod
    def encode_reference(self, image: PIL.Image.Image, width: int, height: int) -> torch.Tensor:
        """A guidance image in this family's latent space, at the latent size of width x height."""

    def guidance_rows(self, rows: Sequence[Row]) -> list[RowGuidance | None]:
        """Each row's image guidance (None without one); a job's reference is encoded once for all its rows."""
        references: dict[int, torch.Tensor] = {}
        out: list[RowGuidance | None] = []
        for row in rows:
            request = row.request
            if request.guidance_image is None or request.image_guidance_scale <= 0:
                out.append(None)
                continue
            if id(request) not in references:
                references[id(request)] = self.encode_reference(request.guidance_image, request.width, request.height)
            out.append(RowGuidance(references[id(request)], request.image_guidance_scale,
                                   request.image_guidance_decay, request.image_guidance_noised, row.seed))
        return out


def can_shrink(scheduler: Any) -> bool:
    """Whether the scheduler's per-sample state is known here, so rows can leave a batch between steps."""
    return isinstance(scheduler, _SHRINKABLE_SCHEDULERS)


def row_generators(rows: Sequence[Row]) -> list[torch.Generator]:
    """A fresh CPU generator per row seeded with the row's seed: same noise on every device and in any batch."""
    return [torch.Generator().manual_seed(row.seed) for row in rows]


def row_cfg_scale(rows: Sequence[Row], like: torch.Tensor | torch.dtype, device: torch.device) -> torch.Tensor:
    """Per-row classifier-free guidance scales, shaped [B, 1, 1, 1] to broadcast over noise predictions.

    A scale at or below 1 means "no CFG" in diffusers (the conditional prediction alone); inside a batch
    that runs CFG for other rows, 1.0 gives exactly that prediction, so such rows get 1.0.
    """
    dtype = like if isinstance(like, torch.dtype) else like.dtype
    scales = [max(float(row.request.guidance_scale), 1.0) for row in rows]  # type: ignore[arg-type]
    return torch.tensor(scales, dtype=dtype, device=device).view(-1, 1, 1, 1)


class Picker(Protocol):
    """Chooses, at some step, the batch positions that go on (e.g. the best of several decoder candidates)."""

    def __call__(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any],
                 positions: Sequence[int]) -> list[int] | None: ...


class StepHook:
    """The ``callback_on_step_end`` of one batch: image guidance, progress, cancelled rows leaving, and a picker.

    A cancelled row leaves at the next step. Where the scheduler's per-sample state is known (DDPM, DDIM,
    DPM-Solver++, Euler) the batch shrinks: the hook returns latents and conditioning without the row and
    shrinks, in place, the generator list, the per-row CFG scale, extra per-row tensors (IP-Adapter image
    embeddings) and the scheduler's history. Otherwise (e.g. PNDM keeps a private history) the row stays in
    the computation, is masked: no more progress, and its image is discarded. A ``picker`` (only with a
    shrinkable scheduler) may drop rows the same way, keeping the positions it returns.
    """

    def __init__(
        self,
        rows: Sequence[Row],
        control: BatchControl | None,
        guidance: ImageGuidance | None,
        generators: list[torch.Generator],
        *,
        shrinkable: bool = True,
        row_tensor_lists: Sequence[list[torch.Tensor]] = (),
        picker: Picker | None = None,
    ) -> None:
        self.rows = list(rows)
        self.positions = list(range(len(rows)))  # original row index of each current batch row
        self.masked: set[int] = set()
        self._control = control
        self._guidance = guidance if guidance is not None and guidance.active else None
        self._generators = generators
        self._shrinkable = shrinkable
        self._row_tensor_lists = row_tensor_lists
        self._picker = picker

    def __call__(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        total = pipe.num_timesteps
        if self._guidance is not None:
            timesteps = pipe.scheduler.timesteps
            upcoming = timesteps[step + 1] if step + 1 < len(timesteps) else None
            kwargs["latents"] = self._guidance.apply(kwargs["latents"], step, total, pipe.scheduler, upcoming)
        if self._control is not None:
            self._drop_cancelled(pipe, step, total, kwargs)
        if self._picker is not None:
            keep = self._picker(pipe, step, timestep, kwargs, self.positions)
            if keep is not None:
                self._shrink(pipe, kwargs, keep)
        return kwargs

    def _drop_cancelled(self, pipe: Any, step: int, total: int, kwargs: dict[str, Any]) -> None:
        assert self._control is not None
        live = [p for p in self.positions if p not in self.masked]
        self._control.on_step(step + 1, total, [self.rows[p] for p in live])
        leaving = {p for p in live if not self._control.wanted(self.rows[p])}
        if not leaving:
            return
        if leaving == set(live):
            raise BatchCancelled()
        if self.shrinks(pipe.scheduler):
            self._shrink(pipe, kwargs, [i for i, p in enumerate(self.positions) if p not in leaving])
        else:
            self.masked |= leaving

    def shrinks(self, scheduler: Any) -> bool:
        """Whether rows can leave the batch between steps (else a cancelled row is only masked)."""
        return self._shrinkable and can_shrink(scheduler)

    def images_by_row(self, images: Sequence[PIL.Image.Image]) -> list[PIL.Image.Image | None]:
        """Map the pipeline's output (current rows) back to the original rows; None for rows that left."""
        out: list[PIL.Image.Image | None] = [None] * len(self.rows)
        for position, image in zip(self.positions, images, strict=True):
            if position not in self.masked:
                out[position] = image
        return out

    def _shrink(self, pipe: Any, kwargs: dict[str, Any], keep: list[int]) -> None:
        batch = kwargs["latents"].shape[0]
        cfg = bool(pipe.do_classifier_free_guidance)

        def select(tensor: torch.Tensor) -> torch.Tensor:
            if cfg and tensor.shape[0] == 2 * batch:  # [unconditional rows; conditional rows]
                return tensor[keep + [batch + k for k in keep]]
            return tensor[keep] if tensor.shape[0] == batch else tensor

        for name, value in kwargs.items():
            if isinstance(value, torch.Tensor):
                kwargs[name] = select(value)
        if isinstance(pipe._guidance_scale, torch.Tensor):
            pipe._guidance_scale = pipe._guidance_scale[keep]
        self._generators[:] = [self._generators[k] for k in keep]
        for tensors in self._row_tensor_lists:
            tensors[:] = [select(t) for t in tensors]
        if isinstance(pipe.scheduler, DPMSolverMultistepScheduler):
            pipe.scheduler.model_outputs = [m if m is None else m[keep] for m in pipe.scheduler.model_outputs]
        if self._guidance is not None:
            self._guidance.select(keep)
        self.positions = [self.positions[k] for k in keep]
