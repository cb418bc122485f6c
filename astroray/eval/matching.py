"""Matching detections to injected truth by position."""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["match_to_truth", "nearest_truth"]


def match_to_truth(catalog: pd.DataFrame, truth: pd.DataFrame, *, radius: float) -> np.ndarray:
    """For each truth row, whether a detection lies within ``radius`` pixels (``x``, ``y`` columns of both)."""
    if truth.empty:
        return np.zeros(0, bool)
    if catalog.empty:
        return np.zeros(len(truth), bool)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(catalog[["x", "y"]].to_numpy()).query(truth[["x", "y"]].to_numpy(), k=1)
    return dist <= radius


def nearest_truth(catalog: pd.DataFrame, truth: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, the index of the nearest truth row (-1 without any) and its distance in pixels."""
    n = len(catalog)
    if n == 0 or truth.empty:
        return np.full(n, -1, np.int64), np.full(n, np.inf)
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(truth[["x", "y"]].to_numpy()).query(catalog[["x", "y"]].to_numpy(), k=1)
    return np.asarray(idx, np.int64), np.asarray(dist, np.float64)
