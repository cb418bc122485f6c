"""The training backbone for real: Ray Train (2 workers), MLflow, the registry, Tune, a killed worker, the scorer.

Small: 8 simulated 384 px pairs, one or two epochs of a few batches.  What is
checked is the path (data -> workers -> checkpoints -> MLflow -> registry ->
scorer), not the model's quality (benchmarks/bench_realbogus.py measures that).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

TINY_STAMPS = {"n_pairs": 8, "seed": 3, "splits": {"train": 0.5, "val": 0.25, "test": 0.25},
               "simulation": {"shape": [384, 384], "artifact_mask_fraction": 0.2,
                              "changes": {"cosmic_ray": 60, "hot_pixel": 30, "dipole": 15, "transient_hostless": 30}}}


@pytest.fixture(scope="module")
def home(tmp_path_factory, ray_session):
    path = tmp_path_factory.mktemp("train_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASTRORAY_HOME", str(path))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield path


@pytest.fixture(scope="module")
def stamps(home):
    from astroray.ray.stamps import StampJobConfig, make_stamps

    out = home / "stamps"
    balance = make_stamps(StampJobConfig(**TINY_STAMPS), out, progress=False)
    assert set(balance["splits"]) == {"train", "val", "test"}
    for split in balance["splits"].values():  # both labels everywhere, or the AUCs are undefined
        assert split["real"] > 0 and split["bogus"] > 0
    return out


def _config(stamps, **train):
    from astroray.ray.train_realbogus import TrainRealBogusConfig

    return TrainRealBogusConfig(data=str(stamps), experiment="rb-test", gallery_size=4,
                                train={"num_workers": 2, "max_epochs": 1, "batch_size": 16, "monitor": "val_auc",
                                       "monitor_mode": "max", **train})


@pytest.fixture(scope="module")
def trained(stamps):
    from astroray.ray.train_realbogus import train_realbogus

    return train_realbogus(_config(stamps), progress=False)


def test_two_workers_train_log_to_mlflow_and_register_the_champion(trained, home):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    run = client.get_run(trained["run_id"])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(trained["run_id"], "val_loss")  # per epoch, from rank 0
    assert [m.step for m in history] == [0]
    assert "model.base_width" in run.data.params and "train.num_workers" in run.data.params
    assert {"test_auc_unet", "test_auc_ensemble", "threshold"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(trained["run_id"], "plots")}
    assert {"plots/roc.png", "plots/confusion_matrix.png", "plots/worst_scored.png"} <= artifacts
    champion = client.get_model_version_by_alias("astroray-realbogus", "champion")
    assert int(champion.version) == trained["registered_version"] and champion.run_id == trained["run_id"]


def test_the_scorer_loads_the_champion_by_alias_and_scores(trained, stamps):
    import pyarrow.parquet as pq

    from astroray.datasets.stamps import stamp_arrays
    from astroray.models.scoring import StampScorer

    scorer = StampScorer({"model_uri": "models:/astroray-realbogus@champion"})
    assert scorer.version == trained["registered_version"]
    assert scorer.threshold == pytest.approx(trained["threshold"])
    table = pq.read_table(sorted(Path(stamps).glob("split=test/*.parquet"))[0])
    arrays = stamp_arrays(table)
    out = scorer({k: arrays[k] for k in ("science", "reference", "difference")})
    assert out.scores.shape == (table.num_rows,) and np.all((out.scores >= 0) & (out.scores <= 1))
    assert out.model["version"] == trained["registered_version"]


def test_scorer_bad_input_is_a_clear_error_or_a_defined_answer(trained):
    from astroray.errors import InvalidInputError
    from astroray.models.scoring import StampScorer

    scorer = StampScorer({})
    empty = scorer(np.zeros((0, 3, 63, 63), np.float32))
    assert empty.scores.shape == (0,) and empty.real.shape == (0,)
    nan = np.full((2, 3, 63, 63), np.nan, np.float32)
    nan[1] = np.random.default_rng(0).normal(size=(3, 63, 63))
    out = scorer(nan)  # nothing to judge in the first: NaN, and not "real"
    assert np.isnan(out.scores[0]) and np.isfinite(out.scores[1]) and not out.real[0]
    for bad, match in ((np.zeros((2, 2, 63, 63)), "channels"), (np.zeros((2, 3, 63, 40)), "shape"),
                       (np.zeros((2, 3, 99, 99)), "exceed"), ({"science": np.zeros((1, 63, 63))}, "lack")):
        with pytest.raises(InvalidInputError, match=match):
            scorer(bad)
    with pytest.raises(Exception, match="cannot load"):
        StampScorer({"model_uri": "models:/no-such-model@champion"})


def test_a_killed_worker_resumes_from_its_checkpoint_and_finishes(stamps, tmp_path):
    """Rank 1 kills its own process once, in its second epoch: the group restarts from epoch 0's checkpoint."""
    from astroray.ray.train import TrainConfig, fit
    from astroray.ray.train_realbogus import training_datasets

    marker = tmp_path / "killed"
    result = fit("realbogus", {}, training_datasets(stamps),
                 TrainConfig(num_workers=2, max_epochs=2, batch_size=16, max_failures=1,
                             storage_path=str(tmp_path / "runs")),
                 name="killed-worker", extra_worker_callbacks=[_killer_factory(str(marker), str(tmp_path / "runs"))])
    assert marker.exists()  # the kill happened
    assert sorted(int(h["epoch"]) for h in result.history) == [0, 1] and result.metrics["epoch"] == 1
    # epochs begun after the kill: the restarted workers went on from epoch 1 (epoch 0's checkpoint), not from 0
    after = [line.split() for line in Path(str(marker) + ".log").read_text().splitlines() if line.endswith("after")]
    assert after and all(epoch == "1" for _, epoch, _ in after)
    assert Path(result.checkpoint_path).is_file()


