"""Stage 7: the upsampler, 64 -> 256 px (model/families/upsampler.py), trained on the world's own renders.

Each step renders a batch of scenes at 64 px (the low-resolution picture, as the generator draws it) and at
256 px (the target), and cuts one PATCH x PATCH crop per scene from the 256 px target, from the bicubic
upsampling of the clean 64 px picture (the residual's base) and from the bicubic upsampling of the noised
64 px picture (the condition), all at the same place: the UNet is fully convolutional, so patches train it for
the whole picture at a sixteenth of the cost. Crops are centred near an object most of the time, since flat
background teaches nothing. The target is the residual over bicubic, scaled; v-prediction on a cosine
schedule, with half of each batch's timesteps in the schedule's last tenth, where the shipped one-step sampler
reads the model (from pure noise, v is minus the clean residual: the model's best guess of it). Reported: PSNR
against the 256 px render, for the upsampler and for plain bicubic, on held-out scenes.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from model.families.upsampler import SCALE, UpsamplerPipeline, bicubic, to_pil
from model.train.common import Preset, autocast, train_loop, write_report
from model.train.images import grid
from model.world import render_scenes, world_batch
from model.world.scene import FRAME

PATCH = 64
HIGH = 64 * SCALE
OBJECT_CROPS = 0.8  # share of crops centred near an object rather than anywhere
MAX_NOISE_LEVEL = 250
SAMPLER_SHARE = 0.5  # share of training timesteps drawn from the last tenth, where few-step sampling starts
RESIDUAL_SCALE = (
    4.0  # residuals over bicubic are small (std ~0.04 on a whole picture); this brings edges to ~1
)


def upsampler_unet(preset: Preset) -> UNet2DModel:
    """Convolutions only (no attention), so a model trained on patches samples whole pictures unchanged."""
    levels = len(preset.upsampler_channels)
    return UNet2DModel(
        sample_size=HIGH,
        in_channels=6,  # the noisy residual and the upsampled low-res picture
        out_channels=3,
        down_block_types=("DownBlock2D",) * levels,
        up_block_types=("UpBlock2D",) * levels,
        block_out_channels=preset.upsampler_channels,
        layers_per_block=1,
        norm_num_groups=8,
        class_embed_type="timestep",  # the low-res noise level, embedded like a timestep (SD upscaler)
    )


def new_pipeline(unet: UNet2DModel) -> UpsamplerPipeline:
    """Cosine schedule with v-prediction ("trailing" spacing: a few steps still start from pure noise, where v
    keeps the clean estimate well-posed), sampled by DDIM; the low-res noise is the SD upscaler's schedule."""
    train = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=False,
        timestep_spacing="trailing",
    )
    low_res = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_end=0.02)
    return UpsamplerPipeline(
        unet=unet,
        scheduler=DDIMScheduler.from_config(train.config),
        low_res_scheduler=low_res,
        max_noise_level=MAX_NOISE_LEVEL,
        residual_scale=RESIDUAL_SCALE,
    )


