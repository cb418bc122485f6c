"""Ray Tune over the training backbone: Optuna proposes, ASHA stops the weak, MLflow keeps every trial.

Search spaces come from YAML (:class:`SearchSpace`): each key is a dotted
path into the job's config (``model.base_width``, ``train.batch_size``,
``model.lr``) and each value one of::

    {type: loguniform, low: 1e-4, high: 1e-2}
    {type: uniform, low: 0.0, high: 0.3}
    {type: randint, low: 8, high: 33}          # high excluded
    {type: choice, values: [8, 16]}

Each trial (Ray Train V2 inside Tune: the trial function builds and fits
the same ``TorchTrainer`` as :func:`astroray.ray.train.fit`, and Tune hears
its reports through ``TuneReportCallback``) runs as its own MLflow run,
nested under the sweep's parent run (``mlflow.parentRunId``).

Models that do not train on Ray Train (the spaCy NER) give :func:`run_sweep`
a plain function instead (``trainable=``): each trial calls it with the
merged config and a ``report(metrics, step)`` that logs to the trial's
MLflow run and reports to Tune; ``max_t`` bounds its reports for ASHA.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from astroray.config import AstrorayConfig, astroray_home

__all__ = ["Distribution", "SearchSpace", "SweepConfig", "SweepResult", "to_tune_space", "apply_overrides",
           "run_sweep"]


class Distribution(BaseModel):
    """One hyperparameter's distribution (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["loguniform", "uniform", "randint", "choice"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _complete(self):
        if self.type == "choice":
            if not self.values:
                raise ValueError("a choice needs a non-empty list of values")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"{self.type} needs low < high, got low={self.low}, high={self.high}")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError("loguniform needs low > 0")
        return self


SearchSpace = dict[str, Distribution]


def to_tune_space(space: SearchSpace) -> dict:
    """The search space as Ray Tune's sample domains, keyed by the dotted paths."""
    from ray import tune

    out = {}
    for key, d in space.items():
        if d.type == "loguniform":
            out[key] = tune.loguniform(d.low, d.high)
        elif d.type == "uniform":
            out[key] = tune.uniform(d.low, d.high)
        elif d.type == "randint":
            out[key] = tune.randint(int(d.low), int(d.high))
        else:
            out[key] = tune.choice(list(d.values))
    return out


def apply_overrides(config: dict, flat: dict) -> dict:
    """``config`` with each dotted ``path: value`` of ``flat`` set (a deep copy)."""
    import copy

    out = copy.deepcopy(config)
    for path, value in flat.items():
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


class SweepConfig(AstrorayConfig):
    """How a sweep runs (the ``sweep:`` section of a ``configs/tune_*.yaml``).

    Attributes
    ----------
    metric, mode : str
        What the trials report and which way is better (``val_auc``, ``max``).
    num_samples : int
        Trials.
    max_concurrent_trials : int
        Trials at once (each holds its training workers' CPUs).
    grace_period, reduction_factor : int
        ASHA: epochs before a trial may be stopped; the fraction kept at each rung.
    search_space : dict
        Dotted config path -> :class:`Distribution`.
    """

    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    num_samples: int = Field(default=8, ge=1)
    max_concurrent_trials: int = Field(default=1, ge=1)
    grace_period: int = Field(default=1, ge=1)
    reduction_factor: int = Field(default=2, ge=2)
    seed: int = 0
    search_space: dict[str, Distribution] = Field(default_factory=dict)


@dataclass
class SweepResult:
    best_config: dict
    """The best trial's overrides (dotted paths)."""
    best_metrics: dict
    best_checkpoint: str | None
    trials: list[dict]
    """Every trial: overrides, last metrics, status, MLflow run id."""
    parent_run_id: str | None


