"""Loading base pipelines, exporting unlearned ones (pipeline folder + model card), and publishing them.

An exported folder is a stock diffusers pipeline: ``DiffusionPipeline.from_pretrained(folder)`` loads it, and
``push_to_hub`` (or :func:`publish_to_cache` for an offline hub cache) makes it ``igmu/<name>``.
"""

import importlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from .outputs import (MARKER_FILE, OutputFolderError, check_writable_dir, collision_error, is_bookkeeping,
                      make_partial, mark, partial_folders, partial_path, remove_partials, say_kept)


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


def looks_like_hub_id(name: str) -> bool:
    """``org/name`` that is not a local path (no leading '.', '/' or '~', one slash)."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and all(name.split("/"))


def default_pretrained_model_name_or_path() -> str:
    """The embedded mini world's pipeline: the default base model of every command."""
    from .mini import PIPELINE_PATH

    return PIPELINE_PATH


def check_pipeline_path(path: str) -> None:
    """Refuse, naming the fix, a pipeline path that is a file, a pickle, a folder that is not a complete diffusers
    pipeline (no model_index.json, a component folder missing, pickle weights only), or neither a folder nor a Hub
    id; checked before any work."""
    local = Path(path)
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
        try:
            index = json.loads((local / "model_index.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"`pretrained_model_name_or_path` {path!r} has an unreadable model_index.json ({err}); "
                             f"re-save the pipeline with `pipe.save_pretrained(dir)`.") from None
        if not isinstance(index, dict):
            raise ValueError(f"`pretrained_model_name_or_path` {path!r} has a model_index.json that is not a JSON "
                             f"object; re-save the pipeline with `pipe.save_pretrained(dir)`.")
        missing = [k for k in component_names(index) if not (local / k).is_dir()]
        if missing:
            raise ValueError(f"`pretrained_model_name_or_path` {path!r} lacks the component folder(s) "
                             f"{', '.join(m + '/' for m in missing)} that its model_index.json names; copy the whole "
                             f"pipeline folder or re-save it with `pipe.save_pretrained(dir)`.")
        weights = [p for p in local.rglob("*") if p.is_file()]
        if not any(p.suffix == ".safetensors" for p in weights) and any(p.suffix in _PICKLE_SUFFIXES for p in weights):
            raise ValueError(f"`pretrained_model_name_or_path` {path!r} holds pickle-format weights only; re-save it "
                             f"with `pipe.save_pretrained(dir, safe_serialization=True)`.")
        check_model_index(index, path)  # before anything is imported
    elif not looks_like_hub_id(path):
        raise ValueError(f"`pretrained_model_name_or_path` {path!r} does not exist; pass an existing pipeline folder "
                         f"or a Hub id such as 'CompVis/stable-diffusion-v1-4'.")


def component_names(index: dict) -> list[str]:
    """The components a ``model_index.json`` names (each a folder of the pipeline), not its ``None`` slots."""
    return [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v and v[0] is not None]


# The libraries a pipeline's components may come from: importing a module runs its code, so a model_index.json
# naming any other module (or a code file in the folder or the working directory) is refused before loading.
ALLOWED_COMPONENT_LIBRARIES = ("diffusers", "transformers")


def check_model_index(index: dict, path: str) -> None:
    """Refuse, before anything is imported, a ``model_index.json`` whose pipeline or components would run code that
    neither diffusers, transformers nor igmu_hf ships: every component's library must be one of
    :data:`ALLOWED_COMPONENT_LIBRARIES` (by exact name) or the pipeline's own module when that module is one of
    igmu_hf's custom pipelines (``pipelines/``). Stock ``trust_remote_code=True`` stays the user's own choice."""
    name = index.get("_class_name")
    own_module = None
    if isinstance(name, list):
        if len(name) != 2 or not all(isinstance(x, str) for x in name):
            raise ValueError(f"Pipeline {path!r}: model_index.json `_class_name` {name!r} is not [module, class]; "
                             f"re-save the pipeline with `pipe.save_pretrained(dir)`.")
        custom_pipeline_class(*name)  # igmu_hf's own copy, or a one-line refusal
        own_module = name[0]
    elif not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"Pipeline {path!r}: model_index.json has no valid `_class_name` ({name!r}); re-save the "
                         f"pipeline with `pipe.save_pretrained(dir)`.")
    for key, value in index.items():
        if key.startswith("_") or not isinstance(value, list):
            continue
        if len(value) != 2:
            raise ValueError(f"Pipeline {path!r}: component {key!r} in model_index.json is {value!r}, not "
                             f"[library, class]; re-save the pipeline with `pipe.save_pretrained(dir)`.")
        library, class_name = value
        if library is None and class_name is None:
            continue
        if library in ALLOWED_COMPONENT_LIBRARIES and isinstance(class_name, str) and class_name.isidentifier():
            continue
        if own_module is not None and library == own_module and isinstance(class_name, str):
            module = importlib.import_module(custom_pipeline_class(*index["_class_name"]).__module__)
            if isinstance(getattr(module, class_name, None), type):
                continue
        raise ValueError(f"Pipeline {path!r}: component {key!r} names library {library!r} (class {class_name!r}), "
                         f"which is not diffusers, transformers or an igmu_hf pipeline; igmu_hf never runs code from "
                         f"a model folder or the working directory. Load it yourself with "
                         f"DiffusionPipeline.from_pretrained(..., trust_remote_code=True) only if you trust it.")


