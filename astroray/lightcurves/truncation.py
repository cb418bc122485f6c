"""Partial light curves: cut at a number of days or points, or at random for training.

A classifier that has to work on a light curve *as it arrived* is trained and
evaluated on prefixes of light curves.  Every cut here keeps a prefix in time:
the points at or before the cut, never a later one (so nothing of the future
leaks into a partial light curve).  Normalisation and features are computed
afterwards, from the kept points only.

The origin of ``days`` is the object's first detection (``origin=
"first_detection"``, falling back to its first point when it has no
detection) or its first point (``"first_point"``).  Non-detections before
the first detection are before the cut and are kept.
"""
from __future__ import annotations

from typing import Literal, overload

import numpy as np

from astroray.errors import InvalidInputError
from astroray.lightcurves.ragged import RaggedLightCurves
from astroray.records import LightCurve

__all__ = ["truncate", "random_truncate", "origin_mjd"]

Origin = Literal["first_detection", "first_point"]


def origin_mjd(data: RaggedLightCurves, origin: Origin = "first_detection") -> np.ndarray:
    """Each row's time origin: first detection (else first point), or first point; NaN for empty rows."""
    first = data.first_mjd()
    if origin == "first_point":
        return first
    if origin != "first_detection":
        raise InvalidInputError(f"origin must be 'first_detection' or 'first_point', got {origin!r}")
    det = data.first_detection_mjd()
    return np.where(np.isnan(det), first, det)


def _per_row(value, n: int, name: str, *, integer: bool = False) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise InvalidInputError(f"{name} must be a number or one value per light curve ({n}), got shape {arr.shape}")
    if np.isnan(arr).any():
        raise InvalidInputError(f"{name} contains NaN")
    if integer and np.any(arr != np.floor(arr)):
        raise InvalidInputError(f"{name} must be whole numbers")
    return arr


@overload
def truncate(data: RaggedLightCurves, *, days=None, n_points=None, until_mjd=None,
             origin: Origin = "first_detection") -> RaggedLightCurves: ...
@overload
def truncate(data: LightCurve, *, days=None, n_points=None, until_mjd=None,
             origin: Origin = "first_detection") -> LightCurve: ...


def truncate(data, *, days=None, n_points=None, until_mjd=None, origin: Origin = "first_detection"):
    """Keep each light curve's points up to a cut (inclusive).

    Parameters
    ----------
    data : RaggedLightCurves or LightCurve
    days : float or array (n,), optional
        Keep points with ``mjd <= origin + days`` (non-negative).
    n_points : int or array (n,), optional
        Keep the first ``n_points`` points (non-negative).
    until_mjd : float or array (n,), optional
        Keep points with ``mjd <= until_mjd`` ("as it arrived" at that time).
    origin : {"first_detection", "first_point"}
        Where ``days`` counts from (see the module docstring).

    Returns
    -------
    RaggedLightCurves or LightCurve
        The same kind as ``data``; all rows kept, some possibly empty.
        Several cuts given together all apply.

    Raises
    ------
    InvalidInputError
        No cut given, a negative or NaN cut, or a per-row array of the wrong length.
    """
    if isinstance(data, LightCurve):
        return data.select(_keep_mask(_single(data), days, n_points, until_mjd, origin))
    if not isinstance(data, RaggedLightCurves):
        raise InvalidInputError(f"truncate takes a RaggedLightCurves or a LightCurve, got {type(data).__name__}")
    return data.select_points(_keep_mask(data, days, n_points, until_mjd, origin))


def _keep_mask(data: RaggedLightCurves, days, n_points, until_mjd, origin) -> np.ndarray:
    if days is None and n_points is None and until_mjd is None:
        raise InvalidInputError("give at least one of days=, n_points=, until_mjd=")
    n = len(data)
    rows = data.row_index()
    keep = np.ones(data.n_points, dtype=bool)
    if days is not None:
        d = _per_row(days, n, "days")
        if np.any(d < 0):
            raise InvalidInputError("days must be >= 0 (a cut before the origin keeps no detection)")
        keep &= data.mjd <= (origin_mjd(data, origin) + d)[rows]
    if n_points is not None:
        k = _per_row(n_points, n, "n_points", integer=True)
        if np.any(k < 0):
            raise InvalidInputError("n_points must be >= 0")
        position = np.arange(data.n_points) - data.offsets[:-1][rows]
        keep &= position < k[rows]
    if until_mjd is not None:
        keep &= data.mjd <= _per_row(until_mjd, n, "until_mjd")[rows]
    return keep


