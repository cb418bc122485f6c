"""Per-object measurements from a segmentation map, as ``xp`` array code."""
from __future__ import annotations

import numpy as np

from astroray.kernels.backend import array_module_of, bincount, to_numpy
from astroray.kernels.catalog import OBJ_SINGU, OBJ_TRUNC

__all__ = ["moments_errors", "analyse", "minarea_threshold", "segment_max_first", "segment_min_max_int",
           "segment_kth_largest", "lutz_chain_rank"]


def moments_errors(segmentation, data, error, catalog, *, gain=None, filtered=None):
    """SEP's ``errx2, erry2, errxy`` of each segmentation label.

    ``sum(var * dx^2) / cflux^2`` over the object's pixels, with ``dx`` from
    the catalog barycentre and the singular-ellipse correction of SEP's
    ``analyse``; ``var`` adds ``filtered / gain`` for positive pixels when a
    gain is given.
    """
    xp = array_module_of(data)
    seg = xp.asarray(segmentation)
    n = len(catalog)
    ys, xs = xp.nonzero(seg)
    lab = seg[ys, xs].astype(xp.int64) - 1
    if np.ndim(error) == 0:
        var = xp.full(lab.shape, float(error) ** 2, dtype=xp.float64)
    else:
        var = xp.asarray(error, dtype=xp.float64)[ys, xs] ** 2
    if gain:
        fv = xp.asarray(filtered if filtered is not None else data, dtype=xp.float64)[ys, xs]
        var = var + xp.where(fv > 0, fv / gain, 0.0)
    cx = xp.asarray(np.asarray(catalog["x"], np.float64))
    cy = xp.asarray(np.asarray(catalog["y"], np.float64))
    rv = xp.asarray(np.asarray(catalog["cflux"], np.float64))
    dx = xs - cx[lab]
    dy = ys - cy[lab]
    ex2 = bincount(lab, weights=var * dx * dx, minlength=n) / rv ** 2
    ey2 = bincount(lab, weights=var * dy * dy, minlength=n) / rv ** 2
    exy = bincount(lab, weights=var * dx * dy, minlength=n) / rv ** 2
    vsum = bincount(lab, weights=var, minlength=n) * (0.08333 / rv ** 2)
    x2 = xp.asarray(np.asarray(catalog["x2"], np.float64))
    y2 = xp.asarray(np.asarray(catalog["y2"], np.float64))
    xy = xp.asarray(np.asarray(catalog["xy"], np.float64))
    singular = ((x2 - 0.0833333) * (y2 - 0.0833333) - xy * xy < 0.00694) & (ex2 * ey2 - exy * exy < vsum * vsum)
    ex2 = xp.where(singular, ex2 + vsum, ex2)
    ey2 = xp.where(singular, ey2 + vsum, ey2)
    return ex2, ey2, exy


# --------------------------------------------------------------------------- segment reductions


def _orderable(values):
    """float32 -> int64 keys with the same order (IEEE bit trick, NaN-free input)."""
    xp = array_module_of(values)
    bits = xp.ascontiguousarray(values, dtype=xp.float32).view(xp.uint32).astype(xp.int64)
    return xp.where(bits >= 0x80000000, 0xFFFFFFFF - bits, bits + 0x80000000)


def segment_max_first(values, obj, n):
    """Per object: the largest value and the index of its first pixel (pixel lists sorted by object)."""
    xp = array_module_of(values)
    key = (obj.astype(xp.int64) << 32) | _orderable(values)
    srt = xp.sort(key)
    counts = bincount(obj, minlength=n)[:n]
    last = xp.cumsum(counts) - 1
    vmax_key = srt[last] & 0xFFFFFFFF
    hit = _orderable(values) == vmax_key[obj]
    cand = xp.flatnonzero(hit)
    _, first = xp.unique(obj[cand], return_index=True)  # one hit per object; first in pixel order
    arg = cand[first]
    return values[arg], arg


def segment_min_max_int(values, obj, n):
    """Per object: min and max of a non-negative integer quantity (< 2**31)."""
    xp = array_module_of(values)
    srt = xp.sort((obj.astype(xp.int64) << 32) | values.astype(xp.int64))
    counts = bincount(obj, minlength=n)[:n]
    end = xp.cumsum(counts)
    return srt[end - counts] & 0xFFFFFFFF, srt[end - 1] & 0xFFFFFFFF


def segment_kth_largest(values, obj, n, k):
    """Per object: the k-th largest value (1-based); 0 where the object has fewer than k pixels."""
    xp = array_module_of(values)
    key = (obj.astype(xp.int64) << 32) | (0xFFFFFFFF - _orderable(values))  # descending inside objects
    order = xp.argsort(key)
    counts = bincount(obj, minlength=n)[:n]
    start = xp.cumsum(counts) - counts
    pos = xp.minimum(start + k - 1, values.shape[0] - 1)
    out = values[order[pos]]
    return xp.where(counts >= k, out, 0).astype(xp.float32)


