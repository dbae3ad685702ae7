"""Image guidance: the decay schedules, the per-row pull, and its effect on generated images."""

from __future__ import annotations

import PIL.Image
import pytest
import torch
from image_checks import mean_pixel_diff

from model.engine.engine_common import GenerationRequest
from model.engine.validation import resolve_request
from model.families import Family, Row
from model.guidance import ImageGuidance, RowGuidance, decay_factor

REFERENCE = PIL.Image.new("RGB", (32, 32), (240, 200, 20))
REFERENCE.paste((20, 40, 200), (0, 0, 16, 32))


def test_decay_schedules() -> None:
    assert [decay_factor("none", s, 5) for s in range(5)] == [1.0] * 5
    assert [decay_factor("linear", s, 5) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    cosine = [decay_factor("cosine", s, 5) for s in range(5)]
    assert cosine[0] == 1.0 and cosine[2] == pytest.approx(0.5) and cosine[4] == pytest.approx(0.0)
    assert decay_factor("linear", 0, 1) == 1.0
    with pytest.raises(ValueError):
        decay_factor("exp", 0, 2)


def test_each_row_is_pulled_toward_its_own_reference_by_its_own_scale() -> None:
    latents = torch.zeros(3, 2, 2, 2)
    rows = [
        RowGuidance(torch.ones(2, 2, 2), 0.5),
        None,
        RowGuidance(torch.full((2, 2, 2), -2.0), 0.25, "linear"),
    ]
    guidance = ImageGuidance(rows, latents)
    pulled = guidance.apply(latents, step=0, total=2, scheduler=None, next_timestep=None)
    assert torch.equal(pulled[0], torch.full((2, 2, 2), 0.5))
    assert torch.equal(pulled[1], torch.zeros(2, 2, 2))
    assert torch.equal(pulled[2], torch.full((2, 2, 2), -0.5))
    assert torch.equal(
        guidance.apply(latents, step=1, total=2, scheduler=None, next_timestep=None)[2], torch.zeros(2, 2, 2)
    ), "linear decay reaches 0 at the last step"
    guidance.select([2])
    assert guidance.apply(latents[:1], 0, 2, None, None).shape == (1, 2, 2, 2)


def generate(family: Family, scale: float, **fields: object) -> PIL.Image.Image:
    request = resolve_request(
        GenerationRequest(
            prompt="a red circle",
            seed=4,
            steps=4,
            guidance_image=REFERENCE,
            image_guidance_scale=scale,
            **fields,
        ),  # type: ignore[arg-type]
        family.info,
    )
    return family.generate([Row(request)])[0]


def reference_through_autoencoder(family: Family) -> PIL.Image.Image:
    """What the reference looks like after the model's own autoencoder (random here, so not the reference)."""
    latents = family.encode_reference(REFERENCE, 32, 32)[None]
    pixels = family.decode_latents(latents)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
    return PIL.Image.fromarray(pixels)


@pytest.mark.parametrize(
    ("name", "noised"),
    [("kandinsky", False), ("kandinsky", True), ("sd", False), ("sd", True), ("sdxl", False)],
)
def test_distance_to_the_reference_falls_as_the_scale_rises(
    name: str, noised: bool, request: pytest.FixtureRequest
) -> None:
    family: Family = request.getfixturevalue(name)
    target = reference_through_autoencoder(family)
    distances = [
        mean_pixel_diff(generate(family, scale, image_guidance_noised=noised), target)
        for scale in (0.0, 0.5, 0.8, 1.0)
    ]
    assert distances == sorted(distances, reverse=True) and distances[0] > distances[-1] + 5
    if not noised:
        assert distances[-1] < 1.0, "scale 1 without decay lands on the reference at the last step"


def test_decay_weakens_the_pull(kandinsky: Family) -> None:
    target = reference_through_autoencoder(kandinsky)
    none, linear = (
        mean_pixel_diff(generate(kandinsky, 0.5, image_guidance_decay=d), target) for d in ("none", "linear")
    )
    assert none < linear
