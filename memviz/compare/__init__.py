"""Technique comparison: sets of techniques run in fresh workers, measured side by side."""

from .comparison import (
    Comparison,
    SetResult,
    load_comparison,
    save_comparison,
    sets_from_texts,
)
from .sets import TechniqueSet, each_alone, parse_set

__all__ = ["Comparison", "SetResult", "TechniqueSet", "each_alone", "load_comparison",
           "parse_set", "save_comparison", "sets_from_texts"]
