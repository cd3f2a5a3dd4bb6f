"""AdvUnlearn beside ``train-scripts/AdvUnlearn.py`` (the whole ``AdvUnlearn`` function, one iteration, README's nudity
command settings: text_encoder_full, prefix_k word_embd attack, k=1, attack_init random, retain 'reg' w 0.3, η 1,
start guidance 3, 50 DDIM steps, lr 1e-5), run from the snapshot on the tiny sd1 pipeline.

(a) outer step: warm-up 0, one iteration whose inner attack has lr 1e-30 (so both return the embedding of the same random
    vocabulary token as the adversarial prefix); loss and text-encoder gradients of the outer ESD + retain step.
(b) inner attack: the same initial prefix and the same per-step draws, 30 Adam steps lr 1e-3; theirs never zeroes the
    prefix gradient and returns the prefix from before its last update.

Shims (all visible below): an ldm-style model (``apply_model`` around the diffusers UNet, ``get_learned_conditioning``
= the original CLIP's last hidden state, ldm's own ``make_beta_schedule`` for the DDPM buffers); their DDIMSampler,
``sample_model``, ``param_choices``, ``id2embedding``, ``CustomTextEncoder`` and the attack functions compiled from
the snapshot; edits: cpu for their sampler's hard-coded cuda buffers, latent 4x8x8 for 4x64x64, hidden 32 for 768,
transformers-5 CLIPTextModel (no ``.text_model`` level; the causal mask passed as ``attention_mask``); a torch proxy
whose randint/randn hand out our draws (the same t_enc, t, z_T, retain z_T, prefix token); stubs for wandb, saving,
the COCO retain csv (returns our drawn retain prompts) and the model loaders.
"""

import contextlib
import copy
import io
import types
from functools import partial

import numpy as np
import torch

from compare_paper_code import interleaved_ratio, paper_function, rel_diff

REPOSITORY, COMMIT = "OPTML-Group/AdvUnlearn", "9d23124"

CONCEPT = "church"  # one BPE token (see "multi_token_word" below for 'nudity')
TINY_LR = 1e-30  # (a): the config refuses lr 0; 1e-30 moves no float32 entry of the prefix (checked: adv_prefix_rel_diff_a)
RETAIN = ["a photo of a dog", "a red car", "a bowl of fruit"]


class _Draws:
    """A ``torch`` stand-in for their modules: ``randint`` / ``randn`` return queued tensors (ours' draws) when the
    queue's head has the requested shape; everything else is torch."""

    def __init__(self):
        self.ri, self.rn = [], []

    def __getattr__(self, name):
        return getattr(torch, name)

    def randint(self, *args, **kwargs):
        size = tuple(args[-1])
        assert self.ri and tuple(self.ri[0].shape) == size, (size, [tuple(x.shape) for x in self.ri[:1]])
        return self.ri.pop(0).clone()

    def randn(self, *shape, **kwargs):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
        if self.rn and tuple(self.rn[0].shape) == shape:
            return self.rn.pop(0).clone()
        return torch.randn(*shape)


class _LdmModel(torch.nn.Module):
    """The interface their code calls on an ldm LatentDiffusion model, around a diffusers UNet."""

    def __init__(self, unet, orig_text_encoder, tokenizer, make_beta_schedule):
        super().__init__()
        self.unet, self.te, self.tok = unet, orig_text_encoder, tokenizer
        betas = make_beta_schedule("linear", 1000, linear_start=0.00085, linear_end=0.012)  # ldm's v1 config
        ac = np.cumprod(1.0 - betas, axis=0)
        f = partial(torch.tensor, dtype=torch.float32)
        self.num_timesteps, self.parameterization = 1000, "eps"
        self.betas, self.alphas_cumprod, self.alphas_cumprod_prev = f(betas), f(ac), f(np.append(1.0, ac[:-1]))
        self.device = torch.device("cpu")

    def apply_model(self, x, t, c):
        return self.unet(x, t, encoder_hidden_states=c).sample

    @torch.no_grad()
    def get_learned_conditioning(self, prompts):  # ldm FrozenCLIPEmbedder
        ids = self.tok(prompts, truncation=True, max_length=self.tok.model_max_length, padding="max_length",
                       return_tensors="pt").input_ids
        return self.te(input_ids=ids).last_hidden_state


