"""Evaluation: matching detections to truth, grouped splits, metrics, calibration and plots (no Ray)."""
from astroray.eval.matching import match_to_truth, nearest_truth

__all__ = ["match_to_truth", "nearest_truth"]
