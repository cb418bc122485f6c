"""SExtractor's mesh background as array code (NumPy or CuPy, one source).

The steps and their constants follow SExtractor as SEP implements it
(``back.c``), so the maps agree with SExtractor's to float precision:

1. per mesh: mean and sigma of the unmasked pixels, a second pass clipped
   at +-2 sigma, then a histogram of ``int(5 sqrt(2/pi) n / 4) + 1`` levels
   (at most 4096) spanning +-5 sigma;
2. per mesh, iterated up to 100 times: mean, sigma and an interpolated
   median of the histogram within ``median +- 3 sigma``; the mode estimate is
   ``2.5 median - 1.5 mean`` when ``|mean - median| < 0.3 sigma``, else the
   median (meshes with under half their pixels unmasked are "bad");
3. bad meshes take the mean of their nearest good meshes; a median filter of
   ``filter_size`` meshes (shrunk symmetrically at the edges) replaces
   meshes that differ from it by at least ``filter_threshold``;
4. natural cubic splines through the mesh grid, first along y at each row of
   pixels, then along x, give the full-resolution maps.

Every step is vectorised across meshes; the only Python loops run over the
histogram iterations (until all meshes converge) and over the mesh grid's
rows/columns for the spline recurrences.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from numba import cuda

from astroray.kernels.backend import array_module_of, bincount, launch

__all__ = ["MeshBackground", "mesh_background", "mesh_statistics", "filter_meshes", "interpolate_meshes",
           "histogram_mode_cpu", "histogram_mode_cuda"]

_MIN_GOOD_FRACTION = 0.5
_NSIGMA = 5
_MAX_LEVELS = 4096
_AMIN = 4
_BIG = 1e30


@dataclass
class MeshBackground:
    """Full-resolution maps and the mesh grid they were built from.

    Attributes
    ----------
    background, rms : array (H, W) float32
    global_background, global_rms : float
    mesh_background, mesh_rms : array (ny, nx) float32
        The filtered mesh values the splines pass through.
    """

    background: Any
    rms: Any
    global_background: float
    global_rms: float
    mesh_background: Any
    mesh_rms: Any


def mesh_background(data, mask=None, *, box_size=(64, 64), filter_size=(3, 3), filter_threshold=0.0):
    """Background and RMS maps of ``data`` (see the module docstring).

    Parameters
    ----------
    data : array (H, W) float
        NumPy or CuPy; masked pixels may hold anything finite.
    mask : array (H, W) bool, optional
        True marks pixels to ignore.
    box_size, filter_size : (int, int)
        ``(height, width)`` of a mesh in pixels and of the median filter in meshes.
    filter_threshold : float

    Returns
    -------
    MeshBackground
    """
    xp = array_module_of(data)
    bh, bw = (int(v) for v in box_size)
    back, sigma = mesh_statistics(data, mask, box_size=(bh, bw))
    back, sigma, gback, grms = filter_meshes(back, sigma, filter_size=filter_size,
                                             filter_threshold=filter_threshold)
    h, w = data.shape
    bmap = interpolate_meshes(back, (h, w), (bh, bw))
    rmap = interpolate_meshes(sigma, (h, w), (bh, bw))
    return MeshBackground(bmap, rmap, gback, grms, back.astype(xp.float32), sigma.astype(xp.float32))


# --------------------------------------------------------------------------- 1-2: mesh statistics


def _mesh_view(data, mask, bh, bw):
    """(ny, nx, bh*bw) pixels and validity, padding the last row/column as invalid."""
    xp = array_module_of(data)
    h, w = data.shape
    ny, nx = (h - 1) // bh + 1, (w - 1) // bw + 1
    ph, pw = ny * bh - h, nx * bw - w
    valid = xp.ones((h, w), dtype=bool) if mask is None else ~mask
    if ph or pw:
        data = xp.pad(data, ((0, ph), (0, pw)))
        valid = xp.pad(valid, ((0, ph), (0, pw)))  # pads with False
    pix = data.reshape(ny, bh, nx, bw).transpose(0, 2, 1, 3).reshape(ny, nx, bh * bw)
    ok = valid.reshape(ny, bh, nx, bw).transpose(0, 2, 1, 3).reshape(ny, nx, bh * bw)
    # Size of each mesh inside the image (the last row/column may be partial).
    mh = xp.minimum(bh, h - xp.arange(ny) * bh)
    mw = xp.minimum(bw, w - xp.arange(nx) * bw)
    return pix, ok, mh[:, None] * mw[None, :]


def mesh_statistics(data, mask=None, *, box_size=(64, 64)):
    """Mode estimate and sigma of every mesh, ``-1e30`` for bad meshes.

    Returns
    -------
    back, sigma : array (ny, nx) float32
    """
    xp = array_module_of(data)
    bh, bw = box_size
    pix, ok, area = _mesh_view(xp.asarray(data, dtype=xp.float32), mask, bh, bw)
    pix64 = pix.astype(xp.float64)

    # First pass: plain mean and sigma (double sums, as SEP).
    n = ok.sum(axis=2)
    good = n.astype(xp.float32) >= (area * _MIN_GOOD_FRACTION).astype(xp.float32)
    nsafe = xp.maximum(n, 1)
    s1 = xp.where(ok, pix64, 0).sum(axis=2)
    s2 = xp.where(ok, pix64 * pix64, 0).sum(axis=2)
    mean = s1 / nsafe
    var = s2 / nsafe - mean * mean
    sig = xp.where(var > 0, xp.sqrt(xp.maximum(var, 0)), 0.0)
    lcut = (mean - 2.0 * sig).astype(xp.float32)[..., None]
    hcut = (mean + 2.0 * sig).astype(xp.float32)[..., None]

    # Second pass within +-2 sigma.
    ok2 = ok & (pix <= hcut) & (pix >= lcut)
    n2 = ok2.sum(axis=2)
    n2safe = xp.maximum(n2, 1)
    mean2 = xp.where(ok2, pix64, 0).sum(axis=2) / n2safe
    var2 = xp.where(ok2, pix64 * pix64, 0).sum(axis=2) / n2safe - mean2 * mean2
    sig2 = xp.where(var2 > 0, xp.sqrt(xp.maximum(var2, 0)), 0.0)
    step = math.sqrt(2 / math.pi) * _NSIGMA / _AMIN
    nlevels = xp.minimum((step * n2 + 1).astype(xp.int64), _MAX_LEVELS)
    mean_f = mean2.astype(xp.float32)
    # Stored as float like SEP's mesh struct, computed from the double sums.
    qscale = xp.where(sig2 > 0, 2 * _NSIGMA * sig2 / xp.maximum(nlevels, 1), 1.0).astype(xp.float32)
    qzero = (mean2 - _NSIGMA * sig2).astype(xp.float32)

    # Histogram: bin = (int)(pix / qscale + cste) in float32, truncating toward zero as C does.
    cste = (0.499999 - (qzero / qscale).astype(xp.float64)).astype(xp.float32)
    binf = pix / qscale[..., None] + cste[..., None]
    bins = xp.trunc(binf)
    inhist = ok & good[..., None] & (bins >= 0) & (bins < nlevels[..., None])
    nmesh = ny_nx = good.size
    flat = (xp.arange(ny_nx).reshape(good.shape)[..., None] * (_MAX_LEVELS + 1) + xp.where(inhist, bins, 0).astype(xp.int64))
    hist = bincount(flat[inhist], minlength=nmesh * (_MAX_LEVELS + 1)).reshape(nmesh, _MAX_LEVELS + 1)

    # One loop per mesh: Numba on the CPU, a CUDA thread per mesh on the GPU (the vectorised
    # _histogram_mode is the reference both are tested against).
    mode_fn = histogram_mode_cpu if xp is np else histogram_mode_cuda
    back, sigma = mode_fn(hist, nlevels.ravel(), mean_f.ravel(), qzero.ravel(), qscale.ravel())
    back = xp.where(good.ravel(), back, -_BIG).reshape(good.shape).astype(xp.float32)
    sigma = xp.where(good.ravel(), sigma, -_BIG).reshape(good.shape).astype(xp.float32)
    return back, sigma


def _histogram_mode(hist, nlevels, mean0, qzero, qscale):
    """SExtractor's ``backguess`` for every mesh at once.

    ``hist`` is (n, L+1) with a zero last column (SEP may read one bin past
    the end); each iteration finds mean, sigma and the interpolated median
    inside ``[lcut, hcut]`` from prefix sums.
    """
    xp = array_module_of(hist)
    n = hist.shape[0]
    levels = xp.arange(hist.shape[1], dtype=xp.float64)
    h64 = hist.astype(xp.float64)
    zero = xp.zeros((n, 1), dtype=xp.float64)
    c0 = xp.concatenate([zero, xp.cumsum(h64, axis=1)], axis=1)  # c0[k] = sum h[:k]
    c1 = xp.concatenate([zero, xp.cumsum(h64 * levels, axis=1)], axis=1)
    c2 = xp.concatenate([zero, xp.cumsum(h64 * levels * levels, axis=1)], axis=1)
    rows = xp.arange(n)

    nlm1 = (nlevels - 1).astype(xp.int64)
    lcut = xp.zeros(n, dtype=xp.int64)
    hcut = nlm1.copy()
    sig = 10.0 * nlm1.astype(xp.float64)
    sig1 = xp.ones(n, dtype=xp.float64)
    mea = mean0.astype(xp.float64)
    med = mean0.astype(xp.float64)
    active = xp.ones(n, dtype=bool)
    for _ in range(100):
        active = active & (sig >= 0.1) & (xp.abs(sig / sig1 - 1.0) > 1e-4)
        if not bool(active.any()):
            break
        sig1 = xp.where(active, sig, sig1)
        lo, hi = lcut, hcut
        total = c0[rows, hi + 1] - c0[rows, lo]
        m1 = c1[rows, hi + 1] - c1[rows, lo]
        m2 = c2[rows, hi + 1] - c2[rows, lo]
        # The two-pointer walk ends where the low and high partial sums cross:
        # after k = hi - lo + 1 steps the low pointer has taken a bins, the
        # largest a with lowsum(a - 1) < highsum(k - a); find it by bisection.
        k = hi - lo + 1
        a_lo = xp.zeros(n, dtype=xp.int64)  # predicate true at a = 0
        a_hi = k.copy()
        for _ in range(int(math.ceil(math.log2(_MAX_LEVELS + 2))) + 1):
            mid = (a_lo + a_hi + 1) // 2
            low_sum = c0[rows, lo + mid - 1] - c0[rows, lo]  # bins lo .. lo+mid-2
            high_sum = c0[rows, hi + 1] - c0[rows, xp.maximum(hi + 1 - (k - mid), 0)]
            take = (mid >= 1) & (low_sum < high_sum) & (mid <= a_hi)
            a_lo = xp.where(take, mid, a_lo)
            a_hi = xp.where(take, a_hi, mid - 1)
        a = a_lo
        hilow = lo + a
        hihigh = hilow - 1
        lowsum = c0[rows, hilow] - c0[rows, lo]
        highsum = c0[rows, hi + 1] - c0[rows, hihigh + 1]
        hl = hist[rows, xp.minimum(hilow, hist.shape[1] - 1)].astype(xp.float64)
        hh = hist[rows, xp.maximum(hihigh, 0)].astype(xp.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            med_new = xp.where(hihigh >= 0, hihigh + 0.5 + (highsum - lowsum) / (2.0 * xp.maximum(hl, hh)), 0.0)
            mea_new = xp.where(total > 0, m1 / xp.where(total > 0, total, 1), 0.0)
            var = xp.where(total > 0, m2 / xp.where(total > 0, total, 1) - mea_new * mea_new, 0.0)
        sig_new = xp.where(var > 0, xp.sqrt(xp.maximum(var, 0)), 0.0)
        lo_t = med_new - 3.0 * sig_new
        hi_t = med_new + 3.0 * sig_new
        lcut_new = xp.where(lo_t > 0, xp.trunc(lo_t + 0.5), 0).astype(xp.int64)
        hcut_new = xp.where(hi_t < nlm1, xp.where(hi_t > 0, xp.trunc(hi_t + 0.5), xp.trunc(hi_t - 0.5)), nlm1)
        hcut_new = hcut_new.astype(xp.int64)
        mea = xp.where(active, mea_new, mea)
        med = xp.where(active, med_new, med)
        sig = xp.where(active, sig_new, sig)
        lcut = xp.where(active, lcut_new, lcut)
        hcut = xp.where(active, hcut_new, hcut)
    q0 = qzero.astype(xp.float64)
    qs = qscale.astype(xp.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        skew_ok = xp.abs((mea - med) / xp.where(sig != 0, sig, 1)) < 0.3
    mode = xp.where(xp.abs(sig) > 0, xp.where(skew_ok, q0 + (2.5 * med - 1.5 * mea) * qs, q0 + med * qs),
                    q0 + mea * qs)
    return mode.astype(xp.float32), (sig * qs).astype(xp.float32)


# The same estimate as a per-mesh loop (SExtractor's two-pointer walk verbatim in
# spirit): on the GPU one thread per mesh replaces ~thousands of small array
# launches. Compiled for CUDA on first use; CI runs it under the simulator and
# compares it with the vectorised twin above.



def _mesh_mode_body(m, hist, nlevels, mean0, qzero, qscale, out_mode, out_sig):
    nl = nlevels[m]
    width = hist.shape[1]
    nlm1 = nl - 1
    lcut = 0
    hcut = nlm1
    sig = 10.0 * nlm1
    sig1 = 1.0
    mea = float(mean0[m])
    med = float(mean0[m])
    for _ in range(100):
        if not (sig >= 0.1 and abs(sig / sig1 - 1.0) > 1e-4):
            break
        sig1 = sig
        total = 0.0
        mea = 0.0
        sig = 0.0
        lowsum = 0
        highsum = 0
        hilow = lcut
        hihigh = hcut
        for i in range(lcut, hcut + 1):
            if lowsum < highsum:
                lowsum += hist[m, hilow]
                hilow += 1
            else:
                highsum += hist[m, hihigh]
                hihigh -= 1
            pix = float(hist[m, i])
            total += pix
            mea += pix * i
            sig += pix * i * i
        if hihigh >= 0:
            hl = hist[m, hilow] if hilow < width else 0
            hh = hist[m, hihigh]
            big = hl if hl > hh else hh
            diff = float(highsum - lowsum)
            if big > 0:
                med = hihigh + 0.5 + diff / (2.0 * big)
            elif diff > 0:
                med = math.inf
            elif diff < 0:
                med = -math.inf
            else:
                med = math.nan
        else:
            med = 0.0
        if total > 0:
            mea = mea / total
            sig = sig / total - mea * mea
        sig = math.sqrt(sig) if sig > 0.0 else 0.0
        lo_t = med - 3.0 * sig
        lcut = int(lo_t + 0.5) if lo_t > 0.0 else 0
        hi_t = med + 3.0 * sig
        if hi_t < nlm1:
            hcut = int(hi_t + 0.5) if hi_t > 0.0 else int(hi_t - 0.5)
        else:
            hcut = nlm1
    q0 = float(qzero[m])
    qs = float(qscale[m])
    if abs(sig) > 0.0:
        if abs((mea - med) / sig) < 0.3:
            out_mode[m] = q0 + (2.5 * med - 1.5 * mea) * qs
        else:
            out_mode[m] = q0 + med * qs
    else:
        out_mode[m] = q0 + mea * qs
    out_sig[m] = sig * qs


@functools.cache
def _mesh_mode_kernel():
    body = cuda.jit(device=True)(_mesh_mode_body)

    @cuda.jit
    def kernel(hist, nlevels, mean0, qzero, qscale, out_mode, out_sig):
        m = cuda.grid(1)
        if m < hist.shape[0]:
            body(m, hist, nlevels, mean0, qzero, qscale, out_mode, out_sig)

    return kernel


@functools.cache
def _mesh_mode_cpu():
    import numba

    body = numba.njit(_mesh_mode_body)

    @numba.njit
    def all_meshes(hist, nlevels, mean0, qzero, qscale, out_mode, out_sig):
        for m in range(hist.shape[0]):
            body(m, hist, nlevels, mean0, qzero, qscale, out_mode, out_sig)

    return all_meshes


def histogram_mode_cpu(hist, nlevels, mean0, qzero, qscale):
    """``backguess`` for every mesh as a Numba loop (the CPU twin of :func:`histogram_mode_cuda`)."""
    n = hist.shape[0]
    out_mode = np.zeros(n, dtype=np.float64)
    out_sig = np.zeros(n, dtype=np.float64)
    if n:
        _mesh_mode_cpu()(np.ascontiguousarray(hist, dtype=np.int64), np.asarray(nlevels, np.int64),
                         np.asarray(mean0, np.float64), np.asarray(qzero, np.float64),
                         np.asarray(qscale, np.float64), out_mode, out_sig)
    return out_mode.astype(np.float32), out_sig.astype(np.float32)


def histogram_mode_cuda(hist, nlevels, mean0, qzero, qscale):
    """``backguess`` for every mesh, one CUDA thread per mesh (CuPy arrays, or NumPy under the simulator)."""
    xp = array_module_of(hist)
    n = hist.shape[0]
    out_mode = xp.zeros(n, dtype=xp.float64)
    out_sig = xp.zeros(n, dtype=xp.float64)
    launch(_mesh_mode_kernel(), n, hist.astype(xp.int64, copy=False), nlevels.astype(xp.int64),
           mean0.astype(xp.float64), qzero.astype(xp.float64), qscale.astype(xp.float64), out_mode, out_sig)
    return out_mode.astype(xp.float32), out_sig.astype(xp.float32)


# --------------------------------------------------------------------------- 3: bad meshes and median filter


def _median_sorted(values, xp):
    """Median as SEP's ``fqmedian``: the mean of the two middle values for even sizes."""
    v = xp.sort(values.ravel())
    n = v.size
    if n == 0:
        return 0.0
    return float(v[n // 2]) if n % 2 else float((v[n // 2 - 1].astype(xp.float64) + v[n // 2]) / 2)


def filter_meshes(back, sigma, *, filter_size=(3, 3), filter_threshold=0.0):
    """Fill bad meshes, median filter, and the global background and RMS.

    Returns
    -------
    back, sigma : array (ny, nx) float32
    global_background, global_rms : float
    """
    xp = array_module_of(back)
    ny, nx = back.shape
    back = back.astype(xp.float32).copy()
    sigma = sigma.astype(xp.float32).copy()
    bad = back <= -_BIG
    if bool(bad.any()):
        good = ~bad
        if not bool(good.any()):
            back[...] = 0.0
            sigma[...] = 1.0
        else:
            gy, gx = xp.nonzero(good)
            by, bx = xp.nonzero(bad)
            d2 = ((gx[None, :] - bx[:, None]) ** 2 + (gy[None, :] - by[:, None]) ** 2).astype(xp.float32)
            nearest = d2 == d2.min(axis=1, keepdims=True)
            cnt = nearest.sum(axis=1)
            back[by, bx] = ((nearest * back[gy, gx][None, :]).sum(axis=1) / cnt).astype(xp.float32)
            sigma[by, bx] = ((nearest * sigma[gy, gx][None, :]).sum(axis=1) / cnt).astype(xp.float32)

    fh, fw = (int(v) for v in filter_size)
    npy, npx = fh // 2, fw // 2
    if npy or npx:
        # Window half-sizes shrink symmetrically at the grid edges (SExtractor's rule).
        iy, ix = xp.arange(ny), xp.arange(nx)
        hy = xp.minimum(xp.minimum(iy, ny - 1 - iy), npy)
        hx = xp.minimum(xp.minimum(ix, nx - 1 - ix), npx)
        oy = xp.arange(-npy, npy + 1)
        ox = xp.arange(-npx, npx + 1)
        use_y = xp.abs(oy)[None, :] <= hy[:, None]  # (ny, wy)
        use_x = xp.abs(ox)[None, :] <= hx[:, None]  # (nx, wx)
        yy = xp.clip(iy[:, None] + oy[None, :], 0, ny - 1)
        xx = xp.clip(ix[:, None] + ox[None, :], 0, nx - 1)
        use = use_y[:, None, :, None] & use_x[None, :, None, :]  # (ny, nx, wy, wx)
        count = use.reshape(ny, nx, -1).sum(axis=2)

        def windowed_median(grid):
            win = grid[yy[:, None, :, None], xx[None, :, None, :]]  # (ny, nx, wy, wx)
            win = xp.where(use, win, xp.inf).reshape(ny, nx, -1)
            win = xp.sort(win, axis=2)
            return xp.take_along_axis(win, (count // 2)[..., None], axis=2)[..., 0]  # odd counts

        med_b = windowed_median(back)
        med_s = windowed_median(sigma)
        replace = xp.abs(med_b - back) >= np.float32(filter_threshold)
        back = xp.where(replace, med_b, back).astype(xp.float32)
        sigma = xp.where(replace, med_s, sigma).astype(xp.float32)

    gback = _median_sorted(back, xp)
    grms = _median_sorted(sigma, xp)
    if grms <= 0.0:
        positive = sigma[sigma > 0]
        grms = _median_sorted(positive, xp) if positive.size else 1.0
    return back, sigma, gback, grms


# --------------------------------------------------------------------------- 4: bicubic spline


@functools.cache
def _spline_matrix(n: int) -> np.ndarray:
    """The (n, n) matrix taking node values to SExtractor's natural-spline coefficients.

    The recurrence (unit node spacing, natural ends) is linear in the node
    values, so it is run once on the identity and then applied as one matrix
    product: one launch on the GPU instead of a loop over the nodes.
    """
    eye = np.eye(n)
    d = np.zeros((n, n))
    if n < 3:
        return d
    u = np.zeros((n, n))
    for i in range(1, n - 1):
        t = -1.0 / (d[i - 1] + 4.0)
        d[i] = t
        u[i] = t * (u[i - 1] - 6.0 * (eye[i + 1] + eye[i - 1] - 2.0 * eye[i]))
    for i in range(n - 2, 0, -1):
        d[i] = d[i] * d[i + 1] + u[i]
        d[i] /= 6.0
    return d  # row i: coefficients of node values in d_i


def _spline_second_derivatives(grid, axis):
    """SExtractor's natural-spline coefficients along ``axis`` (unit node spacing)."""
    xp = array_module_of(grid)
    m = xp.asarray(_spline_matrix(grid.shape[axis]))
    g = grid.astype(xp.float64)
    return m @ g if axis == 0 else g @ m.T


def interpolate_meshes(grid, shape, box_size):
    """Full-resolution map through the mesh grid (SEP's ``backline`` for every row).

    Along y the node positions are ``y / bh - 0.5``; along x the pixel centres
    ``(x + 0.5) / bw - 0.5`` (SExtractor's convention). Outside the outermost
    nodes the end segments extrapolate.
    """
    xp = array_module_of(grid)
    h, w = shape
    bh, bw = box_size
    ny, nx = grid.shape
    g = grid.astype(xp.float64)
    if ny > 1:
        dgy = _spline_second_derivatives(g, 0)
        dy = xp.arange(h, dtype=xp.float32) / np.float32(bh) - np.float32(0.5)
        yl = xp.trunc(dy).astype(xp.int64)
        dy = (dy - yl).astype(xp.float64)
        top = yl >= ny - 1
        yl = xp.where(top, max(ny - 2, 0), yl)
        dy = xp.where(top, dy + 1.0, dy)
        cdy = 1.0 - dy
        node = (cdy[:, None] * g[yl] + dy[:, None] * g[yl + 1]
                + (cdy ** 3 - cdy)[:, None] * dgy[yl] + (dy ** 3 - dy)[:, None] * dgy[yl + 1])  # (h, nx)
        dnode = _spline_second_derivatives(node, 1)
    else:
        # One row of meshes: SEP reuses the (zero) y-derivatives along x, i.e. linear in x.
        node = xp.broadcast_to(g[0], (h, nx))
        dnode = xp.zeros_like(node)
    if nx > 1:
        centres = (xp.arange(w, dtype=xp.float64) + 0.5) / bw - 0.5
        seg = xp.clip(xp.floor(centres).astype(xp.int64), 0, nx - 2)
        dx = centres - seg
        cdx = 1.0 - dx
        out = (cdx * (node[:, seg] + (cdx * cdx - 1.0) * dnode[:, seg])
               + dx * (node[:, seg + 1] + (dx * dx - 1.0) * dnode[:, seg + 1]))
    else:
        out = xp.broadcast_to(node[:, :1], (h, w))
    return xp.ascontiguousarray(out.astype(xp.float32))
