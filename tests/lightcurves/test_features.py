"""Batched features: agreement with the light-curve package, documented differences, shapes, edge cases."""
from __future__ import annotations

import numpy as np
import pytest

from astroray.datasets import LightCurveConfig, simulate_lightcurves
from astroray.lightcurves import (
    LIGHT_CURVE_EQUIVALENTS,
    STAT_NAMES,
    FeatureConfig,
    FeatureExtractor,
    PeriodogramConfig,
    as_ragged,
    extract_features,
    feature_names,
    multiband_periodogram,
)
from astroray.records import LightCurve, flux_to_mag

lc_pkg = pytest.importorskip("light_curve")

STATS = FeatureConfig(groups=("stats",))


def _reference_extractor():
    """light-curve features for LIGHT_CURVE_EQUIVALENTS, and where each statistic sits in their output."""
    feats, where, start = [], {}, 0
    made = {}
    for name, (cls, kwargs, k) in LIGHT_CURVE_EQUIVALENTS.items():
        key = (cls, tuple(sorted(kwargs.items())))
        if key not in made:
            f = getattr(lc_pkg, cls)(**kwargs)
            made[key] = start
            feats.append(f)
            start += len(f.names)
        where[name] = made[key] + k
    return lc_pkg.Extractor(*feats), where


def _band_values(row: LightCurve, band: str, domain: str):
    sel = row.band == band
    t, flux, err = row.mjd[sel], row.flux[sel], row.flux_err[sel]
    if domain == "mag":
        pos = flux > 0
        m, s = flux_to_mag(flux[pos], err[pos])
        return t[pos], m, s
    return t, flux, err


def assert_agrees_with_light_curve(records, config, *, rtol=1e-6):
    """Every statistic with a light-curve twin, per band, equal to rtol (NaN where light-curve fails)."""
    table = FeatureExtractor(config).run(records)
    data = as_ragged(records, config)
    extractor, where = _reference_extractor()
    ours = {name: [] for name in where}
    ref = {name: [] for name in where}
    compared = skipped = 0
    for i in range(len(data)):
        row = data.lightcurve(i)
        for band in config.bands:
            t, m, s = _band_values(row, band, config.domain)
            if len(t) == 0:
                assert table.values[i, table.names.index(f"n_points_{band}")] == 0
                continue
            if np.any(np.diff(t) <= 0):  # light-curve refuses repeated times
                skipped += 1
                continue
            values = extractor(t, m, s, fill_value=np.nan)
            compared += 1
            for name, j in where.items():
                ours[name].append(table.values[i, table.names.index(f"{name}_{band}")])
                ref[name].append(values[j])
    assert compared > 50 and skipped <= compared // 10
    for name in where:
        np.testing.assert_allclose(ours[name], ref[name], rtol=rtol, atol=0, equal_nan=True, err_msg=name)
    return compared


def test_simulated_lsst_flux_agrees():
    records = simulate_lightcurves(120, seed=3).lightcurves
    assert assert_agrees_with_light_curve(records, STATS) > 400


def test_simulated_ztf_magnitudes_detections_only_agree():
    records = simulate_lightcurves(80, config=LightCurveConfig(survey="ztf"), seed=4).lightcurves
    assert_agrees_with_light_curve(records, FeatureConfig(bands="ztf", domain="mag", detections_only=True,
                                                          groups=("stats",)))


def test_real_rrlyrae_and_bts_agree(shared_data):
    from astroray.io import read_lightcurves

    folder = shared_data / "lightcurves/rrlyrae/light-curves"
    rr = read_lightcurves(sorted(folder.glob("*.csv"))[:25])
    assert_agrees_with_light_curve(rr, FeatureConfig(domain="mag", groups=("stats",)))
    assert_agrees_with_light_curve(rr, STATS)
    folder = shared_data / "lightcurves/bts_snia/light-curves"
    bts = read_lightcurves(sorted(folder.glob("*.csv"))[:60])
    assert_agrees_with_light_curve(bts, FeatureConfig(bands="ztf", groups=("stats",)))