_OFFLINE_HINT = "Offline, a Hub id loads only from the local cache (HF_HUB_OFFLINE=1; `igmu publish FOLDER --cache`)."


def first_line(err: BaseException) -> str:
    """The first line of a library's error, without its pointers to a traceback the user is not shown."""
    text = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"\s*(Please )?(check|see|look at)( out)?( the root cause in)? the (stack ?trace|traceback) "
                  r"above[^.]*\.?", "", text, flags=re.IGNORECASE).strip()


def load_pipeline(pretrained_model_name_or_path: str | os.PathLike | None = None, torch_dtype=torch.float32,
                  device: str = "cpu"):
    """Load a Stable Diffusion pipeline from a local folder or a Hub id, safetensors only.

    Raises a ``ValueError`` naming the fix when the path does not exist, is not a diffusers pipeline folder, holds
    pickle-format weights only, names code outside diffusers/transformers/igmu_hf (:func:`check_model_index`), or
    holds a component config its class cannot be built from.
    """
    from diffusers import DiffusionPipeline

    path = str(resolve_id(pretrained_model_name_or_path) or default_pretrained_model_name_or_path())
    check_pipeline_path(path)
    index = _model_index(path)
    if not index:
        raise ValueError(f"Could not load pipeline {path!r}: its model_index.json could not be read. {_OFFLINE_HINT}")
    if not Path(path).is_dir():  # a Hub id (a local folder was checked by check_pipeline_path)
        check_model_index(index, path)
    try:
        if isinstance(index.get("_class_name"), list):  # a custom pipeline: igmu_hf's own class, not the folder's code
            pipe = _load_custom_pipeline(path, index, custom_pipeline_class(*index["_class_name"]))
            pipe = pipe if torch_dtype == torch.float32 else pipe.to(torch_dtype)
        else:
            pipe = DiffusionPipeline.from_pretrained(path, dtype=torch_dtype, use_safetensors=True,
                                                     safety_checker=None)
    except OSError as err:
        raise ValueError(f"Could not load pipeline {path!r} ({err.__class__.__name__}: {first_line(err)}). "
                         f"{_OFFLINE_HINT}") from err
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as err:
        # a component config holding a wrong type or value (e.g. a string where a number goes) fails deep inside the
        # component's __init__; the user's fix is the folder, so say which folder and what it said
        raise ValueError(f"Could not build pipeline {path!r} from its files ({err.__class__.__name__}: "
                         f"{first_line(err)[:300]}); a component's config.json is damaged or from an incompatible "
                         f"version: re-save the pipeline with `pipe.save_pretrained(dir)`.") from err
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _load_custom_pipeline(path: str, index: dict, pipeline_class):
    """Build ``pipeline_class`` from the folder's components (each loaded by its own library class, safetensors) and
    its config values: what ``from_pretrained`` does, without importing the code file the folder carries."""
    import inspect

    folder = Path(path)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(path))
    accepted = inspect.signature(pipeline_class.__init__).parameters
    kwargs = {}
    for name, value in index.items():
        if name.startswith("_") or name not in accepted:
            continue
        if isinstance(value, list) and len(value) == 2:
            library, class_name = value
            if library is None:
                kwargs[name] = None
            else:  # a component defined by the pipeline's own code (Receler's erasers): igmu_hf's copy of it
                owner = importlib.import_module(custom_pipeline_class(library, class_name).__module__) \
                    if library == index["_class_name"][0] else importlib.import_module(library)
                kwargs[name] = getattr(owner, class_name).from_pretrained(folder / name)
        else:
            kwargs[name] = value
    return pipeline_class(**kwargs)


