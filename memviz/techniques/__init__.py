"""Memory-saving techniques: one module each, one interface, one registry."""

from .base import GROUPS, Applied, Param, Technique, TechniqueError
from .preflight import preflight
from .registry import TECHNIQUES, applicability, check_techniques, parse_technique, resolve

__all__ = [
    "GROUPS", "TECHNIQUES", "Applied", "Param", "Technique", "TechniqueError",
    "applicability", "check_techniques", "parse_technique", "preflight", "resolve",
]
