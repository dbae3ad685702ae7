"""Image guidance at rising scales on the embedded model: a figure for docs/ and the numbers behind it.

The reference is a world scene (a green square on black); the prompt asks for a red circle on white. For
each decay, step count and scale the script prints the mean pixel distance to the reference and whether
the world's analyzer still sees the prompt's red circle, and writes a grid (rows: decay x steps; columns:
the reference, then the scales) to docs/images/guidance_scale.png. The scale is the total pull, so a scale
should give about the same distance at every step count.

Run: .venv/bin/python bench/guidance_figure.py [--model model/weights/embedded] [--seeds 4] [--steps 15 50]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.engine import GenerationRequest  # noqa: E402
from model.engine.engine_local import LocalEngine  # noqa: E402
from model.world import analyze, render_image  # noqa: E402
from model.world.scene import Scene, SceneObject  # noqa: E402

PROMPT = "a red circle on a white background"
SCALES = (0.0, 0.125, 0.25, 0.375, 0.5)
DECAYS = ("none", "linear")


def reference(size: int) -> Image.Image:
    square = SceneObject("square", "green", "big", "centre", 32.0, 32.0, 14.0, 0.0, (40, 170, 60))
    return render_image(Scene("black", (10, 10, 10), (square,)), size=size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "model" / "weights" / "embedded")
    parser.add_argument("--device")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, nargs="+", default=[15, 50])
    parser.add_argument("--scales", type=float, nargs="+", default=list(SCALES))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "guidance_scale.png")
    args = parser.parse_args()
    if not args.model.is_dir():
        print(f"No model at {args.model}; train the embedded model or pass --model PATH.", file=sys.stderr)
        return 1
    runs = list(itertools.product(DECAYS, args.steps))
    with LocalEngine.from_path(args.model, device=args.device) as engine:
        width, height = engine.model_info.default_size
        ref = reference(width)
        ref_pixels = np.asarray(ref.convert("RGB"), dtype=np.float64)
        grid = Image.new("RGB", (width * (len(args.scales) + 1), height * len(runs)), "white")
        grid.paste(ref, (0, 0))
        print(
            "| decay | steps | scale | distance to reference (0-255) | red circle seen |\n|---|---|---|---|---|"
        )
        for row, (decay, steps) in enumerate(runs):
            for column, scale in enumerate(args.scales, start=1):
                handles = [
                    engine.submit(
                        GenerationRequest(
                            prompt=PROMPT,
                            seed=seed,
                            steps=steps,
                            candidates=1,
                            guidance_image=ref if scale > 0 else None,
                            image_guidance_scale=scale,
                            image_guidance_decay=decay,
                        )
                    )
                    for seed in range(args.seeds)
                ]
                images = [handle.result().images[0] for handle in handles]
                distance = np.mean(
                    [np.abs(np.asarray(i, dtype=np.float64) - ref_pixels).mean() for i in images]
                )
                seen = np.mean(
                    [
                        any((o.shape, o.colour) == ("circle", "red") for o in analyze(i).objects)
                        for i in images
                    ]
                )
                grid.paste(images[0], (column * width, row * height))
                print(f"| {decay} | {steps} | {scale} | {distance:.1f} | {seen:.0%} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