def test_short_and_flat_light_curves_agree():
    rng = np.random.default_rng(0)
    records = []
    for n in range(1, 7):
        t = np.cumsum(rng.uniform(0.1, 2.0, n))
        records.append(LightCurve(f"var{n}", t, ["g"] * n, rng.normal(100, 10, n), rng.uniform(1, 3, n), [True] * n))
        records.append(LightCurve(f"flat{n}", t, ["g"] * n, np.full(n, 50.0), np.full(n, 2.0), [True] * n))
    cfg = FeatureConfig(bands=("g",), groups=("stats",))
    extractor, where = _reference_extractor()
    table = FeatureExtractor(cfg).run(records)
    for i, rec in enumerate(records):
        ref = extractor(rec.mjd, rec.flux, rec.flux_err, fill_value=np.nan)
        for name, j in where.items():
            ours = table.values[i, table.names.index(f"{name}_g")]
            if rec.object_id.startswith("flat") and abs(ref[j]) < 1e-12 * 50:
                # a flat line's trend, its error and noise: 0 up to rounding of the 50 nJy flux on both sides
                assert abs(ours) < 1e-12 * 50, (rec.object_id, name, ours)
                continue
            np.testing.assert_allclose(ours, ref[j], rtol=1e-6, equal_nan=True, err_msg=f"{rec.object_id} {name}")


def test_stetson_j_definition():
    records = simulate_lightcurves(40, seed=8).lightcurves
    table = FeatureExtractor(STATS).run(records)
    data = as_ragged(records, STATS)
    checked = 0
    for i in range(len(data)):
        row = data.lightcurve(i)
        for band in STATS.bands:
            sel = row.band == band
            m, e = row.flux[sel], row.flux_err[sel]
            ours = table.values[i, table.names.index(f"stetson_j_{band}")]
            n = len(m)
            if n < 2:
                assert np.isnan(ours)
                continue
            w = e ** -2.0
            delta = np.sqrt(n / (n - 1)) * (m - np.sum(w * m) / np.sum(w)) / e
            p = delta[:-1] * delta[1:]
            assert ours == pytest.approx(np.sum(np.sign(p) * np.sqrt(np.abs(p))) / (n - 1), rel=1e-9)
            checked += 1
    assert checked > 100


def _multiband_reference(record, freq, **kwargs):
    bands = [b for b in "ugrizy" if (record.band == b).sum() >= 2]
    keep = np.isin(record.band, bands)
    r = record.select(keep)
    model = lc_pkg.Periodogram(freqs=2 * np.pi * freq, fast=False, peaks=1, bands=bands, **kwargs)
    _, power = model.freq_power(r.mjd, r.flux, r.flux_err, r.band.astype(str))
    period, snr = model(r.mjd, r.flux, r.flux_err, r.band.astype(str))
    return power, period, snr


@pytest.mark.parametrize("weights, lc_weights", [("chi2", "chi2"), ("count", "count")])
def test_multiband_periodogram_is_light_curves_on_the_same_grid(weights, lc_weights):
    records = [r for r in simulate_lightcurves(40, seed=3).lightcurves if len(r) > 10]
    pcfg = PeriodogramConfig(min_period=0.1, max_period=50.0, max_n_frequencies=3000, normalization="psd",
                             band_weights=weights)
    cfg = FeatureConfig(groups=("period",), period=pcfg)
    table = FeatureExtractor(cfg).run(records)
    for i, rec in enumerate(records):
        # bands with a single point enter light-curve's count normalisation but no power; leave them out
        rec = rec.select(np.isin(rec.band, [b for b in "ugrizy" if (rec.band == b).sum() >= 2]))
        freq, power = multiband_periodogram(rec, cfg)
        assert len(freq) == 3000 or freq[1] - freq[0] == pytest.approx(1 / (5 * np.ptp(rec.mjd)))
        ref_power, ref_period, ref_snr = _multiband_reference(rec, freq, multiband_normalization=lc_weights)
        np.testing.assert_allclose(power, ref_power, rtol=1e-6)
        ours = FeatureExtractor(cfg).run([rec]) if weights == "count" else None
        period = table.column("period")[i] if ours is None else ours.column("period")[0]
        snr = table.column("period_snr")[i] if ours is None else ours.column("period_snr")[0]
        assert period == pytest.approx(ref_period, rel=1e-9)
        assert snr == pytest.approx(ref_snr, rel=1e-6)


