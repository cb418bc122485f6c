"""Numba kernels of :mod:`astroray.lightcurves.features`: one parallel loop over objects each.

Inputs are flat arrays sorted by (object, band, time) and ``seg``, an
``(n_objects, n_bands + 1)`` array of absolute offsets: band ``b`` of object
``i`` is ``seg[i, b]:seg[i, b + 1]``.  Outputs are written into columns of a
preallocated float64 array filled with NaN (a feature that is undefined for a
segment stays NaN).  Definitions are in the features module docstring.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

_JIT = dict(cache=True, nogil=True, error_model="numpy")
_PJIT = dict(parallel=True, cache=True, nogil=True, error_model="numpy")
# reassociation and fused multiply-adds in the periodogram's sums; NaN/inf semantics are kept
_FAST = {"reassoc", "contract", "nsz"}

N_STATS = 27
N_SHAPE_BAND = 5  # n_detections, peak_flux, rise_time, decline_time, weighted-mean flux (colours)
N_SHAPE_GLOBAL = 5  # n_points, n_detections, n_bands, duration, duration_detected
_RESYNC = 128  # frequencies between exact sin/cos evaluations of the periodogram's rotation recurrence


@nb.njit(**_JIT)
def band_order(offsets, band, n_bands, keep):
    """Counting sort of time-ordered rows into (row, band, time) order.

    Returns ``order`` (indices of the kept points) and ``seg`` (n_rows,
    n_bands + 1) offsets into it; stable, so each band stays in time order.
    """
    n = offsets.shape[0] - 1
    seg = np.empty((n, n_bands + 1), dtype=np.int64)
    running = 0
    counts = np.zeros(n_bands, dtype=np.int64)
    for i in range(n):
        counts[:] = 0
        for j in range(offsets[i], offsets[i + 1]):
            if keep[j]:
                counts[band[j]] += 1
        seg[i, 0] = running
        for b in range(n_bands):
            seg[i, b + 1] = seg[i, b] + counts[b]
        running = seg[i, n_bands]
    order = np.empty(running, dtype=np.int64)
    pos = np.empty(n_bands, dtype=np.int64)
    for i in range(n):
        for b in range(n_bands):
            pos[b] = seg[i, b]
        for j in range(offsets[i], offsets[i + 1]):
            if keep[j]:
                b = band[j]
                order[pos[b]] = j
                pos[b] += 1
    return order, seg


@nb.njit(**_JIT)
def _ppf(s, n, q):
    """R-5 quantile of sorted ``s[:n]``, with h = n q - 1/2 evaluated in float32 as light-curve does."""
    h = np.float32(np.float32(n) * np.float32(q)) - np.float32(0.5)
    hf = np.float32(math.floor(h))
    if hf < 0:
        return s[0]
    i = int(hf)
    if i >= n - 1:
        return s[n - 1]
    return s[i] + np.float64(np.float32(h - hf)) * (s[i + 1] - s[i])


@nb.njit(**_JIT)
def _median_sorted(s, n):
    i = (n - 1) // 2
    if n % 2 == 0:
        return 0.5 * (s[i] + s[i + 1])
    return s[i]


@nb.njit(**_JIT)
def _sort_into(src, a, n, dst):
    """``dst[:n] = sorted(src[a:a + n])``: insertion sort for the short segments of one band, else quicksort."""
    if n > 32:
        dst[:n] = np.sort(src[a:a + n])
        return
    for i in range(n):
        v = src[a + i]
        j = i - 1
        while j >= 0 and dst[j] > v:
            dst[j + 1] = dst[j]
            j -= 1
        dst[j + 1] = v


@nb.njit(**_JIT)
def _segment_stats(t, y, e, a, b, out, c, srt, dev):
    """The N_STATS statistics of y[a:b] into out[c:c + N_STATS] (``srt``, ``dev``: scratch of length >= b - a)."""
    n = b - a
    out[c + 0] = n
    if n == 0:
        return
    s_y = 0.0
    s_w = 0.0
    s_wy = 0.0
    y_min = y[a]
    y_max = y[a]
    for i in range(a, b):
        w = 1.0 / (e[i] * e[i])
        s_y += y[i]
        s_w += w
        s_wy += w * y[i]
        y_min = min(y_min, y[i])
        y_max = max(y_max, y[i])
    mean = s_y / n
    wmean = s_wy / s_w
    plateau = y_min == y_max
    _sort_into(y, a, n, srt)
    median = _median_sorted(srt, n)
    for i in range(n):
        srt[n + i] = abs(y[a + i] - median)
    _sort_into(srt, n, n, dev)
    out[c + 1] = mean
    out[c + 2] = wmean
    out[c + 3] = median
    out[c + 5] = 0.5 * (y_max - y_min)
    out[c + 6] = max(y_max - median, median - y_min)
    out[c + 7] = _median_sorted(dev, n)
    out[c + 8] = _ppf(srt, n, np.float32(1.0) - np.float32(0.25)) - _ppf(srt, n, 0.25)
    out[c + 9] = _ppf(srt, n, np.float32(1.0) - np.float32(0.1)) - _ppf(srt, n, 0.1)
    out[c + 26] = t[b - 1] - t[a]
    if n < 2:
        return
    m2 = 0.0
    m3 = 0.0
    m4 = 0.0
    chi2 = 0.0
    for i in range(a, b):
        d = y[i] - mean
        d2 = d * d
        m2 += d2
        m3 += d2 * d
        m4 += d2 * d2
        r = y[i] - wmean
        chi2 += r * r / (e[i] * e[i])
    std2 = m2 / (n - 1)
    std = math.sqrt(std2)
    out[c + 4] = std
    beyond = 0
    for i in range(a, b):
        if abs(y[i] - mean) > std:
            beyond += 1
    out[c + 14] = beyond / n
    out[c + 18] = chi2 / (n - 1)
    if chi2 > 0:
        s_abs = 0.0
        for i in range(a, b):
            s_abs += abs(y[i] - wmean) / e[i]
        out[c + 15] = s_abs / math.sqrt(n * chi2)
    # Stetson J over consecutive pairs: P_i = delta_i delta_{i+1}, delta = sqrt(n/(n-1)) (y - wmean) / e
    f = math.sqrt(n / (n - 1.0))
    s_j = 0.0
    for i in range(a, b - 1):
        p = f * (y[i] - wmean) / e[i] * f * (y[i + 1] - wmean) / e[i + 1]
        if p > 0:
            s_j += math.sqrt(p)
        elif p < 0:
            s_j -= math.sqrt(-p)
    out[c + 16] = s_j / (n - 1)
    best = -1.0
    for i in range(a, b - 1):
        slope = abs((y[i + 1] - y[i]) / (t[i + 1] - t[i]))
        if math.isfinite(slope) and slope > best:
            best = slope
    if best >= 0:
        out[c + 25] = best
    if not plateau:
        s_d2 = 0.0
        for i in range(a, b - 1):
            d = y[i + 1] - y[i]
            s_d2 += d * d
        out[c + 17] = s_d2 / (n - 1) / std2
        num = _ppf(srt, n, np.float32(1.0) - np.float32(0.4)) - _ppf(srt, n, 0.4)
        num2 = _ppf(srt, n, np.float32(1.0) - np.float32(0.2)) - _ppf(srt, n, 0.2)
        den = _ppf(srt, n, np.float32(1.0) - np.float32(0.05)) - _ppf(srt, n, 0.05)
        out[c + 10] = num / den
        out[c + 11] = num2 / den
    if n < 3:
        return
    if not plateau:
        out[c + 12] = n / ((n - 1.0) * (n - 2.0)) * m3 / (std2 * std)
    # straight lines (Press et al. sec. 15.2): unweighted (linear_trend) and weighted by 1/e^2 (linear_fit)
    t_mean = 0.0
    s_wt = 0.0
    for i in range(a, b):
        t_mean += t[i]
        s_wt += t[i] / (e[i] * e[i])
    t_mean /= n
    t_wmean = s_wt / s_w
    stt = 0.0
    sty = 0.0
    wtt = 0.0
    wty = 0.0
    for i in range(a, b):
        dt = t[i] - t_mean
        stt += dt * dt
        sty += dt * (y[i] - mean)
        w = 1.0 / (e[i] * e[i])
        dtw = t[i] - t_wmean
        wtt += w * dtw * dtw
        wty += w * dtw * (y[i] - wmean)
    slope = sty / stt
    wslope = wty / wtt
    res2 = 0.0
    wres2 = 0.0
    for i in range(a, b):
        r = (y[i] - mean) - slope * (t[i] - t_mean)
        res2 += r * r
        rw = (y[i] - wmean) - wslope * (t[i] - t_wmean)
        wres2 += rw * rw / (e[i] * e[i])
    red = res2 / (n - 2)
    out[c + 19] = slope
    out[c + 20] = math.sqrt(red / stt)
    out[c + 21] = math.sqrt(red)
    out[c + 22] = wslope
    out[c + 23] = math.sqrt(1.0 / wtt)
    out[c + 24] = wres2 / (n - 2)
    if n >= 4 and not plateau:
        out[c + 13] = (n * (n + 1.0) / ((n - 1.0) * (n - 2.0) * (n - 3.0)) * m4 / (std2 * std2)
                       - 3.0 * (n - 1.0) ** 2 / ((n - 2.0) * (n - 3.0)))


@nb.njit(**_PJIT)
def stats_kernel(t, y, e, seg, out, col0):
    """Per-band statistics: band ``b`` of object ``i`` into ``out[i, col0 + b * N_STATS:...]``."""
    n_obj, nb1 = seg.shape
    for i in nb.prange(n_obj):
        row = out[i]
        longest = 0
        for b in range(nb1 - 1):
            longest = max(longest, seg[i, b + 1] - seg[i, b])
        srt = np.empty(2 * longest)
        dev = np.empty(longest)
        for b in range(nb1 - 1):
            _segment_stats(t, y, e, seg[i, b], seg[i, b + 1], row, col0 + b * N_STATS, srt, dev)


@nb.njit(**_PJIT)
def shape_kernel(t, flux, err, det, seg, out, col0):
    """Peak, rise and decline per band, counts and durations per object (flux domain).

    Per band (``N_SHAPE_BAND`` columns from ``col0 + b * N_SHAPE_BAND``): number of
    detections, peak flux (brightest detection), rise time (its time minus
    the object's first detection), decline time (from the peak to where the
    flux first falls to half the peak, linearly interpolated between the
    bracketing points; any later point counts), and the inverse-variance
    weighted mean flux.  Then ``N_SHAPE_GLOBAL`` columns: points, detections,
    bands observed, duration, first-to-last detection.
    """
    n_obj, nb1 = seg.shape
    n_bands = nb1 - 1
    g0 = col0 + n_bands * N_SHAPE_BAND
    for i in nb.prange(n_obj):
        a0 = seg[i, 0]
        a1 = seg[i, n_bands]
        n_pts = a1 - a0
        out[i, g0 + 0] = n_pts
        n_det = 0
        t_first = np.inf
        t_last_det = -np.inf
        t_min = np.inf
        t_max = -np.inf
        for j in range(a0, a1):
            t_min = min(t_min, t[j])
            t_max = max(t_max, t[j])
            if det[j]:
                n_det += 1
                t_first = min(t_first, t[j])
                t_last_det = max(t_last_det, t[j])
        out[i, g0 + 1] = n_det
        n_obs = 0
        for b in range(n_bands):
            if seg[i, b + 1] > seg[i, b]:
                n_obs += 1
        out[i, g0 + 2] = n_obs
        if n_pts > 0:
            out[i, g0 + 3] = t_max - t_min
        if n_det > 0:
            out[i, g0 + 4] = t_last_det - t_first
        for b in range(n_bands):
            a = seg[i, b]
            z = seg[i, b + 1]
            c = col0 + b * N_SHAPE_BAND
            if z == a:
                out[i, c + 0] = 0
                continue
            sw = 0.0
            swf = 0.0
            k = -1
            nd = 0
            for j in range(a, z):
                w = 1.0 / (err[j] * err[j])
                sw += w
                swf += w * flux[j]
                if det[j]:
                    nd += 1
                    if k < 0 or flux[j] > flux[k]:
                        k = j
            out[i, c + 0] = nd
            out[i, c + 4] = swf / sw
            if k < 0:
                continue
            peak = flux[k]
            out[i, c + 1] = peak
            out[i, c + 2] = t[k] - t_first
            if peak > 0:
                half = 0.5 * peak
                for j in range(k + 1, z):
                    if flux[j] <= half:
                        prev = flux[j - 1]
                        frac = (prev - half) / (prev - flux[j])
                        out[i, c + 3] = t[j - 1] + frac * (t[j] - t[j - 1]) - t[k]
                        break


@nb.njit(**_JIT)
def frequency_grid(baseline, min_period, max_period, oversampling, max_n):
    """Linear grid in cycles/day: ``(f0, df, n)`` (n = 0 when the baseline is not positive)."""
    f_lo = 1.0 / max_period
    f_hi = 1.0 / min_period
    if not baseline > 0:
        return f_lo, 0.0, 0
    df = 1.0 / (oversampling * baseline)
    n = int(math.floor((f_hi - f_lo) / df)) + 1
    if n > max_n:
        n = max_n
        df = (f_hi - f_lo) / (max_n - 1) if max_n > 1 else 0.0
    return f_lo, df, n


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _band_delta(yc, cs, sn, a, z):
    """Chi-square reduction of the two-term sinusoid fit to the centred values ``yc[a:z]`` (unit weights)."""
    yc_c = 0.0
    yc_s = 0.0
    ss = 0.0
    cs_ = 0.0
    for j in range(a, z):
        c = cs[j]
        s = sn[j]
        yc_c += yc[j] * c
        yc_s += yc[j] * s
        ss += s * s
        cs_ += c * s
    nb_ = z - a
    cc = nb_ - ss
    d = cc * ss - cs_ * cs_
    if d > 1e-10 * nb_ * nb_:
        return (yc_c * yc_c * ss - 2.0 * yc_c * yc_s * cs_ + yc_s * yc_s * cc) / d
    # sine and cosine columns (nearly) parallel: a one-term fit
    return (yc_c * yc_c + yc_s * yc_s) / nb_


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def _delta_from_sums(nb_, yc_c, yc_s, ss, cs_):
    cc = nb_ - ss
    d = cc * ss - cs_ * cs_
    if d > 1e-10 * nb_ * nb_:
        return (yc_c * yc_c * ss - 2.0 * yc_c * yc_s * cs_ + yc_s * yc_s * cc) / d
    return (yc_c * yc_c + yc_s * yc_s) / nb_


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _band_delta4(yc, cs, sn, cd, sd, a, z, out):
    """:func:`_band_delta` at four consecutive grid frequencies, advancing each point's phase four steps.

    Four frequencies per pass over the points give independent accumulation
    chains and a quarter of the loads and stores of one frequency per pass.
    """
    a0 = a1 = a2 = a3 = 0.0
    b0 = b1 = b2 = b3 = 0.0
    s0 = s1 = s2 = s3 = 0.0
    x0 = x1 = x2 = x3 = 0.0
    for j in range(a, z):
        y = yc[j]
        c = cs[j]
        s = sn[j]
        rc = cd[j]
        rs = sd[j]
        a0 += y * c
        b0 += y * s
        s0 += s * s
        x0 += c * s
        c, s = c * rc - s * rs, s * rc + c * rs
        a1 += y * c
        b1 += y * s
        s1 += s * s
        x1 += c * s
        c, s = c * rc - s * rs, s * rc + c * rs
        a2 += y * c
        b2 += y * s
        s2 += s * s
        x2 += c * s
        c, s = c * rc - s * rs, s * rc + c * rs
        a3 += y * c
        b3 += y * s
        s3 += s * s
        x3 += c * s
        cs[j] = c * rc - s * rs
        sn[j] = s * rc + c * rs
    n = z - a
    out[0] = _delta_from_sums(n, a0, b0, s0, x0)
    out[1] = _delta_from_sums(n, a1, b1, s1, x1)
    out[2] = _delta_from_sums(n, a2, b2, s2, x2)
    out[3] = _delta_from_sums(n, a3, b3, s3, x3)


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _power_loop(dt, yc, seg_row, coef, use, f0, df, nf, power):
    """Combined power on the grid ``f0 + k df``: phases advanced by rotation, re-evaluated every _RESYNC steps."""
    n = dt.shape[0]
    n_bands = seg_row.shape[0] - 1
    cs = np.empty(n)
    sn = np.empty(n)
    cd = np.empty(n)
    sd = np.empty(n)
    delta = np.empty(4)
    two_pi = 2.0 * math.pi
    for j in range(n):
        cd[j] = math.cos(two_pi * df * dt[j])
        sd[j] = math.sin(two_pi * df * dt[j])
    for k in range(0, nf, 4):
        if k % _RESYNC == 0:
            f = f0 + k * df
            for j in range(n):
                ph = two_pi * f * dt[j]
                cs[j] = math.cos(ph)
                sn[j] = math.sin(ph)
        p0 = p1 = p2 = p3 = 0.0
        for b in range(n_bands):
            if use[b]:
                _band_delta4(yc, cs, sn, cd, sd, seg_row[b], seg_row[b + 1], delta)
                p0 += coef[b] * delta[0]
                p1 += coef[b] * delta[1]
                p2 += coef[b] * delta[2]
                p3 += coef[b] * delta[3]
        power[k] = p0
        if k + 1 < nf:
            power[k + 1] = p1
        if k + 2 < nf:
            power[k + 2] = p2
        if k + 3 < nf:
            power[k + 3] = p3


@nb.njit(**_JIT)
def _prepare(t, y, e, a0, seg_row, weights, normalization):
    """Centred values, band weights and per-band coefficients of one object's periodogram.

    ``weights``: 0 chi2, 1 count, 2 equal; ``normalization``: 0 standard, 1 psd.
    A band enters with at least two points and non-zero variance.
    """
    n_bands = seg_row.shape[0] - 1
    n = seg_row[n_bands] - seg_row[0]
    dt = np.empty(n)
    yc = np.empty(n)
    w = np.zeros(n_bands)
    coef = np.zeros(n_bands)
    norm = np.zeros(n_bands)
    use = np.zeros(n_bands, dtype=np.bool_)
    t_min = np.inf
    for j in range(seg_row[0], seg_row[n_bands]):
        t_min = min(t_min, t[j])
    local = np.empty(n_bands + 1, dtype=np.int64)
    for b in range(n_bands + 1):
        local[b] = seg_row[b] - a0
    for b in range(n_bands):
        a = seg_row[b]
        z = seg_row[b + 1]
        nb_ = z - a
        for j in range(a, z):
            dt[j - a0] = t[j] - t_min
        if nb_ < 2:
            for j in range(a, z):
                yc[j - a0] = 0.0
            continue
        s = 0.0
        s_w = 0.0
        s_wy = 0.0
        for j in range(a, z):
            s += y[j]
            ww = 1.0 / (e[j] * e[j])
            s_w += ww
            s_wy += ww * y[j]
        mean = s / nb_
        wmean = s_wy / s_w
        m2 = 0.0
        chi2 = 0.0
        for j in range(a, z):
            yc[j - a0] = y[j] - mean
            m2 += (y[j] - mean) ** 2
            chi2 += ((y[j] - wmean) / e[j]) ** 2
        if not m2 > 0:
            continue
        use[b] = True
        w[b] = chi2 if weights == 0 else (nb_ if weights == 1 else 1.0)
        # standard: Delta / sum (y - mean)^2 in [0, 1]; psd: Delta / (2 var), light-curve's default
        norm[b] = 1.0 / m2 if normalization == 0 else 0.5 * (nb_ - 1) / m2
    total = 0.0
    for b in range(n_bands):
        total += w[b]
    if not total > 0:
        return dt, yc, local, coef, norm, use, False
    for b in range(n_bands):
        coef[b] = w[b] / total * norm[b]
    return dt, yc, local, coef, norm, use, True


@nb.njit(**_JIT)
def object_power(t, y, e, seg_row, weights, normalization, min_period, max_period, oversampling, max_n):
    """One object's multi-band periodogram: ``(f0, df, power)`` (power empty when undefined)."""
    a0 = seg_row[0]
    dt, yc, local, coef, _, use, ok = _prepare(t, y, e, a0, seg_row, weights, normalization)
    baseline = 0.0
    if dt.shape[0] > 0:
        baseline = dt.max()
    f0, df, nf = frequency_grid(baseline, min_period, max_period, oversampling, max_n)
    if not ok or nf == 0:
        return f0, df, np.empty(0)
    power = np.empty(nf)
    _power_loop(dt, yc, local, coef, use, f0, df, nf, power)
    return f0, df, power


