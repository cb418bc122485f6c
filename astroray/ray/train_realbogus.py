"""Train, evaluate and register the real/bogus model: what ``jobs/train_realbogus.py`` runs.

1. Stamps: the folder ``data`` (``split=train|val|test`` Parquet from
   ``jobs/make_stamps.py``); when it does not exist yet it is made first
   with the ``stamps`` config.
2. An MLflow run in the user's store: the flattened config as params.
3. Ray Train fits the U-Net (:func:`astroray.ray.train.fit`), logging every
   epoch's metrics to the run and keeping the best checkpoint.
4. The best model scores validation (the threshold at ``target_fpr``
   false positives is chosen there) and test candidates; the classical
   detectors (Isolation Forest, boosted trees) are fitted on the training
   candidates' features and scored beside it, with their ensemble.
5. Metrics (ROC AUC, the fraction of real candidates lost at the operating
   point, recall per artifact kind), PNGs (ROC, confusion matrix, score
   histograms, the worst-scored stamps) and the model (PyTorch flavour,
   threshold in its metadata) go to the run; the model is registered as
   ``astroray-realbogus`` with the alias ``champion``.
"""
from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import Field

from astroray.config import AstrorayConfig, astroray_home
from astroray.models.classical import ClassicalConfig
from astroray.models.realbogus import RealBogusConfig
from astroray.ray.stamps import StampJobConfig
from astroray.ray.train import TrainConfig
from astroray.ray.tune import SweepConfig

__all__ = ["TrainRealBogusConfig", "train_realbogus", "evaluate_and_register", "training_datasets",
           "score_stamp_files", "stamp_files", "TuneRealBogusConfig", "tune_realbogus"]


class TrainRealBogusConfig(AstrorayConfig):
    """Config of ``jobs/train_realbogus.py`` (``configs/train_realbogus.yaml``)."""

    data: str | list[str] | None = None
    """Stamp folder (``split=train|val|test``); default ``$ASTRORAY_HOME/stamps``, made with ``stamps`` if missing.
    A list of folders pools their stamps split by split (e.g. Rubin-like and ZTF-like sets); each must exist."""
    stamps: StampJobConfig = Field(default_factory=StampJobConfig)
    model: RealBogusConfig = Field(default_factory=RealBogusConfig)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(monitor="val_auc", monitor_mode="max"))
    classical: ClassicalConfig = Field(default_factory=ClassicalConfig)
    experiment: str = "astroray-realbogus"
    run_name: str | None = None
    tracking_uri: str | None = None
    register_model: bool = True
    """Register the model as ``astroray-realbogus`` and point ``champion`` at it."""
    target_fpr: float = Field(default=0.01, gt=0, lt=1)
    """The operating point: the threshold letting this fraction of bogus candidates through (chosen on val)."""
    gallery_size: int = Field(default=16, ge=0)


def stamp_files(folder: str | Path | Sequence[str | Path], split: str) -> list[Path]:
    """The Parquet files of one split under a stamp folder, or under each of several folders (pooled)."""
    folders = [folder] if isinstance(folder, (str, Path)) else list(folder)
    return [p for f in folders for p in sorted(Path(f).glob(f"split={split}/*.parquet"))]


def _read_split(files, columns):
    import pyarrow.parquet as pq

    for path in files:
        yield pq.read_table(path, columns=columns)