def test_a_spectrum_without_an_interior_peak_has_no_period():
    # a 3-day rise searched for periods of 20-200 days: the power falls monotonically, no peak inside the range
    t = np.linspace(0.0, 3.0, 10)
    rec = LightCurve("rise", t, ["g"] * 10, 1.0 + t, np.ones(10), [True] * 10)
    cfg = FeatureConfig(bands=("g",), groups=("period",),
                        period=PeriodogramConfig(min_period=20, max_period=200, oversampling=1000))
    freq, power = multiband_periodogram(rec, cfg)
    assert len(power) > 100 and np.all(np.diff(power) < 0)
    assert np.isnan(FeatureExtractor(cfg).run([rec]).values).all()
    # light-curve says 0 for "no peak" (a documented difference)
    ref = lc_pkg.Periodogram(freqs=2 * np.pi * freq, fast=False)(t, 1.0 + t)
    assert ref.tolist() == [0.0, 0.0]


def test_standard_normalisation_single_band():
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 200, 80))
    flux = 1000 + 300 * np.sin(2 * np.pi * t / 3.7) + rng.normal(0, 30, 80)
    rec = LightCurve("s", t, ["r"] * 80, flux, np.full(80, 30.0), [True] * 80)
    cfg = FeatureConfig(bands=("r",), groups=("period",), period=PeriodogramConfig(min_period=0.5, max_period=20))
    freq, power = multiband_periodogram(rec, cfg)
    ref = lc_pkg.Periodogram(freqs=2 * np.pi * freq, fast=False, normalization="standard").freq_power(t, flux)[1]
    np.testing.assert_allclose(power, ref, rtol=1e-6)
    assert power.max() <= 1.0
    table = FeatureExtractor(cfg).run([rec])
    assert table.column("period")[0] == pytest.approx(3.7, rel=0.01)
    assert table.column("period_power_r")[0] == pytest.approx(power.max(), rel=1e-9)


def test_harmonic_rescoring_picks_the_true_period_of_a_sawtooth():
    # a nightly cadence and a sawtooth: the plain peak can be a daily alias, the 4-harmonic fit is not fooled
    rng = np.random.default_rng(2)
    nights = np.sort(rng.choice(np.arange(600), 120, replace=False)).astype(float)
    t = nights + rng.uniform(0.2, 0.3, 120)
    period = 0.5723
    phase = (t / period) % 1.0
    flux = 1000 + 400 * np.where(phase < 0.15, phase / 0.15, 1 - (phase - 0.15) / 0.85) + rng.normal(0, 20, 120)
    rec = LightCurve("saw", t, ["g"] * 120, flux, np.full(120, 20.0), [True] * 120)
    pcfg = dict(min_period=0.2, max_period=1.2, max_n_frequencies=200_000)
    cfg = FeatureConfig(bands=("g",), groups=("period",), period=PeriodogramConfig(n_harmonics=4, **pcfg))
    table = FeatureExtractor(cfg).run([rec])
    assert table.column("period")[0] == pytest.approx(period, rel=1e-3)
    assert 0.9 < table.column("period_power")[0] <= 1.0
    assert table.column("period_power_g")[0] == table.column("period_power")[0]


def test_shape_features_by_hand():
    rec = LightCurve("sn", [0.0, 1.0, 5.0, 10.0, 20.0, 30.0, 2.0, 12.0],
                     ["g", "r", "g", "g", "g", "g", "r", "r"],
                     [10.0, 5.0, 50.0, 100.0, 40.0, 20.0, 80.0, 60.0],
                     [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0],
                     [True, False, True, True, True, True, True, True])
    cfg = FeatureConfig(bands="ztf", groups=("shape",))
    table = FeatureExtractor(cfg).run([rec])
    v = dict(zip(table.names, table.values[0]))
    assert v["n_detections_g"] == 5 and v["n_detections_r"] == 2 and v["n_detections_i"] == 0
    assert v["peak_flux_g"] == 100.0 and v["peak_flux_r"] == 80.0 and np.isnan(v["peak_flux_i"])
    assert v["peak_mag_g"] == pytest.approx(31.4 - 5.0)
    assert v["rise_time_g"] == 10.0 and v["rise_time_r"] == 2.0
    assert v["decline_time_g"] == pytest.approx(10.0 * 50 / 60)  # 100 -> 40 between t=10 and 20
    assert np.isnan(v["decline_time_r"])  # 80 -> 60: not yet at half
    assert v["color_peak_g_r"] == pytest.approx(-2.5 * np.log10(100 / 80))
    mean_r = (5 * 1 + 80 / 4 + 60) / (1 + 1 / 4 + 1)
    mean_g = np.mean([10.0, 50.0, 100.0, 40.0, 20.0])
    assert v["color_mean_g_r"] == pytest.approx(-2.5 * np.log10(mean_g / mean_r))
    assert np.isnan(v["color_peak_r_i"])
    assert (v["n_points"], v["n_detections"], v["n_bands"]) == (8, 7, 2)
    assert v["duration"] == 30.0 and v["duration_detected"] == 30.0
    assert v["rise_time"] == v["rise_time_g"] and v["decline_time"] == v["decline_time_g"]


