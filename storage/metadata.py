"""The recipe inside every PNG, readable by other tools.

Two chunks:
- `parameters` (tEXt, or iTXt when the text is not Latin-1): the AUTOMATIC1111 infotext that
  A1111, ComfyUI, InvokeAI and image viewers understand::

      a red circle
      on a blue background
      Negative prompt: blurry
      Steps: 20, Sampler: ddpm, CFG scale: 6.0, Seed: 42, Size: 64x64, Model hash: ab12, Model: embedded

  An upscaled image adds ``Upscale: 64x64 -> 256x256`` after its size (the 256 px picture's). A guided or
  mixed image adds what made it, after the model: ``Image guidance: "3f2a9c1b2d, scale 0.05,
  decay linear"`` (the reference's short hash), ``Mix: "\\"red\\" -1, \\"blue\\" +1"`` (each ingredient, a
  quoted text or an image's short hash, with its signed weight) and ``Interpolation: 0.5``. A mix-only
  image (empty prompt) shows its ingredients on the prompt line.

- `draftroom` (compressed iTXt): the full recipe as JSON (mix, image guidance, generation id,
  every parameter), the authority when both are present.

The A1111 parser follows A1111's own rules (`parse_generation_parameters`): the last line holds the
settings when it has at least three `Key: value` pairs; a line starting with `Negative prompt:`
starts the negative prompt; values with commas, colons or quotes are JSON-quoted.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image, PngImagePlugin

from model.engine.request_fields import recorded_mix_space

from .errors import ValidationFailed

if TYPE_CHECKING:
    from model.engine.engine_common import GenerationRequest, GenerationResult

PARAMETERS_KEY = "parameters"
RECIPE_KEY = "draftroom"
RECIPE_VERSION = 1
NEGATIVE_PREFIX = "Negative prompt:"
_SETTING = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")
SHORT_HASH = 10
"""Characters of a sha256 a recipe shows, as A1111 shows a model hash."""


@dataclass(frozen=True)
class Recipe:
    """Everything needed to understand, and to redo, one image."""

    prompt: str
    negative_prompt: str = ""
    steps: int | None = None
    sampler: str | None = None
    cfg_scale: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    model_hash: str | None = None
    model_name: str | None = None
    mix: tuple[dict[str, Any], ...] = ()
    """Ingredients: {"weight": w, "text": t} or {"weight": w, "upload_sha256": s}."""
    guidance: dict[str, Any] | None = None
    """{"upload_sha256": s, "scale": f, "decay": "none" | "linear" | "cosine"}."""
    generation_id: int | None = None
    image_index: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    """Every resolved parameter as the engine reported it."""
    extra: dict[str, str] = field(default_factory=dict)
    """A1111 settings we have no field for (from other tools), kept verbatim."""

    def settings(self) -> dict[str, str]:
        """The A1111 settings line as ordered key/value strings."""
        pairs: list[tuple[str, Any]] = [
            ("Steps", self.steps),
            ("Sampler", self.sampler),
            ("CFG scale", self.cfg_scale),
            ("Seed", self.seed),
            ("Size", f"{self.width}x{self.height}" if self.width and self.height else None),
            ("Upscale", upscale_text(self.params, self.width, self.height)),
            ("Model hash", self.model_hash),
            ("Model", self.model_name),
        ]
        settings = {key: str(value) for key, value in pairs if value is not None}
        settings.update(
            mixing_settings(
                self.guidance, self.mix, self.params.get("interpolation"), recorded_mix_space(self.params)
            )
        )
        settings.update(self.extra)
        return settings

    def prompt_line(self) -> str:
        """The A1111 prompt: a mix-only image (empty prompt) names its ingredients there instead."""
        return self.prompt if self.prompt.strip() or not self.mix else describe_mix(self.mix)

    def to_json(self) -> str:
        return json.dumps({"version": RECIPE_VERSION, **asdict(self)}, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        """The recipe in a Draftroom chunk; a chunk from elsewhere may hold anything, so every field's type
        is checked (a number where the prompt should be is refused, not passed on)."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValidationFailed("image", f"The image's Draftroom recipe is unreadable: {exc}") from exc
        if not isinstance(data, dict):
            raise ValidationFailed("image", "The image's Draftroom recipe is not a JSON object.")
        data.pop("version", None)
        for key, value in data.items():
            if key not in _JSON_FIELDS or not _JSON_FIELDS[key](value):
                raise ValidationFailed("image", f"The image's Draftroom recipe has an invalid {key!r}.")
        data["mix"] = tuple(data.get("mix") or ())
        try:
            return cls(**data)
        except TypeError as exc:  # a required field is missing
            raise ValidationFailed("image", f"The image's Draftroom recipe is incomplete: {exc}") from exc

    @classmethod
    def from_a1111(cls, text: str) -> Recipe:
        parsed = parse_a1111(text)
        settings: dict[str, str] = dict(parsed["settings"])
        size = _SIZE.match(settings.pop("Size", ""))
        return cls(
            prompt=parsed["prompt"],
            negative_prompt=parsed["negative_prompt"],
            steps=_number(settings.pop("Steps", None), int),
            sampler=settings.pop("Sampler", None),
            cfg_scale=_number(settings.pop("CFG scale", None), float),
            seed=_number(settings.pop("Seed", None), int),
            width=int(size.group(1)) if size else None,
            height=int(size.group(2)) if size else None,
            model_hash=settings.pop("Model hash", None),
            model_name=settings.pop("Model", None),
            extra=settings,
        )


