"""MACE beside the authors' ``src/cfr_lora_training.py`` / ``src/cfr_utils.py`` (Shilin-LU/MACE 057e7a6), object
config ``configs/object/erase_ship.yaml`` (ship -> 'ground', λ = 1e3, s_p = 0, rank 1, lr 1e-5, importance sampling,
use_pooler, use_gsam_mask forced false: Grounded-SAM is our declared deviation).

Two things are compared on the tiny sd1 pipeline:

1. **Closed-form refinement (CFR)**: their stage-1 block of ``main`` (``get_ca_layers`` → ``prepare_k_v`` →
   ``closed_form_refinement``, executed as a slice of their file) on their ``MACEDataset``'s prompt pairs, against our
   ``MACEUnlearner.unlearn`` (``unlearner.refined`` holds our refined K/V weights, kept before stage 2; the config
   refuses 0 LoRA steps, so one is run); ours gets their 30 sampled templates through
   ``prompt_templates``. Compared: ΔW of every attn2 to_k/to_v.
2. **One LoRA attention-loss step** from the same refined UNet: their training-loop body (a slice of ``main``: VAE
   latents, noise, importance-sampled t, text encoder, ``AttnController`` loss, backward, clip, AdamW) with their
   ``LoRAAttnProcessor``/``AttnProcessor``, against our ``MACEUnlearner._train_lora`` (run in a thread, one step per
   ``callback``). The draws our step makes (image latent, prompt, t, noise) and their LoRA initialisation are fed to
   both. Compared: the loss and the gradients of every LoRA down/up matrix (before clipping), also with their
   concept-position mask replaced by ours (to separate the mask difference from the rest).

Shims (all visible below): cpu (``.cuda()`` dropped), tqdm silenced, ``random``/``np.random.choice``/
``torch.randn_like`` return our step's draws, the VAE returns our posterior-mean latent (declared: ours uses the mean,
theirs ``latent_dist.sample()`` of ImageNet-normalised pixels), attention projections turned into diffusers'
``LoRACompatibleLinear`` (their processor sets ``.lora_layer`` and calls ``to_q(x, scale=...)``, the diffusers≤0.25
interface), no dataloader (``dataset[i]`` + their ``collate_fn``).
"""

from __future__ import annotations

import copy
import gc
import os
import random as _random
import tempfile
import textwrap
import threading
import types
from argparse import Namespace

import numpy as np
import torch

from compare_paper_code import interleaved_ratio, paper_function, paper_source, rel_diff

REPOSITORY, COMMIT = "Shilin-LU/MACE", "057e7a6"
UTILS, TRAIN, DATA, PROC = ("src/cfr_utils.py", "src/cfr_lora_training.py", "src/dataset.py",
                            "src/mace_lora_atten_processor.py")
CONFIG = "configs/object/erase_ship.yaml"


def _quiet_tqdm(x=None, *a, **k):  # shim: their progress bars off
    return x


class _Random:
    """Shim for ``random`` in their dataset: ``sample`` is a seeded real draw, ``randint`` returns the prompt index our
    step drew (when set)."""

    def __init__(self, seed):
        self.r, self.forced = _random.Random(seed), None

    def sample(self, *a):
        return self.r.sample(*a)

    def randint(self, a, b):
        return self.forced if self.forced is not None else self.r.randint(a, b)


class _Proxy:
    """A module whose listed attributes are replaced (shim: feed our draws to their code)."""

    def __init__(self, module, **over):
        self._m, self._over = module, over

    def __getattr__(self, k):
        return self._over[k] if k in self._over else getattr(self._m, k)


def _slice(src: str, first: str, last: str | None = None, stop_before: str | None = None, edits=()):
    """Lines of their ``main`` from the one holding ``first`` to the one holding ``last`` (or before ``stop_before``),
    dedented and compiled; ``edits`` are visible source rewrites (shims)."""
    lines = src.splitlines()
    i = next(k for k, line in enumerate(lines) if first in line)
    if last is not None:
        j = next(k for k in range(i, len(lines)) if last in lines[k])
    else:
        j = next(k for k in range(i + 1, len(lines)) if stop_before in lines[k]) - 1
    body = ["" if line.strip().startswith("#") else line for line in lines[i:j + 1]]  # comment-only lines
    text = textwrap.dedent("\n".join(body))
    for a, b in edits:
        assert a in text, a
        text = text.replace(a, b)
    return compile(text, f"{TRAIN}@{COMMIT}:{i + 1}-{j + 1}", "exec"), f"{TRAIN}:{i + 1}-{j + 1}"


