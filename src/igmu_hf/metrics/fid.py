"""FID between two image sets: the Fréchet distance of Gaussians fitted to their features.

d² = |mu1 - mu2|² + Tr(S1 + S2 - 2 (S1 S2)^½). The feature extractor is configurable: ``"inception"`` (torchvision's
Inception-v3 pool features, the usual FID; needs its weights) or ``"clip:<model>"`` (a CLIP vision tower, which the mini
world uses offline). A FID with another extractor is not comparable with published Inception FIDs; the result records
the extractor.
"""

from typing import Sequence

import numpy as np
import torch

from .images import prepare_images


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2) (scipy's matrix square root)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"Feature sizes differ: {mu1.shape} vs {mu2.shape}; use the same extractor for both sets.")
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # near-singular product: regularise, as is standard practice
        eps = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + eps) @ (sigma2 + eps))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(features1: np.ndarray, features2: np.ndarray, details: bool = False) -> float | dict:
    """FID of two (N, D) feature arrays (each needs N >= 2 and finite features).

    With ``details``, a dict that also says whether a covariance is singular (N ≤ D: fewer images than feature
    dimensions, so the distance is defined but unreliable; the report carries the flag instead of hiding it)."""
    f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if len(f1) < 2 or len(f2) < 2:
        raise ValueError(f"FID needs at least 2 images per set to estimate a covariance, got {len(f1)} and {len(f2)}.")
    if not (np.isfinite(f1).all() and np.isfinite(f2).all()):
        raise ValueError("FID features hold NaN or infinite values; check the images and the feature extractor.")
    value = frechet_distance(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    if not details:
        return value
    out = {"fid": value, "singular_covariance": bool(min(len(f1), len(f2)) <= f1.shape[1]),
           "feature_dim": int(f1.shape[1])}
    if len(f1) != len(f2) or len(f1) < 4:  # the jackknife drops pairs: it needs paired sets of a few images
        return {**out, "low": None, "high": None, "n": int(min(len(f1), len(f2))),
                "interval": "none: FID's interval needs paired sets of at least 4 images each"}
    from .intervals import jackknife_interval

    def without(kept: np.ndarray) -> float:
        a, b = f1[kept], f2[kept]
        return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))

    return {**out, **jackknife_interval(len(f1), without, value)}


class FeatureExtractor:
    """Callable images -> (N, D) numpy features, with an ``info`` dict for the report."""

    def __init__(self, name: str = "inception"):
        self.name = name
        if name == "inception":
            from torchvision.models import Inception_V3_Weights, inception_v3

            try:
                self.model = inception_v3(weights=Inception_V3_Weights.IMAGENET1K_V1, aux_logits=True).eval()
            except Exception as err:
                raise RuntimeError(f"FID's Inception-v3 weights could not be loaded ({type(err).__name__}: {err}); "
                                   f"offline, pass feature_extractor='clip:<CLIP folder or id>' instead.") from err
            self.model.fc = torch.nn.Identity()
            self.transform = Inception_V3_Weights.IMAGENET1K_V1.transforms()
            self.info = {"feature_extractor": "torchvision/inception_v3 IMAGENET1K_V1 (pool3, 2048-d)"}
        elif name.startswith("clip:"):
            from .loaders import load_detector

            from ..hub import portable_id

            self.model, self.processor, _ = load_detector("clip", name[len("clip:"):])  # the CLIP score's, cached
            self.info = {"feature_extractor": f"CLIP image embeddings of {portable_id(name[len('clip:'):])}"}
        else:
            raise ValueError(f"Unknown FID feature extractor {name!r}; use 'inception' or 'clip:<CLIP folder or id>'.")

    @torch.no_grad()
    def __call__(self, images: Sequence, batch_size: int = 64) -> np.ndarray:
        images = prepare_images(images)
        if self.name == "inception":
            feats = [self.model(torch.stack([self.transform(im) for im in images[i:i + batch_size]]))
                     for i in range(0, len(images), batch_size)]
            return torch.cat(feats).numpy()
        from .clip_score import clip_image_embeddings

        return clip_image_embeddings(images, self.model, self.processor, batch_size).numpy()


def fid(images1: Sequence, images2: Sequence, extractor: FeatureExtractor) -> dict:
    """FID between two image sets with ``extractor``; lower = more alike."""
    return {**fid_from_features(extractor(images1), extractor(images2), details=True),
            "num_images": [len(images1), len(images2)], **extractor.info}