def crop_corners(scenes, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Top-left corners of one PATCH crop per scene in the HIGH px frame, mostly around an object."""
    corners: list[tuple[int, int]] = []
    for scene in scenes:
        if scene.objects and rng.random() < OBJECT_CROPS:
            obj = scene.objects[rng.integers(len(scene.objects))]
            jitter = rng.uniform(-1.2, 1.2, size=2) * obj.radius
            cx, cy = (np.array([obj.cx, obj.cy]) + jitter) * HIGH / FRAME
        else:
            cx, cy = rng.uniform(0, HIGH, size=2)
        x, y = (int(np.clip(round(c - PATCH / 2), 0, HIGH - PATCH)) for c in (cx, cy))
        corners.append((x, y))
    return corners


def crop(pixels: torch.Tensor, corners: list[tuple[int, int]]) -> torch.Tensor:
    return torch.stack(
        [p[:, y : y + PATCH, x : x + PATCH] for p, (x, y) in zip(pixels, corners, strict=True)]
    )


def training_timesteps(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform timesteps, but a SAMPLER_SHARE of them in the last tenth of the schedule (t >= 900)."""
    uniform = torch.randint(0, 1000, (n,), device=device, generator=generator)
    late = torch.randint(900, 1000, (n,), device=device, generator=generator)
    pick_late = torch.rand(n, device=device, generator=generator) < SAMPLER_SHARE
    return torch.where(pick_late, late, uniform)


def psnr(pixels: torch.Tensor, target: torch.Tensor) -> float:
    """Mean PSNR in dB of pictures in [-1,1] (peak-to-peak 2)."""
    mse = ((pixels.float() - target.float()) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10)
    return float((10 * torch.log10(4.0 / mse)).mean())


@torch.no_grad()
def heldout_psnr(
    pipe: UpsamplerPipeline, device: torch.device, n: int, steps: int | None = None, seed: int = 31337
) -> tuple[dict[str, float], torch.Tensor]:
    """PSNR of the upsampler and of bicubic against the 256 px render, on held-out scenes' 64 px renders."""
    batch = world_batch(seed, 0, n, split="heldout", device=device)
    target, _ = render_scenes(batch.scenes, size=HIGH, device=device)
    generator = [torch.Generator(device=device).manual_seed(k) for k in range(n)]
    upscaled = pipe(batch.pixels, num_inference_steps=steps, generator=generator, output_type="pt")
    assert isinstance(upscaled, torch.Tensor)
    return {
        "psnr_upsampler": psnr(upscaled, target),
        "psnr_bicubic": psnr(bicubic(batch.pixels).clamp(-1, 1), target),
    }, upscaled


def train_upsampler(
    out: Path, preset: Preset, device: torch.device, seed: int, minutes: float | None
) -> None:
    stage_dir = out / "upsampler"
    plan = preset.plans["upsampler"]
    init = stage_dir / "init_pipeline"  # present when continuing a shipped model (--init-from)
    if init.exists():
        pipe = UpsamplerPipeline.from_pretrained(init, dtype=torch.float32, use_safetensors=True)
    else:
        pipe = new_pipeline(upsampler_unet(preset))
    pipe.to(device)
    model = pipe.unet.train()
    ema = copy.deepcopy(model).requires_grad_(False)
    scheduler = pipe.scheduler
    alphas = torch.as_tensor(DDPMScheduler.from_config(scheduler.config).alphas_cumprod, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=0.01)
    rng = torch.Generator(device=device).manual_seed(seed)

    def step(i: int) -> dict[str, float]:
        crops_rng = np.random.default_rng([seed, i])
        batch = world_batch(seed + 7, i, plan.batch_size, device=device)
        with torch.no_grad():
            target, _ = render_scenes(batch.scenes, size=HIGH, device=device)
            levels = torch.randint(0, MAX_NOISE_LEVEL + 1, (len(target),), device=device, generator=rng)
            base, condition = pipe.condition(batch.pixels, levels, rng)
            corners = crop_corners(batch.scenes, crops_rng)
            residual = crop(target - base, corners) * RESIDUAL_SCALE
            condition = crop(condition, corners)
        noise = torch.randn(residual.shape, device=device, generator=rng)
        t = training_timesteps(len(residual), rng, device)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * residual + (1 - a).sqrt() * noise
        velocity = a.sqrt() * noise - (1 - a).sqrt() * residual
        with autocast(device, preset.precision):
            predicted = pipe.predict(noisy, t, condition, levels)
        loss = F.mse_loss(predicted.float(), velocity)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return {"loss": loss.item()}

    def sampled(step_done: int) -> None:
        ema_pipe = pipe.replaced(unet=ema.eval())
        metrics, upscaled = heldout_psnr(ema_pipe, device, n=min(8, preset.eval_samples))
        grid(to_pil(upscaled), 4).save(stage_dir / f"samples_{step_done:06d}.png")
        print(f"[upsampler] step {step_done}: " + ", ".join(f"{k}={v:.2f}" for k, v in metrics.items()))

    result = train_loop(
        stage_dir,
        plan,
        {"model": model},
        optimizer,
        step,
        ema=ema,
        ema_decay=0.995,
        on_checkpoint=sampled,
        checkpoint_every=250,
        minutes=minutes,
    )
    ema_pipe = pipe.replaced(unet=ema.eval())
    ema_pipe.save_pretrained(stage_dir / "pipeline", safe_serialization=True)
    by_steps = {}
    for steps in (1, 2, 4):
        metrics, _ = heldout_psnr(ema_pipe, device, n=min(32, preset.eval_samples), steps=steps)
        by_steps[f"psnr_upsampler_{steps}_steps"] = round(metrics["psnr_upsampler"], 2)
    report = {**by_steps, "psnr_bicubic": round(metrics["psnr_bicubic"], 2), **result.summary()}
    report["params_m"] = round(sum(p.numel() for p in ema.parameters()) / 1e6, 2)
    report["finite"] = all(math.isfinite(v) for v in by_steps.values())
    write_report(stage_dir, report)
