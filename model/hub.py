"""Real models kept in ``<data-dir>/models/NAME``: pulled from the Hugging Face Hub (diffusers format,
safetensors only), listed, removed, and found again by name for ``serve --model NAME``.

Downloads go through ``huggingface_hub.snapshot_download`` into the model's folder: its progress bar, its
resume of a dropped connection by range request, its skipping of files already fetched (so a second ``pull``
finishes a failed one), and ``HF_ENDPOINT``/``HF_TOKEN``.
Only configs, tokenizer files and full-precision ``.safetensors`` weights are fetched; a repo whose weights are
pickle only (``.bin``/``.ckpt``/``.pt``) is refused before any weight is downloaded, since loading pickle runs code.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.engine.engine_common import ModelInfo

MODELS_DIR = "models"
# name -> {subfolder: repo}: models that need several repos, pulled into one folder in model.families' layout
ALIASES: dict[str, dict[str, str]] = {
    "kandinsky-2.2": {
        "prior": "kandinsky-community/kandinsky-2-2-prior",
        "decoder": "kandinsky-community/kandinsky-2-2-decoder",
    },
}
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
CONFIG_SUFFIXES = (".json", ".txt", ".model")  # configs, tokenizer vocab/merges, sentencepiece models
_NAME = re.compile(r"^\w[\w.-]*$")
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")


class HubError(Exception):
    """A pull, remove or lookup that cannot be done; the message says why."""


@dataclass(frozen=True)
class LocalModel:
    """A model folder (or single-file checkpoint) under ``<data-dir>/models``."""

    name: str
    path: Path
    size_bytes: int
    family: str | None  # None: not a layout model.families can load


def models_dir(data_dir: Path) -> Path:
    """Where pulled models live."""
    return data_dir / MODELS_DIR


def default_name(repo_or_alias: str) -> str:
    """The folder name a pull uses without ``--name``: the alias, else the repo's own name."""
    return repo_or_alias if repo_or_alias in ALIASES else repo_or_alias.rsplit("/", 1)[-1]


def select_files(repo_id: str, files: Sequence[str]) -> list[str]:
    """The files of a diffusers repo worth fetching: configs, tokenizer files and, per component folder, its
    full-precision ``.safetensors`` weights (not the fp16/ema variant copies, nor single-file checkpoints kept
    at the repo's root). Refuses a repo that is not diffusers-format or whose weights are pickle only."""
    if "model_index.json" not in files:
        raise HubError(f"{repo_id} has no model_index.json: not a diffusers-format model")
    chosen = [f for f in files if f.endswith(CONFIG_SUFFIXES) and not f.startswith(".")]
    weights_by_folder: dict[str, list[str]] = {}
    for file in files:
        if "/" in file and file.endswith(WEIGHT_SUFFIXES):
            weights_by_folder.setdefault(file.rsplit("/", 1)[0], []).append(file)
    if not weights_by_folder:
        raise HubError(f"{repo_id} has no weights in component folders")
    refused = []
    for folder, weights in sorted(weights_by_folder.items()):
        full = [w for w in weights if w.endswith(".safetensors") and not _is_variant(w)]
        if not full:
            refused.append(f"{folder}/ ({', '.join(sorted(w.rsplit('/', 1)[1] for w in weights))})")
        chosen += full
    if refused:
        raise HubError(
            f"{repo_id}: no full-precision .safetensors weights in {'; '.join(refused)}. Draftroom loads "
            "safetensors only: pickle weights (.bin/.ckpt/.pt) can run code when loaded"
        )
    return sorted(chosen)


def _is_variant(file: str) -> bool:
    """``diffusion_pytorch_model.fp16.safetensors`` (and its shards) is a variant copy; the plain name is not."""
    stem = _SHARD.sub("", file.rsplit("/", 1)[-1].removesuffix(".safetensors"))
    return "." in stem


