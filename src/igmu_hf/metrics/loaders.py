"""Load the detectors the metrics use, by name, once per process; ``"mini"`` names the mini world's shipped one.

Used by the evaluator and by the ``evaluate`` modules (``evaluate.load("metrics/csdr", config_name="openai/clip-...")``).
"""

from functools import lru_cache
from typing import Any


from ..domains.real import REAL_DETECTORS  # noqa: F401  (the real world's detector ids, re-exported)


def mini_detectors() -> dict[str, str]:
    """The mini world's detectors (all shipped in the package)."""
    from ..domains import get_domain

    return get_domain("mini").metric_detectors


def resolve(kind: str, name: str | None) -> str:
    """``None``/``"mini"``/``"default"`` -> the mini world's detector of ``kind``; anything else unchanged."""
    return mini_detectors()[kind] if name in (None, "", "mini", "default") else name


def check_detector_name(kind: str, name: str) -> None:
    """Refuse, naming the fix, a detector that is neither an existing local folder (or file) nor a Hub id
    (``org/name``), before a Hub client reports it as a malformed repository id."""
    from pathlib import Path

    from ..hub import looks_like_hub_id, resolve_id

    target = name.removeprefix("clip:") if kind == "fid_feature_extractor" else name
    if (kind == "fid_feature_extractor" and target == "inception") or looks_like_hub_id(target) or \
            Path(resolve_id(target)).expanduser().exists():
        return
    raise FileNotFoundError(f"The {kind} detector {name!r} is neither an existing local folder nor a Hub id "
                            f"(`org/name`); pass an existing folder, a Hub id, or 'mini' for the mini world's.")


@lru_cache(maxsize=8)
def load_detector(kind: str, name: str | None = None) -> tuple[Any, ...]:
    """``(model, processor_or_None, info)`` for ``kind`` in multclf, clip, yolo, fid_feature_extractor."""
    from ..hub import portable_id
    from ..judges import state_dict_sha256

    name = resolve(kind, name)
    check_detector_name(kind, name)
    recorded = portable_id(name)
    if kind == "multclf":
        from ..detectors.multclf import load_multclf

        model, processor = load_multclf(name)
        return model, processor, {"id": recorded, "checkpoint_sha256": state_dict_sha256(model),
                                  "threshold": model.config.threshold}
    if kind == "clip":
        from .clip_score import load_clip

        model, processor = load_clip(name)
        return model, processor, {"id": recorded, "checkpoint_sha256": state_dict_sha256(model)}
    if kind == "yolo":
        from ..detectors.yolo import load_yolo

        model = load_yolo(name)
        return model, None, {"id": recorded, "checkpoint_sha256": state_dict_sha256(model.model)}
    if kind == "fid_feature_extractor":
        from .fid import FeatureExtractor

        extractor = FeatureExtractor(name)
        return extractor, None, extractor.info
    raise ValueError(f"Unknown detector kind {kind!r}; kinds: multclf, clip, yolo, fid_feature_extractor.")


def module_data_dir(module) -> str:
    """``_build_data_dir`` of igmu_hf's ``evaluate`` modules (each sets ``_build_data_dir = module_data_dir``).

    Their ``config_name`` names a detector (a Hub id or a local folder), and ``evaluate`` joins it into its cache
    path, so an absolute folder would *become* the cache folder: created when missing, and given ``.arrow`` lock files
    inside the user's model folder. This keeps the cache under evaluate's own root, in a folder named by a hash."""
    import hashlib
    import os
    import re

    name = str(module.config_name)
    safe = re.sub(r"[^\w.-]+", "_", name)[-40:].strip("_.") or "default"
    folder = os.path.join(module._data_dir_root, module.name, f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:12]}")
    os.makedirs(folder, exist_ok=True)
    return folder
