"""Stage 3: the MoVQ-style autoencoder, 64x64x3 <-> 16x16x4, as a continuous autoencoder.

Kandinsky decodes with `force_not_quantize=True`, so the codebook is never used and we train encode -> decode
directly. Lessons from the CPU feasibility run (shared/MODEL_TRAINING_NOTES.md): the autoencoder is the first
ceiling, so the loss is L1 + MSE weighted 10x on object pixels (the renderer gives the masks). Two more terms
make the latents easy for the decoder UNet: per-channel mean 0 / std 1 (the pipeline applies no scaling
factor), and a little latent noise during training so slightly-off diffusion samples still decode cleanly.
Reported: PSNR, plus the world analyzer's accuracy on reconstructions (it must stay near its score on
originals).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from model.train import networks
from model.train.common import Preset, autocast, train_loop, write_report
from model.train.images import save_grid, to_pil
from model.world import analyze, world_batch

OBJECT_WEIGHT = 10.0
LATENT_NOISE = 0.05


def latent_stats_penalty(z: torch.Tensor) -> torch.Tensor:
    mean = z.mean(dim=(0, 2, 3))
    std = z.std(dim=(0, 2, 3))
    return (mean.pow(2) + (std - 1).pow(2)).mean()


def reconstruction_loss(recon: torch.Tensor, pixels: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    weight = 1 + (OBJECT_WEIGHT - 1) * F.max_pool2d(masks, 3, stride=1, padding=1)
    error = (recon.float() - pixels).abs() + (recon.float() - pixels).pow(2)
    return (weight * error).mean() / weight.mean()


@torch.no_grad()
def evaluate_autoencoder(model, device, seed: int = 4321, n: int = 128) -> dict[str, float]:
    batch = world_batch(seed, 0, n, split="heldout", device=device)
    recon = model.decode(model.encode(batch.pixels).latents, force_not_quantize=True).sample.clamp(-1, 1)
    mse = ((recon - batch.pixels) / 2).pow(2).mean(dim=(1, 2, 3))
    psnr = (10 * torch.log10(1 / mse.clamp(min=1e-10))).mean().item()
    hits = {"colour": 0, "shape": 0, "background": 0}
    for scene, image in zip(batch.scenes, to_pil(recon), strict=True):
        found = analyze(image)
        hits["background"] += found.background == scene.background
        truth = scene.objects[0]
        best = next((o for o in found.objects if o.colour == truth.colour), None)
        hits["colour"] += best is not None
        hits["shape"] += best is not None and best.shape == truth.shape
    latents = model.encode(batch.pixels).latents
    return {
        "psnr_db": round(psnr, 2),
        **{f"analyzer_{k}": v / n for k, v in hits.items()},
        "latent_std": round(latents.std().item(), 3),
    }


def train_autoencoder(
    out: Path, preset: Preset, device: torch.device, seed: int, minutes: float | None
) -> None:
    stage_dir = out / "autoencoder"
    plan = preset.plans["autoencoder"]
    model = networks.movq(preset).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=0.0)

    def step(i: int) -> dict[str, float]:
        batch = world_batch(seed + 1, i, plan.batch_size, device=device)
        with autocast(device, preset.precision):
            z = model.encode(batch.pixels).latents
            noisy = z + LATENT_NOISE * torch.randn_like(z)
            recon = model.decode(noisy, force_not_quantize=True).sample
        rec = reconstruction_loss(recon, batch.pixels, batch.masks)
        stats = latent_stats_penalty(z.float())
        loss = rec + 0.1 * stats
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return {"loss": loss.item(), "recon": rec.item(), "latent_stats": stats.item()}

    def samples(step_done: int) -> None:
        with torch.no_grad():
            batch = world_batch(seed + 99, 0, 16, device=device)
            recon = model.decode(model.encode(batch.pixels).latents, force_not_quantize=True).sample
        save_grid(
            torch.cat([batch.pixels, recon.float()]), stage_dir / f"samples_{step_done:06d}.png", columns=16
        )

    result = train_loop(
        stage_dir, plan, {"model": model}, optimizer, step, on_checkpoint=samples, minutes=minutes
    )
    model.eval()
    model.save_pretrained(stage_dir / "movq")
    write_report(
        stage_dir, {**evaluate_autoencoder(model, device, n=2 * preset.eval_samples), **result.summary()}
    )
    assert math.isfinite(result.last_losses.get("loss", 0.0)), "autoencoder training diverged"
