"""Load a model family from a local folder (or a model id already in the Hugging Face cache).

Layouts:
- a folder holding ``prior/`` and ``decoder/`` (Kandinsky 2.2; the embedded model), with an optional
  ``draftroom.json`` of defaults and an optional ``verifier/`` (which judges decoder candidates);
- a Stable Diffusion folder whose model_index.json names StableDiffusionPipeline or
  StableDiffusionXLPipeline, with optional ``ip_adapter/``;
- a Kandinsky 2.2 decoder from the cache whose model card names its prior (as the Hub's decoder does).
"""

from __future__ import annotations

from pathlib import Path

from model.families.base import BatchCancelled, BatchControl, Family, Row
from model.families.kandinsky22 import Kandinsky22Family, load_kandinsky22
from model.families.loading import (
    ModelLoadError,
    model_hash,
    model_index_class,
    pick_device,
    pick_dtype,
    read_settings,
    resolve_source,
)
from model.families.stable_diffusion import StableDiffusionFamily, load_stable_diffusion

__all__ = [
    "BatchCancelled", "BatchControl", "Family", "Kandinsky22Family", "ModelLoadError", "Row",
    "StableDiffusionFamily", "load_family",
]


def load_family(source: str | Path, *, device: str | None = None, dtype: str | None = None) -> Family:
    """Load the model at ``source`` on ``device`` (default: cuda, mps, cpu) in ``dtype`` (fp32 on CPU)."""
    root = resolve_source(source)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    settings = read_settings(root)
    name = settings.get("name") or (str(source) if not Path(source).expanduser().is_dir() else root.name)
    common = {"name": name, "path": str(root), "settings": settings, "device": torch_device, "dtype": torch_dtype}
    try:
        if (root / "prior").is_dir() and (root / "decoder").is_dir():
            verifier = root / "verifier" if (root / "verifier").is_dir() else None
            folders = [root / "prior", root / "decoder", *([verifier] if verifier else [])]
            return load_kandinsky22(root / "prior", root / "decoder", verifier_dir=verifier,
                                    model_hash=model_hash(folders, settings), **common)
        kind = model_index_class(root)
        if kind in ("StableDiffusionPipeline", "StableDiffusionXLPipeline"):
            return load_stable_diffusion(root, xl=kind == "StableDiffusionXLPipeline",
                                         model_hash=model_hash([root], settings), **common)
        if kind == "KandinskyV22Pipeline":
            prior = _prior_of(root)
            return load_kandinsky22(prior, root, model_hash=model_hash([prior, root], settings), **common)
    except (OSError, ValueError) as error:  # diffusers' errors for missing files / non-safetensors weights
        raise ModelLoadError(f"cannot load {source}: {error}") from error
    raise ModelLoadError(
        f"{source}: unknown layout; expected prior/ + decoder/ (Kandinsky 2.2) or a Stable Diffusion folder"
    )


def _prior_of(decoder: Path) -> Path:
    """The prior a cached Kandinsky 2.2 decoder names in its model card (``prior:`` in the front matter)."""
    from huggingface_hub import ModelCard

    card = decoder / "README.md"
    priors = ModelCard.load(card).data.to_dict().get("prior") if card.is_file() else None
    if not priors:
        raise ModelLoadError(f"{decoder} is a Kandinsky 2.2 decoder without a prior; give a folder with prior/ and decoder/")
    return resolve_source(priors[0] if isinstance(priors, list) else priors)
