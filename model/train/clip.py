"""Stage 2: the CLIP-style dual encoder, trained contrastively on (picture, caption) pairs of the world.

Captions are often shared by several pictures in a batch ("red circle, blue background"), so the targets are
multi-positive: every pair whose caption text is identical counts as a match, instead of only the diagonal.

The decoder sees nothing but the image embedding, so the embedding must carry every attribute of the picture.
Contrastive learning alone takes the easy cues first: after the first GPU run the embedding told colours apart
perfectly but shapes at chance (a nearest-centroid probe scored 24% on 5 shapes). So linear heads on the image
embedding also classify the scene's attributes (shape, colour, size, position of the first object, and the
background) from the world's ground truth; the heads are a training aid and are not shipped.

Continuing a shipped model (`--init-from`), the image encoder stays frozen, because the shipped decoder was
trained on its embedding, and only the text encoder learns (e.g. new caption phrasings and words); the heads
then act as a linear probe of what the frozen embedding carries. A frozen encoder's embeddings are computed once
for a pool of pictures (model/train/pool.py) that every step captions afresh. The text encoder gains a row for
each new word of the tokenizer (a synonym's starts as its core word's) and is distilled toward the shipped one:
its embedding of a widened caption is pulled to the shipped encoder's embedding of the same facts in core words
(`canonical_caption`), beside the contrastive loss, whose positives are the pairs that state the same facts.
Words are dropped to <unk> and <unk>s inserted during training (`word_dropout`), as users type words the
vocabulary lacks. Reported: held-out retrieval accuracy (text -> image, top-1 among 64) on held-out phrasings
and on unseen words and phrasings, and the heads' held-out accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

from model.train import networks
from model.train.common import EMBED_DIM, Preset, autocast, train_loop, write_report
from model.train.pool import embedding_pool
from model.train.tokenizer import load_tokenizer
from model.world import COLOURS, POSITIONS, SHAPES, SIZES, Scene, heldout_prompts, render_scenes, world_batch
from model.world.captions import SYNONYM_OF, canonical_caption

WORD_DROPOUT = 0.08  # share of words read as <unk> in training
UNKNOWN_INSERTION = 0.25  # share of training captions with one <unk> inserted among their words
DISTILL_WEIGHT = 4.0  # weight of 1 - cos(new embedding, shipped encoder's embedding of the canonical caption)


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


def word_dropout(ids: torch.Tensor, tokenizer, generator: torch.Generator) -> torch.Tensor:
    """Token ids [B, T] as `tokenize` frames them, with each word read as <unk> with probability WORD_DROPOUT
    and, in UNKNOWN_INSERTION of the rows with words, one <unk> inserted at a random place among them.

    Users type words the vocabulary lacks; the model must then read the words it knows as it would without
    them, instead of letting an <unk> shift what the rest means.
    """
    frame = {tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id}
    unknown, length = tokenizer.unk_token_id, ids.shape[1]
    rows = []
    for row in ids.tolist():
        words = [t for t in row if t not in frame]
        dropped = (torch.rand(len(words), generator=generator) < WORD_DROPOUT).tolist()
        words = [unknown if drop else t for t, drop in zip(words, dropped, strict=True)]
        if words and torch.rand(1, generator=generator).item() < UNKNOWN_INSERTION:  # "" stays unconditional
            words.insert(int(torch.randint(len(words) + 1, (1,), generator=generator)), unknown)
        framed = [tokenizer.bos_token_id, *words[: length - 2], tokenizer.eos_token_id]
        rows.append(framed + [tokenizer.pad_token_id] * (length - len(framed)))
    return torch.tensor(rows, device=ids.device)


def grow_vocabulary(text_encoder: CLIPTextModelWithProjection, tokenizer) -> list[int]:
    """Give the text encoder a row for each word the tokenizer has gained; returns the new rows' ids.

    A synonym's row starts as its core word's (SYNONYM_OF): the lexicon is all the model knows of a word that
    training never shows. Other new words start at the mean row.
    """
    old = text_encoder.config.vocab_size
    if len(tokenizer) <= old:
        return []
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    table = text_encoder.get_input_embeddings().weight
    vocabulary = tokenizer.get_vocab()
    added = sorted(index for index in vocabulary.values() if index >= old)
    with torch.no_grad():
        table[old:] = table[:old].mean(dim=0)
        for word, index in vocabulary.items():
            if index >= old and word in SYNONYM_OF:
                table[index] = table[vocabulary[SYNONYM_OF[word]]]
    return added


def contrastive_loss(
    text: torch.Tensor, image: torch.Tensor, keys: list[str], logit_scale: torch.Tensor
) -> torch.Tensor:
    """CLIP's symmetric loss with multi-positive targets: pairs whose keys are equal are all matches."""
    text, image = F.normalize(text.float(), dim=-1), F.normalize(image.float(), dim=-1)
    logits = logit_scale.exp().clamp(max=100) * text @ image.T
    ids = {key: i for i, key in enumerate(keys)}
    caption_ids = torch.tensor([ids[key] for key in keys], device=logits.device)
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


