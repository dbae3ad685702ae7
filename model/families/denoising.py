"""The denoising loop every family runs: ours, over a model callable and the schedulers' public API.

diffusers recommends writing the loop yourself when you need control inside it. Here that control is per-row:
each row has its own noise, CFG scale, guidance reference and scheduler, and rows leave the batch between steps
(a cancelled job, the losing decoder candidates). One step, top to bottom:

1. each row's scheduler scales its latents (``scale_model_input``);
2. the family's ``predict`` runs the model on the live rows and returns the guided output (CFG done),
   dynamically thresholded where the request asks for it;
3. each row's scheduler steps its own row, with its own generator;
4. image guidance pulls each row toward its reference;
5. progress is reported (``on_stage`` as the loop starts, ``on_step`` after each step) and cancelled rows
   leave; a ``picker`` may keep only some rows;
6. the ``step_hook`` sees the step (the predicted clean latents, for live previews).

One scheduler per row keeps a multistep scheduler's history (DPM-Solver++, PNDM) per row: a row that leaves
takes its history with it, with no scheduler internals touched. A scheduler's step is elementwise per
sample, so stepping row by row gives the same numbers as stepping the batch.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from model.engine.engine_common import Stage
from model.families.base import BatchCancelled, BatchControl, Row
from model.families.schedulers import DynamicThreshold, predicted_clean
from model.guidance import ImageGuidance, RowGuidance

T = TypeVar("T")

# (scaled latents [B, C, h, w] of the live rows, timestep, the live rows' original indices) -> guided model
# output [B, C', h, w] (C' > C: learned-variance channels after the first C)
Predict = Callable[[torch.Tensor, torch.Tensor, list[int]], torch.Tensor]


@dataclass
class StepState:
    """One finished step as a hook or picker sees it: the live rows, their latents, and what made them."""

    step: int  # 0-based
    total: int
    timestep: torch.Tensor
    rows: list[Row]  # every row of the batch, by original index; ``positions`` picks the live ones
    positions: list[int]  # original row index of each live row
    latents: torch.Tensor  # after the step (and image guidance), [B, C, h, w]
    model_input: torch.Tensor  # the scaled latents the step started from
    output: torch.Tensor  # the guided model output
    scheduler: SchedulerMixin  # the first live row's; every row's has the same schedule

    def predicted_clean(self) -> torch.Tensor:
        """The model's estimate of the clean latents [B, C, h, w] at this step (schedulers.predicted_clean)."""
        return predicted_clean(self.scheduler, self.timestep, self.model_input, self.output)


class Picker(Protocol):
    """Chooses, after a step, the batch positions that go on (e.g. the best of several decoder candidates)."""

    def __call__(self, state: StepState) -> list[int] | None: ...


StepHook = Callable[[StepState], None]


