"""Train, calibrate and register the light-curve transformer: what ``jobs/train_lightcurves.py`` runs.

1. Data: a folder of labelled light-curve rows (``split=train|val|test/*.parquet``
   plus ``dataset.json``; :func:`~astroray.lightcurves.rows.ragged_rows` columns,
   ``label_id``), split by object.  When the folder is empty it is made first
   from the ``dataset`` section: the light-curve simulator's 14 classes
   (default), or a shared labelled set (RR Lyrae ab/c with periods found from
   the light curves, ELAsTiCC SN Ia/II alert by alert;
   :mod:`astroray.lightcurves.tasks`).
2. An MLflow run in the user's store: the flattened config as params.
3. Ray Train fits :class:`~astroray.models.lc_transformer.LightCurveModule`
   (:func:`astroray.ray.train.fit`), every epoch's metrics logged to the run,
   the best checkpoint kept.
4. The best model's validation logits fit a temperature (temperature scaling,
   :class:`~astroray.eval.TemperatureScaling`); the model keeps it, so it
   returns calibrated probabilities.  Test metrics (accuracy, macro-F1,
   per-class F1, ECE and NLL before and after calibration, macro-F1 of the
   test light curves cut at days since first detection), a confusion matrix and
   a reliability diagram go to the run.
5. The model (PyTorch flavour; classes, calibration and how to compute its
   context inputs in its metadata) is registered as ``astroray-lc-transformer``
   with the alias ``champion``.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from astroray.config import AstrorayConfig, astroray_home
from astroray.datasets import LightCurveConfig
from astroray.ray.train import TrainConfig
from astroray.ray.tune import SweepConfig

__all__ = ["LightCurveDataConfig", "TrainLightCurvesConfig", "TuneLightCurvesConfig", "prepare_lightcurve_data",
           "read_dataset_info", "split_files", "training_datasets", "model_config", "train_lightcurves",
           "evaluate_and_register", "tune_lightcurves"]

MODEL_KIND = "lc_transformer"
DATASET_INFO = "dataset.json"
SPLITS = ("train", "val", "test")


class LightCurveDataConfig(AstrorayConfig):
    """Where the labelled light curves come from when the data folder is empty (the ``dataset`` section).

    Attributes
    ----------
    source : {"simulated", "rrlyrae", "elasticc"}
        The simulator's 14 classes, or a shared labelled set.
    path : str or None
        The shared set's folder (``.../lightcurves/rrlyrae`` or ``.../lightcurves/elasticc``).
    n_objects, seed, simulation
        Simulated objects, their seed and the simulator's settings.
    per : {"alert", "object"}
        ELAsTiCC: one row per alert (its history as it arrived) or per object.
    fractions : dict or None
        Split of the objects (default 0.7 / 0.15 / 0.15), stratified by class.
    rows_per_file : int
        Rows per Parquet part file (Ray Data reads files in parallel).
    """

    source: Literal["simulated", "rrlyrae", "elasticc"] = "simulated"
    path: str | None = None
    n_objects: int = Field(default=6000, ge=10)
    seed: int = Field(default=0, ge=0)
    simulation: LightCurveConfig = Field(default_factory=LightCurveConfig)
    per: Literal["alert", "object"] = "alert"
    fractions: dict[str, float] | None = None
    rows_per_file: int = Field(default=2048, ge=1)

    @model_validator(mode="after")
    def _path_for_shared_sets(self):
        if self.source != "simulated" and not self.path:
            raise ValueError(f"source {self.source!r} needs path: the shared folder "
                             f"(e.g. ../shared/data/lightcurves/{self.source})")
        return self


class TrainLightCurvesConfig(AstrorayConfig):
    """Config of ``jobs/train_lightcurves.py`` (``configs/train_lightcurves.yaml``).

    ``model`` holds :class:`~astroray.models.lc_transformer.LightCurveModelConfig`
    options; ``classes`` default to the data's, and a shared set's model inputs
    (RR Lyrae: the period found from the light curve) are filled in.
    """

    data: str | None = None
    """Folder of labelled rows (``split=train|val|test``); default ``$ASTRORAY_HOME/lightcurves/<source>``,
    made from ``dataset`` when it holds no rows."""
    dataset: LightCurveDataConfig = Field(default_factory=LightCurveDataConfig)
    model: dict[str, Any] = Field(default_factory=dict)
    balance_classes: bool = True
    """Class weights ``n / (k * count)`` from the training rows (unless ``model.class_weights`` is given)."""
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(monitor="val_loss", monitor_mode="min"))
    calibration: Literal["temperature", "none"] = "temperature"
    """Fit a temperature on the validation logits; the registered model returns calibrated probabilities."""
    partial_days: tuple[float, ...] = (3.0, 10.0, 30.0)
    """Test macro-F1 also on the test light curves cut this many days after the first detection."""
    eval_batch_size: int = Field(default=1024, ge=1)
    experiment: str = "astroray-lc-transformer"
    run_name: str | None = None
    tracking_uri: str | None = None
    register_model: bool = True
    """Register the model as ``astroray-lc-transformer`` and point ``champion`` at it."""

    @field_validator("model")
    @classmethod
    def _model_options(cls, value):
        from astroray.models.lc_transformer import LightCurveModelConfig

        # typos fail at load, not in a worker; the real classes come from the data
        LightCurveModelConfig(**{"classes": ("a", "b"), **value})
        return value


class TuneLightCurvesConfig(TrainLightCurvesConfig):
    """Config of ``jobs/tune_lightcurves.py``: the training config plus the sweep (``sweep:``)."""

    sweep: SweepConfig = Field(default_factory=lambda: SweepConfig(metric="val_loss", mode="min"))


# --------------------------------------------------------------------------- data


def split_files(folder: str | Path, split: str) -> list[Path]:
    return sorted(Path(folder).glob(f"split={split}/*.parquet"))


def read_dataset_info(folder: str | Path) -> dict:
    """``dataset.json`` of a data folder: source, classes, context features, rows per split."""
    from astroray.errors import InvalidInputError

    path = Path(folder) / DATASET_INFO
    if not path.is_file():
        raise InvalidInputError(f"no {DATASET_INFO} in {folder}: make the folder with prepare_lightcurve_data "
                                "(or the training job, which makes it when it is empty)")
    return json.loads(path.read_text())


def _labelled_set(cfg: LightCurveDataConfig):
    from astroray.lightcurves import elasticc_set, rrlyrae_set, simulated_set

    fractions = dict(cfg.fractions) if cfg.fractions else None
    if cfg.source == "rrlyrae":
        return rrlyrae_set(cfg.path, fractions=fractions)
    if cfg.source == "elasticc":
        return elasticc_set(cfg.path, per=cfg.per, fractions=fractions)
    return simulated_set(cfg.n_objects, seed=cfg.seed, config=cfg.simulation, fractions=fractions)


def _context_features(cfg: LightCurveDataConfig) -> dict:
    """How the set's per-row model inputs are computed from a light curve (logged with the model, so the
    classifier computes them the same way)."""
    if cfg.source != "rrlyrae":
        return {}
    from astroray.lightcurves.tasks import RRLYRAE_EXTRA, rrlyrae_features

    spec = rrlyrae_features().model_dump(mode="json")  # what rrlyrae_set computes
    return {name: {"feature": name, "config": spec} for name in RRLYRAE_EXTRA}


def prepare_lightcurve_data(cfg: LightCurveDataConfig, folder: str | Path) -> dict:
    """Write the labelled set of ``cfg`` to ``folder`` as Parquet rows per split, and ``dataset.json``.

    Returns the dataset info (what ``dataset.json`` holds).
    """
    import pyarrow.parquet as pq

    folder = Path(folder)
    labelled = _labelled_set(cfg)
    info = {"source": cfg.source, "name": labelled.name, "classes": list(labelled.classes),
            "survey": labelled.survey, "bands": list(labelled.data.bands), "extra": sorted(labelled.extra),
            "context_features": _context_features(cfg), "summary": labelled.summary()}
    for split in SPLITS:
        if split not in set(labelled.split.tolist()):
            continue
        table = labelled.rows(split)
        out = folder / f"split={split}"
        out.mkdir(parents=True, exist_ok=True)
        for k, start in enumerate(range(0, table.num_rows, cfg.rows_per_file)):
            target = out / f"part-{k:05d}.parquet"
            tmp = out / f".part-{k:05d}.parquet.tmp"
            pq.write_table(table.slice(start, cfg.rows_per_file), tmp)
            tmp.replace(target)
    (folder / DATASET_INFO).write_text(json.dumps(info, indent=2, default=str))
    return info


def _ensure_data(cfg: TrainLightCurvesConfig) -> tuple[Path, dict]:
    from astroray.errors import InvalidInputError

    data = Path(cfg.data) if cfg.data else astroray_home() / "lightcurves" / cfg.dataset.source
    if not split_files(data, "train") or not (data / DATASET_INFO).is_file():
        prepare_lightcurve_data(cfg.dataset, data)
    for split in SPLITS:
        if not split_files(data, split):
            raise InvalidInputError(f"no {split} light curves under {data} (more objects are needed: the splits "
                                    "are by object)")
    return data, read_dataset_info(data)


def training_datasets(data: Path) -> dict:
    """The train and val splits as Ray Datasets."""
    from astroray.ray.runtime import ensure_ray

    ray = ensure_ray()
    return {s: ray.data.read_parquet([str(p) for p in split_files(data, s)]) for s in ("train", "val")}


def _read_split(data: Path, split: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p) for p in split_files(data, split)]
    return pa.concat_tables(tables) if tables else None


def model_config(cfg: TrainLightCurvesConfig, data: Path, info: dict) -> dict:
    """The model options of ``cfg`` completed from the data: classes, class weights, the set's inputs."""
    from astroray.lightcurves.tasks import RRLYRAE_CONTEXT
    from astroray.models.lc_transformer import LightCurveModelConfig, balanced_class_weights

    options = dict(cfg.model)
    options.setdefault("classes", list(info["classes"]))
    if info.get("source") == "rrlyrae":  # periodic stars: fold on the period found from the light curve
        options.setdefault("period_column", "period")
        options.setdefault("context_columns", list(RRLYRAE_CONTEXT))
        options.setdefault("truncate", False)
        options.setdefault("standardize_objects", True)  # a log10 period spans 0.3: unscaled, it was learned weakly
        options.setdefault("bands", list(info["bands"]))
    if cfg.balance_classes and not options.get("class_weights"):
        train = _read_split(data, "train")
        options["class_weights"] = list(balanced_class_weights(train.column("label_id").to_numpy(),
                                                               len(options["classes"])))
    return LightCurveModelConfig(**options).model_dump(mode="json")


