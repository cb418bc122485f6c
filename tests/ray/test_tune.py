"""A sweep's MLflow record: every trial's run ends with the status Tune gave the trial."""

from pathlib import Path


def test_a_failed_trial_is_marked_failed_and_the_others_finished(ray_session, astroray_home, monkeypatch):
    import mlflow

    from astroray.ray.tune import SweepConfig, run_sweep

    uri = f"sqlite:///{astroray_home / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    marker = str(astroray_home / "first-trial-ran")

    def trainable(config, *, datasets, report):  # a closure: Ray pickles it by value
        if not Path(marker).exists():  # the first trial fails before it reports; the rest succeed
            Path(marker).write_text("x")
            raise ValueError("this trial fails on purpose")
        for step in range(2):
            report({"score": config["x"] * (step + 1)}, step)

    sweep = SweepConfig(metric="score", mode="max", num_samples=3, max_concurrent_trials=1,
                        search_space={"x": {"type": "uniform", "low": 0.0, "high": 1.0}})
    result = run_sweep("toy", {"x": 0.0}, {}, sweep, name="tune_failure_test", experiment="astroray-tune-test",
                       trainable=trainable, max_t=2, storage_path=str(astroray_home / "ray_results"))
    errors = [t["error"] for t in result.trials]
    assert len(errors) == 3 and sum(e is not None for e in errors) == 1, errors
    assert "fails on purpose" in next(e for e in errors if e is not None)
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("astroray-tune-test")
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert sorted(r.info.status for r in children) == ["FAILED", "FINISHED", "FINISHED"]
    assert result.best_metrics["score"] > 0
