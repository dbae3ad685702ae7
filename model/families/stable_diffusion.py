"""Stable Diffusion 1.x/2.x and SDXL folders, with optional local IP-Adapter weights for image prompts.

Mixing: weighted sums of the text encoder's prompt embeddings (per token; SDXL also its pooled embedding),
and, where ``<model>/ip_adapter/`` holds IP-Adapter weights, of IP-Adapter image embeddings. The pipeline
object holds the components and encodes prompts and images; the denoising loop is ours (denoising.py).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import PIL.Image
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from model.device_options import DeviceOptions
from model.engine.engine_common import GenerationRequest, MixIngredient, ModelInfo, RequestError, resolved
from model.families.base import BatchControl, Family, Row
from model.families.denoising import DenoisingLoop, StepHook, classifier_free_guidance, row_cfg_scale
from model.families.loading import ModelLoadError
from model.families.runtime import place
from model.families.schedulers import DynamicThreshold, SchedulerBank
from model.mixing import mix_embeddings

log = logging.getLogger(__name__)

FAMILY_SD = "stable-diffusion"
FAMILY_SDXL = "stable-diffusion-xl"
IP_ADAPTER_DIR = "ip_adapter"
DEFAULTS = {
    FAMILY_SD: {"default_steps": 30, "default_guidance": 7.5},
    FAMILY_SDXL: {"default_steps": 30, "default_guidance": 5.0},
}
# Live previews skip the VAE: RGB is close to a linear map of the 4 latent channels (as the UNet sees them).
# These are the factors ComfyUI's latent previews use for SD 1.x/2.x and SDXL latents; rows are channels.
LATENT_RGB = {
    FAMILY_SD: (
        (0.3512, 0.2297, 0.3227),
        (0.3250, 0.4974, 0.2350),
        (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177),
    ),
    FAMILY_SDXL: (
        (0.3920, 0.4054, 0.4549),
        (-0.2634, -0.0196, 0.0653),
        (0.0568, 0.1687, -0.0755),
        (-0.3112, -0.2359, -0.2076),
    ),
}


class _Conditioning:
    """One job's embeddings: prompt (and SDXL pooled) embeddings, negatives, optional IP-Adapter embedding."""

    def __init__(
        self,
        prompt: torch.Tensor,
        negative: torch.Tensor,
        pooled: torch.Tensor | None,
        negative_pooled: torch.Tensor | None,
        image: torch.Tensor | None,
    ) -> None:
        self.prompt, self.negative = prompt, negative
        self.pooled, self.negative_pooled = pooled, negative_pooled
        self.image = image