# --------------------------------------------------------------------------- train, evaluate, register


def train_lightcurves(cfg: TrainLightCurvesConfig, *, progress: bool = True) -> dict:
    """Make the data if needed, train on Ray Train, calibrate, evaluate, log to MLflow, register; the summary."""
    from astroray.ray.train import fit
    from astroray.tracking import flatten_params, setup_mlflow

    del progress  # nothing here draws a progress bar; kept for the jobs' common signature
    t0 = time.perf_counter()
    data, info = _ensure_data(cfg)
    model = model_config(cfg, data, info)
    datasets = training_datasets(data)
    mlflow = setup_mlflow(cfg.experiment, uri=cfg.tracking_uri)
    with mlflow.start_run(run_name=cfg.run_name or "train_lightcurves") as run:
        params = cfg.model_dump(mode="json", exclude={"model"})
        params["model"] = {k: v for k, v in model.items() if k != "class_weights"}
        mlflow.log_params(flatten_params(params))
        mlflow.set_tags({"astroray.model": MODEL_KIND, "astroray.data": str(data),
                         "astroray.data_source": info.get("source", "")})
        result = fit(MODEL_KIND, model, datasets, cfg.train, name=f"lc-transformer-{run.info.run_id[:8]}",
                     mlflow_run_id=run.info.run_id, tracking_uri=cfg.tracking_uri)
        summary = evaluate_and_register(cfg, result.checkpoint_path, data, info, mlflow, run.info.run_id)
        summary.update(epochs=result.epochs, train_seconds=time.perf_counter() - t0)
        mlflow.log_metric("train_seconds", summary["train_seconds"])
    return summary