def _trial_run(config: dict, overrides: dict):
    """``(client, run_id, trial_name)``: this trial's MLflow run, under the sweep's, with its overrides as params."""
    import mlflow
    import ray.tune

    from astroray.tracking import flatten_params

    client = mlflow.MlflowClient(tracking_uri=config["_tracking_uri"])
    trial_name = ray.tune.get_context().get_trial_name()
    run = client.create_run(config["_experiment_id"], run_name=trial_name,
                            tags={"mlflow.parentRunId": config["_parent_run_id"], "astroray.sweep_trial": trial_name})
    for key, value in flatten_params(overrides).items():
        client.log_param(run.info.run_id, key, value)
    return client, run.info.run_id, trial_name


def _finish_on_success(client, run_id: str, work) -> None:
    """Run ``work()`` and mark the trial's run FINISHED if it returns or Tune ends it.

    Only success is written here. A failure is marked by run_sweep from Tune's own result: a thread that Tune has
    stopped can still raise after run_sweep has closed its run, and would overwrite FINISHED with FAILED.
    """
    try:
        work()
    except SystemExit:  # Tune ends a trial it has heard enough from (ASHA, max_t) by exiting its thread
        client.set_terminated(run_id, status="FINISHED")
        raise
    client.set_terminated(run_id, status="FINISHED")


