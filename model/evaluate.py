"""python -m model.evaluate: does the model draw what held-out prompts ask for?

Prompts use phrasings never seen in training (the world's held-out templates). Every picture is judged by the
world's analyzer against the scene the prompt was written from: object colour, shape, background, position and
size, for each attribute the prompt states. Also reported: the CLIP score from our own encoder (100 x cosine of
the prompt's text embedding and the picture's image embedding), with the same score on the true pictures as a
reference ceiling.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model.engine.engine_common import GenerationRequest
from model.engine.validation import resolve_request
from model.families import load_family
from model.families.base import Row
from model.families.kandinsky22 import Kandinsky22Family
from model.train.images import grid
from model.world import ATTRIBUTES, heldout_prompts, render_scenes, score
from model.world.analyzer import analyze

DEFAULT_MODEL = Path(__file__).resolve().parent / "weights" / "embedded"


def generate(family: Kandinsky22Family, prompts: list[str], seed: int, steps: int | None, guidance: float | None,
             scheduler: str | None) -> list:
    """The product's own path: the request is resolved as the engine resolves it, then one batch of rows."""
    rows = [Row(resolve_request(GenerationRequest(prompt=p, seed=seed + i, steps=steps, guidance_scale=guidance,
                                                  scheduler=scheduler), family.info)) for i, p in enumerate(prompts)]
    return family.generate(rows)


@torch.no_grad()
def clip_score(family: Kandinsky22Family, prompts: list[str], pixel_values: torch.Tensor) -> float:
    prior = family.prior
    ids = prior.tokenizer(prompts, padding="max_length", max_length=prior.tokenizer.model_max_length,
                          truncation=True, return_tensors="pt").input_ids.to(prior.device)
    text = prior.text_encoder(ids).text_embeds
    image = prior.image_encoder(pixel_values=pixel_values.to(prior.device, prior.image_encoder.dtype)).image_embeds
    return 100 * F.cosine_similarity(text.float(), image.float()).mean().item()


def evaluate(family: Kandinsky22Family, n: int, two: int, steps: int | None = None, guidance: float | None = None,
             scheduler: str | None = None, batch: int = 32, sheet: Path | None = None) -> dict:
    report: dict = {}
    for label, count, two_objects in (("one object", n, False), ("two objects", two, True)):
        if count == 0:
            continue
        pairs = heldout_prompts(10_000 + two_objects, count, two_objects=two_objects)
        tallies = {a: [0, 0] for a in (*ATTRIBUTES, "all")}
        images, started = [], time.perf_counter()
        for start in range(0, count, batch):
            chunk = pairs[start:start + batch]
            images += generate(family, [c.text for _, c in chunk], start, steps, guidance, scheduler)
        seconds = time.perf_counter() - started
        for (scene, caption), image in zip(pairs, images):
            for attribute, ok in score(scene, caption, analyze(image)).items():
                tallies[attribute][0] += ok
                tallies[attribute][1] += 1
        prompts = [c.text for _, c in pairs]
        generated = torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in images])
        truth, _ = render_scenes([s for s, _ in pairs])
        report[label] = {
            **{a: round(hit / total, 3) for a, (hit, total) in tallies.items() if total},
            "clip_score": round(clip_score(family, prompts, generated.float() / 127.5 - 1), 2),
            "clip_score_true_pictures": round(clip_score(family, prompts, truth), 2),
            "prompts": count,
            "seconds_per_image": round(seconds / count, 4),
        }
        if sheet is not None:
            name = f"{sheet.stem}_{label.replace(' ', '_')}{sheet.suffix or '.png'}"
            grid(images[:64], 8).save(sheet.with_name(name))
    return report


def print_table(report: dict) -> None:
    columns = [*ATTRIBUTES, "all", "clip_score", "clip_score_true_pictures", "prompts"]
    print("| prompts | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for label, row in report.items():
        print(f"| {label} | " + " | ".join(str(row.get(c, "-")) for c in columns) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--prompts", type=int, default=200, help="single-object prompts")
    parser.add_argument("--two-object-prompts", type=int, default=100)
    parser.add_argument("--steps", type=int, default=None, help="decoder steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's)")
    parser.add_argument("--scheduler", default=None, help="ddim, ddpm, dpmpp (default: the model's)")
    parser.add_argument("--device", default=None, help="default: cuda, then mps, then cpu")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--sheet", type=Path, help="save contact sheets as SHEET_one_object.png etc.")
    args = parser.parse_args(argv)
    family = load_family(args.model, device=args.device)
    report = evaluate(family, args.prompts, args.two_object_prompts, args.steps, args.guidance, args.scheduler,
                      sheet=args.sheet)
    info = family.info
    report["settings"] = {"steps": args.steps or info.default_steps, "guidance": args.guidance or info.default_guidance,
                          "scheduler": args.scheduler or info.default_scheduler, "device": info.device,
                          "model": info.name, "model_hash": info.hash}
    print_table({k: v for k, v in report.items() if k != "settings"})
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
