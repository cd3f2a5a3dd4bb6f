"""Prompt sets of the mini world: prompts that name a concept, judged by the mini classifier."""

from itertools import cycle, islice

from .domain import BACKGROUNDS, COLOURS, SHAPES, STYLES, TEXTURES, concept_of_word


def concept_prompts(factor: str, value: str, n: int = 8) -> list[str]:
    """``n`` prompts that ask for ``value`` of ``factor`` with varied other factors (deterministic)."""
    colours, shapes = list(COLOURS), list(SHAPES)
    if factor == "shape":
        base = [f"a {value}"] + [f"a {c} {value}" for c in colours]
        base += [f"a {c} {value} on a {b} background" for c, b in zip(colours, ["ocean", "grass", "desert", "night"])]
    elif factor == "colour":
        base = [f"a {value} {s}" for s in shapes]
    elif factor == "texture":
        base = [f"a {c} {value} {s}" for c, s in zip(cycle(colours), shapes)]
    elif factor == "background":
        base = [f"a {c} {s} on a {value} background" for c, s in zip(cycle(colours), shapes)] + [f"a {value} scene"]
    elif factor == "style":
        base = [f"a {c} {s}, {value} style" for c, s in zip(cycle(colours), shapes)]
    else:
        raise ValueError(f"Unknown factor {factor!r}; factors: shape, colour, texture, background, style.")
    return list(islice(cycle(base), n))


def pair_prompts(n: int = 8) -> list[tuple[str, str, str]]:
    """``(prompt, shape_left, shape_right)`` for two-object prompts, each pair of distinct shapes and colours."""
    shapes, colours = list(SHAPES), list(COLOURS)
    out = []
    for k in range(n):
        s1, s2 = shapes[k % 5], shapes[(k + 1 + k // 5) % 5]
        c1, c2 = colours[k % 4], colours[(k + 2) % 4]
        out.append((f"a {c1} {s1} next to a {c2} {s2}", s1, s2))
    return out


def factor_values(factor: str) -> list[str]:
    """The values of a factor that a prompt can ask for (no 'none' style, no 'plain' background, no 'solid')."""
    return {"shape": list(SHAPES), "colour": list(COLOURS), "texture": [t for t in TEXTURES if t != "solid"],
            "background": [b for b in BACKGROUNDS if b != "plain"], "style": [s for s in STYLES if s != "none"]}[factor]


def task_prompts(target: str, n: int = 8) -> dict:
    """Target prompts and unrelated prompts (same factor, other values) for a mini-world concept."""
    found = concept_of_word(target)
    if found is None:
        raise ValueError(f"{target!r} is not a mini-world concept; mini concepts: "
                         f"{', '.join(v for f in ('shape', 'colour', 'texture', 'background', 'style') for v in factor_values(f))}.")
    factor, value = found
    return {"factor": factor, "target": value, "target_prompts": concept_prompts(factor, value, n),
            "unrelated": {v: concept_prompts(factor, v, n) for v in factor_values(factor) if v != value}}
