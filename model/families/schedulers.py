"""The samplers a request may pick (ddpm, ddim, dpmpp, or the model's own), built from the model's config.

Dynamic thresholding uses diffusers' own (Imagen-style) thresholding of the predicted x0, measured in units
of the model's latent range: diffusers assumes pixels in [-1, 1], but our models denoise autoencoder latents,
so the sample is divided by ``latent_range`` before thresholding and multiplied back after.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

_NAMED = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpmpp": DPMSolverMultistepScheduler}
THRESHOLD_RATIO = 0.995  # Imagen's quantile
THRESHOLD_CAP = 1e3  # no cap on the dynamic threshold s, as in Imagen


class _LatentRangeThreshold:
    latent_range: float = 1.0

    def _threshold_sample(self, sample: torch.Tensor) -> torch.Tensor:
        return super()._threshold_sample(sample / self.latent_range) * self.latent_range  # type: ignore[misc]


class ThresholdedDDPMScheduler(_LatentRangeThreshold, DDPMScheduler):
    pass


class ThresholdedDDIMScheduler(_LatentRangeThreshold, DDIMScheduler):
    pass


class ThresholdedDPMSolverMultistepScheduler(_LatentRangeThreshold, DPMSolverMultistepScheduler):
    pass


_THRESHOLDED = {
    "ddpm": ThresholdedDDPMScheduler,
    "ddim": ThresholdedDDIMScheduler,
    "dpmpp": ThresholdedDPMSolverMultistepScheduler,
}


def scheduler_name(scheduler: SchedulerMixin) -> str:
    """The request name of a scheduler: ddpm / ddim / dpmpp, else its class name without "Scheduler"."""
    for name, cls in _NAMED.items():
        if type(scheduler) is cls:
            return name
    return type(scheduler).__name__.removesuffix("Scheduler").lower()


class SchedulerBank:
    """One scheduler instance per (name, thresholding), made once from the model's own scheduler config."""

    def __init__(self, base: SchedulerMixin, latent_range: float) -> None:
        self.default_name = scheduler_name(base)
        self._base = base
        self._latent_range = latent_range
        self._made: dict[tuple[str, bool], SchedulerMixin] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*_NAMED, self.default_name]))

    def get(self, name: str, thresholding: bool) -> SchedulerMixin:
        key = (name, thresholding)
        if key not in self._made:
            self._made[key] = self._make(name, thresholding)
        return self._made[key]

    def _make(self, name: str, thresholding: bool) -> SchedulerMixin:
        if name == self.default_name and not thresholding:
            return self._base
        extra = {"algorithm_type": "dpmsolver++"} if name == "dpmpp" else {}
        if thresholding:
            if name not in _THRESHOLDED:
                raise ValueError(f"dynamic thresholding needs one of {', '.join(_THRESHOLDED)}, not {name}")
            scheduler = _THRESHOLDED[name].from_config(
                self._base.config,
                thresholding=True,
                dynamic_thresholding_ratio=THRESHOLD_RATIO,
                sample_max_value=THRESHOLD_CAP,
                **extra,
            )
            scheduler.latent_range = self._latent_range
            return scheduler
        return _NAMED[name].from_config(self._base.config, **extra)
