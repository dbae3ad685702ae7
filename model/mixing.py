"""Embedding arithmetic: signed weighted sums, renormalisation, and slerp interpolation.

The families embed each ingredient with the model's own encoders (unCLIP: texts with the CLIP text encoder,
mixed before the prior or each through the prior, images through the CLIP image encoder; Stable Diffusion:
the text encoder, IP-Adapter for images) and call ``mix_embeddings``, or ``mix_token_states`` for a text
encoder's per-token states whose ingredients differ in length. Every operation acts on the last dimension, so
it serves one embedding per image ([D]) and one per token ([tokens, D]) alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_EPS = 1e-8


def weighted_sum(embeddings: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """sum_i w_i * e_i, with signed weights ("a red circle" - "red" + "blue")."""
    if len(embeddings) != len(weights) or not embeddings:
        raise ValueError("need one weight per embedding, and at least one embedding")
    return sum((w * e for w, e in zip(weights, embeddings, strict=True)), torch.zeros_like(embeddings[0]))


def renormalize(
    mixed: torch.Tensor, embeddings: Sequence[torch.Tensor], weights: Sequence[float]
) -> torch.Tensor:
    """Rescale ``mixed`` to the ingredients' average norm (weighted by |w|).

    A signed sum such as a - b + c has a norm no real embedding has; the decoder was trained on real ones.
    """
    norms = torch.stack([e.float().norm(dim=-1) for e in embeddings])  # [n, ...]
    scale = torch.tensor([abs(w) for w in weights], dtype=norms.dtype, device=norms.device)
    scale = scale.view(-1, *([1] * (norms.dim() - 1)))
    target = (norms * scale).sum(0) / scale.sum().clamp_min(_EPS)
    current = mixed.float().norm(dim=-1).clamp_min(_EPS)
    return (mixed.float() * (target / current).unsqueeze(-1)).to(mixed.dtype)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation from a (t=0) to b (t=1); falls back to a straight line for parallel vectors."""
    a32, b32 = a.float(), b.float()
    cos = (
        a32
        / a32.norm(dim=-1, keepdim=True).clamp_min(_EPS)
        * b32
        / b32.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    )
    cos = cos.sum(-1, keepdim=True).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    sin = torch.sin(theta)
    parallel = sin.abs() < 1e-6
    safe_sin = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, torch.full_like(sin, 1.0 - t), torch.sin((1.0 - t) * theta) / safe_sin)
    wb = torch.where(parallel, torch.full_like(sin, t), torch.sin(t * theta) / safe_sin)
    return (wa * a32 + wb * b32).to(a.dtype)


def mix_embeddings(
    embeddings: Sequence[torch.Tensor],
    weights: Sequence[float],
    *,
    interpolation: float | None = None,
    renormalize_result: bool = True,
) -> torch.Tensor:
    """The mix a request asks for: slerp between two weighted ingredients, or their (renormalised) sum."""
    if interpolation is not None:
        if len(embeddings) != 2:
            raise ValueError("interpolation needs exactly two ingredients")
        return slerp(weights[0] * embeddings[0], weights[1] * embeddings[1], interpolation)
    mixed = weighted_sum(embeddings, weights)
    return renormalize(mixed, embeddings, weights) if renormalize_result else mixed


def mix_token_states(
    states: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    weights: Sequence[float],
    *,
    interpolation: float | None = None,
    renormalize_result: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mix of texts' per-token states [T, D] under their attention masks [T]: (states, mask).

    Each ingredient counts only at its own tokens (its padding states are left out, as the encoder's reader
    masks them), the mix's mask is the union of the ingredients', and renormalisation gives each token the
    average norm of the ingredients present there (weighted by |w|). Slerp runs token by token.
    """
    if not (len(states) == len(masks) == len(weights)) or not states:
        raise ValueError("need one mask and one weight per token state, and at least one")
    present = torch.stack([mask.bool() for mask in masks])  # [n, T]
    kept = [state * mask.unsqueeze(-1).to(state.dtype) for state, mask in zip(states, present, strict=True)]
    union = present.any(0)
    if interpolation is not None:
        return mix_embeddings(kept, weights, interpolation=interpolation), union
    mixed = weighted_sum(kept, weights)
    if not renormalize_result:
        return mixed, union
    norms = torch.stack([state.float().norm(dim=-1) for state in kept])  # [n, T]
    scale = torch.tensor([abs(w) for w in weights], dtype=norms.dtype, device=norms.device)
    scale = scale.unsqueeze(-1) * present
    target = (norms * scale).sum(0) / scale.sum(0).clamp_min(_EPS)
    current = mixed.float().norm(dim=-1).clamp_min(_EPS)
    return (mixed.float() * (target / current).unsqueeze(-1)).to(mixed.dtype), union
