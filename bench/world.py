"""Speed of the procedural world: rendering a batch and analysing one picture.

Run: .venv/bin/python bench/world.py [--device cuda] [--batch 32]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.world import analyze, render_image, render_scenes, sample_scene


def _per_call_ms(function, repeats: int, sync=lambda: None) -> float:
    function()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    sync()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 256])
    args = parser.parse_args()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else lambda: None
    rng = np.random.default_rng(0)
    print(f"torch threads: {torch.get_num_threads()}, device: {args.device}")
    for batch in args.batch:
        scenes = [sample_scene(rng) for _ in range(batch)]
        ms = _per_call_ms(functools.partial(render_scenes, scenes, device=args.device), repeats=10, sync=sync)
        print(f"render_scenes batch {batch}: {ms:.1f} ms")
    images = [render_image(sample_scene(rng)) for _ in range(20)]
    ms = _per_call_ms(lambda: [analyze(image) for image in images], repeats=2) / len(images)
    print(f"analyze one 64x64 picture: {ms:.1f} ms")


if __name__ == "__main__":
    main()
