"""``igmu demo``: the whole story on the embedded mini world in a few CPU minutes.

categorize the target (CatIGMU) -> unlearn it with UCE -> EvalIGMU (the five aspects) -> a report folder
(``report.json``, ``report.md``, ``grid_uce.png`` before/after, ``radar.png``, ``model_index/``, and the unlearned
pipeline in ``model/``).
"""

from pathlib import Path


def run_demo(concept: str = "circle", output_dir: str = "igmu_demo", images_per_prompt: int = 1, seed: int = 0,
             overwrite: bool = False) -> dict:
    """Run the demo; returns the EvalIGMU report (also written to ``output_dir``)."""
    from .api import run_evaluate, run_unlearn, summary_lines, write_json
    from .mini import PIPELINE_PATH
    from .taxonomy import categorize

    out = Path(output_dir)
    if out.exists() and any(out.iterdir()) and not (out / "report.json").exists() and not overwrite:
        raise ValueError(f"`output_dir` {str(out)!r} is not empty and holds no demo report; pass --overwrite or "
                         f"choose another folder.")
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1/3] CatIGMU: categorizing {concept!r}")
    spec = categorize(concept)
    write_json(out / "task.json", spec.to_dict())
    print(f"      {spec.category} (source: {spec.source}); expected output: {spec.expected_output}")

    print("[2/3] Unlearning with UCE (closed form)")
    folder, result = run_unlearn("uce", [spec.target], str(out / "model"), PIPELINE_PATH, seed=seed, overwrite=True)
    print(f"      edited {result.edited_parameter_count} parameters in {result.runtime_seconds:.2f} s -> {folder}")

    print("[3/3] EvalIGMU: original vs unlearned (forgetting, preservation, quality, efficiency)")
    if overwrite and (out / "images").exists():  # a new model: its cached images are stale
        import shutil

        shutil.rmtree(out / "images")
    report = run_evaluate([str(folder)], str(out), original=PIPELINE_PATH, task=spec.target,
                          images_per_prompt=images_per_prompt, seed=seed)
    print("\n".join(summary_lines(report)))
    print(f"Report: {(out / 'report.md').resolve()}")
    return report
