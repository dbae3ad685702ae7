"""python -m model.evaluate: the report a model developer reads to decide whether a run is worth shipping.

Scoring is checked with stand-in painters (the true pictures, or the true pictures with every shape turned
into a circle) around the tiny family's encoders, so the expected figures follow from the prompts themselves;
the command is then run end to end on the tiny family.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest

from model import evaluate
from model.families import Kandinsky22Family
from model.world import SHAPES, Scene, heldout_prompts, render_image

ONE, TWO = 40, 10


def painter(monkeypatch: pytest.MonkeyPatch, draw) -> list[Scene]:
    """Make evaluate.generate paint draw(scene) for the scene each prompt was written from; return those
    scenes."""
    pairs = heldout_prompts(10_000, ONE) + heldout_prompts(10_001, TWO, two_objects=True)
    scene_of = {caption.text: scene for scene, caption in pairs}
    monkeypatch.setattr(
        evaluate, "generate", lambda family, prompts, *_: [draw(scene_of[p]) for p in prompts]
    )
    return [scene for scene, _ in pairs[:ONE]]


def as_circles(scene: Scene) -> Scene:
    return dataclasses.replace(
        scene, objects=tuple(dataclasses.replace(o, shape="circle") for o in scene.objects)
    )


def test_true_pictures_score_full_marks(
    kandinsky: Kandinsky22Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenes = painter(monkeypatch, render_image)
    report = evaluate.evaluate(kandinsky, ONE, TWO)
    one = report["one object"]
    assert all(one[a] == 1.0 for a in ("colour", "shape", "background", "position", "size", "all")), one
    assert one["clip_score"] == one["clip_score_true_pictures"]
    asked = Counter(s.objects[0].shape for s in scenes)
    assert {shape: row[shape] for shape, row in one["shape_confusion"].items()} == asked
    assert set(one["shape_by_size"].values()) == {1.0}
    assert report["two objects"]["prompts"] == TWO and "shape_confusion" not in report["two objects"]


def test_a_model_that_only_draws_circles_is_caught(
    kandinsky: Kandinsky22Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenes = painter(monkeypatch, lambda scene: render_image(as_circles(scene)))
    report = evaluate.evaluate(kandinsky, ONE, 0)
    assert list(report) == ["one object"]
    one = report["one object"]
    circles = sum(s.objects[0].shape == "circle" for s in scenes)
    assert 0 < circles < ONE
    assert one["shape"] == round(circles / ONE, 3)
    assert one["colour"] == one["background"] == 1.0
    for asked, row in one["shape_confusion"].items():
        assert row["circle"] == sum(row.values()), (asked, row)
    for size, share in one["shape_by_size"].items():
        of_size = [s.objects[0] for s in scenes if s.objects[0].size == size]
        assert share == round(sum(o.shape == "circle" for o in of_size) / len(of_size), 3)


def test_unseen_words_are_reported_apart(
    kandinsky: Kandinsky22Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = heldout_prompts(10_000, ONE, split="unseen")
    scene_of = {caption.text: scene for scene, caption in pairs}
    monkeypatch.setattr(
        evaluate, "generate", lambda family, prompts, *_: [render_image(scene_of[p]) for p in prompts]
    )
    report = evaluate.evaluate(kandinsky, 0, 0, unseen=ONE)
    assert list(report) == ["unseen words, one object"]
    row = report["unseen words, one object"]
    assert all(row[a] == 1.0 for a in ("colour", "shape", "background", "all")), row
    assert row["prompts"] == ONE
    assert row["prompts_with_unknown_words"] == 0  # the tiny family's BPE tokenizer spells every word


def test_command_writes_the_report(
    kandinsky_path: Path, kandinsky: Kandinsky22Family, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evaluate.main(
        [
            "--model",
            str(kandinsky_path),
            "--prompts",
            "3",
            "--two-object-prompts",
            "2",
            "--prior-candidates",
            "2",
            "--unseen",
            "2",
            "--json",
            str(tmp_path / "report.json"),
            "--sheet",
            str(tmp_path / "sheet.png"),
        ]
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["settings"]["model_hash"] == kandinsky.info.hash
    assert report["settings"]["prior_candidates"] == 2 and report["settings"]["decoder_candidates"] == 1
    assert report["one object"]["prompts"] == 3 and report["two objects"]["prompts"] == 2
    assert report["unseen words, one object"]["prompts"] == 2
    assert sum(sum(row.values()) for row in report["one object"]["shape_confusion"].values()) == 3
    assert set(report["one object"]["shape_confusion"]) <= set(SHAPES)
    assert (tmp_path / "sheet_one_object.png").is_file() and (tmp_path / "sheet_two_objects.png").is_file()
    out = capsys.readouterr().out
    assert "| one object |" in out and "shape asked (rows) against shape drawn (columns)" in out


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("sd", "only Kandinsky 2.2 folders"),
        ("missing", "model folder not found"),
        ("no candidates", "--prior-candidates must be at least 1"),
        ("no decoder candidates", "--decoder-candidates must be at least 1"),
        ("no verifier", "has no verifier/ to judge decoder candidates"),
    ],
)
def test_command_refuses_what_it_cannot_evaluate(
    which: str,
    message: str,
    sd_path: Path,
    kandinsky_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = {"sd": sd_path, "missing": tmp_path / "no-such-model"}.get(which, kandinsky_path)
    candidates = {
        "no candidates": ["--prior-candidates", "0"],
        "no decoder candidates": ["--decoder-candidates", "0"],
        "no verifier": ["--decoder-candidates", "2"],
    }.get(which, [])
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(
            [
                "--model",
                str(folder),
                "--prompts",
                "1",
                "--two-object-prompts",
                "0",
                "--unseen",
                "0",
                *candidates,
            ]
        )
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error
