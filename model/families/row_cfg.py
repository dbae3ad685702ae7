"""The diffusers pipelines with per-row classifier-free guidance, so batched jobs keep their own scale.

The stock pipelines read one ``guidance_scale`` for the batch; their CFG step is
``uncond + self.guidance_scale * (cond - uncond)``, which broadcasts a [B, 1, 1, 1] tensor unchanged. Only
``do_classifier_free_guidance`` (``scale > 1``) needs to accept a tensor. The SD pipelines also take
IP-Adapter image embeddings per row (stock: one embedding repeated over the batch). The Kandinsky decoder
also hands its step-end callback the step's input latents and guided output (decoder candidates read them).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import KandinskyV22Pipeline, StableDiffusionPipeline, StableDiffusionXLPipeline


class _RowCFG:
    _guidance_scale: float | torch.Tensor
    unet: Any

    @property
    def do_classifier_free_guidance(self) -> bool:
        scale = self._guidance_scale
        wanted = bool((scale > 1).any()) if isinstance(scale, torch.Tensor) else scale > 1
        return wanted and getattr(self.unet.config, "time_cond_proj_dim", None) is None


class _RowIPAdapter:
    def prepare_ip_adapter_image_embeds(
        self, ip_adapter_image: Any, ip_adapter_image_embeds: list[torch.Tensor] | None, device: Any, *args: Any
    ) -> list[torch.Tensor]:
        """Use per-row embeddings as given ([uncond rows; cond rows] under CFG), in the caller's own list.

        Returning the caller's list lets StepHook shrink it in place when a row leaves the batch.
        """
        if ip_adapter_image_embeds is None:
            raise ValueError("pass per-row ip_adapter_image_embeds")
        ip_adapter_image_embeds[:] = [e.to(device) for e in ip_adapter_image_embeds]
        return ip_adapter_image_embeds


class RowCFGKandinskyV22Pipeline(_RowCFG, KandinskyV22Pipeline):
    # the step's starting latents and guided model output, so a callback can estimate the clean latents
    _callback_tensor_inputs = [*KandinskyV22Pipeline._callback_tensor_inputs, "latent_model_input", "noise_pred"]


class RowCFGStableDiffusionPipeline(_RowCFG, _RowIPAdapter, StableDiffusionPipeline):
    pass


class RowCFGStableDiffusionXLPipeline(_RowCFG, _RowIPAdapter, StableDiffusionXLPipeline):
    pass
