"""Image guidance, the thesis's contribution: after every denoising step pull each sample toward a reference.

    z <- z + g_t * (z_ref - z),   g_t = scale * decay(t)

``z_ref`` is the reference image encoded by the model's own autoencoder (movq or VAE). By default it is the
clean reference, as in the thesis; with ``noised`` it is first noised to the step's noise level (see
docs/GUIDANCE.md for why clean is the default). Each row of a batch has its own reference, scale, decay and
noise, so jobs batched together keep their own guidance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class RowGuidance:
    """One row's guidance: its reference latents [C, h, w], scale, decay, and whether to noise the reference."""

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
        pulls = [0.0 if r is None else r.scale * decay_factor(r.decay, step, total) for r in self._rows]
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
