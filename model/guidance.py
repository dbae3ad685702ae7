"""Image guidance, the thesis's contribution: after every denoising step pull each sample toward a reference.

    z <- z + g_t * (z_ref - z),   g_t = g_N * decay(t)

The user's ``scale`` (0..1) says how far the pulls take the sample in total, in units of the thesis's pull
(Zbinden, arXiv:2209.10948: g = 0.005 at each of 1000 steps, no decay): together the N pulls leave
``(1 - 0.005) ** (1000 * scale)`` of the way to ``z_ref``, so scale 1 is the thesis's total pull (99.3% of
the way) and 0.5 the thesis's with linear decay. ``g_N`` is solved from that for the run's step count and
decay: one scale gives the same total pull at 15 steps as at 50 (a fixed per-step pull would pull 15 steps
far less), and the decay only decides when the pull happens, early (the layout) or throughout.

``z_ref`` is the reference image encoded by the model's own autoencoder (movq or VAE). By default it is the
clean reference, as in the thesis; with ``noised`` it is first noised to the step's noise level (see
docs/GUIDANCE.md for why clean is the default). Each row of a batch has its own reference, scale, decay and
noise, so jobs batched together keep their own guidance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch


def decay_factor(decay: str, step: int, total: int) -> float:
    """decay(t) at 0-based ``step`` of ``total``: 1 at the first step; linear and cosine reach 0 at the last."""
    progress = step / max(total - 1, 1)
    if decay == "none":
        return 1.0
    if decay == "linear":
        return 1.0 - progress
    if decay == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown decay {decay!r}")


THESIS_PULL = 0.005
THESIS_STEPS = 1000
"""The thesis's per-step pull and step count: scale 1 is the total pull of THESIS_STEPS pulls of THESIS_PULL."""


def total_pull(per_step: float, decay: str, steps: int) -> float:
    """The fraction of the way to the reference that ``steps`` pulls of ``per_step * decay(t)`` cover."""
    remaining = math.prod(1.0 - per_step * decay_factor(decay, step, steps) for step in range(steps))
    return 1.0 - remaining


def scale_total_pull(scale: float) -> float:
    """The fraction of the way to the reference that guidance at ``scale`` covers, at any steps and decay."""
    return 1.0 - (1.0 - THESIS_PULL) ** (THESIS_STEPS * scale)


def scale_of_per_step_pull(per_step: float, decay: str, steps: int) -> float:
    """The scale (clipped to 0..1) whose total pull equals that of ``per_step * decay(t)`` over ``steps``
    steps: how a recipe without ``GUIDANCE_SEMANTICS`` in its params (whose scale was the per-step pull)
    reads today."""
    remaining = 1.0 - total_pull(per_step, decay, steps)
    if remaining <= 0.0:
        return 1.0
    return min(max(math.log(remaining) / (THESIS_STEPS * math.log(1.0 - THESIS_PULL)), 0.0), 1.0)


@lru_cache(maxsize=256)
def per_step_pull(scale: float, decay: str, steps: int) -> float:
    """The ``g_N`` whose pulls over ``steps`` steps with ``decay`` cover ``scale_total_pull(scale)``.

    The total pull rises monotonically with ``g_N`` (decay(t) >= 0, and 1 at the first step), so bisection
    finds it; 60 halvings leave an error far below float32 latents' precision."""
    target = scale_total_pull(scale)
    if decay == "none" or target == 0.0:
        return 1.0 - (1.0 - target) ** (1.0 / steps)
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if total_pull(middle, decay, steps) < target else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class RowGuidance:
    """One row's guidance: its reference latents [C, h, w], scale (in the thesis's units), decay, and whether
    to noise the reference."""

    reference: torch.Tensor
    scale: float
    decay: str = "none"
    noised: bool = False
    seed: int = 0  # seeds the reference's noise when ``noised``


class ImageGuidance:
    """The per-row pull, applied by the denoising loop after each scheduler step (families/denoising.py)."""

    def __init__(self, rows: Sequence[RowGuidance | None], like: torch.Tensor) -> None:
        """``rows`` has one entry per batch row (None: no guidance); ``like`` is the batch's latents."""
        zeros = torch.zeros(like.shape[1:], dtype=like.dtype, device=like.device)
        self._references = torch.stack(
            [zeros if r is None else r.reference.to(like.device, like.dtype) for r in rows]
        )
        self._rows = list(rows)
        self._noise_generators = [
            torch.Generator().manual_seed(r.seed) if r is not None and r.noised else None for r in rows
        ]

    @property
    def active(self) -> bool:
        return any(r is not None and r.scale > 0 for r in self._rows)

    def apply(
        self,
        latents: torch.Tensor,
        step: int,
        total: int,
        scheduler: object,
        next_timestep: torch.Tensor | None,
    ) -> torch.Tensor:
        """Return latents pulled toward the references; ``next_timestep`` is the noise level they now carry."""
        pulls = [
            0.0 if r is None else per_step_pull(r.scale, r.decay, total) * decay_factor(r.decay, step, total)
            for r in self._rows
        ]
        if not any(pulls):
            return latents
        target = self._references
        noised = [i for i, g in enumerate(self._noise_generators) if g is not None]
        if noised and next_timestep is not None:
            target = target.clone()
            noise = torch.stack(
                [torch.randn(target.shape[1:], generator=self._noise_generators[i]) for i in noised]
            ).to(target.device, target.dtype)
            timesteps = next_timestep.reshape(1).repeat(len(noised)).to(target.device)
            target[noised] = scheduler.add_noise(target[noised], noise, timesteps)  # type: ignore[attr-defined]
        g = torch.tensor(pulls, dtype=latents.dtype, device=latents.device).view(
            -1, *([1] * (latents.dim() - 1))
        )
        return latents + g * (target - latents)

    def select(self, keep: Sequence[int]) -> None:
        """Keep only the rows at positions ``keep`` (rows that left the batch are dropped)."""
        self._references = self._references[list(keep)]
        self._rows = [self._rows[i] for i in keep]
        self._noise_generators = [self._noise_generators[i] for i in keep]
