"""Stage 4: the prior, a PriorTransformer that maps a CLIP text embedding to a CLIP image embedding.

It is a small diffusion prior in Kandinsky 2.2's exact form (UnCLIPScheduler, x0 prediction in the space
normalised by the encoder's image-embedding mean and std, which are stored in the prior's clip_mean/clip_std).
The text side is fed exactly as KandinskyV22PriorPipeline feeds it. 10% of captions are replaced by "" so the
pipeline's classifier-free guidance on the prior works, and words are dropped or <unk>s inserted as the text
encoder learned with (`word_dropout`). The image encoder is frozen here, so its embeddings come from the run's
pool of pictures (model/train/pool.py), each step with fresh captions. Continuing a shipped prior after its text
encoder changed, the shipped prior and text encoder also teach: beside the true embedding, the new prior's
prediction from a widened caption is pulled toward the shipped prior's prediction from the same facts in core
words (`canonical_caption`) at the same noisy input, so a small pool does not make it forget what it drew.
Reported: cosine similarity of predicted vs true image embeddings on held-out captions, and on unseen words
and phrasings.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import PriorTransformer
from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

from model.train import networks
from model.train.clip import tokenize, word_dropout
from model.train.common import Preset, autocast, train_loop, write_report
from model.train.pool import embedding_pool
from model.train.tokenizer import load_tokenizer
from model.world import heldout_prompts, render_scenes, world_batch
from model.world.captions import canonical_caption

CAPTION_DROPOUT = 0.1
DISTILL_WEIGHT = 1.0  # weight of the MSE to the shipped prior's prediction, when continuing


def load_encoders(out: Path, device: torch.device):
    tokenizer = load_tokenizer(out / "tokenizer")
    text = CLIPTextModelWithProjection.from_pretrained(out / "clip" / "text_encoder", use_safetensors=True)
    image = CLIPVisionModelWithProjection.from_pretrained(
        out / "clip" / "image_encoder", use_safetensors=True
    )
    for model in (text, image):
        model.to(device).eval().requires_grad_(False)
    return tokenizer, text, image


@torch.no_grad()
def encode_text(
    tokenizer, text_encoder, captions: list[str], device: torch.device, noise: torch.Generator | None = None
):
    """Embedding, hidden states and mask of `captions`; with `noise`, through `word_dropout` (training)."""
    ids = tokenize(tokenizer, captions, device)
    if noise is not None:
        ids = word_dropout(ids, tokenizer, noise)
    output = text_encoder(ids)
    return output.text_embeds.float(), output.last_hidden_state.float(), ids.ne(tokenizer.pad_token_id)


@torch.no_grad()
def image_embedding_stats(
    image_encoder, seed: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    embeds = torch.cat(
        [
            image_encoder(pixel_values=world_batch(seed, i, 256, device=device).pixels).image_embeds
            for i in range(8)
        ]
    ).float()
    return embeds.mean(dim=0, keepdim=True), embeds.std(dim=0, keepdim=True).clamp(min=1e-4)


@torch.no_grad()
def sample_prior(
    prior,
    scheduler,
    tokenizer,
    text_encoder,
    captions: list[str],
    device,
    steps: int = 25,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The pipeline's sampling loop without guidance, for the held-out metric during training."""
    text_embeds, hidden, mask = encode_text(tokenizer, text_encoder, captions, device)
    latents = torch.randn(len(captions), text_embeds.shape[1], device=device, generator=generator)
    scheduler.set_timesteps(steps, device=device)
    timesteps = scheduler.timesteps
    for i, t in enumerate(timesteps):
        predicted = prior(
            latents, timestep=t, proj_embedding=text_embeds, encoder_hidden_states=hidden, attention_mask=mask
        ).predicted_image_embedding
        previous = timesteps[i + 1] if i + 1 < len(timesteps) else None
        latents = scheduler.step(
            predicted, t, latents, prev_timestep=previous, generator=generator
        ).prev_sample
    return prior.post_process_latents(latents)


@torch.no_grad()
def heldout_cosine(
    prior,
    tokenizer,
    text_encoder,
    image_encoder,
    device,
    seed: int = 777,
    n: int = 256,
    split: str = "heldout",
) -> float:
    pairs = heldout_prompts(seed, n, split=split)
    pixels, _ = render_scenes([s for s, _ in pairs], device=device)
    truth = image_encoder(pixel_values=pixels).image_embeds.float()
    generator = torch.Generator(device=device).manual_seed(0)
    predicted = sample_prior(
        prior,
        networks.prior_scheduler(),
        tokenizer,
        text_encoder,
        [c.text for _, c in pairs],
        device,
        generator=generator,
    )
    return F.cosine_similarity(predicted, truth).mean().item()


