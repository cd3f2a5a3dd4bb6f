"""The DataIGM builder core: sources -> parquet shards per (config, split, source) + a dataset card whose YAML
``configs:`` make ``load_dataset(<folder or repo>, "<config>")`` work; resumable, deterministic, sharded over
processes; and the ``datasets`` builder that prepares a built folder in the local cache under a Hub id, which is
what ``load_dataset("igmu/dataigm", "<config>")`` reads with ``HF_HUB_OFFLINE=1`` (datasets 5.x never reads a hub
snapshot offline: ``load.CachedDatasetModuleFactory`` + ``packaged_modules/cache`` look for
``$HF_DATASETS_CACHE/<org>___<name>/<config>/<version>/<hash>/``).

Layout of a built folder::

    README.md                                  dataset card (YAML configs + dataset_info, sources, licences)
    build_info.json                            recipe, counts, versions, timings (no local paths)
    data/<config>/<split>/<source>-00000-of-00002.parquet
    .work/                                     SD-GEN chunks and the mini recipe's inputs (not published)
"""

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import datasets
from tqdm.auto import tqdm

from ..atomic import atomic_path, write_text_atomic
from .schema import FEATURES, LABEL_NAMES, SOURCE_NAMES, SPLITS, check_split, source_slug
from .sources import laion_rows, real_rows, sd_gen_chunk, stream_prompts

logger = logging.getLogger(__name__)

SEED_OFFSETS = {("train", "target"): 0, ("train", "pair"): 1_000_000, ("test", "target"): 2_000_000,
                ("test", "pair"): 3_000_000}
MAX_CANDIDATES_PER_ROW = 20  # an SD-GEN stream that needs more candidates than this per kept row is refused


class DataIGMBuildError(ValueError):
    """The build cannot go on as asked (the message says why and what to change)."""


# ---------------------------------------------------------------- shards

