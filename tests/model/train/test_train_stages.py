"""Training: the losses really fall, a run resumes where it stopped, and `--stage all` yields loadable
pipelines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline
from safetensors.torch import load_file

from model.engine.engine_common import GenerationRequest
from model.engine.validation import resolve_request
from model.families import Row, load_family
from model.families.upsampler import UpsamplerPipeline, bicubic
from model.families.verifier import AttributeVerifier
from model.train import networks
from model.train.__main__ import main as train_main
from model.train.autoencoder import reconstruction_loss
from model.train.clip import contrastive_loss, tokenize
from model.train.common import PRESETS, autocast, seed_everything
from model.train.export import CANDIDATE_PRUNING, DECODER_CANDIDATES
from model.train.tokenizer import train_tokenizer
from model.train.upsampler import (
    HIGH,
    PATCH,
    RESIDUAL_SCALE,
    SAMPLER_SHARE,
    crop,
    crop_corners,
    new_pipeline,
    training_timesteps,
    upsampler_unet,
)
from model.train.verifier import GROUPS, label_targets
from model.world import render_scenes, world_batch

TINY = PRESETS["tiny"]


def _fit(model: torch.nn.Module, loss_fn, steps: int = 20, lr: float = 2e-3) -> tuple[float, float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


def test_autoencoder_loss_falls_on_a_fixed_batch():
    seed_everything(0)
    batch = world_batch(0, 0, 8)
    model = networks.movq(TINY)

    def loss():
        recon = model.decode(model.encode(batch.pixels).latents, force_not_quantize=True).sample
        return reconstruction_loss(recon, batch.pixels, batch.masks)

    first, last = _fit(model, loss)
    assert last < 0.7 * first


def test_clip_loss_falls_on_a_fixed_batch(tmp_path: Path):
    seed_everything(0)
    tokenizer = train_tokenizer(tmp_path / "tokenizer", captions=2000)
    batch = world_batch(0, 0, 16)
    text, image = networks.text_encoder(TINY, tokenizer), networks.image_encoder(TINY)
    both = torch.nn.ModuleDict({"text": text, "image": image})
    scale = torch.tensor(2.659)
    ids = tokenize(tokenizer, batch.captions, torch.device("cpu"))

    def loss():
        return contrastive_loss(
            text(ids).text_embeds, image(pixel_values=batch.pixels).image_embeds, batch.captions, scale
        )

    first, last = _fit(both, loss)
    assert last < 0.7 * first


def test_verifier_loss_falls_on_a_fixed_batch_and_its_targets_match_the_scenes():
    seed_everything(0)
    batch = world_batch(0, 0, 16, two_object_prob=0.5)
    targets = label_targets(batch.scenes, torch.device("cpu"))
    for scene, row in zip(batch.scenes, targets, strict=True):
        shapes, colours, background = row.split([len(g.labels) for g in GROUPS])
        assert {GROUPS[0].labels[i] for i in shapes.nonzero().flatten()} == {o.shape for o in scene.objects}
        assert {GROUPS[1].labels[i] for i in colours.nonzero().flatten()} == {o.colour for o in scene.objects}
        assert GROUPS[2].labels[int(background.argmax())] == scene.background and background.sum() == 1
    verifier = AttributeVerifier(GROUPS, 8)
    text_embeds = torch.randn(16, 8)
    pixels = batch.pixels * 0.5 + 0.5

    def loss():
        return verifier.loss(verifier.image_logits(pixels), targets) + verifier.loss(
            verifier.text_logits(text_embeds), targets
        )

    first, last = _fit(verifier, loss)
    assert last < 0.7 * first


@pytest.mark.parametrize("precision, computed_in", [("auto", torch.float32), ("bf16", torch.bfloat16)])
def test_decoder_loss_falls_on_a_fixed_batch(precision: str, computed_in: torch.dtype):
    """Also under `--precision bf16` on a CPU, which really computes in bf16 (and "auto" keeps a CPU in
    fp32)."""
    seed_everything(0)
    unet, scheduler = networks.unet(TINY), networks.decoder_scheduler()
    latents, embeds = torch.randn(4, 4, 16, 16), torch.randn(4, 128)
    noise, t = torch.randn_like(latents), torch.tensor([100, 300, 500, 700])
    noisy = scheduler.add_noise(latents, noise, t)

    def loss():
        with autocast(torch.device("cpu"), precision):
            predicted = unet(
                noisy, t, encoder_hidden_states=None, added_cond_kwargs={"image_embeds": embeds}
            ).sample
        assert predicted.dtype == computed_in
        return torch.nn.functional.mse_loss(predicted[:, :4].float(), noise)

    first, last = _fit(unet, loss)
    assert last < 0.7 * first


def test_upsampler_loss_falls_on_fixed_patches():
    seed_everything(0)
    pipe = new_pipeline(upsampler_unet(TINY))
    batch = world_batch(0, 0, 4)
    target, _ = render_scenes(batch.scenes, size=HIGH)
    levels = torch.tensor([0, 50, 100, 250])
    base, condition = pipe.condition(batch.pixels, levels, torch.Generator().manual_seed(0))
    corners = crop_corners(batch.scenes, np.random.default_rng(0))
    residual = crop(target - base, corners) * RESIDUAL_SCALE
    condition = crop(condition, corners)
    noise, t = torch.randn_like(residual), torch.tensor([100, 300, 500, 700])
    noisy = pipe.scheduler.add_noise(residual, noise, t)
    velocity = pipe.scheduler.get_velocity(residual, noise, t)

    def loss():
        return torch.nn.functional.mse_loss(pipe.predict(noisy, t, condition, levels), velocity)

    first, last = _fit(pipe.unet, loss)
    assert last < 0.7 * first


def test_upsampler_trains_most_where_its_few_step_sampler_starts():
    t = training_timesteps(20_000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert t.min() >= 0 and t.max() <= 999
    late = (t >= 900).float().mean().item()
    # the last tenth gets its uniform tenth plus the sampler's share; the rest of the schedule is still trained
    assert late == pytest.approx(SAMPLER_SHARE + 0.1 * (1 - SAMPLER_SHARE), abs=0.02)
    assert (t < 100).float().mean().item() == pytest.approx(0.1 * (1 - SAMPLER_SHARE), abs=0.01)


def test_upsampler_patches_cut_target_and_condition_at_the_same_place():
    batch = world_batch(1, 0, 6)
    target, _ = render_scenes(batch.scenes, size=HIGH)
    corners = crop_corners(batch.scenes, np.random.default_rng(1))
    assert all(0 <= c <= HIGH - PATCH for corner in corners for c in corner)
    patches = crop(target, corners)
    assert patches.shape == (6, 3, PATCH, PATCH)
    x, y = corners[2]
    assert torch.equal(patches[2], target[2, :, y : y + PATCH, x : x + PATCH])
    # the 64 px picture is the 256 px one, area-averaged: bicubic of it lies close to the target
    assert (bicubic(batch.pixels) - target).abs().mean() < 0.05


def test_upsampler_stage_writes_a_pipeline_the_model_loads(tmp_path: Path, kandinsky_path: Path):
    run = tmp_path / "run"
    train_main(["--stage", "upsampler", "--out", str(run), "--preset", "tiny", "--steps", "2"])
    report = json.loads((run / "upsampler" / "report.json").read_text())
    assert report["steps_done"] == 2 and report["psnr_bicubic"] > 20
    assert {f"psnr_upsampler_{n}_steps" for n in (1, 2, 4)} <= set(report)
    model = tmp_path / "model"
    shutil.copytree(kandinsky_path, model)
    UpsamplerPipeline.from_pretrained(run / "upsampler" / "pipeline").to(torch.float16).save_pretrained(
        model / "upsampler"
    )
    family = load_family(model, device="cpu")
    request = resolve_request(
        GenerationRequest(prompt="a circle", seed=1, steps=2, upscale=True), family.info
    )
    assert family.generate([Row(request)])[0].size == (128, 128)


def test_tokenizer_frames_text_with_an_eos_the_encoder_pools_at(tmp_path: Path):
    tokenizer = train_tokenizer(tmp_path / "tokenizer", captions=2000)
    ids = tokenizer("a red circle on a blue background").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.eos_token_id != 2  # transformers' legacy argmax pooling kicks in at eos id 2
    assert tokenizer.unk_token_id not in ids


@pytest.mark.slow
def test_stage_all_resumes_and_exports_loadable_pipelines(tmp_path: Path):
    run, export = tmp_path / "run", tmp_path / "export"
    train_main(["--stage", "tokenizer", "--out", str(run), "--preset", "tiny"])
    # A budget of ~0 minutes stops the stage after its first step; the rerun must resume there, not restart.
    train_main(["--stage", "autoencoder", "--out", str(run), "--preset", "tiny", "--minutes", "0"])
    first = json.loads((run / "autoencoder" / "checkpoint" / "state.json").read_text())
    assert 1 <= first["step"] < TINY.plans["autoencoder"].steps
    train_main(["--stage", "all", "--out", str(run), "--preset", "tiny", "--export", str(export)])
    logged = [
        json.loads(line)["step"] for line in (run / "autoencoder" / "log.jsonl").read_text().splitlines()
    ]
    # Continued, not restarted.
    assert logged == sorted(logged) and logged[-1] == TINY.plans["autoencoder"].steps
    assert any((run / "autoencoder").glob("samples_*.png"))
    for stage in ("clip", "autoencoder", "prior", "decoder", "verifier", "upsampler"):
        assert json.loads((run / stage / "report.json").read_text())["steps_done"] == TINY.plans[stage].steps
    verifier_report = json.loads((run / "verifier" / "report.json").read_text())
    assert {"image_shape", "text_shape", "image_background"} <= set(verifier_report)

    prior = KandinskyV22PriorPipeline.from_pretrained(
        export / "prior", dtype=torch.float32, use_safetensors=True
    )
    decoder = KandinskyV22Pipeline.from_pretrained(
        export / "decoder", dtype=torch.float32, use_safetensors=True
    )
    embeds = prior("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    image = decoder(
        image_embeds=embeds.image_embeds,
        negative_image_embeds=embeds.negative_image_embeds,
        height=64,
        width=64,
        num_inference_steps=2,
        output_type="np",
    ).images
    assert image.shape == (1, 64, 64, 3)
    # the verifier ships beside the pipelines and the defaults then ask for decoder candidates, which it
    # judges
    settings = json.loads((export / "draftroom.json").read_text())
    assert (
        settings["decoder_candidates"] == DECODER_CANDIDATES
        and settings["candidate_pruning"] == CANDIDATE_PRUNING
        and (export / "verifier" / "verifier.json").is_file()
    )
    family = load_family(export, device="cpu")
    assert family.verifier is not None and family.info.default_candidates == DECODER_CANDIDATES
    assert family.info.upscale_factor == 4  # the upsampler ships beside them
    request = resolve_request(GenerationRequest(prompt="a red circle", seed=1, steps=2), family.info)
    assert family.generate([Row(request)])[0].size == (64, 64)
    assert all(p.suffix != ".bin" for p in export.rglob("*"))
    index = json.loads((export / "prior" / "model_index.json").read_text())
    assert index["image_processor"] == [
        "transformers",
        "CLIPImageProcessor",
    ]  # the standard layout, any machine
    assert not [c for c in export.rglob("config.json") if "_name_or_path" in json.loads(c.read_text())]

    # Continuing the exported model retrains the text side only: the image encoder, whose embedding the
    # decoder was trained on, must come out unchanged, or the shipped decoder would draw from a space it never
    # saw.
    again = tmp_path / "continued"
    train_main(["--stage", "clip", "--out", str(again), "--preset", "tiny", "--init-from", str(export)])
    for part, changed in (("image_encoder", False), ("text_encoder", True)):
        before = load_file(next((export / "prior" / part).glob("*.safetensors")))
        after = load_file(next((again / "clip" / part).glob("*.safetensors")))
        differs = any(not torch.equal(before[k].float(), after[k].float()) for k in before)
        assert differs is changed, part
    assert "unseen_retrieval_top1_of_64" in json.loads((again / "clip" / "report.json").read_text())
    # ... and the prior and the verifier's text head follow the new text encoder; the verifier's picture side
    # stays as shipped
    train_main(["--stage", "prior", "--out", str(again), "--preset", "tiny"])
    train_main(["--stage", "verifier", "--out", str(again), "--preset", "tiny"])
    assert "unseen_cosine" in json.loads((again / "prior" / "report.json").read_text())
    assert "unseen_text_shape" in json.loads((again / "verifier" / "report.json").read_text())
    shipped = AttributeVerifier.from_pretrained(export / "verifier", dtype=torch.float32)
    continued = AttributeVerifier.from_pretrained(again / "verifier" / "model")
    for side, changed in (("image", False), ("text_head", True)):
        before, after = getattr(shipped, side).state_dict(), getattr(continued, side).state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before) is changed, side

    # Taking only some parts of a model starts the others fresh: here a new CLIP (both towers, with an image
    # encoder of another shape) over the model's tokenizer and autoencoder, as the GPU recipe does.
    fresh = tmp_path / "fresh"
    train_main(["--out", str(fresh), "--init-from", str(export), "--init-parts", "tokenizer,autoencoder"])
    assert (fresh / "tokenizer").is_dir() and (fresh / "autoencoder" / "movq").is_dir()
    assert not any((fresh / stage).exists() for stage in ("clip", "prior", "decoder"))
    train_main(
        [
            "--stage",
            "clip",
            "--out",
            str(fresh),
            "--preset",
            "tiny",
            "--vision-patch",
            "4",
            "--vision-width",
            "64",
        ]
    )
    config = json.loads((fresh / "clip" / "image_encoder" / "config.json").read_text())
    assert (config["patch_size"], config["hidden_size"]) == (4, 64)
    report = json.loads((fresh / "clip" / "report.json").read_text())
    assert report["steps_done"] == TINY.plans["clip"].steps and "probe_shape" in report


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "--stage is required"),
        (["--init-from", "somewhere", "--init-parts", "tokenizer,unet"], "unknown parts ['unet']"),
        (["--stage", "clip", "--vision-width", "130"], "--vision-width must be a multiple of 4"),
        (["--stage", "clip", "--precision", "fp16"], "invalid choice: 'fp16'"),
        (
            ["--stage", "decoder", "--echo", "0"],
            "--echo must be at least 1 and divide the decoder's batch (32)",
        ),
        (
            ["--stage", "decoder", "--echo", "3"],
            "--echo must be at least 1 and divide the decoder's batch (32)",
        ),
    ],
)
def test_train_cli_rejects_bad_arguments_with_a_clear_message(tmp_path: Path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--out", str(tmp_path / "run"), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_decoder_echo_trains_each_picture_in_consecutive_steps_and_resumes(tmp_path: Path, monkeypatch):
    """`--echo 2`: each step encodes half a batch of fresh pictures; a resumed run re-encodes the one it still
    needs."""
    run = tmp_path / "run"
    train_main(["--stage", "tokenizer", "--out", str(run), "--preset", "tiny"])
    for stage in ("clip", "autoencoder"):
        train_main(["--stage", stage, "--out", str(run), "--preset", "tiny", "--steps", "1"])
    drawn: list[tuple[int, int]] = []

    def recording_world_batch(seed: int, index: int, batch_size: int, split: str = "train", **kwargs):
        if split == "train":
            drawn.append((index, batch_size))
        return world_batch(seed, index, batch_size, split=split, **kwargs)

    monkeypatch.setattr("model.train.decoder.world_batch", recording_world_batch)
    decoder = ["--stage", "decoder", "--out", str(run), "--preset", "tiny", "--steps", "4", "--echo", "2"]
    train_main([*decoder, "--minutes", "0"])  # stops after its first step
    train_main(decoder)
    half = TINY.plans["decoder"].batch_size // 2
    assert drawn == [(0, half), (0, half), (1, half), (2, half), (3, half)]
    report = json.loads((run / "decoder" / "report.json").read_text())
    assert report["steps_done"] == 4 and report["echo"] == 2
    assert all(
        "loss_fresh" in json.loads(line) for line in (run / "decoder" / "log.jsonl").read_text().splitlines()
    )
