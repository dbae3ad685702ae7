"""python -m model generate ...: make images with the shared engine from the command line.

Writes DIR/000.png, 001.png, ... (each carrying its recipe in PNG metadata, as the studio's images do) and
DIR/meta.json with one record per image: every parameter, the image's seed, the model's name and hash, and
the model time. Bad input exits with status 2 and one line naming the field.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import PIL.Image

from model.device_options import add_device_arguments, device_options
from model.engine.engine_common import GenerationRequest, GenerationResult, MixIngredient, RequestError
from model.engine.request_fields import DECAYS, DEFAULT_MIX_SPACE, FIELDS, MIX_SPACES

DEFAULT_MODEL = Path(__file__).resolve().parent / "weights" / "embedded"


class _InputError(Exception):
    """A command-line value that cannot become a request (unreadable file, malformed --mix)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="generate images into a folder")
    gen.add_argument("--prompt", default="", help="the text prompt (optional when --mix is given)")
    gen.add_argument("--negative", default="", help="negative prompt")
    gen.add_argument(
        "--seed", type=int, help="seed of the first image (image i uses seed + i); random if absent"
    )
    gen.add_argument("--steps", type=int, help="denoising steps (model default if absent)")
    gen.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    gen.add_argument("--num-images", type=int, default=1)
    gen.add_argument("--width", type=int)
    gen.add_argument("--height", type=int)
    gen.add_argument("--scheduler", help="ddpm, ddim, dpmpp, or the model's own")
    gen.add_argument(
        "--candidates",
        type=int,
        help="starting noises per image, the verifier's pick finished (model default if absent; "
        "1 is fastest; above 1 needs a model with a verifier)",
    )
    gen.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help=f"model folder (default {DEFAULT_MODEL})"
    )
    gen.add_argument("--out", type=Path, required=True, help="output folder")
    gen.add_argument("--guidance-image", type=Path, help="reference image that steers every step")
    gen.add_argument(
        "--image-guidance-scale",
        type=float,
        default=None,
        help="total pull toward the reference, 0..1, the same at any step count "
        f"(default {FIELDS['image_guidance_scale'].ui_default} with --guidance-image)",
    )
    gen.add_argument("--image-guidance-decay", choices=DECAYS, default="none")
    gen.add_argument(
        "--image-guidance-noised",
        action="store_true",
        help="pull toward the reference noised to each step's level",
    )
    gen.add_argument(
        "--mix",
        action="extend",
        nargs="+",
        default=[],
        metavar="SPEC=WEIGHT",
        help="texts or image paths, each with a signed weight (--mix red=-1 blue=1); repeatable",
    )
    gen.add_argument("--interpolation", type=float, help="slerp position between two ingredients, 0..1")
    gen.add_argument("--no-renormalize", action="store_true", help="keep the mix's raw norm")
    gen.add_argument("--upscale", action="store_true", help=FIELDS["upscale"].help)
    gen.add_argument(
        "--mix-space", choices=MIX_SPACES, default=DEFAULT_MIX_SPACE, help=FIELDS["mix_space"].help
    )
    gen.add_argument("--dynamic-thresholding", action="store_true")
    add_device_arguments(gen)
    return parser


def _open_image(path: Path, option: str) -> PIL.Image.Image:
    try:
        with PIL.Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, PIL.Image.DecompressionBombError) as error:
        raise _InputError(f"{option}: cannot read image {path}: {error}") from error


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _parse_mix(specs: list[str]) -> tuple[tuple[MixIngredient, ...], list[dict[str, Any]]]:
    """--mix values as ingredients, plus how each was given (text, or image path and file hash)."""
    ingredients, described = [], []
    for spec in specs:
        text, sep, weight_text = spec.rpartition("=")
        try:
            weight = float(weight_text)
        except ValueError:
            weight = None
        if not sep or not text or weight is None:
            raise _InputError(f"--mix: {spec!r} must be SPEC=WEIGHT, e.g. red=-1 or ref.png=0.5")
        path = Path(text)
        if path.is_file():
            ingredients.append(MixIngredient(weight=weight, image=_open_image(path, "--mix")))
            described.append({"weight": weight, "image": str(path), "upload_sha256": _file_sha256(path)})
        else:
            ingredients.append(MixIngredient(weight=weight, text=text))
            described.append({"weight": weight, "text": text})
    return tuple(ingredients), described