def _model_index(path: str) -> dict:
    """A pipeline's model_index.json (local folder, or a Hub id through the hub cache); {} when unreadable."""
    file = Path(path) / "model_index.json"
    if not file.exists() and looks_like_hub_id(path):
        from huggingface_hub import hf_hub_download

        try:
            file = Path(hf_hub_download(path, "model_index.json"))
        except Exception:  # noqa: BLE001  (from_pretrained reports what is wrong with the id)
            return {}
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return {}


def check_output_dir(output_dir: str | os.PathLike, config_hash: str, overwrite: bool, config: dict | None = None,
                     outputs: set[str] | None = None) -> None:
    """Refuse to write into a folder that holds something else (another run, or foreign files) unless told to; under
    ``overwrite``, refuse when a file igmu_hf did not write sits where this run writes (``outputs``: the top-level
    names it will write, when known). Puts back a previous run whose save was interrupted first."""
    out = check_writable_dir(output_dir)
    recover_interrupted_save(out)
    if not out.exists() or not any(e for e in out.iterdir() if not is_bookkeeping(e)):
        return
    if overwrite:
        if outputs:
            _refuse_collisions(out, foreign_files(out), outputs)
        return
    run = out / RUN_FILE
    if run.is_file():
        try:
            previous = json.loads(run.read_text())
            previous = previous if isinstance(previous, dict) else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            previous = {}
        if previous.get("config_hash") == config_hash:
            return
        from .checkpointing import config_diff

        diff = config_diff(previous.get("config"), config) if isinstance(previous.get("config"), dict) and config \
            else []
        what = f"differs in {'; '.join(diff[:4])}{' ...' if len(diff) > 4 else ''}" if diff else \
            f"config {previous.get('config_hash', 'unreadable')}"
        raise OutputFolderError(f"`output_dir` {out.name!r} already holds a different run ({what}); choose another "
                                f"folder or pass --overwrite to replace it.")
    raise OutputFolderError(f"`output_dir` {out.name!r} is not empty and holds no igmu_hf run; choose another folder "
                            f"or pass --overwrite to write the run beside its files.")


