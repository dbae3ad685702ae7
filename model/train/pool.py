"""A pool of world pictures whose image embeddings are computed once, for stages that train the text side.

With the image encoder frozen, a picture's embedding never changes, yet encoding it is most of a CPU step
(about 1.5 s for 64 pictures, against a fraction of that for the text encoder and prior). The pool keeps the
embeddings of `size` pictures and the scenes they show; every step draws pictures from it and writes fresh
captions for them, so the text side still sees new phrasings all the time. The scenes are regenerated from the
pool's seed, so only the embeddings are stored (DIR/pool/, safetensors).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from model.world import Scene, caption, render_scenes, sample_scene

ENCODE_BATCH = 64


@dataclass
class EmbeddingPool:
    scenes: list[Scene]
    image_embeds: torch.Tensor  # [N, D], fp32, row i is scenes[i]'s picture

    def batch(
        self, seed: int, index: int, batch_size: int
    ) -> tuple[list[Scene], list[str], torch.Tensor, list[frozenset[str]]]:
        """Batch `index` of stream `seed`: pictures drawn without replacement, each with a fresh training
        caption; returns scenes, captions, image embeddings and what each caption mentions."""
        rng = np.random.default_rng([seed, index, 0x9001])
        rows = rng.choice(len(self.scenes), size=min(batch_size, len(self.scenes)), replace=False)
        scenes = [self.scenes[i] for i in rows]
        captions = [caption(scene, rng, "train") for scene in scenes]
        embeds = self.image_embeds[torch.from_numpy(rows)]
        return scenes, [c.text for c in captions], embeds, [c.mentions for c in captions]


def pool_scenes(seed: int, size: int) -> list[Scene]:
    rng = np.random.default_rng([seed, 0x900])
    return [sample_scene(rng) for _ in range(size)]


@torch.no_grad()
def embedding_pool(out: Path, image_encoder, device: torch.device, size: int, seed: int) -> EmbeddingPool:
    """The run's pool (DIR/pool/), built on first use; a pool of another size or seed is rebuilt."""
    path = out / "pool" / "image_embeds.safetensors"
    scenes = pool_scenes(seed, size)
    if path.exists():
        stored = load_file(path)
        if stored["seed"].item() == seed and len(stored["image_embeds"]) == size:
            return EmbeddingPool(scenes, stored["image_embeds"].to(device))
    chunks = []
    for start in range(0, size, ENCODE_BATCH):
        pixels, _ = render_scenes(scenes[start : start + ENCODE_BATCH], device=device)
        chunks.append(image_encoder(pixel_values=pixels).image_embeds.float())
        if start // ENCODE_BATCH % 20 == 0:
            print(f"[pool] encoded {start + len(pixels)} of {size} pictures", flush=True)
    embeds = torch.cat(chunks)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"image_embeds": embeds.cpu().contiguous(), "seed": torch.tensor(seed)}, tmp)
    tmp.rename(path)
    return EmbeddingPool(scenes, embeds)
