import math

import numpy as np
import pytest

from model.world.scene import COLOURS, FRAME, POSITIONS, SHAPES, SIZES, grid_cell, relation, sample_scene


def test_vocabulary_is_the_agreed_one():
    assert list(COLOURS) == ["red", "orange", "yellow", "green", "blue", "purple", "white", "black"]
    assert SHAPES == ("circle", "square", "triangle", "star", "cross")
    assert list(SIZES) == ["small", "medium", "large"] and SIZES["small"] < SIZES["medium"] < SIZES["large"]
    assert len(POSITIONS) == 9
    palette = np.array(list(COLOURS.values()), dtype=float)
    gaps = np.linalg.norm(palette[:, None] - palette[None], axis=-1) + np.eye(len(palette)) * 1e9
    assert gaps.min() > 80  # clearly distinct even after +-10 jitter per channel


def test_scenes_obey_the_world_rules():
    rng = np.random.default_rng(0)
    for _ in range(400):
        scene = sample_scene(rng, two_object_prob=0.5)
        colours = [o.colour for o in scene.objects]
        assert scene.background not in colours
        assert len(set(colours)) == len(colours)
        assert np.abs(np.subtract(scene.background_rgb, COLOURS[scene.background])).max() <= 10
        for obj in scene.objects:
            assert np.abs(np.subtract(obj.rgb, COLOURS[obj.colour])).max() <= 10
            assert obj.extent <= obj.cx <= FRAME - obj.extent and obj.extent <= obj.cy <= FRAME - obj.extent
            column, row = grid_cell(obj.position)  # the centre lies in the named cell of the 3x3 grid
            assert int(obj.cx // (FRAME / 3)) == column and int(obj.cy // (FRAME / 3)) == row
            assert obj.rotation == 0.0 if obj.shape == "circle" else 0.0 <= obj.rotation < 2 * math.pi
        if len(scene.objects) == 2:
            a, b = scene.objects
            assert math.hypot(a.cx - b.cx, a.cy - b.cy) > a.extent + b.extent  # never overlap
            assert (a.cx < b.cx) if relation(scene) == "left of" else (a.cy < b.cy)


def test_two_object_probability_is_respected():
    rng = np.random.default_rng(1)
    assert all(len(sample_scene(rng, 0.0).objects) == 1 for _ in range(50))
    assert all(len(sample_scene(rng, 1.0).objects) == 2 for _ in range(50))
    with pytest.raises(ValueError, match="two_object_prob"):
        sample_scene(rng, 1.5)
