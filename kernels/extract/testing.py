"""A simple simulated star field with truth, for tests and benchmarks of extraction."""
from __future__ import annotations

import numpy as np

__all__ = ["star_field"]


def star_field(shape=(512, 512), n_stars=200, *, fwhm=3.0, sky=100.0, noise=5.0, flux_range=(200.0, 2e5),
               seed=0, dtype=np.float32):
    """Gaussian stars with power-law fluxes on a flat sky with Gaussian noise.

    Parameters
    ----------
    shape : (int, int)
    n_stars : int
    fwhm : float
        Gaussian PSF FWHM in pixels.
    sky, noise : float
        Sky level and per-pixel noise sigma.
    flux_range : (float, float)
        Total fluxes drawn log-uniformly between these.
    seed : int

    Returns
    -------
    image : ndarray (H, W)
    truth : dict of ndarray
        ``x``, ``y`` (0-based pixel centres), ``flux``.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    x = rng.uniform(4, w - 5, n_stars)
    y = rng.uniform(4, h - 5, n_stars)
    flux = np.exp(rng.uniform(np.log(flux_range[0]), np.log(flux_range[1]), n_stars))
    sigma = fwhm / 2.3548
    half = int(np.ceil(5 * sigma))
    image = np.full(shape, sky, dtype=np.float64)
    offs = np.arange(-half, half + 1)
    for xi, yi, fi in zip(x, y, flux):
        cx, cy = int(round(xi)), int(round(yi))
        gx = np.exp(-0.5 * ((cx + offs - xi) / sigma) ** 2)
        gy = np.exp(-0.5 * ((cy + offs - yi) / sigma) ** 2)
        stamp = fi * np.outer(gy, gx) / (2 * np.pi * sigma ** 2)
        y0, x0 = cy - half, cx - half
        ys = slice(max(y0, 0), min(y0 + len(offs), h))
        xs = slice(max(x0, 0), min(x0 + len(offs), w))
        image[ys, xs] += stamp[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    image += rng.normal(0.0, noise, shape)
    return image.astype(dtype), {"x": x, "y": y, "flux": flux}
