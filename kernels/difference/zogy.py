"""ZOGY image differencing (Zackay, Ofek & Gal-Yam 2016, ApJ 830, 27; arXiv:1601.02655).

From a reference ``R`` and a new (science) image ``N`` on the same grid,
background-subtracted, with PSFs ``P_r``, ``P_n``, background noise
``sigma_r``, ``sigma_n`` and flux zero points ``F_r``, ``F_n`` (hats are
Fourier transforms)::

    den^2   = sigma_n^2 F_r^2 |P_r^|^2 + sigma_r^2 F_n^2 |P_n^|^2
    D^      = (F_r P_r^ N^ - F_n P_n^ R^) / den                      (eq. 13)
    F_D     = F_r F_n / sqrt(sigma_n^2 F_r^2 + sigma_r^2 F_n^2)        (eq. 15)
    P_D^    = F_r F_n P_r^ P_n^ / (F_D den)                          (eq. 14)
    S^      = F_D D^ conj(P_D^) = k_n^ N^ - k_r^ R^                   (eq. 12, 17)
    k_n^    = F_n F_r^2 conj(P_n^) |P_r^|^2 / den^2
    k_r^    = F_r F_n^2 conj(P_r^) |P_n^|^2 / den^2
    V(S)    = V_N (x) k_n^2 + V_R (x) k_r^2                          (eqs. 26-28)
    V_ast   = sigma_x^2 [(dS_N/dx)^2 + (dS_R/dx)^2] + sigma_y^2 [(dS_N/dy)^2 + (dS_R/dy)^2]
    S_corr  = S / sqrt(V(S) + V_ast)                                 (eq. 25)
    F_S     = sum_k F_n^2 F_r^2 |P_n^|^2 |P_r^|^2 / den^2            (eq. 42)
    alpha   = S / F_S,  sigma_alpha = sqrt(V(S)) / F_S               (eqs. 41, 43)

``V_N`` and ``V_R`` are the per-pixel variance images (background and source
noise), ``(x)`` is convolution and ``S_N``, ``S_R`` the two terms of ``S``.
``alpha`` is the flux of a point source in the units where a star of flux
``T`` has ``F_n T`` counts in ``N``; the stage sets ``F_n = 1`` so it is in
science-image counts.

The images are zero-padded on the FFT grid so the convolutions do not wrap
around; the padded zeros carry zero variance, so ``S_corr`` stays unit-width
up to the edges when the source-noise terms are on.  The whole computation is
written once against the array module (NumPy or CuPy): on the CPU the FFTs
are :mod:`scipy.fft` on all cores in float32/complex64, on the GPU cuFFT with
plan reuse and the Fourier-space arithmetic fused into one kernel per step
(:func:`cupy.fuse`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from astroray.errors import InvalidInputError
from astroray.kernels.backend import array_module_of
from astroray.kernels.difference.common import (
    FourierBackend,
    background_sigma,
    embed_kernel,
    good_fft_size,
    padded_shape,
    prepare_psf,
)

__all__ = ["ZogyResult", "zogy", "zogy_psf_products", "lost_light_score", "lost_light_score_sparse"]


@dataclass
class ZogyResult:
    """All ZOGY products, on the device of the inputs, float32 (H, W) unless noted.

    Attributes
    ----------
    difference : array
        ``D``, the proper difference image: white noise of unit variance
        (background only), flux zero point :attr:`zero_point`.
    matched_filter : array
        ``S``, the matched-filter (detection) image.
    score : array
        ``S_corr``, ``S`` in units of its own standard deviation including the
        source-noise and astrometric terms: the image to threshold at 5 sigma.
    flux, flux_err : array
        PSF-photometry flux ``alpha = S / F_S`` of a point source centred on
        each pixel, and its 1-sigma error (units: ``F_n = 1``).
    score_variance : array or float
        ``V(S_N) + V(S_R)`` (a scalar when the source-noise terms are off).
    difference_variance : array or float
        Per-pixel variance of ``D`` with the source noise of both images
        when asked for; otherwise the background-only constant (about 1).
    psf : ndarray (h, w) float64
        ``P_D``, centred, summing to 1 (host array).
    zero_point : float
        ``F_D``.
    flux_normalisation : float
        ``F_S``.
    fft_shape : tuple
        The padded FFT grid.
    """

    difference: Any
    matched_filter: Any
    score: Any
    flux: Any
    flux_err: Any
    score_variance: Any
    difference_variance: Any
    psf: np.ndarray
    zero_point: float
    flux_normalisation: float
    fft_shape: tuple[int, int]
    meta: dict = field(default_factory=dict)


def zogy(reference, science, psf_reference, psf_science, *, flux_ratio: float = 1.0,
         sigma_reference: float | None = None, sigma_science: float | None = None,
         variance_reference=None, variance_science=None,
         sigma_astrometric: tuple[float, float] = (0.0, 0.0), source_noise: bool = True,
         difference_variance: bool = False, pad: int | None = None, fourier_floor: float = 1e-8,
         recenter_psf: bool = True, tile_overlap: int | None = None,
         backend: FourierBackend | None = None) -> ZogyResult:
    """ZOGY difference ``D``, ``S``, ``S_corr``, ``P_D``, ``F_D`` and the PSF-photometry flux.

    Parameters
    ----------
    reference, science : array (H, W)
        ``R`` and ``N``: background-subtracted, same pixel grid, finite
        (flagged pixels set to 0 with variance 0 by the caller).  NumPy or
        CuPy arrays; the computation runs where they live.
    psf_reference, psf_science : array (h, w) or (ny, nx, h, w)
        PSF stamps with odd sides; centred and normalised here.  A grid of
        stamps describes a spatially varying PSF: the image is cut into
        ``ny x nx`` equal tiles, each differenced with its own PSFs over the
        tile plus ``tile_overlap`` pixels on every side, and the tiles' cores
        are put together (a single stamp is used on every tile).
    flux_ratio : float
        ``F_n / F_r``: science counts per reference count of the same star
        (``F_n`` is set to 1).
    sigma_reference, sigma_science : float, optional
        Background noise; by default the square root of the median variance
        (or the MAD of the image where no variance is given).
    variance_reference, variance_science : array (H, W), optional
        Per-pixel variances (background + source noise) for the
        source-noise terms of ``S_corr`` and the flux errors.
    sigma_astrometric : (float, float)
        Registration noise ``(sigma_x, sigma_y)`` in pixels for the
        astrometric term of ``S_corr``.
    source_noise : bool
        Include the source-noise variance terms (needs the variance images);
        off, ``V(S)`` is the background-only constant.
    difference_variance : bool
        Also compute the per-pixel variance of ``D`` (three more FFTs).
    pad : int, optional
        Zero padding in pixels (default: three times the larger PSF stamp side;
        the kernel of ``D`` has faint wings well beyond the PSFs).
    fourier_floor : float
        Floor on the ZOGY denominator relative to its zero-frequency value.
        Where both PSF transforms fall below it the images hold no signal and
        their transforms are round-off: ``D`` is left without those
        frequencies instead of whitening numerical noise.
    recenter_psf : bool
        Shift each PSF so its centroid is on the middle pixel.
    tile_overlap : int, optional
        Margin around each tile (default: ``pad``), so a tile's core sees
        the same neighbourhood as in an untiled run.
    backend : FourierBackend, optional
        Reuse one across calls (it holds the FFT plans on the GPU).

    Returns
    -------
    ZogyResult

    Raises
    ------
    InvalidInputError
        Shapes differ, images not 2-D or not finite, a PSF that cannot be
        normalised, a non-positive noise, flux ratio or variance.
    """
    xp = array_module_of(science)
    R, N = _validate_pair(reference, science, xp)
    VR = VN = None
    if variance_reference is not None or variance_science is not None:
        if variance_reference is None or variance_science is None:
            raise InvalidInputError("give both variance images or neither")
        VR = _as_float32(variance_reference, xp, "reference variance", R.shape)
        VN = _as_float32(variance_science, xp, "science variance", N.shape)
        for name, v in (("reference", VR), ("science", VN)):
            if not bool(xp.all(v >= 0)):
                raise InvalidInputError(f"{name} variance has negative or NaN pixels")
            if not bool(xp.any(v > 0)):
                raise InvalidInputError(f"{name} variance is zero everywhere")
    if source_noise and VR is None:
        raise InvalidInputError("source_noise=True needs variance_reference and variance_science")
    grid_r = _psf_grid(psf_reference, "reference PSF", recenter_psf)
    grid_n = _psf_grid(psf_science, "science PSF", recenter_psf)
    if not (flux_ratio > 0) or not math.isfinite(flux_ratio):
        raise InvalidInputError(f"flux_ratio F_n/F_r must be positive and finite, got {flux_ratio!r}")
    good = None
    if sigma_reference is None or sigma_science is None:
        good = VR > 0 if VR is not None else xp.ones(R.shape, bool)
    s_r = sigma_reference if sigma_reference is not None else background_sigma(R, VR, good, xp)
    s_n = sigma_science if sigma_science is not None else background_sigma(N, VN, VN > 0 if VN is not None else good, xp)
    for name, s in (("reference", s_r), ("science", s_n)):
        if not (s > 0) or not math.isfinite(s):
            raise InvalidInputError(f"{name} background noise must be positive and finite (zero variance?), got {s!r}")
    sx, sy = (float(v) for v in sigma_astrometric)
    if sx < 0 or sy < 0:
        raise InvalidInputError(f"sigma_astrometric must be >= 0, got {sigma_astrometric!r}")
    side = max(max(p.shape) for p in grid_r.ravel().tolist() + grid_n.ravel().tolist())
    if pad is None:
        pad = 3 * side
    fb = backend if backend is not None else FourierBackend(xp)
    opts = dict(f_r=1.0 / float(flux_ratio), f_n=1.0, s_r=float(s_r), s_n=float(s_n), sx=sx, sy=sy,
                want_vd=difference_variance, pad=int(pad), floor=float(fourier_floor), fb=fb)
    VR, VN = (VR, VN) if source_noise else (None, None)
    if grid_r.shape == grid_n.shape == (1, 1):
        return _zogy_core(R, N, VR, VN, grid_r[0, 0], grid_n[0, 0], **opts)
    return _zogy_tiled(R, N, VR, VN, grid_r, grid_n, overlap=int(pad if tile_overlap is None else tile_overlap),
                       **opts)


def lost_light_score(lost_reference, lost_science, psf_reference, psf_science, *, flux_ratio: float,
                     sigma_reference: float, sigma_science: float, score_variance, fft_shape: tuple[int, int],
                     fourier_floor: float = 1e-8, recenter_psf: bool = True,
                     backend: FourierBackend | None = None, method: str = "auto"):
    """The change of ``S_corr`` caused by light removed from both images (blanked pixels), and its spread.

    Blanking a pixel flagged in one image removes light ``L`` (reference
    counts) from ``R`` and ``flux_ratio * L`` from ``N``.  ``S`` filters the
    two with different kernels, so the hole leaves
    ``dS = (k_r - flux_ratio k_n) (x) L`` behind: nothing on empty sky, a ring
    of residuals around a flagged star core.  ``L`` is read from the
    unflagged image, so it is what the flagged image *would* hold only up to
    the PSFs' difference: at a point source's core the flagged image's light
    can differ by up to the ratio ``q`` of the PSFs' peak values.  The spread
    is ``(q - 1) |k_r (x) L_r - flux_ratio k_n (x) L_n|``, that share of the
    flagged side's term.  Both come in units of the score's noise,
    ``/ sqrt(V(S))`` (the astrometric term left out, so they err on the large side).

    Parameters
    ----------
    lost_reference : array (H, W)
        ``L_r``: where only the reference pixel is flagged, the science image
        divided by ``flux_ratio``; 0 elsewhere.
    lost_science : array (H, W)
        ``L_n``: where only the science pixel is flagged, the reference image; 0 elsewhere.
    psf_reference, psf_science : array (h, w) or (ny, nx, h, w)
        The PSFs the difference used; of a grid, the central stamps give the
        kernels and the largest peak ratio over the tiles the spread.
    flux_ratio, sigma_reference, sigma_science, fourier_floor, recenter_psf
        As given to (or estimated by) :func:`zogy`.
    score_variance : array (H, W) or float
        :attr:`ZogyResult.score_variance`.
    fft_shape : (int, int)
        :attr:`ZogyResult.fft_shape`, reused (and its FFT plans with it) when
        it holds the image plus the kernels' radius; a grid that fits is made otherwise.
    backend : FourierBackend, optional
        The backend of the :func:`zogy` call (its cached kernels are reused).
    method : {"auto", "fft", "direct"}
        ``"fft"``: four full-grid FFTs (any device).  ``"direct"`` (host
        arrays only): the kernels summed over the flagged pixels in a
        parallel Numba loop (float32, as the FFTs); it equals the FFTs' result
        to their round-off and costs a fraction of them while few pixels are
        flagged.  ``"auto"``: direct on the host (Numba kernels) unless so many
        pixels are flagged that the FFTs are cheaper.

    Returns
    -------
    delta, spread : array (H, W)
        The predicted change of ``S_corr`` and the bound on its error.
    """
    xp = array_module_of(lost_reference)
    fb = backend if backend is not None else FourierBackend(xp)
    if method not in ("auto", "fft", "direct"):
        raise ValueError(f"method must be 'auto', 'fft' or 'direct', got {method!r}")
    if method == "direct" and xp is not np:
        raise ValueError("method='direct' runs on host (NumPy) arrays only")
    k_r, k_n, q = _lost_light_kernels(fb, psf_reference, psf_science, flux_ratio=flux_ratio,
                                      sigma_reference=sigma_reference, sigma_science=sigma_science,
                                      fourier_floor=fourier_floor, recenter_psf=recenter_psf, fft_shape=fft_shape)
    shape = tuple(lost_reference.shape)
    if method == "direct" or (method == "auto" and xp is np and fb.cpu_kernels == "numba"):
        lost_reference = np.asarray(lost_reference, dtype=np.float32)
        lost_science = np.asarray(lost_science, dtype=np.float32)
        flat_r, flat_n = np.flatnonzero(lost_reference), np.flatnonzero(lost_science)
        if method == "direct" or _direct_is_cheaper(flat_r.size + flat_n.size, k_r.shape, fft_shape):
            flat = np.concatenate((flat_r, flat_n))
            values = np.concatenate((lost_reference.ravel()[flat_r], lost_science.ravel()[flat_n]))
            from_reference = np.arange(flat.size) < flat_r.size
            delta, spread, _ = _lost_light_direct(shape, flat, values, from_reference, k_r, k_n, q, score_variance)
            return delta, spread
    return _lost_light_fft(fb, lost_reference, lost_science, k_r, k_n, q, score_variance, fft_shape)


def lost_light_score_sparse(shape: tuple[int, int], flagged, lost, from_reference, psf_reference, psf_science, *,
                            flux_ratio: float, sigma_reference: float, sigma_science: float, score_variance,
                            fft_shape: tuple[int, int], fourier_floor: float = 1e-8, recenter_psf: bool = True,
                            threshold: float | None = None, backend: FourierBackend | None = None,
                            method: str = "auto"):
    """:func:`lost_light_score` on the host, from the flagged pixels alone (no full-frame images of lost light).

    Parameters
    ----------
    shape : (int, int)
        The image's shape.
    flagged : int array (n,)
        Flat (row-major) indices of the pixels whose light was lost, each once.
    lost : array (n,)
        The light lost there: ``L_r`` or ``L_n`` (see :func:`lost_light_score`).
    from_reference : bool array (n,)
        True where the pixel's light is ``L_r`` (flagged in the reference only),
        False for ``L_n``.
    threshold : float, optional
        Also return where ``spread + |delta| > threshold`` (float32 sums, as the
        full-frame arrays would give).
    method : {"auto", "direct", "fft"}
        ``"auto"``: the direct sum unless so many pixels are flagged that the
        four FFTs are cheaper.
    Other parameters
        As :func:`lost_light_score`.

    Returns
    -------
    delta, spread : ndarray (H, W) float32
    over : ndarray (H, W) bool or None
        None without ``threshold``.
    """
    if method not in ("auto", "fft", "direct"):
        raise ValueError(f"method must be 'auto', 'fft' or 'direct', got {method!r}")
    fb = backend if backend is not None else FourierBackend(np)
    if fb.on_gpu:
        raise ValueError("lost_light_score_sparse runs on the host: give it a NumPy FourierBackend")
    flagged = np.asarray(flagged, dtype=np.int64).ravel()
    lost = np.asarray(lost, dtype=np.float32).ravel()
    from_reference = np.asarray(from_reference, dtype=bool).ravel()
    if not flagged.shape == lost.shape == from_reference.shape:
        raise InvalidInputError(f"flagged, lost and from_reference must have one length, got "
                                f"{flagged.shape}, {lost.shape} and {from_reference.shape}")
    shape = tuple(int(n) for n in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise InvalidInputError(f"shape must be (H, W) with H, W >= 1, got {shape}")
    if flagged.size and (int(flagged.min()) < 0 or int(flagged.max()) >= shape[0] * shape[1]):
        raise InvalidInputError(f"flagged indices must lie in [0, {shape[0] * shape[1]}) for shape {shape}")
    if not isinstance(score_variance, float) and tuple(np.shape(score_variance)) != shape:
        raise InvalidInputError(f"score_variance shape {tuple(np.shape(score_variance))} is not the image's {shape}")
    k_r, k_n, q = _lost_light_kernels(fb, psf_reference, psf_science, flux_ratio=flux_ratio,
                                      sigma_reference=sigma_reference, sigma_science=sigma_science,
                                      fourier_floor=fourier_floor, recenter_psf=recenter_psf, fft_shape=fft_shape)
    if method == "direct" or (method == "auto" and _direct_is_cheaper(flagged.size, k_r.shape, fft_shape)):
        return _lost_light_direct(shape, flagged, lost, from_reference, k_r, k_n, q, score_variance,
                                  threshold=threshold)
    lost_r = np.zeros(shape, np.float32)
    lost_n = np.zeros(shape, np.float32)
    lost_r.ravel()[flagged[from_reference]] = lost[from_reference]
    lost_n.ravel()[flagged[~from_reference]] = lost[~from_reference]
    delta, spread = _lost_light_fft(fb, lost_r, lost_n, k_r, k_n, q, score_variance, fft_shape)
    over = None if threshold is None else (spread + np.abs(delta)) > threshold
    return delta, spread, over


def _lost_light_kernels(fb, psf_reference, psf_science, *, flux_ratio, sigma_reference, sigma_science,
                        fourier_floor, recenter_psf, fft_shape):
    """``k_r``, ``flux_ratio * k_n`` (host float64 stamps) and the PSFs' largest peak ratio ``q``."""
    grid_r, grid_n = (_psf_grid(p, name, recenter_psf)
                      for p, name in ((psf_reference, "reference PSF"), (psf_science, "science PSF")))
    Pr, Pn = _central_stamp(grid_r), _central_stamp(grid_n)
    c = float(flux_ratio)
    small = _cached_psf_products(fb, Pr, Pn, f_r=1.0 / c, f_n=1.0, s_r=float(sigma_reference),
                                 s_n=float(sigma_science), floor=float(fourier_floor),
                                 size=min(2 * max(Pr.shape + Pn.shape) + 1, 2 * (min(fft_shape) // 2) - 1))
    # the largest peak ratio over the tiles (a grid's corners can differ more than its centre)
    peaks_r = np.array([p.max() for p in grid_r.ravel()])
    peaks_n = np.array([p.max() for p in grid_n.ravel()])
    q = float(max(peaks_r.max() / peaks_n.min(), peaks_n.max() / peaks_r.min(), 1.0))
    return small["k_r"], small["k_n"] * c, q


def _lost_light_fft(fb, lost_reference, lost_science, k_r, k_n, q, score_variance, fft_shape):
    """The four-FFT evaluation (any device): ``delta``, ``spread``."""
    xp = fb.xp
    shape = tuple(lost_reference.shape)
    radius = k_r.shape[0] // 2
    if fft_shape[0] < shape[0] + radius or fft_shape[1] < shape[1] + radius:
        fft_shape = padded_shape(shape, radius)  # a tiled difference reports its tiles' grid
    a = fb.rfft2_stamp(k_r, fft_shape)
    b = fb.rfft2_stamp(k_n, fft_shape)
    x = fb.rfft2(xp.asarray(lost_reference, dtype=xp.float32), fft_shape)
    y = fb.rfft2(xp.asarray(lost_science, dtype=xp.float32), fft_shape)
    flagged_hat = a * x - b * y  # the flagged sides' terms: k_r (x) L_r - c k_n (x) L_n
    a -= b
    x += y
    x *= a  # the whole change: (k_r - c k_n) (x) (L_r + L_n)
    del a, b, y
    delta = fb.irfft2(x, fft_shape, shape, overwrite=True)
    flagged = fb.irfft2(flagged_hat, fft_shape, shape, overwrite=True)
    spread = xp.abs(_safe_ratio(xp.ascontiguousarray(flagged), score_variance, fb))
    spread *= np.float32(q - 1.0)
    return _safe_ratio(xp.ascontiguousarray(delta), score_variance, fb), spread


_DIRECT_COST_PER_FFT_PIXEL = 100.0
"""Direct convolution of the flagged pixels is chosen while ``n_flagged * kernel_area`` stays under this many
times the pixels of the FFT grid.  Measured on a shared 2-core machine (a 4k simulated pair: 47,761 flagged
pixels, 91 x 91 kernels, a 4200^2 grid): the direct sum 0.35-0.5 s, the four FFTs 3-4 s, so they would be
equal near 170; 100 leaves the FFTs the benefit of the doubt."""


def _direct_is_cheaper(n_flagged: int, kernel_shape, fft_shape) -> bool:
    return n_flagged * kernel_shape[0] * kernel_shape[1] <= _DIRECT_COST_PER_FFT_PIXEL * fft_shape[0] * fft_shape[1]


def _lost_light_direct(shape, flagged, lost, from_reference, k_r, k_n, q, score_variance, *, threshold=None):
    """The direct sum over the flagged pixels (parallel Numba): ``delta``, ``spread`` and ``over`` (or None).

    Blanked pixels are a small share of a frame (cosmic rays, bad columns,
    saturated cores) and the kernels a few PSF widths across: the sum costs a
    fraction of four full-frame FFTs and touches only the flagged pixels'
    neighbourhood (the outputs are zero elsewhere, as the FFTs give to their
    round-off).
    """
    from astroray.kernels.difference import _cpu

    H, W = shape
    keep = lost != 0  # no light lost, nothing to spread
    order = np.argsort(flagged[keep], kind="stable")  # row-major: each row block finds its pixels by bisection
    flat = flagged[keep][order]
    ys, xs = np.divmod(flat, W)
    scalar = isinstance(score_variance, float)
    variance = (np.full((1, 1), score_variance, np.float32) if scalar
                else np.ascontiguousarray(score_variance, dtype=np.float32))
    delta = np.zeros((H, W), np.float32)
    spread = np.zeros((H, W), np.float32)
    over = np.zeros((H, W) if threshold is not None else (1, 1), bool)
    _cpu.lost_light_direct(ys, xs, lost[keep][order].astype(np.float32), from_reference[keep][order],
                           np.ascontiguousarray(k_r - k_n, dtype=np.float32), np.ascontiguousarray(k_r, np.float32),
                           np.ascontiguousarray(k_n, np.float32), variance, scalar, float(q - 1.0),
                           delta, spread, over, threshold is not None,
                           np.float32(threshold if threshold is not None else 0.0), 32)
    return delta, spread, (over if threshold is not None else None)


def _central_stamp(grid: np.ndarray) -> np.ndarray:
    return grid[min(grid.shape[0] - 1, grid.shape[0] // 2), min(grid.shape[1] - 1, grid.shape[1] // 2)]


def _psf_grid(psf, name, recenter) -> np.ndarray:
    """A PSF stamp (h, w) or a grid of stamps (ny, nx, h, w) as an (ny, nx) object array of prepared stamps."""
    from astroray.kernels.backend import to_numpy

    p = np.asarray(to_numpy(psf))
    if p.ndim == 2:
        p = p[None, None]
    if p.ndim != 4:
        raise InvalidInputError(f"{name} must be a stamp (h, w) or a grid of stamps (ny, nx, h, w), got shape {p.shape}")
    out = np.empty(p.shape[:2], dtype=object)
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            where = f" (tile {i}, {j})" if p.shape[:2] != (1, 1) else ""
            out[i, j] = prepare_psf(p[i, j], name=name + where, recenter=recenter)
    return out


def _validate_pair(reference, science, xp):
    R = _as_float32(reference, xp, "reference image")
    N = _as_float32(science, xp, "science image", R.shape)
    for name, a in (("reference", R), ("science", N)):
        if not bool(xp.isfinite(a).all()):
            raise InvalidInputError(f"{name} image has NaN or inf pixels (mask them and set them to 0 first)")
    return R, N


def _as_float32(a, xp, name, shape=None):
    a = xp.asarray(a, dtype=xp.float32)
    if a.ndim != 2:
        raise InvalidInputError(f"{name} must be 2-D, got shape {a.shape}")
    if shape is not None and a.shape != tuple(shape):
        raise InvalidInputError(f"{name} shape {a.shape} does not match the reference shape {tuple(shape)}")
    if a.size == 0:
        raise InvalidInputError(f"{name} is empty")
    return a


# --------------------------------------------------------------------------- Fourier arithmetic
# Written once; on the GPU each becomes one fused kernel (FourierBackend.fuse), on the CPU plain NumPy.


def _make_fourier_ops(xp):
    def weights(pn_hat, pr_hat, f_r, f_n, var_n, var_r, floor2):
        """The PSF-only factors: (F_r P_r^)/den, (F_n P_n^)/den, k_n^, k_r^ and |P_D^ F_D|^2."""
        a = pr_hat * f_r
        b = pn_hat * f_n
        aa = xp.abs(a)
        aa = aa * aa
        bb = xp.abs(b)
        bb = bb * bb
        den2 = xp.maximum(var_n * aa + var_r * bb, floor2)
        den = xp.sqrt(den2)
        return a / den, b / den, aa * xp.conj(b) / den2, bb * xp.conj(a) / den2, aa * bb / den2

    def d_and_s(n_hat, r_hat, da, db, kn, kr):
        return da * n_hat - db * r_hat, kn * n_hat - kr * r_hat

    def d_sn_sr(n_hat, r_hat, da, db, kn, kr):
        return da * n_hat - db * r_hat, kn * n_hat, kr * r_hat

    def variance_mix(vn_hat, vr_hat, kn2_hat, kr2_hat):
        return vn_hat * kn2_hat + vr_hat * kr2_hat

    def safe_ratio(s, var):
        """``s / sqrt(var)``, 0 where no data reaches the filter (``var == 0``) instead of inf."""
        positive = var > 0
        return xp.where(positive, s / xp.sqrt(xp.where(positive, var, 1.0)), 0.0)

    return weights, d_and_s, d_sn_sr, variance_mix, safe_ratio


def _ops_for(fb: FourierBackend):
    ops = getattr(fb, "_zogy_ops", None)
    if ops is None:
        if not fb.on_gpu and fb.cpu_kernels == "numba":
            from astroray.kernels.difference import _cpu

            ops = tuple(_whole(f) for f in (_cpu.weights, _cpu.d_and_s, _cpu.d_sn_sr, _cpu.variance_mix,
                                            _cpu.safe_ratio))
        else:
            ops = tuple(fb.fuse(f) for f in _make_fourier_ops(fb.xp))
        fb._zogy_ops = ops  # compiled once per backend object
    return ops


def _whole(jitted):
    def call(*args):
        return jitted(*args)

    call.whole_arrays = True
    return call


def _half_plane_mean(x_half, full_width: int, xp) -> float:
    """Mean over the full Fourier plane of a Hermitian-symmetric real quantity given on the rfft half."""
    total = x_half.sum(dtype=xp.float64) * 2.0 - x_half[:, 0].sum(dtype=xp.float64)
    if full_width % 2 == 0:
        total = total - x_half[:, -1].sum(dtype=xp.float64)
    return float(total) / (x_half.shape[0] * full_width)


def zogy_psf_products(psf_reference: np.ndarray, psf_science: np.ndarray, *, f_r: float, f_n: float,
                      s_r: float, s_n: float, floor: float = 1e-8, size: int | None = None) -> dict:
    """ZOGY's PSF-only products on a small grid, in float64 on the host.

    Returns ``P_D`` (centred stamp), ``F_D`` and the real-space kernels
    ``k_n``, ``k_r`` (of ``S``) and ``d_n``, ``d_r`` (of ``D``), centred on
    odd stamps of side ``size`` (default: twice the larger PSF side + 1).
    """
    side = size or 2 * max(psf_reference.shape + psf_science.shape) + 1
    grid = good_fft_size(2 * side)
    shape = (grid, grid)
    pr = np.fft.rfft2(_embed_np(psf_reference, shape))
    pn = np.fft.rfft2(_embed_np(psf_science, shape))
    a, b = f_r * pr, f_n * pn
    aa, bb = np.abs(a) ** 2, np.abs(b) ** 2
    den2_0 = s_n ** 2 * f_r ** 2 + s_r ** 2 * f_n ** 2
    den2 = np.maximum(s_n ** 2 * aa + s_r ** 2 * bb, floor ** 2 * den2_0)
    den = np.sqrt(den2)
    f_d = f_r * f_n / math.sqrt(den2_0)
    # Parseval on the grid: exact sums of the squared kernels, wings included.
    out = {"F_D": f_d, "sum_d_n2": _half_plane_mean(np.abs(a) ** 2 / den2, grid, np),
           "sum_d_r2": _half_plane_mean(np.abs(b) ** 2 / den2, grid, np)}
    for name, spec in (("P_D", a * b / (f_d * den)), ("k_n", aa * np.conj(b) / den2),
                       ("k_r", bb * np.conj(a) / den2), ("d_n", a / den), ("d_r", b / den)):
        out[name] = _centre_crop(np.fft.irfft2(spec, s=shape), side)
    return out


def _cached_psf_products(fb, Pr, Pn, **kw) -> dict:
    # The same PSF pair comes back for every tile and every repeat of a pair: a few entries suffice.
    cache = fb.__dict__.setdefault("_psf_products", {})
    key = (Pr.shape, Pr.tobytes(), Pn.shape, Pn.tobytes(), tuple(sorted(kw.items())))
    hit = cache.get(key)
    if hit is None:
        if len(cache) >= 8:
            cache.pop(next(iter(cache)))
        hit = cache[key] = zogy_psf_products(Pr, Pn, **kw)
    return hit


def _crop_centred(stamp, side):
    c0, c1, r = stamp.shape[0] // 2, stamp.shape[1] // 2, side // 2
    return stamp[c0 - r:c0 + r + 1, c1 - r:c1 + r + 1]


def _embed_np(stamp, shape):
    return embed_kernel(stamp, shape, np, dtype=np.float64)


def _centre_crop(k, side):
    r = side // 2
    rows = np.arange(-r, r + 1) % k.shape[0]
    cols = np.arange(-r, r + 1) % k.shape[1]
    return k[np.ix_(rows, cols)]


def _zogy_core(R, N, VR, VN, Pr, Pn, *, f_r, f_n, s_r, s_n, sx, sy, want_vd, pad, floor, fb):
    xp = fb.xp
    H, W = N.shape
    shape = padded_shape((H, W), pad)
    weights, d_and_s, d_sn_sr, variance_mix, _ = _ops_for(fb)
    var_n, var_r = s_n * s_n, s_r * s_r
    den2_0 = var_n * f_r * f_r + var_r * f_n * f_n
    floor2 = floor * floor * den2_0
    f_d = f_r * f_n / math.sqrt(den2_0)

    # PSF transforms in float64: where a PSF's transform falls below float32 round-off
    # (~1e-7, the high frequencies of any well-sampled PSF) the ZOGY weights would be
    # ratios of round-off noise, different on every FFT library.
    c64, f64 = np.complex64, np.float64
    pr_hat = fb.rfft2_stamp(Pr, shape, dtype=f64)
    pn_hat = fb.rfft2_stamp(Pn, shape, dtype=f64)
    da, db, kn, kr, fs_density = fb.elementwise(weights, (pn_hat, pr_hat), (f_r, f_n, var_n, var_r, floor2),
                                                (c64, c64, c64, c64, f64))
    del pr_hat, pn_hat
    f_s = _half_plane_mean(fs_density, shape[1], xp)
    del fs_density

    n_hat = fb.rfft2(N, shape)
    r_hat = fb.rfft2(R, shape)
    astrometric = sx > 0 or sy > 0
    if astrometric:
        d_hat, sn_hat, sr_hat = fb.elementwise(d_sn_sr, (n_hat, r_hat, da, db, kn, kr), (), (c64, c64, c64))
    else:
        d_hat, s_hat = fb.elementwise(d_and_s, (n_hat, r_hat, da, db, kn, kr), (), (c64, c64))
    del n_hat, r_hat, da, db, kn, kr
    D = fb.irfft2(d_hat, shape, (H, W), overwrite=True)
    del d_hat
    if astrometric:
        S_N = fb.irfft2(sn_hat, shape, (H, W), overwrite=True)
        S_R = fb.irfft2(sr_hat, shape, (H, W), overwrite=True)
        del sn_hat, sr_hat
        S = S_N - S_R
        v_ast = _astrometric_op(fb)(S_N, S_R, sx, sy)
        del S_N, S_R
    else:
        S = fb.irfft2(s_hat, shape, (H, W), overwrite=True)
        del s_hat
        v_ast = None

    # Kernels of the variance terms, P_D and D's white-noise level: PSF-only, on a small host grid.
    # k_n, k_r and P_D are compact; D's kernels d_n, d_r have faint wings out to ~pad.
    side = 2 * pad + 1 if (want_vd and VN is not None) else 2 * max(Pr.shape + Pn.shape) + 1
    small = _cached_psf_products(fb, Pr, Pn, f_r=f_r, f_n=f_n, s_r=s_r, s_n=s_n, floor=floor,
                                 size=min(side, 2 * (min(shape) // 2) - 1))
    v_d_white = var_n * small["sum_d_n2"] + var_r * small["sum_d_r2"]
    if VN is not None:
        vn_hat = fb.rfft2(VN, shape)
        vr_hat = fb.rfft2(VR, shape)
        kn2_hat = fb.rfft2_stamp(small["k_n"] ** 2, shape)
        kr2_hat = fb.rfft2_stamp(small["k_r"] ** 2, shape)
        (v_hat,) = fb.elementwise(variance_mix, (vn_hat, vr_hat, kn2_hat, kr2_hat), (), (c64,))
        V_S = fb.irfft2(v_hat, shape, (H, W), overwrite=True)
        del v_hat
        del kn2_hat, kr2_hat
        xp.maximum(V_S, 0.0, out=V_S)  # FFT round-off can dip below 0 where there is no data
        if want_vd:
            dn2_hat = fb.rfft2_stamp(small["d_n"] ** 2, shape)
            dr2_hat = fb.rfft2_stamp(small["d_r"] ** 2, shape)
            (v_hat,) = fb.elementwise(variance_mix, (vn_hat, vr_hat, dn2_hat, dr2_hat), (), (c64,))
            V_D = fb.irfft2(v_hat, shape, (H, W), overwrite=True)
            del v_hat
            xp.maximum(V_D, 0.0, out=V_D)
            V_D = xp.ascontiguousarray(V_D)
            del dn2_hat, dr2_hat
        else:
            V_D = v_d_white
        del vn_hat, vr_hat
        V_S = xp.ascontiguousarray(V_S)
    else:
        # Background only: V(S) = sigma_n^2 sum k_n^2 + sigma_r^2 sum k_r^2 = F_S (Parseval).
        V_S = f_s
        V_D = v_d_white  # white: var_n sum d_n^2 + var_r sum d_r^2 (1 unless the floor bites)

    D = xp.ascontiguousarray(D)
    S = xp.ascontiguousarray(S)
    total_var = V_S if v_ast is None else v_ast + V_S
    score = _safe_ratio(S, total_var, fb)
    flux = S * (1.0 / f_s)
    flux_err = xp.sqrt(V_S) * (1.0 / f_s) if not isinstance(V_S, float) else xp.full(
        (H, W), math.sqrt(V_S) / f_s, dtype=xp.float32)
    psf_d = _crop_centred(small["P_D"], max(Pr.shape + Pn.shape))
    psf_d = psf_d / psf_d.sum()  # the stamp crops P_D's faint wings; keep it a unit-flux PSF
    return ZogyResult(difference=D, matched_filter=S, score=score, flux=flux, flux_err=flux_err,
                      score_variance=V_S, difference_variance=V_D, psf=psf_d, zero_point=f_d,
                      flux_normalisation=f_s, fft_shape=shape,
                      meta={"sigma_reference": s_r, "sigma_science": s_n, "f_r": f_r, "f_n": f_n})


def _zogy_tiled(R, N, VR, VN, grid_r, grid_n, *, overlap, **opts) -> ZogyResult:
    """ZOGY per tile with that tile's PSFs; overlapping margins keep the seams invisible."""
    xp = opts["fb"].xp
    ny, nx = max(grid_r.shape[0], grid_n.shape[0]), max(grid_r.shape[1], grid_n.shape[1])
    for g, name in ((grid_r, "reference"), (grid_n, "science")):
        if g.shape not in ((1, 1), (ny, nx)):
            raise InvalidInputError(f"{name} PSF grid {g.shape} does not match the other grid {(ny, nx)}")
    H, W = N.shape
    if ny > H or nx > W:
        raise InvalidInputError(f"PSF grid {(ny, nx)} has more tiles than the image {(H, W)} has pixels")
    ey = np.linspace(0, H, ny + 1).round().astype(int)
    ex = np.linspace(0, W, nx + 1).round().astype(int)
    names = ("difference", "matched_filter", "score", "flux", "flux_err", "score_variance", "difference_variance")
    out = {k: xp.empty((H, W), dtype=xp.float32) for k in names}
    psfs = np.empty((ny, nx), dtype=object)
    f_s = np.empty((ny, nx))
    f_d = None
    shape = None
    for i in range(ny):
        for j in range(nx):
            y0, y1, x0, x1 = ey[i], ey[i + 1], ex[j], ex[j + 1]
            a0, a1 = max(0, y0 - overlap), min(H, y1 + overlap)
            b0, b1 = max(0, x0 - overlap), min(W, x1 + overlap)
            win = (slice(a0, a1), slice(b0, b1))
            t = _zogy_core(R[win], N[win], None if VR is None else VR[win], None if VN is None else VN[win],
                           grid_r[i % grid_r.shape[0], j % grid_r.shape[1]],
                           grid_n[i % grid_n.shape[0], j % grid_n.shape[1]], **opts)
            core = (slice(y0 - a0, y1 - a0), slice(x0 - b0, x1 - b0))
            for k in names:
                v = getattr(t, k)
                out[k][y0:y1, x0:x1] = v[core] if not isinstance(v, float) else v
            psfs[i, j], f_s[i, j], f_d = t.psf, t.flux_normalisation, t.zero_point
            shape = t.fft_shape
    centre = psfs[min(ny - 1, ny // 2), min(nx - 1, nx // 2)]
    side = max(p.shape[0] for p in psfs.ravel())
    grid = np.zeros((ny, nx, side, side))
    for i in range(ny):
        for j in range(nx):
            p = psfs[i, j]
            o = (side - p.shape[0]) // 2
            grid[i, j, o:o + p.shape[0], o:o + p.shape[1]] = p
    return ZogyResult(difference=out["difference"], matched_filter=out["matched_filter"], score=out["score"],
                      flux=out["flux"], flux_err=out["flux_err"], score_variance=out["score_variance"],
                      difference_variance=out["difference_variance"], psf=centre, zero_point=f_d,
                      flux_normalisation=float(f_s[min(ny - 1, ny // 2), min(nx - 1, nx // 2)]), fft_shape=shape,
                      meta={"sigma_reference": opts["s_r"], "sigma_science": opts["s_n"], "f_r": opts["f_r"],
                            "f_n": opts["f_n"], "psf_grid": grid, "flux_normalisation_grid": f_s,
                            "tile_edges_y": ey.tolist(), "tile_edges_x": ex.tolist()})


def _astrometric_variance(s, xp, sx, sy):
    # Central differences (one-sided at the edges), as numpy.gradient.
    gy, gx = xp.gradient(s)
    return (sx * sx) * gx * gx + (sy * sy) * gy * gy


def _astrometric_op(fb: FourierBackend):
    """``V_ast(S_N, S_R, sx, sy)``: one parallel Numba pass on the CPU, array expressions otherwise."""
    def op(s_n, s_r, sx, sy):
        v = _astrometric_variance(s_n, fb.xp, sx, sy)
        v += _astrometric_variance(s_r, fb.xp, sx, sy)
        return v

    if not fb.on_gpu and fb.cpu_kernels == "numba":
        from astroray.kernels.difference import _cpu

        def fused(s_n, s_r, sx, sy):
            if min(s_n.shape) < 2:  # no stencil fits: numpy.gradient's own error
                return op(s_n, s_r, sx, sy)
            return _cpu.astrometric_variance(s_n, s_r, np.float32(sx * sx), np.float32(sy * sy))

        return fused
    return op


def _safe_ratio(s, var, fb: FourierBackend):
    if isinstance(var, float):
        return s * (1.0 / math.sqrt(var))
    (out,) = fb.elementwise(_ops_for(fb)[4], (s, var), (), (np.float32,))
    return out
