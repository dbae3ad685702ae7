"""Shared pieces of the training stages: presets, network configs, checkpoints and the loop.

Every stage is `python -m model.train --stage NAME --out DIR`. A stage writes its finished model in
diffusers/transformers folder format to DIR/<stage>/, its resumable state to DIR/<stage>/checkpoint/
(safetensors + JSON, never pickle), its losses to DIR/<stage>/log.jsonl and sample grids beside them.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

MAX_TEXT_TOKENS = 32
EMBED_DIM = 128
IMAGE_SIZE = 64


@dataclass(frozen=True)
class StagePlan:
    """How long one stage trains: `steps` fixes the learning-rate horizon; 0 means "fill `minutes`".

    `echo` (the decoder only): each picture is trained on in `echo` consecutive steps, with fresh noise and
    timesteps, so each step encodes only batch_size / echo new pictures through the frozen autoencoder and
    image encoder. On a CPU they are a large share of the step: echo 4 gave run 10 1.7x the steps a minute
    (MODEL_CARD).
    """

    batch_size: int
    steps: int
    minutes: float
    lr: float
    echo: int = 1

    def __post_init__(self) -> None:
        if self.echo < 1 or self.batch_size % self.echo:
            raise ValueError(
                f"echo must be at least 1 and divide the batch ({self.batch_size}), got {self.echo}"
            )


@dataclass(frozen=True)
class Preset:
    """Network sizes, stage plans and precision: `tiny` for tests, `cpu` for this 2-core box, `gpu` for an
    H100."""

    name: str
    text_layers: int = 4
    vision_layers: int = 4
    vision_width: int = 256  # with 4x4 patches, the best of four shapes at encoding shape (see MODEL_CARD.md)
    vision_patch: int = 4
    text_width: int = EMBED_DIM
    ae_channels: tuple[int, ...] = (32, 64, 128)
    prior_layers: int = 6
    unet_channels: tuple[int, ...] = (64, 128, 128)
    unet_heads: tuple[int, ...] = (2, 4, 4)
    unet_layers_per_block: int = 1
    upsampler_channels: tuple[int, ...] = (16, 32, 64)  # 2x the steps of (32, 64, 128) a CPU minute
    eval_samples: int = 64  # pictures each stage's closing report samples (the tiny preset keeps tests fast)
    pool_pictures: int = (
        8192  # pictures whose image embeddings the text-side stages cache (model/train/pool.py)
    )
    precision: str = "auto"  # "auto": bf16 autocast on CUDA, fp32 elsewhere; "bf16" or "fp32" force it
    plans: dict[str, StagePlan] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        text_layers=1,
        vision_layers=1,
        vision_width=EMBED_DIM,
        vision_patch=8,
        ae_channels=(8, 16, 32),
        prior_layers=1,
        unet_channels=(32, 32, 64),
        unet_heads=(1, 1, 2),
        upsampler_channels=(8, 16, 16),
        eval_samples=8,
        pool_pictures=64,
        plans={
            s: StagePlan(batch_size=8, steps=20, minutes=5, lr=1e-3)
            for s in ("clip", "autoencoder", "prior", "decoder", "verifier", "upsampler")
        },
    ),
    "cpu": Preset(
        name="cpu",
        plans={
            "clip": StagePlan(batch_size=64, steps=0, minutes=20, lr=5e-4),
            "autoencoder": StagePlan(batch_size=32, steps=0, minutes=35, lr=1e-3),
            "prior": StagePlan(batch_size=64, steps=0, minutes=15, lr=4e-4),
            "decoder": StagePlan(batch_size=32, steps=0, minutes=100, lr=4e-4),
            "verifier": StagePlan(batch_size=64, steps=0, minutes=8, lr=2e-3),
            "upsampler": StagePlan(batch_size=16, steps=0, minutes=45, lr=5e-4),
        },
    ),
    "gpu": Preset(
        name="gpu",
        pool_pictures=65536,
        plans={
            "clip": StagePlan(batch_size=256, steps=0, minutes=3.0, lr=1e-3),
            "autoencoder": StagePlan(batch_size=128, steps=0, minutes=2.0, lr=1e-3),
            "prior": StagePlan(batch_size=256, steps=0, minutes=2.5, lr=5e-4),
            "decoder": StagePlan(batch_size=256, steps=0, minutes=3.0, lr=5e-4),
            "verifier": StagePlan(batch_size=256, steps=0, minutes=1.0, lr=2e-3),
            "upsampler": StagePlan(batch_size=128, steps=0, minutes=3.0, lr=1e-3),
        },
    ),
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


PRECISIONS = ("auto", "bf16", "fp32")


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast where it pays: always on CUDA; on a CPU only when asked ("bf16").

    On this project's VM (AMD EPYC with AVX512-BF16) a decoder training step runs about 1.3x faster in bf16
    (run 8 in the model card). CPUs without native bf16 instructions may not gain from it, so "auto" keeps a
    CPU in fp32.
    """
    enabled = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


# ---------------------------------------------------------------- checkpoints (safetensors only)


