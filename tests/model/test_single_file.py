"""Single-file SD checkpoints (one .safetensors in the original LDM key layout) load with shipped configs and no
network; the shipped SD 1.5 / SDXL configs describe the real architectures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from huggingface_hub import constants
from image_checks import max_pixel_diff
from test_families import rows_for
from tiny_models import save_single_file

from model.families import Family, ModelLoadError, family_of, load_family
from model.families.single_file import CONFIGS, clip_tokenizer, load_single_file


@pytest.fixture(scope="module")
def checkpoint(sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_single_file(sd_path, tmp_path_factory.mktemp("single") / "tiny-sd15.safetensors")


def test_a_single_file_checkpoint_draws_what_its_diffusers_folder_draws(
    checkpoint: Path, sd_path: Path, sd: Family
) -> None:
    assert family_of(checkpoint) == "stable-diffusion"
    single = load_single_file(checkpoint, device=torch.device("cpu"), dtype=torch.float32, config_dir=sd_path)
    assert single.info.family == "stable-diffusion" and single.info.name == "tiny-sd15"
    assert len(single.info.hash) == 64 and single.info.hash != sd.info.hash
    [from_file] = single.generate(rows_for(single, prompt="a red circle on a white background"))
    [from_folder] = sd.generate(rows_for(sd, prompt="a red circle on a white background"))
    assert max_pixel_diff(from_file, from_folder) == 0


def test_the_shipped_config_is_read_offline_and_checked_against_the_weights(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    # The tiny checkpoint does not fit SD 1.5's real text encoder: the shipped config (77 tokens x 768) was used.
    with pytest.raises(ModelLoadError, match=r"as stable-diffusion: .*\[77, 768\]"):
        load_family(checkpoint, device="cpu")


def test_pickle_checkpoints_are_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"pickle")
    with pytest.raises(ModelLoadError, match="safetensors only"):
        load_family(ckpt, device="cpu")


@pytest.mark.parametrize(("folder", "unet_parameters"), [("sd15", 859_520_964), ("sdxl", 2_567_463_684)])
def test_shipped_configs_build_the_real_architectures(folder: str, unet_parameters: int) -> None:
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS / folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(CONFIGS / folder / "vae"))
    assert sum(p.numel() for p in unet.parameters()) == unet_parameters
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863
    encoders = sorted(CONFIGS.joinpath(folder).glob("text_encoder*/config.json"))
    widths = sum(json.loads(config.read_text())["hidden_size"] for config in encoders)
    assert widths == unet.config.cross_attention_dim  # SDXL concatenates its two encoders' hidden states


def test_the_clip_tokenizer_built_from_the_shipped_bpe_matches_clip() -> None:
    settings = json.loads((CONFIGS / "sdxl" / "tokenizer_2" / "tokenizer_config.json").read_text())
    tokenizer = clip_tokenizer(settings)
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert (
        tokenizer("cat", padding="max_length").input_ids[3:] == [0] * 74
    )  # SDXL's second tokenizer pads with "!"
