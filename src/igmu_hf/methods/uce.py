"""UCE: Unified Concept Editing (Gandikota et al., 2024), closed form, no training.

For every cross-attention key and value projection W (``attn2.to_k`` / ``attn2.to_v``)::

    W' = (λW + Σ_e W c*_e c_eᵀ + s_p Σ_p W c_p c_pᵀ) (λI + Σ_e c_e c_eᵀ + s_p Σ_p c_p c_pᵀ)⁻¹

with c_e the text-encoder states of the erase prompt from the concept's last token to the end of the sequence,
c*_e the same positions of the guide prompt (default " ") aligned from its own last token, c_p EVERY position (BOS
through padding) of each preserved prompt with ``''`` always among them, λ = 0.5 and s_p = max(0.1, 1/|preserve|)
with ``''`` counted: the rows of the paper-era code (``rohitgandikota/unified-concept-editing`` f7222e6,
``train-scripts/train_erase.py``, ``edit_model`` with its default ``technique='replace'``). Because the right-hand side factors as W·A·B⁻¹ with A, B shared by every layer,
one d×d solve serves all layers (same result as the per-layer formula, far less work on SD-sized models).

The states come from the model family (:mod:`igmu_hf.families`): one CLIP encoder on SD1.x/SD2.x; on SDXL both
encoders' penultimate states concatenated, which is what its ``attn2.to_k``/``to_v`` take. SD3 has no cross-attention
(its joint-attention text projections see per-block modulated states, not the encoders' output) and is refused.
"""

from dataclasses import dataclass, field

import torch

from ..families import family_of
from ..text import last_token_index
from .base import MethodConfig, Unlearner, register_method


@dataclass
class UCEConfig(MethodConfig):
    guide_concepts: list[str] | None = field(
        default=None, metadata={"help": "Guide c*_e per concept (default ' '; UCE uses 'art' for artists)."})
    preserve_concepts: list[str] = field(
        default_factory=list, metadata={"help": "Prompts c_p whose keys/values must not move."})
    erase_templates: list[str] = field(
        default_factory=lambda: ["{}"],
        metadata={"help": "Erase prompts made from each concept; '{}' is the concept itself (the paper's)."})
    lamb: float = field(default=0.5, metadata={"help": "λ, the weight keeping W close to the original."})
    preserve_scale: float | None = field(
        default=None, metadata={"help": "s_p; default max(0.1, 1/|preserve|) as the paper."})
    erase_scale: float = field(default=1.0, metadata={"help": "Weight of the erase terms."})
    preserve_rows: str = field(default="all", metadata={
        "help": "Which token positions of each preserve prompt c_p enters: 'all' (BOS through padding, the paper-era "
                "code f7222e6 `edit_model`) or 'from_last_token' (the prompt's last token to the end, as the erase "
                "rows; igmu_hf's choice before defaults_version 2, kept as a named deviation)."})
    preserve_empty_prompt: bool = field(default=True, metadata={
        "help": "Add '' to the preserve set and count it in s_p, as the paper-era code always does."})

    defaults_version = "2"  # 2: the paper code's preserve rows ('all' positions, '' always preserved)

    preserve_field = "preserve_concepts"
    preserve_by_default = True

    def __post_init__(self):
        super().__post_init__()
        if self.guide_concepts is None:
            self.guide_concepts = [" "] * len(self.concepts)
        if len(self.guide_concepts) != len(self.concepts):
            raise ValueError(f"`guide_concepts` needs one entry per concept ({len(self.concepts)}), got "
                             f"{len(self.guide_concepts)}.")
        if self.lamb <= 0:
            raise ValueError(f"`lamb` (λ) must be > 0 for the inverse to exist, got {self.lamb}.")
        if self.erase_scale <= 0:
            raise ValueError(f"`erase_scale` must be > 0, got {self.erase_scale}.")
        if not self.erase_templates or any("{}" not in t for t in self.erase_templates):
            raise ValueError(f"`erase_templates` must be non-empty and each hold '{{}}', got {self.erase_templates}.")
        if self.preserve_rows not in ("all", "from_last_token"):
            raise ValueError(f"`preserve_rows` must be 'all' (the paper's) or 'from_last_token', got "
                             f"{self.preserve_rows!r}.")
        if self.preserve_scale is None:
            n = len(self.preserve_prompt_list())
            self.preserve_scale = max(0.1, 1.0 / n) if n else 0.1
        if self.preserve_scale < 0:
            raise ValueError(f"`preserve_scale` (s_p) must be ≥ 0, got {self.preserve_scale}.")

    def preserve_prompt_list(self) -> list[str]:
        """The preserve set the edit uses: the user's prompts (duplicates once), with '' first where the paper adds
        it."""
        prompts = list(dict.fromkeys(self.preserve_concepts))
        if self.preserve_empty_prompt and "" not in prompts:
            prompts = ["", *prompts]
        return prompts


