"""Baselines I on the mini model and on an SD1.4-sized random pipeline: UNet passes per optimisation step against the
minimum the loss needs, seconds per step, peak RSS, and total edit time of the closed-form / training-free ones.
Each case runs in its own process (clean peak RSS).

    python benchmarks/bench_baselines.py                 # every method, both sizes
    python benchmarks/bench_baselines.py esd mini        # one case

The SD1.4-sized cases use 256 px images (32×32 latents) so that a step finishes on 2 CPU cores; IGMU Table 8 (A6000,
512 px) reports UCE 45 s, FMN ≈ 42 s, MACE ≈ 50 s, ESD ≈ 1.5 h.
"""

import json
import subprocess
import sys
import time

METHODS = ("uce", "rece", "conceptprune", "esd", "fmn", "mace")
# minimum UNet passes (rows through the denoiser) of one optimisation step, from the loss:
# ESD: the guided DDIM trajectory to z (2 rows per step it runs), ε*(z,∅) and ε*(z,c), ε_θ(z,c)
# FMN, MACE (per concept's LoRA): one forward of the image batch
MINIMUM = {"esd": lambda extra: 2 * extra["trajectory_steps"] + 3, "fmn": lambda extra: 1, "mace": lambda extra: 1}


def run_case(method: str, size: str) -> dict:
    import resource

    from igmu_hf.api import default_preserve
    from igmu_hf.domains import get_domain
    from igmu_hf.methods import get_method

    if size == "mini":
        from igmu_hf.hub import load_pipeline

        pipe, concept, world = load_pipeline(), "circle", get_domain("mini")
        resolution = None
    else:
        from igmu_hf.tiny_pipelines import sd14_sized_pipeline

        pipe, concept, world = sd14_sized_pipeline(), "church", get_domain("real")
        resolution = 256
    pipe.set_progress_bar_config(disable=True)
    cls = get_method(method)
    kwargs = dict(world.method_preset(cls.config_class))
    if cls.config_class.preserve_field and cls.config_class.preserve_by_default:
        kwargs[cls.config_class.preserve_field] = default_preserve(cls.config_class, [concept], world) or []
    steps = None
    if method == "esd":
        kwargs.update(iterations=3, ddim_steps=kwargs.get("ddim_steps", 50), resolution=resolution)
        if size != "mini":  # ESD-x: ESD-u's full-UNet Adam states and frozen copy need ~17 GB beside it
            kwargs["train_method"] = "xattn"
        steps = 3
    elif method in ("fmn", "mace"):
        kwargs.update(max_train_steps=3, num_images=1, num_inference_steps=kwargs.get("num_inference_steps", 50))
        steps = 3
    elif method == "conceptprune" and size != "mini":
        kwargs.update(base_prompts=["a park"], target_prompts=["a church in a park"])
    config = cls.config_class(concepts=[concept], **kwargs)
    unet_rows = {"n": 0, "traj": 0}
    handle = pipe.unet.register_forward_pre_hook(lambda m, a, kw: unet_rows.__setitem__(
        "n", unet_rows["n"] + (a[0] if a else kw["sample"]).shape[0]), with_kwargs=True)
    if size != "mini" and method in ("fmn", "mace", "conceptprune"):
        pipe.unet.config.sample_size = 32  # 256 px generations for the image set / the observed generations
    unlearner = cls(config, progress=False) if cls.trained else cls(config)
    if method in ("fmn", "mace"):  # the concept images are prepared data, not part of a step: make them first, then count
        from accelerate import Accelerator

        unlearner.images = cls.build_prepared_data(pipe, config, Accelerator(), world, progress=False)
        unet_rows["n"] = 0
    t0 = time.perf_counter()
    result = unlearner.unlearn(pipe)
    total = time.perf_counter() - t0
    handle.remove()
    out = {"method": method, "size": size, "total_s": round(total, 2),
           "unet_rows": unet_rows["n"], "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           "edited_share": round(result.edited_parameter_count / result.total_parameter_count, 5)}
    if steps:
        out["s_per_step"] = round(total / steps, 3)
        out["unet_rows_per_step"] = unet_rows["n"] / steps
        if method == "esd":
            from igmu_hf.methods.esd import esd_draws, steps_until

            shape = (pipe.unet.config.in_channels, 8, 8)
            traj = sum(steps_until(d[1], config.ddim_steps) for s in range(steps)
                       for d in esd_draws(config, s, shape, 1000))
            out["minimum_rows_per_step"] = MINIMUM["esd"]({"trajectory_steps": traj / steps})
        else:
            out["minimum_rows_per_step"] = MINIMUM[method]({})
        out["passes_over_minimum"] = round(out["unet_rows_per_step"] / out["minimum_rows_per_step"], 3)
    if method == "conceptprune":
        out["unet_rows_authors"] = unet_rows["n"] * config.num_inference_steps // config.timesteps
    return out


def main():
    if len(sys.argv) == 3:
        print(json.dumps(run_case(sys.argv[1], sys.argv[2])))
        return
    for size in ("mini", "sd14"):
        for method in METHODS:
            proc = subprocess.run([sys.executable, __file__, method, size], capture_output=True, text=True)
            print(proc.stdout.strip() or proc.stderr.strip().splitlines()[-1])


if __name__ == "__main__":
    from results import record

    record("baselines_cost", "Baselines: time per step, peak memory and edited share", main)
