"""Numba CPU versions of ZOGY's Fourier-space arithmetic (one parallel pass, no temporaries).

Twins of the NumPy functions in :func:`astroray.kernels.difference.zogy._make_fourier_ops`
(which are also what :func:`cupy.fuse` compiles on the GPU); the tests check
they agree.  Each returns freshly allocated outputs, like the NumPy versions.
:func:`lost_light_direct` is the host's direct-sum twin of the four-FFT
evaluation of :func:`~astroray.kernels.difference.zogy.lost_light_score`.
"""
from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["weights", "d_and_s", "d_sn_sr", "variance_mix", "safe_ratio", "astrometric_variance", "lost_light_direct",
           "prepare_pair", "star_peaks"]

_JIT = dict(parallel=True, cache=True, nogil=True)


@nb.njit(**_JIT)
def weights(pn_hat, pr_hat, f_r, f_n, var_n, var_r, floor2):
    H, W = pn_hat.shape
    da = np.empty((H, W), np.complex64)
    db = np.empty((H, W), np.complex64)
    kn = np.empty((H, W), np.complex64)
    kr = np.empty((H, W), np.complex64)
    fs = np.empty((H, W), np.float64)
    for i in nb.prange(H):
        for j in range(W):
            a = pr_hat[i, j] * f_r
            b = pn_hat[i, j] * f_n
            aa = a.real * a.real + a.imag * a.imag
            bb = b.real * b.real + b.imag * b.imag
            den2 = max(var_n * aa + var_r * bb, floor2)
            den = np.sqrt(den2)
            da[i, j] = a / den
            db[i, j] = b / den
            kn[i, j] = aa * np.conj(b) / den2
            kr[i, j] = bb * np.conj(a) / den2
            fs[i, j] = aa * bb / den2
    return da, db, kn, kr, fs


@nb.njit(**_JIT)
def d_and_s(n_hat, r_hat, da, db, kn, kr):
    H, W = n_hat.shape
    d = np.empty((H, W), np.complex64)
    s = np.empty((H, W), np.complex64)
    for i in nb.prange(H):
        for j in range(W):
            n, r = n_hat[i, j], r_hat[i, j]
            d[i, j] = da[i, j] * n - db[i, j] * r
            s[i, j] = kn[i, j] * n - kr[i, j] * r
    return d, s


@nb.njit(**_JIT)
def d_sn_sr(n_hat, r_hat, da, db, kn, kr):
    H, W = n_hat.shape
    d = np.empty((H, W), np.complex64)
    sn = np.empty((H, W), np.complex64)
    sr = np.empty((H, W), np.complex64)
    for i in nb.prange(H):
        for j in range(W):
            n, r = n_hat[i, j], r_hat[i, j]
            d[i, j] = da[i, j] * n - db[i, j] * r
            sn[i, j] = kn[i, j] * n
            sr[i, j] = kr[i, j] * r
    return d, sn, sr


@nb.njit(**_JIT)
def variance_mix(vn_hat, vr_hat, kn2_hat, kr2_hat):
    H, W = vn_hat.shape
    out = np.empty((H, W), np.complex64)
    for i in nb.prange(H):
        for j in range(W):
            out[i, j] = vn_hat[i, j] * kn2_hat[i, j] + vr_hat[i, j] * kr2_hat[i, j]
    return out


@nb.njit(**_JIT)
def safe_ratio(s, var):
    H, W = s.shape
    out = np.empty((H, W), np.float32)
    for i in nb.prange(H):
        for j in range(W):
            v = var[i, j]
            out[i, j] = s[i, j] / np.sqrt(v) if v > 0 else np.float32(0)
    return out


@nb.njit(inline="always")
def _grad(a, i, j, H, W):
    # numpy.gradient: central differences inside, one-sided at the edges
    if i == 0:
        gy = a[1, j] - a[0, j]
    elif i == H - 1:
        gy = a[H - 1, j] - a[H - 2, j]
    else:
        gy = np.float32(0.5) * (a[i + 1, j] - a[i - 1, j])
    if j == 0:
        gx = a[i, 1] - a[i, 0]
    elif j == W - 1:
        gx = a[i, W - 1] - a[i, W - 2]
    else:
        gx = np.float32(0.5) * (a[i, j + 1] - a[i, j - 1])
    return gy, gx


