"""Stage 2: the CLIP-style dual encoder, trained contrastively on (picture, caption) pairs of the world.

Captions are often shared by several pictures in a batch ("red circle, blue background"), so the targets are
multi-positive: every pair whose caption text is identical counts as a match, instead of only the diagonal.
Reported: held-out retrieval accuracy (text -> image, top-1 among 64) on held-out phrasings.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from model.train.common import Preset, autocast, train_loop, write_report
from model.train import networks
from model.train.tokenizer import load_tokenizer
from model.world import heldout_prompts, render_scenes, world_batch


def tokenize(tokenizer, texts: list[str], device: torch.device) -> torch.Tensor:
    """Exactly what KandinskyV22PriorPipeline does: pad to model_max_length, no attention mask to the encoder."""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids.to(device)


def contrastive_loss(text: torch.Tensor, image: torch.Tensor, captions: list[str],
                     logit_scale: torch.Tensor) -> torch.Tensor:
    text, image = F.normalize(text.float(), dim=-1), F.normalize(image.float(), dim=-1)
    logits = logit_scale.exp().clamp(max=100) * text @ image.T
    ids = {text: i for i, text in enumerate(captions)}
    caption_ids = torch.tensor([ids[text] for text in captions], device=logits.device)
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


@torch.no_grad()
def retrieval_top1(text_encoder, image_encoder, tokenizer, device, seed: int = 1234, rounds: int = 8) -> float:
    """Text -> image top-1 among 64 on held-out phrasings (chance: 1/64)."""
    hits = total = 0
    for r in range(rounds):
        pairs = heldout_prompts(seed + r, 64)
        pixels, _ = render_scenes([scene for scene, _ in pairs], device=device)
        text = F.normalize(text_encoder(tokenize(tokenizer, [c.text for _, c in pairs], device)).text_embeds, dim=-1)
        image = F.normalize(image_encoder(pixel_values=pixels).image_embeds, dim=-1)
        hits += (text @ image.T).argmax(dim=1).eq(torch.arange(64, device=device)).sum().item()
        total += 64
    return hits / total


def train_clip(out: Path, preset: Preset, device: torch.device, seed: int, minutes: float | None) -> None:
    stage_dir = out / "clip"
    plan = preset.plans["clip"]
    tokenizer = load_tokenizer(out / "tokenizer")
    text_encoder = networks.text_encoder(preset, tokenizer).to(device)
    image_encoder = networks.image_encoder(preset).to(device)
    logit_scale = torch.nn.Parameter(torch.tensor(2.659, device=device))  # log(1/0.07), as CLIP
    both = torch.nn.ModuleDict({"text": text_encoder, "image": image_encoder})
    both.register_parameter("logit_scale", logit_scale)
    optimizer = torch.optim.AdamW(both.parameters(), lr=plan.lr, weight_decay=0.05)

    def step(i: int) -> dict[str, float]:
        batch = world_batch(seed, i, plan.batch_size, device=device)
        with autocast(device):
            text = text_encoder(tokenize(tokenizer, batch.captions, device)).text_embeds
            image = image_encoder(pixel_values=batch.pixels).image_embeds
        loss = contrastive_loss(text, image, batch.captions, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(both.parameters(), 1.0)
        optimizer.step()
        return {"loss": loss.item(), "temperature": 1 / logit_scale.exp().item()}

    result = train_loop(stage_dir, plan, {"model": both}, optimizer, step, minutes=minutes)
    both.eval()
    text_encoder.save_pretrained(stage_dir / "text_encoder")
    image_encoder.save_pretrained(stage_dir / "image_encoder")
    write_report(stage_dir, {"heldout_retrieval_top1_of_64": retrieval_top1(text_encoder, image_encoder, tokenizer,
                                                                             device), **result.summary()})
