"""``igmu demo``: the whole story on the embedded mini world in a few CPU minutes.

categorize the target (CatIGMU) -> unlearn it with UCE -> EvalIGMU (the five aspects) -> a report folder
(``report.json``, ``report.md``, ``grid_uce.png`` before/after, ``radar.png``, ``model_index/``, and the unlearned
pipeline in ``model/``).
"""

from pathlib import Path


def run_demo(concept: str = "circle", output_dir: str = "igmu_demo", images_per_prompt: int = 1, seed: int = 0,
             overwrite: bool = False) -> dict:
    """Run the demo; returns the EvalIGMU report (also written to ``output_dir``). A folder holding anything but a
    previous demo is refused unless ``overwrite`` (then only the demo's own outputs are replaced)."""
    from .outputs import output_folder
    from .validation import MAX_SEED, check_number

    check_number("images_per_prompt", images_per_prompt, 1, integer=True)
    check_number("seed", seed, 0, MAX_SEED, integer=True)
    out = Path(output_dir)
    with output_folder(out, "demo", overwrite):
        return _demo(concept, out, images_per_prompt, seed, overwrite)


def _demo(concept: str, out: Path, images_per_prompt: int, seed: int, overwrite: bool) -> dict:
    from .api import run_evaluate, run_unlearn, summary_lines, write_json
    from .mini import PIPELINE_PATH
    from .taxonomy import categorize

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
    print(f"Report: {out / 'report.md'}")
    return report
