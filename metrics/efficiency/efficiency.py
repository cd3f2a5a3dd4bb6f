"""EvalIGMU efficiency: runtime, edited-parameter share and multi-concept support from unlearning run metadata."""

import json

import datasets
import evaluate

from igmu_hf.metrics.efficiency import efficiency_from_run
from igmu_hf.metrics.loaders import module_data_dir


_DESCRIPTION = """Efficiency (IGMU seed 000 §5.3) read from the metadata every igmu_hf method writes next to the unlearned
pipeline (igmu_run.json): runtime in seconds, the share of UNet parameters the method edited, and whether the
technique erases several concepts in one run. Averaged over the runs passed."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): igmu_run.json contents (JSON strings) or unlearned pipeline folders.
Returns:
    runtime_seconds (float), edited_parameter_share (float, 0..1), multi_concept (float, share of runs whose
    technique supports several concepts).
Examples:
    >>> metric = evaluate.load("metrics/efficiency")
    >>> metric.compute(predictions=["out/uce-circle"])  # doctest: +SKIP
"""

_CITATION = """@article{igmu2025, title={Comprehensive Evaluation and Analysis for NSFW Concept Erasure in Text-to-Image
Diffusion Models}, note={IGMU: EvalIGMU efficiency}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Efficiency(evaluate.Metric):
    _build_data_dir = module_data_dir  # detector names never become cache paths

    def _info(self):
        return evaluate.MetricInfo(description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
                                   features=datasets.Features({"predictions": datasets.Value("string")}))

    def _compute(self, predictions):
        if not predictions:
            raise ValueError("Efficiency of no run is undefined: pass at least one igmu_run.json or run folder.")
        runs = [efficiency_from_run(json.loads(p) if p.lstrip().startswith("{") else p) for p in predictions]
        n = len(runs)
        return {"runtime_seconds": sum(r["runtime_seconds"] for r in runs) / n,
                "edited_parameter_share": sum(r["edited_parameter_share"] for r in runs) / n,
                "multi_concept": sum(bool(r["multi_concept"]) for r in runs) / n}
