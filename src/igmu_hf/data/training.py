"""DataIGM as training data for MultClf heads (``examples/train_multclf.py``)."""

import datasets

from .schema import SOURCE_NAMES


def dataigm_task_dataset(dataset: str, configs: list[str], split: str, sources: list[str] | None = None
                         ) -> datasets.Dataset:
    """Rows of ``split`` of each config with ``image``, ``source`` and one 0/1 column per config (its label on its
    own rows, -1 = unknown on the other configs' rows), optionally only from ``sources``."""
    bad = sorted(set(sources or []) - set(SOURCE_NAMES))
    if bad:
        raise ValueError(f"`--sources` {bad} are not DataIGM sources; sources: {', '.join(SOURCE_NAMES)}.")
    keep = [SOURCE_NAMES.index(s) for s in (sources or SOURCE_NAMES)]
    parts = []
    for config in configs:
        ds = datasets.load_dataset(dataset, config, split=split)
        ds = ds.filter(lambda s: s in keep, input_columns="source")
        if not len(ds):
            raise ValueError(f"DataIGM config {config!r} has no {split} rows from {sources}.")
        labels = list(ds["label"])
        ds = ds.select_columns(["image", "source", "id"])
        for other in configs:
            ds = ds.add_column(other, labels if other == config else [-1] * len(ds))
        parts.append(ds.cast_column("source", datasets.Value("int64")))
    return datasets.concatenate_datasets(parts)
