"""Every field of a generation request, declared once: its type, range, default and help text.

The engine's validation (`model/engine/validation.py`), the REST schema (`webapp/schemas.py`), the Generate
tab's components (`webapp/ui/generate.py`), storage's checks of stored seeds and mixes, and docs/LIMITS.md
(checked against this module by `tests/model/test_request_fields.py`) all read these declarations, so a
limit changes here and nowhere else.

A loaded model narrows the declaration through one hook, `model_bounds(info)`: the steps, image count and
candidates its `ModelInfo` allows (the family fills those in: its sizes, whether it has a verifier). A
model can only narrow a range, never widen it, so a request the REST schema refuses the engine refuses too.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from model.engine.engine_common import ModelInfo

MAX_TEXT_CHARS = 1000
MAX_SEED = 2**32 - 1
MAX_STEPS = 150
MAX_GUIDANCE = 30.0
MIN_SIDE = 16
MAX_SIDE = 2048
MAX_IMAGES = 16
MAX_CANDIDATES = 16
MAX_MIX_WEIGHT = 10.0
MAX_INGREDIENTS = 8
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_IMAGE_SIDE = 4096
MAX_IMAGE_ASPECT_RATIO = 8
"""Reference and mix images are resized to the model's size; a 16,000,000 x 1 strip passes the pixel cap but
exhausts memory there, so each side and the aspect ratio are capped too. Uploads are held to the same limits."""
MAX_USER_CHARS = 200
MAX_SCHEDULER_CHARS = 32
Decay = Literal["none", "linear", "cosine"]
DECAYS: tuple[str, ...] = get_args(Decay)
MixSpace = Literal["text", "image"]
MIX_SPACES: tuple[str, ...] = get_args(MixSpace)
DEFAULT_MIX_SPACE: MixSpace = "text"
"""Texts mixed in CLIP text space before one prior call: the arithmetic that draws the asked swap (model card)."""


def recorded_mix_space(params: dict[str, object]) -> str:
    """The space a stored generation's mix used: its recipe's `mix_space`, or "image" for recipes older than
    the field (every mix was summed in image space then)."""
    space = params.get("mix_space")
    return space if isinstance(space, str) and space in MIX_SPACES else "image"


GUIDANCE_SEMANTICS = "thesis_total_pull"
"""What `image_guidance_scale` means (model/guidance.py), recorded in every recipe's params as
`image_guidance_semantics`. Recipes without it are older: their scale was the per-step pull itself."""
MAX_IMAGE_SEED = MAX_SEED + MAX_IMAGES - 1
"""Image i of a request uses seed + i, so an image's own seed may pass MAX_SEED by up to MAX_IMAGES - 1."""

_ALLOWED_CONTROLS = {"\n", "\r", "\t"}
BIDI_CONTROLS = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
"""Unicode's embedding, override and isolate controls: they reorder how text around them is shown (a comment
that reads differently from what it says); other format characters (ZWJ in emoji) stay allowed."""


def bidi_control_in(value: str) -> str | None:
    """The first bidirectional control character in `value`, or None."""
    return next((ch for ch in value if ch in BIDI_CONTROLS), None)


@dataclass(frozen=True)
class RequestField:
    """One request field. ``low``/``high`` bound numbers (inclusive), ``max_length`` texts and lists."""

    name: str
    kind: type
    help: str
    default: object = None
    """None: the model's default (a random seed for `seed`)."""
    low: float | None = None
    high: float | None = None
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    ui_span: tuple[float, float] | None = None
    """The span a UI slider shows when the full range would be unwieldy (typed values are still checked)."""
    ui_default: float | None = None
    """Where a UI control starts when that differs from ``default`` (the value an absent field takes)."""

    @property
    def slider_span(self) -> tuple[float, float]:
        """The span a UI slider shows: `ui_span` when set, else the declared range."""
        low, high = self.ui_span or (self.low, self.high)
        if low is None or high is None:
            raise ValueError(f"{self.name} has no numeric range to show")
        return low, high

    @property
    def ui_start(self) -> int | float:
        """Where a UI control starts: `ui_default` when set, else the declared default."""
        return self.ui_default if self.ui_default is not None else self.number_default

    @property
    def number_default(self) -> int | float:
        """The declared default of a numeric field (for a UI control's initial value)."""
        if not isinstance(self.default, int | float):
            raise ValueError(f"{self.name} has no numeric default")
        return self.default

    def describe(self) -> str:
        """The rule in words, as docs/LIMITS.md states it."""
        if self.choices:
            return ", ".join(f"`{choice}`" for choice in self.choices)
        if self.max_length is not None:
            return f"at most {self.max_length}"
        if self.low is None or self.high is None:
            return "-"
        return f"{_number(self.low)}..{_number(self.high)}"


