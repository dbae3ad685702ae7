"""Out of GPU memory: the engine halves the batch key's row cap, reruns the same rows, remembers the cap, and
fails only an image that does not fit alone. The OOM is injected (no GPU here): generate raises torch's
OutOfMemoryError whenever a batch holds more rows than the pretend card fits."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pytest
import torch
from image_checks import max_pixel_diff
from test_engine import TOLERANCE, ask

from model.engine import JobFailed
from model.families import Family, Row


class PretendCard:
    """Wraps a family's generate: batches of more than ``fits`` rows (or any holding a row ``too_big`` says
    never fits) raise OutOfMemoryError, as CUDA does; the others run. Records every batch's size."""

    def __init__(self, family: Family, fits: int, too_big: Callable[[Row], bool] = lambda row: False) -> None:
        self.fits, self.too_big = fits, too_big
        self.sizes: list[int] = []
        self._generate = family.generate

    def __call__(self, rows: Sequence[Row], control=None, step_hook=None):
        self.sizes.append(len(rows))
        if len(rows) > self.fits or any(self.too_big(row) for row in rows):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self._generate(rows, control, step_hook)


JOBS = [
    ask("a red circle on a white background", 21, "ann", num_images=2),
    ask("a blue square", 22, "bob"),
    ask("a green triangle", 23, "cid", guidance_scale=9.0),
    ask("a black circle", 24, "dee"),
    ask("a white square on a black background", 25, "eve"),
]


def test_a_batch_out_of_memory_halves_its_cap_reruns_and_nobody_fails(
    kandinsky: Family, engine_for, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with engine_for(kandinsky, max_batch=1) as engine:
        expected = [engine.submit(job).result(60).images for job in JOBS]

    card = PretendCard(kandinsky, fits=2)
    monkeypatch.setattr(kandinsky, "generate", card)
    caplog.set_level(logging.WARNING, logger="model.engine.engine_local")
    engine = engine_for(kandinsky, max_batch=8, gather_s=0.3)
    got = [handle.result(60).images for handle in [engine.submit(job) for job in JOBS]]
    assert card.sizes == [6, 3, 1, 1, 1, 1, 1, 1], "6 rows, then half (out of memory again), then 1 by 1"
    (key,) = engine.row_caps
    assert engine.row_caps == {key: 1}
    lowered = [r for r in caplog.records if "out of GPU memory" in r.getMessage()]
    assert [r.getMessage().split("now take at most ")[1].split()[0] for r in lowered] == ["3", "1"]
    for images, expected_images in zip(got, expected, strict=True):
        for image, expected_image in zip(images, expected_images, strict=True):
            assert max_pixel_diff(image, expected_image) <= TOLERANCE

    card.sizes.clear()
    again = [handle.result(60).images for handle in [engine.submit(job) for job in JOBS]]
    assert card.sizes == [1] * 6, "the cap is remembered: no batch out of memory again"
    assert len([r for r in caplog.records if "out of GPU memory" in r.getMessage()]) == 2, "logged once"
    assert max_pixel_diff(again[0][1], expected[0][1]) <= TOLERANCE


def test_the_cap_stays_within_max_batch_and_applies_only_to_its_batch_key(
    kandinsky: Family, engine_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = PretendCard(kandinsky, fits=2)
    monkeypatch.setattr(kandinsky, "generate", card)
    engine = engine_for(kandinsky, max_batch=4, gather_s=0.3)
    assert len(engine.submit(ask("a red circle", 1, num_images=4)).result(60).images) == 4
    assert card.sizes == [4, 2, 2]
    assert list(engine.row_caps.values()) == [2]
    card.sizes.clear()
    card.fits = 8  # another kind of batch (more steps: another key) is not held to the first one's cap
    assert len(engine.submit(ask("a red circle", 1, num_images=4, steps=3)).result(60).images) == 4
    assert card.sizes == [4] and len(engine.row_caps) == 1


def test_an_image_that_does_not_fit_alone_fails_only_its_job(
    kandinsky: Family, engine_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = PretendCard(kandinsky, fits=8, too_big=lambda row: row.request.prompt == "huge")
    monkeypatch.setattr(kandinsky, "generate", card)
    engine = engine_for(kandinsky, max_batch=8, gather_s=0.3)
    fine = [engine.submit(ask(f"a red circle {i}", i, f"u{i}")) for i in range(2)]
    huge = engine.submit(ask("huge", 9, "mallory"))
    assert all(len(handle.result(60).images) == 1 for handle in fine)
    with pytest.raises(JobFailed, match=r"out of GPU memory for one 32x32 image, even alone"):
        huge.result(60)
    assert card.sizes == [3, 1, 1, 1], "halved to 1, then the lone oversized image fails"
