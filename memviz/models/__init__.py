"""Model sources for the worker: presets, local Hugging Face directories, factories.

Worker side: imports torch, never Qt.
"""

from .loading import ModelLoadError, load_task

__all__ = ["ModelLoadError", "load_task"]
