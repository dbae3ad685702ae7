"""Decoder candidates: several starting noises per picture, judged early and pruned, one finished.

A row becomes as many decoder rows as its request's ``candidates``, candidate k seeded with the row's
seed + k * CANDIDATE_SEED_STRIDE (candidate 0 is the row's own noise). They denoise side by side; at each stage
of the model's pruning schedule (``candidate_pruning`` in ``draftroom.json``: [share of the steps, candidates
kept] pairs, e.g. 8 -> 2 -> 1) each live candidate's predicted clean picture is decoded and scored by the
verifier against the row's text, and only each row's best ones go on (the denoising loop drops the others, as
it does a cancelled row), until one is left. On the embedded model the shape is settled early: the shape of
the predicted clean picture after 8 of 25 DDIM steps matched the finished picture's in 99.3% of 400 samples,
after 6 in 95.5%, after 4 in 89% (MODEL_CARD.md), so a first cut that keeps a few candidates can come sooner
than the final pick. The schedule changes which candidate finishes, so the model hash covers it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter
from collections.abc import Callable, Sequence

import PIL.Image
import torch

from model.engine.engine_common import resolved
from model.families.base import Row
from model.families.denoising import StepState
from model.families.verifier import AttributeVerifier

CANDIDATE_SEED_STRIDE = (
    1_000_003  # candidate k of a row is drawn with seed + k * stride; candidate 0 uses the seed
)
Pruning = tuple[tuple[float, int], ...]
"""(share of the decoder's steps, candidates each picture keeps after it), shares rising, counts falling to 1."""
LEGACY_PRUNING: Pruning = ((0.3, 1),)
"""The schedule of a model whose draftroom.json names none: one judgement, the way such models were drawn."""


def expand_rows(rows: Sequence[Row], counts: Sequence[int]) -> tuple[list[Row], list[int]]:
    """``counts[i]`` decoder rows for row i, and each decoder row's original index."""
    expanded: list[Row] = []
    owner: list[int] = []
    for index, (row, count) in enumerate(zip(rows, counts, strict=True)):
        expanded.append(row)  # candidate 0: the row itself
        owner.append(index)
        for k in range(1, count):
            request = dataclasses.replace(
                row.request, seed=resolved(row.request.seed) + k * CANDIDATE_SEED_STRIDE
            )
            expanded.append(Row(request, row.index, row.tag))
            owner.append(index)
    return expanded, owner


def collapse(
    images: Sequence[PIL.Image.Image | None], owner: Sequence[int], rows: int
) -> list[PIL.Image.Image | None]:
    """Each original row's image: the one of its decoder rows still there at the end (None if it left)."""
    out: list[PIL.Image.Image | None] = [None] * rows
    for image, index in zip(images, owner, strict=True):
        if image is not None:
            out[index] = image
    return out


def parse_pruning(value: object) -> Pruning:
    """A ``candidate_pruning`` setting as a schedule; ValueError says what is wrong with it."""
    problem = "candidate_pruning must be a list of [share of the steps, candidates kept] pairs"
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(problem)
    stages: list[tuple[float, int]] = []
    for stage in value:
        if not isinstance(stage, list | tuple) or len(stage) != 2:
            raise ValueError(problem)
        share, keep = stage
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise ValueError("candidate_pruning: each share of the steps must be above 0 and at most 1")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError("candidate_pruning: each count of candidates kept must be a whole number >= 1")
        stages.append((float(share), keep))
    if any(b[0] <= a[0] or b[1] >= a[1] for a, b in itertools.pairwise(stages)):
        raise ValueError("candidate_pruning: shares must rise and counts kept must fall from stage to stage")
    if stages[-1][1] != 1:
        raise ValueError("candidate_pruning: the last stage must keep 1 candidate")
    return tuple(stages)


def stage_step(share: float, steps: int) -> int:
    """The 0-based step after which a stage judges: ``share`` of the schedule, at least the first step."""
    return max(0, math.ceil(share * steps) - 1)


def pruning_steps(schedule: Pruning, steps: int) -> dict[int, int]:
    """Step -> candidates each picture keeps after it; stages that meet on one step keep the fewest."""
    keep_after: dict[int, int] = {}
    for share, keep in schedule:
        keep_after[stage_step(share, steps)] = keep  # counts fall, so a later stage on the same step wins
    return keep_after


class CandidatePicker:
    """The denoising loop's picker: at each step of the pruning schedule it returns the batch positions to keep,
    each row's best-scored candidates, down to one per row at the last stage."""

    def __init__(
        self,
        owner: Sequence[int],
        texts: dict[int, torch.Tensor],
        verifier: AttributeVerifier,
        decode: Callable[[torch.Tensor], torch.Tensor],
        steps: int,
        schedule: Pruning = LEGACY_PRUNING,
    ) -> None:
        self._owner = list(owner)
        self._texts = texts  # the text embedding [D] of each original row that has candidates
        self._verifier = verifier
        self._decode = decode
        self._keep_after = pruning_steps(schedule, steps)

    def __call__(self, state: StepState) -> list[int] | None:
        keep = self._keep_after.get(state.step)
        if keep is None:
            return None
        owners = [self._owner[p] for p in state.positions]
        counts = Counter(owners)
        contested = [i for i, row in enumerate(owners) if counts[row] > keep]
        if not contested:
            return None
        parameters = next(self._verifier.parameters())
        clean = state.predicted_clean()[contested]
        pixels = self._decode(clean).to(parameters.device, parameters.dtype)
        texts = torch.stack([self._texts[owners[i]] for i in contested]).to(pixels)
        scores = self._verifier.score(texts, pixels).tolist()
        ranked: dict[
            int, list[tuple[float, int]]
        ] = {}  # row -> (-score, position): best first, ties: earlier
        for index, score in zip(contested, scores, strict=True):
            ranked.setdefault(owners[index], []).append((-score, index))
        kept = [index for entries in ranked.values() for _, index in sorted(entries)[:keep]]
        settled = [i for i, row in enumerate(owners) if counts[row] <= keep]
        return sorted(settled + kept)
