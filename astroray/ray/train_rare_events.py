"""Fit, check and register the rare-event + anomaly model: what ``jobs/train_rare_events.py`` runs.

1. Data: labelled light curves (``data``: a file or folder :func:`astroray.io.read_lightcurves`
   reads, labels in the records), or by default ``model.n_objects`` simulated
   ones (:func:`astroray.datasets.simulate_lightcurves`, ``model.survey``,
   upper limits as alerts carry them).  ``test_fraction`` of each class is kept
   out of fitting.
2. An MLflow run in the user's store: the flattened config as params.
3. :func:`~astroray.models.rare_events.fit_rare_event_model`: the ProtoNet
   ensemble, the support's prototypes, the open-set threshold and the anomaly
   detector.  No Ray Train: each training step is milliseconds on a small
   MLP, so a plain loop in this process (seconds in all) beats starting
   workers.  Nothing here imports Ray; the job runs as is under ``ray job submit``.
4. Checks on the test objects: accuracy over the known classes, the
   ``none_of_these`` rate; with ``held_out_class``, a second fit without that
   class gives the open-set and anomaly AUROC of that class against the known
   ones (the model registered keeps every class).  PNGs of the top anomalies.
5. The model (pyfunc flavour) is registered as ``astroray-protonet`` with the
   alias ``champion``.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
from pydantic import Field

from astroray.config import AstrorayConfig
from astroray.models.rare_events import RareEventTrainConfig

__all__ = ["TrainRareEventsConfig", "load_training_lightcurves", "train_rare_events"]

MODEL_KIND = "protonet"


class TrainRareEventsConfig(AstrorayConfig):
    """Config of ``jobs/train_rare_events.py`` (``configs/train_rare_events.yaml``).

    Attributes
    ----------
    data : str or None
        Labelled light curves to fit on (a file or folder); default: simulate ``model.n_objects``.
    model : RareEventTrainConfig
    test_fraction : float
        Objects of each class kept out of fitting for the checks.
    held_out_class : str or None
        A class left out of a second, check-only fit: the open-set and anomaly
        AUROC of its test objects against the known classes' (None: skip, half the time).
    top_anomalies : int
        Light curves in the top-anomalies PNG.
    experiment, run_name, tracking_uri
        MLflow (default store: ``$MLFLOW_TRACKING_URI``, else ``$ASTRORAY_HOME/mlflow.db``).
    register_model : bool
        Register as ``astroray-protonet`` and point ``champion`` at it.
    """

    data: str | None = None
    model: RareEventTrainConfig = Field(default_factory=RareEventTrainConfig)
    test_fraction: float = Field(default=0.2, gt=0, lt=0.9)
    held_out_class: str | None = "SLSN"
    top_anomalies: int = Field(default=12, ge=1, le=48)
    experiment: str = "astroray-protonet"
    run_name: str | None = None
    tracking_uri: str | None = None
    register_model: bool = True


def load_training_lightcurves(cfg: TrainRareEventsConfig) -> list:
    """The labelled light curves of ``cfg``: read from ``data``, or simulated (upper limits as alerts carry them).

    Raises
    ------
    InvalidInputError
        ``data`` holds no light curve, or one without a label.
    """
    from astroray.errors import InvalidInputError

    if cfg.data:
        from astroray.io import read_lightcurves

        lcs = read_lightcurves(Path(cfg.data).expanduser(), survey=cfg.model.survey)
        if not lcs:
            raise InvalidInputError(f"no light curves in {cfg.data}")
        unlabelled = [lc.object_id for lc in lcs if lc.label is None]
        if unlabelled:
            raise InvalidInputError(f"{len(unlabelled)} light curve(s) in {cfg.data} have no label "
                                    f"(e.g. {unlabelled[:3]}): the reference objects must be labelled")
        return lcs
    from astroray.datasets import LightCurveConfig, simulate_lightcurves

    m = cfg.model
    weights = None if m.classes is None else {c: 1.0 for c in m.classes}
    sim = simulate_lightcurves(m.n_objects, config=LightCurveConfig(survey=m.survey, nondetections=m.nondetections,
                                                                    class_weights=weights), seed=m.seed)
    return sim.lightcurves


def _split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 11])
    fit, test = [], []
    for c in sorted(set(labels.tolist())):
        rows = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(fraction * rows.size) if rows.size >= 4 else 0
        test.append(rows[:n_test])
        fit.append(rows[n_test:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(test))


def _plot(lcs, scores, labels, path: Path, *, n: int, title: str) -> Path | None:
    from astroray.errors import InvalidInputError
    from astroray.models.anomaly import AnomalyResult, plot_top_anomalies

    valid = np.isfinite(scores.anomaly_score)
    result = AnomalyResult(scores={}, percentiles={}, combined=scores.anomaly_score, valid=valid)
    try:
        return plot_top_anomalies(lcs, result, path, n=n, labels=labels, title=title)
    except InvalidInputError:  # nothing scorable: no picture, not a failed job
        return None


def train_rare_events(cfg: TrainRareEventsConfig, *, progress: bool = True) -> dict:
    """Fit, check, log to MLflow and register the rare-event model; the summary."""
    from astroray.errors import InvalidInputError
    from astroray.eval import open_set_auroc, roc_auc
    from astroray.models.rare_events import fit_rare_event_model, log_rare_event_model
    from astroray.tracking import (
        REGISTERED_MODELS,
        flatten_params,
        log_figure_files,
        register_champion,
        setup_mlflow,
    )

    del progress  # nothing here draws a progress bar; kept for the jobs' common signature
    t0 = time.perf_counter()
    lcs = load_training_lightcurves(cfg)
    labels = np.asarray([str(lc.label) for lc in lcs], dtype=object)
    fit_rows, test_rows = _split(labels, cfg.test_fraction, cfg.model.seed)
    fit_lcs, test_lcs = [lcs[i] for i in fit_rows], [lcs[i] for i in test_rows]
    test_labels = labels[test_rows]
    if cfg.held_out_class is not None and cfg.held_out_class not in set(labels.tolist()):
        raise InvalidInputError(f"held_out_class {cfg.held_out_class!r} is not among the data's classes "
                                f"{sorted(set(labels.tolist()))}: name one of them or set it to null")
    data_s = time.perf_counter() - t0
    mlflow = setup_mlflow(cfg.experiment, uri=cfg.tracking_uri)
    with mlflow.start_run(run_name=cfg.run_name or "train_rare_events") as run:
        mlflow.log_params(flatten_params(cfg.model_dump(mode="json")))
        mlflow.set_tags({"astroray.model": MODEL_KIND, "astroray.data": cfg.data or "simulated"})
        t = time.perf_counter()
        model = fit_rare_event_model(fit_lcs, config=cfg.model)
        fit_s = time.perf_counter() - t
        scores = model.run(test_lcs)
        scored = scores.predicted != None
        known = np.isin(test_labels, model.classes)
        metrics = {"n_fit": len(fit_lcs), "n_test": len(test_lcs), "fit_seconds": fit_s, "data_seconds": data_s,
                   "open_set_threshold": model.open_set_threshold,
                   "test_accuracy": float(np.mean(scores.predicted[scored & known] == test_labels[scored & known]))
                   if np.any(scored & known) else float("nan"),
                   "test_none_of_these_rate": float(np.mean(scores.none_of_these[scored])) if scored.any() else 0.0,
                   "test_unscorable": int((~scored).sum())}
        metrics.update({f"fit_{k}": v for k, v in model.summary.items() if isinstance(v, (int, float))})
        held = {}
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            pngs = [_plot(test_lcs, scores, test_labels, tmp / "top_anomalies.png", n=cfg.top_anomalies,
                          title="Most anomalous test light curves (all classes known)")]
            if cfg.held_out_class is not None:
                keep = [lc for lc in fit_lcs if lc.label != cfg.held_out_class]
                t = time.perf_counter()
                check = fit_rare_event_model(keep, config=cfg.model)
                check_scores = check.run(test_lcs)
                ok = np.isfinite(check_scores.anomaly_score)
                unknown = test_labels[ok] == cfg.held_out_class
                held = {"held_out_open_set_auroc": open_set_auroc(check_scores.open_set_score[ok], unknown),
                        "held_out_anomaly_auroc": roc_auc(unknown, check_scores.anomaly_score[ok]),
                        "held_out_none_of_these_rate": float(np.mean(check_scores.none_of_these[ok][unknown])),
                        "known_none_of_these_rate": float(np.mean(check_scores.none_of_these[ok][~unknown])),
                        "held_out_n_test": int(unknown.sum()), "held_out_check_seconds": time.perf_counter() - t}
                metrics.update(held)
                pngs.append(_plot(test_lcs, check_scores, test_labels, tmp / "top_anomalies_held_out.png",
                                  n=cfg.top_anomalies, title=f"Most anomalous test light curves "
                                                             f"({cfg.held_out_class} held out of fitting)"))
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()
                                if v is not None and np.isfinite(float(v))})
            (tmp / "report.json").write_text(json.dumps({"metrics": metrics, "summary": model.summary,
                                                         "classes": list(model.classes)}, indent=2, default=str))
            log_figure_files(mlflow, [p for p in pngs if p is not None])
            mlflow.log_artifact(str(tmp / "report.json"))
        model_info = log_rare_event_model(mlflow, model, metadata={"held_out_check": cfg.held_out_class or ""})
        version = None
        if cfg.register_model:
            version = register_champion(model_info.model_uri, REGISTERED_MODELS[MODEL_KIND],
                                        tags={"run_id": run.info.run_id}, uri=cfg.tracking_uri)
        summary = {"run_id": run.info.run_id, "model_uri": model_info.model_uri, "registered_version": version,
                   "classes": list(model.classes), **metrics, "seconds": time.perf_counter() - t0}
        mlflow.log_metric("train_seconds", summary["seconds"])
    return summary
