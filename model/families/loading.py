"""Where a model comes from (a local folder, or a model id already in the Hugging Face cache), the device
it runs on, its hash, and its optional ``draftroom.json`` defaults."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_CHUNK = 1 << 20


class ModelLoadError(Exception):
    """The model folder is missing, of an unknown layout, or not loadable from safetensors."""


def resolve_source(source: str | Path) -> Path:
    """A local folder as is; else a Hub model id resolved in the local cache only (never downloads)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    if isinstance(source, str) and _REPO_ID.match(source):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(source, local_files_only=True))
        except LocalEntryNotFoundError as error:
            raise ModelLoadError(
                f"{source} is neither a folder nor a model in the local Hugging Face cache"
            ) from error
    raise ModelLoadError(f"model folder not found: {source}")


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device, else cuda, then mps, then cpu."""
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# draftroom.json settings that change what a request draws (the others are defaults a request records itself)
OUTPUT_SETTINGS = ("prior_steps", "prior_guidance", "prior_candidates", "candidate_pruning", "latent_range")


def model_hash(folders: Sequence[Path], settings: dict[str, Any] | None = None) -> str:
    """sha256 over the bytes of every .safetensors file in ``folders`` (a folder, or a single-file checkpoint), in
    order, each in sorted path order,
    then over the OUTPUT_SETTINGS present in ``settings``: equal hashes draw equal pictures from equal requests."""
    digest = hashlib.sha256()
    found = False
    for folder in folders:
        files = (
            [folder]
            if folder.is_file()
            else sorted(folder.rglob("*.safetensors"), key=lambda p: p.relative_to(folder).as_posix())
        )
        for file in files:
            found = True
            with file.open("rb") as stream:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
    if not found:
        raise ModelLoadError(f"no .safetensors weights under {', '.join(map(str, folders))}")
    present = settings or {}
    drawn = {key: present[key] for key in OUTPUT_SETTINGS if key in present}
    if drawn:
        digest.update(json.dumps(drawn, sort_keys=True).encode())
    return digest.hexdigest()


_SETTINGS_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "default_steps": (int,),
    "default_guidance": (int, float),
    "default_scheduler": (str,),
    "sizes": (list,),
    "prior_steps": (int,),
    "prior_guidance": (int, float),
    "prior_candidates": (int,),
    "decoder_candidates": (int,),
    "candidate_pruning": (list,),
    "latent_range": (int, float),
    "max_images": (int,),
    "max_size": (int,),
}

_COUNTS = ("default_steps", "prior_steps", "prior_candidates", "decoder_candidates", "max_images", "max_size")


def read_settings(root: Path) -> dict[str, Any]:
    """The model's own defaults from ``root/draftroom.json`` (all keys optional); {} when there is none."""
    file = root / "draftroom.json"
    if not file.is_file():
        return {}
    try:
        settings = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{file}: {error}") from error
    if not isinstance(settings, dict):
        raise ModelLoadError(f"{file}: must hold a JSON object")
    for key, value in settings.items():
        types = _SETTINGS_TYPES.get(key)
        if types and (isinstance(value, bool) or not isinstance(value, types)):
            raise ModelLoadError(f"{file}: {key} must be {' or '.join(t.__name__ for t in types)}")
        if key in _COUNTS and value < 1:
            raise ModelLoadError(f"{file}: {key} must be at least 1")
    sizes = settings.get("sizes", [])
    if not all(
        isinstance(s, list) and len(s) == 2 and all(isinstance(v, int) and v > 0 for v in s) for s in sizes
    ):
        raise ModelLoadError(f"{file}: sizes must be a list of [width, height] pairs")
    return settings


def model_index_class(folder: Path) -> str | None:
    """The pipeline class a diffusers folder names in its model_index.json, if any."""
    index = folder / "model_index.json"
    if not index.is_file():
        return None
    try:
        return json.loads(index.read_text()).get("_class_name")
    except ValueError as error:
        raise ModelLoadError(f"{index}: {error}") from error
