"""EvalIGMU image quality: FID between the unlearned and the original model's image sets."""

import datasets
import evaluate

from igmu_hf.metrics.fid import fid
from igmu_hf.metrics.intervals import interval_fields
from igmu_hf.metrics.loaders import load_detector, module_data_dir


_DESCRIPTION = """FID (Heusel et al. 2017): the Fréchet distance of Gaussians fitted to the features of two image sets, here
the unlearned and the original model's images for the same prompts (relative quality, IGMU seed 000 §5.3). Lower is
better. The config name is the feature extractor: "inception" (torchvision Inception-v3, needs its weights) or
"clip:<CLIP id or folder>"; "mini" = the mini world's CLIP. FIDs from different extractors are not comparable."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of PIL images): unlearned model's images (at least 2).
    references (list of PIL images): original model's images (at least 2).
    return_interval (bool, default False): also return the 95 % interval of the value (`low`, `high`, `n`, `interval`).
Returns:
    fid (float): lower is better.
Examples:
    >>> metric = evaluate.load("metrics/fid", config_name="inception")
    >>> metric.compute(predictions=unl, references=orig)["fid"]  # doctest: +SKIP
"""

_CITATION = """@inproceedings{heusel2017gans, title={GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium}, author={Heusel, Martin and Ramsauer, Hubert and Unterthiner, Thomas and Nessler, Bernhard and
Hochreiter, Sepp}, booktitle={NeurIPS}, year={2017}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Fid(evaluate.Metric):
    _build_data_dir = module_data_dir  # detector names never become cache paths

    def _info(self):
        return evaluate.MetricInfo(description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
                                   features=datasets.Features({"predictions": datasets.Image(),
                                                               "references": datasets.Image()}))

    def _download_and_prepare(self, dl_manager):
        self.extractor, _, self.detector_info = load_detector("fid_feature_extractor", self.config_name)

    def _compute(self, predictions, references, return_interval: bool = False):
        result = fid(predictions, references, self.extractor)
        out = {"fid": result["fid"], "num_images": result["num_images"],
               "singular_covariance": result["singular_covariance"]}
        return {**out, **interval_fields(result)} if return_interval else out