def score_stamp_files(model, files, channels, *, batch_size: int = 512, keep_stamps: int = 0):
    """Score every candidate of stamp Parquet ``files`` with a torch model; per-candidate columns as a DataFrame.

    ``keep_stamps`` > 0 also returns the stamps of the candidates (for galleries), as ``(n, 4, S, S)``
    (science, reference, difference, score) of all of them (only for small splits).
    """
    import pandas as pd
    import torch

    from astroray.datasets.stamps import stamp_arrays
    from astroray.models.classical import candidate_features

    frames, kept = [], []
    meta_cols = ["candidate_id", "pair_id", "label", "kind", "snr", "sign"]
    for table in _read_split(files, meta_cols + ["science", "reference", "difference", "score", "stamp_size"]):
        if table.num_rows == 0:
            continue
        arrays = stamp_arrays(table, names=("science", "reference", "difference", "score"))
        stacked = np.stack([arrays[c] for c in channels], axis=1).astype(np.float32)
        scores = np.empty(len(stacked), np.float32)
        with torch.inference_mode():
            for s in range(0, len(stacked), batch_size):
                scores[s:s + batch_size] = model(torch.from_numpy(stacked[s:s + batch_size])).numpy()
        frame = table.select(meta_cols).to_pandas()
        frame["unet"] = scores
        feats = candidate_features(arrays["science"], arrays["reference"], arrays["difference"],
                                   sign=frame["sign"].to_numpy())
        frame["features"] = list(feats)
        frames.append(frame)
        if keep_stamps:
            kept.append(np.stack([arrays[c] for c in ("science", "reference", "difference", "score")], axis=1))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=meta_cols + ["unet", "features"])
    return out, (np.concatenate(kept) if kept else None)


def _features_of(files):
    import pandas as pd

    from astroray.datasets.stamps import stamp_arrays
    from astroray.models.classical import candidate_features

    feats, labels = [], []
    for table in _read_split(files, ["label", "sign", "science", "reference", "difference", "stamp_size"]):
        if table.num_rows == 0:
            continue
        arrays = stamp_arrays(table, names=("science", "reference", "difference"))
        feats.append(candidate_features(arrays["science"], arrays["reference"], arrays["difference"],
                                        sign=table["sign"].to_numpy()))
        labels.append(table["label"].to_numpy())
    del pd
    return np.concatenate(feats), np.concatenate(labels)


def _ensure_stamps(cfg: TrainRealBogusConfig, progress: bool) -> list[Path]:
    """The stamp folders to pool (one unless ``data`` lists several), each checked for every split."""
    from astroray.errors import InvalidInputError
    from astroray.ray.stamps import make_stamps

    if isinstance(cfg.data, list):  # several sets pooled: each must have been made (never made here)
        data = [Path(d) for d in cfg.data]
    else:
        data = [Path(cfg.data) if cfg.data else astroray_home() / "stamps"]
        if not stamp_files(data, "train"):
            make_stamps(cfg.stamps, data[0], progress=progress)
    for folder in data:
        for split in ("train", "val", "test"):
            if not stamp_files(folder, split):
                hint = ("make them with jobs/make_stamps.py" if split == "train"
                        else "make more pairs: the splits are by pair")
                raise InvalidInputError(f"no {split} stamps under {folder} ({hint})")
    return data


def training_datasets(data: Path | Sequence[Path]) -> dict:
    """The train and val stamp splits as Ray Datasets."""
    from astroray.ray.runtime import ensure_ray

    ray = ensure_ray()
    return {s: ray.data.read_parquet([str(p) for p in stamp_files(data, s)]) for s in ("train", "val")}


def train_realbogus(cfg: TrainRealBogusConfig, *, progress: bool = True) -> dict:
    """Make stamps if needed, train on Ray Train, evaluate, log to MLflow, register; returns the summary."""
    from astroray.ray.train import fit
    from astroray.tracking import flatten_params, setup_mlflow

    t0 = time.perf_counter()
    data = _ensure_stamps(cfg, progress)
    datasets = training_datasets(data)
    mlflow = setup_mlflow(cfg.experiment, uri=cfg.tracking_uri)
    with mlflow.start_run(run_name=cfg.run_name or "train_realbogus") as run:
        mlflow.log_params(flatten_params(cfg.model_dump(mode="json", exclude={"stamps"})))
        mlflow.set_tags({"astroray.model": "realbogus",
                         "astroray.data": ", ".join(map(str, data))})
        result = fit("realbogus", cfg.model.model_dump(mode="json"), datasets, cfg.train,
                     name=f"realbogus-{run.info.run_id[:8]}", mlflow_run_id=run.info.run_id,
                     tracking_uri=cfg.tracking_uri)
        summary = evaluate_and_register(cfg, result.checkpoint_path, data, mlflow, run.info.run_id)
        summary.update(epochs=result.epochs, train_seconds=time.perf_counter() - t0)
        mlflow.log_metric("train_seconds", summary["train_seconds"])
    return summary