@nb.njit(**_JIT)
def astrometric_variance(s_n, s_r, sx2, sy2):
    """``sx2 [(dS_N/dx)^2 + (dS_R/dx)^2] + sy2 [(dS_N/dy)^2 + (dS_R/dy)^2]`` in one pass."""
    H, W = s_n.shape
    out = np.empty((H, W), np.float32)
    for i in nb.prange(H):
        for j in range(W):
            ny, nx = _grad(s_n, i, j, H, W)
            ry, rx = _grad(s_r, i, j, H, W)
            out[i, j] = sx2 * (nx * nx + rx * rx) + sy2 * (ny * ny + ry * ry)
    return out


@nb.njit(**_JIT)
def lost_light_direct(ys, xs, values, from_reference, k_change, k_r, k_n, variance, scalar_variance, spread_factor,
                      delta, spread, over, with_over, threshold, block):
    """:func:`~astroray.kernels.difference.zogy.lost_light_score` by direct convolution of the flagged pixels.

    ``ys`` ascending (row-major order), ``xs``, ``values``: the flagged pixels
    and their lost light; ``from_reference``: whether each is ``L_r`` (else
    ``L_n``).  ``k_change = k_r - c k_n``; ``k_n`` here is ``c k_n``.  Adds
    into the zeroed float32 images ``delta`` and ``spread`` (their values
    divided by ``sqrt(variance)``, the whole array, or the scalar
    ``variance[0, 0]`` when ``scalar_variance``); with ``with_over``, sets
    ``over`` where ``spread + |delta| > threshold`` (float32).  Row blocks of ``block``
    rows are independent (each writes only its own rows): one thread each,
    summing (in float32, as the FFTs do: the row loops vectorise 8 wide) over
    the pixels whose kernels reach the block.  ``values`` and the kernels are float32.
    """
    H, W = delta.shape
    K = k_change.shape[0]
    r = K // 2
    n_blocks = (H + block - 1) // block
    inv_scalar = 1.0 / np.sqrt(variance[0, 0]) if scalar_variance else 0.0
    for b in nb.prange(n_blocks):
        r0 = b * block
        r1 = min(H, r0 + block)
        lo = np.searchsorted(ys, r0 - r)
        hi = np.searchsorted(ys, r1 + r)
        if lo >= hi:
            continue
        cmin, cmax = W, -1
        for i in range(lo, hi):
            cmin = min(cmin, xs[i])
            cmax = max(cmax, xs[i])
        c0 = max(cmin - r, 0)
        c1 = min(cmax + r + 1, W)
        # the columns some kernel reaches: only they are cleared, summed into and written
        covered = np.zeros(c1 - c0, np.bool_)
        for i in range(lo, hi):
            covered[max(xs[i] - r, 0) - c0:min(xs[i] + r + 1, W) - c0] = True
        acc_change = np.empty((r1 - r0, c1 - c0), np.float32)
        acc_flagged = np.empty((r1 - r0, c1 - c0), np.float32)
        for ox in range(c1 - c0):
            if covered[ox]:
                acc_change[:, ox] = np.float32(0)
                acc_flagged[:, ox] = np.float32(0)
        for i in range(lo, hi):
            y, x, v = ys[i], xs[i], values[i]
            ky0, ky1 = max(r0 - y + r, 0), min(r1 - y + r, K)
            kx0, kx1 = max(r - x, 0), min(W - x + r, K)
            if from_reference[i]:
                kf, vf = k_r, v
            else:
                kf, vf = k_n, np.float32(-v)
            ox0 = x - r - c0 + kx0
            m = kx1 - kx0
            for jy in range(ky0, ky1):
                oy = y + jy - r - r0
                # contiguous row slices, indexed from 0: the loops vectorise
                dst, src = acc_change[oy, ox0:ox0 + m], k_change[jy, kx0:kx1]
                for t in range(m):
                    dst[t] += v * src[t]
                dst, src = acc_flagged[oy, ox0:ox0 + m], kf[jy, kx0:kx1]
                for t in range(m):
                    dst[t] += vf * src[t]
        for oy in range(r1 - r0):
            for ox in range(c1 - c0):
                if not covered[ox]:
                    continue
                if scalar_variance:
                    inv = inv_scalar
                else:
                    var = variance[r0 + oy, c0 + ox]
                    inv = 1.0 / np.sqrt(var) if var > 0 else 0.0
                d = np.float32(np.float64(acc_change[oy, ox]) * inv)
                sp = np.float32(abs(np.float64(acc_flagged[oy, ox]) * inv) * spread_factor)
                delta[r0 + oy, c0 + ox] = d
                spread[r0 + oy, c0 + ox] = sp
                if with_over and sp + abs(d) > threshold:
                    over[r0 + oy, c0 + ox] = True


