"""Dark Miner: UNet passes per optimisation step of each stage against the minimum its loss needs, step times,
peak RSS, and the time of one loop split by stage (pool, mine, verify, circumvent).

    python benchmarks/bench_darkminer.py             # mini model (mini preset, one loop), then an SD1.4-sized UNet
    python benchmarks/bench_darkminer.py sd14 1      # one case, N optimisation steps per stage

Minimum per step: mining needs ε_θ(x_t, c) and its gradient in c (1 forward + 1 backward); circumventing needs the
trainable UNet on c, c₀, 0·c, −c (1 batched forward + backward) and the reference on c₀, 0·c, −c (1 forward).
"""

import json
import resource
import subprocess
import sys
import time


def run_case(case: str, steps: int) -> dict:
    import torch
    from PIL import Image

    from igmu_hf.methods.darkminer import DarkMinerConfig, DarkMinerTrainer

    if case == "mini":
        from igmu_hf.hub import load_pipeline

        pipe, size = load_pipeline(), 32
        from igmu_hf.domains import get_domain

        cfg = DarkMinerConfig(concepts=["circle"], **get_domain("mini").method_preset(DarkMinerConfig))
    else:
        from igmu_hf.tiny_pipelines import sd14_sized_pipeline

        pipe, size = sd14_sized_pipeline(), 512
        cfg = DarkMinerConfig(concepts=["circle"], num_inference_steps=2, mining_images=1, mining_batch_size=1,
                              circumvent_images=1, embedding_length=32)
    pipe.set_progress_bar_config(disable=True)
    calls = {"forward": 0, "backward": 0}

    def count(module, args, output):
        calls["forward"] += 1
        sample = output[0] if isinstance(output, tuple) else output.sample  # pipelines call with return_dict=False
        if sample.requires_grad:  # a backward through the UNet reaches this output once
            sample.register_hook(lambda g: calls.__setitem__("backward", calls["backward"] + 1))

    pipe.unet.register_forward_hook(count)
    t0 = time.perf_counter()
    if case == "mini":
        pool = None
    else:
        rng = torch.Generator().manual_seed(0)
        pool = [Image.fromarray((torch.rand(size, size, 3, generator=rng) * 255).byte().numpy()) for _ in range(3)]
    trainer = DarkMinerTrainer(pipe, cfg, pool_images=pool, progress=False)
    pool_s = time.perf_counter() - t0
    out = {"case": case, "pool_s": round(pool_s, 2)}
    if case == "mini":  # one full loop of the preset, timed by stage
        trainer.config.max_loops = 1
        state = trainer.train()
        h = state.history[0]
        out.update({k: round(h[k], 2) for k in ("mine_s", "verify_s", "circumvent_s")},
                   mining_epochs=cfg.mining_epochs, circumvent_epochs=cfg.circumvent_epochs)
    # passes per optimisation step, stage by stage (circumvent images drawn beforehand so only training counts)
    for stage, attr in (("mine", "mining_epochs"), ("circumvent", "circumvent_epochs")):
        trainer.state.stage, trainer.state.epoch = stage, 0
        setattr(trainer.config, attr, steps)
        if stage == "circumvent":
            trainer.embeddings = trainer.embeddings or [torch.zeros(cfg.embedding_length,
                                                                    pipe.text_encoder.config.hidden_size)]
            trainer.state.selected = len(trainer.embeddings) - 1
            trainer.circ_latents = trainer.pool_latents[:1].repeat(cfg.circumvent_batch_size, 1, 1, 1)
        calls.update(forward=0, backward=0)
        t0 = time.perf_counter()
        trainer.mine() if stage == "mine" else trainer.circumvent()
        out[f"{stage}_seconds_per_step"] = round((time.perf_counter() - t0) / steps, 3)
        out[f"{stage}_unet_forwards_per_step"] = calls["forward"] / steps
        out[f"{stage}_unet_backwards_per_step"] = calls["backward"] / steps
    out.update(mine_minimum="1 fwd + 1 bwd", circumvent_minimum="2 fwd + 1 bwd",
               peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(run_case(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)))
    else:
        from results import record

        def run_all() -> None:
            for case, steps in (("mini", 5), ("sd14", 1)):
                out = subprocess.run([sys.executable, __file__, case, str(steps)], capture_output=True, text=True)
                print(out.stdout.strip().splitlines()[-1] if out.returncode == 0 else f"{case}: failed\n{out.stderr[-2000:]}")

        record("darkminer_cost", "Dark Miner: time per step and peak memory", run_all)
