"""ConceptPrune (Chavhan et al., 2024): training-free pruning of the UNet feed-forward weights that are skilled at the
concept. Facts from the authors' code (``ruchikachavhan/concept-prune`` 72927d9: ``wanda/wanda.py``,
``neuron_receivers/wanda_receiver.py``, ``wanda/save_union_over_time.py``, ``utils/prompts.py``,
``configs/wanda_config.yaml``):

- Paired prompts differ only by the concept: styles ``a photo of a {thing}`` / ``a {thing} in the style of
  {target}``; objects ``a {scene}`` / ``a {target} in a {scene}``; nudity ``a photo of a {human}`` / ``a photo of a
  naked {human}``. Each prompt is generated once with the pipeline's defaults and seed 0.
- At every denoising step t, the input of each FFN output layer ``ff.net.2`` (the GEGLU output) is taken row by row
  (every token of both classifier-free-guidance halves), each row L2-normalised, and the column norms accumulated
  over the prompts: A_t (one number per input neuron), for the base and the target prompts.
- WANDA score S_t = |W| · A_t (per weight). A weight is skilled at step t when it is among its row's top
  ``skill_ratio`` of the target scores and its target score exceeds its base score; the union over the first
  ``timesteps`` steps (10) is zeroed. ``skill_ratio`` is 1 % for artists (styles), 2 % for objects.

Only the first ``timesteps`` denoising steps are computed (the later ones do not enter the union; the authors run all
50). The edited share counts the zeroed weights, not whole tensors.
"""

from dataclasses import dataclass, field

import torch

from ..families import family_of
from ..text import check_concept_in_vocab
from .base import MethodConfig, Unlearner, register_method


# Subjects of the real-world prompt pairs (our lists, in the roles of the authors' things / humans / scenes files).
THINGS = ["dog", "cat", "house", "tree", "car", "flower", "bird", "mountain", "boat", "chair", "horse", "bridge",
          "city street", "forest", "lake", "woman", "man", "child", "table", "garden"]
HUMANS = ["man", "woman", "person", "boy", "girl", "young man", "young woman", "old man", "old woman", "couple"]
SCENES = ["park", "street", "beach", "forest", "road", "field", "garden", "city", "village", "desert"]


@dataclass
class ConceptPruneConfig(MethodConfig):
    base_prompts: list[str] | None = field(default=None, metadata={
        "help": "Prompts without the concept (default: the paper's templates by task type, or the concept world's "
                "pairs)."})
    target_prompts: list[str] | None = field(default=None, metadata={
        "help": "The same prompts with the concept, one per base prompt."})
    skill_ratio: float | None = field(default=None, metadata={
        "help": "Share of each weight row kept as candidates (top-k of the target's WANDA scores): default 0.01 "
                "for styles, 0.02 otherwise (the paper's)."})
    timesteps: int = field(default=10, metadata={"help": "The union runs over the first this many denoising steps."})
    num_inference_steps: int = field(default=50, metadata={"help": "Denoising steps of the observed generations."})
    guidance_scale: float = field(default=7.5, metadata={"help": "Classifier-free guidance of the generations."})

    def __post_init__(self):
        super().__post_init__()
        if (self.base_prompts is None) != (self.target_prompts is None):
            raise ValueError("Give both `base_prompts` and `target_prompts` (paired), or neither.")
        if self.base_prompts is not None and (len(self.base_prompts) != len(self.target_prompts)
                                              or not self.base_prompts):
            raise ValueError(f"`base_prompts` and `target_prompts` must be non-empty and paired, got "
                             f"{len(self.base_prompts)} and {len(self.target_prompts)}.")
        if self.skill_ratio is None:
            from ..taxonomy import is_style

            self.skill_ratio = 0.01 if all(is_style(c) for c in self.concepts) else 0.02
        if not 0 < self.skill_ratio < 1:
            raise ValueError(f"`skill_ratio` must be in (0, 1), got {self.skill_ratio}.")
        if self.timesteps < 1 or self.timesteps > self.num_inference_steps:
            raise ValueError(f"`timesteps` must be in [1, num_inference_steps={self.num_inference_steps}], got "
                             f"{self.timesteps}.")


