"""Tiny random model folders in the real on-disk layouts, built offline for the tests and benches.

Each builder writes a folder that the loaders in ``model.families`` read exactly as they read real weights
(diffusers/transformers ``save_pretrained`` with safetensors). Weights come from fixed seeds, so every run
builds the same models.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    EulerDiscreteScheduler,
    KandinskyV22Pipeline,
    KandinskyV22PriorPipeline,
    PNDMScheduler,
    PriorTransformer,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UnCLIPScheduler,
    UNet2DConditionModel,
    VQModel,
)
from diffusers.models.embeddings import ImageProjection
from safetensors.torch import save_file
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

TOKEN_LENGTH = 16
IMAGE_ENCODER_SIZE = 32
EMBED_DIM = 32
WORDS = ("a", "red", "blue", "green", "circle", "square", "triangle", "on", "white", "black", "background")


def tiny_tokenizer() -> CLIPTokenizer:
    """A CLIP byte-level BPE tokenizer over single characters plus a few whole words (no hub download)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|endoftext|>", *symbols, *(s + "</w>" for s in symbols)]:
        vocab.setdefault(token, len(vocab))
    merges = []
    for word in WORDS:  # merge each word left to right so it becomes one token
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append((pieces[0], pieces[1]))
            merged = pieces[0] + pieces[1]
            vocab.setdefault(merged, len(vocab))
            pieces = [merged, *pieces[2:]]
    unique_merges = list(dict.fromkeys(merges))
    return CLIPTokenizer(vocab=vocab, merges=unique_merges, model_max_length=TOKEN_LENGTH)


def _text_config(
    tokenizer: CLIPTokenizer, hidden: int = EMBED_DIM, projection: int = EMBED_DIM
) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=hidden,
        projection_dim=projection,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=TOKEN_LENGTH,
    )


def _image_encoder() -> CLIPVisionModelWithProjection:
    config = CLIPVisionConfig(
        hidden_size=EMBED_DIM,
        image_size=IMAGE_ENCODER_SIZE,
        projection_dim=EMBED_DIM,
        intermediate_size=37,
        num_attention_heads=4,
        num_channels=3,
        num_hidden_layers=2,
        patch_size=8,
    )
    return CLIPVisionModelWithProjection(config).eval()


def _image_processor() -> CLIPImageProcessor:
    return CLIPImageProcessor(
        crop_size=IMAGE_ENCODER_SIZE,
        size=IMAGE_ENCODER_SIZE,
        do_center_crop=True,
        do_normalize=True,
        do_resize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
        resample=3,
    )


def build_kandinsky22(root: Path, *, draftroom_json: dict | None = None, seed: int = 0) -> Path:
    """A Kandinsky 2.2 model: ``root/prior`` and ``root/decoder`` folders (the embedded model's layout).

    The decoder's movq halves the size once, so 32x32 images use 16x16x4 latents.
    """
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    text_encoder = CLIPTextModelWithProjection(_text_config(tokenizer)).eval()
    prior = PriorTransformer(
        num_attention_heads=2,
        attention_head_dim=12,
        embedding_dim=EMBED_DIM,
        num_layers=1,
        num_embeddings=TOKEN_LENGTH,
    )
    # The prior un-normalises its output with clip_std, which starts at zero; real priors carry dataset stats.
    prior.clip_std = torch.nn.Parameter(torch.ones(1, EMBED_DIM))
    prior_pipe = KandinskyV22PriorPipeline(
        prior=prior.eval(),
        image_encoder=_image_encoder(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=UnCLIPScheduler(
            variance_type="fixed_small_log",
            prediction_type="sample",
            num_train_timesteps=1000,
            clip_sample=True,
            clip_sample_range=10.0,
        ),
        image_processor=_image_processor(),
    )
    prior_pipe.save_pretrained(root / "prior", safe_serialization=True)

    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=8,
        addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(16, 32),
        layers_per_block=1,
        encoder_hid_dim=EMBED_DIM,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=32,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        norm_num_groups=8,
        class_embed_type=None,
        sample_size=16,
    )
    movq = VQModel(  # SpatialNorm fixes 32 groups, so channels are multiples of 32
        block_out_channels=[32, 32],
        down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        in_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=12,
        out_channels=3,
        up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
        vq_embed_dim=4,
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        steps_offset=1,
        prediction_type="epsilon",
        thresholding=False,
    )
    KandinskyV22Pipeline(unet=unet.eval(), scheduler=scheduler, movq=movq.eval()).save_pretrained(
        root / "decoder", safe_serialization=True
    )
    if draftroom_json is not None:
        (root / "draftroom.json").write_text(json.dumps(draftroom_json))
    return root