def _lora_compatible(unet):
    """Shim: diffusers 0.42's attention projections are nn.Linear; their processor needs ``LoRACompatibleLinear``
    (``.lora_layer`` + ``forward(x, scale)``). Same Parameters, so the weights are shared."""
    from diffusers.models.attention_processor import Attention
    from diffusers.models.lora import LoRACompatibleLinear

    def convert(lin):
        new = LoRACompatibleLinear(lin.in_features, lin.out_features, bias=lin.bias is not None)
        new.weight = lin.weight
        if lin.bias is not None:
            new.bias = lin.bias
        return new

    for m in unet.modules():
        if isinstance(m, Attention):
            m.to_q, m.to_k, m.to_v = convert(m.to_q), convert(m.to_k), convert(m.to_v)
            m.to_out[0] = convert(m.to_out[0])


def _kv_weights(unet):
    return {n: p.detach().double().clone() for n, p in unet.named_parameters()
            if n.endswith(("attn2.to_k.weight", "attn2.to_v.weight"))}


def compare(repo: str, concept: str = "ship", seed: int = 2024, repeats: int = 5) -> dict:
    import yaml
    import torch.nn.functional as F
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from diffusers.loaders import AttnProcsLayers
    from diffusers.models.attention_processor import Attention
    from diffusers.models.lora import LoRALinearLayer
    from diffusers.optimization import get_scheduler
    from PIL import Image
    from torch import nn
    from torch.utils.data import Dataset
    from torchvision import transforms

    import igmu_hf.diffusion as ig_diffusion
    from igmu_hf.families import family_of
    from igmu_hf.methods.fmn import concept_positions
    from igmu_hf.methods.mace import MACEConfig, MACEUnlearner, default_mapping, importance_weights
    from igmu_hf.tiny_pipelines import tiny_pipeline

    torch.set_num_threads(1)
    n_threads = torch.get_num_threads()
    conf = yaml.safe_load(paper_source(repo, COMMIT, CONFIG))["MACE"]
    args = Namespace(**conf)
    args.use_gsam_mask = False  # declared deviation: no Grounded-SAM masks
    mapping = args.mapping_concept[0]
    assert [concept, "object"] == list(args.multi_concept[0][0]) and mapping == "ground"

    # ---- their code, compiled from the snapshot ----
    u_ns = {"np": np, "F": F, "tqdm": _quiet_tqdm, "gc": gc, "Any": object}
    theirs = {}
    for n in ("find_matching_indices", "get_ca_layers", "prepare_k_v", "closed_form_refinement",
              "importance_sampling_fn", "AttnController", "prompt_augmentation"):  # later ones see earlier ones
        theirs[n] = paper_function(repo, COMMIT, UTILS, n, {**u_ns, **theirs})
    rnd = _Random(seed)
    MACEDataset = paper_function(repo, COMMIT, DATA, "MACEDataset", {
        "Dataset": Dataset, "prompt_augmentation": theirs["prompt_augmentation"], "transforms": transforms,
        "Image": Image, "random": rnd, "Path": __import__("pathlib").Path, "os": os})
    collate_fn = paper_function(repo, COMMIT, TRAIN, "collate_fn")
    AttnProcessor = paper_function(repo, COMMIT, PROC, "AttnProcessor", {"Attention": Attention})
    LoRAAttnProcessor = paper_function(repo, COMMIT, PROC, "LoRAAttnProcessor", {
        "Attention": Attention, "LoRALinearLayer": LoRALinearLayer, "nn": nn, "AttnProcessor": AttnProcessor})
    src = paper_source(repo, COMMIT, TRAIN)
    stage1, stage1_lines = _slice(src, "# stage 1: closed-form refinement", stop_before="# stage 2: multi-lora training")
    setup, setup_lines = _slice(src, "attn_controller = AttnController()", stop_before="if args.train_text_encoder:")
    isamp, isamp_lines = _slice(src, "list_of_candidates = [", "prob_dist = [x / prob_sum for x in prob_dist]")
    step, step_lines = _slice(src, "# Convert images to latent space", "attn_controller.zero_attn_probs()",
                              edits=[(".cuda()", "")])  # shim: cpu

    # ---- shared inputs ----
    base = tiny_pipeline("sd1")
    base.set_progress_bar_config(disable=True)
    family = family_of(base)
    tok = base.tokenizer
    sampled = rnd.r.sample(range(0, args.prompt_len), args.aug_length)  # what their dataset draws (seeded)
    templates = [p for p, _ in theirs["prompt_augmentation"]("{}", sampled_indices=sampled, concept_type="object")]
    rnd.r = _random.Random(seed)  # their dataset draws the same `sampled` again
    cfg_kw = dict(concepts=[concept], mapping_concepts=[mapping], prompt_templates=templates,
                  aug_length=args.aug_length, lamb=float(args.lamb), train_preserve_scale=args.train_preserve_scale,
                  fuse_preserve_scale=args.fuse_preserve_scale, rank=args.rank, learning_rate=args.learning_rate,
                  importance_sampling=args.importance_sampling, use_pooler=args.use_pooler, num_images=2,
                  adam_weight_decay=args.adam_weight_decay, max_grad_norm=float(args.max_grad_norm),
                  num_inference_steps=4, seed=seed)
    images = MACEUnlearner.build_prepared_data(base, MACEConfig(**cfg_kw, max_train_steps=1), Accelerator(), None,
                                               progress=False)
    tmp = tempfile.mkdtemp(prefix="mace_cmp_")
    for folder in (concept, f"{concept} mask"):
        os.makedirs(os.path.join(tmp, folder))
    for j, row in enumerate(images):
        row["image"].save(os.path.join(tmp, concept, f"{j:03d}.png"))
        Image.new("L", row["image"].size, 255).save(os.path.join(tmp, f"{concept} mask", f"{j:03d}.png"))
    dataset = MACEDataset(tokenizer=tok, size=images[0]["image"].size[0], center_crop=False,
                          use_pooler=args.use_pooler, multi_concept=args.multi_concept[0], mapping=args.mapping_concept,
                          augment=args.augment, batch_size=1, with_prior_preservation=False, preserve_info=None,
                          train_seperate=True, aug_length=args.aug_length, prompt_len=args.prompt_len,
                          input_data_path=tmp, use_gpt=False)
    their_prompts = [p for p, _ in dataset.instance_prompt[0]]
    assert their_prompts == [t.format(concept) for t in templates]
    w0 = _kv_weights(base.unet)

    # ---- 1. CFR ----
    def theirs_cfr(unet):
        ns = {"unet": unet, "train_dataset": dataset, "args": args, "text_encoder": base.text_encoder,
              "tokenizer": tok, "tqdm": _quiet_tqdm, "gc": gc, "torch": torch, **theirs}
        exec(stage1, ns)
        return unet

    def ours_cfr(pipe, skip_lora=False):
        unl = MACEUnlearner(MACEConfig(**cfg_kw, max_train_steps=1), images=images, accelerator=Accelerator(),
                            progress=False)
        if skip_lora:  # timing only: stage 2 skipped (zero ΔW); our fusion is then the identity
            unl._train_lora = lambda p, fam, k: {n: torch.zeros(w.shape, dtype=torch.float64) for n, w in w0.items()}
        unl.unlearn(pipe)
        return unl

    unet_t = theirs_cfr(copy.deepcopy(base.unet))
    w_t = _kv_weights(unet_t)
    unl0 = ours_cfr(copy.deepcopy(base))
    w_o = unl0.refined
    cfr_diff = rel_diff({k: w_o[k] - w0[k] for k in w0}, {k: w_t[k] - w0[k] for k in w0})
    copies_t = [copy.deepcopy(base.unet) for _ in range(repeats)]
    copies_o = [copy.deepcopy(base) for _ in range(repeats)]
    cfr_timing = interleaved_ratio(lambda: ours_cfr(copies_o.pop(), skip_lora=True),
                                   lambda: theirs_cfr(copies_t.pop()), repeats=repeats)

    # ---- 2. one LoRA step from the same refined UNet (theirs') ----
    pipe_o = copy.deepcopy(base)
    pipe_o.unet.load_state_dict(unet_t.state_dict())
    _lora_compatible(unet_t)
    torch.manual_seed(seed)  # their set_seed(args.seed) before the LoRA layers are drawn
    ns_t = {"unet": unet_t, "args": args, "i": 0, "AttnController": theirs["AttnController"],
            "LoRAAttnProcessor": LoRAAttnProcessor, "AttnProcsLayers": AttnProcsLayers,
            "optimizer_class": torch.optim.AdamW, "get_scheduler": get_scheduler, "torch": torch}
    exec(setup, ns_t)
    ns_is = {"noise_scheduler": DDPMScheduler.from_config(base.scheduler.config),
             "importance_sampling_fn": theirs["importance_sampling_fn"]}
    exec(isamp, ns_is)
    prob_theirs = torch.tensor(ns_is["prob_dist"], dtype=torch.float64)
    acc_t = Accelerator()
    unet_t, ns_t["optimizer"], ns_t["lr_scheduler"] = acc_t.prepare(unet_t, ns_t["optimizer"], ns_t["lr_scheduler"])
    procs = {k[:-len(".processor")]: v for k, v in unet_t.attn_processors.items() if k.endswith("attn2.processor")}
    their_params = {f"{n}.{kv}.{ud}": getattr(getattr(p, f"{kv}_lora"), ud).weight
                    for n, p in procs.items() for kv in ("to_k", "to_v") for ud in ("down", "up")}

    captured = {"grads_t": [], "grads_o": [], "loss_o": [], "draws": []}

    def clip_recorder(acc, params: dict, key):
        original = acc.clip_grad_norm_

        def clip(parameters, max_norm, *a, **k):
            captured[key].append({n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
                                  for n, p in params.items()})
            return original(parameters, max_norm, *a, **k)

        acc.clip_grad_norm_ = clip

    clip_recorder(acc_t, their_params, "grads_t")

    # our side: same LoRA initialisation (theirs' draws), draws recorded, one step per callback
    real_add_lora = ig_diffusion.add_lora

    def add_lora_same_init(unet, targets, rank, alpha, *a, **k):
        real_add_lora(unet, targets, rank, alpha, *a, **k)
        params = dict(unet.named_parameters())
        with torch.no_grad():
            for n, p in procs.items():
                for kv in ("to_k", "to_v"):
                    params[f"{n}.{kv}.lora_A.default.weight"].copy_(getattr(p, f"{kv}_lora").down.weight)
                    params[f"{n}.{kv}.lora_B.default.weight"].copy_(getattr(p, f"{kv}_lora").up.weight)

    fam_o = family_of(pipe_o)
    real_noisy, real_predict = fam_o.noisy, fam_o.predict

    def noisy(scheduler, x0, eps, t):
        captured["draws"].append({"x0": x0.clone(), "noise": eps.clone(), "t": t.clone()})
        return real_noisy(scheduler, x0, eps, t)

    def predict(model, x, t, cond):
        captured["draws"][-1]["cond"] = cond.states.detach().clone() if hasattr(cond, "states") else cond.clone()
        return real_predict(model, x, t, cond)

    go, done, errors = threading.Semaphore(0), threading.Semaphore(0), []

    def callback(step_):
        done.release()
        go.acquire()

    acc_o = Accelerator()
    real_backward = acc_o.backward
    acc_o.backward = lambda loss, **k: (captured["loss_o"].append(float(loss.detach())), real_backward(loss, **k))[1]
    unl = MACEUnlearner(MACEConfig(**cfg_kw, max_train_steps=1 + repeats), images=images, accelerator=acc_o,
                        progress=False, callback=callback)
    our_params_of = {}

    def run_ours():
        torch.set_num_threads(n_threads)
        try:
            unl._train_lora(pipe_o, fam_o, 0)
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)
            done.release()

    ig_diffusion.add_lora, fam_o.noisy, fam_o.predict = add_lora_same_init, noisy, predict
    try:
        orig_prepare = acc_o.prepare

        def prepare(*objs):
            out = orig_prepare(*objs)
            model = out[0]
            our_params_of.update({n: p for n, p in model.named_parameters() if p.requires_grad})
            clip_recorder(acc_o, {_common(n): p for n, p in our_params_of.items()}, "grads_o")
            return out

        acc_o.prepare = prepare
        worker = threading.Thread(target=run_ours, daemon=True)
        worker.start()
        if not done.acquire(timeout=300) or errors:
            raise RuntimeError(f"our step did not finish: {errors}")
        d = captured["draws"][0]
        prompts = [p for p, _ in MACEUnlearner.prompt_pairs(unl.config)[0]]
        conds = family.encode(base, prompts).states
        p_idx = int(torch.stack([(conds[j] - d["cond"][0]).abs().max() for j in range(len(prompts))]).argmin())

        # their step on the same draws
        rnd.forced = p_idx
        batch = collate_fn([dataset[0]])
        rnd.forced = None
        sf = base.vae.config.scaling_factor
        vae_shim = types.SimpleNamespace(
            encode=lambda x: types.SimpleNamespace(latent_dist=types.SimpleNamespace(sample=lambda: d["x0"] / sf)),
            config=types.SimpleNamespace(scaling_factor=sf))
        np_shim = _Proxy(np, random=types.SimpleNamespace(choice=lambda *a, **k: d["t"].numpy().copy()))
        torch_shim = _Proxy(torch, randn_like=lambda x, **k: d["noise"].clone())
        step_ns = {**ns_t, **ns_is, "unet": unet_t, "vae": vae_shim, "batch": batch, "weight_dtype": torch.float32,
                   "noise_scheduler": DDPMScheduler.from_config(base.scheduler.config),
                   "text_encoder": base.text_encoder, "accelerator": acc_t, "np": np_shim, "torch": torch_shim,
                   "F": F}
        state = copy.deepcopy({k: v.detach().clone() for k, v in their_params.items()})
        opt_state = copy.deepcopy(ns_t["optimizer"].state_dict())
        unet_t.train()
        exec(step, step_ns)
        loss_t, grads_t = step_ns["loss"].item(), captured["grads_t"][-1]
        # the same step with our concept-position mask (only the mask differs)
        pos_ours = concept_positions(tok, prompts[p_idx], concept, args.use_pooler, every_end_token=True)[None]
        with torch.no_grad():
            for k, v in their_params.items():
                v.copy_(state[k])
        ns_t["optimizer"].load_state_dict(opt_state)
        same_ns = {**step_ns, "batch": {**batch, "concept_positions": pos_ours}}
        exec(step, same_ns)
        loss_t_same, grads_t_same = same_ns["loss"].item(), captured["grads_t"][-1]
        loss_o, grads_o = captured["loss_o"][0], captured["grads_o"][0]

        # timing: one whole step each (theirs with its real VAE encode and text encoder per step, as it runs)
        timing_ns = {**step_ns, "vae": base.vae}

        def ours_step():
            go.release()
            if not done.acquire(timeout=300) or errors:
                raise RuntimeError(f"our step did not finish: {errors}")

        timing = interleaved_ratio(ours_step, lambda: exec(step, timing_ns), repeats=repeats)
        go.release()
        worker.join(timeout=300)
    finally:
        ig_diffusion.add_lora = real_add_lora
        for k in ("noisy", "predict"):
            fam_o.__dict__.pop(k, None)

    masks = {"theirs": int(batch["concept_positions"].sum()), "ours": int(pos_ours.sum())}
    real_concepts = {c: default_mapping(c) for c in ("ship", "bird", "automobile", "claude monet", "taylor swift",
                                                     "adam driver", "nudity", "sexual", "van gogh")}
    mini = {c: {"ours": default_mapping(c), "without_mini_line": _without_mini(c)} for c in ("circle", "sketch", "red")}
    return {
        "compared": "CFR (attn2 K/V ΔW, ship->'ground', λ=1e3) and one LoRA attention-loss step on tiny sd1 (same refined "
                    "UNet, LoRA init, latent, prompt, t, noise)",
        "loss_rel_diff": abs(loss_o - loss_t) / abs(loss_t),
        "grad_rel_diff": rel_diff(grads_o, grads_t),
        "loss_rel_diff_same_positions": abs(loss_o - loss_t_same) / abs(loss_t_same),
        "grad_rel_diff_same_positions": rel_diff(grads_o, grads_t_same),
        "cfr_weight_delta_rel_diff": cfr_diff,
        "loss_ours": loss_o, "loss_theirs": loss_t, "loss_theirs_with_our_mask": loss_t_same,
        "concept_positions_marked": masks,
        "draws": {"prompt": prompts[p_idx], "t": int(d["t"][0])},
        "importance_weights_rel_diff": rel_diff(importance_weights(len(prob_theirs)), prob_theirs),
        **timing,
        "cfr_time": {k: v for k, v in cfr_timing.items()},
        "mapping_ours_real_world": real_concepts,
        "mapping_mini_line": mini,
        "their_slices": [stage1_lines, setup_lines, isamp_lines, step_lines],
        "differences": DIFFERENCES,
    }


