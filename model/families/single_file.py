"""Single-file Stable Diffusion 1.x and SDXL checkpoints: one ``.safetensors`` in the original (LDM) key layout,
as AUTOMATIC1111 and ComfyUI keep them.

They load through diffusers' ``from_single_file`` with ``config=`` one of the pipeline folders shipped in
``model/configs`` (JSON only), so nothing is fetched at load time. Those folders hold no CLIP vocabulary (3 MB
per tokenizer as vocab.json + merges.txt): the tokenizers are built from OpenAI CLIP's BPE merge list
(``model/configs/clip/bpe_simple_vocab_16e6.txt.gz``, 1.3 MB, MIT, as open_clip ships it), the file every
SD/SDXL tokenizer was converted from, with each folder's ``tokenizer*/tokenizer_config.json`` settings. A config
folder that carries its own tokenizer files (a diffusers model folder) is used as is.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from model.device_options import DeviceOptions
from model.families.loading import ModelLoadError, model_hash
from model.families.runtime import place
from model.families.stable_diffusion import FAMILY_SD, FAMILY_SDXL, StableDiffusionFamily

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CLIP_BPE = CONFIGS / "clip" / "bpe_simple_vocab_16e6.txt.gz"
CLIP_MERGES = 49152 - 256 - 2  # the merges CLIP uses: vocab = 256 bytes x2 (with </w>) + merges + 2 specials
# diffusers' model type of a checkpoint -> (shipped config folder, family)
CHECKPOINT_TYPES = {"v1": ("sd15", FAMILY_SD), "xl_base": ("sdxl", FAMILY_SDXL)}


def checkpoint_type(path: Path) -> str:
    """diffusers' name for the model in a single-file checkpoint ("v1", "xl_base", ...), read from its key
    names and shapes only (no tensor is loaded)."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from safetensors import SafetensorError, safe_open

    if path.suffix != ".safetensors":
        raise ModelLoadError(
            f"{path}: single-file checkpoints load from .safetensors only (pickle can run code)"
        )
    try:
        with safe_open(str(path), framework="pt") as checkpoint:
            shapes = {
                key: torch.empty(checkpoint.get_slice(key).get_shape(), device="meta")
                for key in checkpoint.keys()  # noqa: SIM118 - safe_open has keys(), not __iter__
            }
    except (OSError, SafetensorError) as error:
        raise ModelLoadError(f"{path}: not a readable .safetensors checkpoint: {error}") from error
    return str(infer_diffusers_model_type(shapes))


def single_file_family(path: Path) -> str | None:
    """The family of a single-file checkpoint Draftroom can load (SD 1.x, SDXL base), else None."""
    try:
        kind = checkpoint_type(path)
    except ModelLoadError:
        return None
    return CHECKPOINT_TYPES[kind][1] if kind in CHECKPOINT_TYPES else None


@cache
def _clip_vocabulary() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """CLIP's vocabulary and merges, built as OpenAI's SimpleTokenizer builds them from the BPE file."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    lines = gzip.decompress(CLIP_BPE.read_bytes()).decode("utf-8").split("\n")[1 : CLIP_MERGES + 1]
    merges = tuple((first, second) for first, second in (line.split() for line in lines))
    symbols = list(bytes_to_unicode().values())
    tokens = [
        *symbols,
        *(s + "</w>" for s in symbols),
        *("".join(m) for m in merges),
        "<|startoftext|>",
        "<|endoftext|>",
    ]
    return {token: index for index, token in enumerate(tokens)}, merges


def clip_tokenizer(settings: dict[str, Any]) -> CLIPTokenizer:
    """A CLIP tokenizer over the shipped BPE with ``settings`` (tokenizer_config.json: model_max_length, pad)."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocabulary()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), **settings)


def _tokenizers(config_dir: Path, names: tuple[str, ...]) -> dict[str, CLIPTokenizer]:
    """The tokenizers to pass to from_single_file: none when the config folder has its own vocabularies."""
    if all(
        any((config_dir / name / file).is_file() for file in ("vocab.json", "tokenizer.json"))
        for name in names
    ):
        return {}
    return {
        name: clip_tokenizer(json.loads((config_dir / name / "tokenizer_config.json").read_text()))
        for name in names
    }


def load_single_file(
    path: Path,
    *,
    device: torch.device,
    dtype: torch.dtype,
    options: DeviceOptions | None = None,
    config_dir: Path | None = None,
) -> StableDiffusionFamily:
    """Load an SD 1.x / SDXL single-file checkpoint with the shipped configs (or ``config_dir``)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    kind = checkpoint_type(path)
    if kind not in CHECKPOINT_TYPES:
        raise ModelLoadError(
            f"{path}: a {kind!r} checkpoint; single files load for SD 1.x and SDXL base only"
        )
    folder, family = CHECKPOINT_TYPES[kind]
    xl = family == FAMILY_SDXL
    config = config_dir or CONFIGS / folder
    cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    tokenizers = _tokenizers(config, ("tokenizer", "tokenizer_2") if xl else ("tokenizer",))
    try:
        pipe = cls.from_single_file(
            str(path), config=str(config), dtype=dtype, local_files_only=True, **tokenizers
        )
    except (OSError, ValueError, KeyError, RuntimeError, SingleFileComponentError) as error:  # keys/shapes
        raise ModelLoadError(
            f"cannot load {path} as {family}: {getattr(error, 'message', None) or error}"
        ) from error
    place(pipe, device, options or DeviceOptions())
    return StableDiffusionFamily(
        pipe,
        name=path.stem,
        path=str(path),
        model_hash=model_hash([path]),
        settings={},
        ip_adapter=False,
        device=device,
    )
