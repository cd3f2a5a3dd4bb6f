"""Tiny random pipelines of every model family, built offline from configs, and an SD1.4-sized one.

They drive the unit tests and the benchmarks: no hub access, seconds to build. The CLIP text encoders use the *real*
CLIP BPE tokenizer (49,408 tokens), built from the vocabulary file that ships inside the ``open-clip-torch`` wheel;
SD3's optional T5 gets a small word-level tokenizer (``tokenizers`` WordLevel). diffusers' own test fixtures load
hub tokenizers (``hf-internal-testing/...``), so they cannot be reused offline; these mirror their sizes.

    pipe = tiny_pipeline("sdxl")                  # StableDiffusionXLPipeline, random weights, 32x32 images
    pipe = tiny_pipeline("sd3", with_t5=True)     # StableDiffusion3Pipeline with a tiny T5
    pipe = sd14_sized_pipeline()                  # SD1.4's UNet/text-encoder configs, random weights
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import tempfile
from pathlib import Path

import torch


FAMILIES = ("sd1", "sd2", "sdxl", "sd3")
CLIP_VOCAB_SIZE = 49408
_CLIP_MAX_LENGTH = 77


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable-character map (the tokenizer's base alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@functools.lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """CLIP's vocabulary and merges from ``open_clip/bpe_simple_vocab_16e6.txt.gz`` (the file OpenAI's CLIP and
    open_clip tokenize with): 256 byte characters, the same with ``</w>``, the first 48,894 merges joined, then the
    two special tokens: 49,408 entries, the ids of ``openai/clip-vit-large-patch14``'s tokenizer."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("The real CLIP tokenizer is built from the vocabulary inside the `open-clip-torch` wheel; "
                          "`pip install open-clip-torch` (or `pip install -e '.[dev]'`).")
    path = Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = lines[1:CLIP_VOCAB_SIZE - 256 - 256 - 2 + 1]
    chars = list(_bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges] + \
        ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def clip_tokenizer(pad_token: str = "<|endoftext|>", model_max_length: int = _CLIP_MAX_LENGTH):
    """The real CLIP ``CLIPTokenizer`` (SD1.x pads with ``<|endoftext|>``; SD2 and SDXL's second one with ``!``)."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        # transformers 5 reads `vocab`/`merges` (paths or objects); model_max_length must be set or encoding overflows
        return CLIPTokenizer(vocab=str(Path(tmp) / "vocab.json"), merges=str(Path(tmp) / "merges.txt"),
                             model_max_length=model_max_length, pad_token=pad_token, unk_token="<|endoftext|>",
                             bos_token="<|startoftext|>", eos_token="<|endoftext|>")


def t5_tokenizer(words: list[str] | None = None, model_max_length: int = 77):
    """A small word-level T5-style tokenizer (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, lower-cased words; ``</s>`` is
    appended) for a tiny T5 encoder: a ``PreTrainedTokenizerFast`` over a ``tokenizers`` WordLevel model."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    if words is None:
        from .mini.domain import vocabulary

        words = vocabulary() + ["photo", "person", "woman", "man", "church", "naked", "nude", "style", "van", "gogh",
                                "realistic", "art", "painting", "parachute", "dog", "cat", "of", "in"]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in words:
        vocab.setdefault(w.lower(), len(vocab))
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=model_max_length)


def _clip_text_config(tokenizer, hidden: int = 32, layers: int = 2, projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    kwargs = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                  num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, hidden_act="gelu")
    if projection_dim is not None:
        kwargs["projection_dim"] = projection_dim
    return CLIPTextConfig(**kwargs)


def _tiny_vae(latent_channels: int = 4, **kwargs):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent_channels, sample_size=32,
                         down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                         block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=8, **kwargs)


def _sd_scheduler(kind: str = "ddim", prediction_type: str = "epsilon"):
    from diffusers import DDIMScheduler, EulerDiscreteScheduler

    common = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  steps_offset=1, prediction_type=prediction_type)
    if kind == "euler":
        return EulerDiscreteScheduler(**common, timestep_spacing="leading")
    return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False)


