"""Tensor <-> picture helpers shared by the stages and the evaluation."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image


def to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """(B,3,H,W) in [-1,1] -> RGB pictures."""
    array = (
        ((pixels.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    )
    return [Image.fromarray(a) for a in array]


def grid(images: list[Image.Image], columns: int) -> Image.Image:
    w, h = images[0].size
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * w, rows * h), "white")
    for i, image in enumerate(images):
        sheet.paste(image, ((i % columns) * w, (i // columns) * h))
    return sheet


def save_grid(pixels: torch.Tensor, path: Path, columns: int = 8) -> None:
    grid(to_pil(pixels), columns).save(path)
