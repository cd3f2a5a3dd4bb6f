"""CLIP score and CSDR (seed 000 §5.3): CS = 100 * max(cos(image, text), 0) with a CLIP model.

CSDR = mean_i |CS(x_orig_i, p~_i) - CS(x_unl_i, p~_i)| / CS(x_orig_i, p~_i) * 100, where p~_i is prompt i with every
target word removed (CatIGMU do-1), x_orig_i the original model's image for p~_i and x_unl_i the unlearned model's
image for the full prompt i, same seed. Lower is better (the rest of the prompt survived unlearning).
"""

from typing import Sequence

import torch

from .images import prepare_images


def load_clip(pretrained_model_name_or_path: str):
    """``(CLIPModel, CLIPProcessor)`` in eval mode, e.g. ``openai/clip-vit-large-patch14`` or the mini CLIP."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(pretrained_model_name_or_path, dtype=torch.float32).eval()
    return model, CLIPProcessor.from_pretrained(pretrained_model_name_or_path)


@torch.no_grad()
def clip_image_embeddings(images: Sequence, model, processor, batch_size: int = 64) -> torch.Tensor:
    """L2-normalised image embeddings, (N, D)."""
    images = prepare_images(images)
    out = []
    for i in range(0, len(images), batch_size):
        pixels = processor(images=images[i:i + batch_size], return_tensors="pt")["pixel_values"].to(model.device)
        feats = model.get_image_features(pixel_values=pixels)
        out.append(_as_tensor(feats).float())
    return torch.nn.functional.normalize(torch.cat(out), dim=-1)


@torch.no_grad()
def clip_text_embeddings(prompts: Sequence[str], model, processor, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised text embeddings, (N, D)."""
    if len(prompts) == 0:
        raise ValueError("`prompts` is empty; a CLIP score needs one prompt per image.")
    from .checks import check_prompts

    check_prompts(prompts, getattr(processor, "tokenizer", None))
    out = []
    for i in range(0, len(prompts), batch_size):
        tok = processor(text=list(prompts[i:i + batch_size]), return_tensors="pt", padding=True, truncation=True)
        feats = model.get_text_features(input_ids=tok["input_ids"].to(model.device),
                                        attention_mask=tok["attention_mask"].to(model.device))
        out.append(_as_tensor(feats).float())
    return torch.nn.functional.normalize(torch.cat(out), dim=-1)


def _as_tensor(feats):
    return feats if isinstance(feats, torch.Tensor) else feats.pooler_output


def clip_score_from_embeddings(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """Per-pair CS = 100 * max(cos, 0) of row-aligned embeddings (normalised here)."""
    if image_embeds.shape != text_embeds.shape:
        raise ValueError(f"One text per image: image embeddings {tuple(image_embeds.shape)} vs text embeddings "
                         f"{tuple(text_embeds.shape)}.")
    cos = torch.nn.functional.cosine_similarity(image_embeds.float(), text_embeds.float(), dim=-1)
    return 100.0 * cos.clamp(min=0)


def clip_scores(images: Sequence, prompts: Sequence[str], model, processor) -> torch.Tensor:
    """Per-image CLIP score of ``images[i]`` with ``prompts[i]``."""
    if len(images) != len(prompts):
        raise ValueError(f"One prompt per image: got {len(images)} images and {len(prompts)} prompts.")
    return clip_score_from_embeddings(clip_image_embeddings(images, model, processor),
                                      clip_text_embeddings(prompts, model, processor))


def csdr_from_scores(original_scores: torch.Tensor, unlearned_scores: torch.Tensor, seed: int = 0) -> dict:
    """CSDR (in %) from paired CLIP scores; pairs whose original score is 0 have no defined ratio and are counted
    in ``num_undefined`` instead of dividing by zero. ``low``/``high``: a bootstrap interval over the pairs
    (``seed`` fixes its resamples); ``per_pair``: each defined pair's ratio, in order."""
    a, b = torch.as_tensor(original_scores).double(), torch.as_tensor(unlearned_scores).double()
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError(f"CSDR needs paired, non-empty scores; got {tuple(a.shape)} and {tuple(b.shape)}.")
    ok = a > 0
    if not bool(ok.any()):
        raise ValueError("Every original CLIP score is 0, so CSDR is undefined; check the CLIP model and prompts.")
    ratio = (a[ok] - b[ok]).abs() / a[ok] * 100.0
    from .intervals import bootstrap_interval, with_interval

    return with_interval({"csdr": float(ratio.mean()), "num_pairs": int(ok.sum()), "num_undefined": int((~ok).sum()),
                          "per_pair": ratio.tolist()}, bootstrap_interval(ratio.numpy(), seed=seed))


def csdr(original_images: Sequence, unlearned_images: Sequence, neutral_prompts: Sequence[str], model,
         processor) -> dict:
    """CSDR of paired images (``original_images[i]`` generated for ``neutral_prompts[i]``, ``unlearned_images[i]`` for
    the full prompt, same seed), scored against the neutral prompts."""
    if not (len(original_images) == len(unlearned_images) == len(neutral_prompts)):
        raise ValueError(f"CSDR pairs images: got {len(original_images)} original, {len(unlearned_images)} "
                         f"unlearned images and {len(neutral_prompts)} prompts.")
    text = clip_text_embeddings(neutral_prompts, model, processor)
    a = clip_score_from_embeddings(clip_image_embeddings(original_images, model, processor), text)
    b = clip_score_from_embeddings(clip_image_embeddings(unlearned_images, model, processor), text)
    return {**csdr_from_scores(a, b), "original_clip_score": float(a.mean()), "unlearned_clip_score": float(b.mean())}


def mean_clip_score(images: Sequence, prompts: Sequence[str], model, processor, seed: int = 0) -> dict:
    """Mean CLIP score of ``images[i]`` with ``prompts[i]``, with a bootstrap interval over the images."""
    from .intervals import bootstrap_interval, with_interval

    scores = clip_scores(images, prompts, model, processor).double().numpy()
    return with_interval({"clip_score": float(scores.mean()), "num_images": int(scores.size)},
                         bootstrap_interval(scores, seed=seed))
