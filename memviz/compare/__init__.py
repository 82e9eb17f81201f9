"""Technique comparison: sets of techniques run in fresh workers, measured side by side."""

from .comparison import Comparison, SetResult, sets_from_texts
from .saved import load_comparison, save_comparison
from .sets import TechniqueSet, each_alone, parse_set

__all__ = ["Comparison", "SetResult", "TechniqueSet", "each_alone", "load_comparison",
           "parse_set", "save_comparison", "sets_from_texts"]
