"""python -m model.train --stage {tokenizer,clip,autoencoder,prior,decoder,verifier,upsampler,export,all} --out DIR

Each stage resumes from DIR/<stage>/checkpoint when one exists. `all` runs every stage in order and then
exports the pipelines to --export (default model/weights/embedded). Presets: tiny (tests), cpu (2 cores), gpu.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from model.families.loading import pick_device
from model.train.common import PRECISIONS, PRESETS, seed_everything
from model.train.export import SEEDABLE_PARTS, seed_run_from_model

STAGES = ("tokenizer", "clip", "autoencoder", "prior", "decoder", "verifier", "upsampler", "export")
DEFAULT_EXPORT = Path(__file__).resolve().parents[1] / "weights" / "embedded"


def run_stage(stage: str, args: argparse.Namespace) -> None:
    preset = PRESETS[args.preset]
    encoder_size = {
        k: v for k, v in (("vision_patch", args.vision_patch), ("vision_width", args.vision_width)) if v
    }
    preset = dataclasses.replace(preset, precision=args.precision, **encoder_size)
    overrides = {k: v for k, v in (("lr", args.lr), ("steps", args.steps)) if v is not None}
    echo = {"echo": args.echo} if args.echo is not None else {}  # only the decoder echoes
    preset = dataclasses.replace(
        preset,
        plans={
            name: dataclasses.replace(plan, **overrides, **(echo if name == "decoder" else {}))
            for name, plan in preset.plans.items()
        },
    )
    device = pick_device(args.device)
    seed_everything(args.seed)
    started = time.perf_counter()
    if stage == "tokenizer":
        from model.train.tokenizer import train_tokenizer

        train_tokenizer(args.out / "tokenizer", seed=args.seed)
    elif stage == "clip":
        from model.train.clip import train_clip

        train_clip(args.out, preset, device, args.seed, args.minutes, args.pool)
    elif stage == "autoencoder":
        from model.train.autoencoder import train_autoencoder

        train_autoencoder(args.out, preset, device, args.seed, args.minutes)
    elif stage == "prior":
        from model.train.prior import train_prior

        train_prior(args.out, preset, device, args.seed, args.minutes, args.pool)
    elif stage == "decoder":
        from model.train.decoder import train_decoder

        train_decoder(args.out, preset, device, args.seed, args.minutes)
    elif stage == "verifier":
        from model.train.verifier import train_verifier

        train_verifier(args.out, preset, device, args.seed, args.minutes)
    elif stage == "upsampler":
        from model.train.upsampler import train_upsampler

        train_upsampler(args.out, preset, device, args.seed, args.minutes)
    elif stage == "export":
        from model.train.export import export

        export(args.out, args.export)
    print(f"[{stage}] done in {time.perf_counter() - started:.0f} s on {device}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m model.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--stage",
        choices=(*STAGES, "all"),
        help="required, unless --init-from is given alone (then the run folder is only laid out)",
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, logs, samples)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--device", default=None, help="cuda, mps, cpu (default: the best available)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: bf16 autocast on CUDA, fp32 on a CPU; bf16 also pays on CPUs with AVX512-BF16/AMX",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=None, help="override the stage's time budget")
    parser.add_argument("--lr", type=float, default=None, help="override the stage's peak learning rate")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="override the stage's horizon (0: fit the time budget, calibrated on the first steps)",
    )
    parser.add_argument(
        "--echo",
        type=int,
        default=None,
        help="decoder: train on each picture in this many consecutive steps, encoding only "
        "batch/echo fresh pictures per step (default 1: every picture once)",
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=0,
        help="prior, and clip when continuing: pictures whose image embeddings are cached and captioned "
        "afresh each step (default: the preset's)",
    )
    parser.add_argument(
        "--vision-patch",
        type=int,
        choices=(4, 8, 16),
        default=None,
        help="patch size of a fresh image encoder (the preset's by default)",
    )
    parser.add_argument(
        "--vision-width", type=int, default=None, help="hidden width of a fresh image encoder"
    )
    parser.add_argument(
        "--export", type=Path, default=DEFAULT_EXPORT, help="where `export` writes the pipelines"
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="continue from a shipped model folder: its parts seed --out (parts already there "
        "are kept); clip then trains the text encoder only, prior and decoder fine-tune",
    )
    parser.add_argument(
        "--init-parts",
        default=",".join(SEEDABLE_PARTS),
        help="with --init-from: the stages whose parts to take (comma-separated); the others "
        "start fresh, e.g. tokenizer,autoencoder,decoder retrains CLIP from scratch",
    )
    args = parser.parse_args(argv)
    if args.stage is None and args.init_from is None:
        parser.error("--stage is required (or --init-from alone, to lay out a run folder)")
    if args.vision_width is not None and (args.vision_width < 16 or args.vision_width % 4):
        parser.error("--vision-width must be a multiple of 4 (the encoder's attention heads), at least 16")
    if args.echo is not None:
        decoder_plan = PRESETS[args.preset].plans["decoder"]
        try:
            dataclasses.replace(decoder_plan, echo=args.echo)
        except ValueError:
            parser.error(
                f"--echo must be at least 1 and divide the decoder's batch ({decoder_plan.batch_size})"
            )
    if args.init_from is not None:
        parts = tuple(part.strip() for part in args.init_parts.split(",") if part.strip())
        try:
            seed_run_from_model(args.init_from, args.out, parts)
        except ValueError as error:
            parser.error(str(error))
    if args.stage is None:
        return
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    for stage in STAGES if args.stage == "all" else (args.stage,):
        run_stage(stage, args)


if __name__ == "__main__":
    main()