def _labels(table) -> np.ndarray:
    return table.column("label_id").to_numpy().astype(np.int64)


def _partial_rows(table, classes, config, days: float):
    """``table``'s light curves cut ``days`` after their first detection, as rows (labels kept)."""
    from astroray.lightcurves import ragged_from_table, ragged_rows, truncate

    ragged = ragged_from_table(table, config.tensor_config())
    ragged.labels = np.asarray(table.column("label").to_pylist(), dtype=object)
    return ragged_rows(truncate(ragged, days=days), classes)


def evaluate_and_register(cfg: TrainLightCurvesConfig, checkpoint_path: str, data: Path, info: dict, mlflow,
                          run_id: str) -> dict:
    """Calibrate the checkpoint's model on val, score test, log metrics, PNGs and the model to the active MLflow
    run, and register it (``cfg.register_model``)."""
    import warnings

    from scipy.special import softmax

    from astroray.eval import (TemperatureScaling, classification_report, expected_calibration_error,
                               plot_confusion_matrix, plot_reliability)
    from astroray.eval import macro_f1 as _macro_f1
    from astroray.models.lc_transformer import LightCurveModule, predict_rows
    from astroray.tracking import REGISTERED_MODELS, log_figure_files, log_torch_model, register_champion

    module = LightCurveModule.load_from_checkpoint(checkpoint_path, map_location="cpu")
    net = module.net.eval()
    classes = list(net.classes)
    val, test = _read_split(data, "val"), _read_split(data, "test")
    y_val, y_test = _labels(val), _labels(test)
    val_logits = predict_rows(net, val, batch_size=cfg.eval_batch_size, logits=True)
    test_logits = predict_rows(net, test, batch_size=cfg.eval_batch_size, logits=True)
    raw = softmax(test_logits, axis=1)
    calibration = None
    if cfg.calibration == "temperature":
        with warnings.catch_warnings(record=True) as caught:  # a bound hit is reported, not fatal
            warnings.simplefilter("always")
            scaler = TemperatureScaling().fit(val_logits, y_val)
        calibration = scaler.to_dict()
        calibration["warnings"] = [str(w.message) for w in caught]
        net.set_temperature(scaler.temperature)
    proba = predict_rows(net, test, batch_size=cfg.eval_batch_size)  # through the net's own temperature
    names = np.asarray(classes, dtype=object)
    report = classification_report(names[y_test], proba=proba, labels=classes)
    metrics = {"test_n": len(y_test), "test_accuracy": report["accuracy"], "test_macro_f1": report["macro_f1"],
               "test_ece_before": expected_calibration_error(y_test, raw),
               "test_ece_after": expected_calibration_error(y_test, proba),
               "test_nll": report["nll"], "temperature": 1.0 if calibration is None else calibration["temperature"]}
    if report.get("macro_roc_auc") is not None:
        metrics["test_macro_roc_auc"] = report["macro_roc_auc"]
    for name, stats in report["per_class"].items():
        if stats["f1"] is not None:
            metrics[f"test_f1_{name}"] = stats["f1"]
    partial = {}
    if not net.config.period_column and not net.config.context_columns:  # whole-curve inputs cannot be cut
        for days in cfg.partial_days:
            cut = _partial_rows(test, classes, net.config, days)
            pred = predict_rows(net, cut, batch_size=cfg.eval_batch_size).argmax(axis=1)
            partial[days] = float(_macro_f1(y_test, pred, labels=list(range(len(classes)))))
            metrics[f"test_macro_f1_at_{days:g}d"] = partial[days]
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pngs = [plot_confusion_matrix(names[y_test], names[proba.argmax(axis=1)], tmp / "confusion_matrix.png",
                                      labels=classes, title="light-curve transformer, held-out objects"),
                plot_reliability(y_test, {"uncalibrated": raw, "temperature scaled": proba}, tmp / "reliability.png",
                                 title="reliability on held-out objects")]
        if partial:
            pngs.append(_plot_partial(partial, tmp / "f1_vs_days.png"))
        (tmp / "report.json").write_text(json.dumps({"test": report, "calibration": calibration,
                                                     "partial_macro_f1": partial, "dataset": info}, indent=2,
                                                    default=str))
        log_figure_files(mlflow, pngs)
        mlflow.log_artifact(str(tmp / "report.json"))
    # the temperature lives in the net (its probabilities are calibrated as they come); it is recorded here
    # under its own key, because LightCurveClassifier applies a "calibration" entry on top of the net's temperature
    metadata = {"classes": classes, "bands": list(net.config.bands), "max_length": net.config.max_length,
                "temperature_scaling": calibration, "context_features": info.get("context_features") or {},
                "data_source": info.get("source"),
                "input": "pack_inputs(collate_lightcurves(rows, model.config)); or predict_rows(model, rows)"}
    # no input example: the packed width follows the longest light curve, and a fixed-width signature would refuse
    # every other length when the model is used through MLflow's pyfunc
    model_info = log_torch_model(mlflow, net, metadata=metadata)
    version = None
    if cfg.register_model:
        version = register_champion(model_info.model_uri, REGISTERED_MODELS[MODEL_KIND], tags={"run_id": run_id},
                                    uri=cfg.tracking_uri)
    return {"run_id": run_id, "model_uri": model_info.model_uri, "registered_version": version,
            "checkpoint": checkpoint_path, "classes": classes, **metrics,
            "partial_macro_f1": {f"{d:g}d": v for d, v in partial.items()}}


