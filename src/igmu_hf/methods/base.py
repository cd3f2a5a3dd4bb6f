"""What every unlearning method shares: a config dataclass, an unlearner, a result, and the registry.

Adding a method touches one new file (``XConfig`` + ``XUnlearner`` + one ``register_method`` call) and the import
list in ``methods/__init__.py``.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..config import ConfigBase, Registry


@dataclass
class MethodConfig(ConfigBase):
    """Fields every method has. Subclasses add their own, each with a default and a ``help`` naming the symbol."""

    concepts: list[str] = field(default_factory=list, metadata={"help": "Concept(s) to erase, e.g. ['circle']."})
    seed: int = field(default=0, metadata={"help": "Seed of every random draw of the method."})

    method: ClassVar[str] = ""
    defaults_version: ClassVar[str] = "1"
    identity_keys: ClassVar[tuple[str, ...]] = ("method", "defaults_version")
    # Overrides for the embedded mini world (the mini Domain applies them, after its sampling settings, when the
    # base model is the mini one); the field defaults stay the paper's.
    mini_preset: ClassVar[dict[str, Any]] = {}
    # The config field that takes preserve prompts (``--preserve``), if any, and whether CatIGMU's preserve prompts
    # fill it by default (UCE's paper preserves a set; DUO's and Dark Miner's have no such term).
    preserve_field: ClassVar[str | None] = None
    preserve_by_default: ClassVar[bool] = False

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.concepts, str):
            self.concepts = [self.concepts]
        if not self.concepts or any(not isinstance(c, str) or not c.strip() for c in self.concepts):
            raise ValueError(f"`concepts` must hold at least one non-empty concept, got {self.concepts!r}; "
                             f"e.g. --concept 'circle'.")



@dataclass
class UnlearnResult:
    """The unlearned pipeline and the provenance every method records (the efficiency aspect and the model card read it)."""

    pipeline: Any
    config: MethodConfig
    edited_parameters: list[str]
    edited_parameter_count: int
    total_parameter_count: int
    runtime_seconds: float
    technique: str
    extra: dict[str, Any] = field(default_factory=dict)
    artifact_kind: str = "fused weights"  # see ARTIFACT_KINDS
    lora_state_dict: dict[str, Any] | None = None  # adapter methods: written as pytorch_lora_weights.safetensors
    extra_tensors: dict[str, dict[str, Any]] = field(default_factory=dict)  # file name -> tensors, saved alongside

    def metadata(self) -> dict[str, Any]:
        from . import library_versions

        return {
            "method": self.config.method,
            "defaults_version": self.config.defaults_version,
            "concepts": self.config.concepts,
            "config": self.config.to_dict(),
            "config_hash": self.config.config_hash(),
            "technique": self.technique,
            "artifact_kind": self.artifact_kind,
            "multi_concept": self.extra.get("multi_concept", False),
            "edited_parameters": self.edited_parameters,
            "edited_parameter_count": self.edited_parameter_count,
            "total_parameter_count": self.total_parameter_count,
            "edited_parameter_share": self.edited_parameter_count / max(1, self.total_parameter_count),
            "runtime_seconds": self.runtime_seconds,
            "seed": self.config.seed,
            "library_versions": library_versions(),
            **self.extra,
        }


def check_finite_pipeline(result: "UnlearnResult") -> None:
    """Refuse (:class:`~igmu_hf.training.DivergedError`, one line naming the settings to lower) an unlearned model
    whose weights, adapter or extra tensors hold NaN or ±Inf: nothing broken is ever saved."""
    import torch

    from ..training import check_finite

    tensors: dict[str, Any] = {}
    for name, component in getattr(result.pipeline, "components", {}).items():
        if isinstance(component, torch.nn.Module):
            tensors.update({f"{name}.{k}": v for k, v in component.state_dict().items()})
    tensors.update({f"lora.{k}": v for k, v in (result.lora_state_dict or {}).items()})
    for file, extra in result.extra_tensors.items():
        tensors.update({f"{file}.{k}": v for k, v in extra.items()})
    check_finite(tensors, result.config.to_dict(), "in the unlearned model")


# What a method's output is: weights fused into the pipeline's components, a LoRA adapter (written beside the fused
# pipeline), text-encoder weights, a custom pipeline class, or nothing to save (inference-time methods).
ARTIFACT_KINDS = ("fused weights", "LoRA adapter", "text-encoder weights", "custom pipeline", "inference-time only")


class Unlearner:
    """Base class: ``Unlearner(config).unlearn(pipeline) -> UnlearnResult`` (edits ``pipeline`` in place)."""

    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    technique: ClassVar[str] = ""
    artifact_kind: ClassVar[str] = "fused weights"
    # trained methods take the scaffold's arguments (accelerator, output_dir, checkpointing_steps,
    # checkpoints_total_limit, resume_from_checkpoint, progress) in their constructor
    trained: ClassVar[bool] = False
    multi_concept: ClassVar[bool] = False  # erases several concepts in one run, as the method's paper shows
    # the authors' paper-era code this follows (repository@commit: files), and every deliberate deviation from it;
    # both go into igmu_run.json and the model card
    reference_code: ClassVar[str] = ""
    deviations: ClassVar[tuple[str, ...]] = ()
    # model-family capabilities the method needs (igmu_hf.families), and its name in refusals
    requires: ClassVar[tuple[str, ...]] = ()
    display_name: ClassVar[str] = ""

    @classmethod
    def check_family(cls, pipeline):
        """The pipeline's family, or a one-line :class:`~igmu_hf.families.FamilyNotSupportedError` when it lacks a
        capability the method needs (checked before any work, prepared data included)."""
        from ..families import family_of

        family = family_of(pipeline)
        for capability in cls.requires:
            family.require(capability, cls.display_name or cls.__name__)
        return family

    def __init__(self, config: MethodConfig):
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}.")
        self.config = config

    # Data a trained method prepares once from the base model before it trains (DUO's pairs, Dark Miner's image
    # pool): its name (scripts keep it in ``<output_dir>-<name>`` and reuse it) and the config fields that define it.
    prepared_data: ClassVar[str | None] = None
    prepared_data_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def domain_kwargs(cls, domain) -> dict[str, Any]:
        """Constructor arguments this method takes from the concept world (DUO's detector and prompts ...)."""
        return {}

    @classmethod
    def build_prepared_data(cls, pipeline, config: MethodConfig, accelerator, domain=None, progress: bool = True):
        """The ``datasets.Dataset`` of :attr:`prepared_data`. Called on every process (it may shard its work); the
        main process's value is the one saved."""
        raise NotImplementedError(f"{cls.__name__} declares prepared_data but does not build it.")

    @classmethod
    def from_prepared_data(cls, dataset) -> dict[str, Any]:
        """Constructor arguments taken from the prepared dataset."""
        raise NotImplementedError(f"{cls.__name__} declares prepared_data but does not read it.")

    @classmethod
    def prepared_data_kwargs(cls, pipeline, config: MethodConfig, accelerator, folder, domain=None,
                             progress: bool = True) -> dict[str, Any]:
        """Build :attr:`prepared_data` into ``folder`` once (or reuse it when it was built from the same
        :attr:`prepared_data_fields`), shared by every process; the constructor arguments it gives ({} if the method
        prepares nothing)."""
        if cls.prepared_data is None:
            return {}
        from ..training import shared_dataset

        values = config.to_dict()
        fingerprint = {"method": config.method, **{k: values[k] for k in cls.prepared_data_fields}}
        data = shared_dataset(folder, lambda: cls.build_prepared_data(pipeline, config, accelerator, domain, progress),
                              accelerator, fingerprint)
        return cls.from_prepared_data(data)

    @classmethod
    def check_texts(cls, pipeline, config) -> None:
        """Refuse concepts and prompts longer than the text encoder reads (they would be cut silently)."""
        from ..text import check_config_texts

        for name in ("tokenizer", "tokenizer_2", "tokenizer_3"):
            if getattr(pipeline, name, None) is not None:
                check_config_texts(getattr(pipeline, name), config)

    def check_concepts(self, pipeline, extra: tuple[str, ...] | list[str] = ()) -> None:
        """One-line error when a concept (or an ``extra`` prompt) has a word the pipeline's tokenizer cannot spell."""
        from ..text import check_concept_in_vocab

        for text in [*self.config.concepts, *extra]:
            check_concept_in_vocab(pipeline.tokenizer, text)

    def prepared_or_built(self, pipeline, given, accelerator=None, domain=None, progress: bool = True):
        """The method's prepared data: ``given`` (the scaffold's shared folder, or the caller's), else built here
        on one process; an empty set is refused."""
        if given is None:
            from accelerate import Accelerator

            given = self.build_prepared_data(pipeline, self.config, accelerator or Accelerator(), domain, progress)
        if len(given) == 0:
            name = self.display_name or type(self).__name__
            raise ValueError(f"The {name} {self.prepared_data} set is empty; give some or let {name} build them.")
        return given

    def unlearn(self, pipeline) -> UnlearnResult:
        self.check_family(pipeline)
        self.check_texts(pipeline, self.config)
        from ..training import run_clock

        with run_clock() as clock:  # a resumed run adds the time its checkpoint recorded
            edited = self._unlearn(pipeline)
            pipeline = self.wrap_pipeline(pipeline)
            runtime = clock.elapsed()
        from ..families import family_of

        family = family_of(pipeline)
        count, total, components = edited_parameter_counts(pipeline, edited, family.denoiser_name)
        if self.artifact_kind not in ARTIFACT_KINDS:
            raise RuntimeError(f"{type(self).__name__}.artifact_kind {self.artifact_kind!r} is not one of "
                               f"{ARTIFACT_KINDS}.")
        return UnlearnResult(pipeline, self.config, edited, count, total, runtime, self.technique,
                             extra={"multi_concept": self.multi_concept, "model_family": family.name,
                                    "edited_components": components, "reference_code": self.reference_code,
                                    "deviations": list(self.deviations), **self.extra_metadata(pipeline)},
                             artifact_kind=self.artifact_kind)

    def wrap_pipeline(self, pipeline):
        """The pipeline the result holds: ``pipeline`` itself (edited in place) unless the method's artifact is a
        custom pipeline class (SLD)."""
        return pipeline

    def extra_metadata(self, pipeline) -> dict[str, Any]:
        """Method-specific entries of ``igmu_run.json`` (e.g. ``custom_pipeline``: [module file, class] of a custom
        pipeline from ``igmu_hf.pipelines``, copied into the saved folder)."""
        return {}

    def _unlearn(self, pipeline) -> list[str]:
        """Edit ``pipeline`` in place; return the names of the parameters that were changed: the denoiser's as they
        are (``down_blocks.0...``), other components' prefixed with the component (``text_encoder.text_model...``)."""
        raise NotImplementedError


class TrainedUnlearner(Unlearner):
    """Base of methods trained on the scaffold (:class:`~igmu_hf.training.TrainingRun`): it keeps the scaffold's
    arguments (``self.train_kwargs`` goes to the run), the concept world and the run's statistics, which
    ``unlearn`` records as ``extra["training"]``."""

    trained = True

    def __init__(self, config: MethodConfig, accelerator=None, progress: bool = True, output_dir: str | None = None,
                 checkpointing_steps: int | None = None, resume_from_checkpoint: str | None = None,
                 checkpoints_total_limit: int | None = 2, callback=None, domain=None):
        super().__init__(config)
        self.accelerator, self.progress, self.domain = accelerator, progress, domain
        self.train_kwargs = dict(output_dir=output_dir, checkpointing_steps=checkpointing_steps,
                                 checkpoints_total_limit=checkpoints_total_limit,
                                 resume_from_checkpoint=resume_from_checkpoint, callback=callback)
        self.stats: dict = {}

    @classmethod
    def domain_kwargs(cls, domain) -> dict[str, Any]:
        return {"domain": domain}

    def unlearn(self, pipeline) -> UnlearnResult:
        result = super().unlearn(pipeline)
        result.extra["training"] = self.stats
        return result


class GeneratedImagesUnlearner(TrainedUnlearner):
    """Base of methods trained on images the original model generates (FMN, MACE, CA, SalUn): the prepared data is
    one image per row of :meth:`image_rows`, seeded by ``(seed, image_seed_offset, row)``, built once and shared by
    every process (or given as ``images``)."""

    prepared_data: ClassVar[str | None] = "images"
    image_seed_offset: ClassVar[int] = 0

    def __init__(self, config: MethodConfig, images=None, **scaffold):
        super().__init__(config, **scaffold)
        self.images = images  # the image set (prepared data), built when None

    @classmethod
    def image_rows(cls, config: MethodConfig, domain=None) -> tuple[list[str], list[str]]:
        """``(prompts, concept column)`` of the images to generate, one row per image."""
        raise NotImplementedError

    @classmethod
    def build_prepared_data(cls, pipeline, config: MethodConfig, accelerator, domain=None, progress: bool = True):
        from ..evaluation import concept_image_dataset

        prompts, concepts = cls.image_rows(config, domain)
        seeds = [config.seed * 1_000_003 + cls.image_seed_offset + i for i in range(len(prompts))]
        return concept_image_dataset(pipeline, prompts, concepts, seeds, accelerator, f"{cls.display_name} images",
                                     progress, num_inference_steps=config.num_inference_steps,
                                     guidance_scale=config.guidance_scale)

    @classmethod
    def from_prepared_data(cls, dataset) -> dict:
        return {"images": dataset}


def edited_parameter_counts(pipeline, edited: list[str], denoiser_name: str = "unet") -> tuple[int, int, list[str]]:
    """(edited parameters, parameters of every component that changed, those components) for ``edited`` names
    (denoiser names bare, other components' prefixed with the component name). The denoiser always counts in the
    total, so a method's share compares with every other method's."""
    import torch

    modules = {k: v for k, v in pipeline.components.items() if isinstance(v, torch.nn.Module)}
    by_component: dict[str, list[str]] = {}
    for name in edited:
        head, _, rest = name.partition(".")
        comp, pname = (head, rest) if head in modules and head != denoiser_name else (denoiser_name, name)
        by_component.setdefault(comp, []).append(pname)
    count, components = 0, sorted(set(by_component) | {denoiser_name})
    for comp, names in by_component.items():
        params = dict(modules[comp].named_parameters())
        unknown = [n for n in names if n not in params]
        if unknown:
            raise RuntimeError(f"Edited parameter(s) {unknown[:3]} are not parameters of {comp}; a method must "
                               f"return the names it changed.")
        count += sum(params[n].numel() for n in names)
    total = sum(p.numel() for comp in components for p in modules[comp].parameters())
    return count, total, components


_REGISTRY = Registry("method")


def register_method(name: str, cls: type[Unlearner]) -> None:
    """Make ``name`` reachable from ``get_method`` and the CLI."""
    _REGISTRY.register(name, cls)


def list_methods() -> list[str]:
    return _REGISTRY.names()


def get_method(name: str) -> type[Unlearner]:
    """The class registered as ``name`` (a clear error listing the names otherwise)."""
    return _REGISTRY.get(name)
