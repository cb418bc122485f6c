"""Physics and contract of the simulated light curves."""
from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.timeseries import LombScargle

from astroray.datasets.lightcurves import (
    CLASSES,
    EXTRAGALACTIC,
    LIGHTCURVE_TRUTH_COLUMNS,
    OBSERVED_CLASS_WEIGHTS,
    LightCurveConfig,
    distance_modulus,
    simulate_lightcurve_table,
    simulate_lightcurves,
)
from astroray.errors import InvalidInputError
from astroray.records import LightCurve, flux_to_mag, lightcurves_to_table


def test_contract_all_classes_and_bands():
    out = simulate_lightcurves(700, seed=3)
    assert len(out.lightcurves) == 700 and list(out.truth.columns) == list(LIGHTCURVE_TRUTH_COLUMNS)
    assert set(out.truth["label"]) == set(CLASSES)
    for lc, row in zip(out.lightcurves, out.truth.itertuples()):
        assert isinstance(lc, LightCurve) and lc.label == row.label and lc.object_id == row.object_id
        assert len(lc) == row.n_points and lc.n_detections == row.n_detections
        assert np.all(np.diff(lc.mjd) >= 0) and np.all(lc.flux_err > 0)
        assert np.array_equal(lc.detected, lc.flux / lc.flux_err >= 5.0)
    assert set(np.concatenate([lc.band for lc in out.lightcurves])) == set("ugrizy")
    ztf = simulate_lightcurves(100, config=LightCurveConfig(survey="ztf"), seed=3)
    assert set(np.concatenate([lc.band for lc in ztf.lightcurves])) == set("gri")
    # seasons: a year of LSST leaves a gap of months in each light curve
    gaps = [np.diff(lc.mjd).max() for lc in out.lightcurves if len(lc) > 10]
    assert np.median(gaps) > 100


def test_pure_function_of_seed_and_index():
    a = simulate_lightcurves(2100, seed=11)
    b = simulate_lightcurves(30, seed=11, start=1010)  # straddles a block boundary
    for lc_a, lc_b in zip(a.lightcurves[1010:1040], b.lightcurves):
        assert lc_a.object_id == lc_b.object_id
        for col in ("mjd", "flux", "flux_err", "detected"):
            assert getattr(lc_a, col).tobytes() == getattr(lc_b, col).tobytes()
    assert a.truth.iloc[1010:1040].reset_index(drop=True).equals(b.truth)
    c = simulate_lightcurves(30, seed=12, start=1010)
    assert not np.array_equal(c.lightcurves[0].flux[:5], b.lightcurves[0].flux[:5])


@pytest.mark.parametrize("nondetections", ["forced", "upper_limit"])
def test_table_matches_the_records(nondetections):
    cfg = LightCurveConfig(nondetections=nondetections)
    out = simulate_lightcurves(50, config=cfg, seed=2)
    table, truth = simulate_lightcurve_table(50, config=cfg, seed=2)
    assert table.equals(lightcurves_to_table(out.lightcurves))
    assert truth.equals(out.truth)


def test_noise_follows_the_five_sigma_depth():
    cfg = LightCurveConfig(nondetections="upper_limit", depth_scatter=0.2)
    out = simulate_lightcurves(300, config=cfg, seed=5)
    depth = {"u": 23.9, "g": 25.0, "r": 24.7, "i": 24.0, "z": 23.3, "y": 22.1}
    band = np.concatenate([lc.band for lc in out.lightcurves])
    det = np.concatenate([lc.detected for lc in out.lightcurves])
    flux = np.concatenate([lc.flux for lc in out.lightcurves])
    err = np.concatenate([lc.flux_err for lc in out.lightcurves])
    assert np.all(np.isnan(flux[~det])) and np.all(np.isfinite(flux[det]))
    limit = flux_to_mag(5.0 * err[~det])
    for b, m5 in depth.items():
        sel = band[~det] == b
        assert sel.sum() > 50
        assert abs(float(np.median(limit[sel])) - m5) < 0.05


def test_class_frequencies_are_configurable():
    cfg = LightCurveConfig(class_weights=OBSERVED_CLASS_WEIGHTS)
    truth = simulate_lightcurve_table(4096, config=cfg, seed=1)[1]
    p = np.array([OBSERVED_CLASS_WEIGHTS[c] for c in CLASSES])
    p = p / p.sum()
    counts = truth["label"].value_counts().reindex(CLASSES, fill_value=0).to_numpy()
    expected = p * len(truth)
    assert np.all(np.abs(counts - expected) <= 4 * np.sqrt(expected) + 2)
    only = simulate_lightcurve_table(500, config=LightCurveConfig(class_weights={"KN": 1, "TDE": 1}), seed=1)[1]
    assert set(only["label"]) == {"KN", "TDE"}
    with pytest.raises(ValueError):
        LightCurveConfig(class_weights={"SNIax": 1.0})