@torch.no_grad()
def retrieval_top1(
    text_encoder, image_encoder, tokenizer, device, seed: int = 1234, rounds: int = 8, split: str = "heldout"
) -> float:
    """Text -> image top-1 among 64 on held-out phrasings, or unseen words and phrasings (chance: 1/64)."""
    hits = total = 0
    for r in range(rounds):
        pairs = heldout_prompts(seed + r, 64, split=split)
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


def train_clip(
    out: Path, preset: Preset, device: torch.device, seed: int, minutes: float | None, pool_size: int = 0
) -> None:
    stage_dir = out / "clip"
    plan = preset.plans["clip"]
    tokenizer = load_tokenizer(out / "tokenizer")
    init = stage_dir / "init_text_encoder"  # present when continuing a shipped model (--init-from)
    continuing = init.exists()
    if continuing:
        text_encoder = CLIPTextModelWithProjection.from_pretrained(init, use_safetensors=True)
        teacher = CLIPTextModelWithProjection.from_pretrained(init, use_safetensors=True)
        teacher.to(device).eval().requires_grad_(False)
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(
            stage_dir / "image_encoder", use_safetensors=True
        )
        image_encoder.to(device).requires_grad_(False).eval()
        pool = embedding_pool(out, image_encoder, device, pool_size or preset.pool_pictures, seed)
        print(f"[clip] {len(grow_vocabulary(text_encoder, tokenizer))} new words")
    else:
        text_encoder, image_encoder = networks.text_encoder(preset, tokenizer), networks.image_encoder(preset)
    text_encoder.to(device)
    image_encoder.to(device)
    heads = AttributeHeads().to(device)
    logit_scale = torch.nn.Parameter(torch.tensor(2.659, device=device))  # log(1/0.07), as CLIP
    trained = torch.nn.ModuleDict({"text": text_encoder, "image": image_encoder, "heads": heads})
    trained.register_parameter("logit_scale", logit_scale)
    # no weight decay on the word rows: a row training never reaches (an unseen synonym) keeps its start
    rows = text_encoder.get_input_embeddings().weight
    groups: list[dict[str, Any]] = [
        {"params": [p for p in trained.parameters() if p.requires_grad and p is not rows]},
        {"params": [rows], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=plan.lr, weight_decay=0.05)
    generator = torch.Generator().manual_seed(seed)

    def step(i: int) -> dict[str, float]:
        if continuing:
            scenes, captions, image, mentions = pool.batch(seed, i, plan.batch_size)
            keys = [canonical_caption(scene, m) for scene, m in zip(scenes, mentions, strict=True)]
        else:
            batch = world_batch(seed, i, plan.batch_size, device=device)
            scenes, captions, keys = batch.scenes, batch.captions, batch.captions
        with autocast(device, preset.precision):
            ids = word_dropout(tokenize(tokenizer, captions, device), tokenizer, generator)
            text = text_encoder(ids).text_embeds
            if not continuing:
                image = image_encoder(pixel_values=batch.pixels).image_embeds
        contrastive = contrastive_loss(text, image, keys, logit_scale)
        attributes = attribute_loss(heads(image), attribute_targets(scenes, device))
        losses = {"contrastive": contrastive, "attributes": attributes}
        if continuing:
            with torch.no_grad():
                target = teacher(tokenize(tokenizer, keys, device)).text_embeds.float()
            losses["distill"] = (1 - F.cosine_similarity(text.float(), target)).mean()
        loss = contrastive + attributes + DISTILL_WEIGHT * losses.get("distill", torch.zeros(()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
        optimizer.step()
        return {"loss": loss.item(), **{name: value.item() for name, value in losses.items()}}

    result = train_loop(stage_dir, plan, {"model": trained}, optimizer, step, minutes=minutes)
    trained.eval()
    text_encoder.save_pretrained(stage_dir / "text_encoder")
    image_encoder.save_pretrained(stage_dir / "image_encoder")
    write_report(
        stage_dir,
        {
            "heldout_retrieval_top1_of_64": retrieval_top1(text_encoder, image_encoder, tokenizer, device),
            "unseen_retrieval_top1_of_64": retrieval_top1(
                text_encoder, image_encoder, tokenizer, device, split="unseen"
            ),
            **attribute_accuracy(image_encoder, heads, device),
            **result.summary(),
        },
    )
