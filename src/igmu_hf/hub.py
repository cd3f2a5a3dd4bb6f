"""Loading base pipelines, exporting unlearned ones (pipeline folder + model card), and publishing them.

An exported folder is a stock diffusers pipeline: ``DiffusionPipeline.from_pretrained(folder)`` loads it, and
``push_to_hub`` (or :func:`publish_to_cache` for an offline hub cache) makes it ``igmu/<name>``.
"""

import importlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch


logger = logging.getLogger(__name__)
RUN_FILE = "igmu_run.json"
_PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
_TEMPLATE = Path(importlib.import_module("igmu_hf.model_cards").__file__).parent / "unlearned_pipeline.md"


PACKAGE_PREFIX = "igmu_hf:"


def portable_id(name_or_path) -> str | None:
    """How a model or detector is recorded in run metadata, reports and cards: never an absolute local path.

    Files shipped inside the package become ``igmu_hf:<path inside the package>`` (resolved back by
    :func:`resolve_id` on any machine); another absolute local path becomes its folder name alone (pass it again
    explicitly, e.g. ``--original``); Hub ids and relative paths are kept as given."""
    if name_or_path is None:
        return None
    text = str(name_or_path)
    if text.startswith(PACKAGE_PREFIX):
        return text
    path = Path(text)
    package = Path(__file__).resolve().parent
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return text
    if path.exists() and resolved.is_relative_to(package):
        return PACKAGE_PREFIX + resolved.relative_to(package).as_posix()
    if path.is_absolute():
        return path.name
    return text


def resolve_id(name_or_path):
    """The loadable form of a recorded id: ``igmu_hf:<path>`` -> the file inside the installed package."""
    if name_or_path is None:
        return None
    text = str(name_or_path)
    if text.startswith(PACKAGE_PREFIX):
        return str(Path(__file__).resolve().parent / text[len(PACKAGE_PREFIX):])
    return name_or_path


def default_pretrained_model_name_or_path() -> str:
    """The embedded mini world's pipeline: the default base model of every command."""
    from .mini import PIPELINE_PATH

    return PIPELINE_PATH


def load_pipeline(pretrained_model_name_or_path: str | os.PathLike | None = None, torch_dtype=torch.float32,
                  device: str = "cpu"):
    """Load a Stable Diffusion pipeline from a local folder or a Hub id, safetensors only.

    Raises a ``ValueError`` naming the fix when the path does not exist, is not a diffusers pipeline folder, or
    holds pickle-format weights only.
    """
    from diffusers import DiffusionPipeline

    path = str(resolve_id(pretrained_model_name_or_path) or default_pretrained_model_name_or_path())
    local = Path(path)
    looks_like_hub_id = not local.is_absolute() and path.count("/") == 1 and not path.startswith(".")
    if local.is_file():
        if local.suffix in _PICKLE_SUFFIXES:
            raise ValueError(f"`pretrained_model_name_or_path` {path!r} is a pickle checkpoint; only safetensors "
                             f"are loaded. Convert it (e.g. diffusers' scripts/convert_original_stable_diffusion_to_"
                             f"diffusers.py --to_safetensors) and pass the resulting pipeline folder.")
        raise ValueError(f"`pretrained_model_name_or_path` {path!r} is a file; pass a diffusers pipeline folder "
                         f"(with model_index.json) or a Hub id such as 'CompVis/stable-diffusion-v1-4'.")
    if local.is_dir():
        if not (local / "model_index.json").exists():
            raise ValueError(f"`pretrained_model_name_or_path` {path!r} is not a diffusers pipeline folder (no "
                             f"model_index.json); save one with `pipe.save_pretrained(dir)` or pass a Hub id.")
        weights = [p for p in local.rglob("*") if p.is_file()]
        if not any(p.suffix == ".safetensors" for p in weights) and any(p.suffix in _PICKLE_SUFFIXES for p in weights):
            raise ValueError(f"`pretrained_model_name_or_path` {path!r} holds pickle-format weights only; re-save it "
                             f"with `pipe.save_pretrained(dir, safe_serialization=True)`.")
    elif not looks_like_hub_id:
        raise ValueError(f"`pretrained_model_name_or_path` {path!r} does not exist; pass an existing pipeline folder "
                         f"or a Hub id such as 'CompVis/stable-diffusion-v1-4'.")
    try:
        pipe = DiffusionPipeline.from_pretrained(path, dtype=torch_dtype, use_safetensors=True,
                                                 safety_checker=None)
    except OSError as err:
        raise ValueError(f"Could not load pipeline {path!r} ({err.__class__.__name__}: {str(err).splitlines()[0]}). "
                         f"Offline, a Hub id loads only from the local cache (HF_HUB_OFFLINE=1).") from err
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def check_output_dir(output_dir: str | os.PathLike, config_hash: str, overwrite: bool) -> None:
    """Refuse to write into a folder that holds something else (another run, or foreign files) unless told to."""
    out = Path(output_dir)
    if out.is_file():
        raise ValueError(f"`output_dir` {str(out)!r} is a file; pass a folder.")
    if not out.exists() or not any(out.iterdir()) or overwrite:
        return
    run = out / RUN_FILE
    if run.exists():
        previous = json.loads(run.read_text()).get("config_hash")
        if previous == config_hash:
            return
        raise ValueError(f"`output_dir` {str(out)!r} already holds a different run (config {previous}); choose another "
                         f"folder or pass --overwrite to replace it.")
    raise ValueError(f"`output_dir` {str(out)!r} is not empty and holds no igmu_hf run; choose another folder or pass "
                     f"--overwrite to replace it.")


