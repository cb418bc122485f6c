"""Pieces shared by the ZOGY and classic differencing kernels.

* :func:`prepare_psf` -- validate, centre and normalise a PSF stamp.
* :func:`psf_covariance` -- second moments of a PSF (for Gaussian matching).
* :class:`FourierBackend` -- real FFTs with zero padding on NumPy (``scipy.fft``,
  all cores) or CuPy (cuFFT, plans reused), chosen once from the array module.
* :func:`padded_shape` -- the FFT grid that keeps convolutions free of wrap-around.
* :func:`fit_flux_ratio` -- the robust ``F_n / F_r`` fit from matched stars.

Everything here is written against the array module ``xp`` (NumPy or CuPy);
the few device-specific lines live in :class:`FourierBackend`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from astroray.errors import InvalidInputError
from astroray.kernels.backend import fuse, get_fft

__all__ = [
    "prepare_psf",
    "psf_covariance",
    "padded_shape",
    "good_fft_size",
    "FourierBackend",
    "embed_kernel",
    "FluxRatioFit",
    "fit_flux_ratio",
    "background_sigma",
]


# --------------------------------------------------------------------------- PSFs


def prepare_psf(psf: Any, *, name: str = "PSF", recenter: bool = True) -> np.ndarray:
    """Validate a PSF stamp, centre it on its middle pixel and normalise it to sum 1.

    Parameters
    ----------
    psf : array_like (h, w)
        PSF stamp with odd sides (host or device array).
    name : str
        How error messages call it.
    recenter : bool
        Shift the stamp (sub-pixel, by a Fourier phase ramp) so that its
        centroid falls on the middle pixel.  ZOGY assumes centred PSFs: an
        off-centre PSF shifts D and S with respect to the images.

    Returns
    -------
    ndarray (h, w) float64
        On the host: PSF stamps are small and reused across many images.

    Raises
    ------
    InvalidInputError
        Not 2-D, even sides, non-finite values, or a sum that is not positive
        (the PSF cannot be normalised).
    """
    from astroray.kernels.backend import to_numpy

    p = np.asarray(to_numpy(psf), dtype=np.float64)
    if p.ndim != 2 or p.shape[0] % 2 == 0 or p.shape[1] % 2 == 0:
        raise InvalidInputError(f"{name} stamp must be 2-D with odd sides, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise InvalidInputError(f"{name} stamp contains NaN or inf")
    total = p.sum()
    if not (total > 0) or not np.isfinite(total) or np.abs(p).max() <= 0:
        raise InvalidInputError(f"{name} cannot be normalised: its sum is {total!r} (must be > 0)")
    p = p / total
    if recenter:
        cy, cx = _centroid(p)
        dy, dx = cy - p.shape[0] // 2, cx - p.shape[1] // 2
        if abs(dy) > p.shape[0] / 4 or abs(dx) > p.shape[1] / 4:
            raise InvalidInputError(
                f"{name} centroid ({cy:.2f}, {cx:.2f}) is far from the stamp centre "
                f"({p.shape[0] // 2}, {p.shape[1] // 2}); the stamp is not a centred PSF")
        if abs(dy) > 1e-4 or abs(dx) > 1e-4:
            p = _fourier_shift(p, -dy, -dx)
            s = p.sum()
            if not (s > 0):
                raise InvalidInputError(f"{name} cannot be normalised after centring (sum {s!r})")
            p = p / s
    return p


def _centroid(p: np.ndarray) -> tuple[float, float]:
    # Weights clipped at zero: PSF models and empirical stamps carry small negative wings.
    w = np.clip(p, 0.0, None)
    s = w.sum()
    yy, xx = np.indices(p.shape)
    return float((w * yy).sum() / s), float((w * xx).sum() / s)


def _fourier_shift(p: np.ndarray, dy: float, dx: float) -> np.ndarray:
    ky = np.fft.fftfreq(p.shape[0])[:, None]
    kx = np.fft.rfftfreq(p.shape[1])[None, :]
    ramp = np.exp(-2j * np.pi * (ky * dy + kx * dx))
    return np.fft.irfft2(np.fft.rfft2(p) * ramp, s=p.shape)


def psf_covariance(psf: np.ndarray) -> np.ndarray:
    """Second-moment matrix ``[[c_yy, c_yx], [c_xy, c_xx]]`` of a centred PSF stamp, in pixels**2."""
    w = np.clip(np.asarray(psf, np.float64), 0.0, None)
    s = w.sum()
    yy, xx = np.indices(w.shape)
    cy, cx = (w * yy).sum() / s, (w * xx).sum() / s
    dy, dx = yy - cy, xx - cx
    cyy = (w * dy * dy).sum() / s
    cxx = (w * dx * dx).sum() / s
    cxy = (w * dx * dy).sum() / s
    return np.array([[cyy, cxy], [cxy, cxx]])


# --------------------------------------------------------------------------- FFT grid


def good_fft_size(n: int) -> int:
    """Smallest integer >= ``n`` whose prime factors are 2, 3, 5 and 7 (fast on pocketfft and cuFFT)."""
    best = None
    p7 = 1
    while p7 < 2 * n:
        p5 = p7
        while p5 < 2 * n:
            p3 = p5
            while p3 < 2 * n:
                m = p3
                while m < n:
                    m *= 2
                if best is None or m < best:
                    best = m
                p3 *= 3
            p5 *= 5
        p7 *= 7
    return int(best)


def padded_shape(shape: tuple[int, int], pad: int) -> tuple[int, int]:
    """FFT grid for an image of ``shape`` convolved with kernels of radius ``pad``.

    Zeros appended after the last row and column absorb what a kernel of
    radius ``pad`` would otherwise wrap around to the opposite edge.
    """
    return good_fft_size(shape[0] + pad), good_fft_size(shape[1] + pad)


def embed_kernel(stamp, fft_shape: tuple[int, int], xp: ModuleType, dtype=np.float32):
    """Put a centred odd stamp on the FFT grid with its centre at pixel (0, 0) (wrapped)."""
    h, w = stamp.shape
    rows = xp.asarray((np.arange(h) - h // 2) % fft_shape[0])
    cols = xp.asarray((np.arange(w) - w // 2) % fft_shape[1])
    big = xp.zeros(fft_shape, dtype=dtype)
    big[xp.ix_(rows, cols)] = xp.asarray(np.ascontiguousarray(stamp), dtype=dtype)
    return big


class FourierBackend:
    """Real 2-D FFTs on the array module's device.

    NumPy arrays go through :mod:`scipy.fft` with ``workers`` threads (pocketfft
    keeps float32 as complex64); CuPy arrays through :mod:`cupyx.scipy.fft`
    (cuFFT), whose plan cache reuses one plan per shape across calls.  The
    ``s=`` argument zero-pads on the fly, so no padded copy is made on the host.

    Parameters
    ----------
    xp : module
        :mod:`numpy` or :mod:`cupy`.
    workers : int
        CPU threads for the FFTs (-1: all cores).
    cpu_kernels : {"numba", "numpy"}
        On the CPU, run the Fourier-space arithmetic as parallel Numba loops
        (one pass, no temporaries) or as NumPy expressions on row blocks
        (the same code the GPU fuses).
    """

    def __init__(self, xp: ModuleType, *, workers: int = -1, cpu_kernels: str = "numba"):
        if cpu_kernels not in ("numba", "numpy"):
            raise ValueError(f"cpu_kernels must be 'numba' or 'numpy', got {cpu_kernels!r}")
        self.xp = xp
        self.workers = workers
        self.cpu_kernels = cpu_kernels
        self.on_gpu = xp is not np
        if self.on_gpu:
            # Keep every plan of a ZOGY call (forward and inverse of a few shapes).
            cache = xp.fft.config.get_plan_cache()
            if cache.get_size() < 32:
                cache.set_size(32)
        self._fft = get_fft(xp)

    def rfft2(self, a, shape: tuple[int, int]):
        """Forward real FFT of ``a`` zero-padded to ``shape``."""
        if self.on_gpu:
            return self._fft.rfft2(a, s=shape)
        return self._fft.rfft2(a, s=shape, workers=self.workers)

    def rfft2_stamp(self, stamp, shape: tuple[int, int], dtype=np.float32):
        """``rfft2`` of a small centred stamp placed on the grid with its centre at (0, 0).

        Equal to ``rfft2(embed_kernel(stamp, shape))`` at about half the cost:
        the row transforms run on the stamp's few rows only, the zero rows
        transform to zeros.
        """
        xp = self.xp
        stamp = np.ascontiguousarray(stamp)  # flipped views have negative strides
        h, w = stamp.shape
        rows = xp.asarray((np.arange(h) - h // 2) % shape[0])
        cols = xp.asarray((np.arange(w) - w // 2) % shape[1])
        strip = xp.zeros((h, shape[1]), dtype=dtype)
        strip[:, cols] = xp.asarray(stamp, dtype=dtype)
        kw = {} if self.on_gpu else {"workers": self.workers}
        t = self._fft.rfft(strip, axis=1, **kw)
        out = xp.zeros((shape[0], t.shape[1]), dtype=t.dtype)
        out[rows] = t
        return self._fft.fft(out, axis=0, overwrite_x=True, **kw)

    def irfft2(self, a_hat, shape: tuple[int, int], crop: tuple[int, int] | None = None,
               *, overwrite: bool = False):
        """Inverse real FFT onto ``shape``, cropped to the first ``crop`` rows and columns."""
        if self.on_gpu:
            out = self._fft.irfft2(a_hat, s=shape, overwrite_x=overwrite)
        else:
            out = self._fft.irfft2(a_hat, s=shape, workers=self.workers, overwrite_x=overwrite)
        if crop is not None:
            out = out[: crop[0], : crop[1]]
        return out

    def fuse(self, fn):
        """``fn`` compiled into one GPU kernel by :func:`cupy.fuse`; unchanged on the CPU."""
        return fuse(self.xp, fn)

    def elementwise(self, fn, arrays, scalars=(), out_dtypes=(), *, block_rows: int = 64):
        """Apply an element-wise ``fn(*arrays, *scalars) -> tuple`` and cast to ``out_dtypes``.

        On the GPU ``fn`` is expected to be fused (one kernel over the whole
        arrays); a function marked ``whole_arrays`` (the Numba loops) also
        gets the whole arrays.  Otherwise, on the CPU, it runs on blocks of ``block_rows`` rows, so the
        NumPy temporaries stay in cache and the peak memory is the outputs
        alone, not a dozen full-size complex temporaries.
        """
        if self.on_gpu or getattr(fn, "whole_arrays", False):
            res = fn(*arrays, *scalars)
            res = res if isinstance(res, tuple) else (res,)
            return tuple(r.astype(dt, copy=False) for r, dt in zip(res, out_dtypes))
        n = arrays[0].shape[0]
        outs = tuple(np.empty(arrays[0].shape, dtype=dt) for dt in out_dtypes)
        for r0 in range(0, n, block_rows):
            sl = slice(r0, min(n, r0 + block_rows))
            res = fn(*(a[sl] for a in arrays), *scalars)
            res = res if isinstance(res, tuple) else (res,)
            for o, v in zip(outs, res):
                o[sl] = v
        return outs


def background_sigma(image, variance, good, xp: ModuleType) -> float:
    """Background noise of an image: sqrt of the median variance over good pixels.

    Falls back to the MAD of the image where ``variance`` is None.
    """
    # A strided subsample (about a million pixels) gives the median to well under 1%.
    step = max(1, int(math.sqrt(image.size / 1e6)))
    sub = (slice(None, None, step), slice(None, None, step))
    g = good[sub]
    if variance is not None:
        v = variance[sub][g]
        if v.size == 0:
            raise InvalidInputError("no good pixels to estimate the background noise from")
        s2 = float(xp.median(v))
    else:
        v = image[sub][g]
        if v.size == 0:
            raise InvalidInputError("no good pixels to estimate the background noise from")
        med = xp.median(v)
        s2 = float(1.4826 * xp.median(xp.abs(v - med))) ** 2
    if not (s2 > 0) or not math.isfinite(s2):
        raise InvalidInputError(f"background variance must be positive and finite, got {s2!r}")
    return math.sqrt(s2)


# --------------------------------------------------------------------------- flux ratio


@dataclass
class FluxRatioFit:
    """The robust fit of ``F_n / F_r`` from stars seen in both images.

    Attributes
    ----------
    ratio, ratio_err : float
        ``F_n / F_r``: the science flux of a star over its reference flux.
    n_stars, n_used : int
        Stars found and stars kept after clipping.
    """

    ratio: float
    ratio_err: float
    n_stars: int
    n_used: int


def fit_flux_ratio(reference, science, *, variance_reference, variance_science, good,
                   box: int, psf_reference=None, psf_science=None, min_snr: float = 20.0,
                   max_stars: int = 500, min_stars: int = 5, clip_sigma: float = 3.0,
                   max_iter: int = 10) -> FluxRatioFit:
    """Fit ``F_n / F_r`` from the fluxes of bright stars found in the reference.

    Stars are local maxima of the reference whose peak pixel is at least
    ``min_snr`` sigma (on both images), away from the edges and from flagged
    pixels.  Their fluxes are sums over a ``box`` x ``box`` aperture (the
    same aperture on both images, large enough to hold the PSF, so the ratio
    does not depend on the two seeings), or, when both PSFs are given, PSF
    fits with each image's own PSF stamp shifted to the star's sub-pixel
    centroid: fluxes on the scale of the normalised stamps, which is the
    scale ZOGY subtracts on (a stamp that truncates its PSF's wings
    differently in the two images then biases neither).  The ratio solves the weighted
    straight line through the origin ``f_n = q f_r`` with errors in both
    fluxes, iteratively clipping stars more than ``clip_sigma`` away
    (variables, transients, blends, cosmic rays).

    Parameters
    ----------
    reference, science : array (H, W)
        Background-subtracted images on the same grid (NumPy or CuPy).
    variance_reference, variance_science : array (H, W)
        Their per-pixel variances.
    good : bool array (H, W)
        Usable pixels.
    box : int
        Odd aperture side in pixels.

    Raises
    ------
    InvalidInputError
        Fewer than ``min_stars`` usable stars.
    """
    from astroray.kernels.backend import array_module_of

    xp = array_module_of(reference)
    H, W = reference.shape
    r = box // 2
    ys, xs = _star_peaks(reference, science, variance_reference, variance_science, good, min_snr, xp)
    inside = (ys >= r) & (ys < H - r) & (xs >= r) & (xs < W - r)
    ys, xs = ys[inside], xs[inside]
    if int(ys.size) > max_stars:  # brightest first: best S/N, and a bounded cost
        order = xp.argsort(-reference[ys, xs])[:max_stars]
        ys, xs = ys[order], xs[order]
    n_found = int(ys.size)
    if n_found < min_stars:
        raise InvalidInputError(
            f"only {n_found} stars at S/N >= {min_snr:g} in both images to fit the flux ratio "
            f"F_n/F_r (need {min_stars}); give flux_ratio explicitly")
    off = xp.arange(-r, r + 1)
    iy = ys[:, None, None] + off[None, :, None]
    ix = xs[:, None, None] + off[None, None, :]
    clean = good[iy, ix].all(axis=(1, 2))
    cubes = [np.asarray(_host(a[iy, ix][clean]), np.float64)
             for a in (reference, science, variance_reference, variance_science)]
    if psf_reference is not None and psf_science is not None:
        f_r, f_n, v_r, v_n = _psf_fluxes(*cubes, psf_reference, psf_science, box)
    else:
        f_r, f_n = cubes[0].sum(axis=(1, 2)), cubes[1].sum(axis=(1, 2))
        v_r, v_n = cubes[2].sum(axis=(1, 2)), cubes[3].sum(axis=(1, 2))
    if f_r.size < min_stars:
        raise InvalidInputError(
            f"only {f_r.size} unflagged stars to fit the flux ratio F_n/F_r (need {min_stars}); "
            "give flux_ratio explicitly")
    keep = f_r > 0
    q = float(np.median(f_n[keep] / f_r[keep])) if keep.any() else 1.0
    for _ in range(max_iter):
        var = v_n + q * q * v_r
        w = keep / var
        q_new = float((w * f_n * f_r).sum() / (w * f_r * f_r).sum())
        resid = (f_n - q_new * f_r) / np.sqrt(v_n + q_new * q_new * v_r)
        # Scatter beyond the Poisson errors (PSF or aperture mismatch) widens the clip.
        scale = max(1.0, 1.4826 * float(np.median(np.abs(resid[keep]))))
        keep_new = (np.abs(resid) < clip_sigma * scale) & (f_r > 0)
        converged = abs(q_new - q) <= 1e-7 * abs(q) and np.array_equal(keep_new, keep)
        q, keep = q_new, keep_new
        if keep.sum() < min_stars:
            raise InvalidInputError(
                f"only {int(keep.sum())} stars left after clipping to fit the flux ratio F_n/F_r; "
                "give flux_ratio explicitly")
        if converged:
            break
    w = keep / (v_n + q * q * v_r)
    resid = (f_n - q * f_r) / np.sqrt(v_n + q * q * v_r)
    chi2 = float((resid[keep] ** 2).sum() / max(int(keep.sum()) - 1, 1))
    err = math.sqrt(max(chi2, 1.0) / float((w * f_r * f_r).sum()))
    if not (q > 0) or not math.isfinite(q):
        raise InvalidInputError(f"fitted flux ratio F_n/F_r = {q!r} is not positive; give flux_ratio explicitly")
    return FluxRatioFit(ratio=q, ratio_err=err, n_stars=n_found, n_used=int(keep.sum()))


def _star_peaks(reference, science, variance_reference, variance_science, good, min_snr, xp):
    """Rows and columns of the local maxima of the reference's S/N that reach ``min_snr`` in both images."""
    H, W = reference.shape
    planes = (reference, science, variance_reference, variance_science)
    if xp is np and all(p.dtype == np.float32 for p in planes) and good.dtype == bool:
        from astroray.kernels.difference import _cpu  # one parallel pass, no full-frame temporaries

        return _cpu.star_peaks(*(np.ascontiguousarray(p) for p in planes), np.ascontiguousarray(good),
                               float(min_snr))
    return _star_peaks_array(reference, science, variance_reference, variance_science, good, min_snr, xp)