def pull(repo_or_alias: str, data_dir: Path, *, revision: str | None = None, name: str | None = None) -> Path:
    """Download a diffusers-format model (or an alias's repos) into ``<data-dir>/models/NAME``; returns the folder.

    Every repo's file list is checked before any file is fetched. Rerunning a pull resumes or updates it."""
    from huggingface_hub import HfApi, snapshot_download

    if repo_or_alias in ALIASES and revision is not None:
        raise HubError(
            f"--revision: {repo_or_alias} is an alias for several repos; pull them one by one instead"
        )
    target = _model_path(data_dir, name or default_name(repo_or_alias))
    parts = ALIASES.get(repo_or_alias) or {"": repo_or_alias}
    api = HfApi()
    plans = []
    for subfolder, repo_id in parts.items():
        info = api.model_info(repo_id, revision=revision)
        files = select_files(repo_id, [sibling.rfilename for sibling in info.siblings or []])
        plans.append((target / subfolder, repo_id, info.sha, files))
    for folder, repo_id, commit, files in plans:
        print(f"pulling {repo_id} ({len(files)} files) into {folder}", flush=True)
        snapshot_download(repo_id, revision=commit, local_dir=folder, allow_patterns=files)
    return target


def _model_path(data_dir: Path, name: str) -> Path:
    """``<data-dir>/models/NAME`` for a plain folder name (no separators, no ``..``)."""
    if not _NAME.match(name):
        raise HubError(f"NAME: {name!r} is not a plain folder name (letters, digits, '.', '-', '_')")
    return models_dir(data_dir) / name


def folder_size(path: Path) -> int:
    """Bytes of a model's files, without huggingface_hub's ``.cache`` (download metadata, partial files)."""
    if path.is_file():
        return path.stat().st_size
    return sum(
        f.stat().st_size for f in path.rglob("*") if f.is_file() and ".cache" not in f.relative_to(path).parts
    )


def list_models(data_dir: Path) -> list[LocalModel]:
    """The folders and ``.safetensors`` checkpoints under ``<data-dir>/models``, by name."""
    root = models_dir(data_dir)
    if not root.is_dir():
        return []
    return [
        LocalModel(entry.name, entry, folder_size(entry), _family(entry))
        for entry in sorted(root.iterdir())
        if entry.is_dir() or entry.suffix == ".safetensors"
    ]


def _family(path: Path) -> str | None:
    from model.families import ModelLoadError, family_of

    try:
        return family_of(path)
    except ModelLoadError:  # a broken model_index.json: listed, as a layout that does not load
        return None


def remove(name: str, data_dir: Path) -> Path:
    """Delete ``<data-dir>/models/NAME``; refuses anything that resolves outside the models folder."""
    root = models_dir(data_dir).resolve()
    path = _model_path(data_dir, name)
    if path.is_symlink() or path.resolve().parent != root:
        raise HubError(f"NAME: {name} is not inside {root}")
    if path.is_dir():
        shutil.rmtree(path)
    elif path.is_file():
        path.unlink()
    else:
        raise HubError(f"NAME: no model {name!r} in {root}")
    return path


def resolve_model(value: str | Path, data_dir: Path) -> Path:
    """``serve --model``: an existing folder or ``.safetensors`` file, else a model's name under
    ``<data-dir>/models``."""
    path = Path(value).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix == ".safetensors"):
        return path
    if _NAME.match(str(value)):
        named = models_dir(data_dir) / str(value)
        if named.is_dir() or named.is_file():
            return named
    raise HubError(
        f"no model folder or .safetensors file at {value}, and no model named so in {models_dir(data_dir)}"
    )


def served_model_summary(info: ModelInfo, data_dir: Path) -> dict[str, Any]:
    """What an admin view shows: the served model and the models available to serve."""
    return {
        "served": {
            "name": info.name,
            "family": info.family,
            "hash": info.hash,
            "device": info.device,
            "dtype": info.dtype,
        },
        "available": [
            {"name": m.name, "family": m.family, "size_bytes": m.size_bytes, "path": str(m.path)}
            for m in list_models(data_dir)
        ],
    }
