"""The rare-event + anomaly model: a real small fit, pickling, MLflow round trip, the scorer stage, bad alerts.

Every model here is really fitted (a few hundred simulated ZTF light curves,
one encoder, a few epochs: about a second); nothing is mocked.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from astroray.errors import InvalidInputError
from astroray.records import Alert, LightCurve

SMALL = {"n_objects": 420, "members": 1, "epochs": 3, "episodes": 20, "hidden": (64,), "embedding_dim": 16,
         "anomaly": {"n_estimators": 50, "lof_components": 5}}


def _simulate(n, seed, survey="ztf"):
    from astroray.datasets import LightCurveConfig, simulate_lightcurves

    return simulate_lightcurves(n, config=LightCurveConfig(survey=survey, nondetections="upper_limit"),
                                seed=seed).lightcurves


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Millisecond steps: one thread (several spin against each other on a busy 2-core machine)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def fitted(one_torch_thread):
    from astroray.models.rare_events import RareEventTrainConfig, fit_rare_event_model

    cfg = RareEventTrainConfig(**SMALL, seed=0)
    return fit_rare_event_model(_simulate(cfg.n_objects, 0), config=cfg)


@pytest.fixture(scope="module")
def unseen():
    return _simulate(120, 100)


def _assert_same(a, b):
    assert a.classes == b.classes
    np.testing.assert_array_equal(a.object_ids, b.object_ids)
    np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-6, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(a.open_set_score, b.open_set_score, rtol=1e-6, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(a.anomaly_score, b.anomaly_score, rtol=1e-6, atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(a.none_of_these, b.none_of_these)
    assert list(a.predicted) == list(b.predicted)


def test_fit_scores_every_light_curve_in_order(fitted, unseen):
    scores = fitted.run(unseen)
    n, k = len(unseen), len(fitted.classes)
    assert k == 14 and scores.probabilities.shape == (n, k)
    assert [str(x) for x in scores.object_ids] == [lc.object_id for lc in unseen]
    ok = scores.predicted != None
    # a light curve of nothing but upper limits has no usable point: NaN scores, not an error
    usable = np.array([np.isfinite(lc.flux).any() for lc in unseen])
    np.testing.assert_array_equal(ok, usable)
    assert ok.sum() > n // 2 and np.isnan(scores.anomaly_score[~ok]).all()
    np.testing.assert_allclose(scores.probabilities[ok].sum(axis=1), 1.0, rtol=1e-6)
    assert np.all((scores.anomaly_score[ok] >= 0) & (scores.anomaly_score[ok] <= 1))
    assert np.all(np.isfinite(scores.open_set_score[ok]))
    assert np.isfinite(fitted.open_set_threshold)
    # better than chance (1/14) on objects it never saw, from a one-second fit
    labels = np.array([lc.label for lc in unseen])
    assert np.mean(scores.predicted[ok] == labels[ok]) > 0.3
    assert set(scores.to_pandas().columns) >= {"object_id", "predicted", "anomaly_score", "p_SNIa"}


def test_pickle_round_trip_gives_identical_scores(fitted, unseen):
    clone = pickle.loads(pickle.dumps(fitted))
    _assert_same(fitted.run(unseen), clone.run(unseen))


def test_log_register_load_round_trip_and_scorer(fitted, unseen, tmp_path):
    import pandas as pd

    from astroray.models.rare_events import (
        RareEventScorer,
        load_rare_event_model,
        log_rare_event_model,
    )
    from astroray.testing.rare_events import register_small_rare_event_model
    from astroray.tracking import register_champion, setup_mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow = setup_mlflow("rare-test", uri=uri)
    with mlflow.start_run() as run:
        info = log_rare_event_model(mlflow, fitted, metadata={"note": "test"})
    version = register_champion(info.model_uri, "astroray-protonet", uri=uri)
    loaded, meta = load_rare_event_model("models:/astroray-protonet@champion", tracking_uri=uri)
    assert meta["version"] == version == 1 and meta["run_id"] == run.info.run_id
    assert meta["metadata"]["classes"] == list(fitted.classes) and meta["metadata"]["note"] == "test"
    expected = fitted.run(unseen)
    _assert_same(expected, loaded.run(unseen))

    scorer = RareEventScorer({"tracking_uri": uri, "threads": 1})
    got = scorer.run(unseen)
    _assert_same(expected, got)
    assert got.model == {"name": "astroray-protonet", "version": 1, "run_id": run.info.run_id,
                         "uri": "models:/astroray-protonet@champion"}
    assert scorer.reload_if_moved() is False

    # MLflow's own view: a DataFrame of points in, one row per object out
    points = pd.DataFrame([{"object_id": lc.object_id, "mjd": t, "band": b, "flux": f, "flux_err": e,
                            "detected": d} for lc in unseen[:20]
                           for t, b, f, e, d in zip(lc.mjd, lc.band, lc.flux, lc.flux_err, lc.detected)])
    table = mlflow.pyfunc.load_model("models:/astroray-protonet/1").predict(points)
    scored = np.array([len(lc) > 0 for lc in unseen[:20]])
    assert table["object_id"].tolist() == [lc.object_id for lc in unseen[:20] if len(lc)]
    np.testing.assert_allclose(table["anomaly_score"].to_numpy(), expected.anomaly_score[:20][scored],
                               rtol=1e-6, equal_nan=True)

    # the champion moves: the scorer swaps to the new version
    new = register_small_rare_event_model(tracking_uri=uri, seed=1)
    assert new == 2
    assert scorer.reload_if_moved() is True and scorer.version == 2
    assert scorer.run(unseen[:3]).model["version"] == 2


def test_k_shot_one_fits_and_k_larger_than_the_support_is_refused():
    from astroray.models.rare_events import RareEventTrainConfig, fit_rare_event_model

    lcs = _simulate(150, 3)
    tiny = {**SMALL, "epochs": 1, "episodes": 5, "anomaly": {"n_estimators": 20, "lof_components": 3,
                                                             "n_neighbors": 5}}
    one = fit_rare_event_model(lcs, config=RareEventTrainConfig(**tiny, k_shot=1))
    scores = one.run(lcs[:10])
    # prototypes from one object each; the open-set threshold still comes from the held-back objects
    assert np.isfinite(one.open_set_threshold)
    ok = scores.predicted != None
    assert ok.any() and np.all(np.isfinite(scores.anomaly_score[ok]))
    with pytest.raises(InvalidInputError, match="k_shot=500"):
        fit_rare_event_model(lcs, config=RareEventTrainConfig(**tiny, k_shot=500))
    with pytest.raises(InvalidInputError, match="no label"):
        fit_rare_event_model(lcs[:20], config=RareEventTrainConfig(**tiny), labels=[None] * 20)


def _alert(alert_id, object_id, mjd, flux, history: LightCurve):
    return Alert(alert_id=alert_id, object_id=object_id, survey="ztf", mjd=mjd, ra=10.0, dec=20.0, band="r",
                 flux=flux, flux_err=200.0, history=history)


def test_alerts_with_empty_or_upper_limit_histories_score_without_failing_the_batch(fitted, unseen):
    lc = next(x for x in unseen if x.n_detections >= 5)
    t_last = float(lc.mjd[lc.detected][-1])
    limits = LightCurve("ZTFlimits", [t_last - 20, t_last - 10, t_last - 5], ["g", "r", "g"],
                        [np.nan, np.nan, np.nan], [300.0, 280.0, 310.0], [False, False, False])
    empty = LightCurve("ZTFempty", [], [], [], [], [])
    alerts = [
        _alert("a1", lc.object_id, t_last + 1, float(np.nanmax(lc.flux)), lc.select(lc.mjd <= t_last)),
        _alert("a2", "ZTFempty", t_last, np.nan, empty),              # no usable point at all
        _alert("a3", "ZTFlimits", t_last, 5000.0, limits),             # history of upper limits (NaN flux)
        _alert("a4", "ZTFnan", float("nan"), 5000.0, empty),           # a broken candidate time
    ]
    scores = fitted.run(alerts)
    assert list(scores.alert_ids) == ["a1", "a2", "a3", "a4"]
    assert list(scores.object_ids) == [lc.object_id, "ZTFempty", "ZTFlimits", "ZTFnan"]
    assert scores.predicted[0] is not None and scores.predicted[2] is not None
    assert np.isfinite(scores.anomaly_score[[0, 2]]).all() and np.isfinite(scores.open_set_score[[0, 2]]).all()
    for i in (1, 3):
        assert scores.predicted[i] is None and not scores.none_of_these[i]
        assert np.isnan(scores.anomaly_score[i]) and np.isnan(scores.open_set_score[i])
        assert np.isnan(scores.probabilities[i]).all()
    empty_scores = fitted.run([])
    assert len(empty_scores) == 0 and empty_scores.probabilities.shape == (0, 14)


def test_real_ztf_alerts_score_in_order(fitted, shared_data):
    from astroray.io import read_alerts

    folder = shared_data / "alerts" / "fink" / "datatest"
    alerts = [a for p in sorted(folder.glob("*.parquet")) for a in read_alerts(p, cutouts=False)]
    assert len(alerts) > 50
    scores = fitted.run(alerts)
    assert list(scores.alert_ids) == [str(a.alert_id) for a in alerts]
    ok = scores.predicted != None
    assert ok.all()  # every real alert has at least its own candidate
    assert np.all((scores.anomaly_score >= 0) & (scores.anomaly_score <= 1))


def test_held_out_class_scores_more_anomalous_than_known_ones():
    from astroray.eval import roc_auc
    from astroray.models.rare_events import RareEventTrainConfig, fit_rare_event_model

    # M-dwarf flares (one fast spike on a flat star) against the 13 other classes, in a one-second fit:
    # this fit (seeds 0-9, held-out test objects of seed + 100): the gap of mean anomaly scores was 0.22-0.42,
    # the AUROC 0.84-0.98 (seed 2: 0.39 and 0.96)
    held = "MdwarfFlare"
    cfg = RareEventTrainConfig(**SMALL, seed=2)
    model = fit_rare_event_model([lc for lc in _simulate(420, 2) if lc.label != held], config=cfg)
    assert held not in model.classes
    test = _simulate(280, 102)
    scores = model.run(test)
    ok = np.isfinite(scores.anomaly_score)
    unknown = np.array([lc.label == held for lc in test])[ok]
    a = scores.anomaly_score[ok]
    assert unknown.sum() >= 10
    assert a[unknown].mean() - a[~unknown].mean() > 0.15
    assert roc_auc(unknown, a) > 0.8
