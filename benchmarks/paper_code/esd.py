"""ESD beside ``train-scripts/train-esd.py``'s ``train_esd`` (rohitgandikota/erasing 4100f4e): one ESD-x iteration
(``train_method='xattn'``, start_guidance 3, negative_guidance 1.0, lr 1e-5, ddim_steps 50, one word) on the tiny sd1
pipeline, their code run from the snapshot with their own ldm ``DDIMSampler`` (ldm/models/diffusion/ddim.py) and
``FrozenCLIPEmbedder`` (ldm/modules/encoders/modules.py) around our diffusers UNet / CLIP; our
``ESDUnlearner(iterations=1)`` fed the same draws (t_enc, t, z_T).

Shims (all visible below):
- ``LdmModel``: the ldm ``LatentDiffusion`` surface ``train_esd``/``DDIMSampler`` call: ``apply_model(x, t, c)`` =
  ``DiffusionWrapper(crossattn)`` → ``unet(x, t, encoder_hidden_states=c)``, ``get_learned_conditioning`` = their
  ``FrozenCLIPEmbedder.encode`` (its ``from_pretrained`` loads return the tiny tokenizer/text encoder),
  ``model.diffusion_model`` (the diffusers UNet, so their ``'attn2' in name`` filter runs on diffusers names),
  and the noise schedule buffers (``num_timesteps``, ``betas``, ``alphas_cumprod(_prev)``) of the pipeline's scheduler.
- ``get_models``: returns (deep copy of the UNet as model_orig, its sampler, the UNet, its sampler) on CPU instead of
  loading a CompVis checkpoint twice; ``save_model``/``save_history`` write nothing (``save_history`` keeps the loss).
- ``DDIMSampler.register_buffer``: ``torch.device("cuda")`` → ``"cpu"``; ``start_code``'s hard-coded
  ``(1, 4, 64, 64)`` (512 px) → ``(1, 4, 8, 8)``, the tiny pipeline's latent size.
- ``torch`` of ``train_esd`` is a proxy that records its ``randint``/``randn`` draws (t_enc, t, z_T), which are given to
  ours by replacing ``igmu_hf.methods.esd.esd_draws`` for the step.
"""

import contextlib
import copy
import io
import time
from functools import partial
from types import SimpleNamespace

import numpy as np
import torch
from tqdm import tqdm

from compare_paper_code import per_step_ratio, grads_of, interleaved_ratio, paper_function, rel_diff

REPOSITORY, COMMIT = "rohitgandikota/erasing", "4100f4e"
SCRIPT = "train-scripts/train-esd.py"


class DrawRecorder:
    """``torch`` for ``train_esd``: every attribute is torch's; ``randint``/``randn`` also record what they drew."""

    def __init__(self):
        self.draws = []

    def __getattr__(self, name):
        return getattr(torch, name)

    def randint(self, *args, **kwargs):
        self.draws.append(torch.randint(*args, **kwargs))
        return self.draws[-1]

    def randn(self, *args, **kwargs):
        self.draws.append(torch.randn(*args, **kwargs))
        return self.draws[-1]


class LdmModel(torch.nn.Module):
    """The ldm LatentDiffusion interface their code calls, around a diffusers UNet (and their CLIP embedder)."""

    def __init__(self, unet, embedder, scheduler):
        super().__init__()
        self.model = torch.nn.Module()
        self.model.diffusion_model = unet
        self.cond_stage_model = embedder
        ac = scheduler.alphas_cumprod.float()
        self.num_timesteps = len(ac)
        self.betas, self.alphas_cumprod = scheduler.betas.float(), ac
        self.alphas_cumprod_prev = torch.cat([ac.new_ones(1), ac[:-1]])
        self.device = torch.device("cpu")

    def apply_model(self, x_noisy, t, cond):  # LatentDiffusion.apply_model → DiffusionWrapper('crossattn')
        return self.model.diffusion_model(x_noisy, t, encoder_hidden_states=cond).sample

    def get_learned_conditioning(self, c):  # cond_stage_forward None, FrozenCLIPEmbedder has encode
        return self.cond_stage_model.encode(c)


