"""Small builders shared by the storage tests."""

from __future__ import annotations

import io

from PIL import Image

from storage import Storage
from storage.metadata import Recipe, encode_png
from storage.types import GenerationInfo, NewImage


def png(
    width: int = 8, height: int = 8, color: tuple[int, int, int] = (200, 30, 30), **recipe: object
) -> bytes:
    """A small PNG carrying a recipe (so equal pixels in different generations still differ in bytes)."""
    return encode_png(Image.new("RGB", (width, height), color), Recipe(prompt="test", **recipe))  # type: ignore[arg-type]


def plain_png(
    width: int = 8, height: int = 8, color: tuple[int, int, int] = (0, 0, 255), fmt: str = "PNG"
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=fmt)
    return buffer.getvalue()


def generate(
    storage: Storage,
    user_id: int,
    text: str = "a red circle",
    *,
    images: int = 2,
    shared: bool = True,
    prompt_id: int | None = None,
    seed: int = 7,
) -> GenerationInfo:
    """A succeeded generation with `images` images, the way the engine glue records one."""
    if prompt_id is None:
        prompt_id = storage.prompts.create(user_id, text=text, shared=shared).id
    generation = storage.generations.create(
        user_id,
        prompt_id,
        model_id="embedded",
        model_hash="abc123",
        params={"steps": 2, "guidance_scale": 6.0},
        seed=seed,
    )
    storage.generations.mark_running(generation.id)
    new = [
        NewImage(i, png(generation_id=generation.id, image_index=i), 8, 8, seed=seed + i)
        for i in range(images)
    ]
    return storage.generations.mark_succeeded(generation.id, images=new, model_s=0.5, queue_wait_s=0.1)