def _plot_partial(partial: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = sorted(partial)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(days, [partial[d] for d in days], "o-")
    ax.set_xlabel("days since first detection")
    ax.set_ylabel("macro-F1 (test)")
    ax.set_ylim(0, 1)
    ax.set_title("partial light curves")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def tune_lightcurves(cfg: TuneLightCurvesConfig, *, progress: bool = True) -> dict:
    """Sweep the light-curve transformer with Ray Tune, then calibrate, evaluate and register the best trial."""
    from astroray.ray.tune import run_sweep
    from astroray.tracking import flatten_params, setup_mlflow

    del progress
    data, info = _ensure_data(cfg)
    base = {"model": model_config(cfg, data, info), "train": cfg.train.model_dump(mode="json")}
    sweep = run_sweep(MODEL_KIND, base, training_datasets(data), cfg.sweep, name=cfg.run_name or "tune_lightcurves",
                      experiment=cfg.experiment, tracking_uri=cfg.tracking_uri, storage_path=cfg.train.storage_path)
    if not sweep.best_checkpoint:
        from astroray.errors import InvalidInputError

        raise InvalidInputError("the best trial reported no checkpoint")
    mlflow = setup_mlflow(cfg.experiment, uri=cfg.tracking_uri)
    with mlflow.start_run(run_name="tune_lightcurves-best",
                          tags={"mlflow.parentRunId": sweep.parent_run_id, "astroray.model": MODEL_KIND}) as run:
        mlflow.log_params(flatten_params(sweep.best_config))
        summary = evaluate_and_register(cfg, str(Path(sweep.best_checkpoint) / "checkpoint.ckpt"), data, info, mlflow,
                                        run.info.run_id)
    summary.update(sweep_run_id=sweep.parent_run_id, best_config=sweep.best_config,
                   best_metrics=sweep.best_metrics, n_trials=len(sweep.trials), trials=sweep.trials)
    return summary
