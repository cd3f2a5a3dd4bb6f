"""ConceptPrune beside the authors' code (ruchikachavhan/concept-prune 72927d9): ``wanda/wanda.py`` (receivers,
activation norms, WANDA scores, per-step skilled masks written as pickles), ``neuron_receivers/wanda_receiver.py`` +
``base_receiver.py`` (GEGLU hooks, seeded generations), ``utils/base_utils.py`` (Config, column norms),
``utils/prompts.py`` (their prompt lists, read from their ``datasets/*.txt``) and ``wanda/save_union_over_time.py``
(union over the first τ = 10 steps, select_ratio 0.0, masks applied), all executed from the snapshot (their ``main``
bodies as slices) in a temporary working directory holding their config and prompt files.

Target 'Van Gogh' (their art prompts: ``a photo of a {thing}`` / ``a {thing} in the style of Van Gogh`` over
``datasets/things.txt``), their ``dbg`` mode (the first 3 pairs, their own loop's cut), 50 inference steps,
guidance 7.5, seed 0. Ours: ``ConceptPruneUnlearner.unlearn`` given the same 3 prompt pairs, the same skill_ratio,
τ = 10, 50 steps, 7.5, seed 0; ``activation_norms`` is wrapped (recording only) to compare A_t.

skill_ratio is 0.1 for both (their 0.01 keeps int(0.01·64) = 0 weights per row on the tiny UNet's 64/128-wide FFN
inputs: nothing would be pruned on either side).

Shims: cpu float32 tiny pipeline instead of their fp16 SD1.5 (so their ``.to(torch.float16)`` of the pruned weight
becomes the module's own dtype); ``args.n_layers`` = the tiny UNet's 4 FFNs (their config: SD1.x's 16);
``args.timesteps`` = the tiny DDIM's 50 UNet calls for wanda.py (their 51 = SD1.5's PNDM calls), 10 for the union
(their scripts); ``get_sd_model`` replaced by its 'unet' return values (GEGLU, n_layers); ``print``/``tqdm`` silenced.
"""

from __future__ import annotations

import ast
import copy
import os
import pickle
import tempfile
import textwrap
import types

import numpy as np
import torch

from compare_paper_code import interleaved_ratio, paper_function, paper_source, rel_diff

REPOSITORY, COMMIT = "ruchikachavhan/concept-prune", "72927d9"
WANDA, UNION = "wanda/wanda.py", "wanda/save_union_over_time.py"


def _quiet(*a, **k):
    return None


def _slice(src: str, path: str, first: str, last: str, edits=()):
    lines = src.splitlines()
    i = next(k for k, line in enumerate(lines) if first in line)
    j = next(k for k in range(i, len(lines)) if last in lines[k])
    body = ["" if line.strip().startswith("#") else line for line in lines[i:j + 1]]  # comment-only lines
    text = textwrap.dedent("\n".join(body))
    for a, b in edits:
        assert a in text, a
        text = text.replace(a, b)
    return compile(text, f"{path}@{COMMIT}:{i + 1}-{j + 1}", "exec"), f"{path}:{i + 1}-{j + 1}"


def _module_assign(repo, path, name, namespace):
    """Exec one top-level assignment ``name = ...`` of their file (a module-level table)."""
    tree = ast.parse(paper_source(repo, COMMIT, path))
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == name for t in n.targets))
    exec(compile(ast.Module([node], type_ignores=[]), f"{path}@{COMMIT}", "exec"), namespace)
    return namespace[name]