def default_prompt_pairs(concept: str, domain=None) -> tuple[list[str], list[str]]:
    """``(base, target)`` prompts that differ only by ``concept``: the concept world's pairs, else the paper's
    templates by CatIGMU task."""
    from ..domains import domain_of_concept, get_domain
    from ..taxonomy import categorize

    world = get_domain(domain) if domain is not None else domain_of_concept(concept)
    pairs = world.prompt_pairs(concept)
    if pairs is not None:
        return pairs
    task = categorize(concept).task
    if task == "Style":
        return [f"a photo of a {t}" for t in THINGS], [f"a {t} in the style of {concept}" for t in THINGS]
    if concept.strip().lower() in ("nudity", "naked", "nude"):
        return [f"a photo of a {h}" for h in HUMANS], [f"a photo of a naked {h}" for h in HUMANS]
    return [f"a {s}" for s in SCENES], [f"a {concept} in a {s}" for s in SCENES]


def ffn_output_layers(denoiser) -> dict[str, torch.nn.Linear]:
    """The FFN output projections ``…ff.net.2`` (the layers ConceptPrune scores), by name."""
    layers = {n: m for n, m in denoiser.named_modules() if n.endswith(".ff.net.2") and isinstance(m, torch.nn.Linear)}
    if not layers:
        raise ValueError("The denoiser has no feed-forward `ff.net.2` layers; ConceptPrune needs transformer-block "
                         "FFNs (SD1.x, SD2.x, SDXL, SD3).")
    return layers


@torch.no_grad()
def activation_norms(pipe, prompts: list[str], layers: dict[str, torch.nn.Linear], timesteps: int,
                     num_inference_steps: int, guidance_scale: float, seed: int = 0, progress: bool = False
                     ) -> dict[str, torch.Tensor]:
    """A_t per layer: ``{name: (timesteps, in_features)}`` column norms of the row-normalised inputs of each layer
    over every prompt's first ``timesteps`` denoising steps (one generation per prompt, seed ``seed``)."""
    from tqdm.auto import tqdm

    sq = {n: torch.zeros(timesteps, m.in_features, dtype=torch.float64) for n, m in layers.items()}
    step = {"t": 0}

    def hook(name):
        def fn(module, args):
            if step["t"] < timesteps:
                x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
                x = torch.nn.functional.normalize(x, p=2, dim=1)
                sq[name][step["t"]] += x.pow(2).sum(0).cpu()
        return fn

    def stop_after(pipeline, i, t, kwargs):
        step["t"] = i + 1
        if step["t"] >= timesteps:
            pipeline._interrupt = True  # the later steps do not enter the union
        return kwargs

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers.items()]
    try:
        for prompt in tqdm(prompts, desc="ConceptPrune activations", disable=not progress):
            step["t"] = 0
            pipe(prompt, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                 generator=torch.Generator().manual_seed(seed), output_type="latent", callback_on_step_end=stop_after)
    finally:
        for h in handles:
            h.remove()
    return {n: v.sqrt() for n, v in sq.items()}


def skilled_mask(weight: torch.Tensor, norms_base: torch.Tensor, norms_target: torch.Tensor,
                 skill_ratio: float) -> torch.Tensor:
    """The union over steps of the weights in their row's top-k target scores whose target score beats the base's
    (``norms_*``: (timesteps, in_features))."""
    w = weight.detach().abs().double().cpu()
    k = int(skill_ratio * w.shape[1])
    mask = torch.zeros_like(w, dtype=torch.bool)
    if k == 0:
        return mask
    for a_base, a_target in zip(norms_base, norms_target):
        s_base, s_target = w * a_base, w * a_target
        top = torch.zeros_like(mask)
        top.scatter_(1, s_target.topk(k, dim=1).indices, True)
        mask |= top & (s_target > s_base)
    return mask


