"""Labelled candidate stamps: what the image pipeline detected on a simulated pair, matched to the truth.

Training data for real/bogus.  Each candidate the real pipeline finds on a
simulated pair becomes one row: its stamps (science, reference, difference,
score), its label (1 real: a transient, a variable star or a moving object;
0 bogus: an artifact or nothing injected), the kind of change it was matched
to (or ``"unmatched"``), and a per-pixel mask of the injected changes in its
stamp (:data:`~astroray.models.realbogus.SEG_CLASSES`: 0 background,
1 transient, 2 artifact), drawn from the truth table's geometry.

Matching: a candidate is real when a real change lies within ``match_radius``
pixels of it (a moving object: of its trail); otherwise it takes the kind of
the nearest artifact whose footprint it lies on (a cosmic-ray track, a hot
pixel, a bad column's segment, a streak's band, a dipole's or a saturated
star's core), and ``"unmatched"`` when none.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from astroray.datasets.images import REAL_KINDS

__all__ = ["STAMP_SCHEMA_FIELDS", "FOOTPRINT_RADIUS", "label_candidates", "truth_masks", "candidate_table",
           "simulate_candidates", "stamp_arrays",
           "MASK_TRANSIENT", "MASK_ARTIFACT"]

MASK_TRANSIENT = 1
MASK_ARTIFACT = 2

FOOTPRINT_RADIUS = {
    # in units of the science FWHM (px) where the value is a tuple ("fwhm", k), else pixels
    "transient_on_host": ("fwhm", 1.5), "transient_hostless": ("fwhm", 1.5), "variable_star": ("fwhm", 1.5),
    "moving_object": ("fwhm", 1.5), "cosmic_ray": 1.5, "hot_pixel": 1.5, "bad_column": 1.0,
    "satellite_streak": ("fwhm", 1.0), "dipole": ("fwhm", 1.5), "saturated_residual": ("fwhm", 3.0),
}
"""How far from its point or segment each kind of change marks its pixels (and claims a candidate)."""

STAMP_SCHEMA_FIELDS = ("pair_id", "candidate_id", "label", "kind", "x", "y", "snr", "sign", "flux", "flux_err",
                       "psf_likeness", "on_streak", "a", "b", "npix", "peak", "science", "reference", "difference",
                       "score", "mask", "stamp_size")


@dataclass(frozen=True)
class _Segments:
    """Truth changes as segments (points have length 0): centre, half-vector, radius, kind."""

    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    radius: np.ndarray
    kind: np.ndarray
    real: np.ndarray


def _segments(truth: pd.DataFrame, fwhm: float) -> _Segments:
    kind = truth["kind"].to_numpy(dtype=object)
    half = 0.5 * truth["length"].to_numpy(np.float64)
    # bad columns: vertical; dipoles carry their shift in `length`, not a trail
    point = np.isin(kind, ("dipole", "saturated_residual", "hot_pixel", "transient_on_host",
                           "transient_hostless", "variable_star"))
    half = np.where(point, 0.0, half)
    ang = np.radians(truth["angle"].to_numpy(np.float64))
    x, y = truth["x"].to_numpy(np.float64), truth["y"].to_numpy(np.float64)
    dx, dy = half * np.cos(ang), half * np.sin(ang)
    radius = np.array([FOOTPRINT_RADIUS[k][1] * fwhm if isinstance(FOOTPRINT_RADIUS[k], tuple)
                       else FOOTPRINT_RADIUS[k] for k in kind], dtype=np.float64).reshape(len(kind))
    real = np.isin(kind, REAL_KINDS)
    return _Segments(x - dx, y - dy, x + dx, y + dy, radius, kind, real)


def _distance(px, py, seg: _Segments, idx):
    """Distance from points (px, py) (any shape) to segment ``idx``."""
    ax, ay, bx, by = seg.x0[idx], seg.y0[idx], seg.x1[idx], seg.y1[idx]
    vx, vy = bx - ax, by - ay
    length2 = vx * vx + vy * vy
    t = np.clip(((px - ax) * vx + (py - ay) * vy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
    return np.hypot(px - (ax + t * vx), py - (ay + t * vy))


def label_candidates(catalog: pd.DataFrame, truth: pd.DataFrame, *, fwhm: float,
                     match_radius: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """``(label, kind)`` of each candidate: 1 with a real change's kind, else 0 with an artifact's or ``"unmatched"``.

    Parameters
    ----------
    catalog : DataFrame
        Candidates with ``x``, ``y`` (science frame).
    truth : DataFrame
        The pair's truth table (:data:`~astroray.datasets.images.TRUTH_COLUMNS`).
    fwhm : float
        Science PSF FWHM in pixels (sets the footprints).
    match_radius : float
        Pixels within which a real change claims a candidate (to its point or trail).
    """
    n = len(catalog)
    label = np.zeros(n, np.int8)
    kind = np.full(n, "unmatched", dtype=object)
    if n == 0 or truth.empty:
        return label, kind
    seg = _segments(truth, fwhm)
    cx, cy = catalog["x"].to_numpy(np.float64), catalog["y"].to_numpy(np.float64)
    dist = np.stack([_distance(cx, cy, seg, j) for j in range(len(seg.kind))], axis=1)  # (n, n_truth)
    real_d = np.where(seg.real[None, :], dist, np.inf)
    nearest_real = real_d.argmin(axis=1)
    is_real = real_d[np.arange(n), nearest_real] <= match_radius
    label[is_real] = 1
    kind[is_real] = seg.kind[nearest_real[is_real]]
    # artifacts: on the footprint (radius, at least the match radius), the nearest by distance beyond it
    art_d = np.where(~seg.real[None, :], dist - np.maximum(seg.radius, match_radius)[None, :], np.inf)
    nearest_art = art_d.argmin(axis=1)
    on_art = ~is_real & (art_d[np.arange(n), nearest_art] <= 0)
    kind[on_art] = seg.kind[nearest_art[on_art]]
    return label, kind


def truth_masks(x, y, truth: pd.DataFrame, *, size: int, fwhm: float) -> np.ndarray:
    """Per-pixel class masks ``(n, size, size)`` uint8 of the stamps centred on the pixels nearest ``(x, y)``.

    Pixels within a real change's footprint are :data:`MASK_TRANSIENT`, within
    an artifact's :data:`MASK_ARTIFACT` (a transient wins where both are).
    """
    x = np.atleast_1d(np.asarray(x, np.float64))
    y = np.atleast_1d(np.asarray(y, np.float64))
    out = np.zeros((len(x), size, size), np.uint8)
    if truth.empty or len(x) == 0:
        return out
    seg = _segments(truth, fwhm)
    half = size // 2
    offs = np.arange(-half, half + 1, dtype=np.float64)
    lo_x = np.minimum(seg.x0, seg.x1) - seg.radius
    hi_x = np.maximum(seg.x0, seg.x1) + seg.radius
    lo_y = np.minimum(seg.y0, seg.y1) - seg.radius
    hi_y = np.maximum(seg.y0, seg.y1) + seg.radius
    for i, (xc, yc) in enumerate(zip(np.rint(x), np.rint(y))):
        near = np.flatnonzero((hi_x >= xc - half) & (lo_x <= xc + half) & (hi_y >= yc - half) & (lo_y <= yc + half))
        if len(near) == 0:
            continue
        px, py = np.meshgrid(xc + offs, yc + offs)
        for j in sorted(near, key=lambda k: seg.real[k]):  # real changes last: they win
            inside = _distance(px, py, seg, j) <= seg.radius[j]
            out[i][inside] = MASK_TRANSIENT if seg.real[j] else MASK_ARTIFACT
    return out


def candidate_table(pair_id: str, catalog: pd.DataFrame, stamps: dict[str, np.ndarray], truth: pd.DataFrame, *,
                    fwhm: float, size: int, match_radius: float = 2.0, psf_likeness=None) -> pa.Table:
    """One row per candidate: ids, label, kind, catalog measurements, the stamps and the mask (Arrow).

    ``stamps`` maps each of science, reference, difference, score to an
    ``(n, size, size)`` array; stamps are stored flat (``size * size``
    float32 lists) with ``stamp_size``, so any Parquet reader can take them.
    """
    n = len(catalog)
    label, kind = label_candidates(catalog, truth, fwhm=fwhm, match_radius=match_radius)
    masks = truth_masks(catalog["x"].to_numpy() if n else [], catalog["y"].to_numpy() if n else [], truth,
                        size=size, fwhm=fwhm)

    def col(name, dtype, default=np.nan):
        return catalog[name].to_numpy(dtype) if name in catalog and n else np.full(n, default, dtype)

    flat = pa.list_(pa.float32(), size * size)
    table = {
        "pair_id": pa.array([pair_id] * n, pa.string()),
        "candidate_id": pa.array([f"{pair_id}-{i:05d}" for i in range(n)], pa.string()),
        "label": pa.array(label, pa.int8()),
        "kind": pa.array(kind.astype(str), pa.string()),
        "x": pa.array(col("x", np.float64)), "y": pa.array(col("y", np.float64)),
        "snr": pa.array(col("snr", np.float64)), "sign": pa.array(col("sign", np.int8, 1), pa.int8()),
        "flux": pa.array(col("flux", np.float64)), "flux_err": pa.array(col("flux_err", np.float64)),
        "psf_likeness": pa.array(np.full(n, np.nan) if psf_likeness is None else np.asarray(psf_likeness, np.float64)),
        "on_streak": pa.array(col("on_streak", bool, False), pa.bool_()),
        "a": pa.array(col("a", np.float64)), "b": pa.array(col("b", np.float64)),
        "npix": pa.array(col("npix", np.int64, 0), pa.int64()), "peak": pa.array(col("peak", np.float64)),
    }
    for name in ("science", "reference", "difference", "score"):
        values = np.asarray(stamps[name], np.float32).reshape(n, size * size)
        table[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel(), pa.float32()), size * size) \
            if n else pa.array([], flat)
    table["mask"] = pa.FixedSizeListArray.from_arrays(pa.array(masks.reshape(-1), pa.uint8()), size * size) \
        if n else pa.array([], pa.list_(pa.uint8(), size * size))
    table["stamp_size"] = pa.array(np.full(n, size, np.int32), pa.int32())
    return pa.table(table)


def stamp_arrays(table, names=("science", "reference", "difference", "score")) -> dict[str, np.ndarray]:
    """The stamps of a candidate table as ``(n, size, size)`` arrays (and the mask as uint8)."""
    size = int(table["stamp_size"][0].as_py()) if table.num_rows else 0
    out = {}
    for name in tuple(names) + ("mask",):
        if name not in table.column_names:
            continue
        flat = table[name].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        out[name] = flat.reshape(table.num_rows, size, size)
    return out


def _fwhm_of(meta: dict, default: float = 3.0) -> float:
    value = meta.get("fwhm_px")
    return float(value) if value is not None and math.isfinite(float(value)) else default


def simulate_candidates(pipeline, config, *, seed: int, index: int, size: int = 63,
                        match_radius: float = 2.0) -> pa.Table:
    """Simulate pair ``index``, run ``pipeline`` (an :class:`~astroray.imaging.pipeline.ImagePipeline`) on it,
    and return its labelled candidates (:func:`candidate_table`); a pair the pipeline refuses gives none."""
    from astroray.datasets.images import simulate_pair
    from astroray.errors import InvalidInputError
    from astroray.imaging.cutouts import cutouts

    pair = simulate_pair(config, seed=seed, index=index)
    try:
        result = pipeline.run(pair.reference, pair.science)
    except InvalidInputError:
        return candidate_table(pair.pair_id, pd.DataFrame(), {k: np.zeros((0, size, size)) for k in
                                                              ("science", "reference", "difference", "score")},
                               pair.truth, fwhm=_fwhm_of(pair.science.meta), size=size)
    cat = result.catalog
    alerts = result.alerts
    n = len(cat)
    if n:
        stamps = {name: np.stack([getattr(a, f"cutout_{name}") for a in alerts]) for name in
                  ("science", "reference", "difference")}
        stamps["score"] = cutouts(result.difference.score, cat["x"].to_numpy(), cat["y"].to_numpy(), size=size)
        likeness = np.array([a.scores["psf_likeness"] for a in alerts])
    else:
        stamps = {k: np.zeros((0, size, size), np.float32) for k in ("science", "reference", "difference", "score")}
        likeness = np.zeros(0)
    if stamps["science"].shape[-1] != size:
        raise ValueError(f"the pipeline cuts {stamps['science'].shape[-1]} px stamps, not {size}: "
                         "set pipeline.cutout_size to the stamp size")
    return candidate_table(pair.pair_id, cat, stamps, pair.truth, fwhm=_fwhm_of(pair.science.meta), size=size,
                           match_radius=match_radius, psf_likeness=likeness)
