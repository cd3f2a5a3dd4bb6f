"""Unlearning methods: one file each (config dataclass + unlearner), reachable by name through the registry."""

import platform

from .base import (MethodConfig, TrainedUnlearner, Unlearner, UnlearnResult, get_method, list_methods,
                   register_method)
from .advunlearn import AdvUnlearnConfig, AdvUnlearnUnlearner
from .ca import CAConfig, CAUnlearner
from .conceptprune import ConceptPruneConfig, ConceptPruneUnlearner
from .darkminer import DarkMinerConfig, DarkMinerUnlearner
from .doco import DoCoConfig, DoCoUnlearner
from .duo import DUOConfig, DUOUnlearner
from .esd import ESDConfig, ESDUnlearner
from .fmn import FMNConfig, FMNUnlearner
from .mace import MACEConfig, MACEUnlearner
from .rece import RECEConfig, RECEUnlearner
from .receler import RecelerConfig, RecelerUnlearner
from .salun import SalUnConfig, SalUnUnlearner
from .sld import SLDConfig, SLDUnlearner
from .spm import SPMConfig, SPMUnlearner
from .uce import UCEConfig, UCEUnlearner


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of the libraries a run depends on (and of ``extra`` packages), recorded in every artifact."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("igmu_hf", "torch", "diffusers", "transformers", "accelerate", "peft", "safetensors",
                 "huggingface_hub", *extra):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


__all__ = ["MethodConfig", "Unlearner", "TrainedUnlearner", "UnlearnResult", "get_method", "list_methods", "register_method",
           "UCEConfig", "UCEUnlearner", "DUOConfig", "DUOUnlearner", "DarkMinerConfig", "DarkMinerUnlearner",
           "ESDConfig", "ESDUnlearner", "RECEConfig", "RECEUnlearner",
           "ConceptPruneConfig", "ConceptPruneUnlearner", "FMNConfig", "FMNUnlearner",
           "MACEConfig", "MACEUnlearner", "SLDConfig", "SLDUnlearner",
           "AdvUnlearnConfig", "AdvUnlearnUnlearner", "CAConfig", "CAUnlearner",
           "SalUnConfig", "SalUnUnlearner", "SPMConfig", "SPMUnlearner",
           "DoCoConfig", "DoCoUnlearner", "RecelerConfig", "RecelerUnlearner",
           "library_versions"]