def _number(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


FIELDS: dict[str, RequestField] = {
    field.name: field
    for field in (
        RequestField(
            "prompt",
            str,
            "What to draw; may be empty when `mix` is given",
            default="",
            max_length=MAX_TEXT_CHARS,
        ),
        RequestField(
            "negative_prompt", str, "What to steer away from", default="", max_length=MAX_TEXT_CHARS
        ),
        RequestField(
            "seed",
            int,
            "Seed of the first image, image i uses seed + i (absent: random)",
            low=0,
            high=MAX_SEED,
        ),
        RequestField("steps", int, "Denoising steps (absent: the model's default)", low=1, high=MAX_STEPS),
        RequestField(
            "guidance_scale",
            float,
            "Classifier-free guidance scale; at or below 1 means none (absent: the model's default)",
            low=0.0,
            high=MAX_GUIDANCE,
        ),
        RequestField(
            "width",
            int,
            "Image width in pixels, a size the model makes (absent: the model's default)",
            low=MIN_SIDE,
            high=MAX_SIDE,
        ),
        RequestField(
            "height",
            int,
            "Image height in pixels, a size the model makes (absent: the model's default)",
            low=MIN_SIDE,
            high=MAX_SIDE,
        ),
        RequestField("num_images", int, "How many images to make", default=1, low=1, high=MAX_IMAGES),
        RequestField(
            "scheduler",
            str,
            "The sampler: ddpm, ddim, dpmpp or the model's own (absent: the model's default)",
            max_length=MAX_SCHEDULER_CHARS,
        ),
        RequestField(
            "candidates",
            int,
            "Starting noises per image; the model's verifier finishes the one that best shows the prompt. "
            "More draw the asked shape more often; 1 is fastest. Mixes and guided images use one.",
            low=1,
            high=MAX_CANDIDATES,
        ),
        RequestField("guidance_image", int, "An upload id: the reference image that steers every step"),
        RequestField(
            "image_guidance_scale",
            float,
            "How far the steps pull the picture toward the guidance image in total, the same at any step "
            "count: 0.1 a hint of it, 0.25 its layout, 0.5 (the thesis with linear decay) its layout and "
            "colours, 1 the thesis's full pull, all but the reference itself",
            default=0.0,
            low=0.0,
            high=1.0,
            ui_span=(0.0, 0.5),
            ui_default=0.25,
        ),
        RequestField(
            "image_guidance_decay",
            str,
            "How the pull toward the guidance image fades over the steps",
            default="none",
            choices=DECAYS,
        ),
        RequestField(
            "mix",
            list,
            "Texts or uploads added to the prompt's embedding with signed weights",
            max_length=MAX_INGREDIENTS,
        ),
        RequestField(
            "mix.weight",
            float,
            "The ingredient's signed weight",
            default=1.0,
            low=-MAX_MIX_WEIGHT,
            high=MAX_MIX_WEIGHT,
            ui_span=(-2.0, 2.0),
        ),
        RequestField("mix.text", str, "A text ingredient", max_length=MAX_TEXT_CHARS),
        RequestField(
            "mix_space",
            str,
            "Where texts are mixed: text (their CLIP text embeddings, before one prior call; the reliable "
            "arithmetic) or image (each text through the prior alone, then summed); images mix in image space",
            default=DEFAULT_MIX_SPACE,
            choices=MIX_SPACES,
        ),
        RequestField(
            "upscale",
            bool,
            "Finish each picture with the model's upsampler (4x: 64 px pictures become 256 px); only for a "
            "model that has one",
            default=False,
        ),
        RequestField(
            "interpolation",
            float,
            "Slerp position between the two ingredients (a non-empty prompt counts as the first)",
            low=0.0,
            high=1.0,
        ),
    )
}


def model_bounds(info: ModelInfo) -> dict[str, tuple[int, int]]:
    """The hook through which a model narrows the declared ranges (never widens them)."""

    def narrowed(name: str, model_high: int) -> tuple[int, int]:
        declared = FIELDS[name]
        return int(declared.low or 0), min(int(declared.high or 0), model_high)

    return {
        "steps": narrowed("steps", info.max_steps),
        "num_images": narrowed("num_images", info.max_images),
        "candidates": narrowed("candidates", info.max_candidates),
    }


def text_problem(text: str) -> str | None:
    """Why a prompt or mix text is refused, or None. Prompts end up in PNG chunks, logs and HTML:
    control characters (other than tab, CR, LF), lone surrogates and bidirectional controls have no
    business there."""
    if len(text) > MAX_TEXT_CHARS:
        return f"is {len(text)} characters long; the limit is {MAX_TEXT_CHARS}"
    for ch in text:
        if ch not in _ALLOWED_CONTROLS and unicodedata.category(ch) in ("Cc", "Cs"):
            return f"contains the control character U+{ord(ch):04X}"
    control = bidi_control_in(text)
    if control:
        return f"contains the bidirectional control character U+{ord(control):04X}"
    return None


def ingredient_count(prompt: str, mix_count: int) -> int:
    """The ingredients the model blends: a non-empty prompt joins a non-empty mix as its first."""
    return mix_count + 1 if mix_count and prompt.strip() else mix_count


def interpolation_problem(prompt: str, mix_count: int) -> str | None:
    """Why interpolation cannot run on this prompt and mix, or None: it needs exactly two ends."""
    count = ingredient_count(prompt, mix_count)
    if count == 2:
        return None
    return f"needs exactly 2 ingredients (a non-empty prompt counts as one), got {count}"


EMPTY_REQUEST = "is empty; write a prompt or add mix ingredients"
