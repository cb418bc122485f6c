"""Ray Train with PyTorch Lightning: fit any astroray model on Ray Data shards, on CPU or GPU workers.

The only ``ray.train`` import of the project.  :func:`fit` runs a
``TorchTrainer`` whose workers each build the model (by kind, from
:mod:`astroray.models.registry`), read their shard of the ``train`` and
``val`` datasets (``ray.train.get_dataset_shard``), and fit it with
Lightning's ``RayDDPStrategy``, ``RayLightningEnvironment`` and
``RayTrainReportCallback`` after ``prepare_trainer``.  Every epoch's
checkpoint is reported to Ray Train, which keeps the best
(``CheckpointConfig``); a killed worker restarts the group from the latest
checkpoint (``FailureConfig``).  With an MLflow run id, global rank 0 logs
every epoch's metrics to that run.

The same trainer runs inside a Tune trial (:mod:`astroray.ray.tune`), which
adds Tune's report callback.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from astroray.config import AstrorayConfig, astroray_home

__all__ = ["TrainConfig", "FitResult", "fit", "build_trainer", "train_loop_per_worker"]


class TrainConfig(AstrorayConfig):
    """How a model is trained on Ray Train (the model's own options live in its config).

    Attributes
    ----------
    num_workers : int
        Training workers (data-parallel, one model replica each).
    use_gpu : bool
        One GPU share per worker (``gpus_per_worker``; fractions let workers share a GPU).
    cpus_per_worker : float
        CPUs per worker; also its torch threads (rounded, at least 1).
    max_epochs, batch_size : int
        ``batch_size`` is per worker.
    checkpoints_to_keep : int
        Best checkpoints kept by ``monitor`` (``monitor_mode``).
    max_failures : int
        Worker-group restarts from the latest checkpoint (-1: unlimited).
    storage_path : str or None
        Where runs and checkpoints go (shared storage on a multi-node cluster);
        default ``$ASTRORAY_HOME/ray_results``.
    limit_train_batches, limit_val_batches : int, float or None
        Lightning's limits (smoke runs). With Ray Data's streamed shards an
        integer limit larger than a worker's batches skips that epoch's
        validation (Lightning waits for batch ``limit`` to validate).
    seed : int
    """

    num_workers: int = Field(default=2, ge=1)
    use_gpu: bool = False
    gpus_per_worker: float = Field(default=1.0, gt=0)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    max_epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=256, ge=1)
    checkpoints_to_keep: int = Field(default=2, ge=1)
    monitor: str = "val_loss"
    monitor_mode: Literal["min", "max"] = "min"
    max_failures: int = Field(default=2, ge=-1)
    storage_path: str | None = None
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    seed: int = 0
    local_shuffle_buffer: int = Field(default=2048, ge=0)
    """Rows shuffled within each worker's stream (0: none)."""


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    checkpoint_path: str
    """The best checkpoint (``checkpoint.ckpt``) by the monitored metric."""
    metrics: dict
    """The last reported metrics."""
    history: list[dict] = field(default_factory=list)
    """The metrics of the checkpoints kept (``TrainConfig.checkpoints_to_keep``), in order: Ray Train keeps no
    others, so this is not every epoch (see :attr:`epochs`)."""
    path: str = ""
    """The run's folder in the storage path."""
    best_metrics: dict = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        """Epochs run: the last reported ``epoch`` + 1 (``len(history)`` counts only the checkpoints kept)."""
        seen = [row.get("epoch") for row in self.history] + [self.metrics.get("epoch")]
        seen = [int(e) for e in seen if isinstance(e, (int, float)) and math.isfinite(e)]
        return max(seen) + 1 if seen else len(self.history)


def train_loop_per_worker(config: dict) -> None:
    """What each Ray Train worker runs: build the model, read its shards, fit with Lightning (resuming if asked)."""
    import pytorch_lightning as pl
    import ray.train
    import torch
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, RayTrainReportCallback, prepare_trainer

    from astroray.models.registry import build_module

    train: dict = config["train"]
    torch.set_num_threads(max(int(round(train["cpus_per_worker"])), 1))
    pl.seed_everything(int(train["seed"]) + ray.train.get_context().get_world_rank(), workers=True, verbose=False)
    module = build_module(config["model_kind"], config["model_config"])
    batch_size = int(train["batch_size"])
    train_rows = ray.train.get_dataset_shard("train").iter_torch_batches(
        batch_size=batch_size, collate_fn=module.collate, local_shuffle_buffer_size=train["local_shuffle_buffer"] or None,
        local_shuffle_seed=int(train["seed"]))
    val_shard = ray.train.get_dataset_shard("val")
    val_rows = val_shard.iter_torch_batches(batch_size=batch_size, collate_fn=module.collate) if val_shard else None
    callbacks = []
    if config.get("mlflow_run_id"):  # before the report: Tune may stop a trial's workers as soon as it hears it
        from astroray.tracking import epoch_metrics_callback

        callbacks.append(epoch_metrics_callback(config["mlflow_run_id"], uri=config.get("tracking_uri")))
    for extra in config.get("extra_callbacks") or ():
        callbacks.append(extra())
    callbacks.append(RayTrainReportCallback())
    trainer = pl.Trainer(
        max_epochs=int(train["max_epochs"]), accelerator="gpu" if train["use_gpu"] else "cpu", devices="auto",
        strategy=RayDDPStrategy(), plugins=[RayLightningEnvironment()], callbacks=callbacks,
        enable_progress_bar=False, enable_checkpointing=False, logger=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_train_batches=train.get("limit_train_batches"),
        limit_val_batches=train.get("limit_val_batches"))
    trainer = prepare_trainer(trainer)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        trainer.fit(module, train_dataloaders=train_rows, val_dataloaders=val_rows)
    else:  # a restarted worker group: go on from the latest reported epoch
        with checkpoint.as_directory() as folder:
            trainer.fit(module, train_dataloaders=train_rows, val_dataloaders=val_rows,
                        ckpt_path=os.path.join(folder, RayTrainReportCallback.CHECKPOINT_NAME))


def build_trainer(model_kind: str, model_config: dict, datasets: dict, train: TrainConfig, *, name: str,
                  mlflow_run_id: str | None = None, tracking_uri: str | None = None, callbacks=(),
                  extra_worker_callbacks=()):
    """The ``TorchTrainer`` of :func:`fit` (Tune builds the same one inside each trial).

    ``callbacks`` are Ray Train callbacks (Tune's report callback);
    ``extra_worker_callbacks`` are zero-argument factories of Lightning
    callbacks built in each worker.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from astroray.models.registry import model_kind as _kind

    _kind(model_kind)  # a typo fails here, not in every worker
    if mlflow_run_id is not None:  # resolved here: workers may not share this process's environment
        from astroray.tracking import tracking_uri as _resolve

        tracking_uri = _resolve(tracking_uri)
    resources = {"CPU": train.cpus_per_worker}
    if train.use_gpu:
        resources["GPU"] = train.gpus_per_worker
    loop_config = {"model_kind": model_kind, "model_config": model_config, "train": train.model_dump(mode="json"),
                   "mlflow_run_id": mlflow_run_id, "tracking_uri": tracking_uri,
                   "extra_callbacks": list(extra_worker_callbacks)}
    storage = train.storage_path or str(astroray_home() / "ray_results")
    return TorchTrainer(
        train_loop_per_worker, train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=train.num_workers, use_gpu=train.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=name, storage_path=storage, callbacks=list(callbacks) or None,
            checkpoint_config=CheckpointConfig(num_to_keep=train.checkpoints_to_keep,
                                               checkpoint_score_attribute=train.monitor,
                                               checkpoint_score_order=train.monitor_mode),
            failure_config=FailureConfig(max_failures=train.max_failures)),
        datasets=datasets)


def fit(model_kind: str, model_config: dict, datasets: dict, train: TrainConfig, *, name: str,
        mlflow_run_id: str | None = None, tracking_uri: str | None = None, extra_worker_callbacks=()) -> FitResult:
    """Train model kind ``model_kind`` on ``datasets`` (``{"train": Dataset, "val": Dataset}``) with Ray Train.

    Re-running with the same ``name`` and storage path resumes that run.

    Returns
    -------
    FitResult
        The best checkpoint by ``train.monitor`` and the reported metrics.
    """
    from astroray.ray.runtime import ensure_ray

    ensure_ray()
    trainer = build_trainer(model_kind, model_config, datasets, train, name=name, mlflow_run_id=mlflow_run_id,
                            tracking_uri=tracking_uri, extra_worker_callbacks=extra_worker_callbacks)
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    best = result.best_checkpoints[0] if result.best_checkpoints else (result.checkpoint, result.metrics)
    ckpt, best_metrics = best
    path = Path(ckpt.path) / "checkpoint.ckpt"
    history = result.metrics_dataframe.to_dict("records") if result.metrics_dataframe is not None else []
    return FitResult(checkpoint_path=str(path), metrics=dict(result.metrics or {}), history=history,
                     path=str(result.path), best_metrics=dict(best_metrics or {}))