def short_hash(sha256: object) -> str:
    """An image named as a recipe names it: its sha256's first characters (``image`` when unknown)."""
    return sha256[:SHORT_HASH] if isinstance(sha256, str) and sha256 else "image"


def _number_text(value: object, sign: str = "") -> str:
    """A number as A1111 writes one (``0.05``, ``+1``); anything else from a foreign chunk as it is."""
    return format(value, f"{sign}g") if _finite(value) else str(value)


def describe_mix(mix: Sequence[dict[str, Any]]) -> str:
    """``"red" -1, 3f2a9c1b2d +0.5``: each ingredient (a quoted text or an image's short hash), signed weight."""
    parts = []
    for item in mix:
        text = item.get("text")
        what = (
            json.dumps(text, ensure_ascii=False)
            if isinstance(text, str)
            else short_hash(item.get("upload_sha256"))
        )
        parts.append(f"{what} {_number_text(item.get('weight'), '+')}")
    return ", ".join(parts)


def upscale_text(params: dict[str, Any], width: int | None, height: int | None) -> str | None:
    """How an upscaled image got its size, e.g. "64x64 -> 256x256" (the model's size, then the image's);
    None for an image drawn at its size."""
    if not params.get("upscale"):
        return None
    return f"{params.get('width')}x{params.get('height')} -> {width}x{height}"


def mixing_settings(
    guidance: dict[str, Any] | None,
    mix: Sequence[dict[str, Any]],
    interpolation: object = None,
    mix_space: str | None = None,
) -> dict[str, str]:
    """The A1111 settings of image guidance and the mix (none for a plain image), from the recipe's shapes:
    ``guidance`` {"upload_sha256", "scale", "decay"}, ``mix`` [{"weight", "text" | "upload_sha256"}], and
    ``mix_space``, where the mix's texts were mixed (``recorded_mix_space``)."""
    settings: dict[str, str] = {}
    if guidance is not None:
        settings["Image guidance"] = (
            f"{short_hash(guidance.get('upload_sha256'))}, scale {_number_text(guidance.get('scale'))}, "
            f"decay {guidance.get('decay')}"
        )
    if mix:
        settings["Mix"] = describe_mix(mix)
        if mix_space is not None:
            settings["Mix space"] = mix_space
    if interpolation is not None:
        settings["Interpolation"] = _number_text(interpolation)
    return settings


def image_recipe(
    request: GenerationRequest,
    result: GenerationResult,
    index: int,
    *,
    model_hash: str,
    mix_sources: Sequence[str | None] = (),
    guidance_source: str | None = None,
    generation_id: int | None = None,
    params: dict[str, Any] | None = None,
) -> Recipe:
    """The recipe of image ``index`` of a finished job: the studio, the CLI and the export all use this one.

    ``request`` is the resolved request, ``result`` the engine's answer: the image's own seed and size come
    from the result, not from the request. Image ingredients and the guidance image are named by the sha256
    of their source files (``mix_sources[i]`` for ingredient i, ``guidance_source``). ``model_hash`` is the
    short form A1111 shows; ``params`` defaults to every parameter the engine reported.
    """
    image = result.images[index]
    seeds = result.seeds or [result.seed + i for i in range(len(result.images))]
    sources = list(mix_sources) or [None] * len(request.mix)
    mix = tuple(
        {"weight": item.weight, "text": item.text}
        if item.text is not None
        else {"weight": item.weight, "upload_sha256": source}
        for item, source in zip(request.mix, sources, strict=True)
    )
    guidance = None
    if request.guidance_image is not None:
        guidance = {
            "upload_sha256": guidance_source,
            "scale": request.image_guidance_scale,
            "decay": request.image_guidance_decay,
        }
    return Recipe(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        steps=request.steps,
        sampler=request.scheduler,
        cfg_scale=request.guidance_scale,
        seed=seeds[index],
        width=image.width,
        height=image.height,
        model_hash=model_hash,
        model_name=result.model_name,
        mix=mix,
        guidance=guidance,
        generation_id=generation_id,
        image_index=index,
        params=result.params if params is None else params,
    )


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: value is None or check(value)


