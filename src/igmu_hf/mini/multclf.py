"""The mini world's MultClf tasks and their training data (exact labels from the domain's generator)."""

import datasets
import numpy as np
from PIL import Image

from .domain import make_dataset
from .prompts import factor_values


FACTOR_LABEL_KEY = {"shape": "shapes", "colour": "colours", "texture": "textures", "background": "background",
                    "style": "style"}
MINI_TASKS: list[str] = [v for f in FACTOR_LABEL_KEY for v in factor_values(f)]


def task_labels(label: dict) -> dict[str, int]:
    """0/1 per mini task for one scene's labels; -1 where the image cannot show it (colour under sepia/sketch,
    texture under mosaic), so the head is not trained on an unknowable answer."""
    out = {}
    for factor, key in FACTOR_LABEL_KEY.items():
        present = label[key] if isinstance(label[key], list) else [label[key]]
        unknowable = (factor == "colour" and label["style"] in ("sepia", "sketch")) or \
                     (factor == "texture" and label["style"] == "mosaic")
        for value in factor_values(factor):
            out[value] = -1 if unknowable else int(value in present)
    return out


def mini_multclf_dataset(num_images: int, seed: int = 0) -> datasets.Dataset:
    """A ``datasets.Dataset`` with an ``image`` column and one label column per mini task."""
    images, captions, labels = make_dataset(num_images, seed=seed)

    def rows():
        for img, cap, lab in zip(images, captions, labels):
            yield {"image": Image.fromarray(np.asarray(img)), "caption": cap, **task_labels(lab)}

    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string"),
                                  **{t: datasets.Value("int8") for t in MINI_TASKS}})
    return datasets.Dataset.from_generator(rows, features=features)