def random_truncate(data: RaggedLightCurves, *, rng: np.random.Generator | int | None = None,
                    mode: Literal["points", "days"] = "points", min_detections: int = 1,
                    full_fraction: float = 0.0) -> RaggedLightCurves:
    """Cut each light curve at a random point in time, for training on partial light curves.

    Parameters
    ----------
    data : RaggedLightCurves
    rng : numpy Generator or int seed, optional
        The randomness (a seed gives the same cuts every time).
    mode : {"points", "days"}
        ``"points"``: keep the first K points, K uniform over the integers from
        the point of the ``min_detections``-th detection to the whole light
        curve, so every epoch is equally likely to be "now" (as when each alert
        is classified on arrival).  ``"days"``: keep ``mjd <= origin + d``, d
        uniform in days between that detection and the last point.
    min_detections : int
        Detections every cut keeps (>= 0).  A light curve with fewer
        detections is kept whole.
    full_fraction : float
        Probability of keeping a light curve whole.

    Returns
    -------
    RaggedLightCurves
    """
    if not isinstance(data, RaggedLightCurves):
        raise InvalidInputError(f"random_truncate takes a RaggedLightCurves, got {type(data).__name__}")
    if mode not in ("points", "days"):
        raise InvalidInputError(f"mode must be 'points' or 'days', got {mode!r}")
    if int(min_detections) != min_detections or min_detections < 0:
        raise InvalidInputError(f"min_detections must be a non-negative integer, got {min_detections!r}")
    if not 0.0 <= full_fraction <= 1.0:
        raise InvalidInputError(f"full_fraction must be in [0, 1], got {full_fraction!r}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    n = len(data)
    lengths = data.lengths
    rows = data.row_index()
    position = np.arange(data.n_points) - data.offsets[:-1][rows]
    # position of the min_detections-th detection in each row (-1: that many detections do not exist)
    start = np.full(n, -1, dtype=np.int64)
    if min_detections == 0:
        start[lengths > 0] = 0
    else:
        det_rank = np.cumsum(data.detected) - np.repeat(
            np.concatenate([[0], np.cumsum(data.detected)])[data.offsets[:-1]], lengths)
        hit = np.flatnonzero(data.detected & (det_rank == min_detections))
        start[rows[hit]] = position[hit]
    whole = (start < 0) | (gen.random(n) < full_fraction)
    if mode == "points":
        low = np.maximum(start, 0) + 1
        k = low + np.floor(gen.random(n) * (lengths - low + 1)).astype(np.int64)
        k = np.where(whole, lengths, np.minimum(k, lengths))
        return truncate(data, n_points=k)
    t_start = np.full(n, np.nan)
    has = start >= 0
    t_start[has] = data.mjd[data.offsets[:-1][has] + start[has]]
    t_last = np.full(n, np.nan)
    nonempty = lengths > 0
    t_last[nonempty] = data.mjd[data.offsets[1:][nonempty] - 1]
    cut = t_start + gen.random(n) * (t_last - t_start)
    cut = np.where(whole | np.isnan(cut), np.inf, cut)
    return truncate(data, until_mjd=cut)


def _single(lc: LightCurve) -> RaggedLightCurves:
    """The record as a one-row batch, nothing cleaned (truncation looks only at times and detections)."""
    n = len(lc)
    return RaggedLightCurves(object_ids=np.array([lc.object_id], dtype=object), offsets=np.array([0, n]),
                             mjd=lc.mjd, band=np.zeros(n, dtype=np.int16), flux=lc.flux, flux_err=lc.flux_err,
                             detected=lc.detected, bands=("r",))