@nb.njit(**_JIT)
def prepare_pair(R, N, VR, VN, MR, MN, bad_bits, no_data):
    """The Differencer's input pass in one sweep (float32 planes, uint32 masks).

    Returns ``(R0, N0, VR0, VN0, mask, bad_r, bad_n, bad, good, counts)``:
    the planes with every pixel bad in either image set to 0, the OR of both
    masks plus ``no_data`` where a plane is non-finite or its variance not
    positive, each image's bad pixels (those, or a ``bad_bits`` flag), their
    union and its complement, and ``counts = (n_bad_r, n_bad_n, n_bad)``.
    """
    H, W = R.shape
    R0 = np.empty((H, W), np.float32)
    N0 = np.empty((H, W), np.float32)
    VR0 = np.empty((H, W), np.float32)
    VN0 = np.empty((H, W), np.float32)
    mask = np.empty((H, W), np.uint32)
    bad_r = np.empty((H, W), np.bool_)
    bad_n = np.empty((H, W), np.bool_)
    bad = np.empty((H, W), np.bool_)
    good = np.empty((H, W), np.bool_)
    rows = np.zeros((H, 3), np.int64)
    zero = np.float32(0)
    for i in nb.prange(H):
        nr = nn = nb_ = 0
        for j in range(W):
            r, n, vr, vn = R[i, j], N[i, j], VR[i, j], VN[i, j]
            empty_r = not (np.isfinite(r) and np.isfinite(vr) and vr > 0)
            empty_n = not (np.isfinite(n) and np.isfinite(vn) and vn > 0)
            m = MR[i, j] | MN[i, j]
            if empty_r or empty_n:
                m |= no_data
            br = empty_r or (MR[i, j] & bad_bits) != 0
            bn = empty_n or (MN[i, j] & bad_bits) != 0
            b = br or bn
            mask[i, j] = m
            bad_r[i, j], bad_n[i, j], bad[i, j], good[i, j] = br, bn, b, not b
            if b:
                R0[i, j] = zero
                N0[i, j] = zero
                VR0[i, j] = zero
                VN0[i, j] = zero
            else:
                R0[i, j], N0[i, j], VR0[i, j], VN0[i, j] = r, n, vr, vn
            nr += br
            nn += bn
            nb_ += b
        rows[i, 0], rows[i, 1], rows[i, 2] = nr, nn, nb_
    counts = np.zeros(3, np.int64)
    for i in range(H):
        for k in range(3):
            counts[k] += rows[i, k]
    return R0, N0, VR0, VN0, mask, bad_r, bad_n, bad, good, counts


@nb.njit(inline="always")
def _snr(x, v, tiny):
    if v < tiny:  # numpy.maximum(v, tiny); NaN stays NaN
        v = tiny
    return x / np.sqrt(v)


@nb.njit(**_JIT)
def star_peaks(reference, science, variance_reference, variance_science, good, min_snr):
    """Rows and columns (row-major) of the flux-ratio stars' peaks (float32 planes).

    A pixel off the border whose S/N, ``image / sqrt(max(variance, 1e-30))``
    in float32, is at least ``min_snr`` in both images, that is good, and
    whose reference S/N exceeds its 8 neighbours': as the array expressions
    of :func:`~astroray.kernels.difference.common.fit_flux_ratio`.
    """
    H, W = reference.shape
    tiny = np.float32(1e-30)
    level = np.float32(min_snr)
    counts = np.zeros(H, np.int64)
    hits = np.zeros((H, W), np.bool_)
    for i in nb.prange(1, H - 1):
        n = 0
        for j in range(1, W - 1):
            if not good[i, j]:
                continue
            c = _snr(reference[i, j], variance_reference[i, j], tiny)
            if not c >= level:
                continue
            if not _snr(science[i, j], variance_science[i, j], tiny) >= level:
                continue
            peak = True
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    if (dy != 0 or dx != 0) and peak:
                        v = _snr(reference[i + dy, j + dx], variance_reference[i + dy, j + dx], tiny)
                        if not c > v:
                            peak = False
            if peak:
                hits[i, j] = True
                n += 1
        counts[i] = n
    total = 0
    for i in range(H):
        total += counts[i]
    ys = np.empty(total, np.int64)
    xs = np.empty(total, np.int64)
    k = 0
    for i in range(1, H - 1):
        if counts[i]:
            for j in range(1, W - 1):
                if hits[i, j]:
                    ys[k] = i
                    xs[k] = j
                    k += 1
    return ys, xs
