"""Aperture photometry as ``xp`` array code: every aperture of a call at once.

Each aperture becomes a stamp of pixels (objects grouped by stamp size to
bound memory); pixel weights follow SEP's ``aper.c`` conventions:

* pixels whose centre lies more than ``0.7072`` px inside the boundary count
  fully, more than ``0.7072`` px outside not at all;
* boundary pixels get the exact overlap area (``subpix=0``) or the fraction
  of ``subpix x subpix`` sub-pixel centres inside (SExtractor uses 5);
* masked pixels are left out and the sum is scaled by
  ``total area / unmasked area``; ``gain`` adds ``flux / gain`` to the variance.

The exact overlap of a pixel with a circle or an ellipse is the area of a
polygon (the pixel, mapped into the unit-circle frame of the aperture)
intersected with the unit disk: a sum over polygon edges of signed
triangle/sector areas.
"""
from __future__ import annotations

import math

import numpy as np

from astroray.kernels.backend import array_module_of, bincount
from astroray.kernels.catalog import APER_ALLMASKED, APER_HASMASKED, APER_NONPOSITIVE, APER_TRUNC

__all__ = [
    "ellipse_coeffs",
    "ellipse_axes",
    "sum_circle",
    "sum_ellipse",
    "kron_radius",
    "flux_radius",
    "winpos",
    "polygon_disk_overlap",
    "flux_radius_from_annuli",
]

_MAX_STAMP_ELEMENTS = 1 << 22  # pixels per batch of stamps (bounds memory on either device)


def ellipse_coeffs(a, b, theta):
    """``cxx, cyy, cxy`` of the ellipse with semi-axes ``a, b`` and angle ``theta``."""
    xp = array_module_of(a)
    c, s = xp.cos(theta), xp.sin(theta)
    return (c * c / (a * a) + s * s / (b * b), s * s / (a * a) + c * c / (b * b),
            2.0 * c * s * (1.0 / (a * a) - 1.0 / (b * b)))


