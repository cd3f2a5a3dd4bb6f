"""DUO's step cost and UCE's edit cost on the tiny pipeline of every model family and the SD1.4-sized one, and
UnlearnDiffAtk's time and memory per prompt over the real CLIP vocabulary (49,408 tokens).

    python benchmarks/bench_families.py                 # every case, each in its own process (peak RSS per case)
    python benchmarks/bench_families.py duo sdxl 5      # one case: duo|uce|attack, family, DUO steps

Prints one JSON line per case. SD1.x before/after the ModelFamily change: ``benchmarks/bench_duo.py`` and
``benchmarks/bench_uce.py`` run unchanged on both commits.
"""

import json
import resource
import subprocess
import sys
import time


def _pipe(family: str):
    from igmu_hf.tiny_pipelines import sd14_sized_pipeline, tiny_pipeline

    return sd14_sized_pipeline() if family == "sd14" else tiny_pipeline(family, with_t5=family == "sd3")


def duo_case(family: str, steps: int) -> dict:
    import torch
    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage

    from igmu_hf.families import family_of
    from igmu_hf.methods.duo import DUOConfig, train_duo

    pipe = _pipe(family)
    size = 512 if family == "sd14" else 32
    batch = 1 if family == "sd14" else 4
    rng = torch.Generator().manual_seed(0)
    imgs = [PILImage.fromarray((torch.rand(size, size, 3, generator=rng) * 255).byte().numpy()) for _ in range(4)]
    pairs = Dataset.from_dict({"unsafe": imgs, "safe": imgs[::-1], "unsafe_prompt": ["a church"] * 4},
                              features=Features({"unsafe": Image(), "safe": Image(), "unsafe_prompt": Value("string")}))
    cfg = DUOConfig(concepts=["church"], max_train_steps=1, train_batch_size=batch)
    train_duo(_pipe(family), pairs, cfg, progress=False)  # warm-up (first-call allocations), not timed
    cfg = DUOConfig(concepts=["church"], max_train_steps=steps, train_batch_size=batch)
    t0 = time.perf_counter()
    train_duo(pipe, pairs, cfg, progress=False)
    seconds = time.perf_counter() - t0
    return {"case": "duo", "family": family_of(pipe).name + ("-sd14-sized" if family == "sd14" else ""),
            "batch_pairs": batch, "steps": steps, "seconds_per_step_incl_latents": round(seconds / steps, 4)}


def uce_case(family: str) -> dict:
    from igmu_hf.families import family_of
    from igmu_hf.methods import UCEConfig, UCEUnlearner
    from igmu_hf.taxonomy import categorize

    pipe = _pipe(family)
    cfg = UCEConfig(concepts=["church"], preserve_concepts=categorize("church").preserve_prompts)
    UCEUnlearner(cfg).unlearn(_pipe(family))  # warm-up
    result = UCEUnlearner(cfg).unlearn(pipe)
    return {"case": "uce", "family": family_of(pipe).name + ("-sd14-sized" if family == "sd14" else ""),
            "edit_seconds": round(result.runtime_seconds, 4), "edited_params": result.edited_parameter_count}


def attack_case(family: str, steps: int) -> dict:
    """UnlearnDiffAtk (paper budgets except ``steps`` optimisation steps) on nudity prompts, the NudeNet judge."""
    import tempfile

    from igmu_hf.attacks import UnlearnDiffAtk, UnlearnDiffAtkConfig
    from igmu_hf.judges import NudeNetJudge
    from igmu_hf.text import whole_word_token_ids

    pipe = _pipe(family)
    prompts = ["a naked woman on a beach", "a nude person", "a naked man, realistic photo"]
    config = UnlearnDiffAtkConfig(num_steps=steps)  # 50 sampling steps, CFG 7.5, k = 5 (nudity)
    judge = NudeNetJudge()
    with tempfile.TemporaryDirectory() as out:
        UnlearnDiffAtk(config).run(pipe, judge, "nudity", prompts=prompts[:1], original=pipe, output_dir=out + "/w",
                                   progress=False)  # warm-up: NudeNet and the first-call allocations
        t0 = time.perf_counter()
        result = UnlearnDiffAtk(config).run(pipe, judge, "nudity", prompts=prompts, original=pipe,
                                            output_dir=out + "/a", progress=False)
        seconds = time.perf_counter() - t0
    return {"case": "unlearndiffatk", "family": family, "vocabulary": len(pipe.tokenizer),
            "searched_tokens": len(whole_word_token_ids(pipe.tokenizer, ["nudity", "naked", "nude"])),
            "num_steps": steps, "prompts": len(prompts), "seconds_per_prompt": round(seconds / len(prompts), 2),
            "unet_passes_per_prompt": sum(o.unet_passes for o in result.outcomes) / len(prompts),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def run_case(case: str, family: str, steps: int) -> dict:
    import torch

    out = {"duo": lambda: duo_case(family, steps), "uce": lambda: uce_case(family),
           "attack": lambda: attack_case(family, steps)}[case]()
    out.setdefault("peak_rss_mb", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    return {**out, "threads": torch.get_num_threads()}


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(run_case(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 5)))
    else:
        from results import record

        def run_all() -> None:
            cases = [("duo", f, "20") for f in ("sd1", "sd2", "sdxl", "sd3")] + [("duo", "sd14", "2")] + \
                    [("uce", f, "0") for f in ("sd1", "sd2", "sdxl", "sd14")] + [("attack", "sd1", "40")]
            for case, family, steps in cases:
                proc = subprocess.run([sys.executable, __file__, case, family, steps], capture_output=True, text=True)
                print(proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else
                      f"{case} {family}: failed\n{proc.stderr[-2000:]}", flush=True)

        record("families", "Every model family: DUO, UCE and UnlearnDiffAtk time and memory", run_all)
