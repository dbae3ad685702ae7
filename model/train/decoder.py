"""Stage 5: the decoder, a latent UNet conditioned on the CLIP image embedding (Kandinsky 2.2 style).

Targets are the frozen autoencoder's latents of world pictures; the condition is the frozen image encoder's
embedding of the same picture. 10% of conditions are replaced by the embedding of an all-zero image, which is
exactly what KandinskyV22PriorPipeline returns as the negative embedding, so classifier-free guidance works.
Epsilon prediction on a cosine schedule with min-SNR weighting (gamma 5), per shared/MODEL_TRAINING_NOTES.md.
Reported: the analyzer's accuracy on samples decoded from held-out pictures' true embeddings (the decoder
alone).
"""

from __future__ import annotations

import copy
from collections import deque
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, KandinskyV22Pipeline, UNet2DConditionModel, VQModel

from model.train import networks
from model.train.common import Preset, autocast, train_loop, write_report
from model.train.images import grid
from model.train.prior import load_encoders
from model.world import analyze, world_batch

CONDITION_DROPOUT = 0.1
MIN_SNR_GAMMA = 5.0


@torch.no_grad()
def zero_image_embedding(image_encoder, device: torch.device) -> torch.Tensor:
    size = image_encoder.config.image_size
    return image_encoder(pixel_values=torch.zeros(1, 3, size, size, device=device)).image_embeds.float()


def sampling_pipeline(unet, movq) -> KandinskyV22Pipeline:
    scheduler = DDIMScheduler.from_config(networks.decoder_scheduler().config)
    pipe = KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=movq)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def decoder_only_accuracy(
    pipe, image_encoder, zero_embed, device, seed: int = 31337, n: int = 128
) -> tuple[dict[str, float], list]:
    batch = world_batch(seed, 0, n, split="heldout", device=device, two_object_prob=0.0)
    embeds = image_encoder(pixel_values=batch.pixels).image_embeds
    generator = torch.Generator(device=device).manual_seed(0)
    images = pipe(
        image_embeds=embeds,
        negative_image_embeds=zero_embed.expand(n, -1),
        height=64,
        width=64,
        num_inference_steps=25,
        guidance_scale=4.0,
        generator=generator,
        output_type="pil",
    ).images
    hits = {"colour": 0, "shape": 0, "background": 0, "all": 0}
    for scene, image in zip(batch.scenes, images, strict=True):
        found, truth = analyze(image), scene.objects[0]
        obj = found.objects[0] if found.objects else None
        ok = {
            "colour": obj is not None and obj.colour == truth.colour,
            "shape": obj is not None and obj.shape == truth.shape,
            "background": found.background == scene.background,
        }
        ok["all"] = all(ok.values())
        for key, value in ok.items():
            hits[key] += value
    return {f"decoder_only_{k}": v / n for k, v in hits.items()}, images


def train_decoder(out: Path, preset: Preset, device: torch.device, seed: int, minutes: float | None) -> None:
    stage_dir = out / "decoder"
    plan = preset.plans["decoder"]
    _, _, image_encoder = load_encoders(out, device)
    movq = VQModel.from_pretrained(out / "autoencoder" / "movq", use_safetensors=True).to(device).eval()
    movq.requires_grad_(False)
    zero_embed = zero_image_embedding(image_encoder, device)
    init = stage_dir / "init_unet"  # present when continuing a shipped model (--init-from)
    model = (
        UNet2DConditionModel.from_pretrained(init, use_safetensors=True)
        if init.exists()
        else networks.unet(preset)
    ).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    scheduler = networks.decoder_scheduler()
    alphas = scheduler.alphas_cumprod.to(device)
    snr = alphas / (1 - alphas)
    loss_weight = snr.clamp(max=MIN_SNR_GAMMA) / snr
    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=0.01)
    rng = torch.Generator(device=device).manual_seed(seed)
    chunk = plan.batch_size // plan.echo
    # The last `echo` chunks, encoded.
    window: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=plan.echo)

    @torch.no_grad()
    def encoded_chunk(index: int) -> tuple[torch.Tensor, torch.Tensor]:
        batch = world_batch(seed + 3, index, chunk, device=device)
        with autocast(device, preset.precision):
            return (
                movq.encode(batch.pixels).latents.float(),
                image_encoder(pixel_values=batch.pixels).image_embeds.float(),
            )

    def step(i: int) -> dict[str, float]:
        for index in range(max(0, i - plan.echo + 1) if not window else i, i + 1):  # a resumed run refills it
            window.append(encoded_chunk(index))
        latents = torch.cat([latents for latents, _ in window])
        embeds = torch.cat([embeds for _, embeds in window])
        drop = torch.rand(len(embeds), device=device, generator=rng) < CONDITION_DROPOUT
        embeds = torch.where(drop.unsqueeze(1), zero_embed.expand_as(embeds), embeds)
        noise = torch.randn(latents.shape, device=device, generator=rng)
        t = torch.randint(0, 1000, (len(latents),), device=device, generator=rng)
        noisy = scheduler.add_noise(latents, noise, t)
        with autocast(device, preset.precision):
            predicted = model(
                noisy, t, encoder_hidden_states=None, added_cond_kwargs={"image_embeds": embeds}
            ).sample[:, : latents.shape[1]]
        per_sample = loss_weight[t] * F.mse_loss(predicted.float(), noise, reduction="none").mean(
            dim=(1, 2, 3)
        )
        loss = per_sample.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if plan.echo == 1:
            return {"loss": loss.item()}
        # The newest chunk is seen for the first time: if echoing made the UNet memorise, its loss would run
        # higher.
        return {"loss": loss.item(), "loss_fresh": per_sample[-chunk:].mean().item()}

    def samples(step_done: int) -> None:
        ema.eval()
        metrics, images = decoder_only_accuracy(
            sampling_pipeline(ema, movq), image_encoder, zero_embed, device, n=min(32, preset.eval_samples)
        )
        grid(images, 8).save(stage_dir / f"samples_{step_done:06d}.png")
        print(f"[decoder] step {step_done}: " + ", ".join(f"{k}={v:.2f}" for k, v in metrics.items()))

    result = train_loop(
        stage_dir,
        plan,
        {"model": model},
        optimizer,
        step,
        ema=ema,
        ema_decay=0.999,
        on_checkpoint=samples,
        checkpoint_every=2500,
        minutes=minutes,
    )
    ema.eval()
    ema.save_pretrained(stage_dir / "unet")
    metrics, _ = decoder_only_accuracy(
        sampling_pipeline(ema, movq), image_encoder, zero_embed, device, n=preset.eval_samples
    )
    write_report(stage_dir, {**metrics, **result.summary(), "echo": plan.echo})
