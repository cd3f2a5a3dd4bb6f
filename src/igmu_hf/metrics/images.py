"""Image-set checks every metric shares: RGB conversion (said out loud), pairing by explicit ids."""

import logging
from typing import Mapping, Sequence

import numpy as np
from PIL import Image


logger = logging.getLogger(__name__)


def prepare_images(images: Sequence, name: str = "images", size: tuple[int, int] | None = None) -> list[Image.Image]:
    """PIL RGB images of one size. Other modes (L, RGBA, P ...) are converted and arrays wrapped, with a warning that
    says how many were changed; mixed sizes are resized to ``size`` (default: the first image's) with a warning."""
    if images is None or len(images) == 0:
        raise ValueError(f"`{name}` is empty; a metric over no images is undefined.")
    out, converted, resized = [], 0, 0
    for img in images:
        if isinstance(img, np.ndarray):
            img = Image.fromarray(img)
        if not isinstance(img, Image.Image):
            raise TypeError(f"`{name}` must hold PIL images or uint8 arrays, got {type(img).__name__}.")
        if img.mode != "RGB":
            img, converted = img.convert("RGB"), converted + 1
        out.append(img)
    size = size or out[0].size
    for i, img in enumerate(out):
        if img.size != size:
            out[i], resized = img.resize(size, Image.BICUBIC), resized + 1
    if converted:
        logger.warning("%s: converted %d of %d images to RGB.", name, converted, len(out))
    if resized:
        logger.warning("%s: resized %d of %d images to %dx%d (the sizes were mixed).", name, resized, len(out), *size)
    return out


def pair_by_ids(first: Mapping[str, object], second: Mapping[str, object], first_name: str = "original",
                second_name: str = "unlearned") -> list[str]:
    """The shared ids, sorted, when both sets hold exactly the same ids; otherwise a clear error naming the misfits.

    Pairing by id (never by listing order) is what makes a paired metric mean "same prompt, same seed".
    """
    if not first or not second:
        raise ValueError(f"Paired metric needs images in both sets; got {len(first)} {first_name} and "
                         f"{len(second)} {second_name} images.")
    a, b = set(first), set(second)
    if a != b:
        only_a, only_b = sorted(a - b)[:5], sorted(b - a)[:5]
        raise ValueError(f"The {first_name} and {second_name} sets must hold the same image ids to be paired "
                         f"({len(a)} vs {len(b)} images); only in {first_name}: {only_a}, only in {second_name}: "
                         f"{only_b}. Generate both with the same prompts and seeds.")
    return sorted(a)
