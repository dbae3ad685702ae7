import math

import numpy as np
import pytest
import torch

from model.world.geometry import SHAPE_UNIT_AREA
from model.world.render import render_image, render_scenes, to_uint8
from model.world.scene import SHAPES, Scene, SceneObject, sample_scene


def _single(
    shape: str, rotation: float = 0.3, radius: float = 11.0, cx: float = 30.0, cy: float = 34.0
) -> Scene:
    obj = SceneObject(
        shape,
        "red",
        "medium",
        "centre",
        cx,
        cy,
        radius,
        0.0 if shape == "circle" else rotation,
        (220, 30, 30),
    )
    return Scene("blue", (40, 80, 220), (obj,))


def test_object_colour_at_centre_and_background_at_corners():
    rng = np.random.default_rng(3)
    scenes = [sample_scene(rng, 0.5) for _ in range(64)]
    images = to_uint8(render_scenes(scenes)[0])
    for scene, image in zip(scenes, images, strict=True):
        for corner in (image[0, 0], image[0, -1], image[-1, 0], image[-1, -1]):
            assert tuple(corner) == scene.background_rgb
        for obj in scene.objects:
            assert tuple(image[int(obj.cy), int(obj.cx)]) == obj.rgb


@pytest.mark.parametrize("shape", SHAPES)
def test_coverage_matches_the_shape_area_and_edges_are_antialiased(shape):
    pixels, masks = render_scenes([_single(shape)])
    assert pixels.dtype == masks.dtype == torch.float32
    assert pixels.shape == (1, 3, 64, 64) and masks.shape == (1, 1, 64, 64)
    assert pixels.min() >= -1 and pixels.max() <= 1 and masks.min() >= 0 and masks.max() <= 1
    expected_area = SHAPE_UNIT_AREA[shape] * 11.0**2
    assert masks.sum().item() == pytest.approx(expected_area, rel=0.02)
    edge = (masks > 0.05) & (masks < 0.95)
    assert edge.sum() > 10  # partial coverage along the outline


def test_shapes_are_different_pictures_and_rotation_turns_them():
    masks = render_scenes([_single(s) for s in SHAPES])[1][:, 0]
    for i in range(len(SHAPES)):
        for j in range(i + 1, len(SHAPES)):
            iou = torch.minimum(masks[i], masks[j]).sum() / torch.maximum(masks[i], masks[j]).sum()
            assert iou < 0.85, (SHAPES[i], SHAPES[j])
    square = render_scenes(
        [_single("square", 0.0), _single("square", math.pi / 2), _single("square", math.pi / 4)]
    )[1]
    assert torch.allclose(square[0], square[1], atol=1e-5)  # a quarter turn is the same square
    assert (square[0] - square[2]).abs().sum() > 30  # an eighth turn is a diamond


def test_larger_output_draws_the_same_picture_in_more_detail():
    scene = _single("star")
    small, large = render_scenes([scene])[1], render_scenes([scene], size=128)[1]
    assert large.sum().item() / 4 == pytest.approx(small.sum().item(), rel=0.01)
    pooled = torch.nn.functional.avg_pool2d(large, 2)
    assert (pooled - small).abs().max() < 0.15  # only sampling noise at sharp tips


def test_rendering_is_deterministic_and_render_image_is_rgb():
    rng = np.random.default_rng(4)
    scenes = [sample_scene(rng) for _ in range(8)]
    first, second = render_scenes(scenes), render_scenes(scenes)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    image = render_image(scenes[0], size=96)
    assert image.mode == "RGB" and image.size == (96, 96)


@pytest.mark.parametrize(("kwargs", "field"), [({"size": 0}, "size"), ({"supersample": 0}, "supersample")])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        render_scenes([_single("circle")], **kwargs)
    with pytest.raises(ValueError, match="scenes"):
        render_scenes([])