@nb.njit(**_JIT)
def _add_harmonic_point(m, v, phi, x, w, yc, n_harmonics):
    """Fold one point into weighted normal equations of a constant plus ``n_harmonics`` harmonics at phase angle
    ``x``: ``phi`` gets the basis (1, cos x, sin x, cos 2x, sin 2x, ...), ``m`` (lower triangle) ``w phi phi'``
    and ``v`` ``w yc phi``."""
    c1 = math.cos(x)
    s1 = math.sin(x)
    phi[0] = 1.0
    ck = 1.0
    sk = 0.0
    for h in range(n_harmonics):
        ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
        phi[1 + 2 * h] = ck
        phi[2 + 2 * h] = sk
    p = phi.shape[0]
    for r in range(p):
        v[r] += w * yc * phi[r]
        for q in range(r + 1):
            m[r, q] += w * phi[r] * phi[q]


@nb.njit(**_JIT)
def _cholesky_lower(m, tol):
    """Cholesky factor of the symmetric ``m`` (lower triangle read and overwritten); False where a pivot is not
    above ``tol`` (singular or nearly so)."""
    p = m.shape[0]
    for r in range(p):
        for q in range(r + 1):
            acc = m[r, q]
            for k in range(q):
                acc -= m[r, k] * m[q, k]
            if r == q:
                if not acc > tol:
                    return False
                m[r, r] = math.sqrt(acc)
            else:
                m[r, q] = acc / m[q, q]
    return True


