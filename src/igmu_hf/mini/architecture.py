"""Configs of the mini world's models and of tiny random SD1.x components for unit tests.

All are the stock classes of Stable Diffusion 1.x (``CLIPTokenizer``, ``CLIPTextModel``/``CLIPModel``,
``AutoencoderKL``, ``UNet2DConditionModel``, ``DDIMScheduler``), only smaller, so every code path that runs on the
mini world also runs on ``CompVis/stable-diffusion-v1-4``.
"""

import json
import os
from pathlib import Path

from .domain import IMAGE_SIZE, vocabulary


MAX_LENGTH = 32  # tokenizer.model_max_length of the mini world (SD1.x uses 77)
TEXT_HIDDEN = 128  # text hidden size = the UNet's cross_attention_dim
LATENT_CHANNELS = 8  # VAE latent channels = UNet in/out channels (SD1.x has 4; 8 keeps stripes and dots at 8x8)
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bpe(word_symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair merge ``word_symbols`` with ``ranks`` the way CLIP's tokenizer does (lowest rank first)."""
    symbols = list(word_symbols)
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b), None), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
        pairs = [(r, i) for r, i in pairs if r is not None]
        if not pairs:
            break
        _, i = min(pairs)
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2:]
    return symbols


def build_vocab_and_merges(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP BPE vocabulary in which every word of ``words`` is exactly one token and nothing else exists.

    Merges are
    appended so each word fully merges; merges appended later never change the result of earlier words, because
    BPE always applies the lowest-ranked merge available first. (Written here: tokenizers' BPE trainer would
    also learn sub-words we do not want.)
    """
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        symbols = _bpe(list(word[:-1]) + [word[-1] + "</w>"], ranks)
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            symbols = [symbols[0] + symbols[1]] + symbols[2:]
    vocab = {w + "</w>": i for i, w in enumerate(words)}
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    # A BPE vocabulary must hold every piece its merges use (characters, partial words); they come last. The
    # vocabulary is closed: it cannot spell arbitrary text, so a word outside the domain splits into pieces the
    # text encoder never saw, which `igmu_hf.text.check_concept_in_vocab` reports.
    for w in words:
        for ch in list(w[:-1]) + [w[-1] + "</w>"]:
            vocab.setdefault(ch, len(vocab))
    for a, b in merges:
        for piece in (a, b, a + b):
            vocab.setdefault(piece, len(vocab))
    return vocab, merges


def build_tokenizer(save_directory: str | os.PathLike | None = None):
    """Build the mini world's ``CLIPTokenizer`` (optionally saving it with ``save_pretrained``)."""
    import tempfile

    from transformers import CLIPTokenizer

    vocab, merges = build_vocab_and_merges(vocabulary())
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab))
        merges_file.write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
        tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=MAX_LENGTH,
                                  unk_token=EOS, bos_token=BOS, eos_token=EOS, pad_token=EOS)
        if save_directory is not None:
            tokenizer.save_pretrained(save_directory)
    return tokenizer


def special_token_ids() -> dict[str, int]:
    """``bos_token_id``/``eos_token_id``/``pad_token_id`` of the mini tokenizer, for text-encoder configs.

    They must be the tokenizer's real ids: CLIP's text tower pools its output at the first ``eos_token_id``, and a
    wrong id makes it pool the BOS position, whose causal hidden state is the same for every prompt.
    """
    tok = build_tokenizer()
    return dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


def clip_config(vocab_size: int):
    """``CLIPConfig`` of the mini CLIP (text tower = the pipeline's text encoder)."""
    from transformers import CLIPConfig

    text = dict(vocab_size=vocab_size, hidden_size=TEXT_HIDDEN, intermediate_size=4 * TEXT_HIDDEN,
                num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=MAX_LENGTH,
                **special_token_ids(),
                projection_dim=128)
    vision = dict(image_size=IMAGE_SIZE, patch_size=8, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                  num_attention_heads=4, projection_dim=128)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=128)


def vae_config(latent_channels: int = LATENT_CHANNELS) -> dict:
    """``AutoencoderKL`` kwargs: 32x32 RGB to a ``latent_channels`` x 8 x 8 latent (factor 4)."""
    return dict(in_channels=3, out_channels=3, latent_channels=latent_channels, sample_size=IMAGE_SIZE,
                down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16)


def unet_config(latent_channels: int = LATENT_CHANNELS) -> dict:
    """``UNet2DConditionModel`` kwargs of the mini UNet (same block types as SD1.x, fewer channels)."""
    return dict(sample_size=IMAGE_SIZE // 4, in_channels=latent_channels, out_channels=latent_channels,
                layers_per_block=1,
                block_out_channels=(48, 96), down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                cross_attention_dim=TEXT_HIDDEN, attention_head_dim=8, norm_num_groups=16)


def scheduler_config() -> dict:
    """SD1.x's noise schedule (scaled-linear betas, 1000 steps, epsilon prediction)."""
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")


def tiny_random_components(seed: int = 0) -> dict:
    """Randomly initialised SD1.x-architecture components, small enough for fast unit tests.

    Returns the ``components`` dict of a ``StableDiffusionPipeline`` (no safety checker), like diffusers' own
    ``get_dummy_components`` in its pipeline tests.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..seeding import seeded

    tokenizer = build_tokenizer()
    with seeded(seed):  # each component seeded alone; the caller's random state is left as it was
        unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                    block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                    attention_head_dim=4, norm_num_groups=8)
    with seeded(seed):
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=32,
                            down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                            block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=8)
    n = len(tokenizer)
    with seeded(seed):
        text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=n, hidden_size=32, intermediate_size=64,
                                                    num_hidden_layers=2, num_attention_heads=4,
                                                    max_position_embeddings=MAX_LENGTH, **special_token_ids()))
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                scheduler=DDIMScheduler(**scheduler_config()), safety_checker=None, feature_extractor=None,
                image_encoder=None, requires_safety_checker=False)