def test_color_at_peak_is_light_curves_color_of_minimum_on_magnitudes():
    records = simulate_lightcurves(60, seed=11).lightcurves
    table = FeatureExtractor(FeatureConfig(groups=("shape",))).run(records)
    checked = 0
    for i, rec in enumerate(records):
        det = rec.detections()
        for b1, b2 in (("g", "r"), ("r", "i")):
            if not ((det.band == b1).any() and (det.band == b2).any()):
                continue
            keep = np.isin(det.band, [b1, b2])
            sub = det.select(keep)
            ref = lc_pkg.ColorOfMinimum(bands=[b1, b2])(sub.mjd, sub.mag, sub.mag_err, sub.band.astype(str))
            assert table.column(f"color_peak_{b1}_{b2}")[i] == pytest.approx(ref[0], rel=1e-9)
            checked += 1
    assert checked > 20


def test_empty_single_point_and_single_band_rows():
    empty = LightCurve("empty", [], [], [], [], [])
    all_nan = LightCurve("nan", [1.0, 2.0], ["g", "g"], [np.nan, np.nan], [np.nan, np.nan], [True, True])
    single = LightCurve("one", [5.0], ["r"], [40.0], [4.0], [True])
    table = extract_features([empty, all_nan, single], FeatureConfig(bands="ztf"))
    v = table.to_pandas().set_index("object_id")
    counts = [c for c in table.names if c.startswith(("n_points", "n_detections", "n_bands"))]
    assert (v.loc[["empty", "nan"], counts] == 0).all().all()
    others = [c for c in table.names if c not in counts]
    assert v.loc[["empty", "nan"], others].isna().all().all()
    assert v.loc["one", "amplitude_r"] == 0 and v.loc["one", "mean_r"] == 40.0
    assert np.isnan(v.loc["one", "standard_deviation_r"]) and np.isnan(v.loc["one", "period"])
    assert v.loc["one", "peak_flux_r"] == 40.0 and v.loc["one", "duration"] == 0.0


def test_names_output_and_threads():
    names = feature_names()
    assert len(names) == len(set(names)) == 6 * len(STAT_NAMES) + 6 * 5 + 5 * 2 + 7 + 3 + 6
    assert names[:3] == ("n_points_u", "mean_u", "weighted_mean_u") and names[-1] == "period_power_y"
    assert feature_names(FeatureConfig(bands="ztf", groups=("period",))) == (
        "period", "period_power", "period_snr", "period_power_g", "period_power_r", "period_power_i")
    records = simulate_lightcurves(30, seed=12).lightcurves
    extractor = FeatureExtractor()
    table = extractor.run(records)
    assert table.values.shape == (30, len(names)) and table.names == names
    np.testing.assert_array_equal(extractor.run(records, n_threads=1).values, table.values)
    # an object's features do not depend on the rest of the batch
    np.testing.assert_array_equal(extractor.run(records[7:8]).values[0], table.values[7])
    frame = table.to_pandas()
    assert list(frame.columns[:2]) == ["object_id", "label"] and frame.shape == (30, len(names) + 2)
    arrow = table.to_arrow()
    assert arrow.column_names == list(frame.columns)
    np.testing.assert_array_equal(arrow.column("period").to_numpy(), table.column("period"))
