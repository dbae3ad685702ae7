"""Turn a GenerationRequest into a resolved one (defaults filled in, a seed chosen) or a RequestError.

The limits are declared in `model/engine/request_fields.py` (and listed in docs/LIMITS.md); a model narrows
them through `model_bounds`. Nothing invalid reaches a model.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from numbers import Integral, Real

import PIL.Image

from model.engine.engine_common import SCHEDULERS, GenerationRequest, MixIngredient, ModelInfo, RequestError
from model.engine.request_fields import (
    EMPTY_REQUEST,
    FIELDS,
    MAX_IMAGE_ASPECT_RATIO,
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE,
    MAX_INGREDIENTS,
    MAX_SEED,
    MAX_USER_CHARS,
    interpolation_problem,
    model_bounds,
    text_problem,
)


def resolve_request(request: GenerationRequest, info: ModelInfo) -> GenerationRequest:
    """Validate ``request`` against ``info``; return it with defaults and a seed resolved."""
    if not isinstance(request, GenerationRequest):
        raise RequestError("request", f"must be a GenerationRequest, not {type(request).__name__}")
    prompt = _text(request.prompt, "prompt")
    negative = _text(request.negative_prompt, "negative_prompt")
    mix = _mix(request.mix, info)
    if not prompt.strip() and not mix:
        raise RequestError("prompt", EMPTY_REQUEST)
    bounds = model_bounds(info)
    num_images = _whole(request.num_images, "num_images", bounds)
    steps = _whole(info.default_steps if request.steps is None else request.steps, "steps", bounds)
    guidance = _real(
        info.default_guidance if request.guidance_scale is None else request.guidance_scale, "guidance_scale"
    )
    width = info.default_size[0] if request.width is None else _whole(request.width, "width")
    height = info.default_size[1] if request.height is None else _whole(request.height, "height")
    if not info.size_allowed(width, height):
        raise RequestError(
            "width", f"{width}x{height} is not a size this model makes; allowed: {info.describe_sizes()}"
        )
    scheduler = info.default_scheduler if request.scheduler is None else request.scheduler
    if not isinstance(scheduler, str) or scheduler.lower() not in info.schedulers:
        raise RequestError(
            "scheduler", f"{scheduler!r} is unknown; choose one of {', '.join(info.schedulers)}"
        )
    if request.dynamic_thresholding is True and scheduler.lower() not in SCHEDULERS:
        raise RequestError("dynamic_thresholding", f"needs one of {', '.join(SCHEDULERS)} as the scheduler")
    seed = _random_seed() if request.seed is None else _whole(request.seed, "seed")
    candidates = info.default_candidates if request.candidates is None else request.candidates
    if info.max_candidates == 1 and candidates != 1:
        raise RequestError("candidates", "must be 1: this model has no verifier to pick among candidates")
    candidates = _whole(candidates, "candidates", bounds)
    image_scale = _real(request.image_guidance_scale, "image_guidance_scale")
    decays = FIELDS["image_guidance_decay"].choices
    if request.image_guidance_decay not in decays:
        raise RequestError("image_guidance_decay", f"must be one of {', '.join(decays)}")
    if request.guidance_image is not None:
        _image(request.guidance_image, "guidance_image")
    elif image_scale > 0:
        raise RequestError("guidance_image", "is required when image_guidance_scale is above 0")
    mix_spaces = FIELDS["mix_space"].choices
    if request.mix_space not in mix_spaces:
        raise RequestError("mix_space", f"must be one of {', '.join(mix_spaces)}, not {request.mix_space!r}")
    judged_mix = request.mix_space == "text" and all(item.text is not None for item in mix)
    if (mix and not judged_mix) or (request.guidance_image is not None and image_scale > 0):
        # the verifier reads a text embedding: a text-space mix of texts has one, image mixes and guided
        # pictures do not, so they start from one noise
        candidates = 1
    interpolation = None
    if request.interpolation is not None:
        interpolation = _real(request.interpolation, "interpolation")
        problem = interpolation_problem(prompt, len(mix))
        if problem:
            raise RequestError("interpolation", problem)
    for name in ("renormalize_mix", "dynamic_thresholding", "image_guidance_noised", "upscale"):
        if not isinstance(getattr(request, name), bool):
            raise RequestError(name, "must be true or false")
    if request.upscale and info.upscale_factor == 1:
        raise RequestError(
            "upscale", f"this model ({info.name}) has no upsampler; its pictures stay {width}x{height}"
        )
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


def _random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def _whole(value: object, name: str, bounds: dict[str, tuple[int, int]] | None = None) -> int:
    """A whole number in its declared range, or in the model's narrower one from ``bounds``."""
    declared = FIELDS[name]
    low, high = (bounds or {}).get(name, (int(declared.low or 0), int(declared.high or 0)))
    return _integer(value, name, low, high)


def _real(value: object, name: str, field: str | None = None) -> float:
    """A finite number in its declared range; ``field`` names it in the error when it is not ``name``."""
    declared = FIELDS[name]
    return _number(value, field or name, float(declared.low or 0), float(declared.high or 0))


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise RequestError(field, "must be text")
    problem = text_problem(value)
    if problem:
        raise RequestError(field, problem)
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
        raise RequestError(
            field, f"is {width}x{height}; the aspect ratio limit is 1:{MAX_IMAGE_ASPECT_RATIO}"
        )


def _mix(mix: object, info: ModelInfo) -> tuple[MixIngredient, ...]:
    if not isinstance(mix, (tuple, list)):
        raise RequestError("mix", "must be a list of ingredients")
    if len(mix) > MAX_INGREDIENTS:
        raise RequestError("mix", f"has {len(mix)} ingredients; the limit is {MAX_INGREDIENTS}")
    for index, item in enumerate(mix):
        field = f"mix[{index}]"
        if not isinstance(item, MixIngredient):
            raise RequestError(field, "must be a MixIngredient")
        _real(item.weight, "mix.weight", f"{field}.weight")
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