def _replace(old, new):
    def edit(source):
        assert old in source, f"shim target {old!r} not found"
        return source.replace(old, new)
    return edit


def their_code(repo: str, captured: dict):
    """``train_esd`` from the snapshot with its ldm sampler and CLIP embedder, and the shims above."""
    util = "ldm/modules/diffusionmodules/util.py"
    ddim_ns = {"np": np, "tqdm": tqdm, "partial": partial,
               **{n: paper_function(repo, COMMIT, util, n, {"np": np}) for n in
                  ("make_ddim_sampling_parameters", "make_ddim_timesteps", "noise_like", "extract_into_tensor")}}
    DDIMSampler = paper_function(repo, COMMIT, "ldm/models/diffusion/ddim.py", "DDIMSampler", ddim_ns,
                                 edit=_replace('torch.device("cuda")', 'torch.device("cpu")'))
    enc = "ldm/modules/encoders/modules.py"
    AbstractEncoder = paper_function(repo, COMMIT, enc, "AbstractEncoder", {"nn": torch.nn})

    FrozenCLIPEmbedder = paper_function(repo, COMMIT, enc, "FrozenCLIPEmbedder", {
        "nn": torch.nn, "AbstractEncoder": AbstractEncoder, "CLIPTokenizer": None, "CLIPTextModel": None})

    def get_models_for(pipe):
        def get_models(config_path, ckpt_path, devices):
            # their FrozenCLIPEmbedder.__init__, its two from_pretrained loads giving the tiny tokenizer / encoder
            FrozenCLIPEmbedder.__init__.__globals__.update(
                CLIPTokenizer=SimpleNamespace(from_pretrained=lambda v: pipe.tokenizer),
                CLIPTextModel=SimpleNamespace(from_pretrained=lambda v: pipe.text_encoder))
            emb = FrozenCLIPEmbedder(device="cpu")
            model_orig = LdmModel(copy.deepcopy(pipe.unet), emb, pipe.scheduler).eval()
            model = LdmModel(pipe.unet, emb, pipe.scheduler).eval()
            return model_orig, DDIMSampler(model_orig), model, DDIMSampler(model)
        return get_models

    sample_model = paper_function(repo, COMMIT, SCRIPT, "sample_model")
    train_esd = paper_function(
        repo, COMMIT, SCRIPT, "train_esd",
        {"random": __import__("random"), "tqdm": tqdm, "sample_model": sample_model, "save_model": lambda *a, **k: None,
         "save_history": lambda losses, name, word_print: captured.__setitem__("losses", list(losses))},
        edit=_replace("torch.randn((1, 4, 64, 64))", "torch.randn((1, 4, 8, 8))"))

    def train_esd_for(pipe, recorder):  # compiled once (above); per run: the draw recorder and this run's models
        train_esd.__globals__.update(torch=recorder, get_models=get_models_for(pipe))
        return train_esd
    return train_esd_for



