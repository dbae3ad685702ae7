"""An endless, deterministic stream of rendered, captioned scenes; nothing is stored on disk.

Batch `index` of stream `seed` depends on (seed, index) only, so training can resume at any index and workers
can split the stream without coordination.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from model.world.captions import caption
from model.world.render import render_scenes
from model.world.scene import Scene, sample_scene


@dataclass
class WorldBatch:
    pixels: torch.Tensor  # (B,3,64,64) in [-1,1]
    masks: torch.Tensor  # (B,1,64,64) object coverage in [0,1]
    captions: list[str]
    scenes: list[Scene]


def world_batch(
    seed: int,
    index: int,
    batch_size: int,
    split: str = "train",
    device: str | torch.device = "cpu",
    two_object_prob: float = 0.25,
) -> WorldBatch:
    """Batch number `index` of the stream `seed`."""
    scenes, captions = captioned_scenes(seed, index, batch_size, split, two_object_prob)
    pixels, masks = render_scenes(scenes, device=device)
    return WorldBatch(pixels, masks, captions, scenes)


def captioned_scenes(
    seed: int, index: int, batch_size: int, split: str = "train", two_object_prob: float = 0.25
) -> tuple[list[Scene], list[str]]:
    """The scenes and captions of batch `index` of the stream `seed`, without rendering: for what learns from
    text alone."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = np.random.default_rng([seed, index])
    scenes = [sample_scene(rng, two_object_prob) for _ in range(batch_size)]
    return scenes, [caption(scene, rng, split).text for scene in scenes]


def caption_corpus(seed: int, n: int) -> Iterator[str]:
    """n training captions (no rendering), e.g. to train the tokenizer."""
    rng = np.random.default_rng([seed, 0x7E47])
    for _ in range(n):
        yield caption(sample_scene(rng), rng, split="train").text
