"""Concept worlds: one :class:`Domain` object each (the embedded ``mini`` world, the ``real`` one).

A Domain is chosen once, from the base model (``domain_for_model``) or by name (``get_domain``), and handed to
taxonomy, methods, attacks, evaluator, CLI and examples, which never test for a world themselves.
"""

from .base import Domain, domain_for_model, domain_of_concept, get_domain, list_domains, register_domain
from .mini import MINI_GENERATION, MiniDomain
from .real import RealDomain

register_domain(MiniDomain())
register_domain(RealDomain())

__all__ = ["Domain", "MiniDomain", "RealDomain", "MINI_GENERATION", "domain_for_model", "domain_of_concept",
           "get_domain", "list_domains", "register_domain"]