def _text(value: object) -> bool:
    return isinstance(value, str)


def _finite(value: object) -> bool:
    return _whole(value) or (isinstance(value, float) and math.isfinite(value))


_JSON_FIELDS: dict[str, Callable[[object], bool]] = {
    "prompt": _text,
    "negative_prompt": _text,
    "steps": _optional(_whole),
    "sampler": _optional(_text),
    "cfg_scale": _optional(_finite),
    "seed": _optional(_whole),
    "width": _optional(_whole),
    "height": _optional(_whole),
    "model_hash": _optional(_text),
    "model_name": _optional(_text),
    "mix": lambda value: isinstance(value, list) and all(isinstance(item, dict) for item in value),
    "guidance": _optional(lambda value: isinstance(value, dict)),
    "generation_id": _optional(_whole),
    "image_index": _optional(_whole),
    "params": lambda value: isinstance(value, dict),
    "extra": lambda value: isinstance(value, dict) and all(isinstance(v, str) for v in value.values()),
}
"""What each field of a Draftroom JSON chunk may hold."""


def _number(value: str | None, kind: type[int] | type[float]) -> Any:
    """A number from an A1111 setting, or None when it is not one (or not finite)."""
    if value is None:
        return None
    try:
        number = kind(value)
    except ValueError:
        return None
    return None if isinstance(number, float) and not math.isfinite(number) else number


def _quote(value: str) -> str:
    """A1111's quoting, made safe for every value: JSON-quote anything the settings regex would cut."""
    if value and not any(c in value for c in ',:"\n\r') and value == value.strip():
        return value
    return json.dumps(value, ensure_ascii=False)


def format_a1111(prompt: str, negative_prompt: str, settings: dict[str, str]) -> str:
    lines = [prompt]
    if negative_prompt:
        lines.append(f"{NEGATIVE_PREFIX} {negative_prompt}")
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in settings.items()))
    return "\n".join(lines)


def parse_a1111(text: str) -> dict[str, Any]:
    """Split an A1111 infotext into {"prompt", "negative_prompt", "settings": {key: value}}.

    Reads what A1111 and other tools write: multi-line prompts and negative prompts, quoted values
    containing commas, no negative prompt, no settings line. Lines are stripped, as A1111 does.
    """
    *lines, last = text.replace("\r\n", "\n").strip().split("\n")
    if len(_SETTING.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith(NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(NEGATIVE_PREFIX) :].strip()
        (negative if in_negative else prompt).append(line)
    settings: dict[str, str] = {}
    for key, value in _SETTING.findall(last):
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            with contextlib.suppress(ValueError):  # not JSON after all: keep it as written
                value = json.loads(value)
        settings[key] = value
    return {"prompt": "\n".join(prompt), "negative_prompt": "\n".join(negative), "settings": settings}


def encode_png(image: Image.Image, recipe: Recipe) -> bytes:
    """PNG bytes of `image` carrying `recipe` in both chunks."""
    info = PngImagePlugin.PngInfo()
    info.add_text(
        PARAMETERS_KEY, format_a1111(recipe.prompt_line(), recipe.negative_prompt, recipe.settings())
    )
    info.add_itxt(RECIPE_KEY, recipe.to_json(), zip=True)
    if image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def read_png_metadata(data: bytes) -> Recipe:
    """The recipe in a PNG: Draftroom's JSON when present, else the A1111 `parameters` text.

    Reads only the chunks before the pixel data, so a huge or hostile image is never decoded.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise ValidationFailed("image", "This is not a PNG image.")
            info = dict(image.info)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # ValueError: a text chunk too large
        raise ValidationFailed("image", f"This file is not a readable image: {exc}") from exc
    if RECIPE_KEY in info:
        return Recipe.from_json(str(info[RECIPE_KEY]))
    if PARAMETERS_KEY in info:
        return Recipe.from_a1111(str(info[PARAMETERS_KEY]))
    raise ValidationFailed("image", "This PNG carries no generation parameters.")
