"""The denoising loop we own: its per-step hook, rows leaving under multistep schedulers, public API only."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import PIL.Image
import pytest
import torch
from image_checks import max_pixel_diff, mean_pixel_diff

from model.engine.engine_common import GenerationRequest, Stage
from model.engine.validation import resolve_request
from model.families import Family, Row
from model.families.denoising import StepState

FAMILIES = Path(__file__).resolve().parents[2] / "model" / "families"
TOLERANCE = 3  # levels of 255: batched and lone runs differ only by float reduction order


def rows_for(family: Family, seed: int, count: int, **fields: object) -> list[Row]:
    request = resolve_request(
        GenerationRequest(prompt="a red circle", seed=seed, steps=4, num_images=count, **fields), family.info
    )  # type: ignore[arg-type]
    return [Row(request, index) for index in range(count)]


def to_image(pixels: torch.Tensor) -> PIL.Image.Image:
    return PIL.Image.fromarray(pixels.permute(1, 2, 0).mul(255).round().byte().numpy())


class Previews:
    """A step hook that decodes each step's predicted clean latents, as a live preview would."""

    def __init__(self, family: Family) -> None:
        self.family = family
        self.seen: list[tuple[int, int, list[int], torch.Tensor]] = []

    def __call__(self, state: StepState) -> None:
        pixels = self.family.decode_latents(state.predicted_clean())  # type: ignore[attr-defined]
        self.seen.append((state.step, state.total, list(state.positions), pixels))


class LeaveAfter:
    """A BatchControl under which row 0 leaves after ``step`` steps."""

    def __init__(self, step: int) -> None:
        self.step = 0
        self.leave_at = step

    def on_stage(self, stage: Stage, rows: Sequence[Row]) -> None:
        pass

    def on_step(self, step: int, total: int, rows: Sequence[Row]) -> None:
        self.step = step

    def wanted(self, row: Row) -> bool:
        return row.index != 0 or self.step < self.leave_at


@pytest.mark.parametrize("name", ["kandinsky", "sd"])
def test_the_step_hook_sees_every_step_and_its_predicted_clean_picture(
    name: str, request: pytest.FixtureRequest
) -> None:
    family: Family = request.getfixturevalue(name)
    previews = Previews(family)
    images = family.generate(rows_for(family, 3, 2, scheduler="ddim"), step_hook=previews)
    assert [(step, total, positions) for step, total, positions, _ in previews.seen] == [
        (step, 4, [0, 1]) for step in range(4)
    ]
    for row, image in enumerate(images):
        first, last = (to_image(previews.seen[step][3][row]) for step in (0, -1))
        # DDIM's last step lands on its predicted clean picture (exactly where the final alpha is 1, as here
        # for Kandinsky; SD's scheduler config keeps a last bit of noise)
        assert max_pixel_diff(image, last) <= 6
        assert mean_pixel_diff(image, first) > mean_pixel_diff(image, last), (
            "an early preview is only an estimate"
        )


@pytest.mark.parametrize(("name", "scheduler"), [("kandinsky", "dpmpp"), ("sd", "dpmpp"), ("sd", "pndm")])
def test_a_row_leaving_a_multistep_batch_leaves_the_others_as_they_are_alone(
    name: str, scheduler: str, request: pytest.FixtureRequest
) -> None:
    """Each row keeps its own scheduler history, so the row that stays finishes as it would alone."""
    family: Family = request.getfixturevalue(name)
    previews = Previews(family)
    batch = rows_for(family, 5, 2, scheduler=scheduler)
    images = family.generate(batch, LeaveAfter(2), step_hook=previews)
    assert images[0] is None and images[1] is not None
    assert [positions for _, _, positions, _ in previews.seen][:3] == [[0, 1], [1], [1]]
    alone = family.generate([batch[1]])[0]
    assert max_pixel_diff(images[1], alone) <= TOLERANCE


def test_the_families_reach_no_private_state_of_diffusers_objects() -> None:
    """Only our own ``self._x``; no pipeline callbacks and no scheduler history edited from outside."""
    forbidden = re.compile(r"(?<!\bself)(?<!\bcls)\._[A-Za-z]|model_outputs|callback_on_step_end")
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(FAMILIES.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line)
    ]
    assert not found, "\n".join(found)
