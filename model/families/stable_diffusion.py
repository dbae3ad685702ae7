"""Stable Diffusion 1.x/2.x and SDXL folders, with optional local IP-Adapter weights for image prompts.

Mixing: weighted sums of the text encoder's prompt embeddings (per token; SDXL also its pooled embedding),
and, where ``<model>/ip_adapter/`` holds IP-Adapter weights, of IP-Adapter image embeddings.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import PIL.Image
import torch

from model.engine.engine_common import GenerationRequest, MixIngredient, ModelInfo, RequestError
from model.families.base import BatchControl, Family, Row, StepHook, row_cfg_scale, row_generators
from model.families.loading import ModelLoadError
from model.families.row_cfg import RowCFGStableDiffusionPipeline, RowCFGStableDiffusionXLPipeline
from model.families.schedulers import SchedulerBank
from model.guidance import ImageGuidance
from model.mixing import mix_embeddings

log = logging.getLogger(__name__)

FAMILY_SD = "stable-diffusion"
FAMILY_SDXL = "stable-diffusion-xl"
IP_ADAPTER_DIR = "ip_adapter"
DEFAULTS = {FAMILY_SD: {"default_steps": 30, "default_guidance": 7.5}, FAMILY_SDXL: {"default_steps": 30, "default_guidance": 5.0}}


class _Conditioning:
    """One job's embeddings: prompt (and SDXL pooled) embeddings, negatives, optional IP-Adapter embedding."""

    def __init__(self, prompt: torch.Tensor, negative: torch.Tensor, pooled: torch.Tensor | None,
                 negative_pooled: torch.Tensor | None, image: torch.Tensor | None) -> None:
        self.prompt, self.negative = prompt, negative
        self.pooled, self.negative_pooled = pooled, negative_pooled
        self.image = image


