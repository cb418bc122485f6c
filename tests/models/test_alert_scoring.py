"""AlertScorer: every real alert in ../shared/data/alerts gets a row with the scores its inputs allow.

The session's scratch MLflow store with the three model kinds registered as training registers them
(an untrained U-Net and transformer, a small fitted rare-event model): the scores mean little, but every path
from the registry to a score is the real one.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from astroray.errors import ConfigError, InvalidInputError


@pytest.fixture(scope="module")
def store(alert_models):
    """The session's store of alert models (nothing here registers a version)."""
    return alert_models


@pytest.fixture(scope="module")
def scorer(store):
    from astroray.models.alert_scoring import AlertScorer

    return AlertScorer({"tracking_uri": store["uri"], "threads": 1})


@pytest.fixture(scope="module")
def real_alerts(alert_files):
    from astroray.io import read_alerts

    out = []
    for path in alert_files:
        out += read_alerts(path)
    return out


def test_every_real_alert_gets_one_row_with_what_its_inputs_allow(scorer, real_alerts):
    scores = scorer.run(real_alerts)
    cols = scores.columns
    assert len(scores) == len(real_alerts) > 900
    assert cols["alert_id"] == [str(a.alert_id) for a in real_alerts]  # input order, nothing dropped
    surveys = set(cols["survey"])
    assert {"ztf", "lsst"} <= surveys
    with_cutouts = np.array([a.cutout_difference is not None and a.cutout_science is not None for a in real_alerts])
    rb = np.array([np.nan if v is None else v for v in cols["rb"]])
    # every alert with its three cutouts is scored (ZTF's 63 px and Rubin's smaller cutouts fitted to the model)
    assert np.isfinite(rb[with_cutouts]).all() and ((rb[with_cutouts] >= 0) & (rb[with_cutouts] <= 1)).all()
    # alerts without cutouts (ELAsTiCC) have no rb, and say why
    for i in np.flatnonzero(~with_cutouts):
        assert cols["rb"][i] is None and "rb: no" in cols["notes"][i]
    n_class = sum(c is not None for c in cols["class"])
    assert n_class >= 0.95 * len(scores)
    for probs, best, p in zip(cols["class_probabilities"], cols["class"], cols["class_probability"]):
        if best is not None:
            assert math.isclose(sum(probs.values()), 1.0, rel_tol=1e-5) and probs[best] == p == max(probs.values())
    anomaly = [v for v in cols["anomaly_score"] if v is not None]
    assert len(anomaly) >= 0.95 * len(scores) and all(0 <= v <= 1 for v in anomaly)
    assert all(v is not None for v, c in zip(cols["open_set_score"], cols["rare_class"]) if c is not None)
    assert scores.models["realbogus"]["version"] == 1 and scores.models["classifier"]["name"] == "astroray-lc-transformer"
    assert set(scores.models) == {"realbogus", "classifier", "rare_events"}
    # ZTF's own scores ride along for comparison
    assert any(s and "drb" in s for s in cols["survey_scores"])


def test_an_alert_with_nothing_to_classify_does_not_sink_the_batch(scorer, real_alerts):
    import dataclasses

    from astroray.records import LightCurve

    good = [a for a in real_alerts if a.survey == "ztf"][:5]
    empty = dataclasses.replace(good[0], alert_id="empty-one", flux=float("nan"), flux_err=float("nan"),
                                history=LightCurve(good[0].object_id, [], [], [], [], []))
    scores = scorer.run([*good, empty])
    assert len(scores) == 6
    assert all(c is not None for c in scores.columns["class"][:5])
    assert scores.columns["class"][5] is None and scores.columns["anomaly_score"][5] is None
    assert "class: no usable point" in scores.columns["notes"][5]
    assert scores.columns["rb"][5] is not None  # its cutouts are still scored
    table = scores.to_table()
    assert table.num_rows == 6 and table.column("alert_id").to_pylist()[-1] == "empty-one"


def test_sections_set_to_none_are_not_loaded_and_their_columns_stay_null(store, real_alerts):
    from astroray.models.alert_scoring import AlertScorer

    only_rb = AlertScorer({"tracking_uri": store["uri"], "classifier": None, "rare_events": None})
    assert only_rb.classifier is None and only_rb.rare_events is None
    scores = only_rb.run(real_alerts[:20])
    assert set(scores.columns["class"]) == {None} and set(scores.columns["anomaly_score"]) == {None}
    assert set(scores.models) == {"realbogus"}
    assert AlertScorer({"tracking_uri": store["uri"], "realbogus": None, "classifier": None,
                        "rare_events": None}).run([]).to_table().num_rows == 0


def test_missing_models_and_wrong_input_are_clear_errors(store, tmp_path, scorer):
    from astroray.models.alert_scoring import AlertScorer

    with pytest.raises(ConfigError, match="cannot load models:/astroray-nothing@champion"):
        AlertScorer({"tracking_uri": store["uri"], "classifier": {"model_uri": "models:/astroray-nothing@champion"}})
    with pytest.raises(ConfigError, match=r"section 'realbogus':\s+nope: unknown key"):
        AlertScorer({"realbogus": {"nope": 1}})
    with pytest.raises(ConfigError, match="relative"):
        AlertScorer({"tracking_uri": "sqlite:///relative.db", "classifier": None, "rare_events": None})
    with pytest.raises(InvalidInputError, match="Alert records"):
        scorer.run(["not an alert"])


def test_pinned_config_names_the_versions(store):
    from astroray.models.alert_scoring import AlertScorerConfig

    cfg = AlertScorerConfig(tracking_uri=store["uri"]).pinned({"realbogus": 3, "classifier": None})
    assert cfg.section("realbogus").model_uri == "models:/astroray-realbogus/3"
    assert cfg.section("classifier").model_uri == "models:/astroray-lc-transformer@champion"
    assert cfg.section("realbogus").tracking_uri == store["uri"]


def test_scoring_never_imports_lightning():
    """The scorers load no LightningModule: Lightning's 3-5 s import stays out of actors, replicas and the CLI,
    while the training modules are still reached by their old names."""
    import subprocess
    import sys

    code = ("import sys, astroray.models.alert_scoring, astroray.models.scoring, astroray.models.lc_transformer, "
            "astroray.models.rare_events, astroray.models.realbogus, astroray.models.protonet; "
            "assert 'pytorch_lightning' not in sys.modules, 'scoring imported Lightning'; "
            "from astroray.models.lc_transformer import LightCurveModule; "
            "from astroray.models.lightning_modules import LightCurveModule as direct; "
            "assert LightCurveModule is direct and 'pytorch_lightning' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], timeout=180, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
