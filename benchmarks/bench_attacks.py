"""UNet passes and wall time per attacked prompt for each attack (fast preset) on the mini model, against UCE.

    python benchmarks/bench_attacks.py [--num_prompts 4] [--attacks unlearndiffatk,p4d]

One JSON line per attack: ASR, UNet forward calls and seconds per attacked prompt (pre-attack successes are not
attacked and are left out of the means), the shared preparation (Concept Inversion's training, Ring-A-Bell's
concept vector), and the passes one generated image costs, for scale.
"""

import argparse
import json
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num_prompts", type=int, default=4)
    parser.add_argument("--attacks", type=str, default="unlearndiffatk,concept_inversion,ringabell,p4d")
    args = parser.parse_args()

    import torch

    from igmu_hf.attacks import get_attack
    from igmu_hf.attacks.base import count_unet_passes, generate_one
    from igmu_hf.cli import run_unlearn
    from igmu_hf.hub import load_pipeline
    from igmu_hf.judges import MiniConceptJudge
    from igmu_hf.mini.prompts import task_prompts

    torch.set_num_threads(2)
    prompts = task_prompts("circle", 8)["target_prompts"][:args.num_prompts]
    with tempfile.TemporaryDirectory() as tmp:
        folder, _ = run_unlearn("uce", ["circle"], f"{tmp}/uce")
        unlearned, original = load_pipeline(folder), load_pipeline()
        judge = MiniConceptJudge.from_pretrained("circle")
        for name in args.attacks.split(","):
            cls = get_attack(name)
            config = cls.config_class.fast()
            with count_unet_passes(unlearned) as passes:
                start = time.perf_counter()
                generate_one(unlearned, prompts[0], 0, config)
                image_seconds = time.perf_counter() - start
            start = time.perf_counter()
            result = cls(config).run(unlearned, judge, "circle", prompts=prompts, original=original, progress=False)
            total = time.perf_counter() - start
            attacked = [o for o in result.outcomes if not o.pre_attack_success]
            n = max(1, len(attacked))
            print(json.dumps({
                "attack": name, "prompts": len(prompts), "attacked": len(attacked), "asr": result.asr,
                "pre_attack_asr": result.pre_attack_asr,
                "unet_passes_per_attacked_prompt": round(sum(o.unet_passes for o in attacked) / n, 1),
                "seconds_per_attacked_prompt": round(sum(o.wall_time_s for o in attacked) / n, 2),
                "steps_per_attacked_prompt": round(sum(o.steps for o in attacked) / n, 1),
                "queries_per_attacked_prompt": round(sum(o.queries for o in attacked) / n, 1),
                "prepare_seconds": round(result.summary["prepare_wall_time_s"], 2),
                "prepare_unet_passes": result.summary["prepare_unet_passes"],
                "unet_passes_per_image": passes[0], "seconds_per_image": round(image_seconds, 3),
                "total_seconds": round(total, 1)}), flush=True)


if __name__ == "__main__":
    from results import record

    record("attacks", "Attacks on the mini world: ASR, UNet passes and time per attacked prompt", main)