class StableDiffusionFamily(Family):
    def __init__(
        self,
        pipe: RowCFGStableDiffusionPipeline | RowCFGStableDiffusionXLPipeline,
        *,
        name: str,
        path: str,
        model_hash: str,
        settings: dict[str, Any],
        ip_adapter: bool,
    ) -> None:
        self.pipe = pipe
        pipe.set_progress_bar_config(disable=True)
        self.xl = isinstance(pipe, RowCFGStableDiffusionXLPipeline)
        self.ip_adapter = ip_adapter
        family = FAMILY_SDXL if self.xl else FAMILY_SD
        self._schedulers = SchedulerBank(pipe.scheduler, float(settings.get("latent_range", 4.0)))
        self._per_row_cfg = pipe.unet.config.time_cond_proj_dim is None
        native = pipe.unet.config.sample_size * pipe.vae_scale_factor
        sizes = tuple((int(w), int(h)) for w, h in settings.get("sizes", []))
        self.info = ModelInfo(
            name=name,
            family=family,
            path=path,
            hash=model_hash,
            default_steps=int(settings.get("default_steps", DEFAULTS[family]["default_steps"])),
            default_guidance=float(settings.get("default_guidance", DEFAULTS[family]["default_guidance"])),
            default_scheduler=settings.get("default_scheduler", self._schedulers.default_name),
            schedulers=self._schedulers.names,
            default_size=sizes[0] if sizes else (native, native),
            sizes=sizes,
            size_multiple=pipe.vae_scale_factor,
            min_size=max(pipe.vae_scale_factor, native // 4),
            max_size=int(settings.get("max_size", 2 * native)),
            max_images=int(settings.get("max_images", 8)),
            image_ingredients=ip_adapter,
            device=str(pipe.device),
            dtype=str(pipe.unet.dtype).removeprefix("torch."),
        )
        self._vae_processor = pipe.image_processor

    def check_request(self, request: GenerationRequest) -> None:
        """Stable Diffusion can only slerp between two texts or two images (different embedding spaces)."""
        if request.interpolation is not None:
            kinds = {item.text is None for item in request.ingredients()}
            if len(kinds) != 1:
                raise RequestError("interpolation", "on Stable Diffusion needs two texts or two images, not one of each")

    def batch_key(self, request: GenerationRequest) -> Hashable:
        key: tuple[Any, ...] = (request.width, request.height, request.steps, request.scheduler,
                                request.dynamic_thresholding)
        if self.ip_adapter:  # image-prompt rows run with the adapter on, text-only rows with it off
            key += (any(item.image is not None for item in request.mix),)
        if not self._per_row_cfg:  # guidance-distilled UNets take the scale as an input, one per batch
            key += (request.guidance_scale,)
        return key

    @torch.no_grad()
    def generate(self, rows: Sequence[Row], control: BatchControl | None = None) -> list[PIL.Image.Image | None]:
        first = rows[0].request
        pipe = self.pipe
        device, dtype = pipe.device, pipe.unet.dtype
        conditioning: dict[int, _Conditioning] = {}
        for row in rows:
            if id(row.request) not in conditioning:
                conditioning[id(row.request)] = self._condition(row.request)
        per_row = [conditioning[id(row.request)] for row in rows]
        guidance_scale = row_cfg_scale(rows, dtype, device) if self._per_row_cfg else float(first.guidance_scale)
        cfg = bool((guidance_scale > 1).any()) if isinstance(guidance_scale, torch.Tensor) else guidance_scale > 1
        generators = row_generators(rows)
        scale = pipe.vae_scale_factor
        guidance = ImageGuidance(
            self.guidance_rows(rows),
            torch.zeros(len(rows), pipe.unet.config.in_channels, first.height // scale, first.width // scale,
                        device=device, dtype=dtype),
        )
        kwargs: dict[str, Any] = {
            "prompt_embeds": torch.cat([c.prompt for c in per_row]),
            "negative_prompt_embeds": torch.cat([c.negative for c in per_row]),
        }
        inputs = ["latents", "prompt_embeds"]
        if self.xl:
            kwargs["pooled_prompt_embeds"] = torch.cat([c.pooled for c in per_row])
            kwargs["negative_pooled_prompt_embeds"] = torch.cat([c.negative_pooled for c in per_row])
            inputs += ["add_text_embeds", "add_time_ids"]
        else:
            inputs += ["negative_prompt_embeds"]
        row_lists: list[list[torch.Tensor]] = []
        if self.ip_adapter:
            image_rows = [c.image for c in per_row]
            with_images = any(image is not None for image in image_rows)
            pipe.set_ip_adapter_scale(1.0 if with_images else 0.0)
            embeds = torch.stack([self._zero_image if image is None else image for image in image_rows])[:, None]
            ip_embeds = [torch.cat([torch.zeros_like(embeds), embeds]) if cfg else embeds]
            kwargs["ip_adapter_image_embeds"] = ip_embeds
            row_lists.append(ip_embeds)
        hook = StepHook(rows, control, guidance, generators, row_tensor_lists=row_lists)
        pipe.scheduler = self._schedulers.get(first.scheduler, first.dynamic_thresholding)
        output = pipe(
            height=first.height,
            width=first.width,
            num_inference_steps=first.steps,
            guidance_scale=guidance_scale,
            generator=generators,
            callback_on_step_end=hook,
            callback_on_step_end_tensor_inputs=inputs,
            output_type="pil",
            **kwargs,
        )
        return hook.images_by_row(output.images)

    def _encode_text(self, text: str, negative: str) -> tuple[torch.Tensor, ...]:
        """(prompt, negative[, pooled, negative pooled]) embeddings of one text, by the pipeline's own encoder."""
        return self.pipe.encode_prompt(
            prompt=text,
            device=self.pipe.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=negative or None,
        )

    def _condition(self, request: GenerationRequest) -> _Conditioning:
        ingredients = request.ingredients() or (MixIngredient(weight=1.0, text=request.prompt),)
        texts = [item for item in ingredients if item.text is not None]
        images = [item for item in ingredients if item.image is not None]
        interpolation = request.interpolation
        encoded = [self._encode_text(item.text, request.negative_prompt) for item in texts] or [
            self._encode_text("", request.negative_prompt)
        ]
        weights = [item.weight for item in texts] or [1.0]

        def mix(parts: list[torch.Tensor]) -> torch.Tensor:
            if not request.mix:
                return parts[0]
            return mix_embeddings(parts, weights, interpolation=interpolation if len(texts) == 2 else None,
                                  renormalize_result=request.renormalize_mix)

        prompt = mix([e[0] for e in encoded])
        pooled = mix([e[2] for e in encoded]) if self.xl else None
        image = None
        if images:
            embeds = [self._embed_image(item.image) for item in images]
            image = mix_embeddings(embeds, [item.weight for item in images],
                                   interpolation=interpolation if len(images) == 2 else None,
                                   renormalize_result=request.renormalize_mix)
        negative_pooled = encoded[0][3] if self.xl else None
        return _Conditioning(prompt, encoded[0][1], pooled, negative_pooled, image)

    def _embed_image(self, image: PIL.Image.Image) -> torch.Tensor:
        embeds, _ = self.pipe.encode_image(image.convert("RGB"), self.pipe.device, 1)
        return embeds[0]

    @property
    def _zero_image(self) -> torch.Tensor:
        encoder = self.pipe.image_encoder
        return torch.zeros(encoder.config.projection_dim, device=encoder.device, dtype=encoder.dtype)

    def encode_reference(self, image: PIL.Image.Image, width: int, height: int) -> torch.Tensor:
        """The guidance image in the UNet's latent space [C, h, w]: VAE mean times the scaling factor."""
        vae = self.pipe.vae
        pixels = self._vae_processor.preprocess(image.convert("RGB"), height=height, width=width)
        dtype = vae.dtype
        upcast = dtype == torch.float16 and vae.config.get("force_upcast", False)  # SDXL's VAE overflows in fp16
        if upcast:
            vae.to(torch.float32)
        try:
            latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean
        finally:
            if upcast:
                vae.to(dtype)
        return (latents[0] * vae.config.scaling_factor).to(dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] from UNet latents [B, C, h, w]."""
        vae = self.pipe.vae
        image = vae.decode(latents / vae.config.scaling_factor).sample
        return (image * 0.5 + 0.5).clamp(0, 1)


def load_stable_diffusion(
    root: Path, *, xl: bool, name: str, path: str, model_hash: str, settings: dict[str, Any],
    device: torch.device, dtype: torch.dtype,
) -> StableDiffusionFamily:
    cls = RowCFGStableDiffusionXLPipeline if xl else RowCFGStableDiffusionPipeline
    pipe = cls.from_pretrained(root, dtype=dtype, use_safetensors=True, local_files_only=True)
    ip_adapter = _load_ip_adapter(pipe, root)
    pipe.to(device)
    return StableDiffusionFamily(pipe, name=name, path=path, model_hash=model_hash, settings=settings,
                                 ip_adapter=ip_adapter)


def _load_ip_adapter(pipe: Any, root: Path) -> bool:
    """Load ``root/ip_adapter/<one>.safetensors`` + ``image_encoder/`` if present; say so when absent."""
    folder = root / IP_ADAPTER_DIR
    weights = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not weights:
        log.info("no IP-Adapter weights in %s: image ingredients are off for this model", folder)
        return False
    if len(weights) > 1:
        raise ModelLoadError(f"{folder} holds several .safetensors files; keep exactly one IP-Adapter")
    if not list((folder / "image_encoder").glob("*.safetensors")):
        raise ModelLoadError(f"{folder}/image_encoder needs the IP-Adapter's CLIP image encoder as safetensors")
    pipe.load_ip_adapter(str(root), subfolder=IP_ADAPTER_DIR, weight_name=weights[0].name, local_files_only=True)
    return True