def _common(name: str) -> str:
    """Our peft parameter name -> their processor's naming (``<attn2>.to_k.down`` ...)."""
    return (name.replace(".lora_A.default.weight", ".down").replace(".lora_B.default.weight", ".up"))


def _without_mini(concept: str) -> str:
    from igmu_hf.taxonomy import categorize

    return "art" if categorize(concept).task == "Style" else "ground"


DIFFERENCES = [
    "fixed (was the whole loss/grad gap, 0.83/2.1): concept-position mask. Theirs (src/dataset.py:237-242) marks "
    "every position whose token is <|endoftext|> when use_pooler; SD1.x's CLIP tokenizer pads with that token, so "
    "the end-of-text and all padding positions enter the attention loss. Ours marked only the first end-of-text "
    "position; MACEConfig.every_end_token (default) now marks as theirs.",
    "declared: no Grounded-SAM mask (their configs set use_gsam_mask: true; cfr_utils.py:172-183 vs our whole-image "
    "loss).",
    "declared (partly): latents are VAE posterior means (ours, families.latents) vs theirs latent_dist.sample() "
    "(cfr_lora_training.py:486) — declared since (found undeclared) part: their pixels are normalised with ImageNet mean/std "
    "(src/dataset.py:173, transforms.Normalize([0.485,...],[0.229,...])) instead of SD's [-1,1]; ours use the "
    "pipeline's image_processor ([-1,1]). Their LoRA therefore trains on off-distribution latents.",
    "declared since (found undeclared) (config help only): mapping concept. Theirs takes it per concept from the config (ship->'ground', "
    "automobile->'sky' λ=1e2, bird->'street' λ=1e1, celebrities->'a person'/'a woman' with λ=0 and cache, explicit "
    "-> 'a person wearing clothes', art->'art'); ours (mace.py default_mapping) uses 'ground' for every non-style "
    "concept incl. celebrities ('taylor swift'->'ground') and 'sexual', and λ=1e3 for all (λ is declared).",
    "declared since (found undeclared): concept type. Theirs is explicit in the config ([name, 'object'|'style']); ours picks templates by "
    "taxonomy.is_style(c): artists outside CatIGMU's table (e.g. 'claude monet', their art config) get object "
    "templates and the 'ground' mapping.",
    "declared since (found undeclared) (docstring/help only): in the mini world default_mapping returns CatIGMU's replacement "
    "(mace.py: `if domain_of_concept(concept).name == \"mini\" and spec.replacement`), e.g. circle->'square', "
    "sketch->'realistic', red->'green' instead of 'ground'/'art'. It changes the CFR target (c_new) for mini "
    "concepts only; real-world concepts are unaffected. `deviations` mention only the mini grammar.",
    "declared: our 30 templates per type differ from theirs (object: 3 of their first 30 replaced, incl. their unused "
    "31st; style: 8 possessive templates replaced). Note: with prompt_len=30 theirs always uses exactly their first "
    "30 (random.sample(range(30),30), dataset.py:145), in random order — not a random 30 of 31.",
    "preserve term (not exercised, s_p=0 in the object config): theirs applies train_preserve_scale twice to the "
    "prior cache (cfr_lora_training.py:311 multiplies the cache, closed_form_refinement multiplies again, "
    "cfr_utils.py:196) -> s_p² (1e-8 in the art/celebrity configs); ours uses s_p once (mace.py uce_projection). "
    "Equal only for s_p in {0, 1}. Fusion applies fuse_preserve_scale once in both.",
    "LoRA initialisation: same distribution (down ~ N(0, 1/rank), up = 0: diffusers LoRALinearLayer vs peft "
    "'gaussian'); theirs also puts zero-initialised q/out and attn1 LoRAs in the forward (untrained, no effect).",
    "AttnController (cfr_utils.py:185) repeats the position mask with .repeat(head_num,1,1) (batch-major mismatch for "
    "batch>1; MACE trains on batch 1, so equal to our repeat_interleave).",
    "importance sampling: same distribution (np.random.choice over f(t) normalised vs torch.multinomial).",
    "lr scheduler 'constant' in theirs = our fixed lr.",
    "numerics (not behavioural): CFR in float64 with one shared d×d solve (mace.py uce_projection/uce_edit_layers) vs "
    "their per-layer float32 torch.inverse (cfr_utils.py:203): ΔW rel. diff ~2e-5.",
    "speed: their step re-encodes the image with the VAE and the prompt with the text encoder every step "
    "(cfr_lora_training.py:486,511); ours precomputes both (families.latents / encode once per concept). Their CFR "
    "deep-copies every projection and runs gc.collect per concept (cfr_utils.py:66-75).",
]