def _killer_factory(marker: str, runs: str):
    """Rank 1 kills its own process (SIGKILL) once, mid-way through epoch 1, once epoch 0's checkpoint is stored."""
    def make():
        import glob
        import time

        import pytorch_lightning as pl

        class KillOnce(pl.Callback):
            def on_train_epoch_start(self, trainer, pl_module):
                with open(marker + ".log", "a") as log:  # rank, epoch, before/after the kill
                    log.write(f"{trainer.global_rank} {trainer.current_epoch} "
                              f"{'after' if os.path.exists(marker) else 'before'}\n")

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if trainer.current_epoch == 1 and trainer.global_rank == 1 and not os.path.exists(marker):
                    deadline = time.time() + 60
                    while not glob.glob(f"{runs}/*/checkpoint_*/checkpoint.ckpt") and time.time() < deadline:
                        time.sleep(0.5)
                    time.sleep(3)  # the controller registers the report
                    Path(marker).write_text("killed")
                    os.kill(os.getpid(), 9)

        return KillOnce()

    return make


def test_a_two_trial_sweep_finishes_with_both_trials_in_mlflow(stamps, home):
    import mlflow

    from astroray.ray.tune import SweepConfig, run_sweep
    from astroray.ray.train_realbogus import training_datasets

    base = {"model": {}, "train": {"num_workers": 1, "max_epochs": 1, "batch_size": 16,
                                   "monitor": "val_auc", "monitor_mode": "max"}}
    sweep = SweepConfig(metric="val_loss", mode="min", num_samples=2,
                        search_space={"model.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
                                      "model.base_width": {"type": "choice", "values": [8, 16]}})
    result = run_sweep("realbogus", base, training_datasets(stamps), sweep, name="tiny-sweep", experiment="rb-sweep")
    assert len(result.trials) == 2 and all(t["error"] is None for t in result.trials)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("rb-sweep")
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children), [r.info.status for r in children]
    assert all("val_loss" in r.data.metrics and "model.lr" in r.data.params for r in children)
