"""The prompt families that generate DataIGM's SD-GEN part: Table 10 of seed 000 (shipped as data in
``prompt_families.json``) for the real recipe, and the same construction over the mini world's concepts.

A family gives *target* prompts (they ask for the content to forget) and *pair* prompts, made from the target
prompts by CatIGMU's intervention (seed 000 §5.2): -1 NULL (remove the target's words) for styles and statuses,
-2 Replace (put a replacement candidate in the target's place) for objects. The interventions are
:meth:`igmu_hf.taxonomy.TaskSpec.do1` / ``do2``; nothing here rewrites prompts by itself.
"""

import json
from functools import lru_cache
from itertools import product
from pathlib import Path

from ..taxonomy import categorize

FAMILIES_FILE = Path(__file__).with_name("prompt_families.json")

# The mini world's analogues of the paper's four tasks (MINIWORLD.md): the default mini DataIGM configs.
MINI_ANALOGUES: dict[str, str] = {"church": "circle", "parachute": "star", "vangogh": "sketch", "nudity": "striped"}
# Mini-world (target, anchor) texts for the CLIP-accuracy judge, in the mini CLIP's vocabulary ("without" is not in
# it, so the style/status pairs name the default value instead, as the paper's nudity pair names "dressed").
_MINI_CLIP_PAIR = {"shape": ("a {t}", "a {r}"), "style": ("a {t} image", "a realistic image"),
                   "texture": ("a {t} object", "a solid object"), "colour": ("a {t} object", "a {r} object"),
                   "background": ("a {t} background", "a plain background")}


@lru_cache(maxsize=1)
def table10() -> dict[str, dict]:
    """Table 10 as shipped data: config name -> family (the paper's fields plus igmu_hf's templates)."""
    data = json.loads(FAMILIES_FILE.read_text())
    return {f["config"]: f for f in data["families"]}


def intervention_of(target: str) -> str:
    """``"-2"`` (Replace) for a CatIGMU object/entity target, ``"-1"`` (NULL) otherwise, as Table 10 pairs them."""
    spec = categorize(target)
    return "-2" if (spec.scope, spec.perception) == ("Local", "Concrete") else "-1"


def pair_prompt(target: str, prompt: str, intervention: str, candidates: list[str], index: int) -> str:
    """The pair of one target prompt: -1 removes the target's words; -2 puts the ``index``-th replacement candidate
    (cycling over those that are not the target) in their place."""
    spec = categorize(target)
    if intervention == "-1":
        return spec.do1(prompt)
    if intervention != "-2":
        raise ValueError(f"`intervention` must be '-1' (NULL) or '-2' (Replace), got {intervention!r}.")
    others = [c for c in candidates if c.lower() not in spec.target_words and c.lower() != spec.target]
    if not others:
        raise ValueError(f"The -2 intervention of {target!r} needs replacement candidates other than the target.")
    return spec.do2(prompt, others[index % len(others)])


def _expand_real(family: dict) -> list[str]:
    out = []
    for template in family["templates"]:
        if "subjects" in family:
            out += [template.format(subject=s) for kind in family["included_types"] for s in family["subjects"][kind]]
        elif "activities" in family:
            out += [template.format(word=w, type=t, activity=a) for a, t, w in
                    product(family["activities"], family["included_types"], family["target_words"])]
        else:
            word = family["target_words"][0]
            out += [template.format(word=word, Word=word.capitalize(), context=c) for c in family["contexts"]]
    return [p[:1].upper() + p[1:] for p in out]


def mini_family(task: str) -> dict:
    """The family of a mini-world task (any of the 19 MultClf tasks), built like Table 10's rows."""
    from ..mini.prompts import concept_prompts, factor_values, task_prompts

    info = task_prompts(task, 1)  # refuses a word that is not a mini concept, naming the concepts
    factor, value = info["factor"], info["target"]
    others = [v for v in factor_values(factor) if v != value]
    prompts = list(dict.fromkeys(concept_prompts(factor, value, 64)))
    t, a = _MINI_CLIP_PAIR[factor]
    return {"config": value, "task": value, "target": value, "target_words": [value],
            "included_types": [], "replacement_candidates": others if intervention_of(value) == "-2" else [],
            "intervention": intervention_of(value), "clip_pair": [t.format(t=value, r=others[0]),
                                                                   a.format(t=value, r=others[0])],
            "factor": factor, "target_prompts": prompts}


def family(config: str, world: str = "real") -> dict:
    """The family of a DataIGM config in the ``"real"`` recipe (Table 10) or the ``"mini"`` one."""
    if world == "mini":
        return mini_family(config)
    families = table10()
    if config not in families:
        raise ValueError(f"DataIGM has no config {config!r}; the real recipe's configs: {', '.join(families)} (for "
                         f"the mini world use its task names, e.g. {', '.join(MINI_ANALOGUES.values())}).")
    return families[config]


def family_prompts(config: str, world: str = "real") -> dict[str, list[str]]:
    """``{"target": [...], "pair": [...]}``: the family's target prompts and, aligned with them, their pairs."""
    fam = family(config, world)
    targets = fam["target_prompts"] if world == "mini" else _expand_real(fam)
    pairs = [pair_prompt(fam["target"], p, fam["intervention"], fam["replacement_candidates"], i)
             for i, p in enumerate(targets)]
    keep = [i for i, p in enumerate(pairs) if p.strip()]  # a prompt that was only the target has no pair
    return {"target": targets, "pair": [pairs[i] for i in keep]}
