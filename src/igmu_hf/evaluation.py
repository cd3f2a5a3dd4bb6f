"""Generation with paired seeds and the forgetting evaluation (share of generations still showing the target)."""

import logging

import torch
from PIL import Image
from tqdm.auto import tqdm

from .domains.mini import MINI_GENERATION  # noqa: F401  (the mini world's sampling settings, re-exported)


logger = logging.getLogger(__name__)


def generate_images(pipe, prompts: list[str], seeds: list[int], batch_size: int = 32, progress: bool = True,
                    desc: str = "generate", **kwargs) -> list[Image.Image]:
    """One image per (prompt, seed); image ``i`` depends only on ``prompts[i]`` and ``seeds[i]`` (paired seeds).

    Extra ``kwargs`` go to the pipeline call (``num_inference_steps``, ``guidance_scale`` ...).
    """
    if len(prompts) != len(seeds):
        raise ValueError(f"`prompts` and `seeds` must have the same length, got {len(prompts)} and {len(seeds)}.")
    if not prompts:
        raise ValueError("`prompts` is empty; nothing to generate.")
    images: list[Image.Image] = []
    for i in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress):
        gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds[i:i + batch_size]]
        out = pipe(prompts[i:i + batch_size], generator=gens, **kwargs)
        images.extend(out.images)
    return images


def detection_rate(images, classifier, factor: str, value: str) -> float:
    """Share of ``images`` in which ``classifier`` detects ``value`` of ``factor`` (0..1)."""
    if not images:
        raise ValueError("`images` is empty; a rate over no images is undefined.")
    hits = torch.cat([classifier.detect(images[i:i + 256], factor, value) for i in range(0, len(images), 256)])
    return float(hits.float().mean())


def evaluate_forgetting(pipelines: dict, target: str, classifier, images_per_prompt: int = 4, n_prompts: int = 8,
                        seed: int = 0, progress: bool = True, generation_kwargs: dict | None = None) -> dict:
    """Forgetting report of a mini-world target for several pipelines (e.g. ``{"original": p0, "uce": p1}``).

    For each pipeline: the forgetting rate on the target prompts (share of images the classifier still labels as the
    target; lower means more forgotten) and, for each unrelated value of the same factor, the rate of that value on
    its own prompts (preservation) and of the target on them (leakage). All pipelines use the same prompts and seeds.
    """
    from .mini.prompts import task_prompts

    tp = task_prompts(target, n_prompts)
    factor, value = tp["factor"], tp["target"]
    gen = {**MINI_GENERATION, **(generation_kwargs or {})}

    def expand(prompts):
        ps = [p for p in prompts for _ in range(images_per_prompt)]
        return ps, [seed + i for i in range(len(ps))]

    report = {"target": value, "factor": factor, "images_per_prompt": images_per_prompt, "seed": seed,
              "generation": gen, "detector": _detector_info(classifier), "prompts": tp, "models": {}}
    for name, pipe in pipelines.items():
        ps, ss = expand(tp["target_prompts"])
        imgs = generate_images(pipe, ps, ss, progress=progress, desc=f"{name}: target", **gen)
        entry = {"forgetting_rate": detection_rate(imgs, classifier, factor, value), "num_images": len(imgs),
                 "unrelated": {}}
        for other, prompts in tp["unrelated"].items():
            ps, ss = expand(prompts)
            imgs = generate_images(pipe, ps, ss, progress=progress, desc=f"{name}: {other}", **gen)
            entry["unrelated"][other] = {"own_rate": detection_rate(imgs, classifier, factor, other),
                                         "target_rate": detection_rate(imgs, classifier, factor, value)}
        report["models"][name] = entry
    return report


def multclf_task_rates(pipe, target: str, multclf=None, images_per_prompt: int = 3, n_prompts: int = 8,
                       seed: int = 0, progress: bool = False, unrelated_images_per_prompt: int | None = None) -> dict:
    """EvalIGMU's MultClf verdict on a mini-world task: the rate of ``target`` on its prompts
    (``forgetting_rate``) and, for each other value of its factor, that value's rate on its own prompts
    (``unrelated[other]["own_rate"]``). Same prompts and seeds for every model; ``multclf`` is ``(model,
    processor)`` (default: the shipped mini MultClf). The judge the method tests and preset searches use: it is
    independent of any detector a method builds with.

    Each rate comes with its Wilson 95 % interval (``low``, ``high``, ``n``) and its per-image verdicts (``flags``,
    1 = the head says the value is there), image ``i`` drawn from the same prompt and seed for every model, so two
    models' verdicts can be paired (:mod:`igmu_hf.method_checks`). ``unrelated_images_per_prompt`` (default
    ``images_per_prompt``) sets the other values' images per prompt."""
    from .metrics.forgetting import concept_flags, forgetting_rate_from_probabilities, multclf_probabilities
    from .mini.prompts import task_prompts

    if multclf is None:
        from .detectors.multclf import load_multclf
        from .mini import MULTCLF_PATH

        multclf = load_multclf(MULTCLF_PATH)
    model, processor = multclf
    tp = task_prompts(target, n_prompts)

    def rate(prompts, head, key, per_prompt=images_per_prompt):
        ps = [p for p in prompts for _ in range(per_prompt)]
        images = generate_images(pipe, ps, [seed + i for i in range(len(ps))], progress=progress, desc=head,
                                 **MINI_GENERATION)
        probabilities = multclf_probabilities(images, model, processor, head)
        result = forgetting_rate_from_probabilities(probabilities, model.config.threshold)
        return {key: result["forgetting_rate"], "low": result["low"], "high": result["high"], "n": result["n"],
                "flags": concept_flags(probabilities, model.config.threshold).tolist()}

    target_entry = rate(tp["target_prompts"], tp["target"], "forgetting_rate")
    return {**target_entry, "target": tp["target"],
            "unrelated": {other: rate(prompts, other, "own_rate", unrelated_images_per_prompt or images_per_prompt)
                          for other, prompts in tp["unrelated"].items()}}


def _detector_info(classifier) -> dict:
    from .judges import state_dict_sha256

    return {"id": getattr(classifier, "name_or_path", "") or type(classifier).__name__,
            "class": type(classifier).__name__, "checkpoint_sha256": state_dict_sha256(classifier),
            "threshold": getattr(classifier.config, "threshold", None)}


def concept_image_dataset(pipeline, prompts: list[str], concepts: list[str] | None, seeds: list[int], accelerator,
                          desc: str, progress: bool = True, **generation_kwargs):
    """A method's image set as a ``datasets.Dataset`` (``image``, ``prompt``, ``concept`` when given, ``seed``): one
    image per (prompt, seed) from the original model, generated sharded over the accelerator's processes (Dark
    Miner's pool, FMN's and MACE's concept images)."""
    from datasets import Dataset, Features, Image, Value

    from .training import TrainingRun

    run = TrainingRun({}, accelerator, progress=progress)
    images = run.sharded(list(range(len(prompts))), lambda idx: generate_images(
        pipeline, [prompts[i] for i in idx], [seeds[i] for i in idx], progress=progress, desc=desc,
        **generation_kwargs))
    columns = {"image": images, "prompt": list(prompts), "concept": concepts, "seed": list(seeds)}
    kinds = {"image": Image(), "prompt": Value("string"), "concept": Value("string"), "seed": Value("int64")}
    if concepts is None:
        del columns["concept"], kinds["concept"]
    return Dataset.from_dict(columns, features=Features(kinds))
