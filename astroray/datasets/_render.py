"""Numba kernels that paint the simulated sky into pixel arrays.

Pixel centres sit at integer coordinates (0-based); pixel ``(iy, ix)`` covers
``[ix - 0.5, ix + 0.5] x [iy - 0.5, iy + 0.5]``.  Profiles are integrated over
the pixel by 3x3 (point sources) or 5x5 (Sersic cusps) sub-sampling where they
are steep, and point-sampled in the wings.  All kernels are deterministic.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = [
    "GAUSSIAN",
    "MOFFAT",
    "psf_norm",
    "add_point_sources",
    "psf_stamps",
    "sersic_stamps",
    "add_stamps",
    "add_line",
    "add_streak",
    "saturate_and_bleed",
    "apply_noise",
]

GAUSSIAN = 0
MOFFAT = 1


@nb.njit(cache=True, inline="always")
def _profile(r2, kind, width2, beta, norm):
    if kind == MOFFAT:
        return norm * (1.0 + r2 / width2) ** (-beta)
    return norm * math.exp(-0.5 * r2 / width2)


@nb.njit(cache=True)
def psf_norm(kind, width, beta):
    """Peak value of the unit-flux profile (integral over the plane is 1)."""
    if kind == MOFFAT:
        return (beta - 1.0) / (math.pi * width * width)
    return 1.0 / (2.0 * math.pi * width * width)


@nb.njit(cache=True)
def _paint_point(image, xc, yc, flux, kind, width, beta, radius, core_radius):
    height, wide = image.shape
    width2 = width * width
    norm = psf_norm(kind, width, beta)
    x0 = max(int(math.floor(xc - radius)), 0)
    x1 = min(int(math.ceil(xc + radius)), wide - 1)
    y0 = max(int(math.floor(yc - radius)), 0)
    y1 = min(int(math.ceil(yc + radius)), height - 1)
    r2max = radius * radius
    core2 = core_radius * core_radius
    third = 1.0 / 3.0
    for iy in range(y0, y1 + 1):
        dy = iy - yc
        for ix in range(x0, x1 + 1):
            dx = ix - xc
            r2 = dx * dx + dy * dy
            if r2 > r2max:
                continue
            if r2 < core2:
                acc = 0.0
                for sy in range(3):
                    ddy = dy + (sy - 1) * third
                    for sx in range(3):
                        ddx = dx + (sx - 1) * third
                        acc += _profile(ddx * ddx + ddy * ddy, kind, width2, beta, norm)
                value = acc / 9.0
            else:
                value = _profile(r2, kind, width2, beta, norm)
            image[iy, ix] += flux * value


@nb.njit(cache=True)
def add_point_sources(image, x, y, flux, kind, width, beta, radius, core_radius):
    """Add PSF-shaped point sources (total flux ``flux`` each) to ``image`` in place.

    ``width`` is the Moffat alpha or Gaussian sigma per source (pixels);
    ``radius`` the truncation radius per source; ``core_radius`` where pixel
    integration by sub-sampling is done.
    """
    for k in range(x.shape[0]):
        _paint_point(image, x[k], y[k], flux[k], kind, width[k], beta, radius[k], core_radius[k])


@nb.njit(cache=True)
def psf_stamps(size, kind, width, beta, dx, dy, core_radius):
    """Unit-sum PSF stamps (n, size, size) centred at ``size // 2 + (dx, dy)``.

    Pixel-integrated exactly as :func:`add_point_sources` paints sources with
    the same ``core_radius``, so photometry calibrated on a stamp is unbiased.
    """
    n = width.shape[0]
    out = np.zeros((n, size, size), dtype=np.float64)
    c = size // 2
    for k in range(n):
        _paint_point(out[k], c + dx[k], c + dy[k], 1.0, kind, width[k], beta, size * 1.0, core_radius[k])
        total = out[k].sum()
        if total > 0:
            out[k] /= total
    return out


@nb.njit(cache=True)
def sersic_stamps(size, dx, dy, n_index, r_eff, axis_ratio, angle, truncation):
    """Unit-sum, unconvolved Sersic stamps (m, size, size) centred at ``size // 2 + (dx, dy)``.

    Truncated at ``truncation[k]`` effective radii (elliptical); the cusp within
    two pixels of the centre is integrated by 5x5 sub-sampling.
    """
    m = n_index.shape[0]
    out = np.zeros((m, size, size), dtype=np.float64)
    c = size // 2
    for k in range(m):
        n = n_index[k]
        # Ciotti & Bertin (1999) expansion of b_n, good to 1e-4 for n > 0.36
        bn = 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n * n)
        cos_t = math.cos(angle[k])
        sin_t = math.sin(angle[k])
        q = axis_ratio[k]
        re = r_eff[k]
        rmax = truncation[k] * re
        xc = c + dx[k]
        yc = c + dy[k]
        inv_n = 1.0 / n
        for iy in range(size):
            for ix in range(size):
                ddx = ix - xc
                ddy = iy - yc
                if ddx * ddx + ddy * ddy < 4.0:
                    acc = 0.0
                    for sy in range(5):
                        for sx in range(5):
                            px = ddx + (sx - 2) * 0.2
                            py = ddy + (sy - 2) * 0.2
                            u = px * cos_t + py * sin_t
                            v = -px * sin_t + py * cos_t
                            r = math.sqrt(u * u + (v / q) ** 2)
                            if r <= rmax:
                                acc += math.exp(-bn * ((r / re) ** inv_n - 1.0))
                    out[k, iy, ix] = acc / 25.0
                else:
                    u = ddx * cos_t + ddy * sin_t
                    v = -ddx * sin_t + ddy * cos_t
                    r = math.sqrt(u * u + (v / q) ** 2)
                    if r <= rmax:
                        out[k, iy, ix] = math.exp(-bn * ((r / re) ** inv_n - 1.0))
        total = out[k].sum()
        if total > 0:
            out[k] /= total
    return out


@nb.njit(cache=True)
def add_stamps(image, stamps, ix0, iy0, flux):
    """Add ``flux[k] * stamps[k]`` with its corner at ``(iy0[k], ix0[k])``, clipped to the image."""
    height, wide = image.shape
    size_y, size_x = stamps.shape[1], stamps.shape[2]
    for k in range(stamps.shape[0]):
        for sy in range(size_y):
            iy = iy0[k] + sy
            if iy < 0 or iy >= height:
                continue
            for sx in range(size_x):
                ix = ix0[k] + sx
                if ix < 0 or ix >= wide:
                    continue
                image[iy, ix] += flux[k] * stamps[k, sy, sx]


@nb.njit(cache=True)
def add_line(image, mask, bit, x0, y0, x1, y1, flux):
    """Deposit ``flux`` evenly along a sharp segment (cosmic-ray track), nearest pixel.

    Pixels hit are or-ed with ``bit`` in ``mask`` (pass 0 to leave the mask alone).
    """
    height, wide = image.shape
    length = math.hypot(x1 - x0, y1 - y0)
    steps = max(int(math.ceil(length * 4.0)), 1)
    per = flux / steps
    for s in range(steps):
        t = (s + 0.5) / steps
        ix = int(math.floor(x0 + t * (x1 - x0) + 0.5))
        iy = int(math.floor(y0 + t * (y1 - y0) + 0.5))
        if 0 <= ix < wide and 0 <= iy < height:
            image[iy, ix] += per
            mask[iy, ix] |= bit


@nb.njit(cache=True)
def add_streak(image, x0, y0, x1, y1, flux_per_pixel, sigma):
    """A trailed source: a segment with a Gaussian cross-section of width ``sigma``."""
    height, wide = image.shape
    length = math.hypot(x1 - x0, y1 - y0)
    if length <= 0:
        return
    ux = (x1 - x0) / length
    uy = (y1 - y0) / length
    reach = 4.0 * sigma + 1.0
    xa = max(int(math.floor(min(x0, x1) - reach)), 0)
    xb = min(int(math.ceil(max(x0, x1) + reach)), wide - 1)
    ya = max(int(math.floor(min(y0, y1) - reach)), 0)
    yb = min(int(math.ceil(max(y0, y1) + reach)), height - 1)
    norm = flux_per_pixel / (math.sqrt(2.0 * math.pi) * sigma)
    if abs(ux) >= abs(uy):  # walk along x, cover a band in y
        for ix in range(xa, xb + 1):
            t_mid = (ix - x0) / ux if ux != 0 else 0.0
            yc = y0 + t_mid * uy
            for iy in range(max(int(yc - reach / abs(ux)), ya), min(int(yc + reach / abs(ux)) + 1, yb + 1)):
                _streak_pixel(image, ix, iy, x0, y0, ux, uy, length, norm, sigma)
    else:
        for iy in range(ya, yb + 1):
            t_mid = (iy - y0) / uy
            xc = x0 + t_mid * ux
            for ix in range(max(int(xc - reach / abs(uy)), xa), min(int(xc + reach / abs(uy)) + 1, xb + 1)):
                _streak_pixel(image, ix, iy, x0, y0, ux, uy, length, norm, sigma)


@nb.njit(cache=True, inline="always")
def _streak_pixel(image, ix, iy, x0, y0, ux, uy, length, norm, sigma):
    px = ix - x0
    py = iy - y0
    t = px * ux + py * uy
    if t < 0.0 or t > length:
        return
    d = -px * uy + py * ux
    image[iy, ix] += norm * math.exp(-0.5 * d * d / (sigma * sigma))


@nb.njit(cache=True)
def saturate_and_bleed(image, mask, columns, saturation, bit):
    """Clip at ``saturation`` and bleed the excess charge along the column.

    Each saturated run of pixels in a column spills its excess half up and half
    down, filling neighbours to the full-well level (a CCD bleed trail).  Every
    pixel left at saturation is or-ed with ``bit``.
    """
    height = image.shape[0]
    for c in columns:
        iy = 0
        while iy < height:
            if image[iy, c] < saturation:
                iy += 1
                continue
            start = iy
            excess = 0.0
            while iy < height and image[iy, c] >= saturation:
                excess += image[iy, c] - saturation
                image[iy, c] = saturation
                mask[iy, c] |= bit
                iy += 1
            up = 0.5 * excess
            down = 0.5 * excess
            j = iy
            while up > 0.0 and j < height:
                room = saturation - image[j, c]
                if room > up:
                    image[j, c] += up
                    up = 0.0
                else:
                    image[j, c] = saturation
                    mask[j, c] |= bit
                    up -= max(room, 0.0)
                    j += 1
            j2 = start - 1
            while down > 0.0 and j2 >= 0:
                room = saturation - image[j2, c]
                if room > down:
                    image[j2, c] += down
                    down = 0.0
                else:
                    image[j2, c] = saturation
                    mask[j2, c] |= bit
                    down -= max(room, 0.0)
                    j2 -= 1
            iy = max(iy, j)


@nb.njit(cache=True)
def apply_noise(model, noise, inv_gain, read_var, variance):
    """Turn unit normal deviates ``noise`` into the noisy image in place; fill ``variance``.

    ``variance = max(model, 0) / gain + read_var``; ``noise <- model + sqrt(variance) * noise``.
    One fused pass: at 4k x 4k the separate NumPy expressions cost more in memory traffic.
    """
    m = model.ravel()
    z = noise.ravel()
    v = variance.ravel()
    for i in range(m.shape[0]):
        var = max(m[i], 0.0) * inv_gain + read_var
        v[i] = var
        z[i] = m[i] + math.sqrt(var) * z[i]
