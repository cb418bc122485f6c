"""Light-curve classification on Ray for real: Ray Train (2 workers), calibration, MLflow, the registry, Tune,
the ``classify lightcurves`` command on Ray Data, and the Serve deployment behind ``/classify``.

Tiny: 60 simulated objects of 3 classes, a transformer of a few thousand weights, one epoch of two batches.
What is checked is the path (data -> workers -> checkpoint -> calibration -> MLflow -> registry -> Ray Data /
Serve), not the model's quality (benchmarks/bench_lightcurves_models.py measures that).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TINY_MODEL = {"d_model": 8, "n_heads": 2, "n_layers": 1, "ff_dim": 16, "embedding_dim": 8, "n_frequencies": 4,
              "max_length": 48, "lr": 0.005}
SIMULATION = {"duration": 120.0, "class_weights": {"SNIa": 1.0, "RRLyrae": 1.0, "AGN": 1.0}}


@pytest.fixture(scope="module")
def home(tmp_path_factory, ray_session):
    path = tmp_path_factory.mktemp("lc_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASTRORAY_HOME", str(path))
        # explicit, and restored after: mlflow.set_tracking_uri() exports it into os.environ
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{path / 'mlflow.db'}")
        yield path


@pytest.fixture(scope="module")
def uri(home):
    return f"sqlite:///{home / 'mlflow.db'}"


def _config(home, **changes):
    from astroray.ray.train_lightcurves import TrainLightCurvesConfig

    options = {"data": str(home / "lcdata"), "experiment": "lc-test", "partial_days": [10.0],
               "dataset": {"n_objects": 60, "seed": 1, "simulation": SIMULATION}, "model": TINY_MODEL,
               "train": {"num_workers": 2, "max_epochs": 1, "batch_size": 8, "limit_train_batches": 2,
                         "storage_path": str(home / "ray_results")}}
    options.update(changes)
    return TrainLightCurvesConfig(**options)


@pytest.fixture(scope="module")
def trained(home):
    from astroray.ray.train_lightcurves import train_lightcurves

    return train_lightcurves(_config(home))


def test_two_workers_train_calibrate_log_and_register_the_champion(trained, home, uri):
    import mlflow
    import pyarrow.parquet as pq

    from astroray.ray.train_lightcurves import read_dataset_info, split_files

    info = read_dataset_info(home / "lcdata")  # the data folder was made from the dataset section, split by object
    assert len(info["classes"]) == 14 and info["source"] == "simulated"
    ids = {s: set(pq.read_table(split_files(home / "lcdata", s), columns=["object_id"]).column(0).to_pylist())
           for s in ("train", "val", "test")}
    assert all(ids.values()) and not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(trained["run_id"])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(trained["run_id"], "val_loss")] == [0]  # from rank 0
    assert "model.d_model" in run.data.params and run.data.params["train.num_workers"] == "2"
    metrics = run.data.metrics
    assert {"test_accuracy", "test_macro_f1", "test_ece_before", "test_ece_after", "temperature",
            "test_macro_f1_at_10d"} <= set(metrics)
    assert 0.05 <= metrics["temperature"] <= 20.0 and 0.0 <= metrics["test_ece_after"] <= 1.0
    artifacts = {a.path for a in client.list_artifacts(trained["run_id"], "plots")}
    assert {"plots/confusion_matrix.png", "plots/reliability.png", "plots/f1_vs_days.png"} <= artifacts
    champion = client.get_model_version_by_alias("astroray-lc-transformer", "champion")
    assert int(champion.version) == trained["registered_version"] and champion.run_id == trained["run_id"]


def test_the_champion_loads_by_alias_with_its_calibration(trained, uri):
    import torch

    from astroray.datasets import LightCurveConfig, simulate_lightcurves
    from astroray.models.lc_transformer import LightCurveClassifier, predict_rows

    clf = LightCurveClassifier({"model_uri": "models:/astroray-lc-transformer@champion", "tracking_uri": uri})
    assert clf.version == trained["registered_version"] and clf.calibrated
    assert float(clf.net.temperature) == pytest.approx(trained["temperature"])
    lcs = simulate_lightcurves(4, seed=11, config=LightCurveConfig(**SIMULATION)).lightcurves
    out = clf(lcs)
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1.0, rtol=1e-9)
    logits = predict_rows(clf.net, clf.rows(lcs), logits=True)  # the temperature is applied exactly once
    expected = torch.softmax(torch.as_tensor(logits) / trained["temperature"], dim=1).numpy()
    np.testing.assert_allclose(out.probabilities, expected, rtol=1e-5, atol=1e-7)


def _write_inputs(folder: Path) -> dict:
    """Two one-object CSVs, a Parquet of three light curves, a truncated Parquet, a README."""
    import pyarrow.parquet as pq

    from astroray.datasets import LightCurveConfig, simulate_lightcurves
    from astroray.records import lightcurves_to_table

    folder.mkdir()
    lcs = simulate_lightcurves(5, seed=21, config=LightCurveConfig(**SIMULATION)).lightcurves
    for lc in lcs[:2]:
        keep = np.isfinite(lc.flux)
        lines = ["time,flux,fluxerr,band"] + [f"{t:.17g},{f:.17g},{e:.17g},{b}" for t, f, e, b in
                                                  zip(lc.mjd[keep], lc.flux[keep], lc.flux_err[keep], lc.band[keep])]
        (folder / f"{lc.object_id}.csv").write_text("\n".join(lines) + "\n")
    (folder / "sub").mkdir()
    pq.write_table(lightcurves_to_table(lcs[2:]), folder / "sub" / "three.parquet")
    whole = (folder / "sub" / "three.parquet").read_bytes()
    (folder / "sub" / "cut.parquet").write_bytes(whole[: len(whole) // 2])
    (folder / "README.md").write_text("# not light curves\n")
    return {"lcs": lcs}


def test_classify_command_on_ray_data_accounts_for_every_file(trained, home, uri, tmp_path, capsys):
    import json

    import pyarrow.parquet as pq

    from astroray.cli import main
    from astroray.models.lc_transformer import LightCurveClassifier

    inputs = _write_inputs(tmp_path / "in")
    out = tmp_path / "out" / "classes.parquet"
    code = main(["classify", "lightcurves", "--model", "models:/astroray-lc-transformer@champion",
                 "--input", str(tmp_path / "in"), "--out", str(out), "--tracking-uri", uri, "--files-per-batch", "2",
                 "--actors", "1"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1  # one file quarantined
    assert summary["files"] == 5 and summary["files_ok"] == 3 and summary["files_quarantined"] == 1
    assert summary["files_skipped"] == 1 and summary["objects_classified"] == 5
    assert summary["model"]["version"] == trained["registered_version"]

    predictions = pq.read_table(out).to_pandas()
    classes = summary["classes"]
    p = predictions[[f"p_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-9)
    assert (predictions["model_version"] == trained["registered_version"]).all() and predictions["calibrated"].all()
    assert set(predictions["object_id"]) == {lc.object_id for lc in inputs["lcs"]}
    assert (predictions["class"] == np.asarray(classes)[p.argmax(axis=1)]).all()
    # the same answer as the classifier in this process (the Ray Data path adds nothing and loses nothing)
    local = LightCurveClassifier({"model_uri": "models:/astroray-lc-transformer@champion", "tracking_uri": uri})
    parquet_rows = predictions[predictions["path"].str.endswith("three.parquet")].set_index("object_id")
    expected = local(inputs["lcs"][2:])
    np.testing.assert_allclose(parquet_rows.loc[list(expected.object_ids), [f"p_{c}" for c in classes]].to_numpy(),
                               expected.probabilities, rtol=1e-5, atol=1e-7)

    manifest = pq.read_table(out.with_name("classes.manifest.parquet")).to_pandas().set_index("path")
    assert len(manifest) == 5  # every input accounted for
    status = {Path(k).name: v for k, v in manifest["status"].items()}
    assert status == {f"{inputs['lcs'][0].object_id}.csv": "ok", f"{inputs['lcs'][1].object_id}.csv": "ok",
                      "three.parquet": "ok", "cut.parquet": "quarantined", "README.md": "skipped"}
    quarantine = pq.read_table(out.with_name("classes.quarantine.parquet")).to_pandas()
    cut = quarantine[quarantine["path"].str.endswith("cut.parquet")]
    assert len(cut) == 1 and "parquet" in cut["reason"].iloc[0].lower()

    code = main(["classify", "lightcurves", "--input", str(tmp_path / "in"), "--out", str(out)])
    assert code == 2 and "exists" in capsys.readouterr().err  # outputs are never overwritten silently


def test_rrlyrae_models_fold_on_the_found_period_with_standardised_object_numbers():
    from astroray.lightcurves.tasks import RRLYRAE_CONTEXT
    from astroray.ray.train_lightcurves import TrainLightCurvesConfig, model_config

    cfg = TrainLightCurvesConfig(balance_classes=False)
    rr = model_config(cfg, Path("unread"), {"source": "rrlyrae", "classes": ["ab", "c"], "bands": list("ugriz")})
    assert rr["period_column"] == "period" and tuple(rr["context_columns"]) == RRLYRAE_CONTEXT
    assert rr["standardize_objects"] and not rr["truncate"]
    sim = model_config(cfg, Path("unread"), {"source": "simulated", "classes": ["SNIa", "SNII"], "bands": ["g"]})
    assert not sim["standardize_objects"] and sim["period_column"] is None
    # a config that says otherwise wins
    off = model_config(TrainLightCurvesConfig(balance_classes=False, model={"standardize_objects": False}),
                       Path("unread"), {"source": "rrlyrae", "classes": ["ab", "c"], "bands": list("ugriz")})
    assert not off["standardize_objects"]
