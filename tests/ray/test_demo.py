"""The demo end to end on the shared Ray: outputs, quarantine, truth recovery, real/bogus scores, MLflow.

The real/bogus model is a tiny untrained U-Net registered as the champion in the demo's own store
beforehand (training one is what the demo does without it, and takes minutes): what is checked is
that every candidate is scored by the champion and that the summary's precision and recall are those
of the catalog's ``rb`` against the truth.
"""
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from astroray.records import table_to_alerts


def test_demo_writes_alerts_catalog_png_and_accounts_for_every_input(ray_session, astroray_home, monkeypatch):
    from astroray.ray.demo import DemoConfig, run_demo
    from astroray.testing.realbogus import register_untrained_realbogus

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the demo's own store, $ASTRORAY_HOME/mlflow.db
    version = register_untrained_realbogus()
    cfg = DemoConfig(n_pairs=2, n_corrupt=1, num_actors=1, simulation={"shape": (1024, 1024)}, seed=7,
                     train_if_missing=None)
    summary = run_demo(cfg, progress=False, verbose=False)
    out = astroray_home / "demo"
    assert summary.output_dir == out

    manifest = pd.read_parquet(out / "manifest.parquet")
    assert len(manifest) == summary.n_inputs == 3
    assert sorted(manifest["status"]) == ["ok", "ok", "quarantined"]
    stages = [json.loads(v) for v in manifest.loc[manifest["status"] == "ok", "stage_ms"]]
    assert all({"background", "difference", "detect", "streaks", "alerts"} <= set(s) for s in stages)
    quarantine = pd.read_parquet(out / "quarantine.parquet")
    assert len(quarantine) == 1 and "truncated" in quarantine["reason"].iloc[0]

    alerts = table_to_alerts(pq.read_table(out / "alerts"))
    assert len(alerts) == summary.n_alerts > 0
    a = alerts[0]
    assert a.cutout_science.shape == a.cutout_reference.shape == a.cutout_difference.shape == (63, 63)
    assert np.isfinite(a.ra) and np.isfinite(a.dec) and a.band and a.flux_err > 0
    catalog = pd.read_parquet(out / "catalog")
    assert len(catalog) == summary.n_detections
    assert {"x", "y", "ra", "dec", "flux", "flux_err", "snr", "pair_id", "on_streak"} <= set(catalog.columns)
    assert "on_streak" in a.meta  # the alerts' meta_json

    # every candidate scored by the champion; the summary's precision and recall are the catalog's
    assert catalog["rb"].between(0, 1).all() and all(0 <= al.scores["rb"] <= 1 for al in alerts)
    assert a.meta["rb_model_version"] == version
    rb = summary.realbogus
    assert rb["version"] == version and rb["threshold"] == 0.5 and rb["n_scored"] == len(catalog)
    truth = pd.read_parquet(out / "inputs" / "truth.parquet")
    real = np.zeros(len(catalog), bool)
    for i, row in enumerate(catalog.itertuples()):
        t = truth[(truth["pair_id"] == row.pair_id) & truth["real"]]
        real[i] = bool(np.any(np.hypot(t["x"] - row.x, t["y"] - row.y) <= cfg.match_radius))
    called = catalog["rb"].to_numpy() >= 0.5
    assert rb["n_real"] == real.sum() > 0 and rb["n_scored_real"] == called.sum()
    assert rb["recall"] == pytest.approx((real & called).sum() / real.sum())
    if called.any():
        assert rb["precision"] == pytest.approx((real & called).sum() / called.sum())
    assert "precision" in summary.to_text() and f"astroray-realbogus v{version}" in summary.to_text()

    # truth: bright injected real changes are found (the full-size figure is in the demo's summary)
    assert summary.n_injected_bright > 5
    assert summary.recovered_fraction_bright >= 0.85
    assert (out / "overview.png").stat().st_size > 20_000

    import mlflow

    from astroray.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    runs = mlflow.search_runs(experiment_names=["astroray-demo"])
    assert len(runs) == 1
    assert runs["metrics.recovered_fraction_snr7"].iloc[0] == summary.recovered_fraction_bright
    assert runs["metrics.rb_recall"].iloc[0] == pytest.approx(rb["recall"])


def test_the_realbogus_switch_and_a_missing_model(astroray_home, monkeypatch):
    """``realbogus: false`` is the fast path (no model); a missing model without training is an error saying
    what to do, raised before any pair is simulated."""
    from astroray.errors import ConfigError
    from astroray.ray.demo import DemoConfig, run_demo

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert DemoConfig(realbogus=False).realbogus is None and DemoConfig(realbogus=None).realbogus is None
    assert DemoConfig().realbogus.model_uri == "models:/astroray-realbogus@champion"
    with pytest.raises(ConfigError, match="realbogus: null"):
        run_demo(DemoConfig(n_pairs=1, train_if_missing=None, track=False), progress=False, verbose=False)