@nb.njit(**_JIT)
def _forward_substitute(m, v, out):
    """``out = L^-1 v`` for the lower-triangular factor ``L`` that :func:`_cholesky_lower` left in ``m``."""
    for r in range(m.shape[0]):
        acc = v[r]
        for k in range(r):
            acc -= m[r, k] * out[k]
        out[r] = acc / m[r, r]


@nb.njit(**_JIT)
def _harmonic_score(t, y, e, seg_row, t_ref, f, n_harmonics, weights, band_out):
    """Fit of a floating mean plus ``n_harmonics`` harmonics of ``f`` to each band (weights 1/e^2).

    Each band's score is its chi-square reduction over that of a constant,
    R^2 in [0, 1] (into ``band_out``; NaN for bands that do not enter: fewer
    than ``2 n_harmonics + 2`` points, zero variance or a singular fit).
    Returns the bands' scores averaged with the ``weights`` of the periodogram.
    """
    n_bands = seg_row.shape[0] - 1
    p = 2 * n_harmonics + 1
    m = np.empty((p, p))
    v = np.empty(p)
    phi = np.empty(p)
    total_w = 0.0
    total = 0.0
    two_pi_f = 2.0 * math.pi * f
    for b in range(n_bands):
        band_out[b] = np.nan
        a = seg_row[b]
        z = seg_row[b + 1]
        nb_ = z - a
        if nb_ < p + 1:
            continue
        s_w = 0.0
        s_wy = 0.0
        for j in range(a, z):
            w = 1.0 / (e[j] * e[j])
            s_w += w
            s_wy += w * y[j]
        wmean = s_wy / s_w
        chi0 = 0.0
        m[:, :] = 0.0
        v[:] = 0.0
        for j in range(a, z):
            w = 1.0 / (e[j] * e[j])
            yc = y[j] - wmean
            chi0 += w * yc * yc
            _add_harmonic_point(m, v, phi, two_pi_f * (t[j] - t_ref), w, yc, n_harmonics)
        if not chi0 > 0:
            continue
        # Cholesky of the normal matrix, then forward substitution: delta chi2 = v' M^-1 v = |L^-1 v|^2
        if not _cholesky_lower(m, 1e-10 * m[0, 0]):
            continue
        _forward_substitute(m, v, phi)
        delta = 0.0
        for r in range(p):
            delta += phi[r] * phi[r]
        score = min(max(delta / chi0, 0.0), 1.0)
        band_out[b] = score
        wb = chi0 if weights == 0 else (nb_ if weights == 1 else 1.0)
        total_w += wb
        total += wb * score
    if not total_w > 0:
        return np.nan
    return total / total_w


