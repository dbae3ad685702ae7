"""Embedding arithmetic: signed sums, renormalisation to the average norm, slerp."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model.mixing import mix_embeddings, mix_token_states, renormalize, slerp, weighted_sum


def vec(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_signed_weighted_sum() -> None:
    circle, red, blue = vec(1, 1, 0), vec(1, 0, 0), vec(0, 0, 1)
    assert torch.equal(weighted_sum([circle, red, blue], [1.0, -1.0, 1.0]), vec(0, 1, 1))
    assert torch.equal(weighted_sum([red], [-2.0]), vec(-2, 0, 0))


def test_renormalize_scales_to_the_weighted_average_norm_and_keeps_direction() -> None:
    a, b = vec(3, 0), vec(0, 1)
    mixed = weighted_sum([a, b], [1.0, -3.0])  # (3, -3)
    out = renormalize(mixed, [a, b], [1.0, -3.0])
    expected_norm = (1 * 3 + 3 * 1) / 4
    assert out.norm().item() == pytest.approx(expected_norm)
    assert torch.allclose(out / out.norm(), mixed / mixed.norm())


def test_renormalize_acts_per_token() -> None:
    a = torch.tensor([[2.0, 0.0], [0.0, 10.0]])  # two tokens with different norms
    out = renormalize(a * 5, [a], [1.0])
    assert torch.allclose(out.norm(dim=-1), torch.tensor([2.0, 10.0]))


def test_slerp_endpoints_and_midpoint() -> None:
    a, b = vec(1, 0), vec(0, 1)
    assert torch.allclose(slerp(a, b, 0.0), a)
    assert torch.allclose(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid, vec(math.sqrt(0.5), math.sqrt(0.5)), atol=1e-6)


def test_slerp_of_parallel_vectors_is_linear() -> None:
    a = vec(1, 2)
    assert torch.allclose(slerp(a, 3 * a, 0.5), 2 * a)


@settings(max_examples=50, deadline=None)
@given(
    st.floats(0, 1),
    st.lists(st.floats(-5, 5), min_size=4, max_size=4),
    st.lists(st.floats(-5, 5), min_size=4, max_size=4),
)
def test_slerp_keeps_unit_vectors_on_the_sphere(t: float, xs: list[float], ys: list[float]) -> None:
    a, b = torch.tensor(xs), torch.tensor(ys)
    if a.norm() < 1e-2 or b.norm() < 1e-2 or torch.cosine_similarity(a, b, dim=0) < -0.99:
        return
    a, b = a / a.norm(), b / b.norm()
    assert slerp(a, b, t).norm().item() == pytest.approx(1.0, abs=1e-4)


def test_mix_embeddings_uses_weights_for_slerp_and_sum() -> None:
    a, b = vec(1, 0), vec(0, 1)
    assert torch.allclose(mix_embeddings([a, b], [1.0, -1.0], interpolation=1.0), -b)
    summed = mix_embeddings([a, b], [1.0, 1.0], renormalize_result=False)
    assert torch.equal(summed, vec(1, 1))
    assert mix_embeddings([a, b], [1.0, 1.0]).norm().item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mix_embeddings([a], [1.0], interpolation=0.5)


def test_token_states_mix_only_where_each_text_has_tokens() -> None:
    """A text's padding states are left out of the sum; the mix attends to the union of the texts' tokens."""
    long = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    short = torch.tensor([[0.0, 1.0], [9.0, 9.0], [9.0, 9.0]])  # its last two states are padding
    masks = [torch.tensor([True, True, False]), torch.tensor([True, False, False])]
    states, mask = mix_token_states([long, short], masks, [1.0, -1.0], renormalize_result=False)
    assert torch.equal(mask, torch.tensor([True, True, False]))
    assert torch.equal(states[:2], torch.tensor([[1.0, -1.0], [0.0, 2.0]]))


def test_token_states_renormalise_to_the_texts_present_at_each_token() -> None:
    a = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
    b = torch.tensor([[0.0, 1.0], [5.0, 5.0]])
    masks = [torch.tensor([True, True]), torch.tensor([True, False])]
    states, _ = mix_token_states([a, b], masks, [1.0, 1.0])
    assert states.norm(dim=-1).tolist() == pytest.approx([2.0, 4.0])  # (3 + 1) / 2; only a at token 2
    assert torch.allclose(states[0] / states[0].norm(), vec(3, 1) / vec(3, 1).norm())


def test_token_states_slerp_and_bad_arguments() -> None:
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    ones = torch.tensor([True])
    states, _ = mix_token_states([a, b], [ones, ones], [1.0, 1.0], interpolation=1.0)
    assert torch.allclose(states, b)
    with pytest.raises(ValueError):
        mix_token_states([a], [ones, ones], [1.0])
