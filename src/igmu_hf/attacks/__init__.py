"""Adversarial prompt attacks on unlearned models: one file each (config dataclass + attack), reachable by name.

>>> from igmu_hf.attacks import UnlearnDiffAtk, UnlearnDiffAtkConfig
>>> result = UnlearnDiffAtk(UnlearnDiffAtkConfig.fast()).run(unlearned, judge, "circle", original=original)
>>> result.asr, result.pre_attack_asr
"""

from .base import (Attack, AttackConfig, AttackOutcome, AttackResult, attack_success_rate, get_attack, list_attacks,
                   preset_config, register_attack)
from .concept_inversion import ConceptInversion, ConceptInversionConfig
from .p4d import P4D, P4DConfig
from .ringabell import RingABell, RingABellConfig
from .unlearndiffatk import UnlearnDiffAtk, UnlearnDiffAtkConfig


__all__ = ["Attack", "AttackConfig", "AttackOutcome", "AttackResult", "attack_success_rate", "get_attack",
           "list_attacks", "preset_config", "register_attack", "UnlearnDiffAtk", "UnlearnDiffAtkConfig",
           "ConceptInversion", "ConceptInversionConfig", "RingABell", "RingABellConfig", "P4D", "P4DConfig"]