def compare(repo: str, concept: str = "van gogh", seed: int = 3) -> dict:
    import igmu_hf.methods.esd as esd_mod
    from igmu_hf.methods import ESDConfig, ESDUnlearner
    from igmu_hf.tiny_pipelines import tiny_pipeline

    hp = dict(train_method="xattn", start_guidance=3.0, negative_guidance=1.0, iterations=1, lr=1e-5, ddim_steps=50)
    base = tiny_pipeline("sd1")
    captured = {}
    train_esd_for = their_code(repo, captured)

    def theirs(pipe):
        recorder = DrawRecorder()
        torch.manual_seed(seed)
        with contextlib.redirect_stdout(io.StringIO()):  # their per-parameter prints
            train_esd_for(pipe, recorder)(
                prompt=concept, train_method=hp["train_method"], start_guidance=hp["start_guidance"],
                negative_guidance=hp["negative_guidance"], iterations=hp["iterations"], lr=hp["lr"],
                config_path=None, ckpt_path=None, diffusers_config_path=None, devices=["cpu", "cpu"],
                image_size=32, ddim_steps=hp["ddim_steps"])
        return recorder.draws

    def ours(pipe, draws):
        t_enc, t, z_T = draws
        saved = esd_mod.esd_draws
        esd_mod.esd_draws = lambda config, step, shape, T: [(0, int(t_enc), int(t), z_T.clone())]
        try:
            un = ESDUnlearner(ESDConfig(concepts=[concept], seed=seed, **hp), progress=False)
            un.unlearn(pipe)
        finally:
            esd_mod.esd_draws = saved
        return un

    p_theirs, p_ours = copy.deepcopy(base), copy.deepcopy(base)
    draws = theirs(p_theirs)
    loss_theirs = captured["losses"][0]
    un = ours(p_ours, draws)
    loss_ours = un.stats["first_loss"]

    names = esd_mod.esd_parameter_names(base.unet, "xattn")
    g_t = grads_of({n: p for n, p in p_theirs.unet.named_parameters() if n in names})
    g_o = grads_of({n: p for n, p in p_ours.unet.named_parameters() if n in names})
    w0, wt, wo = ({n: w.detach() for n, w in p.unet.named_parameters()} for p in (base, p_theirs, p_ours))
    changed_ours = [n for n in w0 if not torch.equal(w0[n], wo[n])]
    changed_theirs = [n for n in w0 if not torch.equal(w0[n], wt[n])]

    # ldm's schedule (float64 cumprod of make_beta_schedule('linear', 1000, 0.00085, 0.012)) vs the pipeline's
    betas = paper_function(repo, COMMIT, "ldm/modules/diffusionmodules/util.py", "make_beta_schedule", {"np": np})(
        "linear", 1000, linear_start=0.00085, linear_end=0.012)
    ldm_ac = torch.tensor(np.cumprod(1.0 - betas), dtype=torch.float32)

    from igmu_hf.text import check_concept_in_vocab
    t0 = time.perf_counter()
    check_concept_in_vocab(base.tokenizer, concept)
    vocab_check_s = time.perf_counter() - t0

    pool_t = [copy.deepcopy(base) for _ in range(5)]
    pool_o = [copy.deepcopy(base) for _ in range(5)]
    whole = interleaved_ratio(lambda: ours(pool_o.pop(), draws), lambda: theirs(pool_t.pop()))
    # per step: n iterations each, ours fed their n draws (the same trajectories, so the same work per step)
    last = {}

    def theirs_n(n):
        recorder = DrawRecorder()
        torch.manual_seed(seed)
        with contextlib.redirect_stdout(io.StringIO()):
            train_esd_for(copy.deepcopy(base), recorder)(
                prompt=concept, train_method=hp["train_method"], start_guidance=hp["start_guidance"],
                negative_guidance=hp["negative_guidance"], iterations=n, lr=hp["lr"], config_path=None,
                ckpt_path=None, diffusers_config_path=None, devices=["cpu", "cpu"], image_size=32,
                ddim_steps=hp["ddim_steps"])
        last["draws"] = recorder.draws

    def ours_n(n):
        d = last["draws"]
        per = [(0, int(d[3 * i]), int(d[3 * i + 1]), d[3 * i + 2].clone()) for i in range(n)]
        saved = esd_mod.esd_draws
        esd_mod.esd_draws = lambda config, step, shape, T: [per[step]]
        try:
            ESDUnlearner(ESDConfig(concepts=[concept], seed=seed, **{**hp, "iterations": n}),
                         progress=False).unlearn(copy.deepcopy(base))
        finally:
            esd_mod.esd_draws = saved

    timing = {**per_step_ratio(ours_n, theirs_n), "whole_run_time_ratio": whole["step_time_ratio"]}
    return {
        "compared": (f"one ESD-x iteration (xattn, sg 3, ng 1.0, lr 1e-5, 50 DDIM steps) on tiny sd1, '{concept}', "
                     f"same t_enc={int(draws[0])}, t={int(draws[1])}, z_T; z from each side's DDIM"),
        "loss_rel_diff": abs(loss_ours - loss_theirs) / abs(loss_theirs),
        "grad_rel_diff": rel_diff(g_o, g_t),
        "loss_ours": loss_ours, "loss_theirs": loss_theirs,
        "updated_weights_delta_rel_diff": rel_diff({n: wo[n] - w0[n] for n in names}, {n: wt[n] - w0[n] for n in names}),
        "trained_params": len(names), "changed_ours": len(changed_ours), "changed_theirs": len(changed_theirs),
        "same_changed_set": sorted(changed_ours) == sorted(changed_theirs),
        "ldm_vs_pipeline_alphas_cumprod_rel_diff": rel_diff(base.scheduler.alphas_cumprod.float(), ldm_ac),
        **timing,
        "ours_check_concept_in_vocab_seconds": vocab_check_s,
        "differences": DIFFERENCES,
    }


