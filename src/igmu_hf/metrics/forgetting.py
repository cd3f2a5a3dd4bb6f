"""Forgetting (seed 000 §5.3): the share of the unlearned model's images MultClf still classifies as the target."""

from typing import Sequence

import torch

from .images import prepare_images


@torch.no_grad()
def multclf_probabilities(images: Sequence, model, processor, task: str, batch_size: int = 128) -> torch.Tensor:
    """P(target | image) from ``task``'s head, (N,)."""
    index = model.task_index(task)
    images = prepare_images(images)
    out = []
    for i in range(0, len(images), batch_size):
        pixels = processor(images=images[i:i + batch_size], return_tensors="pt")["pixel_values"]
        out.append(model.predict_proba(pixels)[:, index])
    return torch.cat(out)


def concept_flags(probabilities: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-image verdicts, 1 where the head says "target" (probability > threshold), 0 elsewhere."""
    return (torch.as_tensor(probabilities).float() > threshold).int()


def forgetting_rate_from_probabilities(probabilities: torch.Tensor, threshold: float = 0.5) -> dict:
    """Share of images whose head says "target" (probability > threshold; for a binary head at 0.5 this is the
    argmax of [not target, target]). Lower is better."""
    p = torch.as_tensor(probabilities).float()
    if p.numel() == 0:
        raise ValueError("No images to classify; a forgetting rate over no images is undefined.")
    from ..validation import check_number

    check_number("threshold", threshold, 0, 1)
    from .intervals import rate_interval, with_interval

    flags = concept_flags(p, threshold).numpy()
    return with_interval({"forgetting_rate": float(flags.mean()), "mean_probability": float(p.mean()),
                          "num_images": int(p.numel()), "threshold": threshold}, rate_interval(flags))


def forgetting_rate(images: Sequence, model, processor, task: str) -> dict:
    """MultClf forgetting rate of ``images`` for ``task`` (uses the model's configured threshold)."""
    return forgetting_rate_from_probabilities(multclf_probabilities(images, model, processor, task),
                                              model.config.threshold)
