"""The mini world's concept classifier: one small CNN with a head per factor, trained on exact labels.

It judges generations of the mini model ("is there still a circle in this image?"), the way NudeNet or a
MultClf head judges generations of a real model. It is a ``transformers`` ``PreTrainedModel`` so it saves and
loads with ``save_pretrained``/``from_pretrained`` (safetensors) and can be pushed to the Hub.
"""

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from .domain import FACTOR_VALUES, IMAGE_SIZE


# factor -> (label names, multi-label?)  Objects' factors are multi-label (a pair can hold two shapes).
HEADS: dict[str, tuple[tuple[str, ...], bool]] = {
    "shape": (FACTOR_VALUES["shape"], True),
    "colour": (FACTOR_VALUES["colour"], True),
    "texture": (FACTOR_VALUES["texture"], True),
    "background": (FACTOR_VALUES["background"], False),
    "style": (FACTOR_VALUES["style"], False),
}


class MiniClassifierConfig(PretrainedConfig):
    model_type = "igmu_mini_classifier"

    def __init__(self, channels: Sequence[int] = (32, 64, 128), image_size: int = IMAGE_SIZE,
                 heads: dict | None = None, threshold: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.channels = list(channels)
        self.image_size = image_size
        self.heads = heads or {k: {"labels": list(v[0]), "multi_label": v[1]} for k, v in HEADS.items()}
        self.threshold = threshold


class MiniClassifier(PreTrainedModel):
    """CNN trunk + one linear head per factor. Inputs: float images in [0, 1], shape (B, 3, H, W)."""

    config_class = MiniClassifierConfig
    main_input_name = "pixel_values"

    def __init__(self, config: MiniClassifierConfig):
        super().__init__(config)
        layers, c_in = [], 3
        for c in config.channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                       nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.trunk = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleDict({k: nn.Linear(c_in, len(v["labels"])) for k, v in config.heads.items()})
        self.post_init()

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the logits of every head."""
        features = self.trunk(pixel_values * 2 - 1)
        return {k: head(features) for k, head in self.heads.items()}

    @torch.no_grad()
    def predict_proba(self, images) -> dict[str, torch.Tensor]:
        """Probabilities per head (sigmoid for multi-label heads, softmax otherwise) for PIL images or arrays."""
        self.eval()
        logits = self(to_pixel_tensor(images, self.config.image_size).to(self.device))
        return {k: (torch.sigmoid(v) if self.config.heads[k]["multi_label"] else v.softmax(-1)) for k, v in
                logits.items()}

    def detect(self, images, factor: str, value: str) -> torch.Tensor:
        """Boolean tensor: does each image show ``value`` of ``factor`` (e.g. ``("shape", "circle")``)?"""
        if factor not in self.config.heads:
            raise ValueError(f"`factor` must be one of {list(self.config.heads)}, got {factor!r}.")
        labels = self.config.heads[factor]["labels"]
        if value not in labels:
            raise ValueError(f"`value` {value!r} is not a label of the {factor!r} head; labels: {labels}.")
        probs = self.predict_proba(images)[factor]
        j = labels.index(value)
        if self.config.heads[factor]["multi_label"]:
            return probs[:, j] > self.config.threshold
        return probs.argmax(-1) == j


def to_pixel_tensor(images, size: int = IMAGE_SIZE) -> torch.Tensor:
    """PIL images, uint8 arrays (B, H, W, 3) or float tensors (B, 3, H, W) in [0, 1] -> float (B, 3, size, size)."""
    if isinstance(images, torch.Tensor):
        x = images.float()
    else:
        if isinstance(images, Image.Image):
            images = [images]
        arrays = [np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC) if isinstance(im, Image.Image)
                             else im) for im in images]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def classifier_loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                    masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of per-head losses (BCE for multi-label heads, CE otherwise); ``masks`` drop unknowable labels."""
    total = 0.0
    for k, (_, multi) in HEADS.items():
        m = masks[k].float()
        if multi:
            per = F.binary_cross_entropy_with_logits(logits[k], targets[k].float(), reduction="none").mean(-1)
        else:
            per = F.cross_entropy(logits[k], targets[k], reduction="none")
        total = total + (per * m).sum() / m.sum().clamp(min=1)
    return total


def encode_labels(labels: list[dict]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Turn domain label dicts into head targets and masks (colour is unknowable under sepia and sketch)."""
    targets, masks = {}, {}
    for k, (names, multi) in HEADS.items():
        key = {"shape": "shapes", "colour": "colours", "texture": "textures"}.get(k, k)
        if multi:
            targets[k] = torch.tensor([[float(n in lab[key]) for n in names] for lab in labels])
        else:
            targets[k] = torch.tensor([names.index(lab[key]) for lab in labels])
        masks[k] = torch.ones(len(labels))
    masks["colour"] = torch.tensor([float(lab["style"] not in ("sepia", "sketch")) for lab in labels])
    masks["texture"] = torch.tensor([float(lab["style"] != "mosaic") for lab in labels])
    return targets, masks
