"""Technique comparison: sets of techniques run in fresh workers, measured side by side."""

from .comparison import Comparison, SetResult, sets_from_texts
from .sets import TechniqueSet, each_alone, parse_set

__all__ = ["Comparison", "SetResult", "TechniqueSet", "each_alone", "parse_set",
           "sets_from_texts"]
