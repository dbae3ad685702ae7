"""Decoder candidates: each plain-text picture starts from several noises and finishes the one the verifier picks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import PIL.Image
import pytest
import tiny_models
import torch
from conftest import TINY_SETTINGS
from diffusers import DDIMScheduler
from image_checks import max_pixel_diff

from model.engine.engine_common import (
    GenerationRequest,
    JobStatus,
    MixIngredient,
    Progress,
    RequestError,
    request_params,
)
from model.engine.validation import resolve_request
from model.families import BatchCancelled, Kandinsky22Family, ModelLoadError, Row, load_family
from model.families.candidates import CANDIDATE_SEED_STRIDE, parse_pruning, pruning_steps, stage_step
from model.families.schedulers import predicted_clean
from model.families.verifier import ANY_OF, ONE_OF, AttributeVerifier, LabelGroup

RED = PIL.Image.new("RGB", (32, 32), (200, 30, 30))
CANDIDATES = 3
STEPS = 4  # without a candidate_pruning setting, candidates are judged after step stage_step(0.3, 4) + 1 = 2


@pytest.fixture(scope="module")
def judged(tiny_root: Path, kandinsky_path: Path) -> Kandinsky22Family:
    root = tiny_root / "judged"
    if not root.exists():
        shutil.copytree(kandinsky_path, root)
        tiny_models.add_verifier(root)
        (root / "draftroom.json").write_text(json.dumps({**TINY_SETTINGS, "decoder_candidates": CANDIDATES}))
    family = load_family(root, device="cpu")
    assert isinstance(family, Kandinsky22Family)
    return family


PRUNING = [[0.25, 2], [0.5, 1]]  # on STEPS = 4: 4 candidates -> 2 after the first step -> 1 after the second


@pytest.fixture(scope="module")
def pruned(tiny_root: Path, kandinsky_path: Path) -> Kandinsky22Family:
    root = tiny_root / "pruned"
    if not root.exists():
        shutil.copytree(kandinsky_path, root)
        tiny_models.add_verifier(root)
        settings = {**TINY_SETTINGS, "decoder_candidates": 4, "candidate_pruning": PRUNING}
        (root / "draftroom.json").write_text(json.dumps(settings))
    family = load_family(root, device="cpu")
    assert isinstance(family, Kandinsky22Family)
    return family


def rows(family: Kandinsky22Family, prompts: list[str], seed: int = 5, **fields: object) -> list[Row]:
    return [
        Row(
            resolve_request(
                GenerationRequest(prompt=p, seed=seed + i, steps=STEPS, **fields),  # type: ignore[arg-type]
                family.info,
            )
        )
        for i, p in enumerate(prompts)
    ]


def finished_alone(family: Kandinsky22Family, row: Row, seed: int):
    """The picture the decoder finishes from ``seed``'s noise on ``row``'s prior embedding, with no candidates."""
    embeds, negatives = family.embed_rows([row])
    return family.decoder(
        image_embeds=embeds,
        negative_image_embeds=negatives,
        height=32,
        width=32,
        num_inference_steps=STEPS,
        guidance_scale=row.request.guidance_scale,
        generator=torch.Generator().manual_seed(seed),
        output_type="pil",
    ).images[0]


class ScriptedScores:
    """Stands in for the verifier's score: hands out fixed scores, recording when and on how many it was asked."""

    def __init__(self, scores: list[float]) -> None:
        self.scores, self.calls = scores, []

    def __call__(self, text_embeds: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        self.calls.append((text_embeds.shape[0], tuple(pixels.shape[1:])))
        return torch.tensor(self.scores[: len(pixels)])


class ScoresPerCall:
    """Stands in for the verifier's score: one list of scores per call, recording how many it was asked."""

    def __init__(self, *scores: list[float]) -> None:
        self.scores, self.calls = list(scores), list[int]()

    def __call__(self, text_embeds: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(pixels))
        return torch.tensor(self.scores[len(self.calls) - 1])


def unet_batch_sizes(
    family: Kandinsky22Family, batch: list[Row]
) -> tuple[list[PIL.Image.Image | None], list[int]]:
    """The family's pictures for ``batch``, and the rows the decoder's UNet ran at each step."""
    sizes: list[int] = []
    hook = family.decoder.unet.register_forward_pre_hook(lambda _, args: sizes.append(args[0].shape[0]))
    try:
        return family.generate(batch), sizes
    finally:
        hook.remove()


def test_pruning_drops_rows_stage_by_stage_and_finishes_the_last_pick(
    pruned: Kandinsky22Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = ScoresPerCall([0.0, 5.0, 1.0, 4.0], [2.0, 7.0])  # keeps candidates 1 and 3, then 3
    monkeypatch.setattr(pruned.verifier, "score", scripted)
    row = rows(pruned, ["a red circle on a white background"])[0]
    images, sizes = unet_batch_sizes(pruned, [row])
    cfg = sizes[-1]  # a row is 2 UNet rows with CFG
    assert sizes == [4 * cfg, 2 * cfg, cfg, cfg], "4 candidates, then 2, then 1 through the loop"
    assert scripted.calls == [4, 2], "judged twice: all 4, then the 2 kept"
    expected = finished_alone(pruned, row, row.seed + 3 * CANDIDATE_SEED_STRIDE)
    assert max_pixel_diff(images[0], expected) <= 2, "the last pick finishes as it would alone"


def test_pruning_finishes_the_full_run_pick_when_each_stage_keeps_it(
    pruned: Kandinsky22Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pick of one judgement of all candidates at the last stage's step, if the earlier stages keep it.

    Not in general: a candidate cut at the first stage might have scored best at the last (the verifier judges
    blurrier predictions earlier), which is the accuracy the schedule trades for time (MODEL_CARD.md)."""
    row = rows(pruned, ["a blue square"], seed=21)[0]
    monkeypatch.setattr(pruned.verifier, "score", ScoresPerCall([0.0, 5.0, 1.0, 7.0]))
    monkeypatch.setattr(pruned, "_pruning", parse_pruning([[0.5, 1]]))
    full, full_sizes = unet_batch_sizes(pruned, [row])
    monkeypatch.setattr(pruned.verifier, "score", ScoresPerCall([0.0, 5.0, 1.0, 7.0], [5.0, 7.0]))
    monkeypatch.setattr(pruned, "_pruning", parse_pruning(PRUNING))
    early, early_sizes = unet_batch_sizes(pruned, [row])
    assert sum(early_sizes) < sum(full_sizes)
    assert max_pixel_diff(early[0], full[0]) <= 2, "the same candidate, finished the same"
    assert max_pixel_diff(early[0], finished_alone(pruned, row, row.seed + 3 * CANDIDATE_SEED_STRIDE)) <= 2


def test_a_seed_reproduces_its_picture_with_pruning(pruned: Kandinsky22Family) -> None:
    first = pruned.generate(rows(pruned, ["a green star"], seed=11))[0]
    again = pruned.generate(rows(pruned, ["a red circle", "a green star"], seed=10))[1]
    assert max_pixel_diff(first, again) <= 2, "the same seed keeps the same candidates, in any batch"


def test_a_many_row_job_does_not_hold_a_one_row_job_beyond_the_cap(
    judged: Kandinsky22Family, engine_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[list[tuple[str, int]]] = []
    generate = judged.generate

    def spy(batch: list[Row], *args: object) -> list[PIL.Image.Image | None]:
        batches.append([(row.request.user, int(row.request.candidates or 1)) for row in batch])
        return generate(batch, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(judged, "generate", spy)
    engine = engine_for(judged, max_batch=8, gather_s=0.2)
    many = GenerationRequest(prompt="a red circle", seed=1, steps=STEPS, num_images=8, candidates=8, user="a")
    one = GenerationRequest(prompt="a blue square", seed=2, steps=STEPS, candidates=1, user="b")
    big, small = engine.submit(many), engine.submit(one)
    assert len(small.result(60).images) == 1 and len(big.result(120).images) == 8
    assert batches[:2] == [[("a", 8)], [("b", 1)]], "b's row waits for one 8-row batch, not for a's 64 rows"
    assert all(sum(rows for _, rows in batch) <= 8 for batch in batches)


def test_the_default_batch_is_eight_images_at_the_models_candidates(
    judged: Kandinsky22Family, kandinsky: Kandinsky22Family, engine_for
) -> None:
    assert (engine_for(judged).max_batch, engine_for(kandinsky).max_batch) == (8 * CANDIDATES, 8)


def test_each_picture_is_the_candidate_the_verifier_scores_highest(
    judged: Kandinsky22Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = ["a red circle on a white background", "a blue square"]
    scripted = ScriptedScores([0.0, 0.0, 5.0, 0.0, 5.0, 0.0])  # row 0 keeps candidate 2, row 1 candidate 1
    monkeypatch.setattr(judged.verifier, "score", scripted)
    batch = rows(judged, prompts)
    images = judged.generate(batch)
    assert scripted.calls == [(6, (3, 32, 32))], "judged once, on every candidate's predicted clean picture"
    for image, row, kept in zip(images, batch, (2, 1), strict=True):
        assert (
            max_pixel_diff(image, finished_alone(judged, row, row.seed + kept * CANDIDATE_SEED_STRIDE)) <= 2
        ), "the kept candidate finishes as it would alone"
        assert max_pixel_diff(image, finished_alone(judged, row, row.seed)) > 10, "not as candidate 0 would"


def test_candidates_are_judged_against_their_own_text(
    judged: Kandinsky22Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[torch.Tensor] = []
    original = judged.verifier.score

    def spy(text_embeds: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        seen.append(text_embeds)
        return original(text_embeds, pixels)

    monkeypatch.setattr(judged.verifier, "score", spy)
    prompts = ["a red circle", "a blue square"]
    judged.generate(rows(judged, prompts))
    texts = judged.embed_texts(prompts)
    assert torch.allclose(seen[0], texts.repeat_interleave(CANDIDATES, 0), atol=1e-6)


def test_engine_progress_counts_pictures_not_candidates(judged: Kandinsky22Family, engine_for) -> None:
    engine = engine_for(judged)
    handle = engine.submit(GenerationRequest(prompt="a red circle", seed=1, steps=STEPS, num_images=2))
    events: list[Progress] = []
    handle.subscribe(events.append)
    assert len(handle.result(60).images) == 2
    running = [(e.step, e.total) for e in events if e.status is JobStatus.RUNNING]
    assert running and all(total == 2 * STEPS and step <= total for step, total in running)
    assert [step for step, _ in running] == sorted(step for step, _ in running)
    assert events[-1].status is JobStatus.SUCCEEDED and events[-1].images_done == 2


def test_a_seed_reproduces_its_picture_with_candidates(judged: Kandinsky22Family) -> None:
    first = judged.generate(rows(judged, ["a green star"], seed=11))[0]
    again = judged.generate(rows(judged, ["a green star", "a red circle"], seed=11))[0]
    assert max_pixel_diff(first, again) <= 2, "the same seed keeps the same candidate, in any batch"


def test_image_space_mixes_and_guided_rows_keep_one_candidate(
    judged: Kandinsky22Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = ScriptedScores([0.0, 9.0, 0.0])
    monkeypatch.setattr(judged.verifier, "score", scripted)
    mixed = rows(judged, ["a red circle"], mix=(MixIngredient(1.0, text="a red circle"),), mix_space="image")
    guided = rows(judged, ["a red circle"], guidance_image=RED, image_guidance_scale=0.5)
    plain = rows(judged, ["a red circle"])
    judged.generate([mixed[0], guided[0], plain[0]])
    assert scripted.calls == [(3, (3, 32, 32))], "only the plain-text row has candidates"


class CancelFirstRow:
    """A BatchControl whose first job is cancelled at the first step, before the candidates are judged."""

    def __init__(self, cancelled: object) -> None:
        self.cancelled = cancelled

    def on_stage(self, stage, rows) -> None:
        pass

    def on_step(self, step: int, total: int, rows) -> None:
        pass

    def wanted(self, row: Row) -> bool:
        return row.tag is not self.cancelled


def test_a_cancelled_row_takes_its_candidates_with_it(
    judged: Kandinsky22Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = ScriptedScores([0.0, 0.0, 1.0])
    monkeypatch.setattr(judged.verifier, "score", scripted)
    doomed, kept = object(), object()
    batch = [
        Row(row.request, 0, tag)
        for row, tag in zip(rows(judged, ["a red circle", "a blue square"]), (doomed, kept), strict=True)
    ]
    images = judged.generate(batch, CancelFirstRow(doomed))
    assert images[0] is None and images[1] is not None
    assert scripted.calls == [(3, (3, 32, 32))], "only the live row's candidates are judged"
    expected = finished_alone(judged, batch[1], batch[1].seed + 2 * CANDIDATE_SEED_STRIDE)
    assert max_pixel_diff(images[1], expected) <= 2
    with pytest.raises(BatchCancelled):
        judged.generate(rows(judged, ["a red circle"]), CancelFirstRow(None))  # rows made here have tag None


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_predicted_clean_inverts_the_forward_process(prediction_type: str) -> None:
    scheduler = DDIMScheduler(prediction_type=prediction_type)
    clean, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = torch.tensor(600)
    noisy = scheduler.add_noise(clean, noise, t)
    output = {"epsilon": noise, "v_prediction": scheduler.get_velocity(clean, noise, t), "sample": clean}
    with_variance = torch.cat([output[prediction_type], torch.zeros_like(noise)], dim=1)  # learned variance
    assert torch.allclose(predicted_clean(scheduler, t, noisy, with_variance), clean, atol=1e-4)


def test_stage_step_is_a_share_of_the_schedule() -> None:
    assert [stage_step(0.3, n) for n in (1, 2, 10, 25, 50)] == [0, 0, 2, 7, 14]
    assert pruning_steps(((0.15, 2), (0.3, 1)), 15) == {2: 2, 4: 1}
    assert pruning_steps(((0.15, 2), (0.3, 1)), 2) == {0: 1}, "stages on one step keep the fewest"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "pairs"),
        ([[0.3]], "pairs"),
        ([[0, 1]], "above 0"),
        ([[1.5, 1]], "above 0"),
        ([[0.3, 0]], ">= 1"),
        ([[0.3, 2.5]], ">= 1"),
        ([[0.3, 2], [0.2, 1]], "rise"),
        ([[0.1, 2], [0.3, 2], [0.5, 1]], "fall"),
        ([[0.1, 4], [0.3, 2]], "keep 1"),
    ],
)
def test_a_pruning_schedule_is_checked(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_pruning(value)


def test_verifier_scores_a_picture_showing_the_asked_labels_highest() -> None:
    groups = (
        LabelGroup("shape", ANY_OF, ("circle", "square", "star")),
        LabelGroup("bg", ONE_OF, ("white", "blue")),
    )
    verifier = AttributeVerifier(groups, 4)
    asked = torch.tensor([[9.0, -9.0, -9.0, 9.0, -9.0]])  # a circle on white

    def scored(seen: list[float]) -> float:
        verifier.text_logits = lambda _: asked  # type: ignore[method-assign]
        verifier.image_logits = lambda _: torch.tensor([seen])  # type: ignore[method-assign]
        return verifier.score(torch.zeros(1, 4), torch.zeros(1, 3, 8, 8)).item()

    right = scored([6.0, -6.0, -6.0, 6.0, -6.0])
    assert right > scored([-6.0, 6.0, -6.0, 6.0, -6.0]), "a square scores lower"
    assert right > scored([6.0, -6.0, -6.0, -6.0, 6.0]), "a blue background scores lower"
    assert right > scored([6.0, 6.0, -6.0, 6.0, -6.0]), "an extra square scores lower"


def test_verifier_round_trips_through_safetensors(tmp_path: Path) -> None:
    groups = (LabelGroup("shape", ANY_OF, ("circle", "square")), LabelGroup("bg", ONE_OF, ("white", "blue")))
    torch.manual_seed(0)
    verifier = AttributeVerifier(groups, 6, hidden=8).eval()
    verifier.save_pretrained(tmp_path / "v")
    assert not [p for p in (tmp_path / "v").rglob("*") if p.suffix in (".bin", ".pt", ".pkl")]
    loaded = AttributeVerifier.from_pretrained(tmp_path / "v")
    text, pixels = torch.randn(3, 6), torch.rand(3, 3, 16, 16)
    assert loaded.groups == groups
    assert torch.allclose(loaded.score(text, pixels), verifier.score(text, pixels), atol=1e-5)
    (tmp_path / "v" / "verifier.json").write_text(json.dumps({"groups": []}))
    with pytest.raises(ValueError, match=r"verifier\.json"):
        AttributeVerifier.from_pretrained(tmp_path / "v")


def test_loading_rules_for_candidates(tmp_path: Path, kandinsky_path: Path) -> None:
    root = tmp_path / "k"
    shutil.copytree(kandinsky_path, root)
    (root / "draftroom.json").write_text(json.dumps({**TINY_SETTINGS, "decoder_candidates": 2}))
    with pytest.raises(ModelLoadError, match="decoder_candidates needs a verifier"):
        load_family(root, device="cpu")
    (root / "draftroom.json").write_text(json.dumps({**TINY_SETTINGS, "decoder_candidates": 0}))
    with pytest.raises(ModelLoadError, match="decoder_candidates must be at least 1"):
        load_family(root, device="cpu")
    (root / "draftroom.json").write_text(json.dumps(TINY_SETTINGS))
    without = load_family(root, device="cpu").info.hash
    tiny_models.add_verifier(root)
    one = load_family(root, device="cpu").info.hash
    assert one != without, "the verifier's weights are part of the model's hash"
    (root / "draftroom.json").write_text(json.dumps({**TINY_SETTINGS, "prior_candidates": 2}))
    assert load_family(root, device="cpu").info.hash != one, "so is a setting that changes what is drawn"
    (root / "draftroom.json").write_text(
        json.dumps({**TINY_SETTINGS, "candidate_pruning": [[0.2, 2], [0.4, 1]]})
    )
    assert load_family(root, device="cpu").info.hash != one, "and when the verifier prunes the candidates"
    (root / "draftroom.json").write_text(json.dumps({**TINY_SETTINGS, "candidate_pruning": [[0.2, 2]]}))
    with pytest.raises(ModelLoadError, match="candidate_pruning: the last stage must keep 1"):
        load_family(root, device="cpu")
    (root / "draftroom.json").write_text(
        json.dumps({**TINY_SETTINGS, "decoder_candidates": 2, "name": "renamed", "default_steps": 7})
    )
    two = load_family(root, device="cpu").info
    assert (two.default_candidates, two.max_candidates) == (2, 16)
    assert two.hash == one, "defaults a request resolves and records (candidates, steps) are not"
    (root / "draftroom.json").write_text(json.dumps({**TINY_SETTINGS, "decoder_candidates": 17}))
    with pytest.raises(ModelLoadError, match="decoder_candidates must be at most 16"):
        load_family(root, device="cpu")


def test_each_request_picks_its_own_number_of_candidates(
    judged: Kandinsky22Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = ScriptedScores([0.0, 0.0, 0.0, 0.0, 7.0])
    monkeypatch.setattr(judged.verifier, "score", scripted)
    one = rows(judged, ["a red circle"], candidates=1)[0]
    five = rows(judged, ["a blue square"], seed=9, candidates=5)[0]
    assert (one.request.candidates, five.request.candidates) == (1, 5)
    images = judged.generate([one, five])
    assert scripted.calls == [(5, (3, 32, 32))], "only the row that asked for candidates has them"
    assert max_pixel_diff(images[0], finished_alone(judged, one, one.seed)) <= 2
    assert max_pixel_diff(images[1], finished_alone(judged, five, five.seed + 4 * CANDIDATE_SEED_STRIDE)) <= 2


def test_candidates_are_validated_against_the_model(
    judged: Kandinsky22Family, kandinsky: Kandinsky22Family
) -> None:
    assert resolve_request(GenerationRequest(prompt="x"), judged.info).candidates == CANDIDATES
    assert (
        request_params(resolve_request(GenerationRequest(prompt="x", candidates=2), judged.info))[
            "candidates"
        ]
        == 2
    )
    with pytest.raises(RequestError, match="between 1 and 16"):
        resolve_request(GenerationRequest(prompt="x", candidates=17), judged.info)
    with pytest.raises(RequestError, match="whole number"):
        resolve_request(GenerationRequest(prompt="x", candidates=2.5), judged.info)  # type: ignore[arg-type]
    texts = (MixIngredient(1.0, text="y"),)
    image_space = GenerationRequest(prompt="x", candidates=4, mix=texts, mix_space="image")
    with_image = GenerationRequest(prompt="x", candidates=4, mix=(*texts, MixIngredient(0.5, image=RED)))
    guided = GenerationRequest(prompt="x", candidates=4, guidance_image=RED, image_guidance_scale=0.5)
    assert [resolve_request(r, judged.info).candidates for r in (image_space, with_image, guided)] == [
        1,
        1,
        1,
    ], (
        "image-space mixes, mixes with images and guided pictures start from one noise, and say so in their "
        "recorded parameters"
    )
    text_space = GenerationRequest(prompt="x", candidates=4, mix=texts)
    assert resolve_request(text_space, judged.info).candidates == 4, "a text-space mix of texts has a text"
    assert resolve_request(GenerationRequest(prompt="x"), kandinsky.info).candidates == 1
    with pytest.raises(RequestError, match="no verifier"):
        resolve_request(GenerationRequest(prompt="x", candidates=2), kandinsky.info)


def test_the_verifier_judges_a_text_space_mix_by_its_mixed_text(judged: Kandinsky22Family) -> None:
    """The verifier reads a text embedding: a text-space mix's is the mix the prior was given."""
    mix = (MixIngredient(-1.0, text="red"), MixIngredient(1.0, text="blue"))
    plain = resolve_request(GenerationRequest(prompt="a red circle", seed=1), judged.info)
    mixed = resolve_request(GenerationRequest(prompt="a red circle", mix=mix, seed=1), judged.info)
    texts = judged.verifier_texts([plain, mixed])
    part = judged.text_part(mixed)
    assert part is not None
    assert texts[0].allclose(judged.embed_texts(["a red circle"])[0], atol=1e-5)
    assert texts[1].allclose(part[0].pooled, atol=1e-5)
    assert not texts[1].allclose(texts[0], atol=1e-3)
    image = judged.generate([Row(mixed)])[0]
    assert image is not None and image.size == (32, 32)