def compare(repo: str, target: str = "Van Gogh", skill_ratio: float = 0.1, repeats: int = 3) -> dict:
    import scipy.sparse
    import yaml
    from diffusers.models.activations import GEGLU, GELU
    from diffusers.pipelines.stable_diffusion import safety_checker
    from transformers.models.clip.modeling_clip import CLIPMLP

    import igmu_hf.methods.conceptprune as ours_mod
    from igmu_hf.methods.conceptprune import (HUMANS, SCENES, THINGS, ConceptPruneConfig, ConceptPruneUnlearner,
                                              default_prompt_pairs, ffn_output_layers)
    from igmu_hf.tiny_pipelines import tiny_pipeline

    torch.set_num_threads(1)
    cwd = os.getcwd()
    work = tempfile.mkdtemp(prefix="conceptprune_cmp_")
    os.makedirs(os.path.join(work, "datasets"))
    os.makedirs(os.path.join(work, "configs"))
    files = {}
    for f in ("things", "humans", "common_scenes"):
        text = paper_source(repo, COMMIT, f"datasets/{f}.txt")
        files[f] = [x.strip() for x in text.splitlines() if x.strip()]
        open(os.path.join(work, "datasets", f"{f}.txt"), "w").write(text)
    open(os.path.join(work, "configs", "wanda_config.yaml"), "w").write(
        paper_source(repo, COMMIT, "configs/wanda_config.yaml"))

    # ---- their code ----
    bu = {"np": np, "torch": torch, "os": os, "yaml": yaml, "json": __import__("json"), "GEGLU": GEGLU}
    bu["make_dirs"] = paper_function(repo, COMMIT, "utils/base_utils.py", "make_dirs", bu)
    _module_assign(repo, "utils/base_utils.py", "target_types_dict", bu)
    for n in ("Config", "ColumnNormCalculator", "TimeLayerColumnNorm"):
        bu[n] = paper_function(repo, COMMIT, "utils/base_utils.py", n, bu)
    BaseNeuronReceiver = paper_function(repo, COMMIT, "neuron_receivers/base_receiver.py", "BaseNeuronReceiver", {
        "np": np, "GEGLU": GEGLU, "GELU": GELU, "safety_checker": safety_checker, "CLIPMLP": CLIPMLP})
    Wanda = paper_function(repo, COMMIT, "neuron_receivers/wanda_receiver.py", "Wanda", {
        "np": np, "GEGLU": GEGLU, "GELU": GELU, "BaseNeuronReceiver": BaseNeuronReceiver,
        "TimeLayerColumnNorm": bu["TimeLayerColumnNorm"], "ColumnNormCalculator": bu["ColumnNormCalculator"]})
    prompts_ns = {"__name__": "utils.prompts"}
    os.chdir(work)
    try:  # their utils/prompts.py as a module (it reads datasets/*.txt from the working directory)
        exec(compile(paper_source(repo, COMMIT, "utils/prompts.py"), f"utils/prompts.py@{COMMIT}", "exec"),
             prompts_ns)
        args = bu["Config"]("configs/wanda_config.yaml")
        args.target, args.skill_ratio, args.dbg = target, skill_ratio, True
        args.configure()  # their directories, under the temporary working directory
        base_prompts, target_prompts = prompts_ns["get_prompts"](args)
    finally:
        os.chdir(cwd)

    for k in ("res_path", "img_save_path", "skilled_neuron_path"):
        setattr(args, k, os.path.join(work, getattr(args, k)))

    wsrc, usrc = paper_source(repo, COMMIT, WANDA), paper_source(repo, COMMIT, UNION)
    s_weights, s_weights_lines = _slice(wsrc, WANDA, "abs_weights = {}", "layer_names.sort()")
    s_wanda, s_wanda_lines = _slice(wsrc, WANDA, "neuron_receiver_base = Wanda(", "print(\"Saved norms in: \"")
    s_union, s_union_lines = _slice(usrc, UNION, "weights_shape = {}", "module.weight.data = weight",
                                    edits=[("weight.to(torch.float16)", "weight.to(module.weight.dtype)")])

    base = tiny_pipeline("sd1")
    base.set_progress_bar_config(disable=True)
    n_layers = len(ffn_output_layers(base.unet))
    sched = type(base.scheduler).from_config(base.scheduler.config)
    sched.set_timesteps(50)
    unet_calls = len(sched.timesteps)
    dbg_pairs = 3  # their loop: `if iter >= 3 and args.dbg: break`
    w0 = {n: m.weight.detach().double().clone() for n, m in ffn_output_layers(base.unet).items()}

    def theirs(model):
        for f in ("base_norms.pt", "target_norms.pt"):  # their cache: recompute every time
            if os.path.exists(os.path.join(args.res_path, f)):
                os.remove(os.path.join(args.res_path, f))
        args.n_layers, args.timesteps, args.select_ratio = n_layers, unet_calls, 0.0
        ns = {"args": args, "model": model, "num_layers": n_layers, "base_prompts": base_prompts,
              "target_prompts": target_prompts, "Wanda": Wanda, "torch": torch, "os": os, "np": np, "scipy": scipy,
              "pickle": pickle, "tqdm": types.SimpleNamespace(tqdm=lambda x, **k: x), "print": _quiet,
              "CLIPMLP": CLIPMLP}
        args.replace_fn = GEGLU  # get_sd_model's value for hook_module 'unet'
        exec(s_weights, ns)
        exec(s_wanda, ns)
        args.timesteps = 10  # save_union_over_time.py --timesteps 10 --select_ratio 0.0 (scripts/wanda.sh)
        exec(s_union, ns)
        return ns

    cfg = ConceptPruneConfig(concepts=[target], base_prompts=base_prompts[:dbg_pairs],
                             target_prompts=target_prompts[:dbg_pairs], skill_ratio=skill_ratio, timesteps=10,
                             num_inference_steps=50, guidance_scale=7.5, seed=0)
    recorded = []
    real_norms = ours_mod.activation_norms

    def recording_norms(*a, **k):
        out = real_norms(*a, **k)
        recorded.append(out)
        return out

    def ours(pipe):
        ConceptPruneUnlearner(cfg).unlearn(pipe)
        return pipe

    pipe_t, pipe_o = copy.deepcopy(base), copy.deepcopy(base)
    ns = theirs(pipe_t)
    ours_mod.activation_norms = recording_norms
    try:
        ours(pipe_o)
    finally:
        ours_mod.activation_norms = real_norms
    layer_names = ns["layer_names"]
    a_t = {"base": ns["act_norms_base"], "target": ns["act_norms_target"]}
    norms_diff = rel_diff(
        [recorded[i][n][t] for i in (0, 1) for t in range(10) for n in layer_names],
        [a_t[k][t][l] for k in ("base", "target") for t in range(10) for l in range(n_layers)])
    w_t = {n: m.weight.detach().double() for n, m in ffn_output_layers(pipe_t.unet).items()}
    w_o = {n: m.weight.detach().double() for n, m in ffn_output_layers(pipe_o.unet).items()}
    mask_t = {n: torch.as_tensor(ns["masks"][n]).bool() for n in layer_names}
    mask_o = {n: (w_o[n] != w0[n]) for n in layer_names}
    # each step's skilled mask (their pickles) vs our rule on their own norms: isolates the scoring
    from igmu_hf.methods.conceptprune import skilled_mask
    step_masks_differ = 0
    for l, n in enumerate(layer_names):
        for t in range(10):
            with open(os.path.join(args.skilled_neuron_path, f"timestep_{t}_layer_{l}.pkl"), "rb") as f:
                theirs_t = torch.as_tensor(pickle.load(f).toarray()).bool()
            ours_t = skilled_mask(w0[n], a_t["base"][t][l][None], a_t["target"][t][l][None], skill_ratio)
            step_masks_differ += int((theirs_t != ours_t).sum())

    copies_t = [copy.deepcopy(base) for _ in range(repeats)]
    copies_o = [copy.deepcopy(base) for _ in range(repeats)]
    timing = interleaved_ratio(lambda: ours(copies_o.pop()), lambda: theirs(copies_t.pop()), repeats=repeats)

    ours_pairs = {"Van Gogh (style)": default_prompt_pairs("van gogh"), "parachute": default_prompt_pairs("parachute"),
                  "naked": default_prompt_pairs("nudity")}
    return {
        "compared": f"the prune of every ff.net.2 weight (tiny sd1, '{target}', their first {dbg_pairs} art prompt "
                    f"pairs, skill_ratio {skill_ratio} both, τ=10, 50 steps, cfg 7.5, seed 0)",
        "loss_rel_diff": None,
        "grad_rel_diff": rel_diff({n: w_o[n] - w0[n] for n in layer_names}, {n: w_t[n] - w0[n] for n in layer_names}),
        "activation_norms_rel_diff": norms_diff,
        "mask_entries_differ": int(sum(int((mask_t[n] != mask_o[n]).sum()) for n in layer_names)),
        "mask_entries_pruned": {"ours": int(sum(int(m.sum()) for m in mask_o.values())),
                                "theirs": int(sum(int(m.sum()) for m in mask_t.values()))},
        "per_step_masks_differ_our_rule_on_their_norms": step_masks_differ,
        "layers": layer_names,
        "prompts": {"base": base_prompts[:dbg_pairs], "target": target_prompts[:dbg_pairs]},
        **timing,
        "authors_prompt_files_at_commit": {f"datasets/{k}.txt": len(v) for k, v in files.items()},
        "their_lists_vs_ours": {
            "things": {"theirs": files["things"], "ours": THINGS,
                       "shared": sorted(set(files["things"]) & set(THINGS))},
            "humans": {"theirs": files["humans"], "ours": HUMANS,
                       "shared": sorted(set(files["humans"]) & set(HUMANS))},
            "common_scenes": {"theirs": files["common_scenes"], "ours": SCENES,
                              "shared": sorted(set(files["common_scenes"]) & set(SCENES))}},
        "our_default_pairs_first": {k: (v[0][0], v[1][0], len(v[0])) for k, v in ours_pairs.items()},
        "their_slices": [s_weights_lines, s_wanda_lines, s_union_lines],
        "differences": DIFFERENCES,
    }


