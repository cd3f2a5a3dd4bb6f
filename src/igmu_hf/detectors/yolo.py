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
import math
import os
import re
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


def yolo_class():
    """ultralytics' ``YOLO`` class, imported without its side effects on the rest of the process: importing
    ultralytics replaces ``PIL.Image.open`` process-wide with a version that, on an image Pillow cannot identify,
    tries to pip-install a HEIF plugin (a network call, then ``ModuleNotFoundError`` offline) instead of raising
    Pillow's own error; the original is put back. Auto-install is switched off (``YOLO_AUTOINSTALL``) before import."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    from PIL import Image
    from ultralytics import YOLO

    try:
        from ultralytics.utils import patches

        if getattr(Image.open, "__module__", "") == patches.__name__:
            Image.open = patches._image_open
    except (ImportError, AttributeError):  # another ultralytics layout: nothing patched the way we know
        pass
    return YOLO


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


# The architecture description a YOLO folder may hold. ultralytics builds a model from its YAML by evaluating the
# `activation` string (``eval``) and by looking every layer name up among the globals of its model-building module
# (which include loaders that unpickle), so a folder's yolo.yaml is code unless it is checked: only these keys,
# these layer names, these activations and plain numbers reach ultralytics. (Written here because ultralytics'
# own restricted mode is a process-wide switch tied to its checkpoint loader.)
YOLO_KEYS = frozenset({"nc", "scales", "scale", "depth_multiple", "width_multiple", "activation", "backbone", "head",
                       "ch", "channels", "kpt_shape", "reg_max", "end2end", "yaml_file"})
YOLO_LAYERS = frozenset({
    "Conv", "Conv2", "DWConv", "GhostConv", "RepConv", "ConvTranspose", "Focus", "C1", "C2", "C2f", "C3", "C3x",
    "C3k2", "C3TR", "C3Ghost", "C2PSA", "C2fPSA", "C2fCIB", "A2C2f", "PSA", "SPP", "SPPF", "SPPELAN", "ELAN1",
    "AConv", "ADown", "SCDown", "RepNCSPELAN4", "Bottleneck", "BottleneckCSP", "GhostBottleneck", "RepC3", "HGStem",
    "HGBlock", "ResNetLayer", "Concat", "Detect", "nn.Upsample", "nn.Identity", "nn.MaxPool2d", "nn.ConvTranspose2d",
    "nn.BatchNorm2d"})
YOLO_ACTIVATION = re.compile(r"(torch\.)?nn\.(SiLU|ReLU|ReLU6|LeakyReLU|GELU|Hardswish|Mish|Identity|Sigmoid|Tanh|ELU)"
                             r"\(\s*(-?\d+(\.\d+)?(e-?\d+)?\s*(,\s*-?\d+(\.\d+)?(e-?\d+)?\s*)*)?\)")
YOLO_WORDS = frozenset({"None", "nc", "nearest", "bilinear", "True", "False"})  # the strings a layer's args may hold


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and (isinstance(value, bool) or math.isfinite(value))


def _plain(value: Any) -> bool:
    """A number, None, an allowed word, a numeric string, or a list of these (a layer's args)."""
    if value is None or _is_number(value):
        return True
    if isinstance(value, str):
        return value in YOLO_WORDS or re.fullmatch(r"-?\d+(\.\d+)?", value) is not None
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return False


def check_yolo_architecture(cfg: Any, where: str) -> dict:
    """``cfg`` (a parsed yolo.yaml) when it is a plain architecture description: known keys, known layer names,
    known activations, numbers; a ``ValueError`` naming the first field that is not (nothing of it has run)."""
    def refuse(what: str) -> ValueError:
        return ValueError(f"YOLO detector {where!r}: {YOLO_CONFIG} {what}; igmu_hf builds detectors only from plain "
                          f"architecture descriptions (known layers, known activations, numbers) and never runs code "
                          f"from a model folder. Re-create it with `igmu convert-yolo`.")

    if not isinstance(cfg, dict):
        raise refuse("is not a mapping")
    unknown = sorted(str(k) for k in cfg if k not in YOLO_KEYS)
    if unknown:
        raise refuse(f"has unknown field(s) {unknown[:3]}")
    if "activation" in cfg and (not isinstance(cfg["activation"], str)
                                or not YOLO_ACTIVATION.fullmatch(cfg["activation"].strip())):
        raise refuse(f"names activation {str(cfg['activation'])[:60]!r}, which is not a known torch.nn activation")
    for key in ("nc", "depth_multiple", "width_multiple", "reg_max", "ch", "channels"):
        if key in cfg and not _is_number(cfg[key]):
            raise refuse(f"field {key!r} is {str(cfg[key])[:60]!r}, not a number")
    if "end2end" in cfg and not isinstance(cfg["end2end"], bool):
        raise refuse("field 'end2end' is not true/false")
    if "kpt_shape" in cfg and not (isinstance(cfg["kpt_shape"], list) and all(map(_is_number, cfg["kpt_shape"]))):
        raise refuse("field 'kpt_shape' is not a list of numbers")
    if "scale" in cfg and not (isinstance(cfg["scale"], str) and re.fullmatch(r"[a-z]?", cfg["scale"])):
        raise refuse("field 'scale' is not a scale letter")
    if "yaml_file" in cfg and not isinstance(cfg["yaml_file"], str):  # where it was written from: dropped
        raise refuse("field 'yaml_file' is not a file name")
    scales = cfg.get("scales", {})
    if not isinstance(scales, dict) or not all(isinstance(k, str) and re.fullmatch(r"[a-z]", k) and isinstance(v, list)
                                               and all(map(_is_number, v)) for k, v in scales.items()):
        raise refuse("field 'scales' is not {letter: [numbers]}")
    for part in ("backbone", "head"):
        layers = cfg.get(part)
        if not isinstance(layers, list) or not layers:
            raise refuse(f"has no {part} layer list")
        for i, layer in enumerate(layers):
            if not (isinstance(layer, list) and len(layer) == 4):
                raise refuse(f"{part} layer {i} is not [from, repeats, module, args]")
            source, repeats, module, args = layer
            if not (isinstance(source, int) or (isinstance(source, list) and all(isinstance(s, int) for s in source))):
                raise refuse(f"{part} layer {i} 'from' is not a layer index")
            if not isinstance(repeats, int) or isinstance(repeats, bool) or not 1 <= repeats <= 64:
                raise refuse(f"{part} layer {i} repeats {repeats!r} times")
            if module not in YOLO_LAYERS:
                raise refuse(f"{part} layer {i} names module {str(module)[:60]!r}, which is not a known YOLO layer")
            if not isinstance(args, list) or not _plain(args):
                raise refuse(f"{part} layer {i} has arguments {str(args)[:60]!r} that are not plain numbers")
    return cfg


def read_yolo_architecture(folder: Path, where: str) -> dict:
    """The checked architecture description of a YOLO folder (:func:`check_yolo_architecture`)."""
    try:
        cfg = yaml.safe_load((folder / YOLO_CONFIG).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"YOLO detector {where!r}: {YOLO_CONFIG} is not valid YAML ({type(err).__name__}); "
                         f"re-create it with `igmu convert-yolo`.") from None
    cfg = check_yolo_architecture(cfg, where)
    cfg.pop("yaml_file", None)  # a path on the machine that wrote it; ultralytics sets its own
    return cfg


def load_yolo(pretrained_model_name_or_path: str | os.PathLike):
    """An ultralytics ``YOLO`` from a saved folder (see :func:`save_yolo`) or the Hub id of one; never a pickle, and
    never an architecture description that is not plain data (:func:`check_yolo_architecture`)."""
    import tempfile

    from safetensors.torch import load_file

    YOLO = yolo_class()
    name = check_yolo_name(pretrained_model_name_or_path)
    folder = Path(name) if Path(name).is_dir() else _snapshot(name)
    if not (folder / YOLO_CONFIG).is_file() or not (folder / YOLO_WEIGHTS).is_file():
        raise ValueError(f"{name!r} is not a saved YOLO folder: it needs {YOLO_CONFIG} and {YOLO_WEIGHTS} (written "
                         f"by `igmu convert-yolo` or igmu_hf.detectors.yolo.save_yolo).")
    cfg = read_yolo_architecture(folder, Path(name).name if Path(name).is_dir() else name)
    with tempfile.TemporaryDirectory() as tmp:  # ultralytics reads the checked copy, not the folder's file
        checked = Path(tmp) / YOLO_CONFIG
        checked.write_text(yaml.safe_dump(cfg, sort_keys=False))
        model = YOLO(str(checked), task="detect", verbose=False)
    try:
        model.model.load_state_dict(load_file(str(folder / YOLO_WEIGHTS)))
    except (RuntimeError, OSError) as err:
        raise ValueError(f"YOLO detector {name!r}: {YOLO_WEIGHTS} does not fit {YOLO_CONFIG} "
                         f"({str(err).splitlines()[0][:200]}); re-create it with `igmu convert-yolo`.") from None
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
    YOLO = yolo_class()
    model = YOLO(str(source))  # the one place a pickle is loaded, on explicit request
    return save_yolo(model, output_dir, imgsz=imgsz, extra={"converted_from": Path(source).name})


def save_yolo(model, save_directory: str | os.PathLike, imgsz: int = 640, extra: dict[str, Any] | None = None) -> Path:
    """Write ``yolo.yaml`` + ``model.safetensors`` + ``detector.json`` (class names, image size) for :func:`load_yolo`."""
    from safetensors.torch import save_file

    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    net = model.model if hasattr(model, "model") and not isinstance(model.model, str) else model
    cfg = {k: v for k, v in net.yaml.items() if k != "yaml_file"}  # no local path in a folder that may be pushed
    (out / YOLO_CONFIG).write_text(yaml.safe_dump(cfg, sort_keys=False))
    state = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out / YOLO_WEIGHTS))
    info = {"names": {int(k): v for k, v in net.names.items()}, "imgsz": imgsz, **(extra or {})}
    (out / YOLO_INFO).write_text(json.dumps(info, indent=2))
    return out
