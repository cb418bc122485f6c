"""Aperture sums, Kron radii, flux-radius annuli and windowed positions as CUDA kernels: one thread per object.

Each thread walks its object's box pixel by pixel exactly as SEP's
``aper.c`` does, which on a GPU costs one launch per quantity instead of
dozens of array operations per batch of stamps. The array code in
:mod:`astroray.kernels.extract.aperture` is the CPU twin; CI runs these
kernels under ``NUMBA_ENABLE_CUDASIM=1`` and compares them with it.
"""
from __future__ import annotations

import functools
import math

import numba
import numpy as np

from numba import cuda

from astroray.kernels.backend import array_module_of, launch
from astroray.kernels.catalog import APER_ALLMASKED, APER_HASMASKED, APER_NONPOSITIVE, APER_TRUNC
from astroray.kernels.extract.aperture import WIN_FAC, WIN_NITER, WIN_NSIG, WIN_STEPMIN

__all__ = ["sum_aperture_cuda", "kron_radius_cuda", "annuli_cuda", "annuli_cpu", "winpos_cuda"]

_BIG = 1e30


def _edge_area(ax, ay, bx, by):
    """Signed area of triangle (O, A, B) within the unit disk."""
    dx = bx - ax
    dy = by - ay
    qa = dx * dx + dy * dy
    qb = 2.0 * (ax * dx + ay * dy)
    qc = ax * ax + ay * ay - 1.0
    disc = qb * qb - 4.0 * qa * qc
    t1 = 0.0
    t2 = 0.0
    if disc > 0.0 and qa > 0.0:
        root = math.sqrt(disc)
        t1 = (-qb - root) / (2.0 * qa)
        t2 = (-qb + root) / (2.0 * qa)
        t1 = 0.0 if t1 < 0.0 else (1.0 if t1 > 1.0 else t1)
        t2 = 0.0 if t2 < 0.0 else (1.0 if t2 > 1.0 else t2)
    p1x = ax + t1 * dx
    p1y = ay + t1 * dy
    p2x = ax + t2 * dx
    p2y = ay + t2 * dy
    s1 = 0.5 * math.atan2(ax * p1y - ay * p1x, ax * p1x + ay * p1y)
    tri = 0.5 * (p1x * p2y - p1y * p2x)
    s2 = 0.5 * math.atan2(p2x * by - p2y * bx, p2x * bx + p2y * by)
    return s1 + tri + s2


