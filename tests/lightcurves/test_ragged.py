"""Cleaning rules of RaggedLightCurves: bands, bad points, upper limits, duplicates, order, empties."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from astroray.config import config_from_dict
from astroray.datasets import LightCurveConfig, simulate_lightcurve_table, simulate_lightcurves
from astroray.errors import ConfigError, InvalidInputError, InvalidLightCurveError
from astroray.lightcurves import (
    PreprocessConfig,
    RaggedLightCurves,
    as_ragged,
    ragged_from_alerts,
    ragged_from_lightcurves,
    ragged_from_table,
    resolve_bands,
)
from astroray.records import LightCurve, lightcurves_to_table


def lc(object_id="obj", mjd=(1.0, 2.0, 3.0), band="ggg", flux=(10.0, 20.0, 30.0), err=(1.0, 1.0, 1.0),
       detected=None, label=None):
    detected = [True] * len(mjd) if detected is None else detected
    return LightCurve(object_id, list(mjd), list(band), list(flux), list(err), detected, label=label)


def test_band_vocabularies():
    assert resolve_bands("lsst") == tuple("ugrizy")
    assert resolve_bands("ZTF") == ("g", "r", "i")
    assert resolve_bands(["g", "R"]) == ("g", "r")
    with pytest.raises(InvalidInputError, match="repeats"):
        resolve_bands("grg")
    with pytest.raises(ConfigError, match="bands: .*unknown band 'x'"):
        config_from_dict(PreprocessConfig, {"bands": "gx"})
    assert PreprocessConfig(bands="ztf").bands == ("g", "r", "i")


def test_flat_arrays_offsets_and_band_indices():
    data = ragged_from_lightcurves([lc("a", band="grg"), lc("b", mjd=(5.0,), band="y", flux=(1.0,), err=(0.5,))],
                                   PreprocessConfig(bands="lsst"))
    assert list(data.object_ids) == ["a", "b"] and data.offsets.tolist() == [0, 3, 4]
    assert data.band.tolist() == [1, 2, 1, 5]
    assert data.lightcurve(0).band.tolist() == ["g", "r", "g"]
    np.testing.assert_array_equal(data.lightcurve(1).flux, [1.0])


def test_unknown_bands_dropped_or_raise():
    curve = lc(band="gug")
    data = ragged_from_lightcurves([curve], PreprocessConfig(bands="ztf"))
    assert data.n_points == 2 and data.n_dropped.tolist() == [1]
    with pytest.raises(InvalidLightCurveError, match=r"obj: 1 point\(s\) in bands outside"):
        ragged_from_lightcurves([curve], PreprocessConfig(bands="ztf", unknown_bands="raise"))


@pytest.mark.parametrize("flux, err, detected", [
    ((10.0, np.nan, 30.0), (1.0, 1.0, 1.0), [True, True, True]),     # a detection without flux
    ((10.0, 20.0, 30.0), (1.0, -1.0, 1.0), [True, True, True]),      # negative error
    ((10.0, 20.0, 30.0), (1.0, 0.0, 1.0), [True, True, True]),       # zero error
    ((10.0, np.inf, 30.0), (1.0, 1.0, 1.0), [True, True, True]),     # infinite flux
    ((10.0, 20.0, 30.0), (1.0, np.nan, 1.0), [True, False, True]),   # NaN error
    ((10.0, np.nan, 30.0), (1.0, np.inf, 1.0), [True, False, True]),  # limit with an infinite error
])
def test_invalid_points_dropped_or_raise(flux, err, detected):
    curve = lc(flux=flux, err=err, detected=detected)
    data = ragged_from_lightcurves([curve])
    assert data.n_points == 2 and data.n_dropped.tolist() == [1]
    np.testing.assert_array_equal(data.mjd, [1.0, 3.0])
    with pytest.raises(InvalidLightCurveError, match="obj: 1 point"):
        ragged_from_lightcurves([curve], PreprocessConfig(invalid_points="raise"))


def test_upper_limits_dropped_or_zero_flux():
    curve = lc(flux=(np.nan, 20.0, 30.0), err=(2.0, 1.0, 1.0), detected=[False, True, True])
    assert ragged_from_lightcurves([curve]).n_points == 2
    # an upper limit is not an invalid point, even under invalid_points="raise"
    kept = ragged_from_lightcurves([curve], PreprocessConfig(upper_limits="zero_flux", invalid_points="raise"))
    np.testing.assert_array_equal(kept.flux, [0.0, 20.0, 30.0])
    np.testing.assert_array_equal(kept.flux_err, [2.0, 1.0, 1.0])
    np.testing.assert_array_equal(kept.detected, [False, True, True])
    assert ragged_from_lightcurves([curve], PreprocessConfig(detections_only=True)).n_points == 2


def test_all_nan_and_empty_light_curves_are_empty_rows():
    all_nan = lc("nan", flux=(np.nan,) * 3, err=(np.nan,) * 3, detected=[True] * 3)
    empty = LightCurve("empty", [], [], [], [], [])
    data = ragged_from_lightcurves([all_nan, empty, lc("ok")])
    assert data.lengths.tolist() == [0, 0, 3] and data.n_dropped.tolist() == [3, 0, 0]
    assert np.isnan(data.first_detection_mjd()[:2]).all() and data.first_detection_mjd()[2] == 1.0
    with pytest.raises(InvalidLightCurveError, match="nan: 3 point"):
        ragged_from_lightcurves([all_nan], PreprocessConfig(invalid_points="raise"))
    assert len(ragged_from_lightcurves([])) == 0


def test_duplicated_epochs_keep_merge_raise():
    curve = lc(mjd=(1.0, 2.0, 2.0, 3.0), band="gggg", flux=(1.0, 10.0, 30.0, 5.0), err=(1.0, 1.0, 2.0, 1.0),
               detected=[True, False, True, True])
    assert ragged_from_lightcurves([curve]).n_points == 4
    merged = ragged_from_lightcurves([curve], PreprocessConfig(duplicates="merge"))
    w = np.array([1.0, 0.25])
    np.testing.assert_allclose(merged.flux, [1.0, (10.0 * w[0] + 30.0 * w[1]) / w.sum(), 5.0])
    np.testing.assert_allclose(merged.flux_err, [1.0, 1 / np.sqrt(w.sum()), 1.0])
    assert merged.detected.tolist() == [True, True, True] and merged.n_dropped.tolist() == [1]
    with pytest.raises(InvalidLightCurveError, match="repeat an earlier point"):
        ragged_from_lightcurves([curve], PreprocessConfig(duplicates="raise"))
    # the same MJD in two bands is not a duplicate
    two_bands = lc(mjd=(2.0, 2.0), band="gr", flux=(1.0, 2.0), err=(1.0, 1.0))
    ragged_from_lightcurves([two_bands], PreprocessConfig(duplicates="raise"))


def test_unsorted_table_rows_are_put_in_time_order():
    table = pa.table({"object_id": ["x"], "mjd": [[3.0, 1.0, 2.0, 1.0]], "band": [["g", "r", "g", "g"]],
                      "flux": [[3.0, 1.0, 2.0, 0.5]], "flux_err": [[1.0] * 4], "detected": [[True] * 4]})
    data = ragged_from_table(table, PreprocessConfig(bands="ztf"))
    np.testing.assert_array_equal(data.mjd, [1.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(data.flux, [0.5, 1.0, 2.0, 3.0])  # same time: band order (g before r)
    bad = table.set_column(4, "flux_err", pa.array([[1.0] * 3]))
    with pytest.raises(InvalidLightCurveError, match="flux_err has 3 values but mjd has 4"):
        ragged_from_table(bad)
    with pytest.raises(InvalidLightCurveError, match="lacks column"):
        ragged_from_table(table.drop_columns(["detected"]))
    two = pa.table({"object_id": ["ok", "bad"], "mjd": [[1.0], [2.0]], "band": [["g"], ["q"]],
                    "flux": [[1.0], [1.0]], "flux_err": [[1.0], [1.0]], "detected": [[True], [True]]})
    with pytest.raises(InvalidLightCurveError, match="^bad: unknown band 'q'"):
        ragged_from_table(two)


def test_table_path_equals_record_path_with_upper_limits():
    cfg = LightCurveConfig(nondetections="upper_limit")
    records = simulate_lightcurves(60, config=cfg, seed=5).lightcurves
    table, _ = simulate_lightcurve_table(60, config=cfg, seed=5)
    for rule in ("drop", "zero_flux"):
        pcfg = PreprocessConfig(upper_limits=rule)
        a, b = ragged_from_lightcurves(records, pcfg), ragged_from_table(table, pcfg)
        for name in ("offsets", "mjd", "band", "flux", "flux_err", "detected", "n_dropped"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert list(a.labels) == list(b.labels) and list(a.object_ids) == list(b.object_ids)
    # and through pandas
    c = ragged_from_table(lightcurves_to_table(records).to_pandas())
    np.testing.assert_array_equal(c.flux, ragged_from_lightcurves(records).flux)


def test_take_and_as_ragged():
    records = simulate_lightcurves(20, seed=1).lightcurves
    data = ragged_from_lightcurves(records)
    sub = data.take([5, 2, 5])
    assert list(sub.object_ids) == [records[5].object_id, records[2].object_id, records[5].object_id]
    for i, j in enumerate([5, 2, 5]):
        np.testing.assert_array_equal(sub.lightcurve(i).flux, data.lightcurve(j).flux)
    assert as_ragged(data) is data
    with pytest.raises(InvalidLightCurveError, match="config says"):
        as_ragged(data, PreprocessConfig(bands="ztf"))
    with pytest.raises(InvalidLightCurveError, match="cannot make light curves from a int"):
        as_ragged(3)
    single = as_ragged(records[0])
    assert isinstance(single, RaggedLightCurves) and len(single) == 1


def test_alert_rows_are_histories_as_they_arrived(shared_data):
    from astroray.io import read_alerts

    alerts = read_alerts(shared_data / "lightcurves/elasticc/classId=111/part-0-0.parquet")[:40]
    data = ragged_from_alerts(alerts)
    assert len(data) == len(alerts) and list(data.alert_ids) == [a.alert_id for a in alerts]
    for i, alert in enumerate(alerts):
        row = data.lightcurve(i)
        assert row.object_id == alert.object_id
        # the alert's own candidate is the last point and nothing later is there
        assert row.mjd.max() == pytest.approx(alert.mjd, abs=1e-6)
        hit = np.flatnonzero((np.abs(row.mjd - alert.mjd) < 1e-6) & (row.band == alert.band))
        assert hit.size == 1 and row.flux[hit[0]] == pytest.approx(alert.flux)
    np.testing.assert_array_equal(as_ragged(alerts).offsets, data.offsets)
    per_object = ragged_from_alerts(alerts, per="object")
    assert len(per_object) == len({a.object_id for a in alerts})
