"""Classic image differencing: Gaussian PSF matching, fitted scale and offset.

The sharper image is convolved with the Gaussian that carries its PSF's
second moments onto the other's (``C_target - C_own``; where the two PSFs
are each wider along a different axis, each image gets the positive part of
the difference, so both reach the same moments).  Then the science image is
modelled as ``N' = scale * R' + offset`` by iteratively clipped weighted
least squares: the scale from pixels where the reference is significant (on
pure-noise pixels a noisy abscissa would bias the slope low), the offset
from all good pixels.  ``D = N' - (scale R' + offset)`` is in science flux
units; its variance propagates both variance images through the matching
kernels.  Point-source fluxes come from the PSF matched filter on ``D``.

Written against the array module (NumPy or CuPy), like :mod:`.zogy`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from astroray.errors import InvalidInputError
from astroray.kernels.backend import array_module_of
from astroray.kernels.difference.common import (
    FourierBackend,
    embed_kernel,
    good_fft_size,
    padded_shape,
    prepare_psf,
    psf_covariance,
)
from astroray.kernels.difference.zogy import _as_float32, _validate_pair

__all__ = ["ClassicResult", "classic_difference", "matching_covariances"]


@dataclass
class ClassicResult:
    """Products of :func:`classic_difference` (float32 (H, W) on the inputs' device unless noted).

    Attributes
    ----------
    difference : array
        ``D = N' - (scale R' + offset)`` in science flux units.
    variance : array
        Per-pixel variance of ``D``.
    score : array
        Detection image in sigma units: the PSF matched filter over its
        standard deviation (``score="matched_filter"``) or ``D / sqrt(var)``
        (``score="pixel"``).
    flux, flux_err : array
        PSF-fit flux of a point source centred on each pixel, and its error.
    psf : ndarray (h, w)
        The PSF of ``D`` (host array, sums to 1).
    scale, offset : float
        The fitted (or given) scale and offset.
    convolved : str
        Which image(s) were convolved: "reference", "science", "both" or "none".
    """

    difference: Any
    variance: Any
    score: Any
    flux: Any
    flux_err: Any
    psf: np.ndarray
    scale: float
    offset: float
    convolved: str
    meta: dict = field(default_factory=dict)


def matching_covariances(psf_reference: np.ndarray, psf_science: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Covariances of the Gaussians that match the two PSFs: ``(for R, for N)``.

    ``C_n - C_r`` split into its positive and negative parts, so
    ``C_r + for_R == C_n + for_N`` and both are positive semi-definite.
    """
    delta = psf_covariance(psf_science) - psf_covariance(psf_reference)
    vals, vecs = np.linalg.eigh(delta)
    pos = (vecs * np.clip(vals, 0, None)) @ vecs.T
    neg = (vecs * np.clip(-vals, 0, None)) @ vecs.T
    return pos, neg


def classic_difference(reference, science, psf_reference, psf_science, *, variance_reference,
                       variance_science, good=None, flux_ratio: float | None = None,
                       fit_offset: bool = True, clip_sigma: float = 3.0, max_iter: int = 10,
                       scale_min_snr: float = 10.0, score: Literal["matched_filter", "pixel"] = "matched_filter",
                       recenter_psf: bool = True, backend: FourierBackend | None = None) -> ClassicResult:
    """Classic difference of two background-subtracted images on the same grid.

    Parameters
    ----------
    reference, science : array (H, W)
        Finite pixels (flagged ones set to 0 by the caller and excluded by ``good``).
    psf_reference, psf_science : array (h, w)
        PSF stamps with odd sides.
    variance_reference, variance_science : array (H, W)
        Per-pixel variances.
    good : bool array (H, W), optional
        Pixels the fit may use (default: positive variance in both).
    flux_ratio : float, optional
        Fix the scale (``F_n / F_r``) instead of fitting it.
    fit_offset : bool
        Fit a constant offset (else 0).
    clip_sigma, max_iter : float, int
        Clipping threshold and the iteration limit of the fit.
    scale_min_snr : float
        Pixels whose PSF-matched reference is at least this many sigma fit the scale.
    score : {"matched_filter", "pixel"}
        Which detection image :attr:`ClassicResult.score` holds.

    Raises
    ------
    InvalidInputError
        Shapes differ, non-finite pixels, a PSF that cannot be normalised,
        negative variances, or too few significant pixels to fit the scale.
    """
    xp = array_module_of(science)
    R, N = _validate_pair(reference, science, xp)
    VR = _as_float32(variance_reference, xp, "reference variance", R.shape)
    VN = _as_float32(variance_science, xp, "science variance", R.shape)
    for name, v in (("reference", VR), ("science", VN)):
        if not bool(xp.all(v >= 0)):
            raise InvalidInputError(f"{name} variance has negative or NaN pixels")
    if good is None:
        good = (VR > 0) & (VN > 0)
    elif good.shape != R.shape:
        raise InvalidInputError(f"good-pixel mask shape {good.shape} does not match the images {R.shape}")
    if not bool(good.any()):
        raise InvalidInputError("no good pixels (all flagged or zero variance)")
    if flux_ratio is not None and (not (flux_ratio > 0) or not math.isfinite(flux_ratio)):
        raise InvalidInputError(f"flux_ratio must be positive and finite, got {flux_ratio!r}")
    if score not in ("matched_filter", "pixel"):
        raise InvalidInputError(f"score must be 'matched_filter' or 'pixel', got {score!r}")
    Pr = prepare_psf(psf_reference, name="reference PSF", recenter=recenter_psf)
    Pn = prepare_psf(psf_science, name="science PSF", recenter=recenter_psf)
    fb = backend if backend is not None else FourierBackend(xp)
    return _classic_core(R, N, VR, VN, good, Pr, Pn, flux_ratio=flux_ratio, fit_offset=fit_offset,
                         clip_sigma=float(clip_sigma), max_iter=int(max_iter),
                         scale_min_snr=float(scale_min_snr), score=score, fb=fb)


