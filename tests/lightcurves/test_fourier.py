"""The ``fourier`` feature group: Fourier decomposition at the found period, against injected truth."""
from __future__ import annotations

import numpy as np
import pytest

from astroray.lightcurves import FeatureConfig, FeatureExtractor, PeriodogramConfig
from astroray.records import AB_NJY_ZEROPOINT, LightCurve

PERIOD = 0.5731
# per band: mean magnitude, then (A_k, phi_k) for k = 1..3 -- an RR Lyrae ab-like saw-tooth in g, milder in r
TRUTH = {"g": (18.0, [(0.40, 0.3), (0.19, 2.1), (0.12, 4.0)]),
         "r": (17.8, [(0.30, 0.5), (0.12, 2.6), (0.06, 5.1)])}


def _injected(seed=0, n_per_band=120, noise=0.003) -> LightCurve:
    rng = np.random.default_rng(seed)
    times, bands, mags = [], [], []
    for band, (mean, harmonics) in TRUTH.items():
        # nightly visits over three seasons, at varying hours, as a survey observes
        t = 58000.0 + np.sort(rng.choice(900, n_per_band, replace=False)) + rng.uniform(-0.15, 0.15, n_per_band)
        phase = 2 * np.pi * (t - 58000.0) / PERIOD
        m = mean + sum(a * np.cos(k * phase + phi) for k, (a, phi) in enumerate(harmonics, start=1))
        times.append(t), bands.append(np.full(n_per_band, band)), mags.append(m + rng.normal(0, noise, n_per_band))
    t, b, m = np.concatenate(times), np.concatenate(bands), np.concatenate(mags)
    order = np.argsort(t)
    flux = 10 ** (-0.4 * (m[order] - AB_NJY_ZEROPOINT))
    return LightCurve("injected", t[order], b[order], flux, flux * noise / 1.0857, np.ones(t.size, bool))


def _config(groups):
    return FeatureConfig(bands="gr", domain="mag", groups=groups,
                         period=PeriodogramConfig(min_period=0.2, max_period=1.2, n_harmonics=4,
                                                  max_n_frequencies=200_000))


def test_recovers_the_injected_amplitude_ratios_and_phase_differences():
    lc = _injected()
    table = FeatureExtractor(_config(("period", "fourier"))).run([lc])
    assert abs(table.column("period")[0] - PERIOD) / PERIOD < 1e-4
    # the phase origin is the first point, not 58000: phi_k shift by k * dphi, which phi21 and phi31 cancel
    for band, (_, h) in TRUTH.items():
        (a1, p1), (a2, p2), (a3, p3) = h
        np.testing.assert_allclose(table.column(f"fourier_amplitude_{band}")[0], a1, rtol=0.02)
        np.testing.assert_allclose(table.column(f"fourier_r21_{band}")[0], a2 / a1, rtol=0.03)
        np.testing.assert_allclose(table.column(f"fourier_r31_{band}")[0], a3 / a1, rtol=0.05)
        for name, expected in (("phi21", p2 - 2 * p1), ("phi31", p3 - 3 * p1)):
            got = table.column(f"fourier_{name}_{band}")[0]
            assert 0 <= got < 2 * np.pi
            # compare on the circle
            assert abs(np.angle(np.exp(1j * (got - expected)))) < 0.05, (band, name, got, expected % (2 * np.pi))


def test_without_the_period_group_the_period_is_searched_all_the_same():
    lcs = [_injected(seed=s) for s in range(3)]
    both = FeatureExtractor(_config(("period", "fourier"))).run(lcs)
    alone = FeatureExtractor(_config(("fourier",))).run(lcs)
    assert alone.names == tuple(n for n in both.names if n.startswith("fourier_"))
    np.testing.assert_array_equal(alone.values, both.values[:, [both.names.index(n) for n in alone.names]])