def build_stable_diffusion(root: Path, *, seed: int = 0) -> Path:
    """A Stable Diffusion 1.x-layout folder (PNDM default scheduler, no safety checker); 32x32 images."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=EMBED_DIM,
        norm_num_groups=4,
        attention_head_dim=4,
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=4,
    )
    pipe = StableDiffusionPipeline(
        unet=unet.eval(),
        scheduler=PNDMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            skip_prk_steps=True,
            steps_offset=1,
        ),
        vae=vae.eval(),
        text_encoder=CLIPTextModel(_text_config(tokenizer)).eval(),
        tokenizer=tokenizer,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(root, safe_serialization=True)
    return root


def build_stable_diffusion_xl(root: Path, *, seed: int = 0) -> Path:
    """An SDXL-layout folder (two text encoders, Euler default scheduler); 32x32 images."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + EMBED_DIM,
        cross_attention_dim=2 * EMBED_DIM,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )
    config = _text_config(tokenizer)
    pipe = StableDiffusionXLPipeline(
        unet=unet.eval(),
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            steps_offset=1,
            timestep_spacing="leading",
        ),
        vae=vae.eval(),
        text_encoder=CLIPTextModel(config).eval(),
        text_encoder_2=CLIPTextModelWithProjection(config).eval(),
        tokenizer=tokenizer,
        tokenizer_2=tiny_tokenizer(),
    )
    pipe.save_pretrained(root, safe_serialization=True)
    return root


def add_ip_adapter(root: Path, *, seed: int = 0) -> Path:
    """Add tiny IP-Adapter weights to an SD folder: ``root/ip_adapter/ip-adapter.safetensors`` + image encoder.

    Keys follow the published IP-Adapter checkpoints (``image_proj.*``, ``ip_adapter.{1,3,5..}.to_{k,v}_ip``).
    """
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(root / "unet")
    cross_dim = unet.config.cross_attention_dim
    channels = list(unet.config.block_out_channels)
    tensors: dict[str, torch.Tensor] = {}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = channels[::-1][int(name.split(".")[1])]
        else:
            hidden = channels[int(name.split(".")[1])]
        tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(hidden, cross_dim) * 0.1
        tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(hidden, cross_dim) * 0.1
        key_id += 2
    projection = ImageProjection(
        cross_attention_dim=cross_dim, image_embed_dim=EMBED_DIM, num_image_text_embeds=4
    )
    for key, value in projection.state_dict().items():  # published checkpoints name the projection "proj"
        tensors[f"image_proj.{key.replace('image_embeds', 'proj')}"] = value.contiguous()
    folder = root / "ip_adapter"
    folder.mkdir(exist_ok=True)
    save_file(tensors, folder / "ip-adapter.safetensors")
    _image_encoder().save_pretrained(folder / "image_encoder", safe_serialization=True)
    return root


def add_verifier(root: Path, *, seed: int = 0) -> Path:
    """Add a tiny random verifier (``root/verifier``) that reads the prior's text embedding."""
    from model.families.verifier import ANY_OF, ONE_OF, AttributeVerifier, LabelGroup

    torch.manual_seed(seed)
    groups = (
        LabelGroup("shape", ANY_OF, ("circle", "square")),
        LabelGroup("background", ONE_OF, ("white", "blue")),
    )
    AttributeVerifier(groups, EMBED_DIM, hidden=8).save_pretrained(root / "verifier")
    return root


def add_upsampler(root: Path, *, seed: int = 0) -> Path:
    """Add a tiny random upsampler (``root/upsampler``), 4x like the embedded model's."""
    from model.train.common import PRESETS
    from model.train.upsampler import new_pipeline, upsampler_unet

    torch.manual_seed(seed)
    pipe = new_pipeline(upsampler_unet(PRESETS["tiny"]))
    pipe.save_pretrained(root / "upsampler", safe_serialization=True)
    return root