def render_model_card(metadata: dict[str, Any], base_model: str) -> str:
    """Fill the model card template from a run's metadata (huggingface_hub.ModelCard, Jinja)."""
    from huggingface_hub import ModelCard, ModelCardData

    family_tag = {"sdxl": "stable-diffusion-xl", "sd3": "stable-diffusion-3"}.get(metadata.get("model_family"),
                                                                                 "stable-diffusion")
    card_data = ModelCardData(library_name="diffusers", base_model=base_model, license="other",
                              tags=["igmu", "unlearning", f"unlearning-{metadata['method']}", family_tag])
    card = ModelCard.from_template(card_data, template_path=str(_TEMPLATE), metadata=metadata,
                                   metadata_json=json.dumps(metadata, indent=2, sort_keys=True), base_model=base_model)
    return str(card)


def add_model_index(folder: str | os.PathLike, block: dict[str, Any]) -> Path:
    """Put an EvalIGMU ``model-index`` block (``report.model_index``) into the folder's model card metadata, replacing
    an earlier one; the card's text is kept. Written atomically."""
    import yaml

    from .atomic import write_text_atomic

    path = Path(folder) / "README.md"
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r} does not exist; save the pipeline with igmu_hf first (it writes the "
                                f"model card).")
    text = path.read_text()
    data, body = {}, text
    if text.startswith("---\n") and "\n---\n" in text[4:]:
        head, body = text[4:].split("\n---\n", 1)
        data = yaml.safe_load(head) or {}
    data["model-index"] = block["model-index"]
    text = f"---\n{yaml.safe_dump(data, sort_keys=False, allow_unicode=True)}---\n{body}"
    write_text_atomic(path, text)
    return path


