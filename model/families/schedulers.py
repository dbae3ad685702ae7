"""The samplers a request may pick (ddpm, ddim, dpmpp, or the model's own), and dynamic thresholding.

Dynamic thresholding is Imagen's: clamp the predicted clean latents x0 at the ``THRESHOLD_RATIO`` quantile of
their magnitude and rescale, measured in units of the model's latent range (Imagen assumes pixels in [-1, 1];
our models denoise autoencoder latents). The denoising loop applies it to the model's output before the
scheduler's step: x0 is estimated, thresholded, and turned back into the output that predicts it, so any
scheduler steps from the thresholded x0 through its public ``step``.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

_NAMED = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpmpp": DPMSolverMultistepScheduler}
THRESHOLD_RATIO = 0.995  # Imagen's quantile
THRESHOLD_CAP = 1e3  # no cap on the dynamic threshold s, as in Imagen


def scheduler_name(scheduler: SchedulerMixin) -> str:
    """The request name of a scheduler: ddpm / ddim / dpmpp, else its class name without "Scheduler"."""
    for name, cls in _NAMED.items():
        if type(scheduler) is cls:
            return name
    return type(scheduler).__name__.removesuffix("Scheduler").lower()


class SchedulerBank:
    """One scheduler instance per (name, thresholding), made once from the model's own scheduler config."""

    def __init__(self, base: SchedulerMixin) -> None:
        self.default_name = scheduler_name(base)
        self._base = base
        self._made: dict[tuple[str, bool], SchedulerMixin] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*_NAMED, self.default_name]))

    def get(self, name: str, thresholding: bool = False) -> SchedulerMixin:
        """The scheduler ``name``; with ``thresholding`` (DynamicThreshold), one that does not also clip x0,
        as in diffusers, where thresholding replaces ``clip_sample``."""
        key = (name, thresholding)
        if key not in self._made:
            scheduler = self._make(name)
            if thresholding and scheduler.config.get("clip_sample"):
                scheduler = type(scheduler).from_config(scheduler.config, clip_sample=False)
            self._made[key] = scheduler
        return self._made[key]

    def _make(self, name: str) -> SchedulerMixin:
        if name == self.default_name:
            return self._base
        extra = {"algorithm_type": "dpmsolver++"} if name == "dpmpp" else {}
        return _NAMED[name].from_config(self._base.config, **extra)


def _alpha(scheduler: SchedulerMixin, timestep: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return scheduler.alphas_cumprod.to(like.device)[timestep.long()].to(like.dtype)


def predicted_clean(
    scheduler: SchedulerMixin, timestep: torch.Tensor, sample: torch.Tensor, output: torch.Tensor
) -> torch.Tensor:
    """x0 from the model's output at ``timestep`` on the (scaled) ``sample``, by the scheduler's alphas.

    ``output`` may carry learned-variance channels after the sample's; they are ignored.
    """
    output = output[:, : sample.shape[1]]
    alpha = _alpha(scheduler, timestep, sample)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (sample - (1 - alpha).sqrt() * output) / alpha.sqrt()
    if kind == "v_prediction":
        return alpha.sqrt() * sample - (1 - alpha).sqrt() * output
    if kind == "sample":
        return output
    raise ValueError(f"cannot estimate the clean latents for prediction_type {kind!r}")


def output_predicting(
    scheduler: SchedulerMixin,
    timestep: torch.Tensor,
    sample: torch.Tensor,
    clean: torch.Tensor,
    output: torch.Tensor,
) -> torch.Tensor:
    """The model output that ``predicted_clean`` reads as ``clean`` (``output``'s variance channels kept)."""
    alpha = _alpha(scheduler, timestep, sample)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        wanted = (sample - alpha.sqrt() * clean) / (1 - alpha).sqrt()
    elif kind == "v_prediction":
        wanted = (alpha.sqrt() * sample - clean) / (1 - alpha).sqrt()
    elif kind == "sample":
        wanted = clean
    else:
        raise ValueError(f"cannot threshold prediction_type {kind!r}")
    return torch.cat([wanted, output[:, sample.shape[1] :]], dim=1)


class DynamicThreshold:
    """Imagen's dynamic thresholding of each row's predicted clean latents, in units of ``latent_range``."""

    def __init__(self, latent_range: float) -> None:
        self.latent_range = latent_range

    def __call__(
        self, scheduler: SchedulerMixin, timestep: torch.Tensor, sample: torch.Tensor, output: torch.Tensor
    ) -> torch.Tensor:
        """``output`` changed so that it predicts the thresholded clean latents."""
        clean = predicted_clean(scheduler, timestep, sample, output)
        flat = (clean / self.latent_range).float().flatten(1)
        s = torch.quantile(flat.abs(), THRESHOLD_RATIO, dim=1).clamp(1, THRESHOLD_CAP).unsqueeze(1)
        thresholded = (flat.clamp(-s, s) / s).view_as(clean).to(clean.dtype) * self.latent_range
        return output_predicting(scheduler, timestep, sample, thresholded, output)