def row_cfg_scale(rows: Sequence[Row], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Per-row classifier-free guidance scales, shaped [B, 1, 1, 1] to broadcast over noise predictions.

    A scale at or below 1 means "no CFG" (the conditional prediction alone); inside a batch that runs CFG for
    other rows, 1.0 gives exactly that prediction, so such rows get 1.0.
    """
    scales = [max(float(row.request.guidance_scale), 1.0) for row in rows]  # type: ignore[arg-type]
    return torch.tensor(scales, dtype=dtype, device=device).view(-1, 1, 1, 1)


def classifier_free_guidance(output: torch.Tensor, scales: torch.Tensor, channels: int) -> torch.Tensor:
    """The guided prediction from a [unconditional rows; conditional rows] model output.

    ``uncond + scale * (cond - uncond)`` on the first ``channels``; any further (learned-variance) channels
    come from the conditional half, as in diffusers' Kandinsky pipelines.
    """
    uncond, cond = output.chunk(2)
    guided = uncond[:, :channels] + scales * (cond[:, :channels] - uncond[:, :channels])
    return torch.cat([guided, cond[:, channels:]], dim=1) if cond.shape[1] > channels else guided


class DenoisingLoop:
    """Denoise one batch of rows from their seeded noise to clean latents (see the module docstring)."""

    def __init__(
        self,
        rows: Sequence[Row],
        scheduler: SchedulerMixin,
        steps: int,
        latent_shape: tuple[int, int, int],
        predict: Predict,
        *,
        device: torch.device,
        dtype: torch.dtype,
        control: BatchControl | None = None,
        guidance: Sequence[RowGuidance | None] = (),
        threshold: DynamicThreshold | None = None,
        picker: Picker | None = None,
        step_hook: StepHook | None = None,
    ) -> None:
        """``scheduler`` is a template, copied per row; ``guidance`` has one entry per row (or none at all)."""
        self.rows = list(rows)
        self._predict = predict
        self._control, self._picker, self._step_hook = control, picker, step_hook
        self._threshold = threshold
        scheduler = copy.deepcopy(scheduler)  # the family's instance stays untouched
        scheduler.set_timesteps(steps, device=device)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        self.timesteps = scheduler.timesteps
        self.schedulers = [copy.deepcopy(scheduler) for _ in self.rows]
        self.generators = [
            torch.Generator().manual_seed(row.seed) for row in self.rows
        ]  # CPU: same on any device
        self.positions = list(range(len(self.rows)))  # original row index of each live row
        noise = randn_tensor(
            (len(self.rows), *latent_shape), generator=self.generators, device=device, dtype=dtype
        )
        self.latents = noise * scheduler.init_noise_sigma
        self._step_takes_generator = "generator" in inspect.signature(scheduler.step).parameters
        self._guidance = ImageGuidance(guidance, self.latents) if guidance else None
        if self._guidance is not None and not self._guidance.active:
            self._guidance = None

    def run(self) -> torch.Tensor:
        """The final latents of the rows still live (``by_row`` places them). Raises BatchCancelled."""
        total = len(self.timesteps)
        if self._control is not None:
            self._control.on_stage(Stage.DENOISING, self.rows)
        for step, timestep in enumerate(self.timesteps):
            model_input = torch.cat(
                [
                    s.scale_model_input(self.latents[k : k + 1], timestep)
                    for k, s in enumerate(self.schedulers)
                ]
            )
            output = self._predict(model_input, timestep, self.positions)
            if self._threshold is not None:
                output = self._threshold(self.schedulers[0], timestep, model_input, output)
            self.latents = torch.cat(
                [self._step_row(k, output, timestep) for k in range(len(self.schedulers))]
            )
            if self._guidance is not None:
                upcoming = self.timesteps[step + 1] if step + 1 < total else None
                self.latents = self._guidance.apply(self.latents, step, total, self.schedulers[0], upcoming)
            state = StepState(
                step,
                total,
                timestep,
                self.rows,
                self.positions,
                self.latents,
                model_input,
                output,
                self.schedulers[0],
            )
            if self._control is not None:
                self._drop_cancelled(state)
            if self._picker is not None and (keep := self._picker(state)) is not None:
                self._keep(state, keep)
            if self._step_hook is not None:
                self._step_hook(state)
        return self.latents

    def by_row(self, finished: Sequence[T]) -> list[T | None]:
        """One item per live row, in the loop's order, placed at its original row; None for rows that left."""
        out: list[T | None] = [None] * len(self.rows)
        for position, item in zip(self.positions, finished, strict=True):
            out[position] = item
        return out

    def _step_row(self, k: int, output: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        extra: dict[str, Any] = {"generator": self.generators[k]} if self._step_takes_generator else {}
        return (
            self.schedulers[k].step(output[k : k + 1], timestep, self.latents[k : k + 1], **extra).prev_sample
        )

    def _drop_cancelled(self, state: StepState) -> None:
        assert self._control is not None
        live = [self.rows[p] for p in self.positions]
        self._control.on_step(state.step + 1, state.total, live)
        keep = [k for k, row in enumerate(live) if self._control.wanted(row)]
        if not keep:
            raise BatchCancelled()
        if len(keep) < len(live):
            self._keep(state, keep)

    def _keep(self, state: StepState, keep: list[int]) -> None:
        """Only the live rows at ``keep`` go on: every per-row tensor and list drops the others."""
        self.latents = self.latents[keep]
        self.schedulers = [self.schedulers[k] for k in keep]
        self.generators = [self.generators[k] for k in keep]
        self.positions = [self.positions[k] for k in keep]
        if self._guidance is not None:
            self._guidance.select(keep)
        state.positions, state.latents = self.positions, self.latents
        state.model_input, state.output = state.model_input[keep], state.output[keep]
        state.scheduler = self.schedulers[0]
