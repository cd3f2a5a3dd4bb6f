"""``igmu demo``: the whole story on the embedded mini world in a few CPU minutes.

categorize the target (CatIGMU) -> unlearn it with UCE -> evaluate forgetting and preservation -> write a report
folder (``report.json``, ``report.md``, ``grid.png`` before/after, and the unlearned pipeline in ``model/``).
"""

from pathlib import Path

from PIL import Image, ImageDraw


def comparison_grid(rows: list[list[Image.Image]], labels: list[str], scale: int = 3) -> Image.Image:
    """Rows of equally sized images, each row labelled on the left, upscaled ``scale`` times (nearest)."""
    w, h = rows[0][0].size
    w, h = w * scale, h * scale
    pad, label_w = 4, 90
    grid = Image.new("RGB", (label_w + len(rows[0]) * (w + pad), len(rows) * (h + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (row, label) in enumerate(zip(rows, labels)):
        draw.text((4, r * (h + pad) + h // 2 - 5), label, fill="black")
        for c, img in enumerate(row):
            grid.paste(img.resize((w, h), Image.NEAREST), (label_w + c * (w + pad), r * (h + pad)))
    return grid


def run_demo(concept: str = "circle", output_dir: str = "igmu_demo", images_per_prompt: int = 4, seed: int = 0,
             overwrite: bool = False) -> dict:
    """Run the demo; returns the report dict (also written to ``output_dir``)."""
    from .cli import _summary_lines, _write_json, run_evaluate, run_unlearn
    from .evaluation import MINI_GENERATION, generate_images
    from .hub import load_pipeline
    from .mini import PIPELINE_PATH
    from .taxonomy import categorize

    out = Path(output_dir)
    if out.exists() and any(out.iterdir()) and not (out / "report.json").exists() and not overwrite:
        raise ValueError(f"`output_dir` {str(out)!r} is not empty and holds no demo report; pass --overwrite or "
                         f"choose another folder.")
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1/4] CatIGMU: categorizing {concept!r}")
    spec = categorize(concept)
    _write_json(out / "task.json", spec.to_dict())
    print(f"      {spec.category} (source: {spec.source}); expected output: {spec.expected_output}")

    print("[2/4] Unlearning with UCE (closed form)")
    folder, result = run_unlearn("uce", [spec.target], str(out / "model"), PIPELINE_PATH, seed=seed, overwrite=True)
    print(f"      edited {result.edited_parameter_count} parameters in {result.runtime_seconds:.2f} s -> {folder}")

    print("[3/4] Evaluating original vs unlearned (forgetting + unrelated prompts)")
    report = run_evaluate([str(folder)], str(out), original=PIPELINE_PATH, concept=spec.target,
                          images_per_prompt=images_per_prompt, seed=seed)
    report["task"] = spec.to_dict()
    _write_json(out / "report.json", report)

    print("[4/4] Writing the before/after grid and the report")
    prompts = report["prompts"]["target_prompts"]
    other = next(iter(report["prompts"]["unrelated"].values()))[:4]
    shown = prompts[:6] + other
    seeds = [seed + 1000 + i for i in range(len(shown))]
    rows = [generate_images(p, shown, seeds, progress=False, **MINI_GENERATION)
            for p in (load_pipeline(PIPELINE_PATH), result.pipeline)]
    comparison_grid(rows, ["original", "unlearned"]).save(out / "grid.png")
    lines = _summary_lines(report)
    md = [f"# igmu demo: unlearning {spec.target!r} from the mini world", "",
          f"CatIGMU category: **{spec.category}**. Method: UCE. Columns: {', '.join(repr(p) for p in shown)}.", "",
          "![before/after](grid.png)", "", "```", *lines, "```", "",
          "Full numbers, prompts, seeds and detector: `report.json`. Unlearned pipeline: `model/`."]
    (out / "report.md").write_text("\n".join(md) + "\n")
    print("\n".join(lines))
    print(f"Report folder: {out.resolve()}")
    return report