_RESNET_TO_LDM = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION_TO_LDM = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def save_single_file(folder: Path, out: Path) -> Path:
    """Write an SD 1.x folder's UNet, VAE and text encoder as one ``.safetensors`` in the original (LDM) key
    layout that AUTOMATIC1111 and ComfyUI keep: the inverse of diffusers' single-file conversion."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING
    from safetensors.torch import load_file

    def load(component: str) -> dict[str, torch.Tensor]:
        [weights] = (folder / component).glob("*.safetensors")
        return load_file(weights)

    def config(component: str) -> dict:
        return json.loads((folder / component / "config.json").read_text())

    checkpoint: dict[str, torch.Tensor] = {}
    unet = config("unet")
    unet_layers = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    unet_prefixes = _unet_ldm_prefixes(unet["layers_per_block"], unet["up_block_types"])
    for key, value in load("unet").items():
        checkpoint["model.diffusion_model." + (unet_layers.get(key) or _renamed(key, unet_prefixes))] = value
    vae_layers = DIFFUSERS_TO_LDM_MAPPING["vae"]
    vae_prefixes = _vae_ldm_prefixes(len(config("vae")["block_out_channels"]))
    for key, value in load("vae").items():
        ldm = vae_layers.get(key) or _renamed(key, vae_prefixes)
        if ".attn_1." in ldm and ldm.endswith(".weight") and value.ndim == 2:  # LDM keeps these as 1x1 convs
            value = value[:, :, None, None]
        checkpoint["first_stage_model." + ldm] = value
    for key, value in load("text_encoder").items():  # transformers saves CLIPTextModel without "text_model."
        checkpoint[
            "cond_stage_model.transformer." + ("" if key.startswith("text_model.") else "text_model.") + key
        ] = value
    save_file({key: value.contiguous() for key, value in checkpoint.items()}, out)
    return out


def _renamed(key: str, prefixes: list[tuple[str, str, dict[str, str]]]) -> str:
    for prefix, ldm_prefix, parts in prefixes:
        if key.startswith(prefix):
            rest = f".{key[len(prefix) :]}"
            for part, ldm_part in parts.items():
                rest = rest.replace(f".{part}.", f".{ldm_part}.", 1)
            return ldm_prefix + rest[1:]
    raise KeyError(f"no LDM name for {key}")


def _unet_ldm_prefixes(layers: int, up_block_types: list[str]) -> list[tuple[str, str, dict[str, str]]]:
    """(diffusers prefix, LDM prefix, renamed parts): blocks number consecutively, each layer then its sampler."""
    prefixes = [
        ("mid_block.resnets.0.", "middle_block.0.", _RESNET_TO_LDM),
        ("mid_block.attentions.0.", "middle_block.1.", {}),
        ("mid_block.resnets.1.", "middle_block.2.", _RESNET_TO_LDM),
    ]
    for i, up_type in enumerate(up_block_types):
        for j in range(layers):
            prefixes += [
                (
                    f"down_blocks.{i}.resnets.{j}.",
                    f"input_blocks.{(layers + 1) * i + j + 1}.0.",
                    _RESNET_TO_LDM,
                ),
                (f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{(layers + 1) * i + j + 1}.1.", {}),
            ]
        prefixes.append(
            (f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(layers + 1) * (i + 1)}.0.op.", {})
        )
        for j in range(layers + 1):
            prefixes += [
                (f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{(layers + 1) * i + j}.0.", _RESNET_TO_LDM),
                (f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{(layers + 1) * i + j}.1.", {}),
            ]
        upsampler = 2 if up_type.startswith("CrossAttn") else 1
        prefixes.append(
            (f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{(layers + 1) * i + layers}.{upsampler}.", {})
        )
    return prefixes


def _vae_ldm_prefixes(blocks: int) -> list[tuple[str, str, dict[str, str]]]:
    """LDM numbers the decoder's blocks from the bottom up, and calls the mid block's parts block_1/attn_1/block_2."""
    shortcut = {"conv_shortcut": "nin_shortcut"}
    prefixes = []
    for half in ("encoder", "decoder"):
        prefixes += [
            (f"{half}.mid_block.resnets.0.", f"{half}.mid.block_1.", shortcut),
            (f"{half}.mid_block.resnets.1.", f"{half}.mid.block_2.", shortcut),
            (f"{half}.mid_block.attentions.0.", f"{half}.mid.attn_1.", _VAE_ATTENTION_TO_LDM),
        ]
    for i in range(blocks):
        prefixes += [
            (f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.", shortcut),
            (f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.", {}),
            (f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{blocks - 1 - i}.block.", shortcut),
            (f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{blocks - 1 - i}.upsample.", {}),
        ]
    return prefixes