def _star_peaks_array(reference, science, variance_reference, variance_science, good, min_snr, xp):
    """:func:`_star_peaks` as array expressions (the device's code, and the host kernel's reference)."""
    H, W = reference.shape
    snr_r = reference / xp.sqrt(xp.maximum(variance_reference, 1e-30))
    snr_n = science / xp.sqrt(xp.maximum(variance_science, 1e-30))
    core = snr_r[1:-1, 1:-1]
    peak = (core >= min_snr) & (snr_n[1:-1, 1:-1] >= min_snr) & good[1:-1, 1:-1]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                peak &= core > snr_r[1 + dy:H - 1 + dy, 1 + dx:W - 1 + dx]
    ys, xs = xp.nonzero(peak)
    return ys + 1, xs + 1


def _psf_fluxes(r_cube, n_cube, vr_cube, vn_cube, psf_r, psf_n, box):
    """PSF-fit fluxes of stars centred near the middle of their ``box`` cutouts, both images."""
    # Sub-pixel position from a parabola through the log of the reference's peak and its
    # neighbours (exact for a Gaussian core; a windowed centroid would be pulled to the
    # middle, biasing the narrower PSF's flux more than the wider one's).
    c = box // 2
    lg = np.log(np.clip(r_cube[:, c - 1:c + 2, c - 1:c + 2], 1e-30, None))
    dy = _parabola_vertex(lg[:, 0, 1], lg[:, 1, 1], lg[:, 2, 1])
    dx = _parabola_vertex(lg[:, 1, 0], lg[:, 1, 1], lg[:, 1, 2])
    out = []
    for cube, vcube, psf in ((r_cube, vr_cube, psf_r), (n_cube, vn_cube, psf_n)):
        p = _stamp_on_box(np.asarray(psf, np.float64), box)
        ky = np.fft.fftfreq(box)[None, :, None]
        kx = np.fft.rfftfreq(box)[None, None, :]
        ramp = np.exp(-2j * np.pi * (ky * dy[:, None, None] + kx * dx[:, None, None]))
        shifted = np.fft.irfft2(np.fft.rfft2(np.fft.ifftshift(p))[None] * ramp, s=(box, box))
        shifted = np.fft.fftshift(shifted, axes=(1, 2))
        norm = (shifted * shifted).sum(axis=(1, 2))
        out.append(((shifted * cube).sum(axis=(1, 2)) / norm, (shifted * shifted * vcube).sum(axis=(1, 2)) / norm ** 2))
    (f_r, v_r), (f_n, v_n) = out
    return f_r, f_n, v_r, v_n


def _parabola_vertex(left, mid, right):
    curv = left - 2 * mid + right
    safe = np.where(curv < 0, curv, -1.0)
    return np.clip(np.where(curv < 0, 0.5 * (left - right) / safe, 0.0), -0.5, 0.5)


def _stamp_on_box(p, box):
    """A centred odd stamp cropped or zero-padded to ``box`` x ``box`` (still centred)."""
    out = np.zeros((box, box))
    h, w = p.shape
    r, c = box // 2, (h // 2, w // 2)
    ys = slice(max(c[0] - r, 0), min(c[0] + r + 1, h))
    xs = slice(max(c[1] - r, 0), min(c[1] + r + 1, w))
    sub = p[ys, xs]
    oy, ox = r - (c[0] - ys.start), r - (c[1] - xs.start)
    out[oy:oy + sub.shape[0], ox:ox + sub.shape[1]] = sub
    return out


def _host(a):
    from astroray.kernels.backend import to_numpy

    return to_numpy(a)