def _make(jit):
    edge_area = jit(_edge_area)

    @jit
    def corner(k, cx, cy, c, s, ia, ib):
        ox = -0.5 if (k == 0 or k == 3) else 0.5
        oy = -0.5 if k < 2 else 0.5
        px = cx + ox
        py = cy + oy
        return (px * c + py * s) * ia, (-px * s + py * c) * ib

    @jit
    def pixel_overlap(cx, cy, c, s, a, b):
        """Exact area of the pixel centred at (cx, cy) inside the ellipse (a, b, angle via c, s)."""
        ia = 1.0 / a
        ib = 1.0 / b
        total = 0.0
        for k in range(4):
            ux, uy = corner(k, cx, cy, c, s, ia, ib)
            vx, vy = corner((k + 1) % 4, cx, cy, c, s, ia, ib)
            total += edge_area(ux, uy, vx, vy)
        return total * a * b

    @jit
    def box(x, y, rx, ry, w, h):
        xmin = int(x - rx + 0.5)
        xmax = int(x + rx + 1.4999999)
        ymin = int(y - ry + 0.5)
        ymax = int(y + ry + 1.4999999)
        flag = 0
        if xmin < 0:
            xmin = 0
            flag |= APER_TRUNC
        if xmax > w:
            xmax = w
            flag |= APER_TRUNC
        if ymin < 0:
            ymin = 0
            flag |= APER_TRUNC
        if ymax > h:
            ymax = h
            flag |= APER_TRUNC
        return xmin, xmax, ymin, ymax, flag

    @jit
    def ellipse_extent(cxx, cyy, cxy, r):
        dxl = cxx - cxy * cxy / (4.0 * cyy)
        dyl = cyy - cxy * cxy / (4.0 * cxx)
        rx = r / math.sqrt(dxl) if dxl > 0.0 else 0.0
        ry = r / math.sqrt(dyl) if dyl > 0.0 else 0.0
        return rx, ry

    @jit
    def aperture(o, data, err, err_map, errvar, mask, has_mask, gain, x, y, ellipse, a, b, theta, r, subpix,
                 out_flux, out_err, out_flag):
        h = data.shape[0]
        w = data.shape[1]
        xo = x[o]
        yo = y[o]
        ro = r[o]
        if ellipse:
            c = math.cos(theta[o])
            s = math.sin(theta[o])
            ao = a[o]
            bo = b[o]
            cxx = c * c / (ao * ao) + s * s / (bo * bo)
            cyy = s * s / (ao * ao) + c * c / (bo * bo)
            cxy = 2.0 * c * s * (1.0 / (ao * ao) - 1.0 / (bo * bo))
            margin = 0.7072 / bo
            rx, ry = ellipse_extent(cxx, cyy, cxy, ro)
            ea = ao * ro
            eb = bo * ro
        else:
            c = 1.0
            s = 0.0
            cxx = 1.0
            cyy = 1.0
            cxy = 0.0
            margin = 0.7072
            rx = ro
            ry = ro
            ea = ro
            eb = ro
        rin = ro - margin
        r_in2 = rin * rin if rin > 0.0 else 0.0
        r_out2 = (ro + margin) * (ro + margin)
        r2 = ro * ro
        xmin, xmax, ymin, ymax, flag = box(xo, yo, rx, ry, w, h)
        scale = 1.0 / subpix if subpix > 0 else 1.0
        scale2 = scale * scale
        offset = 0.5 * (scale - 1.0)
        tv = 0.0
        sigtv = 0.0
        totarea = 0.0
        maskarea = 0.0
        for iy in range(ymin, ymax):
            for ix in range(xmin, xmax):
                dx = ix - xo
                dy = iy - yo
                rpix2 = cxx * dx * dx + cyy * dy * dy + cxy * dx * dy
                if rpix2 < r_out2:
                    if rpix2 > r_in2:
                        if subpix == 0:
                            overlap = pixel_overlap(dx, dy, c, s, ea, eb)
                        else:
                            overlap = 0.0
                            sdy = dy + offset
                            for _sy in range(subpix):
                                sdx = dx + offset
                                for _sx in range(subpix):
                                    if cxx * sdx * sdx + cyy * sdy * sdy + cxy * sdx * sdy < r2:
                                        overlap += scale2
                                    sdx += scale
                                sdy += scale
                    else:
                        overlap = 1.0
                    pix = numba.float64(data[iy, ix])
                    if err_map:
                        e = numba.float32(err[iy, ix])
                        varpix = numba.float64(e * e)
                    else:
                        varpix = errvar
                    if has_mask and mask[iy, ix]:
                        flag |= APER_HASMASKED
                        maskarea += overlap
                    else:
                        tv += pix * overlap
                        sigtv += varpix * overlap
                    totarea += overlap
        if has_mask:
            tmp = totarea / (totarea - maskarea) if totarea != maskarea else math.nan
            tv *= tmp
            sigtv *= tmp
        if gain > 0.0 and tv > 0.0:
            sigtv += tv / gain
        out_flux[o] = tv
        out_err[o] = math.sqrt(sigtv) if sigtv >= 0.0 else math.nan
        out_flag[o] = flag

    @jit
    def kron(o, data, mask, has_mask, x, y, cxx, cyy, cxy, r, out_kr, out_flag):
        h = data.shape[0]
        w = data.shape[1]
        xo = x[o]
        yo = y[o]
        rx, ry = ellipse_extent(cxx[o], cyy[o], cxy[o], r[o])
        xmin, xmax, ymin, ymax, flag = box(xo, yo, rx, ry, w, h)
        r2 = r[o] * r[o]
        r1 = 0.0
        v1 = 0.0
        area = 0
        for iy in range(ymin, ymax):
            for ix in range(xmin, xmax):
                dx = ix - xo
                dy = iy - yo
                rpix2 = cxx[o] * dx * dx + cyy[o] * dy * dy + cxy[o] * dx * dy
                if rpix2 <= r2:
                    pix = numba.float64(numba.float32(data[iy, ix]))
                    if pix < -_BIG or (has_mask and mask[iy, ix]):
                        flag |= APER_HASMASKED
                    else:
                        r1 += math.sqrt(rpix2) * pix
                        v1 += pix
                        area += 1
        if area == 0:
            flag |= APER_ALLMASKED
            out_kr[o] = 0.0
        elif r1 <= 0.0 or v1 <= 0.0:
            flag |= APER_NONPOSITIVE
            out_kr[o] = 0.0
        else:
            out_kr[o] = r1 / v1
        out_flag[o] = flag

    @jit
    def annuli(o, data, mask, has_mask, x, y, rmax, subpix, sums, areas, mareas, out_flag):
        h = data.shape[0]
        w = data.shape[1]
        nb = sums.shape[1]
        xo = x[o]
        yo = y[o]
        r_out = rmax[o] + 1.5
        r_out2 = r_out * r_out
        step = rmax[o] / nb
        stepdens = 1.0 / step
        nextbinmargin = step - 0.7072
        scale = 1.0 / subpix
        scale2 = scale * scale
        offset = 0.5 * (scale - 1.0)
        xmin, xmax, ymin, ymax, flag = box(xo, yo, r_out, r_out, w, h)
        for iy in range(ymin, ymax):
            for ix in range(xmin, xmax):
                dx = ix - xo
                dy = iy - yo
                rpix2 = dx * dx + dy * dy
                if rpix2 < r_out2:
                    pix = numba.float64(data[iy, ix])
                    masked = has_mask and mask[iy, ix]
                    if masked:
                        flag |= APER_HASMASKED
                    rpix = math.sqrt(rpix2)
                    d = rpix - step * math.floor(rpix / step)  # fmod for rpix >= 0 (no math.fmod in njit)
                    if d < 0.7072 or d > nextbinmargin:
                        sdy = dy + offset
                        for _sy in range(subpix):
                            sdx = dx + offset
                            for _sx in range(subpix):
                                j = int(math.sqrt(sdx * sdx + sdy * sdy) * stepdens)
                                if j < nb:
                                    if masked:
                                        mareas[o, j] += scale2
                                    else:
                                        sums[o, j] += scale2 * pix
                                    areas[o, j] += scale2
                                sdx += scale
                            sdy += scale
                    else:
                        j = int(rpix * stepdens)
                        if j < nb:
                            if masked:
                                mareas[o, j] += 1.0
                            else:
                                sums[o, j] += pix
                            areas[o, j] += 1.0
        out_flag[o] = flag

    @jit
    def windowed(o, data, mask, has_mask, x, y, sig, subpix, out_x, out_y, out_flag):
        """SEP's ``sep_windowed`` for object ``o``: iterate the Gaussian-weighted centroid."""
        h = data.shape[0]
        w = data.shape[1]
        xo = x[o]
        yo = y[o]
        s = sig[o]
        flag = 0
        inv2s2 = 1.0 / (2.0 * s * s)
        r = WIN_NSIG * s
        r2 = r * r
        rin = r - 0.7072
        r_in2 = rin * rin if rin > 0.0 else 0.0
        r_out2 = (r + 0.7072) * (r + 0.7072)
        scale = 1.0 / subpix
        scale2 = scale * scale
        offset = 0.5 * (scale - 1.0)
        for _ in range(WIN_NITER):
            xmin, xmax, ymin, ymax, trunc = box(xo, yo, r, r, w, h)
            flag |= trunc
            tv = 0.0
            twv = 0.0
            totarea = 0.0
            maskarea = 0.0
            maskweight = 0.0
            maskdx = 0.0
            maskdy = 0.0
            dxpos = 0.0
            dypos = 0.0
            for iy in range(ymin, ymax):
                for ix in range(xmin, xmax):
                    dx = ix - xo
                    dy = iy - yo
                    rpix2 = dx * dx + dy * dy
                    if rpix2 < r_out2:
                        if rpix2 > r_in2:
                            overlap = 0.0
                            sdy = dy + offset
                            for _sy in range(subpix):
                                sdx = dx + offset
                                for _sx in range(subpix):
                                    if sdx * sdx + sdy * sdy < r2:
                                        overlap += scale2
                                    sdx += scale
                                sdy += scale
                        else:
                            overlap = 1.0
                        pix = numba.float64(data[iy, ix])
                        weight = math.exp(-rpix2 * inv2s2)
                        if has_mask and mask[iy, ix]:
                            flag |= APER_HASMASKED
                            maskarea += overlap
                            maskweight += overlap * weight
                            maskdx += overlap * weight * dx
                            maskdy += overlap * weight * dy
                        else:
                            tv += pix * overlap
                            wpix = pix * overlap * weight
                            twv += wpix
                            dxpos += wpix * dx
                            dypos += wpix * dy
                        totarea += overlap
            if has_mask and maskarea > 0.0:
                unmasked = totarea - maskarea
                avg = tv / unmasked if unmasked > 0.0 else 0.0  # the mean unmasked value stands in
                twv += avg * maskweight
                dxpos += avg * maskdx
                dypos += avg * maskdy
            if twv > 0.0:
                dxpos /= twv
                dypos /= twv
                xo += dxpos * WIN_FAC
                yo += dypos * WIN_FAC
            else:
                break
            if dxpos * dxpos + dypos * dypos < WIN_STEPMIN * WIN_STEPMIN:
                break
        out_x[o] = xo
        out_y[o] = yo
        out_flag[o] = flag

    return aperture, kron, annuli, windowed


