"""EvalIGMU preservation: LPIPS between original and unlearned images paired by explicit ids."""

import datasets
import evaluate

from igmu_hf.metrics.checks import check_unique_ids
from igmu_hf.metrics.intervals import interval_fields
from igmu_hf.metrics.loaders import module_data_dir
from igmu_hf.metrics.perceptual import load_lpips
from igmu_hf.metrics.perceptual import lpips_distance


_DESCRIPTION = """LPIPS (Zhang et al. 2018, the lpips package) between the original model's image for the do-1 prompt and
the unlearned model's image for the full prompt, same seed (IGMU, seed 000 §5.3). Images are paired by the ids you
pass, never by list order; mismatched ids are an error. The config name is the backbone: alex (default), vgg or squeeze.
Offline, the pretrained backbone cannot be downloaded and a random one is used; `backbone_weights` says which."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of PIL images): unlearned model's images.
    references (list of PIL images): original model's images.
    prediction_ids, reference_ids (list of str): the id of each image; both lists must hold the same ids.
    return_interval (bool, default False): also return the 95 % interval of the value (`low`, `high`, `n`, `interval`).
Returns:
    lpips (float): mean distance over the pairs, lower = closer to the original.
    backbone_pretrained (float): 1.0 with the pretrained backbone, 0.0 with a random one (offline).
Examples:
    >>> metric = evaluate.load("metrics/lpips")
    >>> metric.compute(predictions=unl, references=orig, prediction_ids=ids, reference_ids=ids)  # doctest: +SKIP
"""

_CITATION = """@inproceedings{zhang2018perceptual, title={The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric}, author={Zhang, Richard and Isola, Phillip and Efros, Alexei A and Shechtman, Eli and Wang, Oliver},
booktitle={CVPR}, year={2018}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Lpips(evaluate.Metric):
    _build_data_dir = module_data_dir  # detector names never become cache paths

    def _info(self):
        return evaluate.MetricInfo(description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
                                   features=datasets.Features({"predictions": datasets.Image(),
                                                               "references": datasets.Image()}))

    def _download_and_prepare(self, dl_manager):
        net = self.config_name if self.config_name in ("alex", "vgg", "squeeze") else "alex"
        self.model, self.detector_info = load_lpips(net)

    def _compute(self, predictions, references, prediction_ids, reference_ids, return_interval: bool = False):
        if len(prediction_ids) != len(predictions) or len(reference_ids) != len(references):
            raise ValueError("Pass one id per image: `prediction_ids` and `reference_ids` must match the image lists.")
        prediction_ids = check_unique_ids("prediction_ids", prediction_ids)
        reference_ids = check_unique_ids("reference_ids", reference_ids)
        result = lpips_distance(dict(zip(reference_ids, references)), dict(zip(prediction_ids, predictions)),
                                self.model)
        return {**(interval_fields(result) if return_interval else {}), "lpips": result["lpips"],
                "backbone_pretrained": float(self.detector_info["backbone_weights"] == "pretrained")}
