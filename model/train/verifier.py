"""Stage 6: the verifier that picks among decoder candidates (model/families/verifier.py).

Its image classifier learns which shapes and colours a picture holds and its background; its text head learns,
from the frozen CLIP text encoder's embedding, which ones a caption asks for. Both learn from the world's own
scene descriptions, on training phrasings only. The family shows it the decoder's predicted clean picture 30%
of the way into sampling, which is blurrier than a finished one, so half the training pictures are
blurred (Gaussian, sigma up to 1.5 px) and all get a little noise.
Continuing a shipped verifier (`--init-from`, after the text encoder changed), only the text head learns, from
captions alone (no pictures), with the text encoder's word dropout.
Reported: held-out accuracy of each side, per group (single-object scenes, held-out phrasings), and of the text
side on unseen words and phrasings.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from model.families.verifier import ANY_OF, ONE_OF, AttributeVerifier, LabelGroup
from model.train.common import Preset, train_loop, write_report
from model.train.prior import encode_text, load_encoders
from model.world import SHAPES, Scene, heldout_prompts, render_scenes, world_batch
from model.world.scene import COLOURS
from model.world.stream import captioned_scenes

GROUPS = (
    LabelGroup("shape", ANY_OF, SHAPES),
    LabelGroup("colour", ANY_OF, tuple(COLOURS)),
    LabelGroup("background", ONE_OF, tuple(COLOURS)),
)
TWO_OBJECT_SHARE = 0.3
MAX_BLUR_SIGMA = 1.5
MAX_NOISE = 0.05  # the largest std of the added noise (random per picture), pixels in [0, 1]


def label_targets(scenes: list[Scene], device: torch.device) -> torch.Tensor:
    """0/1 targets [B, L] in GROUPS' order: shapes present, object colours present, background."""
    offsets = [0]
    for group in GROUPS[:-1]:
        offsets.append(offsets[-1] + len(group.labels))
    targets = torch.zeros(len(scenes), offsets[-1] + len(GROUPS[-1].labels), device=device)
    for row, scene in enumerate(scenes):
        for obj in scene.objects:
            targets[row, offsets[0] + GROUPS[0].labels.index(obj.shape)] = 1
            targets[row, offsets[1] + GROUPS[1].labels.index(obj.colour)] = 1
        targets[row, offsets[2] + GROUPS[2].labels.index(scene.background)] = 1
    return targets


def random_blur(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Half the pictures [B, 3, H, W] blurred with a separable Gaussian of random sigma; the rest kept."""
    batch = pixels.shape[0]
    sigma = torch.rand(batch, generator=generator) * MAX_BLUR_SIGMA + 1e-3
    sigma[torch.rand(batch, generator=generator) < 0.5] = 1e-3  # effectively no blur
    offsets = torch.arange(-3, 4, dtype=torch.float32)
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(3, 0).to(pixels)  # [B*3, 7]
    flat = pixels.reshape(1, batch * 3, *pixels.shape[2:])
    flat = F.conv2d(F.pad(flat, (3, 3, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=batch * 3)
    flat = F.conv2d(F.pad(flat, (0, 0, 3, 3), mode="replicate"), kernel[:, None, :, None], groups=batch * 3)
    return flat.reshape(pixels.shape)


def train_verifier(out: Path, preset: Preset, device: torch.device, seed: int, minutes: float | None) -> None:
    stage_dir = out / "verifier"
    plan = preset.plans["verifier"]
    tokenizer, text_encoder, _ = load_encoders(out, device)
    init = stage_dir / "init_model"  # present when continuing a shipped model (--init-from)
    continuing = init.is_dir()
    if continuing:
        verifier = AttributeVerifier.from_pretrained(init).to(device)
        verifier.text_head.requires_grad_(True)
    else:
        verifier = AttributeVerifier(GROUPS, text_encoder.config.projection_dim).to(device)
    trained = verifier.text_head if continuing else verifier
    optimizer = torch.optim.AdamW(trained.parameters(), lr=plan.lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)

    def text_step(i: int) -> dict[str, float]:
        scenes, captions = captioned_scenes(seed, i, plan.batch_size, two_object_prob=TWO_OBJECT_SHARE)
        text_embeds = encode_text(tokenizer, text_encoder, captions, device, noise=generator)[0]
        loss = verifier.loss(verifier.text_logits(text_embeds), label_targets(scenes, device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"text": loss.item()}

    def step(i: int) -> dict[str, float]:
        batch = world_batch(seed, i, plan.batch_size, device=device, two_object_prob=TWO_OBJECT_SHARE)
        targets = label_targets(batch.scenes, device)
        pixels = random_blur(batch.pixels * 0.5 + 0.5, generator)
        noise = torch.randn(pixels.shape, generator=generator) * torch.rand(
            len(pixels), 1, 1, 1, generator=generator
        )
        pixels = pixels + noise.to(pixels) * MAX_NOISE
        text_embeds = encode_text(tokenizer, text_encoder, batch.captions, device, noise=generator)[0]
        image_loss = verifier.loss(verifier.image_logits(pixels), targets)
        text_loss = verifier.loss(verifier.text_logits(text_embeds), targets)
        loss = image_loss + text_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), "image": image_loss.item(), "text": text_loss.item()}

    result = train_loop(
        stage_dir, plan, {"model": trained}, optimizer, text_step if continuing else step, minutes=minutes
    )
    verifier.eval()
    verifier.save_pretrained(stage_dir / "model")
    write_report(
        stage_dir, {**heldout_accuracy(verifier, tokenizer, text_encoder, device), **result.summary()}
    )


@torch.no_grad()
def heldout_accuracy(
    verifier: AttributeVerifier, tokenizer, text_encoder, device: torch.device, seed: int = 4242, n: int = 512
) -> dict[str, float]:
    """Per group, how often each side's top label is the truth, on single-object scenes with held-out
    phrasings (and the text side on unseen words and phrasings too)."""
    pairs = heldout_prompts(seed, n)
    scenes = [scene for scene, _ in pairs]
    pixels = render_scenes(scenes, device=device)[0] * 0.5 + 0.5
    truth = label_targets(scenes, device)
    sides = {
        "image": verifier.image_logits(pixels),
        "text": verifier.text_logits(
            encode_text(tokenizer, text_encoder, [c.text for _, c in pairs], device)[0]
        ),
    }
    unseen = heldout_prompts(seed, n, split="unseen")
    sides["unseen_text"] = verifier.text_logits(
        encode_text(tokenizer, text_encoder, [c.text for _, c in unseen], device)[0]
    )
    truth_of = {"unseen_text": label_targets([scene for scene, _ in unseen], device)}
    sizes = [len(g.labels) for g in GROUPS]
    report = {}
    for side, logits in sides.items():
        target_rows = truth_of.get(side, truth)
        for group, guess, target in zip(
            GROUPS, logits.split(sizes, 1), target_rows.split(sizes, 1), strict=True
        ):
            report[f"{side}_{group.name}"] = round(
                guess.argmax(1).eq(target.argmax(1)).float().mean().item(), 3
            )
    return report
