"""Load a model family from a local folder (or a model id already in the Hugging Face cache).

Layouts:
- a folder holding ``prior/`` and ``decoder/`` (Kandinsky 2.2; the embedded model), with an optional
  ``draftroom.json`` of defaults, an optional ``verifier/`` (which judges decoder candidates) and an optional
  ``upsampler/`` (64 -> 256 px, for requests that ask to ``upscale``);
- a Stable Diffusion folder whose model_index.json names StableDiffusionPipeline or
  StableDiffusionXLPipeline, with optional ``ip_adapter/``;
- a Kandinsky 2.2 decoder from the cache whose model card names its prior (as the Hub's decoder does);
- a single-file SD 1.x or SDXL ``.safetensors`` checkpoint (AUTOMATIC1111/ComfyUI layout), see ``single_file``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.device_options import DeviceOptions
from model.families.base import BatchCancelled, BatchControl, Family, Row
from model.families.kandinsky22 import FAMILY as KANDINSKY22
from model.families.kandinsky22 import Kandinsky22Family, load_kandinsky22
from model.families.loading import (
    ModelLoadError,
    model_hash,
    model_index_class,
    pick_device,
    read_settings,
    resolve_source,
)
from model.families.runtime import check_device_options, pick_dtype
from model.families.single_file import load_single_file, single_file_family
from model.families.stable_diffusion import (
    FAMILY_SD,
    FAMILY_SDXL,
    StableDiffusionFamily,
    load_stable_diffusion,
)

__all__ = [
    "BatchCancelled",
    "BatchControl",
    "DeviceOptions",
    "Family",
    "Kandinsky22Family",
    "ModelLoadError",
    "Row",
    "StableDiffusionFamily",
    "family_of",
    "load_family",
]

_PIPELINE_FAMILIES = {
    "StableDiffusionPipeline": FAMILY_SD,
    "StableDiffusionXLPipeline": FAMILY_SDXL,
    "KandinskyV22Pipeline": KANDINSKY22,
}


def family_of(source: Path) -> str | None:
    """The family a folder (or single-file checkpoint) holds, read from its layout without loading it."""
    if source.is_file():
        return single_file_family(source) if source.suffix == ".safetensors" else None
    if (source / "prior").is_dir() and (source / "decoder").is_dir():
        return KANDINSKY22
    return _PIPELINE_FAMILIES.get(model_index_class(source) or "")


def load_family(
    source: str | Path,
    *,
    device: str | None = None,
    dtype: str | None = None,
    options: DeviceOptions | None = None,
) -> Family:
    """Load the model at ``source`` on ``device`` (default: cuda, mps, cpu) in ``dtype`` (a runtime.DTYPES name;
    default fp16 on a GPU, fp32 on CPU), run as ``options`` say (compile, channels_last, CPU offload)."""
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    options = options or DeviceOptions()
    check_device_options(torch_device, options)
    if Path(source).expanduser().is_file():
        return load_single_file(
            Path(source).expanduser().resolve(), device=torch_device, dtype=torch_dtype, options=options
        )
    root = resolve_source(source)
    settings = read_settings(root)
    name = settings.get("name") or (str(source) if not Path(source).expanduser().is_dir() else root.name)
    common: dict[str, Any] = {
        "name": name,
        "path": str(root),
        "settings": settings,
        "device": torch_device,
        "dtype": torch_dtype,
        "options": options,
    }
    family = family_of(root)
    try:
        if family in (FAMILY_SD, FAMILY_SDXL):
            return load_stable_diffusion(
                root, xl=family == FAMILY_SDXL, model_hash=model_hash([root], settings), **common
            )
        if family == KANDINSKY22 and (root / "prior").is_dir():
            verifier, upsampler = (root / part if (root / part).is_dir() else None for part in PARTS)
            folders = [root / "prior", root / "decoder", *(part for part in (verifier, upsampler) if part)]
            return load_kandinsky22(
                root / "prior",
                root / "decoder",
                verifier_dir=verifier,
                upsampler_dir=upsampler,
                model_hash=model_hash(folders, settings),
                **common,
            )
        if family == KANDINSKY22:  # a decoder alone, from the cache: its model card names the prior
            prior = _prior_of(root)
            return load_kandinsky22(prior, root, model_hash=model_hash([prior, root], settings), **common)
    except (OSError, ValueError) as error:  # diffusers' errors for missing files / non-safetensors weights
        raise ModelLoadError(f"cannot load {source}: {error}") from error
    raise ModelLoadError(
        f"{source}: unknown layout; expected prior/ + decoder/ (Kandinsky 2.2), a Stable Diffusion folder "
        "or a single-file .safetensors checkpoint"
    )


PARTS = ("verifier", "upsampler")
"""The embedded model's optional folders beside prior/ and decoder/."""


def _prior_of(decoder: Path) -> Path:
    """The prior a cached Kandinsky 2.2 decoder names in its model card (``prior:`` in the front matter)."""
    from huggingface_hub import ModelCard

    card = decoder / "README.md"
    priors = ModelCard.load(card).data.to_dict().get("prior") if card.is_file() else None
    if not priors:
        raise ModelLoadError(
            f"{decoder} is a Kandinsky 2.2 decoder without a prior; give a folder with prior/ and decoder/"
        )
    return resolve_source(priors[0] if isinstance(priors, list) else priors)
