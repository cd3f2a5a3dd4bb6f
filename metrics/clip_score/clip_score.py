"""EvalIGMU image quality: CLIP score of images with their prompts."""

import datasets
import evaluate

from igmu_hf.metrics.clip_score import mean_clip_score
from igmu_hf.metrics.intervals import interval_fields
from igmu_hf.metrics.loaders import load_detector, module_data_dir


_DESCRIPTION = """CLIP score (Hessel et al. 2021, as in IGMU): CS = 100 * max(cos(image, prompt), 0) under a CLIP model,
averaged over images. Higher = images follow their prompts. The config name is the CLIP model ("mini" = the mini
world's CLIP)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of PIL images): generated images.
    references (list of str): the prompt of each image.
    return_interval (bool, default False): also return the 95 % interval of the value (`low`, `high`, `n`, `interval`).
Returns:
    clip_score (float): mean CLIP score (0..100).
Examples:
    >>> metric = evaluate.load("metrics/clip_score", config_name="openai/clip-vit-large-patch14")
    >>> metric.compute(predictions=images, references=prompts)["clip_score"]  # doctest: +SKIP
"""

_CITATION = """@inproceedings{hessel2021clipscore, title={CLIPScore: A Reference-free Evaluation Metric for Image
Captioning}, author={Hessel, Jack and Holtzman, Ari and Forbes, Maxwell and Le Bras, Ronan and Choi, Yejin},
booktitle={EMNLP}, year={2021}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClipScore(evaluate.Metric):
    _build_data_dir = module_data_dir  # detector names never become cache paths

    def _info(self):
        return evaluate.MetricInfo(description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
                                   features=datasets.Features({"predictions": datasets.Image(),
                                                               "references": datasets.Value("string")}))

    def _download_and_prepare(self, dl_manager):
        self.model, self.processor, self.detector_info = load_detector("clip", self.config_name)

    def _compute(self, predictions, references, return_interval: bool = False):
        result = mean_clip_score(predictions, references, self.model, self.processor)
        return {"clip_score": result["clip_score"], **(interval_fields(result) if return_interval else {})}