DIFFERENCES = [
    "declared since (found undeclared) (the declaration is false): our deviation 'the authors' things/humans/scenes files are not shipped' — "
    "they are, at 72927d9 (added in f9e2983): datasets/things.txt (20), datasets/humans.txt (18), datasets/common_scenes.txt (12), "
    "read by utils/prompts.py:6-19. Our THINGS/HUMANS/SCENES (methods/conceptprune.py:30-33) are other lists (only "
    "partly overlapping, see their_lists_vs_ours), so our default prompt pairs differ from theirs.",
    "declared since (found undeclared): object prompt pairs. Theirs (utils/prompts.py:161-172) uses 'a {scene}' / 'a {target} in a {scene}' "
    "over common_scenes for the 8 Imagenette objects only, 'a {scene}' / 'a church {on a road...}' (scenes_church) "
    "for church and the places_truck list for garbage truck; ours (default_prompt_pairs) applies one template with "
    "our SCENES to every non-style concept.",
    "declared since (found undeclared): precision. Their pipeline is fp16 (wanda.py via utils/base_utils.py:42 torch_dtype=float16; "
    "save_union_over_time.py:43,117 prunes and saves fp16); ours scores in float64 from the pipeline's dtype "
    "(float32 here). Not behavioural on this comparison (shimmed); on real SD the fp16 activations/scores can flip "
    "near-tied top-k entries.",
    "declared: only the first τ steps are run (conceptprune.py activation_norms interrupts the pipeline); theirs "
    "generates all 50 steps and decodes/saves images (wanda.py:130-139, base_receiver.py:92).",
    "declared: layers matched by name (ours) vs by call order against the sorted names (wanda.py:65, "
    "wanda_receiver.py:23-29); identical on SD1.x and on the tiny UNet (down < mid < up).",
    "equal: A_t = column norms of the row-normalised FFN-output inputs over all tokens of both CFG halves "
    "(wanda_receiver.py:41-50 recomputes GEGLU; ours pre-hooks ff.net.2, dropout is identity at eval), summed over "
    "prompts; S = |W|·A_t; per-row top-k of the target score (k = int(ratio·in_features)) AND target > base; union "
    "over steps 0..τ-1 with select_ratio 0 (save_union_over_time.py:104 '> 0'); zeroed.",
    "seeds: theirs torch.manual_seed(seed) + global RNG per generation (base_receiver.py:90); ours a "
    "torch.Generator(seed) per generation: identical latents on CPU.",
    "theirs: one concept per run, several combined by wanda/multi_concept_union.py; ours refuses >1 concept "
    "(error message, not in `deviations`).",
    "their wanda.py scores args.timesteps = 51 steps (config) — correct for SD1.5's PNDM (51 UNet calls for 50 "
    "steps); with a 50-call scheduler the 51st step has empty norms and wanda.py crashes after writing steps 0-49.",
]