def _sum(obj, weights, n):
    return bincount(obj, weights=weights, minlength=n)[:n]


# --------------------------------------------------------------------------- SExtractor's analyse


def analyse(pixels, object_thresh, *, image_shape, gain=None, centre=None, merged=None, base_flag=None):
    """Isophotal measurements of every object of a pixel list (SEP's ``analyse``).

    Parameters
    ----------
    pixels : PixelList
        Sorted by object.
    object_thresh : array (n,) float32
        Each object's detection threshold.
    image_shape : (int, int)
    gain : float, optional
        Adds ``cvalue / gain`` of positive pixels to the variance.
    centre : (array, array), optional
        Barycentres to keep for ``merged`` objects (SEP's robust re-analysis
        of deblended objects keeps the barycentre of the deblending seed).
    merged : array (n,) bool, optional
    base_flag : array (n,) int, optional
        Flags carried in (MERGED, TRUNC of a seed).

    Returns
    -------
    dict of arrays (n,)
        SEP's catalog fields plus ``abcor`` and ``fdflux``.
    """
    xp = array_module_of(pixels.x)
    n = pixels.n_objects
    obj = pixels.obj
    h, w = image_shape
    f64 = xp.float64
    cval = pixels.cvalue.astype(f64)
    val = pixels.value.astype(f64)
    npix = pixels.count
    xmin, xmax = segment_min_max_int(pixels.x, obj, n)
    ymin, ymax = pixels.y[pixels.start], pixels.y[pixels.start + npix - 1]
    cpeak, carg = segment_max_first(pixels.cvalue, obj, n)
    peak, parg = segment_max_first(pixels.value, obj, n)
    fdflux = _sum(obj, cval, n).astype(xp.float32)
    rv = fdflux.astype(f64)
    dflux = _sum(obj, val, n)
    xr = (pixels.x - xmin[obj]).astype(f64)
    yr = (pixels.y - ymin[obj]).astype(f64)
    mx = _sum(obj, cval * xr, n)
    my = _sum(obj, cval * yr, n)
    mx2 = _sum(obj, cval * xr * xr, n)
    my2 = _sum(obj, cval * yr * yr, n)
    mxy = _sum(obj, cval * xr * yr, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        xm, ym = mx / rv, my / rv
        if centre is not None and merged is not None:
            xn = centre[0] - xmin
            yn = centre[1] - ymin
            xm2 = xp.where(merged, mx2 / rv + xn * xn - 2 * xm * xn, mx2 / rv - xm * xm)
            ym2 = xp.where(merged, my2 / rv + yn * yn - 2 * ym * yn, my2 / rv - ym * ym)
            xym = xp.where(merged, mxy / rv + xn * yn - xm * yn - xn * ym, mxy / rv - xm * ym)
            xm = xp.where(merged, xn, xm)
            ym = xp.where(merged, yn, ym)
        else:
            xm2, ym2, xym = mx2 / rv - xm * xm, my2 / rv - ym * ym, mxy / rv - xm * ym

        cvar = pixels.var.astype(f64)
        if gain:
            cvar = cvar + xp.where(cval > 0, cval / gain, 0.0)
        dxp = xr - xm[obj]
        dyp = yr - ym[obj]
        rv2 = rv * rv
        errx2 = _sum(obj, cvar * dxp * dxp, n) / rv2
        erry2 = _sum(obj, cvar * dyp * dyp, n) / rv2
        errxy = _sum(obj, cvar * dxp * dyp, n) / rv2
        cvarsum = _sum(obj, cvar, n)

        singular = xm2 * ym2 - xym * xym < 0.00694
        xm2 = xp.where(singular, xm2 + 0.0833333, xm2)
        ym2 = xp.where(singular, ym2 + 0.0833333, ym2)
        temp2 = xm2 * ym2 - xym * xym
        cvs = cvarsum * 0.08333 / rv2
        fix = singular & (errx2 * erry2 - errxy * errxy < cvs * cvs)
        errx2 = xp.where(fix, errx2 + cvs, errx2)
        erry2 = xp.where(fix, erry2 + cvs, erry2)

        diff = xm2 - ym2
        theta = xp.where(xp.abs(diff) > 0, xp.arctan2(2.0 * xym, diff) / 2.0, np.pi / 4.0)
        temp = xp.sqrt(0.25 * diff * diff + xym * xym)
        pmx2 = 0.5 * (xm2 + ym2) + temp
        pmy2 = 0.5 * (xm2 + ym2) - temp
        a = xp.sqrt(pmx2).astype(xp.float32)
        b = xp.sqrt(xp.maximum(pmy2, 0)).astype(xp.float32)
        cxx = (ym2 / temp2).astype(xp.float32)
        cyy = (xm2 / temp2).astype(xp.float32)
        cxy = (-2.0 * xym / temp2).astype(xp.float32)

        thr = object_thresh.astype(xp.float32)
        dnpix = _sum(obj, (pixels.value > thr[obj]).astype(f64), n).astype(xp.int64)
        thresh2 = (thr.astype(f64) + peak.astype(f64)) / 2.0
        area2 = _sum(obj, (val > thresh2[obj]).astype(f64), n)
        darea = area2 - dnpix
        t1t2 = thr.astype(f64) / thresh2
        logt = xp.log(xp.where(t1t2 < 1.0, xp.where(t1t2 > 0, t1t2, 1.0), 0.99))
        abcor = xp.where(darea < 0, darea, -1.0) / (2 * np.pi * logt * a.astype(f64) * b.astype(f64))
        abcor = xp.where(t1t2 > 0, xp.minimum(abcor, 1.0), 1.0).astype(xp.float32)

    edge = (pixels.x == 0) | (pixels.x == w - 1) | (pixels.y == 0) | (pixels.y == h - 1)
    trunc = _sum(obj, edge.astype(f64), n) > 0
    flag = xp.zeros(n, dtype=xp.int64) if base_flag is None else base_flag.astype(xp.int64)
    if base_flag is None:
        flag = flag | xp.where(trunc, OBJ_TRUNC, 0)
    flag = flag | xp.where(singular, OBJ_SINGU, 0)
    return {
        "thresh": thr, "npix": npix.astype(xp.int64), "tnpix": dnpix,
        "xmin": xmin, "xmax": xmax, "ymin": ymin.astype(xp.int64), "ymax": ymax.astype(xp.int64),
        "x": xm + xmin, "y": ym + ymin, "x2": xm2, "y2": ym2, "xy": xym,
        "errx2": errx2, "erry2": erry2, "errxy": errxy,
        "a": a, "b": b, "theta": theta.astype(xp.float32), "cxx": cxx, "cyy": cyy, "cxy": cxy,
        "cflux": fdflux, "flux": dflux.astype(xp.float32), "cpeak": cpeak, "peak": peak,
        "xcpeak": pixels.x[carg], "ycpeak": pixels.y[carg], "xpeak": pixels.x[parg], "ypeak": pixels.y[parg],
        "flag": flag, "abcor": abcor, "fdflux": fdflux,
    }


def lutz_chain_rank(pixels):
    """Position of each pixel in the order SExtractor's Lutz scan chains an object's pixels.

    When a row's run starts left of the previous row's, the scan puts its
    left part *before* everything found so far; otherwise pixels follow in
    raster order. For one run per row this gives exactly
    ``[L_R .. L_1, row_0, R_1 .. R_R]``; rows with several runs are treated
    as one run (an approximation).
    """
    xp = array_module_of(pixels.x)
    obj, x, y = pixels.obj.astype(xp.int64), pixels.x.astype(xp.int64), pixels.y.astype(xp.int64)
    npx = x.shape[0]
    if npx == 0:
        return xp.zeros(0, dtype=xp.int64)
    new_run = xp.ones(npx, dtype=bool)
    new_run[1:] = (obj[1:] != obj[:-1]) | (y[1:] != y[:-1])
    run_id = xp.cumsum(new_run) - 1
    run_start_x = x[xp.flatnonzero(new_run)]
    ymin = y[pixels.start][obj]
    ymax = y[pixels.start + pixels.count - 1][obj]
    r = y - ymin
    prev_start = run_start_x[xp.maximum(run_id - 1, 0)]
    left = (r >= 1) & (x < prev_start)
    second = xp.where(left, ymax - y, r)
    key = (obj << 42) | (xp.where(left, 0, 1) << 41) | (second << 20) | x
    order = xp.argsort(key)
    rank = xp.empty(npx, dtype=xp.int64)
    rank[order] = xp.arange(npx) - pixels.start[obj[order]]
    return rank


def minarea_threshold(pixels, min_area):
    """SEP's ``mthresh`` per object: its heap of the ``min_area`` highest filtered values above threshold.

    SEP fills a heap with the first ``min_area`` pixels in Lutz chain order,
    sorts it at the next pixel (which is never inserted), then pushes each
    later pixel that beats the root with a sift-down that stops after one
    level (its child index is off by one). The result is not always the
    ``min_area``-th largest value, and cleaning depends on it, so the heap is
    replayed exactly (a sequential Numba loop per object, on the host) over
    the pixels in :func:`lutz_chain_rank` order.
    """
    xp = array_module_of(pixels.x)
    tpix = (pixels.cvalue - pixels.thresh).astype(xp.float32)
    rank = lutz_chain_rank(pixels)
    order = xp.argsort((pixels.obj.astype(xp.int64) << 32) | rank)
    from astroray.kernels.extract.clean import replay_mthresh_heap

    out = replay_mthresh_heap(to_numpy(tpix[order]), to_numpy(pixels.start), to_numpy(pixels.count), int(min_area))
    return xp.asarray(out)
