"""python -m model.evaluate: does the model draw what held-out prompts ask for?

Prompts use phrasings never seen in training (the world's held-out templates). Every picture is judged by the
world's analyzer against the scene the prompt was written from: object colour, shape, background, position and
size, for each attribute the prompt states. Also reported: the CLIP score from our own encoder (100 x cosine of
the prompt's text embedding and the picture's image embedding), with the same score on the true pictures as a
reference ceiling. For single-object prompts it also breaks shape down: which shape was drawn for each shape
asked (a confusion table), and shape accuracy by the object's size, which is where a shape gap can be read.

With --upscale (a model with an upsampler/), every picture is also upsampled to 256 px and judged again (the
analyzer's accuracy must not fall), and the upsampler's PSNR against the world's own 256 px render of held-out
scenes is reported beside plain bicubic upscaling of the same 64 px renders.

`--unseen N` adds N single-object prompts in unseen words and phrasings (the world's "unseen" split: templates
and synonyms training never uses, opening words the vocabulary lacks), each judged the same way; the report
also counts how many of them hold a word the model's tokenizer does not know.

Only Kandinsky 2.2 folders (a prior and a decoder) can be evaluated: the CLIP score needs the prior's encoders.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import PIL.Image
import torch
import torch.nn.functional as F

from model.engine.engine_common import GenerationRequest
from model.engine.validation import resolve_request
from model.families import ModelLoadError, load_family
from model.families.base import Row
from model.families.kandinsky22 import Kandinsky22Family
from model.train.images import grid
from model.train.upsampler import heldout_psnr
from model.world import ATTRIBUTES, SHAPES, SIZES, Scene, heldout_prompts, render_image, score
from model.world.analyzer import Analysis, analyze

DEFAULT_MODEL = Path(__file__).resolve().parent / "weights" / "embedded"


def generate(
    family: Kandinsky22Family,
    prompts: list[str],
    seed: int,
    steps: int | None,
    guidance: float | None,
    scheduler: str | None,
    candidates: int | None = None,
) -> list:
    """The product's own path: the request is resolved as the engine resolves it, then one batch of rows."""
    rows = [
        Row(
            resolve_request(
                GenerationRequest(
                    prompt=p,
                    seed=seed + i,
                    steps=steps,
                    guidance_scale=guidance,
                    scheduler=scheduler,
                    candidates=candidates,
                ),
                family.info,
            )
        )
        for i, p in enumerate(prompts)
    ]
    return family.generate(rows)


@torch.no_grad()
def clip_score(family: Kandinsky22Family, prompts: list[str], images: list[PIL.Image.Image]) -> float:
    """Mean 100 x cosine of text and image embeddings, through the prior's own tokenizer, processor and encoders."""
    text, image = family.embed_texts(prompts), family.embed_images(images)
    return 100 * F.cosine_similarity(text.float(), image.float()).mean().item()


def shape_breakdown(scenes: list[Scene], analyses: list[Analysis]) -> dict:
    """Single-object scenes: the shape drawn (largest object, or "none") per shape asked, and shape accuracy by size."""
    confusion = {asked: dict.fromkeys((*SHAPES, "none"), 0) for asked in SHAPES}
    by_size = {size: [0, 0] for size in SIZES}
    for scene, analysis in zip(scenes, analyses, strict=True):
        asked = scene.objects[0]
        drawn = analysis.objects[0].shape if analysis.objects else "none"
        confusion[asked.shape][drawn] += 1
        by_size[asked.size][0] += drawn == asked.shape
        by_size[asked.size][1] += 1
    return {
        "shape_confusion": {asked: row for asked, row in confusion.items() if any(row.values())},
        "shape_by_size": {size: round(hit / total, 3) for size, (hit, total) in by_size.items() if total},
    }