def _share(*fns):
    """Let separately compiled functions of one file see each other (paper_function gives each its own globals)."""
    for f in fns:
        f.__globals__.update({g.__name__: g for g in fns})
    return fns


def _theirs_factory(repo):
    from tqdm import tqdm
    from transformers.modeling_outputs import BaseModelOutputWithPooling
    import typing

    util = "train-scripts/utils/util.py"
    ldm_util = "ldm/modules/diffusionmodules/util.py"
    mk = {n: paper_function(repo, COMMIT, ldm_util, n, {"np": np}) for n in
          ("make_beta_schedule", "make_ddim_timesteps", "make_ddim_sampling_parameters", "noise_like",
           "extract_into_tensor")}
    DDIMSampler = paper_function(
        repo, COMMIT, "ldm/models/diffusion/ddim.py", "DDIMSampler", {"np": np, "tqdm": tqdm, "partial": partial, **mk},
        edit=lambda s: s.replace('torch.device("cuda")', 'torch.device("cpu")'))  # shim: cpu
    sample_model = paper_function(repo, COMMIT, util, "sample_model")
    id2embedding = paper_function(repo, COMMIT, util, "id2embedding", {"F": torch.nn.functional})
    param_choices = paper_function(repo, COMMIT, util, "param_choices", edit=lambda s: s.replace(
        "model.text_encoder.text_model.named_parameters()", "model.text_encoder.named_parameters()"))  # transformers 5
    te_ns = {"Optional": typing.Optional, "Tuple": typing.Tuple, "Union": typing.Union, "Any": typing.Any,
             "BaseModelOutputWithPooling": BaseModelOutputWithPooling}
    te_file = "train-scripts/utils/text_encoder.py"
    helpers = [paper_function(repo, COMMIT, te_file, n, te_ns) for n in ("_expand_mask", "_make_causal_mask")]
    CustomTextEncoder = paper_function(
        repo, COMMIT, te_file, "CustomTextEncoder", {**te_ns, **{f.__name__: f for f in helpers}},
        edit=lambda s: s.replace("text_encoder.text_model.", "text_encoder.")  # transformers 5: no text_model level
        .replace("attention_mask=attention_mask,\n            causal_attention_mask=causal_attention_mask,",
                 "attention_mask=causal_attention_mask,"))  # transformers 5's CLIPEncoder takes one additive mask
    draws = _Draws()
    wandb = types.SimpleNamespace(log=lambda d, step=None: wandb.logged.append(d), logged=[])
    attack_file = "train-scripts/utils/attack_util.py"
    attack_fns = _share(*[paper_function(repo, COMMIT, attack_file, n, {"torch": draws, "id2embedding": id2embedding,
                                                                        "sample_model": sample_model, "wandb": wandb},
                                         edit=lambda s: s.replace("4, 64, 64", "4, 8, 8").replace("768", "32"))
                          for n in ("init_adv", "soft_prompt_attack", "split_embd", "split_id", "construct_embd",
                                    "construct_id")])
    get_loss = paper_function(repo, COMMIT, "train-scripts/utils/get_loss.py", "get_train_loss_retain",
                              {"torch": draws, "sample_model": sample_model},
                              edit=lambda s: s.replace("4, 64, 64", "4, 8, 8"))
    return dict(DDIMSampler=DDIMSampler, sample_model=sample_model, id2embedding=id2embedding,
                param_choices=param_choices, CustomTextEncoder=CustomTextEncoder, draws=draws, wandb=wandb,
                attack=attack_fns[1], attack_fns=attack_fns, get_loss=get_loss, make_beta_schedule=mk["make_beta_schedule"])


