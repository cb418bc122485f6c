"""Numba CPU versions of ZOGY's Fourier-space arithmetic (one parallel pass, no temporaries).

Twins of the NumPy functions in :func:`astroray.kernels.difference.zogy._make_fourier_ops`
(which are also what :func:`cupy.fuse` compiles on the GPU); the tests check
they agree.  Each returns freshly allocated outputs, like the NumPy versions.
"""
from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["weights", "d_and_s", "d_sn_sr", "variance_mix", "safe_ratio", "astrometric_variance"]

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
