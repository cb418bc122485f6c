"""Numba host kernels of the streak search (:mod:`astroray.imaging.streaks`).

Each is the host twin of NumPy code that stays in ``streaks.py`` for device
(CuPy) arrays, or a loop that NumPy can only express with a sort of the whole
input; the tests check each against that NumPy formulation.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = ["band_pixels", "cell_medians", "hough_votes", "pooled_blocks"]

_JIT = dict(cache=True, nogil=True)


@nb.njit(parallel=True, **_JIT)
def pooled_blocks(score, mask, use_mask, threshold, b):
    """``b x b`` blocks holding a pixel with ``|score| > threshold`` not in ``mask``: (rows, cols) of the blocks.

    As ``abs(nan_to_num(score)) > threshold`` pooled with ``any``: NaN never
    counts, +-inf always does.  Blocks come in row-major order (``nonzero``'s).
    """
    H, W = score.shape
    hb, wb = (H + b - 1) // b, (W + b - 1) // b
    blocks = np.zeros((hb, wb), np.bool_)
    for i in nb.prange(hb):
        for y in range(i * b, min(H, i * b + b)):
            for x in range(W):
                if abs(score[y, x]) > threshold and not (use_mask and mask[y, x]):
                    blocks[i, x // b] = True
    n = 0
    for i in range(hb):
        for j in range(wb):
            n += blocks[i, j]
    rows = np.empty(n, np.int64)
    cols = np.empty(n, np.int64)
    k = 0
    for i in range(hb):
        for j in range(wb):
            if blocks[i, j]:
                rows[k] = i
                cols[k] = j
                k += 1
    return rows, cols


@nb.njit(**_JIT)
def band_pixels(x0, y0, ux, uy, length, reach, H, W):
    """Pixels ``(y, x)`` of the image whose centre lies within ``reach`` of the segment, row-major.

    The segment runs from ``(x0, y0)`` along the unit vector ``(ux, uy)`` for
    ``length``; a pixel is in when ``0 <= along <= length`` and
    ``|across| <= reach``, with ``along``, ``across`` computed as
    :func:`~astroray.imaging.streaks.streak_model` computes them (so its own
    test decides the pixels on the boundary).  Each row's candidate columns
    come from the two strips' intervals, widened by a pixel, then tested.
    """
    ys = np.empty(0, np.int64)
    xs = np.empty(0, np.int64)
    corners_y = (y0, y0 + length * uy)
    ylo = min(corners_y[0], corners_y[1]) - reach * abs(ux) - 2.0
    yhi = max(corners_y[0], corners_y[1]) + reach * abs(ux) + 2.0
    r0 = max(int(math.floor(ylo)), 0)
    r1 = min(int(math.ceil(yhi)) + 1, H)
    if r1 <= r0:
        return ys, xs
    # the columns of each row: intersect along in [0, L] and across in [-reach, reach] (each linear in x)
    lo = np.empty(r1 - r0, np.int64)
    hi = np.empty(r1 - r0, np.int64)
    total = 0
    for r in range(r0, r1):
        dy = r - y0
        a, b = -1e300, 1e300
        # along = (x - x0) ux + dy uy in [0, length]
        if ux != 0.0:
            t0 = x0 + (0.0 - dy * uy) / ux
            t1 = x0 + (length - dy * uy) / ux
            a, b = max(a, min(t0, t1)), min(b, max(t0, t1))
        elif not (-1e-9 <= dy * uy <= length + 1e-9):
            a, b = 1.0, 0.0
        # across = -(x - x0) uy + dy ux in [-reach, reach]
        if uy != 0.0:
            t0 = x0 + (dy * ux - reach) / uy
            t1 = x0 + (dy * ux + reach) / uy
            a, b = max(a, min(t0, t1)), min(b, max(t0, t1))
        elif not (abs(dy * ux) <= reach + 1e-9):
            a, b = 1.0, 0.0
        if b < a - 2.0:
            lo[r - r0], hi[r - r0] = 0, -1
            continue
        c0 = max(int(math.floor(max(a, -1.0))) - 1, 0)
        c1 = min(int(math.ceil(min(b, W + 1.0))) + 1, W - 1)
        lo[r - r0], hi[r - r0] = c0, c1
        if c1 >= c0:
            total += c1 - c0 + 1
    ys = np.empty(total, np.int64)
    xs = np.empty(total, np.int64)
    k = 0
    for r in range(r0, r1):
        for c in range(lo[r - r0], hi[r - r0] + 1):
            along = (c - x0) * ux + (r - y0) * uy
            across = -(c - x0) * uy + (r - y0) * ux
            if abs(across) <= reach and along >= 0 and along <= length:
                ys[k] = r
                xs[k] = c
                k += 1
    return ys[:k], xs[:k]


@nb.njit(**_JIT)
def cell_medians(cell, values, n_cells, fill):
    """Median of ``values`` in each cell (``fill`` where a cell is empty): a counting sort, then each cell
    sorted in place."""
    n = cell.shape[0]
    starts = np.zeros(n_cells + 1, np.int64)
    for i in range(n):
        starts[cell[i] + 1] += 1
    for c in range(n_cells):
        starts[c + 1] += starts[c]
    pos = starts[:-1].copy()
    grouped = np.empty(n, np.float64)
    for i in range(n):
        grouped[pos[cell[i]]] = values[i]
        pos[cell[i]] += 1
    out = np.full(n_cells, fill)
    for c in range(n_cells):
        s, e = starts[c], starts[c + 1]
        if e > s:
            part = grouped[s:e]
            part.sort()
            m = e - s
            out[c] = 0.5 * (part[(m - 1) // 2] + part[m // 2])
    return out


@nb.njit(parallel=True, **_JIT)
def hough_votes(xs, ys, cos32, sin32, offset, inv_step, n_rho):
    """One vote per point in its rho bin at every angle, with the float32 arithmetic of the NumPy accumulator.

    ``rho = x cos + y sin + offset``, times ``inv_step``, truncated: the same
    float32 operations in the same order as
    :func:`astroray.imaging.streaks._accumulate_numpy`, so the same bins.
    Returns the (angles, n_rho) int64 votes.  Angles run in parallel (each
    thread owns its rows of the accumulator).
    """
    n_t = cos32.shape[0]
    acc = np.zeros((n_t, n_rho), np.int64)
    x32 = xs.astype(np.float32)
    y32 = ys.astype(np.float32)
    for t in nb.prange(n_t):
        c, s = cos32[t], sin32[t]
        for i in range(x32.shape[0]):
            rho = x32[i] * c
            rho += y32[i] * s
            rho += offset
            rho *= inv_step
            acc[t, np.int32(rho)] += 1
    return acc