def evaluate_and_register(cfg: TrainRealBogusConfig, checkpoint_path: str, data: Path | Sequence[Path], mlflow,
                          run_id: str) -> dict:
    """Score val and test with the checkpoint's model, fit and score the classical detectors, log metrics,
    PNGs and the model to the active MLflow run, and register it (``cfg.register_model``)."""
    from astroray.eval import binary_report, operating_point, operating_point_at_fpr, recall_by_subtype, roc_auc
    from astroray.models.classical import ClassicalRealBogus, ensemble_score
    from astroray.models.realbogus import RealBogusModule
    from astroray.tracking import REGISTERED_MODELS, log_figure_files, log_torch_model, register_champion

    module = RealBogusModule.load_from_checkpoint(checkpoint_path, map_location="cpu")
    net = module.net.eval()
    channels = net.config.channels
    val, _ = score_stamp_files(net, stamp_files(data, "val"), channels)
    test, test_stamps = score_stamp_files(net, stamp_files(data, "test"), channels, keep_stamps=1)
    op_val = operating_point_at_fpr(val["label"].to_numpy(), val["unet"].to_numpy(), target_fpr=cfg.target_fpr)
    threshold = float(op_val.threshold)

    classical = ClassicalRealBogus(cfg.classical).fit(*_features_of(stamp_files(data, "train")))
    for frame in (val, test):
        feats = np.stack(frame["features"].to_numpy()) if len(frame) else np.zeros((0, 11))
        for name, values in classical.scores(feats).items():
            frame[name] = values
        frame["ensemble"] = ensemble_score(frame["unet"], frame["trees"], frame["iforest"])
    y = test["label"].to_numpy()
    kinds = test["kind"].to_numpy()
    metrics = {"test_n": len(test), "test_real": int(y.sum()), "threshold": threshold}
    for name in ("unet", "trees", "iforest", "ensemble"):
        s = test[name].to_numpy()
        op = operating_point_at_fpr(y, s, target_fpr=cfg.target_fpr)
        metrics[f"test_auc_{name}"] = roc_auc(y, s)
        metrics[f"test_fnr_at_{cfg.target_fpr:g}fpr_{name}"] = op.fnr
    at_val = operating_point(y, test["unet"].to_numpy(), threshold=threshold)
    metrics.update(test_fpr_at_val_threshold=at_val.fpr, test_fnr_at_val_threshold=at_val.fnr,
                   test_precision=at_val.precision, test_recall=at_val.recall)
    transient = np.isin(kinds, ("transient_on_host", "transient_hostless"))
    sel = transient | (y == 0)
    op_tr = operating_point_at_fpr(y[sel], test["unet"].to_numpy()[sel], target_fpr=cfg.target_fpr)
    metrics["test_transients_lost_at_1fpr"] = op_tr.fnr
    per_kind = recall_by_subtype(y, test["unet"].to_numpy(), kinds, threshold=threshold)
    for kind, r in per_kind.items():
        metrics[f"recall_{kind}"] = r["recall"]
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
    report = binary_report(y, test["unet"].to_numpy(), threshold=threshold, target_fpr=cfg.target_fpr, subtypes=kinds)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pngs = _plots(test, test_stamps, threshold, cfg, tmp)
        (tmp / "report.json").write_text(json.dumps(report, indent=2, default=str))
        classical.save(tmp / "classical.pkl")
        log_figure_files(mlflow, pngs)
        mlflow.log_artifact(str(tmp / "report.json"))
        mlflow.log_artifact(str(tmp / "classical.pkl"), artifact_path="classical")
    info = log_torch_model(mlflow, net, input_example=_example(test_stamps, channels),
                           metadata={"threshold": threshold, "channels": list(channels),
                                     "stamp_size": net.config.stamp_size, "target_fpr": cfg.target_fpr})
    version = None
    if cfg.register_model:
        version = register_champion(info.model_uri, REGISTERED_MODELS["real_bogus"], tags={"run_id": run_id},
                                    uri=cfg.tracking_uri)
    return {"run_id": run_id, "model_uri": info.model_uri, "registered_version": version,
            "checkpoint": checkpoint_path, **metrics, "recall_by_kind": {k: v["recall"] for k, v in per_kind.items()}}


