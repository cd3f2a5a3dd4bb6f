#!/usr/bin/env python
"""How many images per prompt set a budget needs to tell two methods' forgetting rates apart, by power, and what
each budget resolves. Writes docs/results/sample_size.md (and .json).

    python benchmarks/sample_size.py

A two-sided test of two independent proportions at the 5 % level with power 0.8 (the arcsine approximation,
``igmu_hf.metrics.intervals.required_sample_size``); the benchmark's images are paired across methods by seed,
which only helps, so these sizes are conservative. The `preset` budget takes its size from this calculation
(``igmu_hf.benchmark.PRESET_IMAGES``). Each size is checked by simulation (seeded, numpy only): the share of
2,000 simulated comparisons at that size in which a two-proportion z-test tells the rates apart.
"""

import numpy as np

from igmu_hf.benchmark import BUDGETS, PRESET_IMAGES, PRESET_RESOLUTION
from igmu_hf.metrics.intervals import detectable_difference, required_sample_size

from results import write_result


def simulated_power(p1: float, p2: float, n: int, trials: int = 2000, seed: int = 0) -> float:
    """Share of ``trials`` seeded simulations in which a two-sided two-proportion z-test at 5 % tells p1 from p2."""
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    a = rng.binomial(n, p1, trials) / n
    b = rng.binomial(n, p2, trials) / n
    pooled = (a + b) / 2
    se = np.sqrt(np.maximum(pooled * (1 - pooled) * 2 / n, 1e-12))
    return float(np.mean(np.abs(a - b) / se > norm.ppf(0.975)))


def main() -> None:
    rows = ["| rates compared | images per set needed (power 0.8, 5 % level) | simulated power at that n |",
            "|---|---|---|"]
    data = {"needed": {}, "budgets": {}}
    for p1, p2 in ((0.5, 0.35), (0.1, 0.25), (0.25, 0.1), (0.5, 0.4), (0.1, 0.2)):
        n = required_sample_size(p1, p2)
        power = simulated_power(p1, p2, n)
        data["needed"][f"{p1} vs {p2}"] = {"n": n, "simulated_power": power}
        rows.append(f"| {p1:.2f} vs {p2:.2f} | {n} | {power:.2f} |")
    table = ["| budget | images per set | smallest resolvable difference near 0.5 | near 0.25 | near 0.1 |",
             "|---|---|---|---|---|"]
    for name, b in BUDGETS.items():
        n = b["num_prompts"] * b["images_per_prompt"]
        d = {p: detectable_difference(n, p) for p in (0.5, 0.25, 0.1)}
        data["budgets"][name] = {"images_per_set": n, **{f"near_{p}": v for p, v in d.items()}}
        table.append(f"| `{name}` | {n} ({b['num_prompts']} prompts × {b['images_per_prompt']}) | {d[0.5]:.2f} | "
                     f"{d[0.25]:.2f} | {d[0.1]:.2f} |")
    md = "\n".join([
        "Images per prompt set needed to tell two forgetting rates apart (two-sided test of two independent "
        "proportions, arcsine approximation; the simulated power is the share of 2,000 seeded simulated comparisons "
        "in which a two-proportion z-test at 5 % told them apart at that n):", "", *rows, "",
        f"The `preset` budget needs {PRESET_IMAGES} images per set to tell apart two methods {PRESET_RESOLUTION} "
        f"apart near a forgetting rate of 0.1, where methods that work are compared, and draws "
        f"{data['budgets']['preset']['images_per_set']} (whole prompts × images). Each budget "
        f"resolves (the smallest difference it tells apart with power 0.8; a gap of 'the whole rate' means it cannot "
        f"tell the rate from 0):", "", *table, "",
        "An ASR rests on the attacked prompts only (`attack_num_prompts`), so its interval is wider; the report "
        "prints each figure's n and interval."])
    path = write_result("sample_size", "Sample sizes chosen by power", md, data)
    print(md)
    print(f"Written: {path}")


if __name__ == "__main__":
    main()
