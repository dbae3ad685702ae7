"""How many steps, which sampler and which noise level the upsampler should use, measured.

    python bench/upsampler.py [--model PATH] [--upsampler FOLDER] [--scenes N] [--prompts N]

For each setting: PSNR against the world's 256 px render of N held-out scenes (the upsampler on their 64 px
renders; plain bicubic beside it), the analyzer's accuracy on N generated 64 px pictures (the product's path,
one decoder candidate) and on the same pictures upsampled, and seconds per picture. --upsampler measures a
pipeline folder other than the model's own (e.g. a run's `upsampler/pipeline`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.evaluate import DEFAULT_MODEL, accuracy, generate
from model.families import Kandinsky22Family, load_family
from model.families.upsampler import UpsamplerPipeline
from model.train.upsampler import heldout_psnr
from model.world import heldout_prompts

SETTINGS = (("ddim", 1), ("ddim", 2), ("ddim", 4), ("dpmpp", 4))
NOISE_LEVELS = (0, 20, 60)
SAMPLERS = {"ddim": DDIMScheduler, "dpmpp": DPMSolverMultistepScheduler}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--upsampler", type=Path, default=None)
    parser.add_argument("--scenes", type=int, default=16, help="held-out scenes for PSNR")
    parser.add_argument("--prompts", type=int, default=24, help="held-out prompts for the analyzer")
    args = parser.parse_args()
    family = load_family(args.model)
    if not isinstance(family, Kandinsky22Family):
        parser.error(f"--model: {args.model} is not a Kandinsky 2.2 layout model")
    device = family.decoder.device
    base = (
        UpsamplerPipeline.from_pretrained(args.upsampler, dtype=family.decoder.unet.dtype).to(device)
        if args.upsampler
        else family.upsampler
    )
    if base is None:
        parser.error(f"{args.model} has no upsampler/; name one with --upsampler")
    pairs = heldout_prompts(10_000, args.prompts)
    pictures = generate(family, [caption.text for _, caption in pairs], 0, None, None, None, 1)
    low = accuracy(pairs, pictures)[0]
    print(f"64 px pictures: colour {low['colour']}, shape {low['shape']}, background {low['background']}")
    print(
        "| sampler | steps | noise level | PSNR dB | bicubic dB | colour | shape | background | s/picture |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for sampler, steps in SETTINGS:
        scheduler = SAMPLERS[sampler].from_config(base.scheduler.config)
        for level in NOISE_LEVELS:
            pipe = base.replaced(scheduler=scheduler, default_steps=steps, default_noise_level=level)
            metrics, _ = heldout_psnr(pipe, device, args.scenes)
            started = time.perf_counter()
            generators = [torch.Generator().manual_seed(i) for i in range(len(pictures))]
            upscaled = pipe(pictures, generator=generators)
            seconds = (time.perf_counter() - started) / len(pictures)
            assert isinstance(upscaled, list)
            high = accuracy(pairs, upscaled)[0]
            print(
                f"| {sampler} | {steps} | {level} | {metrics['psnr_upsampler']:.2f} | {metrics['psnr_bicubic']:.2f}"
                f" | {high['colour']} | {high['shape']} | {high['background']} | {seconds:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