def _gaussian_stamp(cov: np.ndarray, side: int) -> np.ndarray:
    """Pixel kernel of a Gaussian with covariance ``cov`` (band-limited: defined by its transform)."""
    grid = good_fft_size(2 * side)
    ky = np.fft.fftfreq(grid)[:, None]
    kx = np.fft.rfftfreq(grid)[None, :]
    g_hat = np.exp(-2 * np.pi ** 2 * (cov[0, 0] * ky * ky + 2 * cov[0, 1] * ky * kx + cov[1, 1] * kx * kx))
    g = np.fft.irfft2(g_hat, s=(grid, grid))
    r = side // 2
    idx = np.arange(-r, r + 1) % grid
    return g[np.ix_(idx, idx)]


def _kernel_side(cov: np.ndarray) -> int:
    sigma = math.sqrt(max(float(np.linalg.eigvalsh(cov).max()), 0.0))
    return 2 * int(math.ceil(5 * sigma)) + 1


def _convolve(fb, image, kernel_hat, shape, out_shape):
    return fb.irfft2(fb.rfft2(image, shape) * kernel_hat, shape, out_shape, overwrite=True)


def _classic_core(R, N, VR, VN, good, Pr, Pn, *, flux_ratio, fit_offset, clip_sigma, max_iter,
                  scale_min_snr, score, fb):
    xp = fb.xp
    H, W = N.shape
    cov_r, cov_n = matching_covariances(Pr, Pn)
    convolved = []
    edge = 0
    psf_d = Pn
    # One FFT grid for every convolution: room for the widest kernel (matching or PSF).
    sides = [_kernel_side(c) for c in (cov_r, cov_n)] + [max(Pr.shape + Pn.shape)]
    shape = padded_shape((H, W), max(sides))
    for which, cov in (("reference", cov_r), ("science", cov_n)):
        if np.trace(cov) < 1e-6:  # nothing to match on this side
            continue
        side = _kernel_side(cov)
        g = _gaussian_stamp(cov, side)
        g_hat = fb.rfft2_stamp(g, shape)
        g2_hat = fb.rfft2_stamp(g * g, shape)
        if which == "reference":
            R = _convolve(fb, R, g_hat, shape, (H, W))
            VR = _convolve(fb, VR, g2_hat, shape, (H, W))
        else:
            N = _convolve(fb, N, g_hat, shape, (H, W))
            VN = _convolve(fb, VN, g2_hat, shape, (H, W))
            psf_d = _convolve_stamp(Pn, g)
        convolved.append(which)
        edge = max(edge, side // 2)
        del g_hat, g2_hat
    # Zero-padded convolutions fade towards the edges: keep those pixels out of the fit.
    fit_good = good.copy()
    if edge:
        fit_good[:edge] = False
        fit_good[-edge:] = False
        fit_good[:, :edge] = False
        fit_good[:, -edge:] = False
    if not bool(fit_good.any()):
        raise InvalidInputError("no good pixels left away from the edges to fit scale and offset")
    scale, offset, n_scale = _fit_scale_offset(R, N, VR, VN, fit_good, flux_ratio=flux_ratio,
                                               fit_offset=fit_offset, clip_sigma=clip_sigma,
                                               max_iter=max_iter, min_snr=scale_min_snr)
    D = N - scale * R
    if offset:
        D -= offset
    V = VN + (scale * scale) * VR
    xp.maximum(V, 0.0, out=V)
    # PSF photometry on D: flux = (D * P~) / sum P^2, var = (V * P^2) / (sum P^2)^2.
    p_hat = fb.rfft2_stamp(psf_d[::-1, ::-1], shape)
    p2_hat = fb.rfft2_stamp(psf_d * psf_d, shape)
    norm = float((psf_d * psf_d).sum())
    flux = _convolve(fb, D, p_hat, shape, (H, W))
    flux *= 1.0 / norm
    flux_var = _convolve(fb, V, p2_hat, shape, (H, W))
    xp.maximum(flux_var, 0.0, out=flux_var)
    flux_err = xp.sqrt(flux_var) * (1.0 / norm)
    if score == "matched_filter":
        det = _ratio(flux, flux_err, xp)
    else:
        det = _ratio(D, xp.sqrt(V), xp)
    return ClassicResult(difference=xp.ascontiguousarray(D), variance=xp.ascontiguousarray(V), score=det,
                         flux=xp.ascontiguousarray(flux), flux_err=xp.ascontiguousarray(flux_err),
                         psf=psf_d / psf_d.sum(), scale=float(scale), offset=float(offset),
                         convolved={0: "none", 1: convolved[0] if convolved else "", 2: "both"}[len(convolved)],
                         meta={"matching_cov_reference": cov_r.tolist(), "matching_cov_science": cov_n.tolist(),
                               "n_scale_pixels": n_scale, "fft_shape": shape})


def _convolve_stamp(p, g):
    side = max(p.shape[0], g.shape[0])
    grid = good_fft_size(2 * side)
    shape = (grid, grid)
    out = np.fft.irfft2(np.fft.rfft2(embed_kernel(p, shape, np, np.float64))
                        * np.fft.rfft2(embed_kernel(g, shape, np, np.float64)), s=shape)
    r = p.shape[0] // 2
    rows = np.arange(-r, r + 1) % grid
    r1 = p.shape[1] // 2
    cols = np.arange(-r1, r1 + 1) % grid
    return out[np.ix_(rows, cols)]


def _ratio(a, sd, xp):
    return xp.where(sd > 0, a / xp.where(sd > 0, sd, 1.0), 0.0).astype(xp.float32, copy=False)


def _fit_scale_offset(R, N, VR, VN, good, *, flux_ratio, fit_offset, clip_sigma, max_iter, min_snr):
    """Iteratively clipped weighted least squares for ``N = scale R + offset``."""
    xp = array_module_of(R)
    snr_r = R / xp.sqrt(xp.where(VR > 0, VR, xp.inf))
    stars = good & (snr_r >= min_snr)
    n_stars = int(stars.sum())
    fit_scale = flux_ratio is None
    if fit_scale and n_stars < 20:
        raise InvalidInputError(
            f"only {n_stars} pixels at S/N >= {min_snr:g} in the PSF-matched reference to fit the "
            "scale; give flux_ratio explicitly")
    # Work in float64 on the selected pixels only (sums over millions of float32 values drift).
    r_s, n_s = R[stars].astype(xp.float64), N[stars].astype(xp.float64)
    vr_s, vn_s = VR[stars].astype(xp.float64), VN[stars].astype(xp.float64)
    # The offset is one number: a regular sub-grid of about a million pixels pins it to
    # ~1e-3 sigma, at a fraction of the cost of every pixel of a 4k frame.
    step = max(1, int(math.sqrt(R.size / 1e6)))
    sub = (slice(None, None, step), slice(None, None, step))
    g = good[sub]
    r_a, n_a = R[sub][g].astype(xp.float64), N[sub][g].astype(xp.float64)
    vr_a, vn_a = VR[sub][g].astype(xp.float64), VN[sub][g].astype(xp.float64)
    scale = float(flux_ratio) if not fit_scale else float(
        (n_s * r_s / vn_s).sum() / (r_s * r_s / vn_s).sum())
    offset = 0.0
    keep_s = xp.ones(r_s.shape, bool)
    keep_a = xp.ones(r_a.shape, bool)
    for _ in range(max_iter):
        old = (scale, offset)
        if fit_offset:
            var_a = vn_a + scale * scale * vr_a
            res_a = n_a - scale * r_a
            w = keep_a / var_a
            offset = float((w * res_a).sum() / w.sum())
            z = (res_a - offset) / xp.sqrt(var_a)
            keep_a = xp.abs(z) < clip_sigma * max(1.0, _robust_width(z[keep_a], xp))
        if fit_scale:
            var_s = vn_s + scale * scale * vr_s
            w = keep_s / var_s
            scale = float((w * (n_s - offset) * r_s).sum() / (w * r_s * r_s).sum())
            z = (n_s - offset - scale * r_s) / xp.sqrt(vn_s + scale * scale * vr_s)
            keep_s = xp.abs(z) < clip_sigma * max(1.0, _robust_width(z[keep_s], xp))
            if int(keep_s.sum()) < 20:
                raise InvalidInputError("too few pixels left after clipping to fit the scale; give flux_ratio")
        if abs(scale - old[0]) <= 1e-6 * abs(scale) and abs(offset - old[1]) <= 1e-6 * (abs(offset) + 1e-12):
            break
    if not (scale > 0) or not math.isfinite(scale):
        raise InvalidInputError(f"fitted scale {scale!r} is not positive; give flux_ratio explicitly")
    return scale, offset, n_stars


def _robust_width(z, xp) -> float:
    if z.size == 0:
        return 1.0
    z = z[:: max(1, z.size // 200_000)]  # a clipping scale needs no more than a few 1e5 samples
    return float(1.4826 * xp.median(xp.abs(z - xp.median(z))))