def accuracy(pairs: list, images: list[PIL.Image.Image]) -> tuple[dict[str, float], list[Analysis]]:
    """The analyzer's hit rate per attribute the prompts state, and its reading of each picture."""
    tallies = {a: [0, 0] for a in (*ATTRIBUTES, "all")}
    analyses = [analyze(image) for image in images]
    for (scene, caption), analysis in zip(pairs, analyses, strict=True):
        for attribute, ok in score(scene, caption, analysis).items():
            tallies[attribute][0] += ok
            tallies[attribute][1] += 1
    return {a: round(hit / total, 3) for a, (hit, total) in tallies.items() if total}, analyses


def upsampler_psnr(family: Kandinsky22Family, n: int) -> dict[str, float]:
    """PSNR (dB) against the world's 256 px render of n held-out scenes: the upsampler on their 64 px renders,
    and plain bicubic upscaling of the same renders."""
    assert family.upsampler is not None
    metrics, _ = heldout_psnr(family.upsampler, family.upsampler.device, n)
    return {key: round(value, 2) for key, value in metrics.items()} | {"scenes": n}


def evaluate(
    family: Kandinsky22Family,
    n: int,
    two: int,
    steps: int | None = None,
    guidance: float | None = None,
    scheduler: str | None = None,
    batch: int = 32,
    sheet: Path | None = None,
    candidates: int | None = None,
    upscale: bool = False,
    unseen: int = 0,
) -> dict:
    report: dict = {}
    sets = (
        ("one object", n, False, "heldout"),
        ("two objects", two, True, "heldout"),
        ("unseen words, one object", unseen, False, "unseen"),
    )
    for label, count, two_objects, split in sets:
        if count == 0:
            continue
        pairs = heldout_prompts(10_000 + two_objects, count, two_objects=two_objects, split=split)
        images, started = [], time.perf_counter()
        for start in range(0, count, batch):
            chunk = pairs[start : start + batch]
            images += generate(
                family, [c.text for _, c in chunk], start, steps, guidance, scheduler, candidates
            )
        seconds = time.perf_counter() - started
        hits, analyses = accuracy(pairs, images)
        prompts = [c.text for _, c in pairs]
        scenes = [scene for scene, _ in pairs]
        report[label] = {
            **hits,
            "clip_score": round(clip_score(family, prompts, images), 2),
            "clip_score_true_pictures": round(
                clip_score(family, prompts, [render_image(s) for s in scenes]), 2
            ),
            "prompts": count,
            **(
                {"prompts_with_unknown_words": sum(bool(family.unknown_words(p)) for p in prompts)}
                if split == "unseen"
                else {}
            ),
            "seconds_per_image": round(seconds / count, 4),
            **({} if two_objects else shape_breakdown(scenes, analyses)),
        }
        if upscale:  # the seeds the engine gives these rows, so these are the pictures `upscale` stores
            started = time.perf_counter()
            upscaled = []
            for start in range(0, count, batch):
                chunk_images = images[start : start + batch]
                upscaled += family.upscale(chunk_images, list(range(start, start + len(chunk_images))))
            upscale_s = time.perf_counter() - started
            report[f"{label}, upscaled"] = {
                **accuracy(pairs, upscaled)[0],
                "prompts": count,
                "seconds_per_image": round(upscale_s / count, 4),
            }
        if sheet is not None:
            name = f"{sheet.stem}_{label.replace(' ', '_')}{sheet.suffix or '.png'}"
            grid(images[:64], 8).save(sheet.with_name(name))
            if upscale:
                grid(upscaled[:16], 4).save(sheet.with_name(name.replace(".png", "_upscaled.png")))
    if upscale:
        report["upsampler_psnr"] = upsampler_psnr(family, min(n, 64))
    return report