class ConceptPruneUnlearner(Unlearner):
    """Zero the FFN weights skilled at the concept (see module docstring)."""

    reference_code = ("ruchikachavhan/concept-prune@72927d9: wanda/wanda.py, neuron_receivers/wanda_receiver.py, "
                      "wanda/save_union_over_time.py, utils/prompts.py, configs/wanda_config.yaml")
    deviations = ("Only the first `timesteps` denoising steps are run (the later ones do not enter the union; the "
                  "authors generate all 50).",
                  "Our own subject lists for the real-world prompt pairs; the authors' datasets/things.txt, humans.txt "
                  "and common_scenes.txt (added in f9e2983, read by utils/prompts.py) share 7 of 20, 5 of 18 and 6 "
                  "of 12 of them, and their object prompts use scenes for the 8 Imagenette objects only, with own "
                  "lists for church and garbage truck; the mini world uses its own grammar.",
                  "Layers are matched to scores by module name; the authors match by call order against the "
                  "alphabetically sorted names (the same on SD1.x).",
                  "The multi-concept union (the authors' multi_concept_union.py) is not offered: one concept per run.",
                  "The pipeline runs in the model's dtype (float32 here); the authors' in float16.")

    config_class = ConceptPruneConfig
    technique = "training-free pruning of skilled FFN weights (WANDA scores)"
    multi_concept = False

    def __init__(self, config: ConceptPruneConfig, domain=None, progress: bool = False):
        super().__init__(config)
        self.domain, self.progress = domain, progress
        self.pruned = 0

    @classmethod
    def domain_kwargs(cls, domain) -> dict:
        return {"domain": domain}

    def _unlearn(self, pipeline) -> list[str]:
        cfg: ConceptPruneConfig = self.config
        if len(cfg.concepts) != 1:
            raise ValueError("ConceptPrune erases one concept per run (the authors prune a union of single-concept "
                             "masks for several); pass one --concept.")
        check_concept_in_vocab(pipeline.tokenizer, cfg.concepts[0])
        base, target = ((cfg.base_prompts, cfg.target_prompts) if cfg.base_prompts is not None
                        else default_prompt_pairs(cfg.concepts[0], self.domain))
        denoiser = family_of(pipeline).denoiser(pipeline)
        layers = ffn_output_layers(denoiser)
        pipeline.set_progress_bar_config(disable=True)
        kw = dict(timesteps=cfg.timesteps, num_inference_steps=cfg.num_inference_steps,
                  guidance_scale=cfg.guidance_scale, seed=cfg.seed, progress=self.progress)
        a_base = activation_norms(pipeline, base, layers, **kw)
        a_target = activation_norms(pipeline, target, layers, **kw)
        edited, self.pruned, self.per_layer = [], 0, {}
        with torch.no_grad():
            for name, layer in layers.items():
                mask = skilled_mask(layer.weight, a_base[name], a_target[name], cfg.skill_ratio)
                if mask.any():
                    layer.weight[mask.to(layer.weight.device)] = 0
                    edited.append(f"{name}.weight")
                    self.pruned += int(mask.sum())
                    self.per_layer[name] = float(mask.float().mean())
        self.prompt_pairs = len(base)
        return edited

    def unlearn(self, pipeline):
        result = super().unlearn(pipeline)
        result.extra["conceptprune"] = {"pruned_weights": self.pruned, "tensors_touched": result.edited_parameter_count,
                                        "density_per_layer": self.per_layer, "prompt_pairs": self.prompt_pairs}
        result.edited_parameter_count = self.pruned  # the zeroed weights, not the whole tensors they sit in
        return result


register_method("conceptprune", ConceptPruneUnlearner)