@functools.cache
def _kernels():
    """The CUDA kernels, compiled on first use (one thread per object)."""
    aperture, kron, annuli, windowed = _make(cuda.jit(device=True))

    @cuda.jit
    def aperture_kernel(data, err, err_map, errvar, mask, has_mask, gain, x, y, ellipse, a, b, theta, r, subpix,
                        out_flux, out_err, out_flag):
        o = cuda.grid(1)
        if o < x.shape[0]:
            aperture(o, data, err, err_map, errvar, mask, has_mask, gain, x, y, ellipse, a, b, theta, r, subpix,
                     out_flux, out_err, out_flag)

    @cuda.jit
    def kron_kernel(data, mask, has_mask, x, y, cxx, cyy, cxy, r, out_kr, out_flag):
        o = cuda.grid(1)
        if o < x.shape[0]:
            kron(o, data, mask, has_mask, x, y, cxx, cyy, cxy, r, out_kr, out_flag)

    @cuda.jit
    def annuli_kernel(data, mask, has_mask, x, y, rmax, subpix, sums, areas, mareas, out_flag):
        o = cuda.grid(1)
        if o < x.shape[0]:
            annuli(o, data, mask, has_mask, x, y, rmax, subpix, sums, areas, mareas, out_flag)

    @cuda.jit
    def winpos_kernel(data, mask, has_mask, x, y, sig, subpix, out_x, out_y, out_flag):
        o = cuda.grid(1)
        if o < x.shape[0]:
            windowed(o, data, mask, has_mask, x, y, sig, subpix, out_x, out_y, out_flag)

    return aperture_kernel, kron_kernel, annuli_kernel, winpos_kernel