def _aligned_states(pipeline, prompt: str, guide: str) -> tuple[torch.Tensor, torch.Tensor]:
    """States of ``prompt`` and ``guide`` from each one's last token on, cut to the same length (as UCE does)."""
    states = family_of(pipeline).encode(pipeline, [prompt, guide]).states.double()
    tokenizer = pipeline.tokenizer
    i, j = last_token_index(tokenizer, prompt), last_token_index(tokenizer, guide)
    n = states.shape[1] - max(i, j)
    return states[0, i:i + n], states[1, j:j + n]


def _preserve_states(pipeline, prompts: list[str], rows: str) -> torch.Tensor:
    """The rows c_p of every preserve prompt, each prompt encoded once: every position (``rows='all'``, the paper
    code's) or its last token to the end (``'from_last_token'``)."""
    if not prompts:
        return torch.zeros(0, 0, dtype=torch.float64)
    states = family_of(pipeline).encode(pipeline, prompts).states.double()
    if rows == "all":
        return states.reshape(-1, states.shape[-1])
    return torch.cat([states[k, last_token_index(pipeline.tokenizer, p):] for k, p in enumerate(prompts)])


def uce_projection(c_erase: torch.Tensor, c_guide: torch.Tensor, c_preserve: torch.Tensor, lamb: float,
                   preserve_scale: float, erase_scale: float = 1.0) -> torch.Tensor:
    """The d×d matrix M with W' = W·M for every projection W (rows of the inputs are token states)."""
    d = c_erase.shape[1]
    eye = torch.eye(d, dtype=torch.float64)
    a = lamb * eye + erase_scale * c_guide.T @ c_erase + preserve_scale * c_preserve.T @ c_preserve
    b = lamb * eye + erase_scale * c_erase.T @ c_erase + preserve_scale * c_preserve.T @ c_preserve
    # W' = W A B^-1  <=>  (W')ᵀ = B^-ᵀ Aᵀ W ᵀ; B is symmetric
    return torch.linalg.solve(b, a.T).T


def uce_edit_layers(unet, m: torch.Tensor, modules: tuple[str, ...] = ("attn2.to_k", "attn2.to_v")) -> list[str]:
    """Apply W' = W·M to every weight of the ``modules`` projections (cross-attention K/V) of ``unet``; return their
    names."""
    edited = []
    suffixes = tuple(f"{m_}.weight" for m_ in modules)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if name.endswith(suffixes):
                if param.shape[1] != m.shape[0]:
                    raise ValueError(f"{name} takes {param.shape[1]}-wide inputs but the text states are "
                                     f"{m.shape[0]} wide; UCE needs the projections the text encoder output feeds.")
                param.copy_((param.double() @ m.to(param.device)).to(param.dtype))
                edited.append(name)
    if not edited:
        raise ValueError(f"The denoiser has no cross-attention {list(modules)} weights; UCE needs an SD-style "
                         f"UNet2DConditionModel.")
    return edited


class UCEUnlearner(Unlearner):
    """Closed-form edit of cross-attention keys/values (see module docstring)."""

    requires = ("cross_attention_kv",)
    display_name = "UCE"

    reference_code = "rohitgandikota/unified-concept-editing@f7222e6: train-scripts/train_erase.py (edit_model)"
    deviations = ("One d×d solve shared by every layer (W' = W·A·B⁻¹, algebraically the per-layer formula) in float64; "
                  "the authors solve per layer in float32 (relative difference of the edit 1.8e-4 as each runs, "
                  "5e-13 with theirs in float64: benchmarks/paper_code/uce.py).",
                  "SDXL: both encoders' penultimate states concatenated (what its attn2 takes); the paper code is "
                  "SD1.x/SD2.x only.",
                  "Duplicate preserve prompts (or a user's '') count once; the authors' sum and s_p count each copy.")

    config_class = UCEConfig
    technique = "closed-form weight edit (cross-attention K/V)"
    multi_concept = True

    def _unlearn(self, pipeline) -> list[str]:
        cfg: UCEConfig = self.config
        family = family_of(pipeline)
        self.check_concepts(pipeline, [c for c in cfg.preserve_concepts if c.strip()])
        erase, guide = [], []
        for concept, g in zip(cfg.concepts, cfg.guide_concepts):
            for template in cfg.erase_templates:
                ce, cg = _aligned_states(pipeline, template.format(concept), template.format(g).strip() or " ")
                erase.append(ce)
                guide.append(cg)
        d = erase[0].shape[1]
        c_p = _preserve_states(pipeline, cfg.preserve_prompt_list(), cfg.preserve_rows)
        c_p = c_p if len(c_p) else torch.zeros(0, d, dtype=torch.float64)
        m = uce_projection(torch.cat(erase).cpu(), torch.cat(guide).cpu(), c_p.cpu(), cfg.lamb, cfg.preserve_scale,
                           cfg.erase_scale)
        return uce_edit_layers(family.denoiser(pipeline), m, tuple(family.modules("cross_kv")))


register_method("uce", UCEUnlearner)