DIFFERENCES = [
    "fixed (was the loss/grad gap, 0.18/0.15): z's DDIM trajectory. Their sample_model passes t_start=-1 "
    "(train-esd.py:40,60) and ldm's ddim_sampling truncates `timesteps[:t_start]` (ddim.py:155): the grid's highest "
    "step is never run, z_T enters at the second, and the loop breaks after index t_enc-1 (ddim.py:194). Ours ran "
    "one step more from the top; esd.paper_trajectory now runs their grid and count.",
    "declared: parameter filters in diffusers names (train-esd.py:165-201 CompVis 'out.'/'time_embed' vs esd.py "
    "esd_parameter_names); for xattn the same 'attn2' filter, identical sets here.",
    "declared: frozen ε* on the same device (train-esd.py:96-103 devices[1]) vs esd.py _unlearn deepcopy.",
    "declared: v-prediction (SD2.x) combination applied to v (esd.py esd_target); the paper code is ε only.",
    "declared since (found undeclared) (only off the paper's 512 px): train-esd.py:233 draws z_T as (1, 4, 64, 64) whatever image_size; "
    "esd.py esd_draws uses the pipeline/`resolution` latent size. Same at 512 px (SD1.4 default).",
    "declared since (found undeclared) (not behavioural at defaults): DDIM trajectory from ldm's DDIMSampler (ddim.py:35-64, uniform "
    "timesteps + 1, alphas_prev[0] = ᾱ_0) vs diffusers DDIMScheduler.from_config(pipeline.scheduler.config) "
    "(esd.py _ddim_scheduler); identical for SD1.4's config (leading spacing, steps_offset 1, set_alpha_to_one "
    "False) but follows the pipeline's scheduler config otherwise (e.g. 'trailing' spacing would change z).",
    "not behavioural: draws from the global RNG (train-esd.py:218,226-233: random.sample for the word, "
    "torch.randint/randn) vs a generator seeded per step (esd.py esd_draws); same distributions.",
    "not behavioural: their text embeddings are recomputed each iteration (train-esd.py:220-222), e_0 and e_p are "
    "two UNet calls (239-240); ours encodes once and batches e_0/e_p (esd.py _unlearn).",
    "not behavioural (speed): their loaded model has requires_grad on every UNet weight, so backward also computes "
    "grads for the ~non-attn2 weights the optimiser never steps (train-esd.py:165-210); ours freezes them.",
    "extension: train_batch_size > 1 / several processes (esd.py); the paper code is batch 1.",
    "their argparse '--lr' has type=int (train-esd.py:300), so only the default 1e-5 is usable from the CLI; "
    "ours takes any float (no effect at lr 1e-5).",
]