def train_prior(
    out: Path, preset: Preset, device: torch.device, seed: int, minutes: float | None, pool_size: int = 0
) -> None:
    stage_dir = out / "prior"
    plan = preset.plans["prior"]
    tokenizer, text_encoder, image_encoder = load_encoders(out, device)
    init = stage_dir / "init_prior"  # present when continuing a shipped model (--init-from)
    if init.exists():
        model = PriorTransformer.from_pretrained(init, use_safetensors=True).to(device)
    else:
        model = networks.prior(preset).to(device)
        with torch.no_grad():
            mean, std = image_embedding_stats(image_encoder, seed + 7, device)
            model.clip_mean.copy_(mean)
            model.clip_std.copy_(std)
    mean, std = model.clip_mean.detach().clone(), model.clip_std.detach().clone()
    model.clip_mean.requires_grad_(False)
    model.clip_std.requires_grad_(False)
    ema = copy.deepcopy(model).requires_grad_(False)
    scheduler = networks.prior_scheduler()
    alphas = scheduler.alphas_cumprod.to(device)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=plan.lr, weight_decay=0.01
    )
    rng = torch.Generator().manual_seed(seed)
    pool = embedding_pool(out, image_encoder, device, pool_size or preset.pool_pictures, seed)
    shipped_text = out / "clip" / "init_text_encoder"
    teachers = None
    if init.exists() and shipped_text.exists():
        teachers = (
            PriorTransformer.from_pretrained(init, use_safetensors=True)
            .to(device)
            .eval()
            .requires_grad_(False),
            CLIPTextModelWithProjection.from_pretrained(shipped_text, use_safetensors=True)
            .to(device)
            .eval()
            .requires_grad_(False),
        )

    def step(i: int) -> dict[str, float]:
        scenes, batch_captions, image_embeds, mentions = pool.batch(seed + 2, i, plan.batch_size)
        drop = torch.rand(len(batch_captions), generator=rng) < CAPTION_DROPOUT
        captions = ["" if d else c for c, d in zip(batch_captions, drop.tolist(), strict=True)]
        text_embeds, hidden, mask = encode_text(tokenizer, text_encoder, captions, device, noise=rng)
        target = (image_embeds - mean) / std
        t = torch.randint(0, 1000, (len(captions),), device=device)
        a = alphas[t].unsqueeze(1)
        noisy = a.sqrt() * target + (1 - a).sqrt() * torch.randn_like(target)
        with autocast(device, preset.precision):
            predicted = model(
                noisy,
                timestep=t,
                proj_embedding=text_embeds,
                encoder_hidden_states=hidden,
                attention_mask=mask,
            ).predicted_image_embedding
        losses = {"true": F.mse_loss(predicted.float(), target)}
        if teachers is not None:
            teacher_prior, teacher_text = teachers
            canonical = [
                "" if d else canonical_caption(scene, m)
                for scene, m, d in zip(scenes, mentions, drop.tolist(), strict=True)
            ]
            shipped_embeds, shipped_hidden, shipped_mask = encode_text(
                tokenizer, teacher_text, canonical, device
            )
            with torch.no_grad():
                taught = teacher_prior(
                    noisy,
                    timestep=t,
                    proj_embedding=shipped_embeds,
                    encoder_hidden_states=shipped_hidden,
                    attention_mask=shipped_mask,
                ).predicted_image_embedding.float()
            losses["distill"] = F.mse_loss(predicted.float(), taught)
        loss = losses["true"] + DISTILL_WEIGHT * losses.get("distill", torch.zeros(()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return {"loss": loss.item(), **{name: value.item() for name, value in losses.items()}}

    result = train_loop(stage_dir, plan, {"model": model}, optimizer, step, ema=ema, minutes=minutes)
    ema.eval()
    ema.save_pretrained(stage_dir / "prior")
    write_report(
        stage_dir,
        {
            "heldout_cosine": round(heldout_cosine(ema, tokenizer, text_encoder, image_encoder, device), 4),
            "unseen_cosine": round(
                heldout_cosine(ema, tokenizer, text_encoder, image_encoder, device, split="unseen"), 4
            ),
            **result.summary(),
        },
    )
