"""EvalIGMU metrics (seed 000 §5.3) as plain functions; ``metrics/<name>/`` wraps each as an ``evaluate`` module.

| aspect | function | module |
|---|---|---|
| forgetting | :func:`forgetting.forgetting_rate` (MultClf) | ``igmu/multclf_forgetting`` |
| preservation | :func:`clip_score.csdr`, :func:`perceptual.lpips_distance`, :func:`detection.person_detection_rate` | ``igmu/csdr``, ``igmu/lpips``, ``igmu/yolo_person_rate`` |
| image quality | :func:`fid.fid`, :func:`clip_score.clip_scores` | ``igmu/fid``, ``igmu/clip_score`` |
| robustness | :func:`robustness.asr_from_outcomes` | ``igmu/attack_success_rate`` |
| efficiency | :func:`efficiency.efficiency_from_run` | ``igmu/efficiency`` |
| legacy | :mod:`legacy` (NudeNet ratio, CLIP zero-shot, CLIP accuracy) | ``igmu/nudenet_ratio``, ``igmu/clip_zero_shot`` |
"""

from .clip_score import clip_scores, csdr, csdr_from_scores, load_clip
from .detection import person_detection_rate
from .efficiency import efficiency_from_run
from .fid import FeatureExtractor, fid, fid_from_features, frechet_distance
from .forgetting import forgetting_rate, forgetting_rate_from_probabilities
from .perceptual import load_lpips, lpips_distance
from .robustness import asr_from_outcomes


__all__ = ["asr_from_outcomes", "clip_scores", "csdr", "csdr_from_scores", "efficiency_from_run", "FeatureExtractor",
           "fid", "fid_from_features", "forgetting_rate", "forgetting_rate_from_probabilities", "frechet_distance",
           "load_clip", "load_lpips", "lpips_distance", "person_detection_rate"]