def _run_theirs(repo, f, base, retain_words, attack_steps, attack_lr, ri, rn, record, pipe=None):
    """Their ``AdvUnlearn`` (one iteration, warm-up 0) on a copy of ``base``; returns (pipeline, losses)."""
    from tqdm import tqdm

    pipe = pipe or copy.deepcopy(base)
    te, tok = pipe.text_encoder, pipe.tokenizer
    orig = copy.deepcopy(base.text_encoder).requires_grad_(False)
    unet = pipe.unet.requires_grad_(False)
    model = _LdmModel(unet, orig, tok, f["make_beta_schedule"])
    sampler = f["DDIMSampler"](model)
    out = {}

    class Dataset:  # the COCO csv's PromptDataset: the prompts our draw took
        def check_unseen_prompt_count(self):
            return 10**6

        def reset(self):
            pass

        def get_random_prompts(self, n):
            assert n == len(retain_words)
            return list(retain_words)

    def attack(*args, **kwargs):
        res = f["attack"](*args, **kwargs)
        record["theirs_prefix"] = res[0][:, 1:2].detach().clone()
        return res

    loader = types.SimpleNamespace(from_pretrained=lambda *a, **k: te)
    ns = {"torch": torch, "tqdm": partial(tqdm, disable=True), "random": __import__("random"),
          "wandb": f["wandb"], "retain_prompt": lambda name: Dataset(),
          "CLIPTokenizer": types.SimpleNamespace(from_pretrained=lambda *a, **k: tok), "CLIPTextModel": loader,
          "AutoencoderKL": types.SimpleNamespace(from_pretrained=lambda *a, **k: torch.nn.Identity()),
          "CustomTextEncoder": f["CustomTextEncoder"], "get_models": lambda *a: (model, sampler, model, sampler),
          "param_choices": f["param_choices"], "id2embedding": f["id2embedding"], "soft_prompt_attack": attack,
          "get_train_loss_retain": f["get_loss"], "sample_model": f["sample_model"],
          "save_text_encoder": lambda *a: None, "save_history": lambda d, losses, w: out.setdefault("losses", losses)}
    fn = paper_function(repo, COMMIT, "train-scripts/AdvUnlearn.py", "AdvUnlearn", ns)
    f["draws"].ri[:], f["draws"].rn[:] = list(ri), list(rn)
    f["wandb"].logged.clear()
    with contextlib.redirect_stdout(io.StringIO()):
        fn(CONCEPT, "coco_object", len(retain_words), "reg", 1, 0.3, "pgd", "text_encoder_full", False, "all", 3.0,
           1.0, 1, 10**9, 1e-5, None, None, None, None, ["cpu"], image_size=64, ddim_steps=50, adv_prompt_num=1,
           attack_embd_type="word_embd", attack_type="prefix_k", attack_init="random", warmup_iter=0,
           attack_step=attack_steps, attack_lr=attack_lr, adv_prompt_update_step=1)
    assert not f["draws"].ri and not f["draws"].rn, "a queued draw was not used"
    record["theirs_attack_losses"] = [d["Attack_Loss"] for d in f["wandb"].logged if d.get("Attack_Loss")]
    return pipe, out["losses"]


