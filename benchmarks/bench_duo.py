"""DUO training step: UNet passes per step against the minimum its loss needs, step time and peak RSS.

    python benchmarks/bench_duo.py            # mini model, then an SD1.4-sized random UNet (one case per process)

The loss needs the trainable UNet on x⁺_t, x⁻_t and z (one forward + backward when batched) and the reference on
the same three (one forward): the minimum is 1 forward+backward and 1 reference forward per step.
"""

import json
import resource
import subprocess
import sys
import time


def run_case(case: str, steps: int = 3) -> dict:
    import torch
    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage

    from igmu_hf.methods.duo import DUOConfig, train_duo

    if case == "mini":
        from igmu_hf.hub import load_pipeline

        pipe = load_pipeline()
        size, batch = 32, 4
    else:
        from igmu_hf.tiny_pipelines import sd14_sized_pipeline

        pipe = sd14_sized_pipeline()
        size, batch = 512, 1
    rng = torch.Generator().manual_seed(0)
    imgs = [PILImage.fromarray((torch.rand(size, size, 3, generator=rng) * 255).byte().numpy()) for _ in range(4)]
    pairs = Dataset.from_dict({"unsafe": imgs, "safe": imgs[::-1], "unsafe_prompt": ["a circle"] * 4},
                              features=Features({"unsafe": Image(), "safe": Image(), "unsafe_prompt": Value("string")}))
    calls = {"forward": 0, "backward": 0}
    def count(module, args, output):
        calls["forward"] += 1
        if output.sample.requires_grad:  # a backward through the UNet will reach this output once
            output.sample.register_hook(lambda g: calls.__setitem__("backward", calls["backward"] + 1))

    pipe.unet.register_forward_hook(count)
    cfg = DUOConfig(concepts=["circle"], max_train_steps=steps, train_batch_size=batch)
    t0 = time.perf_counter()
    train_duo(pipe, pairs, cfg, progress=False)
    seconds = time.perf_counter() - t0
    return {"case": case, "batch_pairs": batch, "steps": steps,
            "unet_forwards_per_step": calls["forward"] / steps, "unet_backwards_per_step": calls["backward"] / steps,
            "minimum_forwards_per_step": 2, "minimum_backwards_per_step": 1,
            "seconds_per_step_incl_latents": round(seconds / steps, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(run_case(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)))
    else:
        from results import record

        def run_all() -> None:
            for case, steps in (("mini", 5), ("sd14", 1)):
                out = subprocess.run([sys.executable, __file__, case, str(steps)], capture_output=True, text=True)
                print(out.stdout.strip().splitlines()[-1] if out.returncode == 0 else f"{case}: failed\n{out.stderr[-2000:]}")

        record("duo_cost", "DUO: time per step and peak memory", run_all)
