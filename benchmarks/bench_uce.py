"""UCE edit time and peak RSS on the mini model and on an SD1.4-sized random UNet (each case in its own process).

    python benchmarks/bench_uce.py            # prints one line per case
"""

import json
import subprocess
import sys
import time


def run_case(case: str) -> dict:
    import resource
    import torch

    from igmu_hf.methods import UCEConfig, UCEUnlearner
    from igmu_hf.taxonomy import categorize

    t0 = time.perf_counter()
    if case == "mini":
        from igmu_hf.hub import load_pipeline

        pipe = load_pipeline()
    else:
        from igmu_hf.tiny_pipelines import sd14_sized_pipeline

        pipe = sd14_sized_pipeline()  # SD1.4's UNet and text-encoder configs, random weights, the real tokenizer
    load = time.perf_counter() - t0
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    concept = "circle" if case == "mini" else "church"  # a word of each tokenizer
    cfg = UCEConfig(concepts=[concept], preserve_concepts=categorize(concept).preserve_prompts)
    result = UCEUnlearner(cfg).unlearn(pipe)
    return {"case": case, "edit_seconds": round(result.runtime_seconds, 3), "load_seconds": round(load, 2),
            "edited_params": result.edited_parameter_count, "unet_params": result.total_parameter_count,
            "peak_rss_mb_after_load": round(rss_loaded), "peak_rss_mb": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "threads": torch.get_num_threads()}


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(run_case(sys.argv[1])))
    else:
        from results import record

        def run_all() -> None:
            for case in ("mini", "sd14"):
                out = subprocess.run([sys.executable, __file__, case], capture_output=True, text=True, check=True)
                print(out.stdout.strip().splitlines()[-1])

        record("uce_cost", "UCE: edit time and peak memory", run_all)
