"""The real DataIGM recipe (seed 000 Table 7): REAL and LAION from what the user has, SD-GEN generated here from
Table 10's families with the original model and any unlearned models. Nothing is downloaded: the images of NudeNet's
data, ImageNet, WikiArt and LAION-5B cannot be redistributed, so igmu_hf ships this recipe, not the images."""

from pathlib import Path

from .prompts import family_prompts, table10

REAL_SOURCES_NOTE = ("REAL: WikiArt (Van Gogh), the NudeNet v2 data (nudity), ImageNet-1k 'church' and 'parachute' "
                     "(objects), as in the paper; LAION: a random part of LAION-5B fetched by the user. Their "
                     "licences are those of the original collections (see each row's provenance).")


def parse_unlearned(specs: list[str]) -> dict[str, list[tuple[str, str]]]:
    """``["church:uce=path", ...]`` -> ``{"church": [("uce", "path")]}`` (``--unlearned`` of the CLI)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for spec in specs or []:
        head, sep, path = spec.partition("=")
        config, colon, method = head.partition(":")
        if not (sep and colon and config and method and path):
            raise ValueError(f"`--unlearned` takes CONFIG:METHOD=PATH_OR_ID (e.g. church:uce=out/uce-church), got "
                             f"{spec!r}.")
        out.setdefault(config, []).append((method, path))
    return out


def load_generators(configs: list[str], original: str, unlearned: dict[str, list[tuple[str, str]]]) -> dict:
    """Per config: the original pipeline and the unlearned ones, loaded once each, recorded by portable id."""
    from ..hub import load_pipeline, portable_id

    cache = {}

    def get(path):
        if path not in cache:
            cache[path] = load_pipeline(path)
            cache[path].set_progress_bar_config(disable=True)
        return cache[path]

    unknown = sorted(set(unlearned) - set(configs))
    if unknown:
        raise ValueError(f"`--unlearned` names config {unknown[0]!r}, which is not built; configs: {configs}.")
    return {c: [{"pipeline": get(original), "model_id": portable_id(original), "method": "original"}] +
            [{"pipeline": get(p), "model_id": portable_id(p), "method": m} for m, p in unlearned.get(c, [])]
            for c in configs}


def build_real_dataigm(output_dir: str | Path, configs: list[str] | None = None, real_dir: str | None = None,
                       laion_dir: str | None = None, pretrained_model_name_or_path: str | None = None,
                       unlearned: dict[str, list[tuple[str, str]]] | None = None,
                       num_per_label: dict[str, int] | None = None, seed: int = 0, curator: str | None = None,
                       generation_kwargs: dict | None = None, chunk_size: int = 16, overwrite: bool = False,
                       progress: bool = True) -> dict:
    """Build configs of the real recipe (``nudity``, ``vangogh``, ``church``, ``parachute``).

    SD-GEN is generated when ``pretrained_model_name_or_path`` (the original model, e.g.
    ``CompVis/stable-diffusion-v1-4``) is given, with the ``unlearned`` models, ``num_per_label`` rows per label;
    ``num_per_label`` also caps REAL and LAION. ``curator`` names a judge (e.g. ``"nudenet"``) that keeps only
    generations agreeing with their prompt; ``None`` keeps all (the paper selected by hand).
    """
    from ..domains import get_domain
    from .build import build_dataigm, refuse_changed_recipe

    configs = list(configs or table10())
    families = {c: family_prompts(c) for c in configs}  # refuses an unknown config by name
    refuse_changed_recipe(output_dir, {"configs": configs, "num_per_label": num_per_label, "seed": seed}, overwrite)
    world = get_domain("real")
    if unlearned and not pretrained_model_name_or_path:
        raise ValueError("SD-GEN needs the original model too: pass --pretrained_model_name_or_path (e.g. "
                         "CompVis/stable-diffusion-v1-4) with --unlearned.")
    if pretrained_model_name_or_path and not num_per_label:
        raise ValueError("SD-GEN needs --num_train and --num_test (rows per label to generate).")
    gens = load_generators(configs, pretrained_model_name_or_path, unlearned or {}) \
        if pretrained_model_name_or_path else None
    judges = {}

    def judge(config):
        if config not in judges:
            judges[config] = world.judge(table10()[config]["target"], curator)
        return judges[config]

    return build_dataigm(output_dir, configs, families, real_dir=real_dir, laion_dir=laion_dir, generators=gens,
                         num_per_label=num_per_label, seed=seed, curator=judge if curator else None,
                         curator_info={"judge": curator} if curator else None, chunk_size=chunk_size,
                         generation_kwargs=generation_kwargs if generation_kwargs is not None
                         else dict(world.generation_kwargs), card_notes=REAL_SOURCES_NOTE,
                         recipe_extra={"world": "real"}, overwrite=overwrite, progress=progress)
