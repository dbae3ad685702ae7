"""Assemble the trained stages into the shipped Kandinsky 2.2 pipeline folders.

Weights are stored as fp16 safetensors (half the bytes in git; loaders upcast to fp32 on CPU), beside a
`draftroom.json` with the model's defaults that the engine reads. A trained verifier (stage `verifier`) goes
to `verifier/`, and the defaults then ask for DECODER_CANDIDATES decoder candidates, pruned by
CANDIDATE_PRUNING; a trained upsampler (stage `upsampler`) goes to `upsampler/`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from diffusers import (
    KandinskyV22Pipeline,
    KandinskyV22PriorPipeline,
    PriorTransformer,
    UNet2DConditionModel,
    VQModel,
)

from model.families.upsampler import UpsamplerPipeline
from model.families.verifier import AttributeVerifier
from model.train import networks
from model.train.prior import load_encoders

DEFAULTS = {
    "name": "draftroom-shapes-64",
    "family": "kandinsky22",
    "sizes": [[64, 64]],
    "default_steps": 15,
    "default_guidance": 4.0,
    "prior_steps": 25,
    "prior_guidance": 4.0,
    "prior_candidates": 2,  # DALL-E 2's two prior samples, the one nearest the text kept: +5 points of shape
    # DPM-Solver++ 15 steps: as accurate as DDIM 25, 1.3-1.5x faster (MODEL_CARD.md).
    "default_scheduler": "dpmpp",
}
# Written only beside a verifier, which judges them: shape 0.645 -> 0.93 (MODEL_CARD.md).
DECODER_CANDIDATES = 8
# When the verifier cuts them down ([share of the steps, candidates kept]): most of the candidates' cost is
# their first steps, and the shape is readable early (MODEL_CARD.md).
CANDIDATE_PRUNING = [[0.1, 4], [0.2, 2], [0.3, 1]]


SEEDABLE_PARTS = ("tokenizer", "clip", "prior", "autoencoder", "decoder", "verifier", "upsampler")


def seed_run_from_model(model: Path, out: Path, parts: tuple[str, ...] = SEEDABLE_PARTS) -> None:
    """The inverse of `export`: lay a shipped model out as a run folder (fp32), so stages can continue from
    it.

    Each trained part goes where `export` reads it and, for the text encoder, prior, decoder and verifier, also
    where their stages look for a starting point (init_*), so any subset of stages can be re-run on top of the
    shipped model. `parts` (stage names) picks what to take: a stage left out starts fresh, e.g. a new image
    encoder with the shipped tokenizer and autoencoder. Parts already in `out` are kept: re-running with
    --init-from must not overwrite what a stage has trained.
    """
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    from model.train.tokenizer import load_tokenizer

    unknown = set(parts) - set(SEEDABLE_PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from {', '.join(SEEDABLE_PARTS)}")
    verifier = model / "verifier"
    for target in ("model", "init_model"):  # init_model: where a continued verifier stage starts from
        if "verifier" in parts and verifier.is_dir() and not (out / "verifier" / target).exists():
            AttributeVerifier.from_pretrained(verifier).save_pretrained(out / "verifier" / target)
    upsampler = model / "upsampler"
    if "upsampler" in parts and upsampler.is_dir():
        for target in ("pipeline", "init_pipeline"):
            if not (out / "upsampler" / target).exists():
                pipe = UpsamplerPipeline.from_pretrained(upsampler, dtype=torch.float32)
                pipe.save_pretrained(out / "upsampler" / target, safe_serialization=True)
    if "tokenizer" in parts and not (out / "tokenizer").exists():
        load_tokenizer(model / "prior" / "tokenizer").save_pretrained(out / "tokenizer")
    layout = (
        (
            "clip",
            CLIPTextModelWithProjection,
            "prior/text_encoder",
            ("clip/text_encoder", "clip/init_text_encoder"),
        ),
        ("clip", CLIPVisionModelWithProjection, "prior/image_encoder", ("clip/image_encoder",)),
        ("prior", PriorTransformer, "prior/prior", ("prior/prior", "prior/init_prior")),
        ("autoencoder", VQModel, "decoder/movq", ("autoencoder/movq",)),
        ("decoder", UNet2DConditionModel, "decoder/unet", ("decoder/unet", "decoder/init_unet")),
    )
    for stage, cls, source, targets in layout:
        missing = [target for target in targets if not (out / target).exists()]
        if stage in parts and missing:
            part = cls.from_pretrained(model / source, dtype=torch.float32, use_safetensors=True)
            for target in missing:
                part.save_pretrained(out / target)
    print(f"[seed] laid out {', '.join(parts)} of {model} as a run folder in {out}")


def export(out: Path, target: Path) -> None:
    device = torch.device("cpu")
    tokenizer, text_encoder, image_encoder = load_encoders(out, device)
    prior = PriorTransformer.from_pretrained(out / "prior" / "prior", use_safetensors=True)
    unet = UNet2DConditionModel.from_pretrained(out / "decoder" / "unet", use_safetensors=True)
    movq = VQModel.from_pretrained(out / "autoencoder" / "movq", use_safetensors=True)
    prior_pipe = KandinskyV22PriorPipeline(
        prior=prior,
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=networks.prior_scheduler(),
        image_processor=networks.image_processor(),
    )
    decoder_pipe = KandinskyV22Pipeline(unet=unet, scheduler=networks.decoder_scheduler(), movq=movq)
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    prior_pipe.to(torch.float16).save_pretrained(staging / "prior", safe_serialization=True)
    decoder_pipe.to(torch.float16).save_pretrained(staging / "decoder", safe_serialization=True)
    settings = dict(DEFAULTS)
    if (out / "verifier" / "model").is_dir():
        verifier = AttributeVerifier.from_pretrained(out / "verifier" / "model")
        verifier.to(torch.float16).save_pretrained(staging / "verifier")
        settings["decoder_candidates"] = DECODER_CANDIDATES
        settings["candidate_pruning"] = CANDIDATE_PRUNING
    if (out / "upsampler" / "pipeline").is_dir():
        upsampler = UpsamplerPipeline.from_pretrained(out / "upsampler" / "pipeline", use_safetensors=True)
        upsampler.to(torch.float16).save_pretrained(staging / "upsampler", safe_serialization=True)
    _pin_image_processor_class(staging / "prior" / "model_index.json")
    _drop_run_paths(staging)
    (staging / "draftroom.json").write_text(json.dumps(settings, indent=2) + "\n")
    card = target / "MODEL_CARD.md"
    if card.exists():
        shutil.copy(card, staging / "MODEL_CARD.md")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    size = sum(f.stat().st_size for f in target.rglob("*.safetensors")) / 1e6
    print(f"[export] wrote {target} ({size:.1f} MB of safetensors)")


def _pin_image_processor_class(model_index: Path) -> None:
    """Record the standard `CLIPImageProcessor`, whatever this machine instantiated.

    Without torchvision, transformers hands out `CLIPImageProcessorPil` and the pipeline records that name, so
    the folder's layout would depend on the machine that exported it. Both names load the same settings
    everywhere.
    """
    index = json.loads(model_index.read_text())
    index["image_processor"] = ["transformers", "CLIPImageProcessor"]
    model_index.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _drop_run_paths(folder: Path) -> None:
    """Remove `_name_or_path` (the run folder a part was loaded from) so the shipped configs and pipeline
    indexes name no machine path."""
    for config in (*folder.rglob("config.json"), *folder.rglob("model_index.json")):
        values = json.loads(config.read_text())
        if values.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