def print_table(report: dict) -> None:
    columns = [
        *ATTRIBUTES,
        "all",
        "clip_score",
        "clip_score_true_pictures",
        "prompts",
        "prompts_with_unknown_words",
    ]
    print("| prompts | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for label, row in report.items():
        if label == "upsampler_psnr":
            continue
        print(f"| {label} | " + " | ".join(str(row.get(c, "-")) for c in columns) + " |")
    psnr = report.get("upsampler_psnr")
    if psnr:
        print(
            f"\nupsampler against the world's 256 px render of {psnr['scenes']} held-out scenes: "
            f"PSNR {psnr['psnr_upsampler']} dB, plain bicubic {psnr['psnr_bicubic']} dB"
        )
    for label, row in report.items():
        if "shape_confusion" not in row:
            continue
        drawn = [*SHAPES, "none"]
        print(f"\n{label}: shape asked (rows) against shape drawn (columns)\n")
        print("| asked | " + " | ".join(drawn) + " | right |")
        print("|---" * (len(drawn) + 2) + "|")
        for asked, counts in row["shape_confusion"].items():
            right = counts[asked] / sum(counts.values())
            print(f"| {asked} | " + " | ".join(str(counts[d]) for d in drawn) + f" | {right:.2f} |")
        print(
            f"\n{label}: shape right by size: "
            + ", ".join(f"{size} {share}" for size, share in row["shape_by_size"].items())
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m model.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--prompts", type=int, default=200, help="single-object prompts")
    parser.add_argument("--two-object-prompts", type=int, default=100)
    parser.add_argument(
        "--unseen", type=int, default=100, help="single-object prompts in unseen words and phrasings"
    )
    parser.add_argument("--steps", type=int, default=None, help="decoder steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's)")
    parser.add_argument("--scheduler", default=None, help="ddim, ddpm, dpmpp (default: the model's)")
    parser.add_argument(
        "--prior-candidates",
        type=int,
        default=None,
        help="prior samples per prompt, the one nearest the prompt kept (default: the model's)",
    )
    parser.add_argument(
        "--decoder-candidates",
        type=int,
        default=None,
        help="starting noises per picture, the one the model's verifier judges best finished "
        "(default: the model's; above 1 needs a verifier)",
    )
    parser.add_argument(
        "--upscale",
        action="store_true",
        help="also judge every picture upsampled to 256 px, and report the upsampler's PSNR (needs a model "
        "with an upsampler/)",
    )
    parser.add_argument("--device", default=None, help="default: cuda, then mps, then cpu")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--sheet", type=Path, help="save contact sheets as SHEET_one_object.png etc.")
    args = parser.parse_args(argv)
    for flag in ("prior_candidates", "decoder_candidates"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    try:
        family = load_family(args.model, device=args.device)
    except ModelLoadError as error:
        parser.error(str(error))
    if not isinstance(family, Kandinsky22Family):
        parser.error(
            f"{args.model} is a {family.info.family} folder; only Kandinsky 2.2 folders (a prior and a "
            "decoder) can be evaluated, because the CLIP score needs the prior's encoders"
        )
    if args.upscale and family.upsampler is None:
        parser.error(f"{args.model} has no upsampler/, so --upscale has nothing to measure")
    if args.prior_candidates is not None:
        family.prior_candidates = args.prior_candidates
    info = family.info
    candidates = info.default_candidates if args.decoder_candidates is None else args.decoder_candidates
    if candidates > info.max_candidates:
        parser.error(
            f"{args.model} has no verifier/ to judge decoder candidates"
            if info.max_candidates == 1
            else f"--decoder-candidates must be at most {info.max_candidates}"
        )
    report = evaluate(
        family,
        args.prompts,
        args.two_object_prompts,
        args.steps,
        args.guidance,
        args.scheduler,
        sheet=args.sheet,
        candidates=candidates,
        upscale=args.upscale,
        unseen=args.unseen,
    )
    report["settings"] = {
        "steps": args.steps or info.default_steps,
        "guidance": args.guidance or info.default_guidance,
        "scheduler": args.scheduler or info.default_scheduler,
        "prior_candidates": family.prior_candidates,
        "decoder_candidates": candidates,
        "device": info.device,
        "model": info.name,
        "model_hash": info.hash,
    }
    print_table({k: v for k, v in report.items() if k != "settings"})
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