def _eval(pipe):
    """Models built from configs start in training mode (T5's dropout would make encoding random): as
    ``from_pretrained`` leaves them, in eval mode."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_pipeline(family: str = "sd1", seed: int = 0, with_t5: bool = False):
    """A tiny random pipeline of ``family`` (``sd1``, ``sd2`` (v-prediction), ``sdxl``, ``sd3``), 32x32 images.

    CLIP encoders use the real CLIP tokenizer; ``with_t5`` adds SD3's third encoder (a tiny T5, word-level tokenizer).
    """
    from .seeding import seeded

    with seeded(seed):  # the weights depend on ``seed`` alone; the caller's random state is left as it was
        return _eval(_tiny_pipeline(family, with_t5))


def _tiny_pipeline(family: str, with_t5: bool):
    from diffusers import (FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline,
                           StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    if family not in FAMILIES:
        raise ValueError(f"`family` must be one of {FAMILIES}, got {family!r}.")
    if family in ("sd1", "sd2"):
        tok = clip_tokenizer(pad_token="<|endoftext|>" if family == "sd1" else "!")
        unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                    block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                    attention_head_dim=(2, 4) if family == "sd2" else 4, norm_num_groups=8,
                                    use_linear_projection=family == "sd2")
        text_encoder = CLIPTextModel(_clip_text_config(tok))
        scheduler = _sd_scheduler("ddim", "v_prediction" if family == "sd2" else "epsilon")
        return StableDiffusionPipeline(vae=_tiny_vae(), text_encoder=text_encoder, tokenizer=tok, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       image_encoder=None, requires_safety_checker=False)
    if family == "sdxl":
        tok, tok_2 = clip_tokenizer(), clip_tokenizer(pad_token="!")
        unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                    block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                    use_linear_projection=True, addition_embed_type="text_time",
                                    addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
                                    projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64,
                                    norm_num_groups=8)
        return StableDiffusionXLPipeline(
            vae=_tiny_vae(scaling_factor=0.13025), text_encoder=CLIPTextModel(_clip_text_config(tok)), tokenizer=tok,
            text_encoder_2=CLIPTextModelWithProjection(_clip_text_config(tok_2, projection_dim=32)),
            tokenizer_2=tok_2, unet=unet, scheduler=_sd_scheduler("euler"), force_zeros_for_empty_prompt=True)
    tok, tok_2 = clip_tokenizer(), clip_tokenizer(pad_token="!")
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, out_channels=4, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                        joint_attention_dim=64, pooled_projection_dim=64)
    text_encoder_3 = tok_3 = None
    if with_t5:
        tok_3 = t5_tokenizer()
        text_encoder_3 = T5EncoderModel(T5Config(vocab_size=len(tok_3), d_model=64, d_ff=64, d_kv=16, num_layers=2,
                                                 num_heads=4, relative_attention_num_buckets=8, pad_token_id=0,
                                                 eos_token_id=1, decoder_start_token_id=0))
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_tiny_vae(shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=CLIPTextModelWithProjection(_clip_text_config(tok, projection_dim=32)), tokenizer=tok,
        text_encoder_2=CLIPTextModelWithProjection(_clip_text_config(tok_2, projection_dim=32)), tokenizer_2=tok_2,
        text_encoder_3=text_encoder_3, tokenizer_3=tok_3)


# ``CompVis/stable-diffusion-v1-4``'s ``unet/config.json`` (the fields that differ from diffusers' defaults).
SD14_UNET_CONFIG = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, act_fn="silu", center_input_sample=False,
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, mid_block_scale_factor=1, norm_eps=1e-5,
)


def sd14_sized_pipeline(seed: int = 0, tokenizer=None):
    """A ``StableDiffusionPipeline`` with SD1.4's UNet config and CLIP ViT-L/14 text tower (768 wide, 12 layers),
    random weights, the real CLIP tokenizer (or ``tokenizer``), and a small 4-channel VAE (benchmarks time the
    UNet and the text encoder, not the VAE)."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from diffusers import AutoencoderKL

    from .seeding import seeded

    tok = tokenizer or clip_tokenizer()
    with seeded(seed):
        unet = UNet2DConditionModel(**SD14_UNET_CONFIG)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tok), hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            max_position_embeddings=tok.model_max_length, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id))
        vae = AutoencoderKL(block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=16)
    return _eval(StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet,
                                         scheduler=_sd_scheduler("ddim"), safety_checker=None, feature_extractor=None,
                                         image_encoder=None, requires_safety_checker=False))
