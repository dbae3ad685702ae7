"""The third stage: a pixel-space diffusion upsampler, 64 -> 256 px, conditioned on the low-resolution picture.

As in SR3 and diffusers' ``StableDiffusionUpscalePipeline``: the low-resolution picture is noised to a
``noise_level`` by a DDPM ``low_res_scheduler`` (the augmentation that makes the model tolerate a generator's
imperfect pictures), upsampled bicubically and concatenated to the UNet's input, and the noise level reaches
the UNet as its class label. The UNet (a fully convolutional ``UNet2DModel``, trained on patches) denoises the
*residual* over the clean bicubic upsampling, scaled by ``residual_scale``: bicubic already gets colours and
layout right, so the model only has to sharpen edges. The folder is a diffusers pipeline folder
(``model_index.json``, ``unet/``, ``scheduler/``, ``low_res_scheduler/``), loaded by ``from_pretrained``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiffusionPipeline, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

SCALE = 4
SETTINGS = ("max_noise_level", "residual_scale", "default_steps", "default_noise_level")


def bicubic(pixels: torch.Tensor, factor: int = SCALE) -> torch.Tensor:
    """(B,3,h,w) in [-1,1] -> (B,3,factor*h,factor*w), bicubic; the residual's base and the condition."""
    return F.interpolate(pixels, scale_factor=factor, mode="bicubic", align_corners=False)


def to_tensor(images: Sequence[PIL.Image.Image]) -> torch.Tensor:
    """RGB pictures of one size -> (B,3,H,W) float32 in [-1,1]."""
    array = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0


def to_pil(pixels: torch.Tensor) -> list[PIL.Image.Image]:
    """(B,3,H,W) in [-1,1] -> RGB pictures."""
    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [PIL.Image.fromarray(a) for a in array]


class UpsamplerPipeline(DiffusionPipeline):
    """64 px pictures in, 256 px pictures out; ``default_steps`` and ``default_noise_level`` were chosen by
    measurement (bench/upsampler.py, MODEL_CARD.md): one DDIM step, the clean estimate from pure noise, had the
    best PSNR."""

    model_cpu_offload_seq = "unet"

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: SchedulerMixin,
        low_res_scheduler: DDPMScheduler,
        max_noise_level: int = 250,
        residual_scale: float = 4.0,
        default_steps: int = 1,
        default_noise_level: int = 20,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, low_res_scheduler=low_res_scheduler)
        self.register_to_config(
            max_noise_level=max_noise_level,
            residual_scale=residual_scale,
            default_steps=default_steps,
            default_noise_level=default_noise_level,
        )

    def replaced(self, **changes: Any) -> UpsamplerPipeline:
        """A pipeline sharing this one's parts and settings, with ``changes`` (parts or settings) swapped in."""
        parts = {"unet": self.unet, "scheduler": self.scheduler, "low_res_scheduler": self.low_res_scheduler}
        return UpsamplerPipeline(**{**parts, **{key: self.config[key] for key in SETTINGS}, **changes})

    def condition(
        self,
        low_res: torch.Tensor,
        noise_level: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(clean bicubic base, the UNet's condition: the low-res picture noised to ``noise_level``, upsampled).

        Training calls this too, so the augmentation the model learns is exactly the one it is sampled with.
        """
        noise = randn_tensor(low_res.shape, generator=generator, device=low_res.device, dtype=low_res.dtype)
        noised = self.low_res_scheduler.add_noise(low_res, noise, noise_level.to(low_res.device))
        return bicubic(low_res), bicubic(noised)

    def predict(
        self, sample: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor, noise_level: torch.Tensor
    ) -> torch.Tensor:
        """The UNet's output (v) on the scaled residual ``sample`` beside its condition."""
        return self.unet(torch.cat([sample, condition], dim=1), timestep, class_labels=noise_level).sample

    @torch.no_grad()
    def __call__(
        self,
        images: Sequence[PIL.Image.Image] | torch.Tensor,
        num_inference_steps: int | None = None,
        noise_level: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
    ) -> list[PIL.Image.Image] | torch.Tensor:
        """Upsample a batch 4x: pictures (or (B,3,h,w) in [-1,1]) -> pictures (or pixels in [-1,1]).

        One generator per picture makes each result independent of its batch (the engine passes each row's
        seed); the residual starts from noise and is denoised by ``scheduler`` in ``num_inference_steps``.
        """
        config = self.config
        steps = int(num_inference_steps or config.default_steps)
        level = int(config.default_noise_level if noise_level is None else noise_level)
        if not 0 <= level <= config.max_noise_level:
            raise ValueError(f"noise_level must be in [0, {config.max_noise_level}], got {level}")
        unet = self.unet
        low_res = images if isinstance(images, torch.Tensor) else to_tensor(images)
        low_res = low_res.to(unet.device, unet.dtype)
        batch = len(low_res)
        if isinstance(generator, torch.Generator):
            generator = [generator] * batch
        levels = torch.full((batch,), level, device=unet.device, dtype=torch.long)
        base, condition = self.condition(low_res, levels, generator)
        sample = randn_tensor(base.shape, generator=generator, device=unet.device, dtype=unet.dtype)
        self.scheduler.set_timesteps(steps, device=unet.device)
        sample = sample * self.scheduler.init_noise_sigma
        for t in self.scheduler.timesteps:
            scaled = self.scheduler.scale_model_input(sample, t)
            output = self.predict(scaled, t.expand(batch), condition, levels)
            sample = self.scheduler.step(output, t, sample, generator=generator).prev_sample
        pixels = (base + sample / config.residual_scale).clamp(-1, 1)
        return to_pil(pixels) if output_type == "pil" else pixels
