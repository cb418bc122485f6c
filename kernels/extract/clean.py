"""SExtractor's cleaning: drop detections that a brighter neighbour's profile explains.

Each object's profile is modelled as a Moffat-like ``amp (1 + alpha r^2)^-beta``
with ``amp`` and ``alpha`` from its flux, area and threshold; an object is
removed when a brighter object's model at its position exceeds its
``mthresh`` (its ``min_area``-th highest pixel above threshold). The decisions
depend on the order in which objects are visited, so this runs as one
sequential Numba loop on the host over per-object numbers (a few arrays of
length ``n``; the pixels stay on the device).
"""
from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["clean_survivors", "replay_mthresh_heap", "CLEAN_ZONE"]

CLEAN_ZONE = 10.0


@numba.njit(cache=True)
def _clean(mx, my, a, b, cxx, cyy, cxy, fdflux, thresh, fdnpix, abcor, mthresh, beta, order, xsorted, amax):
    n = mx.shape[0]
    survives = np.ones(n, dtype=np.bool_)
    for i in range(n):
        if not survives[i]:
            continue
        unitareain = math.pi * np.float64(a[i]) * np.float64(b[i])
        ampin = np.float64(fdflux[i]) / (2.0 * unitareain * np.float64(abcor[i]))
        alphain = ((ampin / np.float64(thresh[i])) ** (1.0 / beta) - 1.0) * unitareain / fdnpix[i]
        # Candidates: objects with |dx| within the largest possible clean zone, visited by index.
        reach = (np.float64(a[i]) + amax) * CLEAN_ZONE + 1.0
        lo = np.searchsorted(xsorted, mx[i] - reach, side="left")
        hi = np.searchsorted(xsorted, mx[i] + reach, side="right")
        cand = np.sort(order[lo:hi])
        for jj in range(cand.shape[0]):
            j = cand[jj]
            if j <= i or not survives[j]:
                continue
            dx = np.float32(mx[i] - mx[j])
            dy = np.float32(my[i] - my[j])
            rlim = np.float32(a[i] + a[j])
            rlim = np.float32(rlim * rlim)
            if np.float64(dx * dx + dy * dy) > np.float64(rlim) * CLEAN_ZONE * CLEAN_ZONE:
                continue
            if fdflux[j] < fdflux[i]:
                quad = cxx[i] * dx * dx + cyy[i] * dy * dy + cxy[i] * dx * dy  # float32, as SEP
                val = 1.0 + alphain * np.float64(quad)
                if val > 1.0:
                    model = np.float32(ampin * val ** (-beta)) if val < 1e10 else np.float32(0.0)
                    if model > mthresh[j]:
                        survives[j] = False
            else:
                unitarea = math.pi * np.float64(a[j]) * np.float64(b[j])
                amp = np.float64(fdflux[j]) / (2.0 * unitarea * np.float64(abcor[j]))
                alpha = ((amp / np.float64(thresh[j])) ** (1.0 / beta) - 1.0) * unitarea / fdnpix[j]
                quad = cxx[j] * dx * dx + cyy[j] * dy * dy + cxy[j] * dx * dy
                val = 1.0 + alpha * np.float64(quad)
                if val > 1.0:
                    model = np.float32(amp * val ** (-beta)) if val < 1e10 else np.float32(0.0)
                    if model > mthresh[i]:
                        survives[i] = False  # and, as in SEP, it may still eat later objects
    return survives


@numba.njit(cache=True)
def _mthresh_heap(tpix, start, count, minarea, out):
    heap = np.empty(minarea, dtype=np.float32)
    for o in range(start.shape[0]):
        s = start[o]
        c = count[o]
        if c < minarea:
            out[o] = 0.0
            continue
        h = minarea
        for i in range(c):
            t = tpix[s + i]
            if h > 0:
                heap[minarea - h] = t
            elif h == 0:
                heap.sort()  # SEP's fqmedian sorts in place; this pixel is never inserted
            elif t > heap[0]:
                heap[0] = t
                j = 0
                while True:
                    k = (j + 1) * 2
                    if k > minarea:
                        break
                    hk = k
                    if k != minarea and heap[hk - 1] > heap[hk]:
                        hk += 1
                        k += 1
                    hk -= 1
                    if heap[j] <= heap[hk]:
                        break
                    tmp = heap[hk]
                    heap[hk] = heap[j]
                    heap[j] = tmp
                    j = k  # SEP continues from here, one past the node it swapped
            h -= 1
        out[o] = heap[0]


def replay_mthresh_heap(tpix_chain, start, count, min_area):
    """SEP's ``analysemthresh`` heap, replayed per object over chain-ordered ``cvalue - thresh`` (host arrays)."""
    out = np.zeros(len(start), dtype=np.float32)
    if len(start):
        _mthresh_heap(np.ascontiguousarray(tpix_chain, dtype=np.float32), np.asarray(start, np.int64),
                      np.asarray(count, np.int64), int(min_area), out)
    return out


def clean_survivors(x, y, a, b, cxx, cyy, cxy, fdflux, thresh, npix, abcor, mthresh, *, clean_param=1.0):
    """Which objects survive cleaning (SEP's ``clean``), as a host boolean array.

    All inputs are host (NumPy) arrays of length ``n`` in SEP's object order.
    """
    n = len(x)
    if n == 0:
        return np.ones(0, dtype=bool)
    mx = np.asarray(x, np.float64)
    order = np.argsort(mx, kind="stable").astype(np.int64)
    a32 = np.asarray(a, np.float32)
    return _clean(mx, np.asarray(y, np.float64), a32, np.asarray(b, np.float32),
                  np.asarray(cxx, np.float32), np.asarray(cyy, np.float32), np.asarray(cxy, np.float32),
                  np.asarray(fdflux, np.float32), np.asarray(thresh, np.float32), np.asarray(npix, np.float64),
                  np.asarray(abcor, np.float32), np.asarray(mthresh, np.float32), float(clean_param), order,
                  mx[order], float(a32.max()))
