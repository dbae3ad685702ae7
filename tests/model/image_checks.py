"""Pixel comparisons for the model tests."""

from __future__ import annotations

import numpy as np
import PIL.Image


def pixels(image: PIL.Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def max_pixel_diff(a: PIL.Image.Image, b: PIL.Image.Image) -> float:
    """Largest per-channel difference, in 0..255 levels."""
    return float(np.abs(pixels(a) - pixels(b)).max())


def mean_pixel_diff(a: PIL.Image.Image, b: PIL.Image.Image) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())
