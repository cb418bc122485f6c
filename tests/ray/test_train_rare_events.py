"""jobs/train_rare_events.py end to end on a tiny config: fitted, checked, logged, registered, champion set.

The job needs no Ray (the ProtoNet's steps are milliseconds; no Ray Train), so
it runs here in-process through its own ``main`` with a scratch ``ASTRORAY_HOME``.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

TINY = """
held_out_class: MdwarfFlare
top_anomalies: 4
model:
  n_objects: 300
  members: 1
  epochs: 2
  episodes: 10
  hidden: [32]
  embedding_dim: 8
  anomaly: {n_estimators: 20, lof_components: 3, n_neighbors: 5}
"""


def _job():
    spec = importlib.util.spec_from_file_location("train_rare_events_job", REPO / "jobs" / "train_rare_events.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def home(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("ASTRORAY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "home"
    torch.set_num_threads(previous)


def test_job_fits_checks_logs_and_registers_the_champion(home, tmp_path, capsys):
    import mlflow

    from astroray.models.rare_events import RareEventScorer

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    assert _job().main(["--config", str(config)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["registered_version"] == 1 and len(summary["classes"]) == 14
    assert 0 <= summary["held_out_anomaly_auroc"] <= 1 and summary["held_out_n_test"] > 0

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    mv = client.get_model_version_by_alias("astroray-protonet", "champion")
    assert int(mv.version) == 1 and mv.run_id == summary["run_id"]
    run = client.get_run(summary["run_id"])
    assert run.data.params["model.n_objects"] == "300" and "test_accuracy" in run.data.metrics
    assert "held_out_open_set_auroc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"], "plots")}
    assert artifacts == {"plots/top_anomalies.png", "plots/top_anomalies_held_out.png"}
    # the registered model is what the scorer loads, from the same (default) store
    scorer = RareEventScorer()
    assert scorer.version == 1
    from astroray.datasets import LightCurveConfig, simulate_lightcurves

    lcs = simulate_lightcurves(5, config=LightCurveConfig(survey="ztf", nondetections="upper_limit"), seed=9).lightcurves
    scores = scorer.run(lcs)
    assert scores.model["version"] == 1 and np.isfinite(scores.anomaly_score[scores.predicted != None]).all()


def test_job_refuses_a_bad_config_with_exit_2(home, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  n_objectz: 10\n")
    assert _job().main(["--config", str(config)]) == 2
    assert "n_objectz" in capsys.readouterr().err
    config.write_text("held_out_class: Unicorn\nmodel:\n  n_objects: 60\n  members: 1\n  epochs: 1\n"
                      "  episodes: 2\n  anomaly: {n_estimators: 10, n_neighbors: 3, lof_components: 2}\n")
    assert _job().main(["--config", str(config), "--no-register"]) == 2
    assert "Unicorn" in capsys.readouterr().err