def save_checkpoint(
    folder: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, state: dict
) -> None:
    """Write modules, optimizer moments and loop state; rename into place so a kill never leaves half a
    checkpoint."""
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()},
            tmp / f"{name}.safetensors",
        )
    opt_state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, slots in opt_state["state"].items():
        for slot, value in slots.items():
            tensors[f"{index}.{slot}"] = torch.as_tensor(value).detach().contiguous().cpu()
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "state.json").write_text(json.dumps({**state, "param_groups": opt_state["param_groups"]}))
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        folder.rename(old)
        tmp.rename(folder)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(folder)


def load_checkpoint(
    folder: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer
) -> dict:
    for name, module in modules.items():
        module.load_state_dict(load_file(folder / f"{name}.safetensors", device="cpu"))
    state = json.loads((folder / "state.json").read_text())
    tensors = load_file(folder / "optimizer.safetensors", device="cpu")
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, slot = key.split(".", 1)
        slots.setdefault(int(index), {})[slot] = value
    device = next(iter(modules.values())).parameters().__next__().device
    optimizer.load_state_dict(
        {
            "state": {
                i: {k: (v if k == "step" else v.to(device)) for k, v in s.items()} for i, s in slots.items()
            },
            "param_groups": state.pop("param_groups"),
        }
    )
    return state


# ---------------------------------------------------------------- the loop


@dataclass
class LoopResult:
    steps_done: int
    total_steps: int
    seconds: float
    last_losses: dict[str, float]

    def summary(self) -> dict:
        return asdict(self)


def train_loop(
    stage_dir: Path,
    plan: StagePlan,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[int], dict[str, float]],
    *,
    ema: torch.nn.Module | None = None,
    ema_decay: float = 0.999,
    on_checkpoint: Callable[[int], None] | None = None,
    checkpoint_every: int = 500,
    minutes: float | None = None,
) -> LoopResult:
    """Run `step_fn(step)` with warm-up + cosine LR, resuming from stage_dir/checkpoint if present.

    `ema` (a copy of modules["model"]) is updated every step and checkpointed with the rest. With plan.steps
    == 0 the horizon is calibrated from steps 10-50 to fill the time budget, then frozen into the checkpoint,
    so a resumed run keeps the same schedule.
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = stage_dir / "checkpoint"
    all_modules = dict(modules, **({"ema": ema} if ema is not None else {}))
    state: dict[str, Any] = {"step": 0, "total_steps": plan.steps, "seconds": 0.0}
    if (ckpt_dir / "state.json").exists():
        state = load_checkpoint(ckpt_dir, all_modules, optimizer)
        print(f"[{stage_dir.name}] resumed at step {state['step']}/{state['total_steps'] or '?'}")
    budget_s = 60.0 * (plan.minutes if minutes is None else minutes)
    base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
    for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
        group["initial_lr"] = lr
    log = (stage_dir / "log.jsonl").open("a")
    start, seconds_before = time.perf_counter(), state["seconds"]
    state["calibrate_from"] = state["step"]
    step, losses, warm_elapsed = state["step"], {}, 0.0
    bar = tqdm(total=state["total_steps"] or None, initial=step, desc=stage_dir.name, mininterval=2.0)
    while True:
        total = state["total_steps"]
        if total and step >= total:
            break
        elapsed = time.perf_counter() - start
        if elapsed > budget_s and step > state["calibrate_from"]:  # every run makes at least one step
            print(f"[{stage_dir.name}] time budget reached at step {step}")
            break
        if not total and step - state["calibrate_from"] == 10:
            warm_elapsed = elapsed  # the first steps pay for warm-up (allocations, kernel selection)
        if not total and step - state["calibrate_from"] == 50:
            per_step = (elapsed - warm_elapsed) / 40
            state["total_steps"] = total = step + max(1, int((budget_s - elapsed) / per_step))
            bar.total = total
        warmup = 100 if (total or 10_000) > 1000 else max(1, (total or 20) // 10)
        frac = step / total if total else 0.0
        scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = lr * max(scale, 0.02)
        losses = step_fn(step)
        if ema is not None:
            with torch.no_grad():
                decay = min(ema_decay, (1 + step) / (10 + step))
                for e, p in zip(ema.parameters(), modules["model"].parameters(), strict=True):
                    e.lerp_(p.detach(), 1 - decay)
        step += 1
        bar.update(1)
        if step % 25 == 0 or step == 1 or step == state["total_steps"]:
            bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()})
            log.write(json.dumps({"step": step, "lr": optimizer.param_groups[0]["lr"], **losses}) + "\n")
        if step % checkpoint_every == 0 or step == state["total_steps"]:
            state.update(step=step, seconds=seconds_before + time.perf_counter() - start)
            save_checkpoint(ckpt_dir, all_modules, optimizer, state)
            if on_checkpoint is not None:
                on_checkpoint(step)
    bar.close()
    state.update(step=step, seconds=seconds_before + time.perf_counter() - start)
    save_checkpoint(ckpt_dir, all_modules, optimizer, state)
    log.close()
    return LoopResult(step, state["total_steps"], state["seconds"], losses)


def write_report(stage_dir: Path, report: dict) -> None:
    """Metrics the model card quotes, one JSON file per stage."""
    (stage_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print(
        f"[{stage_dir.name}] " + ", ".join(f"{k}={v}" for k, v in report.items() if not isinstance(v, dict))
    )
