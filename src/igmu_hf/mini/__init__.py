"""The embedded, trained mini world: a small Stable-Diffusion-1.x-architecture model on a procedural domain.

``PIPELINE_PATH`` is a stock diffusers pipeline folder: ``DiffusionPipeline.from_pretrained(PIPELINE_PATH)``.
"""

from pathlib import Path


WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
PIPELINE_PATH = str(WEIGHTS_DIR / "pipeline")
CLIP_PATH = str(WEIGHTS_DIR / "clip")
CLASSIFIER_PATH = str(WEIGHTS_DIR / "classifier")
MULTCLF_PATH = str(WEIGHTS_DIR / "multclf")
YOLO_PATH = str(WEIGHTS_DIR / "yolo")
