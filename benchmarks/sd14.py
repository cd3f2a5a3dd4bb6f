"""Stable Diffusion 1.4-sized random components for benchmarks (the real configs, random weights: no download).

The UNet config is ``CompVis/stable-diffusion-v1-4``'s ``unet/config.json``; the text encoder has SD1.4's CLIP
ViT-L/14 text tower size (768 hidden, 12 layers) over the mini world's tokenizer.
"""

import torch


SD14_UNET_CONFIG = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, act_fn="silu", center_input_sample=False,
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, mid_block_scale_factor=1, norm_eps=1e-5,
)


def sd14_sized_unet(seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**SD14_UNET_CONFIG)


def sd14_sized_text_encoder(tokenizer, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    from igmu_hf.mini.architecture import special_token_ids

    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12,
                                        max_position_embeddings=tokenizer.model_max_length, **special_token_ids()))


def sd14_sized_pipeline(model_max_length: int | None = None):
    """A StableDiffusionPipeline with the SD1.4-sized UNet and text encoder, a small 4-channel VAE (the benchmarks
    time the UNet) and the mini tokenizer (``model_max_length`` 77 for SD's sequence length)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline

    from igmu_hf.mini.architecture import build_tokenizer, scheduler_config

    tok = build_tokenizer()
    if model_max_length is not None:
        tok.model_max_length = model_max_length
    vae = AutoencoderKL(block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=16)
    return StableDiffusionPipeline(vae=vae, text_encoder=sd14_sized_text_encoder(tok), tokenizer=tok,
                                   unet=sd14_sized_unet(), scheduler=DDIMScheduler(**scheduler_config()),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
