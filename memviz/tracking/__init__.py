"""Per-tensor memory tracking in the worker: every storage allocated and freed, categorised.

Worker side: imports torch, never Qt.
"""

from .tracker import TensorTracker

__all__ = ["TensorTracker"]
