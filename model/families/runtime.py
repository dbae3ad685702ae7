"""How a loaded model runs on its device: precision, attention, torch.compile, channels_last and CPU offload.

The options are declared in model.device_options; here they are checked before anything loads (``pick_dtype``,
``check_device_options``) and applied by each family's loader to its pipelines (``place``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from model.device_options import DTYPE_NAMES, DeviceOptions
from model.families.loading import ModelLoadError

log = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = dict(
    zip(DTYPE_NAMES, (torch.float16, torch.bfloat16, torch.float32), strict=True)
)


class DeviceOptionError(ModelLoadError):
    """A precision, compile or offload option that this device or the other options rule out; names the flag."""


def pick_dtype(
    device: torch.device, requested: str | None = None, *, bf16_supported: bool | None = None
) -> torch.dtype:
    """fp16 on a GPU, fp32 on CPU, unless ``requested`` (a DTYPES name) says otherwise.

    fp16 rather than bf16 by default: with bf16's 8-bit mantissa, DDPM/DDIM steps (computed in the model's dtype)
    made a job's images differ visibly between a lone and a batched run on an H200; fp16 keeps them within a few
    levels. VAEs that overflow in fp16 decode in fp32 (see ``stable_diffusion``). ``bf16_supported`` is the
    CUDA card's answer (asked of torch when None)."""
    if requested is None:
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if requested not in DTYPES:
        raise DeviceOptionError(f"--dtype: unknown {requested!r}; choose one of {', '.join(DTYPES)}")
    if requested == "bf16" and device.type == "cuda":
        supported = torch.cuda.is_bf16_supported() if bf16_supported is None else bf16_supported
        if not supported:
            raise DeviceOptionError("--dtype bf16: this GPU has no bfloat16 support; use fp16 or fp32")
    if requested == "fp16" and device.type == "cpu":
        raise DeviceOptionError(
            "--dtype fp16 on the CPU: torch's fp16 CPU kernels are many times slower than fp32; use fp32 or bf16"
        )
    return DTYPES[requested]


def check_device_options(device: torch.device, options: DeviceOptions) -> None:
    """Refuse options this device or their combination rules out, before any weight loads."""
    if not options.cpu_offload:
        return
    if device.type != "cuda":
        raise DeviceOptionError(
            f"--cpu-offload keeps weights in CPU memory and moves them to a CUDA GPU as they run; "
            f"the model runs on {device.type}, so there is nothing to offload"
        )
    if options.compile:
        raise DeviceOptionError(
            "--compile and --cpu-offload do not combine: offload hooks move weights inside the compiled call"
        )


_SDPA_FOR: dict[str, str] = {  # diffusers' classic attention processors -> their PyTorch SDPA counterparts
    "AttnProcessor": "AttnProcessor2_0",
    "AttnAddedKVProcessor": "AttnAddedKVProcessor2_0",
}


def use_sdpa(model: Any) -> list[str]:
    """Run ``model``'s attention through PyTorch's scaled_dot_product_attention (flash / memory-efficient kernels
    on a GPU): diffusers picks it by default, but a processor set elsewhere (or a model saved with one) may be
    the classic quadratic-memory one. Returns the processor class names now in use."""
    from diffusers.models import attention_processor

    processors = model.attn_processors
    replaced = {
        name: getattr(attention_processor, _SDPA_FOR[type(p).__name__])()
        if type(p).__name__ in _SDPA_FOR
        else p
        for name, p in processors.items()
    }
    in_use = sorted({type(p).__name__ for p in replaced.values()})
    if any(replaced[name] is not processors[name] for name in processors):
        model.set_attn_processor(replaced)  # (empties the dict it is given)
    return in_use


def place(
    pipe: Any, device: torch.device, options: DeviceOptions, denoisers: Sequence[str] = ("unet",)
) -> None:
    """Put a diffusers pipeline on ``device`` as ``options`` say: SDPA attention in every model, channels_last
    and torch.compile on its ``denoisers``, and either all weights on the device or offloaded to the CPU.

    Under offload ``pipe.device`` says cpu while the models compute on ``device``: the loaders hand ``device``
    to the family."""
    attention = set()
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module) and hasattr(component, "set_attn_processor"):
            attention.update(use_sdpa(component))
    if options.channels_last:
        for name in denoisers:
            getattr(pipe, name).to(memory_format=torch.channels_last)
    if options.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if options.compile:
        for name in denoisers:
            getattr(pipe, name).compile()
    log.info(
        "%s on %s: attention %s%s%s%s",
        type(pipe).__name__,
        device,
        ", ".join(sorted(attention)) or "none",
        ", channels_last" if options.channels_last else "",
        ", model CPU offload" if options.cpu_offload else "",
        ", compiled " + "+".join(denoisers) if options.compile and denoisers else "",
    )
