"""LPIPS between paired images (the lpips package), paired by explicit ids, never by listing order."""

import logging
from typing import Mapping

import numpy as np
import torch

from .images import pair_by_ids, prepare_images


logger = logging.getLogger(__name__)


def load_lpips(net: str = "alex", pretrained_backbone: bool | None = None):
    """``(lpips.LPIPS, info)``. The linear calibration heads ship in the lpips wheel; the backbone (AlexNet/VGG)
    comes from torchvision's download. ``pretrained_backbone=None`` tries it and, offline, falls back to a random
    backbone with a warning; ``info["backbone_weights"]`` records which one scored, so a report never hides it."""
    import warnings

    import lpips

    warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning,
                            module="torchvision")  # lpips 0.1.4 calls torchvision's deprecated `pretrained=`
    if pretrained_backbone is not False:
        try:
            return lpips.LPIPS(net=net, pretrained=True, pnet_rand=False, verbose=False).eval(), \
                {"net": net, "backbone_weights": "pretrained"}
        except Exception as err:  # offline: torchvision cannot download the backbone
            if pretrained_backbone:
                raise RuntimeError(f"LPIPS could not load the pretrained {net} backbone ({err}); connect to the "
                                   f"internet once or pass pretrained_backbone=False (random backbone).") from err
            logger.warning("LPIPS: pretrained %s backbone unavailable (%s); using a random backbone (recorded in "
                           "the result as backbone_weights='random').", net, type(err).__name__)
    from ..seeding import seeded

    with seeded(0):  # a random backbone must at least be the same random backbone every run
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()
    return model, {"net": net, "backbone_weights": "random", "seed": 0}


def _to_lpips_tensor(images) -> torch.Tensor:
    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2)


@torch.no_grad()
def lpips_distances(first: Mapping[str, object], second: Mapping[str, object], model, batch_size: int = 64,
                    first_name: str = "original", second_name: str = "unlearned") -> dict[str, float]:
    """Per-id LPIPS distance between ``first[id]`` and ``second[id]`` (same ids required)."""
    ids = pair_by_ids(first, second, first_name, second_name)
    a = prepare_images([first[i] for i in ids], first_name)
    b = prepare_images([second[i] for i in ids], second_name, size=a[0].size)
    out = {}
    for k in range(0, len(ids), batch_size):
        d = model(_to_lpips_tensor(a[k:k + batch_size]), _to_lpips_tensor(b[k:k + batch_size]))
        out.update({i: float(v) for i, v in zip(ids[k:k + batch_size], d.flatten())})
    return out


def lpips_distance(first: Mapping[str, object], second: Mapping[str, object], model, **kwargs) -> dict:
    """Mean LPIPS over the paired ids (lower = more alike), with a bootstrap interval over the pairs."""
    return lpips_summary(lpips_distances(first, second, model, **kwargs))


def lpips_summary(per_pair: Mapping[str, float], seed: int = 0) -> dict:
    """Mean of per-pair LPIPS distances with a seeded bootstrap interval over the pairs."""
    from .intervals import bootstrap_interval, with_interval

    values = np.array(list(per_pair.values()), dtype=float)
    return with_interval({"lpips": float(values.mean()), "num_pairs": len(values)},
                         bootstrap_interval(values, seed=seed))
