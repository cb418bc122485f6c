"""The gradient-boosted-trees baseline, and the labelled sets it and the transformer are checked on."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from astroray.datasets import LightCurveConfig, simulate_lightcurves
from astroray.errors import ConfigError, InvalidInputError, NotFittedError
from astroray.lightcurves import (
    FeatureConfig,
    FeatureExtractor,
    elasticc_set,
    simulated_set,
)
from astroray.lightcurves.tasks import ELASTICC_HOST_COLUMNS
from astroray.models.gbt import FeatureGBTClassifier, GBTConfig
from astroray.records import LightCurve

TWO = ("SNIa", "RRLyrae")


@pytest.fixture(scope="module")
def two_class():
    # objects an alert stream would hold (3 detections or more)
    lcs = [lc for lc in simulate_lightcurves(900, seed=21).lightcurves if lc.label in TWO and lc.n_detections >= 3]
    lcs = lcs[:100]
    return lcs, np.array([lc.label for lc in lcs])


def _config(**kw):
    return GBTConfig(classes=TWO, features=FeatureConfig(groups=("stats", "shape")), max_iter=40,
                     min_samples_leaf=5, **kw)


def test_fit_predict_and_save_load_round_trip(two_class, tmp_path):
    lcs, labels = two_class
    train, test = slice(0, 70), slice(70, None)
    gbt = FeatureGBTClassifier(_config()).fit(lcs[train], labels[train])
    proba = gbt.predict_proba(lcs[test])
    assert proba.shape == (len(labels[test]), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # a supernova and a pulsating star are easy apart from their features
    assert np.mean(gbt.predict(lcs[test]) == labels[test]) >= 0.9
    folder = gbt.save(tmp_path / "gbt")
    loaded = FeatureGBTClassifier.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(lcs[test]), proba)
    assert loaded.config == gbt.config and loaded.n_iter == gbt.n_iter


def test_feature_tables_ids_and_validation_data(two_class):
    lcs, labels = two_class
    gbt = FeatureGBTClassifier(_config())
    table = FeatureExtractor(gbt.config.features).run(lcs)
    ids = np.array([TWO.index(x) for x in labels])
    gbt.fit(table, ids, val_data=lcs[70:], val_labels=labels[70:])
    np.testing.assert_array_equal(gbt.predict_proba(table), gbt.predict_proba(lcs))
    wrong = FeatureExtractor(FeatureConfig(groups=("stats",))).run(lcs)
    with pytest.raises(InvalidInputError, match="columns differ"):
        gbt.predict_proba(wrong)


def test_edge_cases_get_an_answer_or_a_clear_error(two_class):
    lcs, labels = two_class
    gbt = FeatureGBTClassifier(_config()).fit(lcs, labels)
    odd = [
        LightCurve("empty", [], [], [], [], []),
        LightCurve("single", [1.0], ["r"], [100.0], [5.0], [True]),
        LightCurve("all_nan", [1.0, 2.0], ["g", "r"], [np.nan, np.nan], [np.nan, np.nan], [False, False]),
        LightCurve("unsorted", [3.0, 1.0, 2.0], ["g", "g", "g"], [1.0, 3.0, 2.0], [0.1] * 3, [True] * 3),
        LightCurve("duplicated", [1.0, 1.0, 2.0], ["g", "g", "g"], [1.0, 2.0, 3.0], [0.1] * 3, [True] * 3),
        LightCurve("single_band", np.arange(10.0), ["i"] * 10, np.arange(10.0) + 5, [0.5] * 10, [True] * 10),
    ]
    proba = gbt.predict_proba(odd)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    with pytest.raises(InvalidInputError, match="not in the class vocabulary"):
        FeatureGBTClassifier(_config()).fit(lcs, np.where(labels == "SNIa", "SNII", labels))
    with pytest.raises(InvalidInputError, match="expected"):
        FeatureGBTClassifier(_config()).fit(lcs, labels[:-1])
    with pytest.raises(InvalidInputError, match="fewer than 2 classes"):
        FeatureGBTClassifier(_config()).fit(lcs[:5], ["SNIa"] * 5)
    with pytest.raises(NotFittedError):
        FeatureGBTClassifier(_config()).predict_proba(lcs)
    with pytest.raises(ConfigError):
        from astroray.config import config_from_dict

        config_from_dict(GBTConfig, {"classes": ["a"]})
    with pytest.raises(InvalidInputError, match="not a saved"):
        FeatureGBTClassifier.load("/nonexistent/gbt")


def test_extra_columns_join_the_features(two_class):
    lcs, labels = two_class
    host_z = np.where(labels == "SNIa", 0.4, 0.0) + np.random.default_rng(0).normal(0, 0.01, len(labels))
    gbt = FeatureGBTClassifier(_config(extra_columns=("host_z",))).fit(lcs, labels, extra={"host_z": host_z})
    assert gbt.features(lcs, {"host_z": host_z}).shape[1] == len(gbt.feature_names) + 1
    proba = gbt.predict_proba(lcs, extra={"host_z": host_z})
    assert np.mean(np.asarray(TWO)[proba.argmax(1)] == labels) == 1.0
    with pytest.raises(InvalidInputError, match="reads extra column"):
        gbt.predict_proba(lcs)
    with pytest.raises(InvalidInputError, match="has shape"):
        gbt.predict_proba(lcs, extra={"host_z": host_z[:3]})
    with pytest.raises(InvalidInputError, match="without extra_columns"):
        FeatureGBTClassifier(_config()).fit(lcs, labels, extra={"host_z": host_z})


def test_load_warns_on_another_sklearn(two_class, tmp_path):
    import json

    lcs, labels = two_class
    folder = FeatureGBTClassifier(_config()).fit(lcs, labels).save(tmp_path / "g")
    meta = json.loads((folder / "gbt.json").read_text())
    meta["sklearn_version"] = "0.0"
    (folder / "gbt.json").write_text(json.dumps(meta))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        FeatureGBTClassifier.load(folder)
    assert any("scikit-learn 0.0" in str(w.message) for w in caught)


# --------------------------------------------------------------------------- the labelled sets


def test_simulated_set_splits_by_object_and_makes_rows():
    data = simulated_set(140, seed=2, config=LightCurveConfig(duration=100.0))
    assert set(data.split.tolist()) == {"train", "val", "test"}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(data.part(a).object_ids) & set(data.part(b).object_ids)
    rows = data.rows("test")
    assert rows.num_rows == int(np.sum(data.split == "test"))
    assert rows.column("label_id").to_pylist() == data.part("test").label_ids.tolist()


def test_elasticc_alerts_split_by_object_without_truth(shared_data):
    data = elasticc_set(shared_data / "lightcurves" / "elasticc", host_columns=ELASTICC_HOST_COLUMNS)
    assert data.classes == ("SNIa", "SNII") and data.data.alert_ids is not None
    # the alert's own diaObject measurements, missing values (-9, -999) as NaN; nothing else
    assert set(data.extra) == set(ELASTICC_HOST_COLUMNS)
    z = data.extra["hostgal_zphot"]
    assert np.isnan(z).mean() < 0.05 and np.nanmin(z) >= 0
    with pytest.raises(InvalidInputError, match="not alert measurements"):
        elasticc_set(shared_data / "lightcurves" / "elasticc", host_columns=("z_final",))
    assert len(data) > len(set(data.object_ids.tolist()))  # one row per alert, several alerts per object
    for name in ("val", "test"):
        assert not set(data.part("train").object_ids) & set(data.part(name).object_ids)
    # each row is one alert's history: it ends at that alert, and always holds at least the alert itself
    assert (data.n_detections >= 1).all()
    rows = data.rows("train")
    assert "alert_id" in rows.column_names
    assert not {"snana_truth", "fink_predictions", "GENTYPE"} & set(rows.column_names)
