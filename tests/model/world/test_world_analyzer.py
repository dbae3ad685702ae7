import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFilter

from model.world.analyzer import Analysis, DetectedObject, analyze, score
from model.world.captions import ATTRIBUTES, Caption, caption
from model.world.render import render_image, render_scenes, to_uint8
from model.world.scene import Scene, sample_scene


def _clean_renders(seed: int, count: int, two_object_prob: float) -> tuple[list[Scene], np.ndarray]:
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng, two_object_prob) for _ in range(count)]
    return scenes, to_uint8(render_scenes(scenes)[0])


def test_reads_clean_renders_back_at_least_99_percent():
    scenes, images = _clean_renders(seed=11, count=200, two_object_prob=0.25)
    correct = {"background": 0, "colour": 0, "shape": 0, "position": 0, "size": 0, "count": 0}
    objects = 0
    for scene, image in zip(scenes, images, strict=True):
        analysis = analyze(image)
        correct["background"] += analysis.background == scene.background
        correct["count"] += len(analysis.objects) == len(scene.objects)
        detected = {o.colour: o for o in analysis.objects}
        for obj in scene.objects:
            objects += 1
            found = detected.get(obj.colour)
            correct["colour"] += found is not None
            for attribute in ("shape", "position", "size"):
                correct[attribute] += found is not None and getattr(found, attribute) == getattr(
                    obj, attribute
                )
    totals = {"background": len(scenes), "count": len(scenes)} | dict.fromkeys(
        ("colour", "shape", "position", "size"), objects
    )
    accuracy = {k: correct[k] / totals[k] for k in correct}
    assert min(accuracy.values()) >= 0.99, accuracy


def test_tolerates_blur_and_noise_like_a_generated_image():
    scenes, images = _clean_renders(seed=12, count=60, two_object_prob=0.0)
    noise = np.random.default_rng(0)
    hits = {"background": 0, "colour": 0, "shape": 0, "position": 0}
    for scene, image in zip(scenes, images, strict=True):
        blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(1.2)), dtype=float)
        degraded = np.clip(blurred + noise.normal(0, 8, blurred.shape), 0, 255).astype(np.uint8)
        analysis = analyze(degraded)
        obj, found = scene.objects[0], analysis.objects[0] if analysis.objects else None
        hits["background"] += analysis.background == scene.background
        for attribute in ("colour", "shape", "position"):
            hits[attribute] += found is not None and getattr(found, attribute) == getattr(obj, attribute)
    assert min(v / len(scenes) for v in hits.values()) >= 0.9, hits


def test_reads_larger_images_and_empty_backgrounds():
    scene = sample_scene(np.random.default_rng(3), two_object_prob=0.0)
    analysis = analyze(render_image(scene, size=256))
    obj = scene.objects[0]
    assert analysis.background == scene.background
    assert [(o.colour, o.shape, o.position) for o in analysis.objects] == [
        (obj.colour, obj.shape, obj.position)
    ]
    blank = analyze(Image.new("RGB", (64, 64), (40, 80, 220)))
    assert blank == Analysis("blue", ())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), split=st.sampled_from(["train", "heldout"]))
def test_captions_agree_with_what_the_analyzer_sees(seed, split):
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng, two_object_prob=0.5)
    cap = caption(scene, rng, split)
    result = score(scene, cap, analyze(render_image(scene)))
    assert set(result) == cap.mentions | {"all"}
    assert all(result.values()), (cap.text, result)


def test_score_flags_each_wrong_attribute():
    rng = np.random.default_rng(21)
    scene = sample_scene(rng, two_object_prob=0.0)
    obj = scene.objects[0]
    everything = Caption("full description", frozenset(ATTRIBUTES))
    truth = DetectedObject(obj.shape, obj.colour, obj.position, obj.size, 100.0, obj.cx, obj.cy)
    assert all(score(scene, everything, Analysis(scene.background, (truth,))).values())
    wrong = {
        "shape": "star" if obj.shape != "star" else "circle",
        "colour": "black" if obj.colour != "black" else "red",
        "position": "centre" if obj.position != "centre" else "top",
        "size": "large" if obj.size != "large" else "small",
    }
    for attribute, value in wrong.items():
        result = score(
            scene, everything, Analysis(scene.background, (dataclasses.replace(truth, **{attribute: value}),))
        )
        assert not result[attribute] and not result["all"]
        assert all(ok for name, ok in result.items() if name not in (attribute, "all"))
    assert not score(scene, everything, Analysis(scene.background, ()))["colour"]
    other_background = "white" if scene.background != "white" else "black"
    assert not score(scene, everything, Analysis(other_background, (truth,)))["background"]


def test_two_object_position_is_the_stated_relation():
    rng = np.random.default_rng(5)
    scene = sample_scene(rng, two_object_prob=1.0)
    cap = Caption("two objects", frozenset({"colour", "shape", "position"}))
    detected = tuple(
        DetectedObject(o.shape, o.colour, o.position, o.size, 50.0, o.cx, o.cy) for o in scene.objects
    )
    assert score(scene, cap, Analysis(scene.background, detected))["position"]
    swapped = tuple(
        dataclasses.replace(d, cx=e.cx, cy=e.cy) for d, e in zip(detected, reversed(detected), strict=True)
    )
    assert not score(scene, cap, Analysis(scene.background, swapped))["position"]


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="image"):
        analyze(np.zeros((64, 64), dtype=np.uint8))
    scene = sample_scene(np.random.default_rng(0))
    with pytest.raises(ValueError, match="mentions"):
        score(scene, Caption("x", frozenset({"mood"})), Analysis("red", ()))