def shard_paths(folder: Path, source: str, num_rows: int, shard_size: int) -> list[Path]:
    n = max(1, -(-num_rows // shard_size))
    return [folder / f"{source_slug(source)}-{k:05d}-of-{n:05d}.parquet" for k in range(n)]


def finished_shards(folder: Path, source: str) -> list[Path] | None:
    """The shard files of a (config, split, source) when all ``-of-N`` of them exist, else ``None``."""
    found = sorted(folder.glob(f"{source_slug(source)}-*-of-*.parquet"))
    if not found:
        return None
    total = int(found[0].stem.rsplit("-of-", 1)[1])
    return found if len(found) == total and all(p.stem.endswith(f"-of-{total:05d}") for p in found) else None


def write_shards(rows: list[dict], folder: Path, source: str, shard_size: int) -> list[Path]:
    """Rows -> parquet shards (features embedded, so ``Image`` and ``ClassLabel`` survive), each written atomically."""
    rows = [{k: r[k] for k in FEATURES} for r in rows]
    for stale in folder.glob(f"{source_slug(source)}-*-of-*.parquet"):  # a partial group from an interrupted build
        stale.unlink()
    paths = shard_paths(folder, source, len(rows), shard_size)
    for k, path in enumerate(paths):
        part = datasets.Dataset.from_list(rows[k * shard_size:(k + 1) * shard_size], features=FEATURES)
        _to_parquet(part, path)
    return paths


def _to_parquet(table: datasets.Dataset, path: Path) -> None:
    with atomic_path(path) as tmp, _quiet_datasets():
        table.to_parquet(str(tmp))


class _quiet_datasets:
    """datasets' per-file progress bars are noise next to the build's own log lines."""

    def __enter__(self):
        self.was = datasets.utils.logging.is_progress_bar_enabled()
        datasets.utils.logging.disable_progress_bar()

    def __exit__(self, *exc):
        if self.was:
            datasets.utils.logging.enable_progress_bar()


def read_shards(paths: list[Path]) -> list[dict]:
    import pyarrow.parquet as pq

    return [row for p in paths for row in pq.read_table(p).to_pylist()]


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- SD-GEN streams

def _count_accepted(folder: Path, chunks: int) -> int:
    import pyarrow.parquet as pq

    return sum(sum(pq.read_table(folder / f"chunk-{c:05d}.parquet", columns=["accepted"])["accepted"].to_pylist())
               for c in range(chunks))


def sd_gen_rows(work: Path, config: str, split: str, label: str, quota: int, prompts: list[list[str]],
                generators: list[dict], seed: int, curator, chunk_size: int, generation_kwargs: dict | None,
                state, progress: bool = True) -> list[dict]:
    """The first ``quota`` accepted rows of an SD-GEN stream. Chunks are drawn in rounds of one per process (chunk
    ``r * P + i`` on process ``i``), each saved atomically; a finished chunk is never generated again."""
    folder = work / config / split / f"sd-gen-{label}"
    folder.mkdir(parents=True, exist_ok=True)
    seed_base = seed + SEED_OFFSETS[(split, label)]
    n_proc, rank = state.num_processes, state.process_index
    done, max_chunks = 0, -(-quota * MAX_CANDIDATES_PER_ROW // chunk_size)
    bar = tqdm(total=quota, desc=f"SD-GEN {config}/{split}/{label}", unit="img",
               disable=not (progress and state.is_main_process))
    while True:
        mine = done + rank
        path = folder / f"chunk-{mine:05d}.parquet"
        if not path.exists():
            rows = sd_gen_chunk(config, split, label, mine, chunk_size, prompts, generators, seed_base, curator,
                                generation_kwargs)
            table = datasets.Dataset.from_list(
                rows, features=datasets.Features({**FEATURES, "accepted": datasets.Value("bool")}))
            _to_parquet(table, path)
        state.wait_for_everyone()
        done += n_proc
        accepted = _count_accepted(folder, done)
        bar.update(min(accepted, quota) - bar.n)
        bar.set_postfix(candidates=done * chunk_size)
        if accepted >= quota:
            bar.close()
            break
        if done >= max_chunks:
            raise DataIGMBuildError(
                f"SD-GEN {config}/{split}/{label}: the curator kept only {accepted} of {done * chunk_size} "
                f"generations (needed {quota}); the generators rarely draw what the prompts ask. Use a lower "
                f"`num_per_label`, other generators, or no curator.")
    import pyarrow.parquet as pq

    rows = [r for c in range(done) for r in pq.read_table(folder / f"chunk-{c:05d}.parquet").to_pylist()
            if r["accepted"]]
    return rows[:quota]


# ---------------------------------------------------------------- the build

def refuse_changed_recipe(output_dir: str | Path, settings: dict, overwrite: bool) -> None:
    """Refuse, before any work, a build into a folder built with other values of ``settings`` (unless
    ``overwrite``); recipes call it before preparing their sources so a refused build changes nothing."""
    info = Path(output_dir) / "build_info.json"
    if overwrite or not info.exists():
        return
    found = json.loads(info.read_text())["recipe"]
    wanted = json.loads(json.dumps(settings, default=str))
    diff = sorted(k for k in wanted if found.get(k) != wanted[k])
    if diff:
        raise DataIGMBuildError(f"{Path(output_dir).name} holds a DataIGM built with other settings "
                                f"({', '.join(diff)}); pass --overwrite to rebuild it, or choose another output_dir.")


def build_dataigm(output_dir: str | Path, configs: list[str], families: dict[str, dict[str, list[str]]],
                  real_dir: str | Path | None = None, laion_dir: str | Path | None = None,
                  generators: dict[str, list[dict]] | None = None, num_per_label: dict[str, int] | None = None,
                  seed: int = 0, curator: Callable[[str], Any] | None = None, curator_info: dict | None = None,
                  shard_size: int = 512, chunk_size: int = 64, generation_kwargs: dict | None = None,
                  licenses: dict[str, str] | None = None, card_notes: str = "", recipe_extra: dict | None = None,
                  overwrite: bool = False, progress: bool = True) -> dict:
    """Build DataIGM configs into ``output_dir`` (see the module docstring for the layout).

    Args:
        configs: config names, each a key of ``families`` (``{"target": prompts, "pair": prompts}``).
        real_dir / laion_dir: the REAL and LAION sources (:mod:`igmu_hf.data.sources`); a source not given is left
            out (and so stated in the card).
        generators: per config, ``{"pipeline", "model_id", "method"}`` dicts, the original model first; SD-GEN is
            left out without them.
        num_per_label: rows per label and split (``{"train": 150, "test": 50}``) for every source; required for
            SD-GEN; REAL/LAION default to all their images, balanced.
        curator: ``config -> judge`` keeping only SD-GEN generations the judge agrees with (the paper's manual
            selection); ``None`` keeps every generation.
    Returns the build record (also written to ``build_info.json``).
    """
    from ..training import process_state

    state = process_state()
    out = Path(output_dir)
    unknown = [c for c in configs if c not in families]
    if unknown:
        raise DataIGMBuildError(f"DataIGM has no config {unknown[0]!r}; configs: {', '.join(families)}.")
    if generators and not num_per_label:
        raise DataIGMBuildError("SD-GEN needs `num_per_label` (rows per label and split, e.g. train=150 test=50).")
    for split in (num_per_label or {}):
        check_split(split)
    recipe = {"configs": list(configs), "num_per_label": num_per_label, "seed": seed, "chunk_size": chunk_size,
              "shard_size": shard_size, "generation_kwargs": generation_kwargs or {}, "curator": curator_info,
              "generators": {c: [{"model_id": g["model_id"], "method": g["method"]} for g in gens]
                             for c, gens in (generators or {}).items() if c in configs},
              "sources": [s for s, given in zip(SOURCE_NAMES, (real_dir, laion_dir, generators)) if given],
              **(recipe_extra or {})}
    info_path = out / "build_info.json"
    if info_path.exists():
        found = json.loads(info_path.read_text())["recipe"]
        if found != json.loads(json.dumps(recipe, default=str)):
            if not overwrite:
                diff = sorted(k for k in set(found) | set(recipe) if found.get(k) != recipe.get(k))
                raise DataIGMBuildError(f"{out.name} holds a DataIGM built with other settings ({', '.join(diff)}); "
                                        f"pass --overwrite to rebuild it, or choose another output_dir.")
            if state.is_main_process:
                shutil.rmtree(out / "data", ignore_errors=True)
                shutil.rmtree(out / ".work" / "sd-gen", ignore_errors=True)
            state.wait_for_everyone()
    work = out / ".work" / "sd-gen"
    counts: dict = {}
    timings = {s: 0.0 for s in SOURCE_NAMES}
    for config in configs:
        for split in SPLITS:
            folder = out / "data" / config / split
            quota = (num_per_label or {}).get(split)
            for source, given in zip(SOURCE_NAMES, (real_dir, laion_dir, generators)):
                if not given or (source == "SD-GEN" and not quota):
                    continue
                t0 = time.perf_counter()
                state.wait_for_everyone()
                done = finished_shards(folder, source)
                state.wait_for_everyone()  # every process decided before the main one writes: same barriers for all
                if done is None:
                    if source == "SD-GEN":
                        if config not in generators:
                            raise DataIGMBuildError(f"No SD-GEN generators were given for config {config!r}.")
                        rows = []
                        judge = curator(config) if curator else None
                        for label in ("target", "pair"):
                            # without a curator an unlearned model's target-prompt image has no known label:
                            # the target stream is then the original's alone (the paper's train/test SD-GEN)
                            gens = generators[config] if judge or label == "pair" else generators[config][:1]
                            rows += sd_gen_rows(work, config, split, label, quota,
                                                stream_prompts(families[config], label, len(gens), curated=bool(judge)),
                                                gens, seed, judge, chunk_size, generation_kwargs, state, progress)
                    elif state.is_main_process:
                        rows = (real_rows(real_dir, config, split, quota, license=(licenses or {}).get("REAL", ""))
                                if source == "REAL" else laion_rows(laion_dir, config, split, quota))
                    if state.is_main_process:
                        done = write_shards(rows, folder, source, shard_size)
                    state.wait_for_everyone()
                    done = finished_shards(folder, source)
                timings[source] += time.perf_counter() - t0
                if state.is_main_process:
                    labels = [r["label"] for r in read_shards(done)]
                    counts.setdefault(config, {}).setdefault(split, {})[source] = {
                        name: labels.count(k) for k, name in enumerate(LABEL_NAMES)}
    record = {"recipe": json.loads(json.dumps(recipe, default=str)), "counts": counts,
              "seconds": {k: round(v, 2) for k, v in timings.items()},
              "versions": {"igmu_hf": _version("igmu_hf"), "datasets": datasets.__version__,
                           "diffusers": _version("diffusers"), "torch": _version("torch")}}
    if state.is_main_process:
        write_text_atomic(info_path, json.dumps(record, indent=2, sort_keys=True) + "\n")
        sizes = {c: {split: sum(p.stat().st_size for p in (out / "data" / c / split).glob("*.parquet"))
                     for split in per_split} for c, per_split in counts.items()}
        write_text_atomic(out / "README.md", dataset_card(record, card_notes, licenses or {}, sizes))
    state.wait_for_everyone()
    return record


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


# ---------------------------------------------------------------- the card

def dataset_card(record: dict, notes: str = "", licenses: dict[str, str] | None = None,
                 split_bytes: dict[str, dict[str, int]] | None = None) -> str:
    """README.md with the YAML ``configs:`` (parquet per split) and ``dataset_info`` (features, split sizes).

    The split sizes in bytes matter beyond the Hub's viewer: ``load_dataset(folder)`` caches a local parquet folder
    under a hash of the card's ``dataset_info`` and configs, not of the files' content, so a rebuilt folder whose
    card did not change would be served from the stale cache."""
    import yaml

    configs, infos = [], []
    for config, splits in record["counts"].items():
        configs.append({"config_name": config, "data_files": [
            {"split": split, "path": f"data/{config}/{split}/*.parquet"} for split in splits]})
        sizes = (split_bytes or {}).get(config, {})
        infos.append({"config_name": config, "features": FEATURES._to_yaml_list(), "splits": [
            {"name": split, "num_bytes": sizes.get(split, 0),
             "num_examples": sum(sum(c.values()) for c in sources.values())} for split, sources in splits.items()],
            "download_size": sum(sizes.values()), "dataset_size": sum(sizes.values())})
    meta = {"license": "other", "task_categories": ["image-classification"], "tags": ["unlearning", "igmu"],
            "pretty_name": "DataIGM", "configs": configs, "dataset_info": infos}
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "", "# DataIGM", "",
             "The image dataset of the IGMU paper (seed 000 §4.3, §5.4): per unlearning task, images labelled `target` "
             "(shows the content to forget) or `pair` (its retained counterpart) from three sources, REAL, LAION and "
             "SD-GEN. Built by igmu_hf (`igmu dataigm build`, `dataset_scripts/build_dataigm.py`).", "",
             "Columns: `image`, `label` (ClassLabel, names in this order: pair, target), `source` (ClassLabel: REAL, "
             "LAION, SD-GEN), `prompt`, `generator` (model id and method of SD-GEN rows), `seed` (-1 when none), "
             "`provenance` (origin and licence of each image).", "",
             "| config | split | source | target | pair |", "|---|---|---|---|---|"]
    for config, splits in record["counts"].items():
        for split, sources in splits.items():
            for source, c in sources.items():
                lines.append(f"| {config} | {split} | {source} | {c['target']} | {c['pair']} |")
    r = record["recipe"]
    lines += ["", "## How it was built", "",
              f"- seed {r['seed']}; rows per label and split: {r['num_per_label'] or 'all (balanced)'}; sources: "
              f"{', '.join(r['sources'])}",
              "- SD-GEN generators per config: " + "; ".join(
                  f"{c}: {', '.join(g['method'] + ' (' + g['model_id'] + ')' for g in gens)}"
                  for c, gens in r["generators"].items()) if r["generators"] else "- no SD-GEN part",
              f"- SD-GEN curation: {json.dumps(r['curator']) if r['curator'] else 'none (every generation kept)'}",
              f"- versions: {', '.join(f'{k} {v}' for k, v in record['versions'].items())}", "",
              "## Licences", ""]
    for source in r["sources"]:
        lines.append(f"- {source}: {(licenses or {}).get(source) or 'see each row provenance'}")
    if notes:
        lines += ["", "## Notes", "", notes]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- offline: the datasets builder

class DataIGMBuilderConfig(datasets.BuilderConfig):
    """One DataIGM config (a task). It carries only its name, so the cache's config id is the name itself."""


class DataIGMBuilder(datasets.GeneratorBasedBuilder):
    """``datasets`` builder over a built DataIGM folder. Instantiated with ``repo_id="igmu/dataigm"`` and prepared,
    it fills ``$HF_DATASETS_CACHE/igmu___dataigm/<config>/...``, which ``load_dataset("igmu/dataigm", config)``
    reads offline. Images are stored as bytes, never as paths of this machine."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = DataIGMBuilderConfig

    def __init__(self, *args, built_dir: str | Path, **kwargs):
        self.built_dir = Path(built_dir)
        info = self.built_dir / "build_info.json"
        if not info.exists():
            raise DataIGMBuildError(f"{self.built_dir.name} is not a built DataIGM folder (no build_info.json); "
                                    f"build it first with `igmu dataigm build`.")
        self.counts = json.loads(info.read_text())["counts"]
        name = kwargs.get("config_name")
        if name not in self.counts:
            raise DataIGMBuildError(f"The built DataIGM has no config {name!r}; configs: {', '.join(self.counts)}.")
        kwargs.setdefault("hash", fingerprint(sorted(
            (p.name, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in (self.built_dir / "data" / name).rglob("*.parquet"))))
        super().__init__(*args, **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description="DataIGM (igmu_hf)", features=FEATURES,
                                    homepage="https://github.com/ryliu68/IGMU", license="other")

    def _split_generators(self, dl_manager):
        return [datasets.SplitGenerator(name=split, gen_kwargs={"files": sorted(
            (self.built_dir / "data" / self.config.name / split).glob("*.parquet"))})
            for split in self.counts[self.config.name]]

    def _generate_examples(self, files):
        import pyarrow.parquet as pq
        from datasets.builder import Key

        for shard, path in enumerate(files):
            for k, row in enumerate(pq.read_table(path).to_pylist()):
                row["image"] = {"bytes": row["image"]["bytes"], "path": None}
                yield Key(shard, k), row


def prepare_offline(built_dir: str | Path, repo_id: str, configs: list[str] | None = None,
                    cache_dir: str | Path | None = None) -> list[str]:
    """Prepare every (or the given) config of a built folder in the local datasets cache under ``repo_id``, so
    ``load_dataset(repo_id, config)`` returns it with ``HF_HUB_OFFLINE=1``. Returns the configs prepared."""
    from ..errors import check_hub_id

    check_hub_id("--repo_id", repo_id)
    counts = json.loads((Path(built_dir) / "build_info.json").read_text())["counts"] \
        if (Path(built_dir) / "build_info.json").exists() else {}
    names = configs or list(counts)
    for name in names:
        builder = DataIGMBuilder(built_dir=built_dir, repo_id=repo_id, dataset_name=repo_id.split("/")[1],
                                 config_name=name, cache_dir=str(cache_dir) if cache_dir else None)
        builder.download_and_prepare()
    return names


def push_dataigm_to_hub(built_dir: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload the card and parquet shards (not ``.work/``) as a dataset repo."""
    from huggingface_hub import HfApi

    from ..errors import check_hub_id

    check_hub_id("--repo_id", repo_id)
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True, private=private)
    api.upload_folder(folder_path=str(built_dir), repo_id=repo_id, repo_type="dataset",
                      allow_patterns=["README.md", "build_info.json", "data/**"])
    return repo_id
