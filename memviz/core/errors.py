"""The errors a user's input can raise, in a leaf module every part of core may import."""

from __future__ import annotations


class SpecError(ValueError):
    """An option that cannot be run, with a message meant for the user."""


class ModelError(SpecError):
    """The model cannot be found or loaded as named (kind ``model``)."""