def _trial(config: dict, static: dict) -> None:
    """A Tune trial: fit the model with this trial's overrides, as its own MLflow run under the sweep's."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from astroray.ray.train import TrainConfig, build_trainer

    config = dict(config, **static)
    base = config["_base"]
    overrides = {k: v for k, v in config.items() if not k.startswith("_")}
    merged = apply_overrides(base, overrides)
    train = TrainConfig(**merged["train"])
    client, run_id, trial_name = _trial_run(config, overrides)

    def fit() -> None:
        trainer = build_trainer(config["_model_kind"], merged["model"], config["_datasets"], train,
                                name=f"{config['_name']}-{trial_name}", mlflow_run_id=run_id,
                                tracking_uri=config["_tracking_uri"], callbacks=[TuneReportCallback()])
        result = trainer.fit()
        if result.error is not None:
            raise result.error

    _finish_on_success(client, run_id, fit)


def _function_trial(config: dict, static: dict) -> None:
    """A Tune trial of a plain function trainable (``static["_trainable"]``), as its own MLflow run under the sweep's.

    The trainable is called as ``trainable(merged_config, datasets=..., report=report)``; ``report(metrics, step)``
    logs the metrics to the trial's run and reports them to Tune (where ASHA may end the trial).
    """
    import time

    import mlflow
    import ray.tune

    config = dict(config, **static)
    overrides = {k: v for k, v in config.items() if not k.startswith("_")}
    merged = apply_overrides(config["_base"], overrides)
    client, run_id, _ = _trial_run(config, overrides)

    def report(metrics: dict, step: int) -> None:
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        stamp = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[mlflow.entities.Metric(k, v, stamp, int(step)) for k, v in values.items()])
        ray.tune.report(values)

    _finish_on_success(client, run_id,
                       lambda: config["_trainable"](merged, datasets=config["_datasets"], report=report))


def _error_text(error: BaseException) -> str:
    """What went wrong in a trial, in one line: the trial's own exception, not Ray's wrapper and traceback."""
    cause = getattr(error, "cause", None) or error  # RayTaskError carries the trial's exception as .cause
    return f"{type(cause).__name__}: {cause}"[:300]


def run_sweep(model_kind: str, base_config: dict, datasets: dict, sweep: SweepConfig, *, name: str,
              experiment: str, tracking_uri: str | None = None, storage_path: str | None = None,
              trainable=None, max_t: int | None = None) -> SweepResult:
    """Tune ``base_config`` (``{"model": {...}, "train": {...}}``) over ``sweep.search_space`` with Optuna + ASHA.

    Every trial is an MLflow run nested under one parent run of
    ``experiment``; the best trial by ``sweep.metric`` is returned.

    ``trainable``: a picklable function ``trainable(config, *, datasets, report)`` run in each trial
    instead of the TorchTrainer fit of ``model_kind`` (``base_config`` then needs no ``train`` section);
    ``max_t``: the most reports a trial makes (ASHA's horizon; default ``base_config["train"]["max_epochs"]``).
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from astroray.ray.runtime import ensure_ray
    from astroray.tracking import flatten_params, setup_mlflow, tracking_uri as _uri

    ensure_ray()
    mlflow = setup_mlflow(experiment, uri=tracking_uri)
    uri = _uri(tracking_uri)
    experiment_id = mlflow.get_experiment_by_name(experiment).experiment_id
    space = to_tune_space(sweep.search_space)
    max_epochs = int(max_t) if max_t is not None else int(base_config["train"]["max_epochs"])
    with mlflow.start_run(run_name=name) as parent:
        mlflow.log_params(flatten_params({"sweep": sweep.model_dump(mode="json"), **base_config}))
        mlflow.set_tag("astroray.model", model_kind)
        static = dict(_base=base_config, _model_kind=model_kind, _datasets=datasets, _name=name,
                      _tracking_uri=uri, _experiment_id=experiment_id, _parent_run_id=parent.info.run_id)
        if trainable is not None:
            static["_trainable"] = trainable
        tuner = tune.Tuner(
            tune.with_parameters(_trial if trainable is None else _function_trial, static=static), param_space=space,
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(metric=sweep.metric, mode=sweep.mode, seed=sweep.seed),
                scheduler=ASHAScheduler(metric=sweep.metric, mode=sweep.mode, max_t=max_epochs,
                                        grace_period=min(sweep.grace_period, max_epochs),
                                        reduction_factor=sweep.reduction_factor, time_attr="training_iteration"),
                num_samples=sweep.num_samples, max_concurrent_trials=sweep.max_concurrent_trials),
            run_config=tune.RunConfig(name=name, storage_path=storage_path or str(astroray_home() / "ray_results"),
                                      failure_config=tune.FailureConfig(max_failures=0)))
        grid = tuner.fit()
        # Tune ends a trial as soon as the scheduler has heard enough, before the trial function returns:
        # its MLflow run is closed here, by trial name.
        client = mlflow.MlflowClient(tracking_uri=uri)
        runs = {r.info.run_name: r for r in client.search_runs(
            [experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")}
        trials = []
        for r in grid:
            overrides = {k: v for k, v in (r.config or {}).items() if not k.startswith("_")}
            trial_name = (r.metrics or {}).get("trial_id")
            run = next((v for k, v in runs.items() if trial_name and k.endswith(str(trial_name))), None)
            wanted = "FINISHED" if r.error is None else "FAILED"
            if run is not None and run.info.status != wanted:  # still RUNNING, or marked by a thread Tune ended
                client.set_terminated(run.info.run_id, status=wanted)
            trials.append({"overrides": overrides, "metrics": {k: v for k, v in (r.metrics or {}).items()
                                                               if isinstance(v, (int, float))},
                           "error": None if r.error is None else _error_text(r.error),
                           "mlflow_run_id": None if run is None else run.info.run_id})
            if run is not None:
                runs.pop(run.info.run_name, None)
        for run in runs.values():  # a trial that failed before it reported has no trial_id to match by
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, status="FAILED")
        ok = [t for t in trials if t["error"] is None and sweep.metric in t["metrics"]]
        if not ok:
            raise RuntimeError(f"no trial of the sweep {name!r} reported {sweep.metric}: "
                               f"{[t['error'] for t in trials]}")
        best_result = grid.get_best_result(metric=sweep.metric, mode=sweep.mode, filter_nan_and_inf=True)
        best = {k: v for k, v in best_result.config.items() if not k.startswith("_")}
        best_metrics = {k: v for k, v in best_result.metrics.items() if isinstance(v, (int, float))}
        mlflow.log_params({f"best.{k}": v for k, v in flatten_params(best).items()})
        mlflow.log_metrics({f"best_{sweep.metric}": float(best_metrics[sweep.metric]), "n_trials": len(trials)})
        ckpt = best_metrics.get("checkpoint_path") or best_result.metrics.get("checkpoint_path")
        return SweepResult(best, best_metrics, ckpt, trials, parent.info.run_id)
