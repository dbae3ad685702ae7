"""How a model runs on its device: the dtype chosen per device and flag, options refused with the flag named,
SDPA attention, channels_last, torch.compile and model CPU offload, each drawing the same pictures.

No GPU here: dtype choice is tested through the pure selection function; offload runs with the CPU standing in
for the GPU (the hooks, and the families' use of the execution device, are the same code)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from image_checks import max_pixel_diff
from test_engine import TOLERANCE, ask

import model.families
from model.device_options import DeviceOptions
from model.families import Family, load_family
from model.families.runtime import DeviceOptionError, check_device_options, pick_dtype, place, use_sdpa

CUDA, CPU, MPS = torch.device("cuda"), torch.device("cpu"), torch.device("mps")


def test_dtype_defaults_to_fp16_on_a_gpu_and_fp32_on_the_cpu() -> None:
    assert pick_dtype(CUDA) is torch.float16
    assert pick_dtype(MPS) is torch.float16
    assert pick_dtype(CPU) is torch.float32


def test_dtype_flag_overrides_the_default() -> None:
    assert pick_dtype(CUDA, "bf16", bf16_supported=True) is torch.bfloat16
    assert pick_dtype(CUDA, "fp32") is torch.float32
    assert pick_dtype(CPU, "bf16") is torch.bfloat16
    assert pick_dtype(CPU, "fp32") is torch.float32


@pytest.mark.parametrize(
    "device, requested, message",
    [
        (CUDA, "bf16", "--dtype bf16: this GPU has no bfloat16 support"),
        (CPU, "fp16", "--dtype fp16 on the CPU"),
        (CPU, "float16", "--dtype: unknown 'float16'; choose one of fp16, bf16, fp32"),
    ],
)
def test_a_dtype_the_device_rules_out_is_refused_naming_the_flag(
    device: torch.device, requested: str, message: str
) -> None:
    with pytest.raises(DeviceOptionError, match=message):
        pick_dtype(device, requested, bf16_supported=False)


def test_cpu_offload_needs_cuda_and_does_not_combine_with_compile() -> None:
    with pytest.raises(DeviceOptionError, match=r"--cpu-offload .* the model runs on cpu"):
        check_device_options(CPU, DeviceOptions(cpu_offload=True))
    with pytest.raises(DeviceOptionError, match="--compile and --cpu-offload do not combine"):
        check_device_options(CUDA, DeviceOptions(cpu_offload=True, compile=True))
    check_device_options(CUDA, DeviceOptions(cpu_offload=True))
    check_device_options(CPU, DeviceOptions(compile=True, channels_last=True))
    with pytest.raises(DeviceOptionError, match="--cpu-offload"):
        load_family("no-such-folder", device="cpu", options=DeviceOptions(cpu_offload=True))


def test_classic_attention_processors_are_replaced_by_sdpa_with_the_same_output(sd_path: Path) -> None:
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor

    unet = UNet2DConditionModel.from_pretrained(sd_path / "unet").eval()
    unet.set_attn_processor(AttnProcessor())
    inputs = (
        torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0)),
        torch.tensor([10]),
        torch.randn(1, 16, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1)),
    )
    with torch.no_grad():
        classic = unet(*inputs).sample
        assert use_sdpa(unet) == ["AttnProcessor2_0"]
        sdpa = unet(*inputs).sample
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"AttnProcessor2_0"}
    torch.testing.assert_close(sdpa, classic, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["kandinsky", "sd"])
def test_every_loaded_model_attends_through_sdpa(name: str, request: pytest.FixtureRequest) -> None:
    family: Family = request.getfixturevalue(name)
    pipes = [family.prior, family.decoder] if name == "kandinsky" else [family.pipe]  # type: ignore[attr-defined]
    names = {
        type(processor).__name__
        for pipe in pipes
        for component in pipe.components.values()
        for processor in getattr(component, "attn_processors", {}).values()
    }
    assert names and all(name.endswith("2_0") for name in names), names


def _images(family: Family, engine_for) -> list:
    engine = engine_for(family, max_batch=4, gather_s=0.2)
    handles = [
        engine.submit(ask("a red circle", 3, "ann", num_images=2)),
        engine.submit(ask("a blue square", 4)),
    ]
    return [image for handle in handles for image in handle.result(120).images]


def _assert_same_pictures(got: list, expected: list) -> None:
    assert len(got) == len(expected)
    for image, reference in zip(got, expected, strict=True):
        assert max_pixel_diff(image, reference) <= TOLERANCE


def test_channels_last_draws_the_same_pictures(sd: Family, sd_path: Path, engine_for) -> None:
    family = load_family(sd_path, device="cpu", options=DeviceOptions(channels_last=True))
    weight = next(p for p in family.pipe.unet.parameters() if p.dim() == 4)  # type: ignore[attr-defined]
    assert weight.is_contiguous(memory_format=torch.channels_last)
    _assert_same_pictures(_images(family, engine_for), _images(sd, engine_for))


@pytest.mark.slow
def test_compile_runs_the_unet_compiled_and_draws_the_same_pictures(
    sd: Family, sd_path: Path, engine_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inductor compiles this tiny UNet in about 3 minutes on a 2-core CPU, so the compile here uses torch's
    eager backend: the same Dynamo capture of our UNet calls, without generating kernels."""
    calls: list[dict] = []
    real_compile = torch.compile

    def eager_compile(*args, **kwargs):
        calls.append(kwargs)
        return real_compile(*args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch, "compile", functools.wraps(real_compile)(eager_compile))
    family = load_family(sd_path, device="cpu", options=DeviceOptions(compile=True))
    unet = family.pipe.unet  # type: ignore[attr-defined]
    assert len(calls) == 1 and unet._compiled_call_impl is not None
    _assert_same_pictures(_images(family, engine_for), _images(sd, engine_for))


@pytest.mark.parametrize("name", ["kandinsky", "sd"])
def test_model_cpu_offload_draws_the_same_pictures(
    name: str, request: pytest.FixtureRequest, engine_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CPU stands in for the GPU (the CLI refuses offload without CUDA): the offload hooks move each
    model in and out, and the families compute on the pipelines' execution device."""
    monkeypatch.setattr(model.families, "check_device_options", lambda device, options: None)
    path: Path = request.getfixturevalue(f"{name}_path")
    family = load_family(path, device="cpu", options=DeviceOptions(cpu_offload=True))
    pipes = [family.prior, family.decoder] if name == "kandinsky" else [family.pipe]  # type: ignore[attr-defined]
    assert all(pipe._all_hooks for pipe in pipes), "offload hooks installed"
    _assert_same_pictures(_images(family, engine_for), _images(request.getfixturevalue(name), engine_for))


def test_place_without_options_puts_every_model_on_the_device(sd_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(sd_path)
    place(pipe, CPU, DeviceOptions())
    assert pipe._execution_device == CPU and not getattr(pipe, "_all_hooks", None)
