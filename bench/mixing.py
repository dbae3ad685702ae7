"""The thesis's embedding arithmetic on the embedded model, scored by the world's analyzer:

    "a red circle on a white background" - "red" + "blue"  ->  a blue circle?

Each text, "red" and "blue" included, is embedded exactly like a prompt: tokenized alone, encoded by the
CLIP text encoder, and mapped by the prior to a CLIP *image* embedding (what a picture described by that
text would embed to). The mix is the signed sum of those image embeddings, renormalised to their average
norm, then decoded. Prints how often the analyzer sees a blue circle (and, apart, a blue object and a circle),
against two plain prompts.

Run: .venv/bin/python bench/mixing.py [--model model/weights/embedded] [--samples 64]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.engine import GenerationRequest, MixIngredient
from model.engine.engine_local import LocalEngine
from model.world import analyze

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "model" / "weights" / "embedded"
BASE = "a red circle on a white background"


def rates(engine: LocalEngine, request: GenerationRequest, samples: int) -> tuple[float, float, float]:
    """How often the analyzer sees a blue circle, a blue object, and a circle: which of colour and shape
    moved."""
    handles = [
        engine.submit(GenerationRequest(**{**request.__dict__, "seed": seed, "user": f"s{seed % 8}"}))
        for seed in range(samples)
    ]
    blue_circle = blue = circle = 0
    for handle in handles:
        objects = analyze(handle.result().images[0]).objects
        colour, shape = (objects[0].colour, objects[0].shape) if objects else (None, None)
        blue_circle += (colour, shape) == ("blue", "circle")
        blue += colour == "blue"
        circle += shape == "circle"
    return blue_circle / samples, blue / samples, circle / samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--device")
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()
    if not args.model.is_dir():
        print(f"No model at {args.model}; train the embedded model or pass --model PATH.", file=sys.stderr)
        return 1
    with LocalEngine.from_path(args.model, device=args.device) as engine:
        cases = {
            f'"{BASE}" - "red" + "blue"': GenerationRequest(
                prompt=BASE, mix=(MixIngredient(-1.0, text="red"), MixIngredient(1.0, text="blue"))
            ),
            "same, not renormalised": GenerationRequest(
                prompt=BASE,
                mix=(MixIngredient(-1.0, text="red"), MixIngredient(1.0, text="blue")),
                renormalize_mix=False,
            ),
            '"a blue circle on a white background" (plain prompt)': GenerationRequest(
                prompt="a blue circle on a white background"
            ),
            f'"{BASE}" (plain prompt)': GenerationRequest(prompt=BASE),
        }
        print(f"| request ({args.samples} seeds) | blue circle | blue | circle |\n|---|---|---|---|")
        for label, request in cases.items():
            print(
                f"| {label} | "
                + " | ".join(f"{rate:.0%}" for rate in rates(engine, request, args.samples))
                + " |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
