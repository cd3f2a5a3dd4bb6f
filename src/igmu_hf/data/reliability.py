"""The detector-reliability study of seed 000 (§4.3, Tables 1-3 and 6) on any DataIGM: accuracy, precision, recall
and F1 of each detector per task and per source, positive class ``target``.

Detectors: MultClf heads (one or more checkpoints, e.g. trained on REAL only vs on all three sources), CLIP
accuracy with the paper's (target, anchor) text pair of each task, NudeNet at its recorded threshold (nudity), and
the mini classifier on the mini world. A detector that cannot judge a task says why instead of leaving a blank.
"""

import json
from pathlib import Path
from typing import Any, Callable

from .prompts import family, table10
from .schema import LABEL_NAMES, SOURCE_NAMES


def binary_scores(truth: list[int], predicted: list[bool]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (in %) with ``target`` (1) as the positive class. Written here because it is
    four ratios of a confusion matrix (scikit-learn is not a dependency); precision/F1 are 0 with no positives."""
    tp = sum(1 for t, p in zip(truth, predicted) if t == 1 and p)
    fp = sum(1 for t, p in zip(truth, predicted) if t == 0 and p)
    fn = sum(1 for t, p in zip(truth, predicted) if t == 1 and not p)
    n = len(truth)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": 100.0 * (n - fp - fn) / n, "precision": 100.0 * precision, "recall": 100.0 * recall,
            "f1": 100.0 * f1, "num_images": n}


def world_of(config: str) -> str:
    return "real" if config in table10() else "mini"


class Detector:
    """``predict(images, config) -> list[bool]`` (shows the target?) or raises :class:`CannotJudge`."""

    name: str = ""
    note: str = ""

    def predict(self, images: list, config: str) -> list[bool]:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "note": self.note}


class CannotJudge(Exception):
    """This detector has nothing to say about this task (the message is the reason in the report)."""


class MultClfDetector(Detector):
    def __init__(self, name: str, pretrained_model_name_or_path: str):
        from ..detectors.multclf import load_multclf
        from ..hub import portable_id

        self.name, self.path = name, portable_id(pretrained_model_name_or_path)
        self.model, self.processor = load_multclf(pretrained_model_name_or_path)

    def predict(self, images, config):
        import torch

        heads = self.model.config.tasks
        head = config if config in heads else family(config, world_of(config))["target"]
        if head not in heads:
            raise CannotJudge(f"no head for {config!r} (heads: {', '.join(heads)})")
        out = []
        for i in range(0, len(images), 256):
            pixels = self.processor(images=[im.convert("RGB") for im in images[i:i + 256]],
                                    return_tensors="pt")["pixel_values"]
            out.append(self.model.predict_proba(pixels, head))
        return (torch.cat(out) > self.model.config.threshold).tolist()

    def info(self):
        return {**super().info(), "kind": "MultClf", "id": self.path, "threshold": self.model.config.threshold}


class ClipAccuracyDetector(Detector):
    """CLIP accuracy (Table 3): an image shows the target when it is closer to the target text than to the anchor."""

    def __init__(self, clip_name_or_path: str, name: str = "CLIP accuracy"):
        from transformers import CLIPModel, CLIPProcessor

        from ..hub import portable_id

        self.name, self.path = name, portable_id(clip_name_or_path)
        self.model = CLIPModel.from_pretrained(clip_name_or_path).eval()
        self.processor = CLIPProcessor.from_pretrained(clip_name_or_path)

    def predict(self, images, config):
        from ..metrics.clip_score import clip_image_embeddings, clip_text_embeddings

        target, anchor = family(config, world_of(config))["clip_pair"]
        img = clip_image_embeddings(images, self.model, self.processor)
        txt = clip_text_embeddings([target, anchor], self.model, self.processor)
        sims = img @ txt.T
        return (sims[:, 0] > sims[:, 1]).tolist()

    def info(self):
        return {**super().info(), "kind": "CLIP accuracy", "id": self.path,
                "pairs": "the (target, anchor) text pair of each task (paper §4.3.4; mini: prompt_families)"}


class ImageClassifierDetector(Detector):
    """An ImageNet classifier as the object detector of Table 2 (the paper: ResNet-50): an image shows the target when
    the classifier's top-1 class name contains the target's word (ImageNet's "church, church building",
    "parachute, chute"). Any ``transformers`` image-classification model with an ``id2label`` works."""

    def __init__(self, pretrained_model_name_or_path: str = "microsoft/resnet-50", name: str | None = None):
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        from ..hub import portable_id

        self.path = portable_id(pretrained_model_name_or_path)
        self.name = name or f"image classifier ({self.path}, top-1)"
        self.model = AutoModelForImageClassification.from_pretrained(pretrained_model_name_or_path).eval()
        self.processor = AutoImageProcessor.from_pretrained(pretrained_model_name_or_path)

    def classes_of(self, config: str) -> set[int]:
        word = family(config, world_of(config))["target"].lower()
        ids = {int(i) for i, label in self.model.config.id2label.items()
               if word in [w.strip() for w in str(label).lower().replace(",", " ").split()]}
        if not ids:
            raise CannotJudge(f"no class of {self.path} is named {word!r}")
        return ids

    def predict(self, images, config):
        import torch

        ids = self.classes_of(config)
        out = []
        with torch.no_grad():
            for i in range(0, len(images), 64):
                pixels = self.processor(images=[im.convert("RGB") for im in images[i:i + 64]],
                                        return_tensors="pt")["pixel_values"]
                out += [int(k) in ids for k in self.model(pixel_values=pixels).logits.argmax(-1).tolist()]
        return out

    def info(self):
        return {**super().info(), "kind": "image classifier", "id": self.path, "rule": "top-1 class names the target"}


class UnavailableDetector(Detector):
    """A detector that could not be loaded (e.g. a Hub id offline): every task is skipped with the reason."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason

    def predict(self, images, config):
        raise CannotJudge(self.reason)


class JudgeDetector(Detector):
    """A :class:`~igmu_hf.judges.ConceptJudge` (NudeNet, the mini classifier) used at its recorded threshold."""

    def __init__(self, name: str, make_judge: Callable[[str], Any], tasks: Callable[[str], bool], note: str = ""):
        self.name, self.make_judge, self.tasks, self.note = name, make_judge, tasks, note
        self._judges, self._info = {}, {}

    def predict(self, images, config):
        if not self.tasks(config):
            raise CannotJudge(f"{self.name} does not judge {config!r}")
        if config not in self._judges:
            self._judges[config] = self.make_judge(config)
            self._info = self._judges[config].info()
        return self._judges[config].detect(images).tolist()

    def info(self):
        return {**super().info(), "kind": "judge", **self._info}


def default_detectors(world: str, multclf: dict[str, str] | None = None, clip: str | None = None,
                      nudenet_threshold: float = 0.6, image_classifier: str | None = None) -> list[Detector]:
    """The detectors of a world: the given MultClf checkpoints (default: the world's own), CLIP accuracy with the
    world's CLIP, the world's legacy judge (NudeNet for nudity on the real recipe; the mini classifier) and, on the
    real recipe or when named, an ImageNet classifier for the objects (default ``microsoft/resnet-50``). One that
    cannot be loaded is kept as a row of skipped cells with the reason."""
    from ..domains import get_domain
    from ..judges import MiniConceptJudge, NudeNetJudge

    dom = get_domain(world)
    detectors: list[Detector] = [MultClfDetector(n, p) for n, p in
                                 (multclf or {"MultClf": dom.metric_detectors["multclf"]}).items()]
    detectors.append(ClipAccuracyDetector(clip or dom.metric_detectors["clip"]))
    if world == "real":
        detectors.append(JudgeDetector(f"NudeNet (threshold {nudenet_threshold})",
                                       lambda c: NudeNetJudge(threshold=nudenet_threshold),
                                       lambda c: c == "nudity"))
    if world == "real" or image_classifier:
        name = image_classifier or "microsoft/resnet-50"
        try:
            detectors.append(ImageClassifierDetector(name))
        except OSError as err:  # offline Hub id, missing folder
            detectors.append(UnavailableDetector(f"image classifier ({name})", f"could not be loaded: "
                                                 f"{str(err).splitlines()[0][:160]}"))
    if world != "real":
        detectors.append(JudgeDetector("mini classifier (REAL only)", MiniConceptJudge.from_pretrained,
                                       lambda c: True, note="it curated the mini DataIGM's SD-GEN rows, so its SD-GEN "
                                                            "figures are 100 by construction"))
    return detectors


def detector_reliability(dataset: str, configs: list[str], detectors: list[Detector], split: str = "test"
                         ) -> dict:
    """The study on ``split`` of each config of ``dataset`` (a built folder or a Hub id, via ``load_dataset``)."""
    import datasets

    from ..hub import portable_id

    report = {"dataset": portable_id(dataset), "split": split, "positive": "target",
              "detectors": [], "results": {}}
    for config in configs:
        ds = datasets.load_dataset(dataset, config, split=split)
        report["results"][config] = {}
        for k, source in enumerate(SOURCE_NAMES):
            part = ds.filter(lambda s, k=k: s == k, input_columns="source")
            if not len(part):
                continue
            images, truth = list(part["image"]), list(part["label"])
            entry = {"num_target": truth.count(LABEL_NAMES.index("target")),
                     "num_pair": truth.count(LABEL_NAMES.index("pair"))}
            for det in detectors:
                try:
                    entry[det.name] = binary_scores(truth, det.predict(images, config))
                except CannotJudge as why:
                    entry[det.name] = {"skipped": str(why)}
            report["results"][config][source] = entry
    report["detectors"] = [d.info() for d in detectors]
    return report


def reliability_markdown(report: dict) -> str:
    """Tables 1-3 / 6 in one: per task, per detector, per source: accuracy, precision, recall, F1 (%)."""
    lines = [f"# Detector reliability on DataIGM ({report['split']} split; positive class: target)", "",
             "| task | detector | source | accuracy | precision | recall | F1 | images |",
             "|---|---|---|---|---|---|---|---|"]
    names = [d["name"] for d in report["detectors"]]
    for config, sources in report["results"].items():
        for name in names:
            for source, entry in sources.items():
                s = entry[name]
                if "skipped" in s:
                    lines.append(f"| {config} | {name} | {source} | — | — | — | — | skipped: {s['skipped']} |")
                else:
                    lines.append(f"| {config} | {name} | {source} | {s['accuracy']:.2f} | {s['precision']:.2f} | "
                                 f"{s['recall']:.2f} | {s['f1']:.2f} | {s['num_images']} |")
    notes = [f"- {d['name']}: {d['note']}" for d in report["detectors"] if d.get("note")]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def write_reliability(report: dict, output_dir: str | Path) -> dict[str, Path]:
    from ..atomic import write_text_atomic

    out = Path(output_dir)
    paths = {"json": out / "detector_reliability.json", "markdown": out / "detector_reliability.md"}
    write_text_atomic(paths["json"], json.dumps(report, indent=2) + "\n")
    write_text_atomic(paths["markdown"], reliability_markdown(report))
    return paths