def ellipse_axes(cxx, cyy, cxy):
    """``a, b, theta`` from ``cxx, cyy, cxy`` (NaN where they are not an ellipse)."""
    xp = array_module_of(cxx)
    p, q = cxx + cyy, cxx - cyy
    t = xp.sqrt(q * q + cxy * cxy)
    ok = (cxx * cyy - cxy * cxy / 4.0 > 0) & (p > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = xp.where(ok, xp.sqrt(2.0 / (p - t)), xp.nan)
        b = xp.where(ok, xp.sqrt(2.0 / (p + t)), xp.nan)
        theta = xp.where((cxy == 0) | (q == 0), 0.0, xp.arctan(cxy / xp.where(q == 0, 1, q)) / 2.0)
    theta = xp.where(cxx > cyy, theta + math.pi / 2, theta)
    theta = xp.where(theta > math.pi / 2, theta - math.pi, theta)
    return a, b, theta


# --------------------------------------------------------------------------- exact overlap


def _disk_edge_area(ax, ay, bx, by):
    """Signed area of (triangle O, A, B) intersected with the unit disk."""
    xp = array_module_of(ax)
    dx, dy = bx - ax, by - ay
    qa = dx * dx + dy * dy
    qb = 2.0 * (ax * dx + ay * dy)
    qc = ax * ax + ay * ay - 1.0
    disc = qb * qb - 4.0 * qa * qc
    hit = (disc > 0) & (qa > 0)
    root = xp.sqrt(xp.where(hit, disc, 0.0))
    qa_safe = xp.where(qa > 0, qa, 1.0)
    t1 = xp.where(hit, xp.clip((-qb - root) / (2 * qa_safe), 0.0, 1.0), 0.0)
    t2 = xp.where(hit, xp.clip((-qb + root) / (2 * qa_safe), 0.0, 1.0), 0.0)
    p1x, p1y = ax + t1 * dx, ay + t1 * dy
    p2x, p2y = ax + t2 * dx, ay + t2 * dy

    def sector(ux, uy, vx, vy):
        return 0.5 * xp.arctan2(ux * vy - uy * vx, ux * vx + uy * vy)

    inside = 0.5 * (p1x * p2y - p1y * p2x)
    return sector(ax, ay, p1x, p1y) + inside + sector(p2x, p2y, bx, by)


def polygon_disk_overlap(px, py):
    """Area of a convex polygon (vertices on the last axis, counter-clockwise) within the unit disk."""
    xp = array_module_of(px)
    qx, qy = xp.roll(px, -1, axis=-1), xp.roll(py, -1, axis=-1)
    return _disk_edge_area(px, py, qx, qy).sum(axis=-1)


def _circle_exact(dx, dy, r):
    """Exact overlap of the pixels centred at ``(dx, dy)`` with a circle of radius ``r`` at 0."""
    xp = array_module_of(dx)
    ox = xp.asarray([-0.5, 0.5, 0.5, -0.5])
    oy = xp.asarray([-0.5, -0.5, 0.5, 0.5])
    rr = r[..., None]
    return polygon_disk_overlap((dx[..., None] + ox) / rr, (dy[..., None] + oy) / rr) * (r * r)


def _ellipse_exact(dx, dy, a, b, theta):
    """Exact overlap of pixels with the ellipse (semi-axes ``a, b``, angle ``theta``) at 0."""
    xp = array_module_of(dx)
    ox = xp.asarray([-0.5, 0.5, 0.5, -0.5])
    oy = xp.asarray([-0.5, -0.5, 0.5, 0.5])
    c, s = xp.cos(theta)[..., None], xp.sin(theta)[..., None]
    cx, cy = dx[..., None] + ox, dy[..., None] + oy
    u = (cx * c + cy * s) / a[..., None]
    v = (-cx * s + cy * c) / b[..., None]
    return polygon_disk_overlap(u, v) * (a * b)  # rotation and scaling keep the vertex order


def _subpix_circle_fraction(dx, dy, r2, subpix):
    """Fraction of the ``subpix x subpix`` sub-pixel centres of each pixel inside ``r^2``.

    Counts the centres row by row in closed form (the same points SEP tests
    one by one), so the cost is ``subpix`` array operations, not ``subpix**2``.
    """
    xp = array_module_of(dx)
    scale = 1.0 / subpix
    offset = 0.5 * (scale - 1.0)
    x0 = dx + offset
    count = xp.zeros(dx.shape, dtype=xp.float64)
    for sy in range(subpix):
        ys = dy + offset + sy * scale
        c = r2 - ys * ys
        half = xp.sqrt(xp.maximum(c, 0.0))
        lo = xp.floor((-half - x0) / scale) + 1.0
        hi = xp.ceil((half - x0) / scale) - 1.0
        n = xp.clip(hi, -1.0, subpix - 1.0) - xp.clip(lo, 0.0, float(subpix)) + 1.0
        count = count + xp.where(c > 0, xp.maximum(n, 0.0), 0.0)
    return count * (scale * scale)


# --------------------------------------------------------------------------- stamps


def _box_extent(x, y, rx, ry, w, h):
    """SEP's ``boxextent``: [xmin, xmax) x [ymin, ymax) and the truncation flag."""
    xp = array_module_of(x)
    xmin = xp.trunc(x - rx + 0.5).astype(xp.int64)
    xmax = xp.trunc(x + rx + 1.4999999).astype(xp.int64)
    ymin = xp.trunc(y - ry + 0.5).astype(xp.int64)
    ymax = xp.trunc(y + ry + 1.4999999).astype(xp.int64)
    trunc = (xmin < 0) | (xmax > w) | (ymin < 0) | (ymax > h)
    return (xp.maximum(xmin, 0), xp.minimum(xmax, w), xp.maximum(ymin, 0), xp.minimum(ymax, h),
            xp.where(trunc, APER_TRUNC, 0).astype(xp.int64))


def _batches(size, n):
    """Index batches of objects ordered by stamp size, each within the memory budget."""
    xp = array_module_of(size)
    order = xp.argsort(size)
    sizes = size[order]
    sizes_host = np.asarray(sizes.get() if hasattr(sizes, "get") else sizes)
    order_host = order
    start = 0
    while start < n:
        s_last = int(sizes_host[start])
        stop = start + 1
        while stop < n:
            s = int(sizes_host[stop])
            if (stop + 1 - start) * s * s > _MAX_STAMP_ELEMENTS and stop > start:
                break
            s_last = s
            stop += 1
        yield order_host[start:stop], max(s_last, 1)
        start = stop


def _stamps(data, xmin, xmax, ymin, ymax, s):
    """Pixel coordinates, validity and values of ``(n, s, s)`` stamps."""
    xp = array_module_of(data)
    h, w = data.shape
    off = xp.arange(s)
    iy = ymin[:, None, None] + off[None, :, None]
    ix = xmin[:, None, None] + off[None, None, :]
    valid = (iy < ymax[:, None, None]) & (ix < xmax[:, None, None])
    iyc, ixc = xp.clip(iy, 0, h - 1), xp.clip(ix, 0, w - 1)
    return iy, ix, valid, iyc, ixc


def _take(arr, iyc, ixc):
    return None if arr is None else arr[iyc, ixc]


def _noise_var(error, iyc, ixc, xp):
    # SEP holds the pixel variance in a float: square in float32 to agree to the last bit.
    if error is None:
        return 0.0
    if np.ndim(error) == 0:
        return float(np.float32(float(error) ** 2))
    e = error[iyc, ixc].astype(xp.float32)
    return (e * e).astype(xp.float64)


def _aperture_sum(data, x, y, *, error, mask, gain, subpix, box, inside, exact, annulus, circular=None):
    """Shared body of the circle and ellipse sums (SEP's ``aperbody``).

    ``box(idx)`` gives the half extents; ``inside(idx, dx, dy)`` gives
    ``rpix2`` and ``r2``; ``annulus(idx)`` the squared inner/outer limits;
    ``exact(idx, dx, dy)`` the exact overlap.
    """
    xp = array_module_of(data)
    n = x.shape[0]
    flux = xp.zeros(n, dtype=xp.float64)
    var = xp.zeros(n, dtype=xp.float64)
    area = xp.zeros(n, dtype=xp.float64)
    flag = xp.zeros(n, dtype=xp.int64)
    if n == 0:
        return flux, xp.sqrt(var), flag, area
    h, w = data.shape
    rx, ry = box(slice(None))
    xmin, xmax, ymin, ymax, tflag = _box_extent(x, y, rx, ry, w, h)
    size = xp.maximum(xmax - xmin, ymax - ymin)
    r_in2, r_out2 = annulus(slice(None))
    for idx, s in _batches(size, n):
        iy, ix, valid, iyc, ixc = _stamps(data, xmin[idx], xmax[idx], ymin[idx], ymax[idx], s)
        dx = ix - x[idx][:, None, None]
        dy = iy - y[idx][:, None, None]
        rpix2, r2 = inside(idx, dx, dy)
        rin2 = r_in2[idx][:, None, None]
        rout2 = r_out2[idx][:, None, None]
        near = valid & (rpix2 < rout2)
        edge = rpix2 > rin2
        if subpix == 0:
            part = exact(idx, dx, dy)
        elif circular is not None:
            part = _subpix_circle_fraction(dx, dy, circular[idx][:, None, None], subpix)
        else:
            scale = 1.0 / subpix
            offset = 0.5 * (scale - 1.0)
            part = xp.zeros(dx.shape, dtype=xp.float64)
            for sy in range(subpix):
                for sx in range(subpix):
                    r2s, _ = inside(idx, dx + offset + sx * scale, dy + offset + sy * scale)
                    part = part + (r2s < r2)
            part = part * (scale * scale)
        overlap = xp.where(near, xp.where(edge, part, 1.0), 0.0)
        pix = data[iyc, ixc].astype(xp.float32).astype(xp.float64)  # SEP reads pixels as float
        pvar = _noise_var(error, iyc, ixc, xp)
        if mask is not None:
            m = mask[iyc, ixc] & near
            use = xp.where(m, 0.0, overlap)
            masked_area = xp.where(m, overlap, 0.0).sum(axis=(1, 2))
            flag[idx] = flag[idx] | xp.where(m.any(axis=(1, 2)), APER_HASMASKED, 0)
        else:
            use = overlap
            masked_area = 0.0
        tv = (pix * use).sum(axis=(1, 2))
        sv = (pvar * use).sum(axis=(1, 2)) if error is not None else xp.zeros_like(tv)
        tot = overlap.sum(axis=(1, 2))
        if mask is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                scale_m = tot / (tot - masked_area)
            tv = tv * scale_m
            sv = sv * scale_m
        if gain:
            sv = sv + xp.where(tv > 0, tv / gain, 0.0)
        flux[idx], var[idx], area[idx] = tv, sv, tot
    return flux, xp.sqrt(var), flag | tflag, area


def sum_circle(data, x, y, r, *, error=None, mask=None, gain=None, subpix=5):
    """Sum of ``data`` in circles of radius ``r`` around ``(x, y)`` (SEP's ``sum_circle``).

    Parameters
    ----------
    data : array (H, W)
    x, y : array (n,)
        0-based centres.
    r : float or array (n,)
    error : float or array (H, W), optional
        1-sigma noise per pixel.
    mask : array (H, W) bool, optional
    gain : float, optional
    subpix : int
        0 for exact overlap, else sub-pixel sampling per side.

    Returns
    -------
    flux, flux_err : array (n,) float64
    flag : array (n,) int64
    """
    xp = array_module_of(data)
    if xp is not np:  # GPU: one thread per aperture
        from astroray.kernels.extract.aperture_cuda import sum_aperture_cuda

        return sum_aperture_cuda(data, x, y, r, error=error, mask=mask, gain=gain, subpix=subpix)
    x = xp.asarray(x, dtype=xp.float64)
    y = xp.asarray(y, dtype=xp.float64)
    r = xp.broadcast_to(xp.asarray(r, dtype=xp.float64), x.shape)
    rin = xp.maximum(r - 0.7072, 0.0)
    r_in2, r_out2 = rin * rin, (r + 0.7072) ** 2

    def inside(idx, dx, dy):
        return dx * dx + dy * dy, (r[idx] ** 2)[:, None, None]

    flux, err, flag, _ = _aperture_sum(
        data, x, y, error=error, mask=mask, gain=gain, subpix=subpix,
        box=lambda idx: (r[idx], r[idx]), inside=inside,
        exact=lambda idx, dx, dy: _circle_exact(dx, dy, xp.broadcast_to(r[idx][:, None, None], dx.shape)),
        annulus=lambda idx: (r_in2[idx], r_out2[idx]), circular=r * r)
    return flux, err, flag


def _ellipse_box(cxx, cyy, cxy, r):
    xp = array_module_of(cxx)
    dxl = cxx - cxy * cxy / (4.0 * cyy)
    dyl = cyy - cxy * cxy / (4.0 * cxx)
    with np.errstate(divide="ignore", invalid="ignore"):
        rx = xp.where(dxl > 0, r / xp.sqrt(xp.where(dxl > 0, dxl, 1.0)), 0.0)
        ry = xp.where(dyl > 0, r / xp.sqrt(xp.where(dyl > 0, dyl, 1.0)), 0.0)
    return rx, ry


def sum_ellipse(data, x, y, a, b, theta, r, *, error=None, mask=None, gain=None, subpix=5):
    """Sum of ``data`` in ellipses ``(a r, b r, theta)`` around ``(x, y)`` (SEP's ``sum_ellipse``).

    Returns
    -------
    flux, flux_err : array (n,) float64
    flag : array (n,) int64
    """
    xp = array_module_of(data)
    if xp is not np:  # GPU: one thread per aperture
        from astroray.kernels.extract.aperture_cuda import sum_aperture_cuda

        return sum_aperture_cuda(data, x, y, r, a=a, b=b, theta=theta, error=error, mask=mask, gain=gain,
                                 subpix=subpix)
    x = xp.asarray(x, dtype=xp.float64)
    y = xp.asarray(y, dtype=xp.float64)
    a = xp.broadcast_to(xp.asarray(a, dtype=xp.float64), x.shape)
    b = xp.broadcast_to(xp.asarray(b, dtype=xp.float64), x.shape)
    theta = xp.broadcast_to(xp.asarray(theta, dtype=xp.float64), x.shape)
    r = xp.broadcast_to(xp.asarray(r, dtype=xp.float64), x.shape)
    cxx, cyy, cxy = ellipse_coeffs(a, b, theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        rin = r - 0.7072 / b
    r_in2 = xp.where(rin > 0, rin * rin, 0.0)
    r_out2 = (r + 0.7072 / b) ** 2
    rx, ry = _ellipse_box(cxx, cyy, cxy, r)

    def inside(idx, dx, dy):
        c1, c2, c3 = (v[idx][:, None, None] for v in (cxx, cyy, cxy))
        return c1 * dx * dx + c2 * dy * dy + c3 * dx * dy, (r[idx] ** 2)[:, None, None]

    def exact(idx, dx, dy):
        shape = dx.shape
        return _ellipse_exact(dx, dy, xp.broadcast_to((a * r)[idx][:, None, None], shape),
                              xp.broadcast_to((b * r)[idx][:, None, None], shape),
                              xp.broadcast_to(theta[idx][:, None, None], shape))

    flux, err, flag, _ = _aperture_sum(
        data, x, y, error=error, mask=mask, gain=gain, subpix=subpix,
        box=lambda idx: (rx[idx], ry[idx]), inside=inside, exact=exact,
        annulus=lambda idx: (r_in2[idx], r_out2[idx]))
    return flux, err, flag


def kron_radius(data, x, y, cxx, cyy, cxy, r, *, mask=None):
    """First moment of the radius within the ellipse ``cxx dx^2 + ... <= r^2`` (SEP's ``kron_radius``).

    Returns
    -------
    kron : array (n,) float64
        In units of the ellipse (0 with a flag when nothing positive is inside).
    flag : array (n,) int64
    """
    xp = array_module_of(data)
    if xp is not np:  # GPU: one thread per object
        from astroray.kernels.extract.aperture_cuda import kron_radius_cuda

        return kron_radius_cuda(data, x, y, cxx, cyy, cxy, r, mask=mask)
    x = xp.asarray(x, dtype=xp.float64)
    y = xp.asarray(y, dtype=xp.float64)
    n = x.shape[0]
    cxx, cyy, cxy = (xp.broadcast_to(xp.asarray(v, dtype=xp.float64), x.shape) for v in (cxx, cyy, cxy))
    r = xp.broadcast_to(xp.asarray(r, dtype=xp.float64), x.shape)
    h, w = data.shape
    rx, ry = _ellipse_box(cxx, cyy, cxy, r)
    xmin, xmax, ymin, ymax, flag = _box_extent(x, y, rx, ry, w, h)
    r1 = xp.zeros(n, dtype=xp.float64)
    v1 = xp.zeros(n, dtype=xp.float64)
    area = xp.zeros(n, dtype=xp.float64)
    if n == 0:
        return r1, flag
    size = xp.maximum(xmax - xmin, ymax - ymin)
    for idx, s in _batches(size, n):
        iy, ix, valid, iyc, ixc = _stamps(data, xmin[idx], xmax[idx], ymin[idx], ymax[idx], s)
        dx = ix - x[idx][:, None, None]
        dy = iy - y[idx][:, None, None]
        c1, c2, c3 = (v[idx][:, None, None] for v in (cxx, cyy, cxy))
        rpix2 = c1 * dx * dx + c2 * dy * dy + c3 * dx * dy
        use = valid & (rpix2 <= (r[idx] ** 2)[:, None, None])
        pix = data[iyc, ixc].astype(xp.float32).astype(xp.float64)  # SEP reads a float
        if mask is not None:
            m = mask[iyc, ixc] & use
            flag[idx] = flag[idx] | xp.where(m.any(axis=(1, 2)), APER_HASMASKED, 0)
            use = use & ~m
        r1[idx] = xp.where(use, xp.sqrt(xp.maximum(rpix2, 0)) * pix, 0.0).sum(axis=(1, 2))
        v1[idx] = xp.where(use, pix, 0.0).sum(axis=(1, 2))
        area[idx] = use.sum(axis=(1, 2))
    none = area == 0
    nonpos = ~none & ((r1 <= 0) | (v1 <= 0))
    flag = flag | xp.where(none, APER_ALLMASKED, 0) | xp.where(nonpos, APER_NONPOSITIVE, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        kr = xp.where(none | nonpos, 0.0, r1 / xp.where(v1 != 0, v1, 1.0))
    return kr, flag


_FLUX_RADIUS_BINS = 64


def flux_radius(data, x, y, rmax, frac, *, normflux=None, mask=None, subpix=5, method="loop"):
    """Radius enclosing ``frac`` of ``normflux`` (SEP's ``flux_radius``: 64 annuli to ``rmax``).

    ``method="loop"`` fills the annuli with one loop per object (a CUDA
    kernel on the GPU, its Numba twin on the CPU): SEP samples nearly every
    pixel 25 times here, which array code pays for in memory traffic.
    ``method="array"`` is the stamp-based array code, kept as the reference
    the loops are tested against.

    Returns
    -------
    radius : array (n,) float64
    flag : array (n,) int64
    """
    xp = array_module_of(data)
    x = xp.asarray(x, dtype=xp.float64)
    y = xp.asarray(y, dtype=xp.float64)
    n = x.shape[0]
    rmax = xp.broadcast_to(xp.asarray(rmax, dtype=xp.float64), x.shape)
    nb = _FLUX_RADIUS_BINS
    h, w = data.shape
    r_out = rmax + 1.5
    xmin, xmax, ymin, ymax, flag = _box_extent(x, y, r_out, r_out, w, h)
    sums = xp.zeros((n, nb), dtype=xp.float64)
    areas = xp.zeros((n, nb), dtype=xp.float64)
    mareas = xp.zeros((n, nb), dtype=xp.float64)
    out = xp.zeros(n, dtype=xp.float64)
    if n == 0:
        return out, flag
    size = xp.maximum(xmax - xmin, ymax - ymin)
    scale = 1.0 / subpix
    offset = 0.5 * (scale - 1.0)
    if method == "loop":  # one loop per object: a CUDA thread each on the GPU, Numba on the CPU
        from astroray.kernels.extract.aperture_cuda import annuli_cpu, annuli_cuda

        fill = annuli_cpu if xp is np else annuli_cuda
        sums, areas, mareas, flag = fill(data, x, y, rmax, nbins=nb, mask=mask, subpix=subpix)
    for idx, s in (_batches(size, n) if method == "array" else ()):
        iy, ix, valid, iyc, ixc = _stamps(data, xmin[idx], xmax[idx], ymin[idx], ymax[idx], s)
        k = idx.shape[0]
        full = (k, s, s)
        nbins = k * (nb + 1)
        # Only pixels inside r_out matter: gather them, then deposit coarse pixels whole and
        # fine ones (near a bin edge) as subpix^2 samples, each into its annulus (bin nb = beyond).
        bdx = xp.broadcast_to(ix - x[idx][:, None, None], full)
        bdy = xp.broadcast_to(iy - y[idx][:, None, None], full)
        rm = rmax[idx][:, None, None]
        near = valid & (bdx * bdx + bdy * bdy < (rm + 1.5) ** 2)
        sel = xp.flatnonzero(near.reshape(-1))
        row = sel // (s * s)
        fdx = bdx.reshape(-1)[sel].astype(xp.float64)
        fdy = bdy.reshape(-1)[sel].astype(xp.float64)
        fy = xp.broadcast_to(iyc, full).reshape(-1)[sel]
        fx = xp.broadcast_to(ixc, full).reshape(-1)[sel]
        fpix = data[fy, fx].astype(xp.float32).astype(xp.float64)  # SEP reads pixels as float
        if mask is not None:
            fmask = mask[fy, fx]
            hasm = bincount(row, weights=fmask.astype(xp.float64), minlength=k) > 0
            flag[idx] = flag[idx] | xp.where(hasm, APER_HASMASKED, 0)
        else:
            fmask = xp.zeros(sel.shape[0], dtype=bool)
        fstep = rmax[idx][row] / nb
        fstepdens = 1.0 / fstep
        rpix = xp.sqrt(fdx * fdx + fdy * fdy)
        d = xp.fmod(rpix, fstep)
        fine_sel = (d < 0.7072) | (d > fstep - 0.7072)
        jb_list, w_list, r_list, p_list, m_list = [], [], [], [], []
        c = xp.flatnonzero(~fine_sel)
        jb_list.append(xp.trunc(rpix[c] * fstepdens[c]))
        w_list.append(xp.ones(c.shape[0]))
        r_list.append(row[c])
        p_list.append(fpix[c])
        m_list.append(fmask[c])
        f = xp.flatnonzero(fine_sel)
        sub = (xp.arange(subpix) * scale + offset)
        sdx = (fdx[f][:, None, None] + sub[None, None, :])
        sdy = (fdy[f][:, None, None] + sub[None, :, None])
        jb_list.append(xp.trunc(xp.sqrt(sdx * sdx + sdy * sdy) * fstepdens[f][:, None, None]).reshape(-1))
        w_list.append(xp.full(f.shape[0] * subpix * subpix, scale * scale))
        rep = subpix * subpix
        r_list.append(xp.repeat(row[f], rep))
        p_list.append(xp.repeat(fpix[f], rep))
        m_list.append(xp.repeat(fmask[f], rep))
        jb = xp.concatenate(jb_list)
        jb = xp.where(jb < nb, jb, nb).astype(xp.int64)
        flat = xp.concatenate(r_list) * (nb + 1) + jb
        wv = xp.concatenate(w_list)
        mv = xp.concatenate(m_list)
        pv = xp.concatenate(p_list)
        acc_a = bincount(flat, weights=wv, minlength=nbins).reshape(k, nb + 1)
        acc_m = bincount(flat, weights=wv * mv, minlength=nbins).reshape(k, nb + 1)
        acc_s = bincount(flat, weights=wv * ~mv * pv, minlength=nbins).reshape(k, nb + 1)
        sums[idx] = acc_s[:, :nb]
        areas[idx] = acc_a[:, :nb]
        mareas[idx] = acc_m[:, :nb]
    return flux_radius_from_annuli(sums, areas, mareas, rmax, frac, normflux=normflux,
                                   masked=mask is not None), flag


def flux_radius_from_annuli(sums, areas, mareas, rmax, frac, *, normflux=None, masked=False):
    """SEP's ``inverse``: the radius where the cumulative annulus sum reaches ``frac`` of the total."""
    xp = array_module_of(sums)
    n, nb = sums.shape
    rmax = xp.broadcast_to(xp.asarray(rmax, dtype=xp.float64), (n,))
    if masked:
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = xp.where(areas == mareas, 0.0, areas / (areas - mareas))
        sums = sums * corr
    csum = xp.cumsum(sums, axis=1)
    total = csum[:, -1] if normflux is None else xp.broadcast_to(xp.asarray(normflux, dtype=xp.float64), (n,))
    target = xp.asarray(frac, dtype=xp.float64) * total
    step = rmax / nb
    # First bin whose cumulative sum reaches the target, linear inside it.
    reached = csum >= target[:, None]
    i = xp.where(reached.any(axis=1), xp.argmax(reached, axis=1), nb)
    rows = xp.arange(n)
    y_i = csum[rows, xp.minimum(i, nb - 1)]
    y_prev = csum[rows, xp.maximum(i - 1, 0)]
    with np.errstate(divide="ignore", invalid="ignore"):
        first = xp.where((target <= 0) | (csum[:, 0] == 0), 0.0, step * target / csum[:, 0])
        mid = step * (i + (target - y_prev) / (y_i - y_prev))
    return xp.where(i == 0, first, xp.where(i == nb, rmax, mid))


WIN_NITER = 16
WIN_NSIG = 4
WIN_STEPMIN = 1e-4
WIN_FAC = 2.0
"""SExtractor's windowed-centroid constants (iterations, window in sigma, step to stop at, step factor)."""


def winpos(data, x, y, sig, *, mask=None, subpix=11, minsig=2.0 / 2.35 * 0.5):
    """Windowed centroids (SExtractor's XWIN/YWIN; SEP's ``winpos``).

    On the GPU this runs as :func:`~astroray.kernels.extract.aperture_cuda.winpos_cuda` (one thread per object);
    elsewhere as the array code below, its twin.

    Gaussian-weighted centroid within ``4 sig``, iterated up to 16 times
    until the step is below 1e-4 px; all objects iterate together, each
    stopping on its own criterion.

    Returns
    -------
    xwin, ywin : array (n,) float64
    flag : array (n,) int64
    """
    xp = array_module_of(data)
    if xp is not np:
        from astroray.kernels.extract.aperture_cuda import winpos_cuda

        return winpos_cuda(data, x, y, sig, mask=mask, subpix=subpix, minsig=minsig)
    x = xp.asarray(x, dtype=xp.float64).copy()
    y = xp.asarray(y, dtype=xp.float64).copy()
    n = x.shape[0]
    sig = xp.maximum(xp.broadcast_to(xp.asarray(sig, dtype=xp.float64), x.shape), minsig)
    flag = xp.zeros(n, dtype=xp.int64)
    if n == 0:
        return x, y, flag
    h, w = data.shape
    r = WIN_NSIG * sig
    rin = xp.maximum(r - 0.7072, 0.0)
    r_in2, r_out2, r2 = rin * rin, (r + 0.7072) ** 2, r * r
    inv2s2 = 1.0 / (2.0 * sig * sig)
    active = xp.ones(n, dtype=bool)
    for _ in range(WIN_NITER):
        act = xp.nonzero(active)[0]
        if act.shape[0] == 0:
            break
        xa, ya = x[act], y[act]
        xmin, xmax, ymin, ymax, tflag = _box_extent(xa, ya, r[act], r[act], w, h)
        flag[act] = flag[act] | tflag
        size = xp.maximum(xmax - xmin, ymax - ymin)
        ddx_all = xp.zeros(act.shape[0])
        ddy_all = xp.zeros(act.shape[0])
        twv_all = xp.zeros(act.shape[0])
        for loc, s in _batches(size, act.shape[0]):
            iy, ix, valid, iyc, ixc = _stamps(data, xmin[loc], xmax[loc], ymin[loc], ymax[loc], s)
            gi = act[loc]
            k = gi.shape[0]
            full = (k, s, s)
            # Work on the pixels inside r_out only (flat), summing per object with bincount.
            bdx = xp.broadcast_to(ix - x[gi][:, None, None], full)
            bdy = xp.broadcast_to(iy - y[gi][:, None, None], full)
            near = valid & (bdx * bdx + bdy * bdy < r_out2[gi][:, None, None])
            sel = xp.flatnonzero(near.reshape(-1))
            row = sel // (s * s)
            fdx = bdx.reshape(-1)[sel].astype(xp.float64)
            fdy = bdy.reshape(-1)[sel].astype(xp.float64)
            rpix2 = fdx * fdx + fdy * fdy
            g = gi[row]
            overlap = xp.ones(rpix2.shape[0], dtype=xp.float64)
            ring = xp.flatnonzero(rpix2 > r_in2[g])  # only boundary pixels need sub-sampling
            overlap[ring] = _subpix_circle_fraction(fdx[ring], fdy[ring], r2[g][ring], subpix)
            weight = xp.exp(-rpix2 * inv2s2[g])
            fy = xp.broadcast_to(iyc, full).reshape(-1)[sel]
            fx = xp.broadcast_to(ixc, full).reshape(-1)[sel]
            pix = data[fy, fx].astype(xp.float32).astype(xp.float64)
            if mask is not None:
                m = mask[fy, fx]
                hasm = bincount(row, weights=m.astype(xp.float64), minlength=k) > 0
                flag[gi] = flag[gi] | xp.where(hasm, APER_HASMASKED, 0)
                good = xp.where(m, 0.0, overlap)
                mo = xp.where(m, overlap, 0.0)
                tv = bincount(row, weights=pix * good, minlength=k)
                tot = bincount(row, weights=overlap, minlength=k)
                with np.errstate(divide="ignore", invalid="ignore"):
                    avg = tv / (tot - bincount(row, weights=mo, minlength=k))
                avg = xp.where(xp.isfinite(avg), avg, 0.0)  # the mean unmasked value stands in
                wpix = (pix * good + avg[row] * mo) * weight
            else:
                wpix = pix * overlap * weight
            twv_all[loc] = bincount(row, weights=wpix, minlength=k)
            ddx_all[loc] = bincount(row, weights=wpix * fdx, minlength=k)
            ddy_all[loc] = bincount(row, weights=wpix * fdy, minlength=k)
        pos = twv_all > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            stepx = xp.where(pos, ddx_all / twv_all, 0.0)
            stepy = xp.where(pos, ddy_all / twv_all, 0.0)
        x[act] = x[act] + stepx * WIN_FAC
        y[act] = y[act] + stepy * WIN_FAC
        done = ~pos | (stepx * stepx + stepy * stepy < WIN_STEPMIN * WIN_STEPMIN)
        active[act] = ~done
    return x, y, flag