def _vec(v, n, xp):
    return xp.array(xp.broadcast_to(xp.asarray(v, dtype=xp.float64), (n,)))  # an owned, writable copy


def _mask_arg(mask, xp):
    return (xp.zeros((1, 1), dtype=bool), False) if mask is None else (xp.ascontiguousarray(mask), True)


def sum_aperture_cuda(data, x, y, r, *, a=None, b=None, theta=None, error=None, mask=None, gain=None, subpix=5):
    """Circle (``a`` is None) or ellipse ``(a r, b r, theta)`` sums, one thread per aperture."""
    xp = array_module_of(data)
    x = _vec(x, np.shape(x)[0], xp)
    n = x.shape[0]
    y, r = _vec(y, n, xp), _vec(r, n, xp)
    ellipse = a is not None
    a_, b_, t_ = (_vec(v, n, xp) for v in ((a, b, theta) if ellipse else (1.0, 1.0, 0.0)))
    if error is None:
        err, err_map, errvar = xp.zeros((1, 1), dtype=xp.float32), False, 0.0
    elif np.ndim(error) == 0:
        err, err_map, errvar = xp.zeros((1, 1), dtype=xp.float32), False, float(np.float32(float(error) ** 2))
    else:
        err, err_map, errvar = xp.ascontiguousarray(error, dtype=xp.float32), True, 0.0
    m, has_mask = _mask_arg(mask, xp)
    flux = xp.zeros(n, dtype=xp.float64)
    ferr = xp.zeros(n, dtype=xp.float64)
    flag = xp.zeros(n, dtype=xp.int64)
    launch(_kernels()[0], n, xp.ascontiguousarray(data, dtype=xp.float32), err, err_map, errvar, m, has_mask,
            float(gain or 0.0), x, y, ellipse, a_, b_, t_, r, int(subpix), flux, ferr, flag)
    return flux, ferr, flag