def _example(stamps, channels):
    from astroray.models.realbogus import CHANNELS

    if stamps is None or len(stamps) == 0:
        return None
    idx = [CHANNELS.index(c) for c in channels]
    return np.ascontiguousarray(stamps[:2][:, idx]).astype(np.float32)


def _plots(test, stamps, threshold, cfg, folder: Path) -> list[Path]:
    from astroray.eval import plot_confusion_matrix, plot_roc, plot_score_histograms, plot_stamp_gallery, worst_scored

    y = test["label"].to_numpy()
    paths = [plot_roc(y, {n: test[n].to_numpy() for n in ("unet", "trees", "iforest", "ensemble")},
                      folder / "roc.png", target_fpr=cfg.target_fpr, title="real/bogus on held-out simulated pairs"),
             plot_confusion_matrix(np.where(y == 1, "real", "bogus"),
                                   np.where(test["unet"].to_numpy() >= threshold, "real", "bogus"),
                                   folder / "confusion_matrix.png", labels=["real", "bogus"],
                                   title=f"U-Net at threshold {threshold:.3f}"),
             plot_score_histograms(test["unet"].to_numpy(), test["kind"].to_numpy(), folder / "scores_by_kind.png",
                                   threshold=threshold, xlabel="U-Net real probability",
                                   title="scores by injected kind")]
    if stamps is not None and len(stamps) and cfg.gallery_size:
        worst = worst_scored(y, test["unet"].to_numpy(), n=cfg.gallery_size)
        paths.append(plot_stamp_gallery(stamps, folder / "worst_scored.png", scores=test["unet"].to_numpy(),
                                        labels=[f"{k} ({'real' if l else 'bogus'})" for k, l in
                                                zip(test["kind"], y)], indices=worst,
                                        channel_names=["science", "reference", "difference", "S_corr"],
                                        title="worst-scored test candidates"))
    return paths


class TuneRealBogusConfig(TrainRealBogusConfig):
    """Config of ``jobs/tune_realbogus.py``: the training config plus the sweep (``sweep:``)."""

    sweep: SweepConfig = Field(default_factory=lambda: SweepConfig(metric="val_auc", mode="max"))


def tune_realbogus(cfg: TuneRealBogusConfig, *, progress: bool = True) -> dict:
    """Sweep the real/bogus model with Ray Tune, then evaluate and register the best trial's checkpoint."""
    from astroray.ray.tune import run_sweep
    from astroray.tracking import setup_mlflow

    data = _ensure_stamps(cfg, progress)
    base = {"model": cfg.model.model_dump(mode="json"), "train": cfg.train.model_dump(mode="json")}
    sweep = run_sweep("realbogus", base, training_datasets(data), cfg.sweep, name=cfg.run_name or "tune_realbogus",
                      experiment=cfg.experiment, tracking_uri=cfg.tracking_uri, storage_path=cfg.train.storage_path)
    if not sweep.best_checkpoint:
        from astroray.errors import InvalidInputError

        raise InvalidInputError("the best trial reported no checkpoint")
    mlflow = setup_mlflow(cfg.experiment, uri=cfg.tracking_uri)
    with mlflow.start_run(run_name="tune_realbogus-best",
                          tags={"mlflow.parentRunId": sweep.parent_run_id, "astroray.model": "realbogus"}) as run:
        from astroray.tracking import flatten_params

        mlflow.log_params(flatten_params(sweep.best_config))
        summary = evaluate_and_register(cfg, str(Path(sweep.best_checkpoint) / "checkpoint.ckpt"), data, mlflow,
                                        run.info.run_id)
    summary.update(sweep_run_id=sweep.parent_run_id, best_config=sweep.best_config,
                   best_metrics=sweep.best_metrics, n_trials=len(sweep.trials), trials=sweep.trials)
    return summary
