"""The upsampler (model/families/upsampler.py) as the engine runs it: a request's `upscale` flag turns each
finished picture into one four times its size, reproducibly, and only on a model that has an upsampler."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import tiny_models
from image_checks import max_pixel_diff

from model.engine.engine_common import GenerationRequest, RequestError, request_params
from model.engine.validation import resolve_request
from model.families import Kandinsky22Family, Row, load_family
from model.families.upsampler import UpsamplerPipeline, bicubic, to_pil, to_tensor

STEPS = 2


@pytest.fixture(scope="module")
def upscaling(tiny_root: Path, kandinsky_path: Path) -> Kandinsky22Family:
    root = tiny_root / "upscaling"
    if not root.exists():
        shutil.copytree(kandinsky_path, root)
        tiny_models.add_upsampler(root)
    family = load_family(root, device="cpu")
    assert isinstance(family, Kandinsky22Family)
    return family


def rows(family: Kandinsky22Family, upscale: list[bool], seed: int = 3) -> list[Row]:
    return [
        Row(
            resolve_request(
                GenerationRequest(prompt="a red circle", seed=seed + i, steps=STEPS, upscale=flag),
                family.info,
            )
        )
        for i, flag in enumerate(upscale)
    ]


def test_rows_that_ask_are_upscaled_four_times_in_one_batch(upscaling: Kandinsky22Family) -> None:
    assert upscaling.info.upscale_factor == 4
    images = upscaling.generate(rows(upscaling, [True, False, True]))
    assert [image.size if image else None for image in images] == [(128, 128), (32, 32), (128, 128)]


def test_an_upscaled_picture_depends_on_its_seed_not_its_batch(upscaling: Kandinsky22Family) -> None:
    together = upscaling.generate(rows(upscaling, [True, True, False]))
    alone = upscaling.generate(rows(upscaling, [True]))
    again = upscaling.generate(rows(upscaling, [True]))
    assert together[0] is not None and alone[0] is not None and again[0] is not None
    assert max_pixel_diff(alone[0], again[0]) == 0
    assert max_pixel_diff(together[0], alone[0]) <= 2, "a batch changes a picture by float noise at most"
    assert max_pixel_diff(together[0], together[1]) > 10


def test_the_flag_is_recorded_in_the_parameters(upscaling: Kandinsky22Family) -> None:
    (row,) = rows(upscaling, [True])
    assert request_params(row.request)["upscale"] is True
    (plain,) = rows(upscaling, [False])
    assert request_params(plain.request)["upscale"] is False


def test_a_model_without_an_upsampler_refuses_upscale_by_name(kandinsky: Kandinsky22Family) -> None:
    assert kandinsky.info.upscale_factor == 1
    with pytest.raises(RequestError) as error:
        resolve_request(GenerationRequest(prompt="a red circle", upscale=True), kandinsky.info)
    assert error.value.field == "upscale" and "no upsampler" in error.value.message
    with pytest.raises(RequestError, match="true or false"):
        resolve_request(GenerationRequest(prompt="x", upscale="yes"), kandinsky.info)  # type: ignore[arg-type]


def test_the_pipeline_adds_a_residual_to_bicubic(upscaling: Kandinsky22Family) -> None:
    """With the residual scaled to nothing, the upsampler's picture is plain bicubic upscaling."""
    pipe = upscaling.upsampler
    assert isinstance(pipe, UpsamplerPipeline)
    low = PIL.Image.new("RGB", (16, 16), (255, 255, 255))
    low.paste((200, 30, 30), (4, 4, 12, 12))
    huge = pipe.replaced(residual_scale=1e9)
    (picture,) = huge([low], num_inference_steps=1)
    expected = to_pil(bicubic(to_tensor([low])).clamp(-1, 1))[0]
    assert picture.size == (64, 64)
    assert np.abs(np.asarray(picture, dtype=int) - np.asarray(expected, dtype=int)).max() <= 1


def test_noise_levels_outside_the_trained_range_are_refused(upscaling: Kandinsky22Family) -> None:
    pipe = upscaling.upsampler
    assert pipe is not None
    with pytest.raises(ValueError, match="noise_level"):
        pipe([PIL.Image.new("RGB", (8, 8))], noise_level=pipe.config.max_noise_level + 1)