class StableDiffusionFamily(Family):
    def __init__(
        self,
        pipe: StableDiffusionPipeline | StableDiffusionXLPipeline,
        *,
        name: str,
        path: str,
        model_hash: str,
        settings: dict[str, Any],
        ip_adapter: bool,
        device: torch.device | None = None,
    ) -> None:
        # where the models compute: under model CPU offload that is the GPU, while ``pipe.device`` says cpu,
        # so the loader passes the device it placed them on
        self.device = torch.device(device) if device is not None else pipe.device
        self.pipe = pipe  # holds the components and encoders; the denoising loop is ours
        self.xl = isinstance(pipe, StableDiffusionXLPipeline)
        self.ip_adapter = ip_adapter
        family = FAMILY_SDXL if self.xl else FAMILY_SD
        self._schedulers = SchedulerBank(pipe.scheduler)
        self._threshold = DynamicThreshold(float(settings.get("latent_range", 4.0)))
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
            device=str(self.device),
            dtype=str(pipe.unet.dtype).removeprefix("torch."),
        )
        self._vae_processor = pipe.image_processor
        self._latent_rgb = torch.tensor(LATENT_RGB[family], dtype=torch.float32)

    def check_request(self, request: GenerationRequest) -> None:
        """Stable Diffusion mixes texts as prompt embeddings (text space: it has no prior), and can only slerp
        between two texts or two images (different embedding spaces)."""
        if request.mix_space != "text" and any(item.text is not None for item in request.ingredients()):
            raise RequestError(
                "mix_space", "must be text on Stable Diffusion: it mixes the prompt embeddings"
            )
        if request.interpolation is not None:
            kinds = {item.text is None for item in request.ingredients()}
            if len(kinds) != 1:
                raise RequestError(
                    "interpolation", "on Stable Diffusion needs two texts or two images, not one of each"
                )

    def batch_key(self, request: GenerationRequest) -> Hashable:
        key: tuple[Any, ...] = (
            request.width,
            request.height,
            request.steps,
            request.scheduler,
            request.dynamic_thresholding,
        )
        if self.ip_adapter:  # image-prompt rows run with the adapter on, text-only rows with it off
            key += (any(item.image is not None for item in request.mix),)
        if not self._per_row_cfg:  # guidance-distilled UNets take the scale as an input, one per batch
            key += (request.guidance_scale,)
        return key

    @torch.no_grad()
    def generate(
        self, rows: Sequence[Row], control: BatchControl | None = None, step_hook: StepHook | None = None
    ) -> list[PIL.Image.Image | None]:
        first = rows[0].request
        pipe, unet = self.pipe, self.pipe.unet
        device, dtype = self.device, unet.dtype
        conditioning: dict[int, _Conditioning] = {}
        for row in rows:
            if id(row.request) not in conditioning:
                conditioning[id(row.request)] = self._condition(row.request)
        per_row = [conditioning[id(row.request)] for row in rows]
        scales = row_cfg_scale(rows, dtype, device)
        cfg = self._per_row_cfg and bool((scales > 1).any())
        prompt = torch.cat([c.prompt for c in per_row]).to(device, dtype)
        negative = torch.cat([c.negative for c in per_row]).to(device, dtype)
        if self.xl:
            pooled = torch.cat([c.pooled for c in per_row]).to(device, dtype)  # type: ignore[misc]
            negative_pooled = torch.cat([c.negative_pooled for c in per_row]).to(device, dtype)  # type: ignore[misc]
            size_ids = (
                first.height,
                first.width,
            )  # SDXL's micro-conditioning: original size, crop, target size
            time_ids = torch.tensor([[*size_ids, 0, 0, *size_ids]], dtype=dtype, device=device)
        image_embeds = None
        if self.ip_adapter:
            with_images = any(c.image is not None for c in per_row)
            pipe.set_ip_adapter_scale(1.0 if with_images else 0.0)
            image_embeds = torch.stack([self._zero_image if c.image is None else c.image for c in per_row])
            image_embeds = image_embeds[:, None].to(device)
        guidance_embedding = None
        if not self._per_row_cfg:  # a guidance-distilled UNet takes the batch's one scale as an input
            guidance_embedding = pipe.get_guidance_scale_embedding(
                torch.tensor([resolved(first.guidance_scale) - 1]),
                embedding_dim=unet.config.time_cond_proj_dim,
            ).to(device, dtype)

        def predict(latents: torch.Tensor, timestep: torch.Tensor, positions: list[int]) -> torch.Tensor:
            """The UNet on the live rows: text (and SDXL pooled text, IP-Adapter image) embeddings, per-row CFG."""

            def both(conditional: torch.Tensor, unconditional: torch.Tensor) -> torch.Tensor:
                return torch.cat([unconditional, conditional]) if cfg else conditional

            rows_in = len(positions) * (2 if cfg else 1)
            added: dict[str, Any] = {}
            if self.xl:
                added["text_embeds"] = both(pooled[positions], negative_pooled[positions])
                added["time_ids"] = time_ids.repeat(rows_in, 1)
            if image_embeds is not None:
                live = image_embeds[positions]
                added["image_embeds"] = [both(live, torch.zeros_like(live))]
            output = unet(
                both(latents, latents),
                timestep,
                encoder_hidden_states=both(prompt[positions], negative[positions]),
                timestep_cond=None if guidance_embedding is None else guidance_embedding.repeat(rows_in, 1),
                added_cond_kwargs=added or None,
            ).sample
            return classifier_free_guidance(output, scales[positions], output.shape[1]) if cfg else output

        scale = pipe.vae_scale_factor
        loop = DenoisingLoop(
            rows,
            self._schedulers.get(resolved(first.scheduler), first.dynamic_thresholding),
            resolved(first.steps),
            (unet.config.in_channels, first.height // scale, first.width // scale),
            predict,
            device=device,
            dtype=dtype,
            control=control,
            guidance=self.guidance_rows(rows),
            threshold=self._threshold if first.dynamic_thresholding else None,
            step_hook=step_hook,
        )
        return loop.by_row(self._images(loop.run()))

    def _images(self, latents: torch.Tensor) -> list[PIL.Image.Image]:
        """The finished pictures, as the stock pipelines make them: SD's safety checker, SDXL's watermark."""
        pipe = self.pipe
        pixels = self._decode(latents)
        flagged = None
        if self.xl:
            if pipe.watermark is not None:
                pixels = pipe.watermark.apply_watermark(pixels)
        else:
            pixels, flagged = pipe.run_safety_checker(pixels, pixels.device, latents.dtype)
        keep = None if flagged is None else [not nsfw for nsfw in flagged]
        return pipe.image_processor.postprocess(pixels, output_type="pil", do_denormalize=keep)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] from UNet latents (SDXL: in float32 where the VAE overflows in fp16, and with the
        VAE's latents mean and std where its config has them, as the SDXL pipeline does)."""
        vae = self.pipe.vae
        with _float32_vae(vae, self.xl):
            latents = latents.to(vae.dtype)
            mean, std = vae.config.get("latents_mean"), vae.config.get("latents_std")
            if self.xl and mean is not None and std is not None:
                shape = (1, -1, 1, 1)
                latents = latents * torch.tensor(std).view(shape).to(
                    latents
                ) / vae.config.scaling_factor + torch.tensor(mean).view(shape).to(latents)
            else:
                latents = latents / vae.config.scaling_factor
            return vae.decode(latents).sample

    def _encode_text(self, text: str, negative: str) -> tuple[torch.Tensor, ...]:
        """(prompt, negative[, pooled, negative pooled]) embeddings of one text, by the pipeline's own encoder."""
        return self.pipe.encode_prompt(
            prompt=text,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=negative or None,
        )

    def _condition(self, request: GenerationRequest) -> _Conditioning:
        ingredients = request.ingredients() or (MixIngredient(weight=1.0, text=request.prompt),)
        texts = [item for item in ingredients if item.text is not None]
        images = [item for item in ingredients if item.image is not None]
        interpolation = request.interpolation
        encoded = [self._encode_text(resolved(item.text), request.negative_prompt) for item in texts] or [
            self._encode_text("", request.negative_prompt)
        ]
        weights = [item.weight for item in texts] or [1.0]

        def mix(parts: list[torch.Tensor]) -> torch.Tensor:
            if not request.mix:
                return parts[0]
            return mix_embeddings(
                parts,
                weights,
                interpolation=interpolation if len(texts) == 2 else None,
                renormalize_result=request.renormalize_mix,
            )

        prompt = mix([e[0] for e in encoded])
        pooled = mix([e[2] for e in encoded]) if self.xl else None
        image = None
        if images:
            embeds = [self._embed_image(resolved(item.image)) for item in images]
            image = mix_embeddings(
                embeds,
                [item.weight for item in images],
                interpolation=interpolation if len(images) == 2 else None,
                renormalize_result=request.renormalize_mix,
            )
        negative_pooled = encoded[0][3] if self.xl else None
        return _Conditioning(prompt, encoded[0][1], pooled, negative_pooled, image)

    def _embed_image(self, image: PIL.Image.Image) -> torch.Tensor:
        embeds, _ = self.pipe.encode_image(image.convert("RGB"), self.device, 1)
        return embeds[0]

    @property
    def _zero_image(self) -> torch.Tensor:
        encoder = self.pipe.image_encoder
        return torch.zeros(encoder.config.projection_dim, device=self.device, dtype=encoder.dtype)

    def encode_reference(self, image: PIL.Image.Image, width: int, height: int) -> torch.Tensor:
        """The guidance image in the UNet's latent space [C, h, w]: VAE mean times the scaling factor."""
        vae = self.pipe.vae
        pixels = self._vae_processor.preprocess(image.convert("RGB"), height=height, width=width)
        dtype = vae.dtype
        with _float32_vae(vae):
            latents = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist.mean
        return (latents[0] * vae.config.scaling_factor).to(dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] from UNet latents [B, C, h, w]."""
        return (self._decode(latents) * 0.5 + 0.5).clamp(0, 1)

    def preview_images(self, latents: torch.Tensor) -> list[PIL.Image.Image]:
        """Latent-size pictures (1/8 of the image's side) by the linear latent-to-RGB map; no VAE runs."""
        rgb = torch.einsum("bchw,cr->bhwr", latents.float().cpu(), self._latent_rgb)
        pixels = ((rgb + 1) * 127.5).clamp(0, 255).round().to(torch.uint8).numpy()
        return [PIL.Image.fromarray(picture) for picture in pixels]


@contextmanager
def _float32_vae(vae: Any, wanted: bool = True) -> Iterator[None]:
    """Run the VAE in float32 while inside, if ``wanted`` and it overflows in fp16 (diffusers' force_upcast)."""
    dtype = vae.dtype
    upcast = wanted and dtype == torch.float16 and vae.config.get("force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        yield
    finally:
        if upcast:
            vae.to(dtype)


def load_stable_diffusion(
    root: Path,
    *,
    xl: bool,
    name: str,
    path: str,
    model_hash: str,
    settings: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    options: DeviceOptions,
) -> StableDiffusionFamily:
    cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    pipe = cls.from_pretrained(root, dtype=dtype, use_safetensors=True, local_files_only=True)
    ip_adapter = _load_ip_adapter(pipe, root)
    place(pipe, device, options)
    return StableDiffusionFamily(
        pipe,
        name=name,
        path=path,
        model_hash=model_hash,
        settings=settings,
        ip_adapter=ip_adapter,
        device=device,
    )


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
        raise ModelLoadError(
            f"{folder}/image_encoder needs the IP-Adapter's CLIP image encoder as safetensors"
        )
    pipe.load_ip_adapter(
        str(root), subfolder=IP_ADAPTER_DIR, weight_name=weights[0].name, local_files_only=True
    )
    return True