def foreign_files(folder: Path) -> list[str]:
    """Files (relative posix paths) in a run folder that igmu_hf did not write: those its ``igmu_run.json``
    manifest does not list. A run saved before manifests lists its top-level ``files``; a run older still
    (``igmu_run.json`` without ``files``) owns the pipeline it saved: model_index.json, the components it names, the
    model card, top-level safetensors and pipeline code."""
    ours: set[str] | None = None
    run = folder / RUN_FILE
    data = {}
    if run.is_file() and not run.is_symlink():
        try:
            data = json.loads(run.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = {}
        data = data if isinstance(data, dict) else {}
    top: set[str] = set()
    if isinstance(data.get("manifest"), list):
        ours = {str(f) for f in data["manifest"]}
    elif isinstance(data.get("files"), list):
        top = {str(f) for f in data["files"]}
    elif run.is_file():
        top = {RUN_FILE, "model_index.json", "README.md"}
        try:
            top |= set(component_names(json.loads((folder / "model_index.json").read_text())))
        except (OSError, ValueError, AttributeError):
            pass
        top |= {p.name for p in folder.iterdir() if p.suffix == ".safetensors" or
                (p.name.startswith("pipeline_") and p.suffix == ".py")}
    found = []
    for root, dirs, files in os.walk(folder):
        rel_root = Path(root).relative_to(folder)
        if rel_root == Path("."):
            dirs[:] = [d for d in dirs if not is_bookkeeping(folder / d)]
            files = [f for f in files if not is_bookkeeping(folder / f)]
        for name in files + [d for d in dirs if (Path(root) / d).is_symlink()]:
            rel = (rel_root / name).as_posix()
            if ours is not None and rel in ours:
                continue
            if ours is None and rel.split("/")[0] in top:
                continue
            found.append(rel)
    return sorted(found)


def _refuse_collisions(out: Path, foreign: list[str], outputs: set[str]) -> None:
    colliding = [f for f in foreign if f.split("/")[0] in outputs]
    if colliding:
        raise collision_error(out.name, colliding, "this run")


def expected_outputs(pretrained_model_name_or_path: str) -> set[str]:
    """The top-level names a run saved from this base pipeline writes (before any work: its components, the model
    index, card and run record)."""
    index = _model_index(str(resolve_id(pretrained_model_name_or_path)))
    return {RUN_FILE, "model_index.json", "README.md", *component_names(index)}


def render_model_card(metadata: dict[str, Any], base_model: str, has_lora: bool = False) -> str:
    """Fill the model card template from a run's metadata (huggingface_hub.ModelCard, Jinja)."""
    from huggingface_hub import ModelCard, ModelCardData

    family_tag = {"sdxl": "stable-diffusion-xl", "sd3": "stable-diffusion-3"}.get(metadata.get("model_family"),
                                                                                 "stable-diffusion")
    # the card's base_model must be a Hub id (the Hub links it); a local or packaged base is named in the text only
    card_data = ModelCardData(library_name="diffusers", base_model=base_model if looks_like_hub_id(str(base_model))
                              else None, license="other",
                              tags=["igmu", "unlearning", f"unlearning-{metadata['method']}", family_tag])
    card = ModelCard.from_template(card_data, template_path=str(_TEMPLATE), metadata=metadata,
                                   metadata_json=json.dumps(metadata, indent=2, sort_keys=True), base_model=base_model,
                                   has_lora=has_lora)
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
    """Write the unlearned pipeline (safetensors), ``igmu_run.json`` (with the manifest of every file written) and
    the model card ``README.md`` atomically.

    The folder is assembled next to ``output_dir`` and swapped in at the end, so a crash never leaves a half
    written run nor destroys the previous one. Replacing a run replaces only the files its manifest lists: the
    user's other files move into the new folder (a file of theirs where this run writes is refused). A model with
    non-finite weights is never saved (:func:`igmu_hf.methods.base.check_finite_pipeline`).
    """
    from .methods.base import check_finite_pipeline

    check_finite_pipeline(result)
    base_model = portable_id(base_model)  # the folder may be pushed: no absolute local path in it
    metadata = {**result.metadata(), "base_model": base_model}
    check_output_dir(output_dir, metadata["config_hash"], overwrite, config=metadata.get("config"))
    out = Path(output_dir).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_partial(out, "tmp")  # a killed save's leftovers were removed by check_output_dir
    try:
        result.pipeline.save_pretrained(tmp, safe_serialization=True)
        _scrub_name_or_path(tmp)
        if result.lora_state_dict is not None:  # the adapter too: pipe.load_lora_weights(output_dir) on the base
            from .families import family_of

            family_of(result.pipeline).save_lora(tmp, result.lora_state_dict)
        if metadata.get("custom_pipeline"):  # the pipeline's own code travels with it (stock diffusers loads it)
            _add_custom_pipeline_code(tmp, *metadata["custom_pipeline"])
        for name, tensors in result.extra_tensors.items():  # e.g. Dark Miner's mined embeddings
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / name))
        (tmp / "README.md").write_text(render_model_card(metadata, base_model, result.lora_state_dict is not None))
        files = sorted(p.name for p in tmp.iterdir() if p.name != MARKER_FILE) + [RUN_FILE]  # only these are replaced
        manifest = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file()
                          and p.name != MARKER_FILE) + [RUN_FILE]
        (tmp / RUN_FILE).write_text(json.dumps({**metadata, "files": files, "manifest": manifest}, indent=2,
                                               sort_keys=True))
        if out.exists():
            _refuse_collisions(out, foreign_files(out), set(files))
            old = partial_path(out, "backup")
            mark(out, "backup", out)  # the previous run, moved aside, is recognised by its marker alone
            os.replace(out, old)  # a crash from here on is healed by recover_interrupted_save
            (tmp / MARKER_FILE).unlink()
            os.replace(tmp, out)
            carry_foreign_files(old, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            (tmp / MARKER_FILE).unlink()
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def custom_pipeline_class(module: str, class_name: str):
    """igmu_hf's own copy of a custom pipeline class (``pipelines/<x>/pipeline_<x>.py``, installed as
    ``igmu_hf.pipelines.<x>``), or a ValueError for code igmu_hf does not ship."""
    name = module.removeprefix("pipeline_")
    try:
        mod = importlib.import_module(f"igmu_hf.pipelines.{name}.{module}")
        return getattr(mod, class_name)
    except (ImportError, AttributeError):
        raise ValueError(f"The pipeline's model_index.json names custom code {module}.py:{class_name}, which "
                         f"igmu_hf does not ship; igmu_hf never runs code from a model folder. Load it yourself with "
                         f"DiffusionPipeline.from_pretrained(..., trust_remote_code=True) if you trust it.") from None


def _add_custom_pipeline_code(folder: Path, module: str, class_name: str) -> None:
    """Copy the pipeline's code file to the folder's root, and into the folder of every component whose class it
    defines (Receler's erasers), naming it in ``model_index.json`` as stock diffusers' custom code expects."""
    cls = custom_pipeline_class(module, class_name)
    code = importlib.import_module(cls.__module__).__file__
    shutil.copy2(code, folder / f"{module}.py")
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = [module, class_name]
    for name, value in index.items():
        if isinstance(value, list) and len(value) == 2 and value[0] == cls.__module__:
            shutil.copy2(code, folder / name / f"{module}.py")
            index[name] = [module, value[1]]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def recover_interrupted_save(output_dir: str | os.PathLike) -> bool:
    """Heal a save killed mid-swap (call it holding the folder's lock): when the folder is missing and igmu_hf's
    marked backup of it waits beside it, put the backup back; when both exist, move the user's files still in the
    backup into the folder and drop the backup. Marked leftovers are removed; a folder without igmu_hf's marker
    (a user's ``.<name>.old``) is never touched. True when a previous run was put back."""
    out = Path(output_dir)
    restored = False
    backups = partial_folders(out, "backup")
    if not os.path.lexists(out) and backups:
        newest = backups.pop()
        os.replace(newest, out)
        restored = True
        logger.warning("Restored %s: the previous save into it was interrupted.", out.name)
    for old in backups:
        if out.is_dir() and not out.is_symlink():
            carry_foreign_files(old, out)
        shutil.rmtree(old, ignore_errors=True)
    marker = out / MARKER_FILE
    if out.is_dir() and not out.is_symlink() and marker.is_file() and not marker.is_symlink():
        marker.unlink()
    if out.parent.is_dir():
        remove_partials(out, "tmp")
    return restored


def carry_foreign_files(old: Path, new: Path) -> None:
    """Move into ``new`` the files of ``old`` that igmu_hf did not write (:func:`foreign_files`), keeping their
    paths, so replacing a run replaces only what igmu_hf wrote; said on stderr."""
    moved = []
    for rel in foreign_files(old):
        target = new / rel
        if os.path.lexists(target):
            continue  # refused before the swap; a leftover of a healed crash that is already in place
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(old / rel, target)
        moved.append(rel)
    say_kept(new.name, moved)


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


def push_folder_to_hub(folder: str | os.PathLike, hub_model_id: str | None, private: bool = False,
                       repo_type: str = "model") -> str:
    """Create ``hub_model_id`` if needed and upload ``folder`` to it (``--push_to_hub`` of the CLI and examples).
    An ``evaluate`` module goes to a Space (``repo_type="space"``), as ``evaluate-cli`` publishes them."""
    from huggingface_hub import HfApi

    from .errors import check_hub_id

    check_hub_id("--hub_model_id", hub_model_id)
    api = HfApi()
    try:
        api.create_repo(hub_model_id, exist_ok=True, private=private, repo_type=repo_type,
                        **({"space_sdk": "gradio"} if repo_type == "space" else {}))
        api.upload_folder(folder_path=str(folder), repo_id=hub_model_id, repo_type=repo_type)
    except Exception as err:  # noqa: BLE001  (no token, no network, offline mode, refused: one line with the fix)
        if not _is_network_error(err):
            raise
        raise ValueError(f"Could not push to the Hub as {hub_model_id!r} ({type(err).__name__}: "
                         f"{first_line(err)[:200] or 'no detail'}); log in with `hf auth login` (or set HF_TOKEN), "
                         f"check the network and that HF_HUB_OFFLINE is unset, or use `igmu publish FOLDER --repo_id "
                         f"{hub_model_id} --cache` offline.") from None
    return hub_model_id


def _is_network_error(err: BaseException) -> bool:
    """An error of the Hub, the network or the token (OSError subclasses: OfflineModeIsEnabled, HfHubHTTPError ...;
    the HTTP client's own connection errors)."""
    if isinstance(err, OSError):
        return True
    return any(c.__name__ in ("HTTPError", "TransportError", "ConnectError", "TimeoutException", "RequestError")
               for c in type(err).__mro__)


def folder_kind(folder: str | os.PathLike) -> str:
    """What a folder to publish holds: ``"pipeline"`` (model_index.json), ``"lora"``
    (pytorch_lora_weights.safetensors), ``"metric"`` (an ``evaluate`` module: ``<name>.py`` importing evaluate),
    ``"yolo"`` (a converted detector); a clear error otherwise."""
    from .detectors.yolo import YOLO_CONFIG, YOLO_WEIGHTS

    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"{str(folder)!r} is not a folder; pass the folder to publish.")
    if (path / "model_index.json").exists():
        return "pipeline"
    if (path / "pytorch_lora_weights.safetensors").exists():
        return "lora"
    if (path / YOLO_CONFIG).exists() and (path / YOLO_WEIGHTS).exists():
        return "yolo"
    if (path / f"{path.name}.py").exists() and "evaluate" in (path / f"{path.name}.py").read_text(errors="ignore"):
        return "metric"
    raise ValueError(f"{str(folder)!r} holds nothing igmu_hf publishes: a pipeline (model_index.json), a LoRA "
                     f"(pytorch_lora_weights.safetensors), an evaluate module (<name>/<name>.py) or a YOLO folder.")


