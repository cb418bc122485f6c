"""Padded arrays and masks: round trip, normalisation, time origin, length limits, empties."""
from __future__ import annotations

import numpy as np
import pytest

from astroray.datasets import LightCurveConfig, simulate_lightcurves
from astroray.lightcurves import (
    LightCurveTensorizer,
    TensorConfig,
    object_scale,
    ragged_from_lightcurves,
    truncate,
)
from astroray.records import LightCurve


@pytest.fixture(scope="module")
def records():
    return simulate_lightcurves(120, seed=9).lightcurves


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-6)])
def test_round_trip_reproduces_the_points(records, dtype, rtol):
    cfg = TensorConfig(dtype=dtype, max_length=10_000)
    data = ragged_from_lightcurves(records, cfg)
    batch = LightCurveTensorizer(cfg).run(records)
    assert batch.time.dtype == np.dtype(dtype) and batch.time.shape == (len(records), data.lengths.max())
    back = batch.to_ragged()
    np.testing.assert_array_equal(back.offsets, data.offsets)
    np.testing.assert_array_equal(back.band, data.band)
    np.testing.assert_array_equal(back.detected, data.detected)
    np.testing.assert_allclose(back.flux, data.flux, rtol=rtol, atol=0)
    np.testing.assert_allclose(back.flux_err, data.flux_err, rtol=rtol)
    np.testing.assert_allclose(back.mjd, data.mjd, rtol=0, atol=2e-3 if dtype == "float32" else 1e-9)
    # padding: zeros, the pad band index, mask False
    pad = ~batch.mask
    assert pad.any() and batch.band_pad_index == 6
    assert (batch.band[pad] == 6).all() and (batch.flux[pad] == 0).all() and (batch.time[pad] == 0).all()
    np.testing.assert_array_equal(batch.padding_mask, pad)
    np.testing.assert_array_equal(batch.mask.sum(axis=1), batch.lengths)


def test_scale_time_origin_and_errors_scaled_alike(records):
    batch = LightCurveTensorizer().run(records)
    for i, lc in enumerate(records):
        det = lc.detected if lc.detected.any() else np.ones(len(lc), bool)
        assert batch.scale[i] == pytest.approx(np.abs(lc.flux[det]).max())
        t0 = lc.mjd[lc.detected][0] if lc.detected.any() else lc.mjd[0]
        assert batch.t0[i] == t0
        n = batch.lengths[i]
        np.testing.assert_allclose(batch.flux[i, :n] * batch.scale[i], lc.flux[:n], rtol=1e-6)
        np.testing.assert_allclose(batch.flux_err[i, :n] / batch.flux[i, :n], lc.flux_err[:n] / lc.flux[:n],
                                   rtol=1e-5)
    assert np.abs(batch.flux[batch.mask & batch.detected]).max() <= 1.0 + 1e-6
    np.testing.assert_allclose(batch.log_scale, np.log10(batch.scale), rtol=1e-6)


def test_quantile_scale_and_fallbacks():
    lc = LightCurve("q", np.arange(5.0), ["g"] * 5, [1.0, 2.0, 3.0, 4.0, 100.0], [1.0] * 5, [True] * 5)
    zero = LightCurve("z", [0.0, 1.0], ["g", "g"], [0.0, 0.0], [2.0, 4.0], [False, False])
    data = ragged_from_lightcurves([lc, zero])
    np.testing.assert_allclose(object_scale(data, method="quantile", quantile=0.5), [3.0, 3.0])
    np.testing.assert_allclose(object_scale(data), [100.0, 3.0])  # all-zero flux: median error
    cfg = TensorConfig(scale="quantile", scale_quantile=0.75)
    assert LightCurveTensorizer(cfg).run([lc]).scale[0] == pytest.approx(np.quantile([1, 2, 3, 4, 100], 0.75))
    assert LightCurveTensorizer(TensorConfig(scale="none")).run([lc]).flux[0, 4] == 100.0


def test_truncation_before_normalisation_leaks_nothing(records):
    cut = truncate(ragged_from_lightcurves(records), days=15.0)
    batch = LightCurveTensorizer().run(cut)
    full = LightCurveTensorizer().run(records)
    for i in range(len(records)):
        part = cut.lightcurve(i)
        det = part.detected if part.detected.any() else np.ones(len(part), bool)
        if len(part):
            assert batch.scale[i] == pytest.approx(np.abs(part.flux[det]).max())
            assert batch.time[i, :batch.lengths[i]].max() <= 15.0 + 1e-4
    assert (batch.scale <= full.scale + 1e-9).all() and (batch.scale < full.scale).any()


@pytest.mark.parametrize("keep", ["first", "last", "uniform"])
def test_max_length_keeps_documented_points(records, keep):
    L = 16
    cfg = TensorConfig(max_length=L, keep=keep, dtype="float64")
    batch = LightCurveTensorizer(cfg).run(records)
    data = ragged_from_lightcurves(records, cfg)
    assert batch.time.shape[1] == L
    for i in range(len(records)):
        lc = data.lightcurve(i)
        n = len(lc)
        if n <= L:
            assert batch.lengths[i] == n
            continue
        idx = {"first": np.arange(L), "last": np.arange(n - L, n),
               "uniform": np.floor(np.arange(L) * (n - 1) / (L - 1) + 0.5).astype(int)}[keep]
        assert len(set(idx)) == L and idx[0] == (0 if keep != "last" else n - L)
        np.testing.assert_allclose(batch.time[i] + batch.t0[i], lc.mjd[idx])
        assert batch.full_lengths[i] == n
    padded = LightCurveTensorizer(TensorConfig(max_length=500, pad_to="max_length")).run(records[:3])
    assert padded.time.shape == (3, 500)


def test_empty_single_point_single_band_rows():
    empty = LightCurve("empty", [], [], [], [], [])
    all_nan = LightCurve("nan", [1.0, 2.0], ["g", "g"], [np.nan, np.nan], [np.nan, np.nan], [True, True])
    single = LightCurve("one", [5.0], ["r"], [-40.0], [4.0], [True])
    batch = LightCurveTensorizer(TensorConfig(bands="ztf")).run([empty, all_nan, single])
    assert batch.lengths.tolist() == [0, 0, 1] and batch.time.shape == (3, 1)
    assert not batch.mask[:2].any() and batch.mask[2, 0]
    assert np.isnan(batch.t0[:2]).all() and np.isnan(batch.scale[:2]).all()
    assert batch.log_scale[:2].tolist() == [0.0, 0.0] and np.isfinite(batch.flux).all()
    assert batch.time[2, 0] == 0.0 and batch.flux[2, 0] == -1.0 and batch.flux_err[2, 0] == pytest.approx(0.1)
    assert batch.band[2, 0] == 1 and batch.band[0, 0] == batch.band_pad_index == 3
    nothing = LightCurveTensorizer().run([empty])
    assert nothing.time.shape == (1, 0)


def test_to_torch_dtypes_and_ztf_bands():
    torch = pytest.importorskip("torch")
    recs = simulate_lightcurves(10, config=LightCurveConfig(survey="ztf"), seed=2).lightcurves
    t = LightCurveTensorizer(TensorConfig(bands="ztf")).run(recs).to_torch()
    assert t["time"].dtype == torch.float32 and t["band"].dtype == torch.int64
    assert t["padding_mask"].dtype == torch.bool and (t["padding_mask"] == ~t["mask"]).all()
    assert int(t["band"][t["mask"]].max()) <= 2 and int(t["lengths"].sum()) == sum(len(r) for r in recs)