@nb.njit(**_JIT)
def _candidates(power, n_candidates):
    """Indices of the highest interior local maxima of ``power``, best first (-1 pads).

    A peak rises from its left neighbour and does not fall short of its right
    one (light-curve's definition); the grid's ends are never peaks.
    """
    nf = power.shape[0]
    best = np.full(n_candidates, -1, dtype=np.int64)
    for k in range(1, nf - 1):
        if not (power[k] > power[k - 1] and power[k] >= power[k + 1]):
            continue
        # insert into the sorted top list
        pos = n_candidates
        while pos > 0 and (best[pos - 1] < 0 or power[best[pos - 1]] < power[k]):
            pos -= 1
        if pos < n_candidates:
            for q in range(n_candidates - 1, pos, -1):
                best[q] = best[q - 1]
            best[pos] = k
    return best


@nb.njit(**_PJIT)
def period_kernel(t, y, e, seg, weights, normalization, min_period, max_period, oversampling, max_n,
                  n_harmonics, n_candidates, out, col0):
    """Best period, its power, its signal-to-noise and each band's power there.

    ``n_harmonics == 1``: the highest interior peak of the combined spectrum
    (all NaN when it has none: the power only rises or falls over the range);
    columns from ``col0``: period (days), combined power, (power - mean) / std
    over the grid (ddof 1), one power per band (its normalised power there).
    ``n_harmonics > 1``: the ``n_candidates`` highest peaks are re-scored by
    an ``n_harmonics``-harmonic fit on 9 frequencies spanning +-2 grid steps
    around each, the best fit wins; power and band powers are then the fit's
    R^2 (combined and per band), the signal-to-noise that of the spectrum at
    the nearest grid frequency.
    """
    n_obj, nb1 = seg.shape
    n_bands = nb1 - 1
    for i in nb.prange(n_obj):
        f0, df, power = object_power(t, y, e, seg[i], weights, normalization, min_period, max_period,
                                     oversampling, max_n)
        nf = power.shape[0]
        if nf < 3:
            continue
        k = _candidates(power, 1)[0]
        if k < 0:  # the power only rises or falls over the range: no period inside it
            continue
        s = 0.0
        for j in range(nf):
            s += power[j]
        mean = s / nf
        v = 0.0
        for j in range(nf):
            v += (power[j] - mean) ** 2
        f_best = f0 + k * df
        best_power = power[k]
        band_power = np.full(n_bands, np.nan)
        t_ref = np.inf
        for j in range(seg[i, 0], seg[i, n_bands]):
            t_ref = min(t_ref, t[j])
        harmonic = n_harmonics > 1
        if harmonic:
            scratch = np.empty(n_bands)
            best_score = -1.0
            for c in _candidates(power, n_candidates):
                if c < 0:
                    break
                for d in range(-4, 5):
                    f = f0 + (c + 0.5 * d) * df
                    if f < f0 or f > f0 + (nf - 1) * df:  # stay inside the searched range
                        continue
                    score = _harmonic_score(t, y, e, seg[i], t_ref, f, n_harmonics, weights, scratch)
                    if score > best_score:
                        best_score = score
                        f_best = f
                        band_power[:] = scratch
            if best_score >= 0:
                best_power = best_score
                k = min(max(int(round((f_best - f0) / df)), 0), nf - 1)
            else:  # no band has enough points for the harmonic fit: the plain peak stands
                harmonic = False
        out[i, col0 + 0] = 1.0 / f_best
        out[i, col0 + 1] = best_power
        if nf > 1 and v > 0:
            out[i, col0 + 2] = (power[k] - mean) / math.sqrt(v / (nf - 1))
        if harmonic:
            for b in range(n_bands):
                out[i, col0 + 3 + b] = band_power[b]
            continue
        a0 = seg[i, 0]
        dt, yc, local, _, norm, use, _ = _prepare(t, y, e, a0, seg[i], weights, normalization)
        cs = np.empty(dt.shape[0])
        sn = np.empty(dt.shape[0])
        for j in range(dt.shape[0]):
            ph = 2.0 * math.pi * f_best * dt[j]
            cs[j] = math.cos(ph)
            sn[j] = math.sin(ph)
        for b in range(n_bands):
            if use[b]:
                out[i, col0 + 3 + b] = norm[b] * _band_delta(yc, cs, sn, local[b], local[b + 1])