def test_too_few_points_or_no_period_give_nan():
    lc = _injected(n_per_band=40)
    keep = (lc.band == "g") | (np.arange(lc.band.size) % 10 == 0)  # r keeps ~4 points: fewer than 2 K + 2
    few = LightCurve("few", lc.mjd[keep], lc.band[keep], lc.flux[keep], lc.flux_err[keep], lc.detected[keep])
    table = FeatureExtractor(_config(("period", "fourier"))).run([few])
    assert np.isfinite(table.column("fourier_r21_g")[0])
    assert all(np.isnan(table.column(f"{n}_r")[0]) for n in ("fourier_amplitude", "fourier_r21", "fourier_phi31"))
    flat = LightCurve("flat", lc.mjd[:2], lc.band[:2], lc.flux[:2], lc.flux_err[:2], lc.detected[:2])
    table = FeatureExtractor(_config(("fourier",))).run([flat])
    assert np.isnan(table.values).all()


def _lstsq_reference(t, y, e, period, t0, n_harmonics):
    """A, R21, R31, phi21, phi31 by NumPy's SVD least squares on [1, cos kx, sin kx] (weights 1/e)."""
    x = 2 * np.pi * (t - t0) / period
    k = np.arange(1, n_harmonics + 1)
    design = np.column_stack([np.ones_like(t), np.cos(np.outer(x, k)), np.sin(np.outer(x, k))])
    coef = np.linalg.lstsq(design / e[:, None], y / e, rcond=None)[0]
    c, s = coef[1:n_harmonics + 1], coef[n_harmonics + 1:]
    amp, phase = np.hypot(c, s), np.arctan2(-s, c)  # c cos + s sin = A cos(kx + phase)
    return np.array([amp[0], amp[1] / amp[0], amp[2] / amp[0], np.mod(phase[1] - 2 * phase[0], 2 * np.pi),
                     np.mod(phase[2] - 3 * phase[0], 2 * np.pi)])


def test_the_kernel_matches_a_numpy_least_squares_fit_and_skips_unusable_points():
    from astroray.lightcurves import _kernels as K

    rng = np.random.default_rng(7)
    n_obj, n_bands, n_harmonics = 6, 2, 4
    t, y, e, seg = [], [], [], np.zeros((n_obj, n_bands + 1), np.int64)
    periods = rng.uniform(0.3, 0.8, n_obj)
    periods[5] = np.nan  # no period: the whole row stays NaN
    for i in range(n_obj):
        for b in range(n_bands):
            n = 9 if (i, b) == (4, 1) else int(rng.integers(30, 80))  # (4, 1): 9 points, 7 of them usable < 2K+2
            tt = np.sort(58000 + rng.uniform(0, 300, n))
            yy = 17 + 0.3 * np.cos(2 * np.pi * tt / max(periods[i], 0.5) + b) + rng.normal(0, 0.02, n)
            ee = rng.uniform(0.01, 0.05, n)
            yy[1], ee[2] = np.nan, 0.0  # unusable points are skipped, not fitted
            t.append(tt), y.append(yy), e.append(ee)
            seg[i, b + 1] = seg[i, b] + n
        if i + 1 < n_obj:
            seg[i + 1, 0] = seg[i, n_bands]
    t, y, e = np.concatenate(t), np.concatenate(y), np.concatenate(e)
    out = np.full((n_obj, n_bands * K.N_FOURIER), np.nan)
    K.fourier_kernel(t, y, e, seg, periods, n_harmonics, out, 0)
    for i in range(n_obj):
        t0 = t[seg[i, 0]:seg[i, n_bands]].min()
        for b in range(n_bands):
            got = out[i, b * K.N_FOURIER:(b + 1) * K.N_FOURIER]
            a, z = seg[i, b], seg[i, b + 1]
            ok = np.isfinite(y[a:z]) & (e[a:z] > 0)
            if i == 5 or ok.sum() < 2 * n_harmonics + 2:
                assert np.isnan(got).all(), (i, b)
                continue
            ref = _lstsq_reference(t[a:z][ok], y[a:z][ok], e[a:z][ok], periods[i], t0, n_harmonics)
            np.testing.assert_allclose(got[:3], ref[:3], rtol=1e-8)
            assert np.all(np.abs(np.angle(np.exp(1j * (got[3:] - ref[3:])))) < 1e-8) and np.all(got[3:] >= 0)
    with pytest.raises(ValueError, match="n_harmonics >= 3"):
        K.fourier_kernel(t, y, e, seg, periods, 2, out, 0)
