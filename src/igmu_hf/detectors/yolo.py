"""YOLO object detectors (ultralytics) for the person-detection preservation metric, saved as safetensors.

Real use: ``load_yolo("yolov8n.pt")`` (ultralytics downloads the COCO model; class ``person``). Offline and on the mini
world: a folder holding ``yolo.yaml`` (the architecture, built by ultralytics offline) and ``model.safetensors`` (the
weights), e.g. the mini world's tiny YOLO trained on the domain's object boxes (class ``object``). Safetensors rather
than ultralytics' pickled ``.pt`` so that loading a downloaded detector never runs code.
"""

import json
import os
from pathlib import Path
from typing import Any

import yaml


YOLO_CONFIG = "yolo.yaml"
YOLO_WEIGHTS = "model.safetensors"
YOLO_INFO = "detector.json"


def load_yolo(pretrained_model_name_or_path: str | os.PathLike):
    """An ultralytics ``YOLO`` from a saved folder (see :func:`save_yolo`) or any name ultralytics accepts."""
    from safetensors.torch import load_file
    from ultralytics import YOLO

    folder = Path(pretrained_model_name_or_path)
    if folder.is_dir():
        if not (folder / YOLO_CONFIG).exists() or not (folder / YOLO_WEIGHTS).exists():
            raise FileNotFoundError(f"{str(folder)!r} is not a saved YOLO folder: it needs {YOLO_CONFIG} and "
                                    f"{YOLO_WEIGHTS} (written by igmu_hf.detectors.yolo.save_yolo).")
        model = YOLO(str(folder / YOLO_CONFIG), task="detect", verbose=False)
        model.model.load_state_dict(load_file(str(folder / YOLO_WEIGHTS)))
        info = json.loads((folder / YOLO_INFO).read_text()) if (folder / YOLO_INFO).exists() else {}
        model.model.names = {int(k): v for k, v in info.get("names", model.model.names).items()}
        model.model.eval()
        model.overrides["imgsz"] = info.get("imgsz", 640)
        return model
    return YOLO(str(pretrained_model_name_or_path))


def save_yolo(model, save_directory: str | os.PathLike, imgsz: int = 640, extra: dict[str, Any] | None = None) -> Path:
    """Write ``yolo.yaml`` + ``model.safetensors`` + ``detector.json`` (class names, image size) for :func:`load_yolo`."""
    from safetensors.torch import save_file

    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    net = model.model if hasattr(model, "model") and not isinstance(model.model, str) else model
    cfg = dict(net.yaml)
    (out / YOLO_CONFIG).write_text(yaml.safe_dump(cfg, sort_keys=False))
    state = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out / YOLO_WEIGHTS))
    info = {"names": {int(k): v for k, v in net.names.items()}, "imgsz": imgsz, **(extra or {})}
    (out / YOLO_INFO).write_text(json.dumps(info, indent=2))
    return out