def _run_ours(base, attack_steps, attack_lr, record, pipe=None):
    from igmu_hf.attacks import soft_prompt
    from igmu_hf.methods import advunlearn as adv

    pipe = pipe or copy.deepcopy(base)
    cfg = adv.AdvUnlearnConfig(concepts=[CONCEPT], retain_prompts=RETAIN, iterations=1, warmup_iterations=0,
                               attack_steps=attack_steps, attack_lr=attack_lr, prefix_length=1, attack_init="random",
                               retain_loss_weight=0.3, retain_batch_size=len(RETAIN), lr=1e-5, ddim_steps=50,
                               start_guidance=3.0, negative_guidance=1.0)
    real_attack, real_init = soft_prompt.soft_prefix_attack, soft_prompt.random_vocabulary_embeddings

    def init(*a, **k):
        e = real_init(*a, **k)
        record["init_token"] = int((a[1].get_input_embeddings().weight - e[0]).norm(dim=1).argmin())
        return e

    def attack(*a, **k):
        p, losses = real_attack(*a, **k)
        record["ours_prefix"], record["ours_attack_losses"] = p.clone(), losses
        return p, losses

    soft_prompt.soft_prefix_attack, soft_prompt.random_vocabulary_embeddings = attack, init
    try:
        un = adv.AdvUnlearnUnlearner(cfg, progress=False)
        un.unlearn(pipe)
    finally:
        soft_prompt.soft_prefix_attack, soft_prompt.random_vocabulary_embeddings = real_attack, real_init
    return pipe, un.stats["first_loss"], cfg


def _our_draws(base, cfg, attack_steps, k=1):
    """Our iteration-0 draws, as queues for their randint / randn (their call order)."""
    from igmu_hf.methods.advunlearn import advunlearn_draws
    from igmu_hf.methods.esd import esd_timesteps
    from igmu_hf.text import whole_word_token_ids

    shape = (4, 8, 8)
    d = advunlearn_draws(cfg, 0, shape, 1000)
    ag = d["attack_generator"]
    ids = whole_word_token_ids(base.tokenizer)
    tok_id = ids[torch.randint(len(ids), (k,), generator=ag)]
    ri, rn = [tok_id.view(1, k)], []  # their init_adv's randint(0, len(tokenizer), (1, k))
    for _ in range(attack_steps):  # our objective's order: t_enc, t, z_T
        t_enc = int(torch.randint(cfg.ddim_steps, (1,), generator=ag))
        t = esd_timesteps(t_enc, cfg.ddim_steps, 1000, ag)
        ri += [torch.tensor([t_enc]), torch.tensor([t])]
        rn.append(torch.randn((1, *shape), generator=ag))
    ri += [torch.tensor([d["t_enc"]]), torch.tensor([d["t"]])]  # get_train_loss_retain
    rn += [d["start"], d["retain_start"]]
    return d, ri, rn


def _hook_grads(pipe, store):
    for n, p in pipe.text_encoder.named_parameters():
        if n.startswith(("encoder.", "final_layer_norm.")):
            p.register_post_accumulate_grad_hook(lambda p, n=n: store.__setitem__(n, p.grad.detach().clone()))


