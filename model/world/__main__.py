"""python -m model.world --grid PATH: save an 8x8 grid of sample pictures of the world."""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from model.world.render import to_uint8
from model.world.stream import world_batch

_TILE, _GAP, _COLUMNS = 64, 2, 8


def sample_grid(seed: int = 0, count: int = 64) -> Image.Image:
    """The first `count` pictures of the training stream `seed`, in rows of eight."""
    batch = world_batch(seed, 0, count)
    rows = (count + _COLUMNS - 1) // _COLUMNS
    step = _TILE + _GAP
    grid = Image.new("RGB", (_COLUMNS * step + _GAP, rows * step + _GAP), (128, 128, 128))
    for i, tile in enumerate(to_uint8(batch.pixels)):
        grid.paste(
            Image.fromarray(tile, mode="RGB"), (_GAP + (i % _COLUMNS) * step, _GAP + (i // _COLUMNS) * step)
        )
    return grid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m model.world", description=__doc__)
    parser.add_argument("--grid", type=Path, required=True, help="PNG file to write the 8x8 sample grid to")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.grid.parent.mkdir(parents=True, exist_ok=True)
    sample_grid(args.seed).save(args.grid)
    print(f"wrote {args.grid}")


if __name__ == "__main__":
    main()
