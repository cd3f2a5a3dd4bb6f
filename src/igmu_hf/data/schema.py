"""DataIGM's schema (seed 000 §5.4, Table 7): one place for the features, label order and configs.

Every config is one unlearning task; its rows are images labelled ``target`` (shows the content to forget) or
``pair`` (its retained counterpart), from one of three sources. The label order is fixed here, explicitly: the IGMU
repository's folders sort alphabetically and give the opposite order for nudity and church.
"""

import datasets

LABEL_NAMES: tuple[str, ...] = ("pair", "target")
SOURCE_NAMES: tuple[str, ...] = ("REAL", "LAION", "SD-GEN")
SPLITS: tuple[str, ...] = ("train", "test")

# The real recipe's configs (paper Table 7) -> the CatIGMU target each one unlearns.
REAL_CONFIGS: dict[str, str] = {"nudity": "nudity", "vangogh": "Van Gogh style", "church": "church",
                                "parachute": "parachute"}

FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "image": datasets.Image(),
    "label": datasets.ClassLabel(names=list(LABEL_NAMES)),
    "source": datasets.ClassLabel(names=list(SOURCE_NAMES)),
    "prompt": datasets.Value("string"),
    "generator": {"model_id": datasets.Value("string"), "method": datasets.Value("string")},
    "seed": datasets.Value("int64"),
    "provenance": {"origin": datasets.Value("string"), "license": datasets.Value("string")},
})


def source_slug(source: str) -> str:
    """File-name form of a source: ``REAL`` -> ``real``, ``SD-GEN`` -> ``sd-gen``."""
    check_source(source)
    return source.lower()


def check_source(source: str) -> str:
    if source not in SOURCE_NAMES:
        raise ValueError(f"Unknown DataIGM source {source!r}; sources: {', '.join(SOURCE_NAMES)}.")
    return source


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"Unknown DataIGM split {split!r}; splits: {', '.join(SPLITS)}.")
    return split


def check_label(label: str) -> int:
    """The class index of ``"target"``/``"pair"``; anything else is refused by name."""
    if label not in LABEL_NAMES:
        raise ValueError(f"A DataIGM label must be one of {list(LABEL_NAMES)}, got {label!r}.")
    return LABEL_NAMES.index(label)


def make_row(row_id: str, image_png: bytes, label: str, source: str, prompt: str = "", model_id: str = "",
             method: str = "", seed: int = -1, origin: str = "", license: str = "") -> dict:
    """One DataIGM row as the features above store it (the image as PNG/JPEG bytes, never a local path)."""
    return {"id": row_id, "image": {"bytes": image_png, "path": None}, "label": check_label(label),
            "source": SOURCE_NAMES.index(check_source(source)), "prompt": prompt,
            "generator": {"model_id": model_id, "method": method}, "seed": int(seed),
            "provenance": {"origin": origin, "license": license}}