def compare(repo: str) -> dict:
    from igmu_hf.attacks.soft_prompt import prefixed_states
    from igmu_hf.tiny_pipelines import tiny_pipeline

    torch.manual_seed(0)
    base = tiny_pipeline("sd1")
    f = _theirs_factory(repo)

    # sanity: their CustomTextEncoder (shimmed for transformers 5) is the plain encoder on a plain prompt
    ids = base.tokenizer([CONCEPT], padding="max_length", max_length=77, return_tensors="pt").input_ids
    cte = f["CustomTextEncoder"](copy.deepcopy(base.text_encoder))
    emb = f["id2embedding"](base.tokenizer, cte.get_all_embedding().unsqueeze(0), ids, "cpu")
    with torch.no_grad():
        custom_vs_plain = rel_diff(cte(input_ids=ids, inputs_embeds=emb)[0], base.text_encoder(ids)[0])

    # (a) the outer step on the same adversarial prefix (attack lr 1e-30: the prefix stays the drawn token's embedding)
    rec, grads = {}, {"ours": {}, "theirs": {}}
    results = {}

    def ours_a():
        results["ours"] = _run_ours(base, 1, TINY_LR, rec)

    _, _, cfg = _run_ours(base, 1, TINY_LR, rec)
    d, ri, rn = _our_draws(base, cfg, 1)
    assert int(ri[0]) == rec["init_token"]

    def theirs_a():
        results["theirs"] = _run_theirs(repo, f, base, d["retain"], 1, TINY_LR, ri, rn, rec)

    timing = interleaved_ratio(ours_a, theirs_a, repeats=5)
    # gradients of one more run each, captured as they accumulate (the optimiser step follows)
    p_o, p_t = copy.deepcopy(base), copy.deepcopy(base)
    _hook_grads(p_o, grads["ours"])
    _hook_grads(p_t, grads["theirs"])
    _, loss_ours, _ = _run_ours(base, 1, TINY_LR, rec, pipe=p_o)
    _, losses_t = _run_theirs(repo, f, base, d["retain"], 1, TINY_LR, ri, rn, rec, pipe=p_t)
    loss_theirs = losses_t[0]
    prefix_a_diff = rel_diff(rec["ours_prefix"].view(1, 1, -1), rec["theirs_prefix"])

    # (b) the inner attack, 30 steps lr 1e-3 from the same token, the same per-step draws
    S = 30
    rec_b = {}
    _, loss_b_ours, cfg_b = _run_ours(base, S, 1e-3, rec_b)
    _, ri_b, rn_b = _our_draws(base, cfg_b, S)
    _, losses_b_t = _run_theirs(repo, f, base, d["retain"], S, 1e-3, ri_b, rn_b, rec_b)
    p0 = base.text_encoder.get_input_embeddings().weight[rec_b["init_token"]].detach()
    po, pt = rec_b["ours_prefix"].view(-1), rec_b["theirs_prefix"].view(-1)
    la, lb = rec_b["ours_attack_losses"], rec_b["theirs_attack_losses"]

    # the paper code's split_id keeps len(word.split()) tokens of the concept: 'nudity' (2 BPE tokens) loses 'ity'
    fns = {fn.__name__: fn for fn in f["attack_fns"]}
    tok, te = base.tokenizer, base.text_encoder
    word = "nudity"
    ids_w = tok(word, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    sot, mid, rep, eot = fns["split_id"](ids_w, 1, len(word.split()))
    adv_ids = fns["construct_id"](1, rep, "prefix_k", sot, eot, mid)
    cte = f["CustomTextEncoder"](copy.deepcopy(te))
    all_e = cte.get_all_embedding().unsqueeze(0)
    e = f["id2embedding"](tok, all_e, ids_w, "cpu")
    s_, m_, _, e_ = fns["split_embd"](e, 1, len(word.split()))
    with torch.no_grad():
        theirs_states = cte(input_ids=adv_ids, inputs_embeds=fns["construct_embd"](1, p0.view(1, 1, -1), "prefix_k",
                                                                                   s_, m_, e_))[0]
        ours_states = prefixed_states(tok, te, p0.view(1, -1), word)

    diffs = [
        "fixed (was the loss/grad miss, 0.17/0.16): the z_t trajectory. Their sample_model passes t_start=-1 "
        "(util.py:501,519) and ddim.py:155 drops the first DDIM timestep, so x_T enters one step lower and "
        "till_T=t_enc runs S-t_enc steps (S-1 for t_enc<=1); esd.paper_trajectory, which ours now uses, does the same.",
        "declared: inner attack never zeroes its gradient (attack_util.py:175-212: loss.backward(); attack_opt.step(),"
        " no zero_grad) so step i uses sum of grads 0..i; ours zeroes every step (attacks/soft_prompt.py:44).",
        "declared: theirs returns the prefix built before the last attack_opt.step (attack_util.py:193 then :207, "
        "returned at :220); ours returns it after the last update (soft_prompt.py:53). Our soft_prefix_attack has no "
        "option to reproduce either (see attack_* keys for how far apart).",
        "declared: random init draws any token id torch.randint(0, len(tokenizer)) (attack_util.py:14); ours whole-word "
        "tokens only (soft_prompt.py:20).",
        "declared since (found undeclared): their adversarial prompt keeps only len(word.split()) concept tokens (attack_util.py:144,157,161 "
        "split_id/split_embd with orig_prompt_len = whitespace words), so a concept with more BPE tokens than words "
        "is truncated: 'nudity' = [nud, ity] trains on '<adv> nud' (k tokens dropped from the end of the concept "
        "instead of k pad tokens); ours keeps every token (soft_prompt.py:25 prefixed_states). See "
        "multi_token_states_rel_diff. Paper-faithful fix would be an option in prefixed_states to drop the last k "
        "concept tokens when tokens > words; arguably a bug in theirs.",
        "declared since (found undeclared) (minor): their retain prompts are drawn without replacement across iterations "
        "(PromptDataset.get_random_prompts + reset when fewer than retain_batch unseen, AdvUnlearn.py:77,124); ours a "
        "fresh randperm per iteration (advunlearn.py advunlearn_draws), so the same prompt can recur in consecutive "
        "iterations.",
        "declared since (found undeclared) (minor): the per-step concept word is random.sample(words,1) every adv_prompt_update_step "
        "(AdvUnlearn.py:80, a Python RNG); ours torch.randint from the (seed, iteration) generator — same "
        "distribution, different stream.",
        "declared: retain z_r uses the outer t_enc (get_loss.py:323) as ours (advunlearn.py retain trajectory with "
        "d['t_enc']).",
        "equal: outer loss = MSE(e_n, e_0 − η(e_p − e_0)) + w·MSE(retain_e_n, retain_e_p) (get_loss.py:352-360) = "
        "advunlearn.py esd_target + retain term; trained set encoder.* + final_layer_norm.* (util.py:41-63) = "
        "text_encoder_full_parameters.",
        "perf (ours, fixed): the open-vocabulary scan of check_concepts (~0.15 s a call) is now remembered per "
        "tokenizer.",
        "perf (theirs): the attack computes an unused e_0 UNet pass per step (attack_util.py:187); token embeddings "
        "are built by a one-hot (77×49408) matmul (util.py:475-480) instead of a lookup.",
    ]
    return {
        "compared": f"(a) one AdvUnlearn outer step (ESD + 0.3·retain, text_encoder_full) on tiny sd1, concept "
                    f"'{CONCEPT}', the same adversarial prefix (drawn token), t_enc, t, z_T, retain prompts and z_r; "
                    f"(b) the 30-step inner soft-prompt attack from the same prefix and draws",
        "loss_rel_diff": abs(loss_ours - loss_theirs) / abs(loss_theirs),
        "grad_rel_diff": rel_diff(grads["ours"], grads["theirs"]),
        "loss_ours": loss_ours, "loss_theirs": loss_theirs,
        "grad_tensors": len(grads["theirs"]), "same_trained_set": set(grads["ours"]) == set(grads["theirs"]),
        "adv_prefix_rel_diff_a": prefix_a_diff,
        "custom_text_encoder_vs_plain_rel_diff": custom_vs_plain,
        **timing,
        "attack_steps": S,
        "attack_first_loss_rel_diff": abs(la[0] - lb[0]) / abs(lb[0]),
        "attack_losses_ours_first_last": [la[0], la[-1]], "attack_losses_theirs_first_last": [lb[0], lb[-1]],
        "attack_prefix_rel_diff": float((po - pt).norm() / pt.norm()),
        "attack_prefix_rel_diff_of_displacement": float((po - pt).norm() / (pt - p0).norm()),
        "attack_displacement_norm_ours_theirs": [float((po - p0).norm()), float((pt - p0).norm())],
        "outer_loss_after_attack_ours_theirs": [loss_b_ours, losses_b_t[0]],
        "multi_token_word": word,
        "multi_token_states_rel_diff": rel_diff(ours_states, theirs_states),
        "differences": diffs,
    }
