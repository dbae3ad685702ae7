"""Seconds per image of the embedded model on this machine, per scheduler, with its accuracy beside it.

    python bench/generate.py [--model PATH] [--accuracy N] [--repeats R] [--decoder-candidates 1,4]
                             [--schedules dpmpp:15,ddim:25]

Times the product's own generation path (the model family the engine drives: prior, decoder with CFG, the
verifier's pick among decoder candidates, movq decode) at batch 1 and batch 8, for DDIM at 25 steps and
DPM-Solver++ at fewer steps, with the model's own number of decoder candidates and with one (or the counts
given). With --accuracy N, each setting is also scored by `model.evaluate` on N held-out single-object
prompts. Last, what a picture at the model's defaults costs against a one-candidate picture, at batch 1 and 8;
a model with an upsampler also gets the seconds `upscale` adds per image (64 -> 256 px), at batch 1 and 8.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.evaluate import DEFAULT_MODEL, evaluate, generate
from model.families import Kandinsky22Family, load_family

SETTINGS = (("ddim", 25), ("dpmpp", 15), ("dpmpp", 10))
PROMPT = "a red circle on a white background"


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def seconds_per_image(
    family: Kandinsky22Family,
    scheduler: str,
    steps: int,
    candidates: int,
    batch: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    generate(family, [PROMPT] * batch, 0, steps, None, scheduler, candidates)  # warm-up
    started = clock()
    for r in range(repeats):
        generate(family, [PROMPT] * batch, r, steps, None, scheduler, candidates)
    return (clock() - started) / (repeats * batch)


def upscale_seconds_per_image(family: Kandinsky22Family, batch: int, repeats: int) -> float:
    """What `upscale` adds to each image: the upsampler on finished pictures, as the engine batches it."""
    images = generate(family, [PROMPT] * batch, 0, None, None, None, 1)
    family.upscale(images, list(range(batch)))  # warm-up
    started = time.perf_counter()
    for r in range(repeats):
        family.upscale(images, [r * batch + i for i in range(batch)])
    return (time.perf_counter() - started) / (repeats * batch)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--accuracy", type=int, default=0, help="held-out prompts to score per setting")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="wall seconds, or this process's CPU seconds: what a picture costs on a machine others share "
        "(with one torch thread; more threads add their spin-waiting)",
    )
    parser.add_argument(
        "--schedules",
        default=",".join(f"{name}:{steps}" for name, steps in SETTINGS),
        help="comma-separated scheduler:steps to time (default: %(default)s)",
    )
    parser.add_argument(
        "--decoder-candidates",
        default=None,
        help="comma-separated counts to time (default: the model's own, and 1)",
    )
    args = parser.parse_args()
    family = load_family(args.model)
    if not isinstance(family, Kandinsky22Family):
        parser.error(
            f"--model: {args.model} is not a Kandinsky 2.2 layout model, the only kind model.evaluate runs"
        )
    info = family.info
    try:
        counts = (
            [int(c) for c in args.decoder_candidates.split(",")]
            if args.decoder_candidates
            else list(dict.fromkeys([info.default_candidates, 1]))
        )
    except ValueError:
        parser.error("--decoder-candidates takes comma-separated whole numbers, e.g. 8,1")
    try:
        schedules = [(name, int(steps)) for name, steps in (s.split(":") for s in args.schedules.split(","))]
    except ValueError:
        parser.error("--schedules takes comma-separated scheduler:steps pairs, e.g. dpmpp:15,ddim:25")
    if unknown := {name for name, _ in schedules} - set(info.schedulers):
        parser.error(
            f"--schedules: unknown scheduler {', '.join(sorted(unknown))}; this model has {info.schedulers}"
        )
    if any(not 1 <= c <= info.max_candidates for c in counts):
        parser.error(f"--decoder-candidates must be between 1 and {info.max_candidates} for this model")
    print(
        f"{family.info.name} on {family.info.device} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads), torch {torch.__version__}, {args.clock} seconds"
    )
    header = "| decoder candidates | scheduler | steps | s/image, batch 1 | s/image, batch 8 |"
    header += " colour | shape | background | all |" if args.accuracy else ""
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    timed: dict[tuple[int, str, int], tuple[float, float]] = {}
    for count, (scheduler, steps) in ((c, s) for c in counts for s in schedules):
        clock = CLOCKS[args.clock]
        one = seconds_per_image(family, scheduler, steps, count, 1, args.repeats, clock)
        eight = seconds_per_image(family, scheduler, steps, count, 8, max(1, args.repeats // 2), clock)
        timed[(count, scheduler, steps)] = (one, eight)
        row = f"| {count} | {scheduler} | {steps} | {one:.3f} | {eight:.3f} |"
        if args.accuracy:
            score = evaluate(family, args.accuracy, 0, steps, None, scheduler, candidates=count)["one object"]
            row += (
                f" {score['colour']:.2f} | {score['shape']:.2f} | {score['background']:.2f}"
                f" | {score['all']:.2f} |"
            )
        print(row, flush=True)
    default = (info.default_candidates, info.default_scheduler, info.default_steps)
    single = (1, info.default_scheduler, info.default_steps)
    if default != single and default in timed and single in timed:
        (one, eight), (one_single, eight_single) = timed[default], timed[single]
        print(
            f"\na picture at the defaults ({info.default_candidates} candidates, {info.default_scheduler} "
            f"{info.default_steps}) costs {one / one_single:.2f}x a one-candidate picture at batch 1 "
            f"({one:.3f} vs {one_single:.3f} s), {eight / eight_single:.2f}x at batch 8 "
            f"({eight:.3f} vs {eight_single:.3f} s/image), {eight / one_single:.2f}x a one-candidate picture at batch 1"
        )
    if family.upsampler is not None:
        one = upscale_seconds_per_image(family, 1, args.repeats)
        eight = upscale_seconds_per_image(family, 8, max(1, args.repeats // 2))
        steps = family.upsampler.config.default_steps
        print(
            f"\nupscale (64 -> 256 px, {steps} upsampler steps) adds {one:.3f} s/image at batch 1, {eight:.3f} at 8"
        )


if __name__ == "__main__":
    main()