N_FOURIER = 5  # amplitude A1, R21, R31, phi21, phi31 per band


@nb.njit(**_PJIT)
def fourier_kernel(t, y, e, seg, period, n_harmonics, out, col0):
    """Per band, a constant plus ``n_harmonics`` (>= 3) harmonics of the fold at ``period[i]`` fitted by weighted
    least squares (weights 1/e^2, phase from the object's first point): A1, A2/A1, A3/A1, phi2 - 2 phi1 and
    phi3 - 3 phi1 (phases in [0, 2 pi)), :data:`N_FOURIER` columns per band from ``col0``.

    The normal equations are solved by Cholesky on the values less their weighted mean (the constant absorbs the
    shift; it keeps a magnitude's 17 from swamping a 0.3 amplitude).  A band with fewer than ``2 n_harmonics + 2``
    usable points, or whose phases leave the fit singular, stays NaN, as does every band without a period.
    """
    if n_harmonics < 3:  # R31 and phi31 read the third harmonic
        raise ValueError("fourier_kernel needs n_harmonics >= 3")
    n_obj = seg.shape[0]
    n_bands = seg.shape[1] - 1
    p = 2 * n_harmonics + 1
    for i in nb.prange(n_obj):
        per = period[i]
        first = seg[i, 0]
        last = seg[i, n_bands]
        if not (per > 0 and math.isfinite(per)) or last == first:
            continue
        t0 = t[first]
        for j in range(first + 1, last):
            if t[j] < t0:
                t0 = t[j]
        m = np.empty((p, p))
        v = np.empty(p)
        phi = np.empty(p)
        for b in range(n_bands):
            a = seg[i, b]
            z = seg[i, b + 1]
            n_ok = 0
            s_w = 0.0
            s_wy = 0.0
            for j in range(a, z):
                if math.isfinite(y[j]) and math.isfinite(e[j]) and e[j] > 0:
                    w = 1.0 / (e[j] * e[j])
                    n_ok += 1
                    s_w += w
                    s_wy += w * y[j]
            if n_ok < p + 1:
                continue
            wmean = s_wy / s_w
            m[:, :] = 0.0
            v[:] = 0.0
            for j in range(a, z):
                if not (math.isfinite(y[j]) and math.isfinite(e[j]) and e[j] > 0):
                    continue
                _add_harmonic_point(m, v, phi, 2.0 * math.pi * ((t[j] - t0) / per), 1.0 / (e[j] * e[j]),
                                    y[j] - wmean, n_harmonics)
            # Cholesky, forward then back substitution into phi
            if not _cholesky_lower(m, 1e-12 * m[0, 0]):
                continue
            _forward_substitute(m, v, phi)
            for r in range(p - 1, -1, -1):
                acc = phi[r]
                for k in range(r + 1, p):
                    acc -= m[k, r] * phi[k]
                phi[r] = acc / m[r, r]
            # c cos(kx) + s' sin(kx) = A cos(kx + phase), A = hypot(c, s'), phase = atan2(-s', c)
            a1 = math.hypot(phi[1], phi[2])
            base = col0 + b * N_FOURIER
            out[i, base] = a1
            if a1 > 0:
                ph1 = math.atan2(-phi[2], phi[1])
                ph2 = math.atan2(-phi[4], phi[3])
                ph3 = math.atan2(-phi[6], phi[5])
                out[i, base + 1] = math.hypot(phi[3], phi[4]) / a1
                out[i, base + 2] = math.hypot(phi[5], phi[6]) / a1
                out[i, base + 3] = (ph2 - 2.0 * ph1) % (2.0 * math.pi)
                out[i, base + 4] = (ph3 - 3.0 * ph1) % (2.0 * math.pi)
