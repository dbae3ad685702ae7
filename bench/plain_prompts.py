"""What the embedded model draws for four plain prompts over seeds 0-15, as the analyzer reads it back.

The per-shape view behind the model card's "By shape" figures: background, object colour, shape and position
counts per prompt, through the product's generation path at the model's defaults.

Run: .venv/bin/python bench/plain_prompts.py [--model model/weights/embedded] [--seeds 16]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.evaluate import DEFAULT_MODEL, generate
from model.families import Kandinsky22Family, load_family
from model.world import analyze

PROMPTS = (
    "a red circle on a white background",
    "a blue square on a yellow background",
    "a green triangle on a black background",
    "a small white star in the top left corner on a purple background",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--seeds", type=int, default=16)
    args = parser.parse_args()
    family = load_family(args.model)
    if not isinstance(family, Kandinsky22Family):
        parser.error(
            f"--model: {args.model} is not a Kandinsky 2.2 layout model, the only kind model.evaluate runs"
        )
    print(f"| prompt (seeds 0-{args.seeds - 1}) | background | colour | shape | position |")
    print("|---|---|---|---|---|")
    for prompt in PROMPTS:
        seen = [analyze(image) for image in generate(family, [prompt] * args.seeds, 0, None, None, None)]
        objects = [a.objects[0] for a in seen if a.objects]
        counts = [
            Counter(a.background for a in seen),
            *(Counter(getattr(o, key) for o in objects) for key in ("colour", "shape", "position")),
        ]
        print(
            f"| {prompt} | "
            + " | ".join(", ".join(f"{k} {n}" for k, n in c.most_common()) for c in counts)
            + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
