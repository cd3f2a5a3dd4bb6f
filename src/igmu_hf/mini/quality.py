"""The mini world's quality bars (:data:`BARS`: the share of generations that must show the prompted concept), measured on generations with fixed seeds.

    python -m igmu_hf.mini.quality --pretrained_model_name_or_path src/igmu_hf/mini/weights/pipeline
"""

import argparse
import json
import sys

from ..evaluation import MINI_GENERATION, detection_rate, generate_images
from .prompts import concept_prompts, factor_values, pair_prompts


# share of generations that must show the prompted concept (the mini world's design); texture has no bar but is reported
BARS = {"shape": 0.80, "style": 0.85, "background": 0.85, "colour": 0.85, "pairs": 0.60}


def factor_rates(pipe, classifier, factor: str, images_per_prompt: int = 3, n_prompts: int = 8,
                 progress: bool = False) -> dict[str, float]:
    """For each value of ``factor``: share of generations of its prompts in which the classifier detects it."""
    rates = {}
    for value in factor_values(factor):
        prompts = [p for p in concept_prompts(factor, value, n_prompts) for _ in range(images_per_prompt)]
        images = generate_images(pipe, prompts, list(range(len(prompts))), progress=progress,
                                 desc=f"{factor}={value}", **MINI_GENERATION)
        rates[value] = detection_rate(images, classifier, factor, value)
        if progress:  # a line per value: the whole measurement takes minutes on a CPU
            print(f"{factor}={value}: {rates[value]:.2f} of {len(images)} images", file=sys.stderr, flush=True)
    return rates


def pair_rate(pipe, classifier, n_pairs: int = 10, images_per_prompt: int = 3, progress: bool = False) -> float:
    """Share of two-object prompt generations ("a red circle next to a blue square") showing both shapes."""
    items = [item for item in pair_prompts(n_pairs) for _ in range(images_per_prompt)]
    images = generate_images(pipe, [p for p, _, _ in items], list(range(len(items))), progress=progress,
                             desc="pairs", **MINI_GENERATION)
    both = []
    probs = classifier.predict_proba(images)["shape"]
    labels = classifier.config.heads["shape"]["labels"]
    for row, (_, a, b) in zip(probs, items):
        both.append(bool(row[labels.index(a)] > classifier.config.threshold
                         and row[labels.index(b)] > classifier.config.threshold))
    return sum(both) / len(both)


def render_recall(classifier, vae=None, num_images: int = 2000, seed: int = 12345) -> dict[str, dict[str, float]]:
    """Per factor and value: share of fresh domain renders showing it that the classifier detects (its recall),
    on the drawings themselves or, with ``vae``, on their VAE reconstructions (what a perfect UNet could reach)."""
    import torch

    from .classifier import HEADS, encode_labels
    from .domain import make_dataset

    images, _, labels = make_dataset(num_images, seed)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    if vae is not None:
        with torch.no_grad():
            parts = []
            for i in range(0, len(x), 256):
                xi = (x[i:i + 256] * 2 - 1).to(vae.device)
                parts.append(((vae.decode(vae.encode(xi).latent_dist.mean).sample.clamp(-1, 1) + 1) / 2).cpu())
            x = torch.cat(parts)
    targets, masks = encode_labels(labels)  # the training labels, with their masks (colour under sepia ...)
    out = {}
    for factor, (names, multi) in HEADS.items():
        out[factor] = {}
        for j, value in enumerate(names):
            shows = targets[factor][:, j] > 0 if multi else targets[factor] == j
            sel = torch.nonzero(shows & (masks[factor] > 0)).flatten()
            if len(sel):
                hits = classifier.detect(x[sel].to(classifier.device), factor, value)
                out[factor][value] = round(float(hits.float().mean()), 4)
    return out


def measure_quality(pipe, classifier, images_per_prompt: int = 3, n_prompts: int = 8, progress: bool = False) -> dict:
    """All quality figures: per-value rates of every factor, their means, the pair rate and which bars hold."""
    rates = {f: factor_rates(pipe, classifier, f, images_per_prompt, n_prompts, progress)
             for f in ("shape", "colour", "texture", "background", "style")}
    means = {f: sum(r.values()) / len(r) for f, r in rates.items()}
    means["pairs"] = pair_rate(pipe, classifier, images_per_prompt=images_per_prompt, progress=progress)
    return {"rates": rates, "means": means, "bars": BARS,
            "passed": {k: means[k] >= bar for k, bar in BARS.items()}}


def main(argv=None):
    from ..hub import load_pipeline
    from . import CLASSIFIER_PATH, PIPELINE_PATH
    from .classifier import MiniClassifier

    p = argparse.ArgumentParser(description="Measure the mini world's quality bars on fixed-seed generations.")
    p.add_argument("--pretrained_model_name_or_path", default=PIPELINE_PATH)
    p.add_argument("--classifier", default=CLASSIFIER_PATH)
    p.add_argument("--images_per_prompt", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    pipe = load_pipeline(args.pretrained_model_name_or_path).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    clf = MiniClassifier.from_pretrained(args.classifier).to(args.device).eval()
    print(f"Measuring the quality bars on {args.images_per_prompt} image(s) per prompt, factor by factor (several "
          f"minutes on a CPU; a line per concept follows).", file=sys.stderr, flush=True)
    print(json.dumps(measure_quality(pipe, clf, args.images_per_prompt, progress=True), indent=1))


if __name__ == "__main__":
    main()