def test_redshift_and_extinction():
    cfg = LightCurveConfig(class_weights={c: 1.0 for c in CLASSES})
    truth = simulate_lightcurve_table(2048, config=cfg, seed=4)[1]
    extragalactic = truth["label"].isin(EXTRAGALACTIC)
    assert (truth.loc[extragalactic, "redshift"] > 0).all() and (truth.loc[~extragalactic, "redshift"] == 0).all()
    assert (truth["mwebv"] >= 0).all()
    # galactic sources sit behind more dust than high-latitude extragalactic fields on average
    assert truth.loc[~extragalactic, "mwebv"].median() > truth.loc[extragalactic, "mwebv"].median()
    # farther supernovae are fainter: peak magnitude follows the distance modulus
    ia = truth[truth["label"] == "SNIa"]
    assert np.corrcoef(ia["peak_mag"], distance_modulus(ia["redshift"]))[0, 1] > 0.8


def _rise_time(lc, z):
    """Rest-frame days from explosion to peak, fitted on the data: a parabola at the peak, t^2 at the start."""
    sel = lc.band == "g"
    t, f, e = lc.mjd[sel], lc.flux[sel], lc.flux_err[sel]
    i = int(np.argmax(f))
    near = np.abs(t - t[i]) < 12
    if near.sum() < 5:
        return None
    c = np.polyfit(t[near] - t[i], f[near], 2, w=1 / e[near])
    if c[0] >= 0:
        return None
    t_max = t[i] - c[1] / (2 * c[0])
    f_max = np.polyval(c, t_max - t[i])
    early = (t < t_max) & (f < 0.4 * f_max) & (f > 0.05 * f_max)
    if early.sum() < 3:
        return None
    # fireball: sqrt(F) is linear in time, zero at explosion
    slope, icpt = np.polyfit(t[early], np.sqrt(f[early]), 1)
    t_exp = -icpt / slope
    return (t_max - t_exp) / (1 + z)


def test_snia_rise_time_is_about_18_days():
    # nightly ZTF-like g and r; only the nearby, bright ones are measured well enough
    cfg = LightCurveConfig(survey="ztf", class_weights={"SNIa": 1.0}, night_fraction=1.0, weather_loss=0.0)
    out = simulate_lightcurves(2000, config=cfg, seed=8)
    rises = []
    for lc, z, peak in zip(out.lightcurves, out.truth["redshift"], out.truth["peak_mag"]):
        if peak < 18.0:
            r = _rise_time(lc, z)
            if r is not None:
                rises.append(r)
    assert len(rises) >= 10
    assert 15.0 <= np.median(rises) <= 20.0


def test_rr_lyrae_periods_recovered_in_range():
    cfg = LightCurveConfig(survey="ztf", class_weights={"RRLyrae": 1.0})
    out = simulate_lightcurves(20, config=cfg, seed=6)
    truth = out.truth
    assert truth["period"].between(0.2, 1.0).all()
    hits = 0
    freq = np.linspace(0.8, 5.5, 20000)
    for lc, period in zip(out.lightcurves, truth["period"]):
        sel = lc.band == "r"
        power = LombScargle(lc.mjd[sel], lc.flux[sel], lc.flux_err[sel]).power(freq)
        best = 1 / freq[np.argmax(power)]
        assert 0.2 <= best <= 1.0 or abs(best / period - 1) > 0.01
        hits += abs(best / period - 1) < 0.01
    assert hits >= 16


def test_agn_structure_function_slope():
    # LSST depth: the photometric noise is well below the variability at lags of days
    cfg = LightCurveConfig(class_weights={"AGN": 1.0})
    out = simulate_lightcurves(400, config=cfg, seed=9)
    lags, d2, e2 = [], [], []
    for lc, mean_mag in zip(out.lightcurves, out.truth["peak_mag"]):
        if mean_mag > 21.5:
            continue
        sel = (lc.band == "r") & (lc.flux > 0)
        mag, err = flux_to_mag(lc.flux[sel], lc.flux_err[sel])
        t = lc.mjd[sel]
        i, j = np.triu_indices(len(t), 1)
        lags.append(np.abs(t[j] - t[i]))
        d2.append((mag[j] - mag[i]) ** 2)
        e2.append(err[i] ** 2 + err[j] ** 2)
    lags, d2, e2 = map(np.concatenate, (lags, d2, e2))
    edges = np.geomspace(1, 30, 6)
    centres, sf = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (lags >= lo) & (lags < hi)
        sf.append(math.sqrt(d2[sel].mean() - e2[sel].mean()))
        centres.append(math.sqrt(lo * hi))
    slope = np.polyfit(np.log10(centres), np.log10(sf), 1)[0]
    # a damped random walk: SF ~ dt^0.5 well below the damping time (hundreds of days)
    assert 0.35 < slope < 0.65


def test_bad_input_is_refused():
    with pytest.raises(InvalidInputError):
        simulate_lightcurves(-1)
    with pytest.raises(InvalidInputError):
        simulate_lightcurves(3, config={"survey": "ztf"})
    with pytest.raises(ValueError):
        LightCurveConfig(survey="panstarrs")
    assert simulate_lightcurves(0).lightcurves == []
