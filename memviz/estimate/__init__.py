"""Predict a run's memory before it runs: from the architecture, the workload and the
techniques (no torch; the window uses it too)."""

from .architecture import Architecture, EstimateError, architecture_of
from .predict import Estimate, predict

__all__ = ["Architecture", "Estimate", "EstimateError", "architecture_of", "predict"]
