"""YOLO object detectors (ultralytics) for the person-detection preservation metric, saved as safetensors.

A detector is a folder holding ``yolo.yaml`` (the architecture, built by ultralytics offline), ``model.safetensors``
(the weights) and ``detector.json`` (class names, image size), local or as a Hub repo id, e.g. the mini world's tiny
YOLO trained on the domain's object boxes (class ``object``). Loading one never runs code.

Ultralytics distributes its weights as pickled ``.pt`` files, and unpickling runs whatever code the file holds, so
igmu_hf never loads one implicitly: a ``.pt`` path or a bare ultralytics name (``yolov8n.pt``, which ultralytics
would resolve in the current directory first) is refused. Convert a file you trust once, explicitly::

    igmu convert-yolo yolov8n.pt --output_dir yolov8n --trust_pickle   # then: --yolo yolov8n
"""

import json
import os
from pathlib import Path
from typing import Any

import yaml


YOLO_CONFIG = "yolo.yaml"
YOLO_WEIGHTS = "model.safetensors"
YOLO_INFO = "detector.json"
# The real world's detector: YOLOv8n (COCO, class ``person``) converted to the folder format above.
REAL_YOLO_ID = "igmu/yolov8n-safetensors"


class UntrustedPickleError(ValueError):
    """A detector was named by a pickle file (or a bare ultralytics name) and the user did not opt in to unpickling."""


def _refuse_pickle(name: str) -> UntrustedPickleError:
    return UntrustedPickleError(
        f"YOLO detector {name!r} is not a saved safetensors folder; ultralytics' .pt files are pickles and loading one "
        f"runs the code it holds, so igmu_hf does not load them. Convert a file you trust once with `igmu convert-yolo "
        f"{name} --output_dir <folder> --trust_pickle` and pass that folder (or its Hub id).")


def _snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=[YOLO_CONFIG, YOLO_WEIGHTS, YOLO_INFO]))
    except Exception as err:  # noqa: BLE001  (offline, missing repo, network: one message with the fix)
        raise ValueError(f"YOLO detector {repo_id!r} could not be fetched ({type(err).__name__}); pass a folder saved "
                         f"by `igmu convert-yolo`, or put it in the local hub cache with `igmu publish FOLDER "
                         f"--repo_id {repo_id} --cache`.") from None


def check_yolo_name(pretrained_model_name_or_path: str | os.PathLike) -> str:
    """The name, when it is a local folder or looks like a Hub id; :class:`UntrustedPickleError` for a ``.pt`` file
    or a bare ultralytics name (checked before any work)."""
    name = str(pretrained_model_name_or_path)
    if Path(name).is_dir():
        return name
    looks_like_hub_id = name.count("/") == 1 and not Path(name).is_absolute() and not name.startswith(".") \
        and not name.endswith((".pt", ".pth", ".pkl", ".bin", ".yaml"))
    if not looks_like_hub_id:
        raise _refuse_pickle(name)
    return name


def load_yolo(pretrained_model_name_or_path: str | os.PathLike):
    """An ultralytics ``YOLO`` from a saved folder (see :func:`save_yolo`) or the Hub id of one; never a pickle."""
    from safetensors.torch import load_file
    from ultralytics import YOLO

    name = check_yolo_name(pretrained_model_name_or_path)
    folder = Path(name) if Path(name).is_dir() else _snapshot(name)
    if not (folder / YOLO_CONFIG).exists() or not (folder / YOLO_WEIGHTS).exists():
        raise ValueError(f"{name!r} is not a saved YOLO folder: it needs {YOLO_CONFIG} and {YOLO_WEIGHTS} (written "
                         f"by `igmu convert-yolo` or igmu_hf.detectors.yolo.save_yolo).")
    model = YOLO(str(folder / YOLO_CONFIG), task="detect", verbose=False)
    model.model.load_state_dict(load_file(str(folder / YOLO_WEIGHTS)))
    info = json.loads((folder / YOLO_INFO).read_text()) if (folder / YOLO_INFO).exists() else {}
    model.model.names = {int(k): v for k, v in info.get("names", model.model.names).items()}
    model.model.eval()
    model.overrides["imgsz"] = info.get("imgsz", 640)
    return model


def convert_yolo(source: str | os.PathLike, output_dir: str | os.PathLike, trust_pickle: bool = False,
                 imgsz: int = 640) -> Path:
    """Load an ultralytics ``.pt`` (a pickle: this runs code stored in the file) and save it as a safetensors folder
    that :func:`load_yolo` reads without unpickling. ``trust_pickle=True`` says the file is trusted."""
    if not trust_pickle:
        raise UntrustedPickleError(f"Converting {str(source)!r} unpickles it, which runs any code the file holds; pass "
                                   f"--trust_pickle (trust_pickle=True) only for a file from a source you trust.")
    if not Path(source).is_file():
        raise FileNotFoundError(f"{str(source)!r} does not exist; pass the path of an ultralytics .pt file you "
                                f"downloaded (ultralytics' own names are not fetched implicitly).")
    from ultralytics import YOLO

    model = YOLO(str(source))  # the one place a pickle is loaded, on explicit request
    return save_yolo(model, output_dir, imgsz=imgsz, extra={"converted_from": Path(source).name})


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