def publish(folder: str | os.PathLike, repo_id: str, push: bool = False, cache_dir: str | os.PathLike | None = None
            ) -> str:
    """``igmu publish``: a pipeline, LoRA, YOLO folder or evaluate module into the local hub cache (so
    ``from_pretrained(repo_id)`` / ``evaluate.load(repo_id)`` load it offline), or onto the Hub with ``push``.
    Returns where it went (a description without local paths)."""
    from .errors import check_hub_id

    check_hub_id("--repo_id", repo_id)
    kind = folder_kind(folder)
    if kind == "metric" and Path(folder).name != repo_id.split("/")[1]:
        raise ValueError(f"An evaluate module is loaded by its file name: publish {Path(folder).name!r} as "
                         f"'<org>/{Path(folder).name}', not {repo_id!r}.")
    if push:
        push_folder_to_hub(folder, repo_id, repo_type="space" if kind == "metric" else "model")
        return f"{kind}, pushed to the Hub"
    if kind == "metric":
        publish_metric_to_cache(folder, repo_id, modules_cache=cache_dir)
        return "evaluate module, in the local modules cache: evaluate.load works with HF_HUB_OFFLINE=1"
    publish_to_cache(folder, repo_id, cache_dir=cache_dir)
    hint = {"lora": "pipe.load_lora_weights(repo_id, weight_name='pytorch_lora_weights.safetensors')",
            "yolo": "--yolo " + repo_id}.get(kind, "DiffusionPipeline.from_pretrained(repo_id)")
    return f"{kind}, in the local hub cache: {hint} works with HF_HUB_OFFLINE=1"
