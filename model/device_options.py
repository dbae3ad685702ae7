"""The options that say how a loaded model runs on its device, declared once for every command that loads one
(serve, generate, the benchmarks). Torch-free, so the CLI starts fast; model.families.runtime applies them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

DTYPE_NAMES = ("fp16", "bf16", "fp32")


@dataclass(frozen=True)
class DeviceOptions:
    """``compile``: torch.compile each denoiser (the first batch of every new shape compiles, then runs faster);
    ``channels_last``: the denoiser's weights in channels-last memory format (faster on some GPUs only);
    ``cpu_offload``: weights stay in CPU memory and each model (text encoder, UNet, VAE) moves to the GPU while
    it runs (diffusers' model CPU offload; its sequential, per-layer offload fails with this project's pinned
    accelerate and transformers, so it is not offered)."""

    compile: bool = False
    channels_last: bool = False
    cpu_offload: bool = False


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --dtype, --compile, --channels-last and --cpu-offload on a command that loads a model."""
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument(
        "--dtype", choices=DTYPE_NAMES, help="weights' precision (default: fp16 on a GPU, fp32 on the CPU)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the denoising UNet: faster steps, after a compile for each new batch shape",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="the UNet in channels-last memory format (faster on some GPUs only: measure it)",
    )
    parser.add_argument(
        "--cpu-offload",
        action="store_true",
        help="for GPUs too small for the model: weights stay in CPU memory and each model moves to the GPU "
        "while it runs (slower; CUDA only)",
    )


def device_options(args: argparse.Namespace) -> DeviceOptions:
    """The DeviceOptions that ``add_device_arguments``'s flags asked for."""
    return DeviceOptions(compile=args.compile, channels_last=args.channels_last, cpu_offload=args.cpu_offload)