def _request(args: argparse.Namespace) -> tuple[GenerationRequest, dict[str, Any]]:
    mix, described = _parse_mix(args.mix)
    guidance_image = _open_image(args.guidance_image, "--guidance-image") if args.guidance_image else None
    scale = args.image_guidance_scale
    if scale is None:
        declared = FIELDS["image_guidance_scale"]
        scale = declared.ui_default if guidance_image is not None else declared.default
    request = GenerationRequest(
        prompt=args.prompt,
        negative_prompt=args.negative,
        seed=args.seed,
        steps=args.steps,
        guidance_scale=args.guidance,
        width=args.width,
        height=args.height,
        num_images=args.num_images,
        scheduler=args.scheduler,
        guidance_image=guidance_image,
        image_guidance_scale=scale,
        image_guidance_decay=args.image_guidance_decay,
        image_guidance_noised=args.image_guidance_noised,
        mix=mix,
        interpolation=args.interpolation,
        renormalize_mix=not args.no_renormalize,
        mix_space=args.mix_space,
        dynamic_thresholding=args.dynamic_thresholding,
        candidates=args.candidates,
        upscale=args.upscale,
        user="cli",
    )
    inputs: dict[str, Any] = {"mix": described}
    if args.guidance_image:
        inputs["guidance_image"] = {
            "path": str(args.guidance_image),
            "upload_sha256": _file_sha256(args.guidance_image),
        }
    return request, inputs


def _records(result: GenerationResult, inputs: dict[str, Any], model_hash_short: str) -> list[dict[str, Any]]:
    records = []
    for index, seed in enumerate(result.seeds):
        record = {
            "file": f"{index:03d}.png",
            "index": index,
            **result.params,
            "seed": seed,
            "first_seed": result.seed,
            "mix": inputs["mix"],
            "guidance_image": inputs.get("guidance_image"),
            "model_name": result.model_name,
            "model_hash": result.model_hash,
            "model_hash_short": model_hash_short,
            "model_s": round(result.model_s, 3),
            "queue_wait_s": round(result.queue_wait_s, 3),
        }
        records.append(record)
    return records


def _png(request: GenerationRequest, result: GenerationResult, record: dict[str, Any]) -> bytes:
    """Image ``record["index"]`` as PNG with its recipe (storage.metadata.image_recipe, as the studio writes it)."""
    from storage.metadata import encode_png, image_recipe

    guidance = record["guidance_image"]
    recipe = image_recipe(
        request,
        result,
        record["index"],
        model_hash=record["model_hash_short"],
        mix_sources=[item.get("upload_sha256") for item in record["mix"]],
        guidance_source=None if guidance is None else guidance["upload_sha256"],
        params={**result.params, "model_hash": record["model_hash"], "model_s": record["model_s"]},
    )
    return encode_png(result.images[record["index"]], recipe)


def generate(args: argparse.Namespace) -> int:
    from model.engine.engine_local import LocalEngine
    from model.families import ModelLoadError
    from model.families.kandinsky22 import MAX_CANDIDATES

    try:
        request, inputs = _request(args)
        rows = max(1, args.num_images) * (args.candidates or MAX_CANDIDATES)  # the job in one batch
        engine = LocalEngine.from_path(
            args.model, device=args.device, dtype=args.dtype, options=device_options(args), max_batch=rows
        )
    except (_InputError, ModelLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with engine:
        try:
            request = engine.validate(request)
            handle = engine.submit(request)
        except RequestError as error:
            print(f"error: {_option(error.field)}: {error.message}", file=sys.stderr)
            return 2
        handle.subscribe(lambda p: print(f"\rstep {p.step}/{p.total}", end="", file=sys.stderr, flush=True))
        result = handle.result()
    print(file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    records = _records(result, inputs, engine.model_info.short_hash)
    for record in records:
        (args.out / record["file"]).write_bytes(_png(request, result, record))
    (args.out / "meta.json").write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
    print(
        f"wrote {len(records)} image(s) to {args.out} ({result.model_name} {engine.model_info.short_hash}, "
        f"{result.model_s:.1f}s)"
    )
    return 0


_OPTIONS = {
    "negative_prompt": "--negative",
    "guidance_scale": "--guidance",
    "prompt": "--prompt",
    "steps": "--steps",
    "seed": "--seed",
    "width": "--width",
    "height": "--height",
    "num_images": "--num-images",
    "scheduler": "--scheduler",
    "guidance_image": "--guidance-image",
    "image_guidance_scale": "--image-guidance-scale",
    "image_guidance_decay": "--image-guidance-decay",
    "interpolation": "--interpolation",
    "mix_space": "--mix-space",
    "dynamic_thresholding": "--dynamic-thresholding",
    "candidates": "--candidates",
    "upscale": "--upscale",
}


def _option(field: str) -> str:
    """The command-line option behind a request field (mix[2].weight -> --mix #3 weight)."""
    if field.startswith("mix["):
        index, _, rest = field[4:].partition("]")
        return f"--mix #{int(index) + 1}{' ' + rest.lstrip('.') if rest else ''}"
    return _OPTIONS.get(field, field)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    args = build_parser().parse_args(argv)
    return generate(args)


if __name__ == "__main__":
    sys.exit(main())
