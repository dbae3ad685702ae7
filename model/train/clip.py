"""Stage 2: the CLIP-style dual encoder, trained contrastively on (picture, caption) pairs of the world.

Captions are often shared by several pictures in a batch ("red circle, blue background"), so the targets are
multi-positive: every pair whose caption text is identical counts as a match, instead of only the diagonal.

The decoder sees nothing but the image embedding, so the embedding must carry every attribute of the picture.
Contrastive learning alone takes the easy cues first: after the first GPU run the embedding told colours apart
perfectly but shapes at chance (a nearest-centroid probe scored 24% on 5 shapes). So linear heads on the image
embedding also classify the scene's attributes (shape, colour, size, position of the first object, and the
background) from the world's ground truth; the heads are a training aid and are not shipped.

Continuing a shipped model (`--init-from`), the image encoder stays frozen, because the shipped decoder was
trained on its embedding, and only the text encoder learns (e.g. new caption phrasings); the heads then act as
a linear probe of what the frozen embedding carries. Reported: held-out retrieval accuracy (text -> image,
top-1 among 64) and the heads' held-out accuracy.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

from model.train import networks
from model.train.common import EMBED_DIM, Preset, autocast, train_loop, write_report
from model.train.tokenizer import load_tokenizer
from model.world import COLOURS, POSITIONS, SHAPES, SIZES, Scene, heldout_prompts, render_scenes, world_batch


def tokenize(tokenizer, texts: list[str], device: torch.device) -> torch.Tensor:
    """Exactly what KandinskyV22PriorPipeline does: pad to model_max_length, no attention mask to the
    encoder."""
    return tokenizer(
        texts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)


def contrastive_loss(
    text: torch.Tensor, image: torch.Tensor, captions: list[str], logit_scale: torch.Tensor
) -> torch.Tensor:
    text, image = F.normalize(text.float(), dim=-1), F.normalize(image.float(), dim=-1)
    logits = logit_scale.exp().clamp(max=100) * text @ image.T
    ids = {text: i for i, text in enumerate(captions)}
    caption_ids = torch.tensor([ids[text] for text in captions], device=logits.device)
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


@torch.no_grad()
def retrieval_top1(
    text_encoder, image_encoder, tokenizer, device, seed: int = 1234, rounds: int = 8
) -> float:
    """Text -> image top-1 among 64 on held-out phrasings (chance: 1/64)."""
    hits = total = 0
    for r in range(rounds):
        pairs = heldout_prompts(seed + r, 64)
        pixels, _ = render_scenes([scene for scene, _ in pairs], device=device)
        text = F.normalize(
            text_encoder(tokenize(tokenizer, [c.text for _, c in pairs], device)).text_embeds, dim=-1
        )
        image = F.normalize(image_encoder(pixel_values=pixels).image_embeds, dim=-1)
        hits += int((text @ image.T).argmax(dim=1).eq(torch.arange(64, device=device)).sum())
        total += 64
    return hits / total


class AttributeHeads(torch.nn.Module):
    """One linear classifier per attribute, reading the projected image embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = torch.nn.ModuleDict(
            {name: torch.nn.Linear(EMBED_DIM, len(values)) for name, values in ATTRIBUTE_VALUES.items()}
        )

    def forward(self, embeds: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(embeds.float()) for name, head in self.heads.items()}


ATTRIBUTE_VALUES = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "size": tuple(SIZES),
    "position": tuple(POSITIONS),
    "background": tuple(COLOURS),
}


def attribute_targets(scenes: list[Scene], device: torch.device) -> dict[str, torch.Tensor]:
    def index(name: str, scene: Scene) -> int:
        value = scene.background if name == "background" else getattr(scene.objects[0], name)
        return ATTRIBUTE_VALUES[name].index(value)

    return {name: torch.tensor([index(name, s) for s in scenes], device=device) for name in ATTRIBUTE_VALUES}


def attribute_loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.stack([F.cross_entropy(logits[name], targets[name]) for name in logits]).mean()


@torch.no_grad()
def attribute_accuracy(image_encoder, heads: AttributeHeads, device, seed: int = 4242) -> dict[str, float]:
    batch = world_batch(seed, 0, 256, split="heldout", device=device, two_object_prob=0.0)
    logits = heads(image_encoder(pixel_values=batch.pixels).image_embeds)
    targets = attribute_targets(batch.scenes, device)
    return {
        f"probe_{name}": round(logits[name].argmax(1).eq(targets[name]).float().mean().item(), 3)
        for name in logits
    }


def train_clip(out: Path, preset: Preset, device: torch.device, seed: int, minutes: float | None) -> None:
    stage_dir = out / "clip"
    plan = preset.plans["clip"]
    tokenizer = load_tokenizer(out / "tokenizer")
    init = stage_dir / "init_text_encoder"  # present when continuing a shipped model (--init-from)
    continuing = init.exists()
    if continuing:
        text_encoder = CLIPTextModelWithProjection.from_pretrained(init, use_safetensors=True)
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(
            stage_dir / "image_encoder", use_safetensors=True
        )
        image_encoder.requires_grad_(False).eval()
    else:
        text_encoder, image_encoder = networks.text_encoder(preset, tokenizer), networks.image_encoder(preset)
    text_encoder.to(device)
    image_encoder.to(device)
    heads = AttributeHeads().to(device)
    logit_scale = torch.nn.Parameter(torch.tensor(2.659, device=device))  # log(1/0.07), as CLIP
    trained = torch.nn.ModuleDict({"text": text_encoder, "image": image_encoder, "heads": heads})
    trained.register_parameter("logit_scale", logit_scale)
    optimizer = torch.optim.AdamW(
        [p for p in trained.parameters() if p.requires_grad], lr=plan.lr, weight_decay=0.05
    )

    def step(i: int) -> dict[str, float]:
        batch = world_batch(seed, i, plan.batch_size, device=device)
        with autocast(device, preset.precision):
            text = text_encoder(tokenize(tokenizer, batch.captions, device)).text_embeds
            with torch.set_grad_enabled(not continuing):
                image = image_encoder(pixel_values=batch.pixels).image_embeds
        contrastive = contrastive_loss(text, image, batch.captions, logit_scale)
        attributes = attribute_loss(heads(image), attribute_targets(batch.scenes, device))
        loss = contrastive + attributes
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
        optimizer.step()
        return {"loss": loss.item(), "contrastive": contrastive.item(), "attributes": attributes.item()}

    result = train_loop(stage_dir, plan, {"model": trained}, optimizer, step, minutes=minutes)
    trained.eval()
    text_encoder.save_pretrained(stage_dir / "text_encoder")
    image_encoder.save_pretrained(stage_dir / "image_encoder")
    write_report(
        stage_dir,
        {
            "heldout_retrieval_top1_of_64": retrieval_top1(text_encoder, image_encoder, tokenizer, device),
            **attribute_accuracy(image_encoder, heads, device),
            **result.summary(),
        },
    )