def kron_radius_cuda(data, x, y, cxx, cyy, cxy, r, *, mask=None):
    """SEP's ``kron_radius``, one thread per object."""
    xp = array_module_of(data)
    x = _vec(x, np.shape(x)[0], xp)
    n = x.shape[0]
    m, has_mask = _mask_arg(mask, xp)
    kr = xp.zeros(n, dtype=xp.float64)
    flag = xp.zeros(n, dtype=xp.int64)
    launch(_kernels()[1], n, xp.ascontiguousarray(data, dtype=xp.float32), m, has_mask, x, _vec(y, n, xp),
            _vec(cxx, n, xp), _vec(cyy, n, xp), _vec(cxy, n, xp), _vec(r, n, xp), kr, flag)
    return kr, flag


def annuli_cuda(data, x, y, rmax, *, nbins, mask=None, subpix=5):
    """Per-object sums, areas and masked areas in ``nbins`` annuli out to ``rmax`` (SEP's ``sum_circann_multi``)."""
    xp = array_module_of(data)
    x = _vec(x, np.shape(x)[0], xp)
    n = x.shape[0]
    m, has_mask = _mask_arg(mask, xp)
    sums = xp.zeros((n, nbins), dtype=xp.float64)
    areas = xp.zeros((n, nbins), dtype=xp.float64)
    mareas = xp.zeros((n, nbins), dtype=xp.float64)
    flag = xp.zeros(n, dtype=xp.int64)
    launch(_kernels()[2], n, xp.ascontiguousarray(data, dtype=xp.float32), m, has_mask, x, _vec(y, n, xp),
            _vec(rmax, n, xp), int(subpix), sums, areas, mareas, flag)
    return sums, areas, mareas, flag


@functools.cache
def _cpu_annuli():
    _, _, annuli, _ = _make(numba.njit)

    @numba.njit
    def all_objects(data, mask, has_mask, x, y, rmax, subpix, sums, areas, mareas, out_flag):
        for o in range(x.shape[0]):
            annuli(o, data, mask, has_mask, x, y, rmax, subpix, sums, areas, mareas, out_flag)

    return all_objects


def annuli_cpu(data, x, y, rmax, *, nbins, mask=None, subpix=5):
    """CPU twin of :func:`annuli_cuda` (the same per-object loop, compiled by ``numba.njit``)."""
    x = np.array(x, dtype=np.float64)
    n = x.shape[0]
    m, has_mask = _mask_arg(mask, np)
    sums = np.zeros((n, nbins))
    areas = np.zeros((n, nbins))
    mareas = np.zeros((n, nbins))
    flag = np.zeros(n, dtype=np.int64)
    if n:
        _cpu_annuli()(np.ascontiguousarray(data, dtype=np.float32), m, has_mask, x, _vec(y, n, np), _vec(rmax, n, np),
                      int(subpix), sums, areas, mareas, flag)
    return sums, areas, mareas, flag


def winpos_cuda(data, x, y, sig, *, mask=None, subpix=11, minsig=2.0 / 2.35 * 0.5):
    """:func:`~astroray.kernels.extract.aperture.winpos` with one CUDA thread per object."""
    xp = array_module_of(data)
    x = xp.asarray(x, dtype=xp.float64)
    y = xp.asarray(y, dtype=xp.float64)
    n = x.shape[0]
    sig = xp.maximum(xp.broadcast_to(xp.asarray(sig, dtype=xp.float64), x.shape), minsig).copy()
    out_x = x.copy()
    out_y = y.copy()
    out_flag = xp.zeros(n, dtype=xp.int64)
    m, has_mask = _mask_arg(mask, xp)
    launch(_kernels()[3], n, xp.ascontiguousarray(data, dtype=xp.float32), m, has_mask, x, y, sig, int(subpix),
           out_x, out_y, out_flag)
    return out_x, out_y, out_flag
