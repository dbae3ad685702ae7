"""Turn a GenerationRequest into a resolved one (defaults filled in, a seed chosen) or a RequestError.

Every limit lives here and in docs/LIMITS.md; nothing invalid reaches a model.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from numbers import Integral, Real

import PIL.Image

from model.engine.engine_common import DECAYS, SCHEDULERS, GenerationRequest, MixIngredient, ModelInfo, RequestError

MAX_PROMPT_CHARS = 1000
MAX_GUIDANCE = 30.0
MAX_MIX_WEIGHT = 10.0
MAX_INGREDIENTS = 8
MAX_SEED = 2**32 - 1
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_IMAGE_SIDE = 4096
MAX_IMAGE_ASPECT_RATIO = 8
"""Reference and mix images are resized to the model's size; a 16,000,000 x 1 strip passes the pixel cap but
exhausts memory there, so each side and the aspect ratio are capped too (the upload limits are the same)."""
MAX_USER_CHARS = 200


def resolve_request(request: GenerationRequest, info: ModelInfo) -> GenerationRequest:
    """Validate ``request`` against ``info``; return it with defaults and a seed resolved."""
    if not isinstance(request, GenerationRequest):
        raise RequestError("request", f"must be a GenerationRequest, not {type(request).__name__}")
    prompt = _text(request.prompt, "prompt")
    negative = _text(request.negative_prompt, "negative_prompt")
    mix = _mix(request.mix, info)
    if not prompt.strip() and not mix:
        raise RequestError("prompt", "is empty; write a prompt or add mix ingredients")
    num_images = _integer(request.num_images, "num_images", 1, info.max_images)
    steps = _integer(info.default_steps if request.steps is None else request.steps, "steps", 1, info.max_steps)
    guidance = _number(
        info.default_guidance if request.guidance_scale is None else request.guidance_scale,
        "guidance_scale", 0.0, MAX_GUIDANCE,
    )
    width = info.default_size[0] if request.width is None else _integer(request.width, "width", 1, 1 << 16)
    height = info.default_size[1] if request.height is None else _integer(request.height, "height", 1, 1 << 16)
    if not info.size_allowed(width, height):
        raise RequestError("width", f"{width}x{height} is not a size this model makes; allowed: {info.describe_sizes()}")
    scheduler = info.default_scheduler if request.scheduler is None else request.scheduler
    if not isinstance(scheduler, str) or scheduler.lower() not in info.schedulers:
        raise RequestError("scheduler", f"{scheduler!r} is unknown; choose one of {', '.join(info.schedulers)}")
    if request.dynamic_thresholding is True and scheduler.lower() not in SCHEDULERS:
        raise RequestError("dynamic_thresholding", f"needs one of {', '.join(SCHEDULERS)} as the scheduler")
    seed = secrets.randbelow(MAX_SEED + 1) if request.seed is None else _integer(request.seed, "seed", 0, MAX_SEED)
    candidates = info.default_candidates if request.candidates is None else request.candidates
    if info.max_candidates == 1 and candidates != 1:
        raise RequestError("candidates", "must be 1: this model has no verifier to pick among candidates")
    candidates = _integer(candidates, "candidates", 1, info.max_candidates)
    image_scale = _number(request.image_guidance_scale, "image_guidance_scale", 0.0, 1.0)
    if request.image_guidance_decay not in DECAYS:
        raise RequestError("image_guidance_decay", f"must be one of {', '.join(DECAYS)}")
    if request.guidance_image is not None:
        _image(request.guidance_image, "guidance_image")
    elif image_scale > 0:
        raise RequestError("guidance_image", "is required when image_guidance_scale is above 0")
    if mix or (request.guidance_image is not None and image_scale > 0):
        candidates = 1  # the verifier reads only a text: mixes and guided pictures start from one noise
    interpolation = None
    if request.interpolation is not None:
        interpolation = _number(request.interpolation, "interpolation", 0.0, 1.0)
        count = len(dataclasses.replace(request, prompt=prompt, mix=mix).ingredients())
        if count != 2:
            raise RequestError(
                "interpolation", f"needs exactly 2 ingredients (a non-empty prompt counts as one), got {count}"
            )
    for name in ("renormalize_mix", "dynamic_thresholding", "image_guidance_noised"):
        if not isinstance(getattr(request, name), bool):
            raise RequestError(name, "must be true or false")
    user = request.user
    if not isinstance(user, str) or not user or len(user) > MAX_USER_CHARS:
        raise RequestError("user", f"must be a non-empty string of at most {MAX_USER_CHARS} characters")
    return dataclasses.replace(
        request,
        prompt=prompt,
        negative_prompt=negative,
        seed=seed,
        steps=steps,
        guidance_scale=guidance,
        width=width,
        height=height,
        num_images=num_images,
        scheduler=scheduler.lower(),
        image_guidance_scale=image_scale,
        mix=mix,
        interpolation=interpolation,
        candidates=candidates,
    )


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise RequestError(field, "must be text")
    if len(value) > MAX_PROMPT_CHARS:
        raise RequestError(field, f"is {len(value)} characters long; the limit is {MAX_PROMPT_CHARS}")
    if "\x00" in value:
        raise RequestError(field, "contains a NUL character")
    return value


def _integer(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise RequestError(field, f"must be a whole number, not {value!r}")
    if not low <= int(value) <= high:
        raise RequestError(field, f"must be between {low} and {high}, got {value}")
    return int(value)


def _number(value: object, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise RequestError(field, f"must be a number, not {value!r}")
    if not math.isfinite(value):
        raise RequestError(field, f"must be a finite number, got {value}")
    if not low <= float(value) <= high:
        raise RequestError(field, f"must be between {low:g} and {high:g}, got {value}")
    return float(value)


def _image(value: object, field: str) -> None:
    if not isinstance(value, PIL.Image.Image):
        raise RequestError(field, "must be an image")
    width, height = value.size
    if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
        raise RequestError(field, f"is {width}x{height}; at most {MAX_IMAGE_PIXELS} pixels allowed")
    if max(width, height) > MAX_IMAGE_SIDE:
        raise RequestError(field, f"is {width}x{height}; the limit is {MAX_IMAGE_SIDE} pixels per side")
    if max(width, height) > MAX_IMAGE_ASPECT_RATIO * min(width, height):
        raise RequestError(field, f"is {width}x{height}; the aspect ratio limit is 1:{MAX_IMAGE_ASPECT_RATIO}")


def _mix(mix: object, info: ModelInfo) -> tuple[MixIngredient, ...]:
    if not isinstance(mix, (tuple, list)):
        raise RequestError("mix", "must be a list of ingredients")
    if len(mix) > MAX_INGREDIENTS:
        raise RequestError("mix", f"has {len(mix)} ingredients; the limit is {MAX_INGREDIENTS}")
    for index, item in enumerate(mix):
        field = f"mix[{index}]"
        if not isinstance(item, MixIngredient):
            raise RequestError(field, "must be a MixIngredient")
        _number(item.weight, f"{field}.weight", -MAX_MIX_WEIGHT, MAX_MIX_WEIGHT)
        if (item.text is None) == (item.image is None):
            raise RequestError(field, "needs exactly one of text or image")
        if item.text is not None:
            if not _text(item.text, f"{field}.text").strip():
                raise RequestError(f"{field}.text", "is empty")
        else:
            _image(item.image, f"{field}.image")
            if not info.image_ingredients:
                raise RequestError(
                    f"{field}.image",
                    "this model cannot mix images (a Stable Diffusion model needs local IP-Adapter weights)",
                )
    return tuple(mix)