def save_unlearned_pipeline(result, output_dir: str | os.PathLike, base_model: str, overwrite: bool = False) -> Path:
    """Write the unlearned pipeline (safetensors), ``igmu_run.json`` and the model card ``README.md`` atomically.

    The folder is assembled next to ``output_dir`` and swapped in at the end, so a crash never leaves a half
    written run nor destroys the previous one.
    """
    base_model = portable_id(base_model)  # the folder may be pushed: no absolute local path in it
    metadata = {**result.metadata(), "base_model": base_model}
    check_output_dir(output_dir, metadata["config_hash"], overwrite)
    out = Path(output_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        result.pipeline.save_pretrained(tmp, safe_serialization=True)
        _scrub_name_or_path(tmp)
        if result.lora_state_dict is not None:  # the adapter too: pipe.load_lora_weights(output_dir) on the base
            from .families import family_of

            family_of(result.pipeline).save_lora(tmp, result.lora_state_dict)
        for name, tensors in result.extra_tensors.items():  # e.g. Dark Miner's mined embeddings
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / name))
        (tmp / RUN_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
        (tmp / "README.md").write_text(render_model_card(metadata, base_model))
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _scrub_name_or_path(folder: Path) -> None:
    """diffusers and transformers record where a component was loaded from (``_name_or_path``); a folder that may be
    pushed keeps the portable id instead of this machine's path."""
    def scrub(node) -> bool:  # nested configs (a vision_config inside a model's config) record it too
        changed = False
        if isinstance(node, dict):
            if isinstance(node.get("_name_or_path"), str):
                portable = portable_id(node["_name_or_path"])
                changed = portable != node["_name_or_path"]
                node["_name_or_path"] = portable
            for value in node.values():
                changed = scrub(value) or changed
        return changed

    for f in list(folder.glob("*.json")) + list(folder.glob("*/*.json")):
        try:
            data = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if scrub(data):
            f.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def publish_to_cache(folder: str | os.PathLike, repo_id: str, cache_dir: str | os.PathLike | None = None,
                     revision: str | None = None) -> Path:
    """Place ``folder`` in a Hugging Face hub cache as ``repo_id`` so ``from_pretrained(repo_id)`` loads it offline.

    This is the cache layout ``huggingface_hub`` reads (``models--org--name/snapshots/<hash>`` + ``refs/main``);
    useful for air-gapped machines and tests. With internet, use ``push_to_hub`` instead.
    """
    import hashlib

    from huggingface_hub.constants import HF_HUB_CACHE

    if repo_id.count("/") != 1:
        raise ValueError(f"`repo_id` must look like 'org/name', got {repo_id!r}.")
    cache = Path(cache_dir or HF_HUB_CACHE)
    digest = hashlib.sha1()
    for f in sorted(Path(folder).rglob("*")):
        if f.is_file():
            digest.update(str(f.relative_to(folder)).encode())
            digest.update(f.read_bytes())
    revision = revision or digest.hexdigest()
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def publish_metric_to_cache(module_dir: str | os.PathLike, repo_id: str, modules_cache: str | os.PathLike | None = None
                            ) -> Path:
    """Place an ``evaluate`` module folder (``metrics/<name>``) where ``evaluate.load(repo_id)`` finds it offline.

    Offline, ``evaluate`` resolves a hub id ``org/name`` from its modules cache:
    ``$HF_MODULES_CACHE/evaluate_modules/metrics/org--name/<64-hex hash>/name.py`` (the newest hash wins). This
    writes that layout; with internet, push the folder to a Space instead (``evaluate-cli create``).
    """
    import hashlib

    from huggingface_hub.constants import HF_HOME

    if repo_id.count("/") != 1:
        raise ValueError(f"`repo_id` must look like 'org/name', got {repo_id!r}.")
    module_dir = Path(module_dir)
    name = repo_id.split("/")[1]
    script = module_dir / f"{name}.py"
    if not script.exists():
        raise FileNotFoundError(f"{str(script)!r} does not exist; the module folder must hold <name>.py, as "
                                f"metrics/csdr/csdr.py.")
    cache = Path(modules_cache or os.environ.get("HF_MODULES_CACHE", Path(HF_HOME) / "modules"))
    root = cache / "evaluate_modules"
    target = root / "metrics" / repo_id.replace("/", "--") / hashlib.sha256(script.read_bytes()).hexdigest()
    target.mkdir(parents=True, exist_ok=True)
    for folder in (root, root / "metrics", root / "metrics" / repo_id.replace("/", "--"), target):
        (folder / "__init__.py").touch()
    for f in module_dir.iterdir():
        if f.is_file():
            shutil.copy2(f, target / f.name)
    return target


def push_folder_to_hub(folder: str | os.PathLike, hub_model_id: str | None, private: bool = False) -> str:
    """Create ``hub_model_id`` if needed and upload ``folder`` to it (``--push_to_hub`` of the CLI and examples)."""
    from huggingface_hub import HfApi

    if not hub_model_id or hub_model_id.count("/") != 1:
        raise ValueError(f"--push_to_hub needs --hub_model_id like 'igmu/mini-duo-circle', got {hub_model_id!r}.")
    api = HfApi()
    api.create_repo(hub_model_id, exist_ok=True, private=private)
    api.upload_folder(folder_path=str(folder), repo_id=hub_model_id)
    return hub_model_id
