"""DataIGM (seed 000 §4.3, §5.4): schema, the prompt families of Table 10, the builder core, the mini recipe and the
detector-reliability study. ``dataset_scripts/`` and ``igmu dataigm`` are thin skins over this package."""

from .schema import FEATURES, LABEL_NAMES, REAL_CONFIGS, SOURCE_NAMES, SPLITS  # noqa: F401
