"""The embedded model's networks, built from standard diffusers/transformers classes (Kandinsky 2.2 layout).

Sizes come from a Preset; everything else here is fixed by the design:
- CLIP-style dual encoder with 128-d projections. The text hidden size equals the projection size because the
  PriorTransformer reads the text hidden states through a linear layer of width `embedding_dim`.
- MoVQ-style VQModel, 64x64x3 <-> 16x16x4, decoded with `force_not_quantize=True` as Kandinsky does.
- PriorTransformer predicting the normalised image embedding (UnCLIPScheduler, prediction_type "sample").
- Decoder UNet with `encoder_hid_dim_type="image_proj"` and `addition_embed_type="image"`; out_channels 8
  because KandinskyV22Pipeline splits off a (here unused) learned-variance half.
"""

from __future__ import annotations

from diffusers import DDPMScheduler, PriorTransformer, UnCLIPScheduler, UNet2DConditionModel, VQModel
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    PreTrainedTokenizerBase,
)

from model.train.common import EMBED_DIM, IMAGE_SIZE, MAX_TEXT_TOKENS, Preset

LATENT_CHANNELS = 4


def text_encoder(preset: Preset, tokenizer: PreTrainedTokenizerBase) -> CLIPTextModelWithProjection:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=preset.text_width,
        intermediate_size=4 * preset.text_width,
        num_hidden_layers=preset.text_layers,
        num_attention_heads=4,
        max_position_embeddings=MAX_TEXT_TOKENS,
        projection_dim=EMBED_DIM,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return CLIPTextModelWithProjection(config)


def image_encoder(preset: Preset) -> CLIPVisionModelWithProjection:
    config = CLIPVisionConfig(
        hidden_size=preset.vision_width,
        intermediate_size=4 * preset.vision_width,
        num_hidden_layers=preset.vision_layers,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=preset.vision_patch,
        projection_dim=EMBED_DIM,
    )
    return CLIPVisionModelWithProjection(config)


def image_processor() -> CLIPImageProcessor:
    """Mean = std = 0.5, so the processor's output equals the world renderer's [-1, 1] pixels."""
    return CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        resample=3,
    )


def movq(preset: Preset) -> VQModel:
    levels = len(preset.ae_channels)
    return VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=preset.ae_channels,
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        vq_embed_dim=LATENT_CHANNELS,
        num_vq_embeddings=256,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
    )


def prior(preset: Preset) -> PriorTransformer:
    return PriorTransformer(
        num_attention_heads=4,
        attention_head_dim=EMBED_DIM // 4,
        num_layers=preset.prior_layers,
        embedding_dim=EMBED_DIM,
        num_embeddings=MAX_TEXT_TOKENS,
        additional_embeddings=4,
        dropout=0.0,
        time_embed_act_fn="gelu",
        norm_in_type="layer",
        embedding_proj_norm_type="layer",
        encoder_hid_proj_type="linear",
        added_emb_type="prd",
    )


def prior_scheduler() -> UnCLIPScheduler:
    return UnCLIPScheduler(
        variance_type="fixed_small_log",
        prediction_type="sample",
        clip_sample=True,
        clip_sample_range=10.0,
        num_train_timesteps=1000,
    )


def unet(preset: Preset) -> UNet2DConditionModel:
    levels = len(preset.unet_channels)
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 4,
        in_channels=LATENT_CHANNELS,
        out_channels=2 * LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=preset.unet_channels,
        layers_per_block=preset.unet_layers_per_block,
        attention_head_dim=preset.unet_heads,
        norm_num_groups=16 if min(preset.unet_channels) >= 32 else 8,
        cross_attention_dim=EMBED_DIM,
        encoder_hid_dim=EMBED_DIM,
        encoder_hid_dim_type="image_proj",
        addition_embed_type="image",
    )


def decoder_scheduler() -> DDPMScheduler:
    """Cosine schedule, epsilon prediction, "leading" spacing with offset 1.

    Not "trailing": the cosine schedule's last step has alpha_bar ~ 2e-9, where an epsilon model's x0 estimate
    divides by sqrt(alpha_bar) and blows any error up ~20000x; the first GPU run's samples were noise because
    of it. Starting at t=961 (alpha_bar ~ 0.004, as Stable Diffusion's schedule ends) keeps every step
    well-posed.
    """
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="epsilon",
        clip_sample=False,
        timestep_spacing="leading",
        steps_offset=1,
        variance_type="fixed_small",
    )
