"""The end-to-end demo job: simulated sky -> Ray Data image pipeline -> real/bogus -> alerts, catalog, overview.

``astroray demo`` and ``jobs/demo.py`` both call :func:`run_demo`.  It runs on
a local Ray (started here) or, under ``ray job submit``, on the cluster the job
was submitted to; the code is the same.

Every candidate is scored by the real/bogus model ``realbogus.model_uri``
(``models:/astroray-realbogus@champion``) from the user's MLflow store.  When
the store has none, a small one is trained first (``train_if_missing``: a few
simulated pairs through :func:`~astroray.ray.stamps.make_stamps` and
:func:`~astroray.ray.train_realbogus.train_realbogus`, a minute or two on two
cores) and registered as the champion, so later runs use it.  The summary gives
the model's precision and recall on the demo's candidates, each labelled real
when an injected real change lies within ``match_radius`` of it.
``realbogus: null`` (or ``false``) skips the model: the fast path.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import numpy as np
from pydantic import Field, field_validator

from astroray.config import AstrorayConfig, astroray_home
from astroray.datasets import ImagePairConfig, write_images
from astroray.eval import match_to_truth, nearest_truth
from astroray.imaging.pipeline import ImagePipelineConfig
from astroray.models.scoring import DEFAULT_REALBOGUS_URI, StampScorerConfig
from astroray.ray.image_job import DifferenceJobConfig, pairs_in_folder, run_pairs

__all__ = ["DemoConfig", "DemoTrainingConfig", "DemoSummary", "run_demo", "ensure_realbogus_model"]


class DemoTrainingConfig(AstrorayConfig):
    """The small real/bogus model the demo trains when the store has no champion (``train_if_missing``)."""

    n_pairs: int = Field(default=24, ge=4)
    """Simulated pairs whose candidates are the stamps (split 70/15/15 by pair)."""
    size: int = Field(default=512, ge=128)
    """Side of each simulated pair in pixels."""
    seed: int = 11
    max_epochs: int = Field(default=12, ge=1)
    """A few hundred optimiser steps in all: 4 epochs of 64 left the U-Net at one constant score."""
    num_workers: int = Field(default=1, ge=1)
    """Ray Train workers (one fits two cores best: a second competes with the data tasks)."""
    batch_size: int = Field(default=16, ge=1)
    base_width: int = Field(default=8, ge=2)


class DemoConfig(AstrorayConfig):
    """Config of the demo job (``configs/demo.yaml``)."""

    n_pairs: int = Field(default=4, ge=1, le=10_000)
    seed: int = 42
    simulation: ImagePairConfig = Field(default_factory=lambda: ImagePairConfig(shape=(1024, 1024)))
    pipeline: ImagePipelineConfig = Field(default_factory=ImagePipelineConfig)
    n_corrupt: int = Field(default=1, ge=0)
    """Extra pairs written with a truncated science file, to show quarantine at work."""
    output_dir: str | None = None
    """Default: ``$ASTRORAY_HOME/demo``."""
    num_actors: int = Field(default=2, ge=1)
    num_gpus_per_actor: float = Field(default=0.0, ge=0.0)
    """Set > 0 (fractions allowed) with ``pipeline.device: gpu`` on GPU nodes."""
    match_radius: float = Field(default=2.0, gt=0)
    """Pixels within which a detection recovers an injected change."""
    track: bool = True
    """Log parameters, metrics and the overview to MLflow (``$ASTRORAY_HOME/mlflow.db``)."""
    tracking_uri: str | None = None
    """MLflow store (absolute ``sqlite:////...`` or a server); default ``$MLFLOW_TRACKING_URI``, else
    ``$ASTRORAY_HOME/mlflow.db``."""
    realbogus: StampScorerConfig | None = Field(default_factory=StampScorerConfig)
    """The model that scores every candidate (its ``tracking_uri`` defaults to the demo's); None or false: no
    scoring (the fast path)."""
    train_if_missing: DemoTrainingConfig | None = Field(default_factory=DemoTrainingConfig)
    """When ``realbogus.model_uri`` is the default champion and the store has none: train this one first.
    None: a missing model is an error."""

    @field_validator("realbogus", mode="before")
    @classmethod
    def _switch(cls, value):  # `realbogus: false` in YAML reads as the switch it looks like
        if value is False:
            return None
        return {} if value is True else value


@dataclass
class DemoSummary:
    """What :func:`run_demo` returns (and prints)."""

    output_dir: Path
    n_inputs: int
    n_ok: int
    n_quarantined: int
    n_failed: int
    n_detections: int
    n_alerts: int
    n_on_streak: int
    n_streaks: int
    n_injected_real: int
    n_recovered_real: int
    n_injected_bright: int
    n_recovered_bright: int
    seconds: float
    files: dict = field(default_factory=dict)
    realbogus: dict = field(default_factory=dict)
    """Empty without a model; else ``model`` (name/version), ``threshold``, ``trained_seconds`` (when trained
    for this run), ``n_scored``, ``n_real`` (candidates on an injected real change), ``n_scored_real``,
    ``true_positives``, ``precision``, ``recall``."""

    @property
    def recovered_fraction(self) -> float:
        return self.n_recovered_real / self.n_injected_real if self.n_injected_real else float("nan")

    @property
    def recovered_fraction_bright(self) -> float:
        return self.n_recovered_bright / self.n_injected_bright if self.n_injected_bright else float("nan")

    def to_text(self) -> str:
        rows = [
            ("input pairs", self.n_inputs),
            ("  processed", self.n_ok),
            ("  quarantined (bad input)", self.n_quarantined),
            ("  failed (internal error)", self.n_failed),
            ("detections", self.n_detections),
            ("alerts written", self.n_alerts),
            ("  on satellite streaks", f"{self.n_on_streak} (flagged on_streak; {self.n_streaks} streaks)"),
            ("injected real changes", self.n_injected_real),
            ("  recovered", f"{self.n_recovered_real} ({100 * self.recovered_fraction:.1f}%)"),
            ("  with expected S/N >= 7", self.n_injected_bright),
            ("    recovered", f"{self.n_recovered_bright} ({100 * self.recovered_fraction_bright:.1f}%)"),
        ]
        rows += self._realbogus_rows()
        rows.append(("wall time", f"{self.seconds:.1f} s"))
        width = max(len(k) for k, _ in rows)
        lines = ["astroray demo summary", "-" * (width + 24)]
        lines += [f"{k:<{width}}  {v}" for k, v in rows]
        lines.append("-" * (width + 24))
        lines += [f"{k:<{width}}  {v}" for k, v in self.files.items()]
        return "\n".join(lines)

    def _realbogus_rows(self) -> list[tuple[str, object]]:
        rb = self.realbogus
        if not rb:
            return [("real/bogus", "off (realbogus: null)")]

        def pct(v):
            return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}%"

        model = f"{rb['model']} (threshold {rb['threshold']:.3f})"
        if rb.get("trained_seconds") is not None:
            model += f", trained for this run in {rb['trained_seconds']:.0f} s"
        return [("real/bogus model", model),
                ("  candidates scored", f"{rb['n_scored']} ({rb['n_real']} on injected real changes)"),
                ("  precision",
                 f"{pct(rb['precision'])} ({rb['true_positives']} of {rb['n_scored_real']} scored real)"),
                ("  recall", f"{pct(rb['recall'])} ({rb['true_positives']} of {rb['n_real']} real candidates)")]


def _simulate_inputs(cfg: DemoConfig, inputs: Path, progress: bool) -> pd.DataFrame:
    """Simulated pairs (with ``inputs/truth.parquet``), plus ``n_corrupt`` pairs with a truncated science file."""
    write_images(cfg.n_pairs, inputs, config=cfg.simulation, seed=cfg.seed, progress=progress)
    manifest = pairs_in_folder(inputs)
    corrupt = []
    for j in range(cfg.n_corrupt):
        # a real pair whose science file lost its second half in transfer
        good = manifest.iloc[j % len(manifest)]
        bad = inputs / f"corrupt{j:04d}_science.fits"
        data = Path(good["science_path"]).read_bytes()
        bad.write_bytes(data[: len(data) // 2])
        corrupt.append(dict(pair_id=f"corrupt{j:04d}", reference_path=good["reference_path"], science_path=str(bad)))
    return pd.concat([manifest, pd.DataFrame(corrupt)], ignore_index=True)


def run_demo(cfg: DemoConfig | None = None, *, progress: bool = True, verbose: bool = True) -> DemoSummary:
    """Simulate, difference, detect and write alerts on a local Ray or the cluster this runs on.

    Outputs under ``cfg.output_dir``: ``inputs/`` (FITS pairs and ``truth.parquet``),
    ``alerts/`` and ``catalog/`` (Parquet datasets, one part per pair),
    ``difference/`` (FITS), ``manifest.parquet`` (every input and its status),
    ``quarantine.parquet`` (bad inputs with the reason) and ``overview.png``.
    """
    cfg = cfg or DemoConfig()
    t_start = time.perf_counter()
    out = Path(cfg.output_dir) if cfg.output_dir else astroray_home() / "demo"
    scorer, model_info, trained_seconds = None, None, None
    if cfg.realbogus is not None:  # first: a missing model fails before any work
        scorer = cfg.realbogus.model_copy(update={"tracking_uri": cfg.realbogus.tracking_uri or cfg.tracking_uri})
        model_info, trained_seconds = ensure_realbogus_model(scorer, cfg.train_if_missing, out=out,
                                                             num_actors=cfg.num_actors, progress=progress,
                                                             verbose=verbose)
        scorer = scorer.model_copy(update={"model_uri": model_info["pinned_uri"]})
    for sub in ("inputs", "alerts", "catalog", "difference"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True, exist_ok=True)
    manifest = _simulate_inputs(cfg, out / "inputs", progress)

    job = DifferenceJobConfig(pipeline=cfg.pipeline, num_actors=cfg.num_actors,
                              num_gpus_per_actor=cfg.num_gpus_per_actor, write_difference=True, realbogus=scorer)
    status = run_pairs(manifest, out, job, progress=progress)
    quarantined = status[status["status"] != "ok"]

    catalog = _read_parts(out / "catalog")
    truth = pd.read_parquet(out / "inputs" / "truth.parquet")
    ok_pairs = set(status.loc[status["status"] == "ok", "pair_id"])
    truth = truth[truth["pair_id"].isin(ok_pairs)] if not truth.empty else truth
    n_real = n_rec = n_bright = n_rec_bright = 0
    for pair_id, t in truth.groupby("pair_id") if not truth.empty else []:
        real = t[t["real"].astype(bool)]
        cat = catalog[catalog["pair_id"] == pair_id] if not catalog.empty else catalog
        hit = match_to_truth(cat, real, radius=cfg.match_radius)
        bright = real["snr_expected"].to_numpy() >= 7
        n_real += len(real)
        n_rec += int(hit.sum())
        n_bright += int(bright.sum())
        n_rec_bright += int(hit[bright].sum())

    realbogus = {}
    if model_info is not None:
        threshold = cfg.realbogus.threshold
        if threshold is None:
            threshold = float(model_info["metadata"].get("threshold", 0.5))
        realbogus = dict(model=f"{model_info['name']} v{model_info['version']}", version=model_info["version"],
                         threshold=threshold, trained_seconds=trained_seconds,
                         **realbogus_scores(catalog, truth, threshold=threshold, radius=cfg.match_radius))

    overview = _overview(out, status, catalog, truth)
    n_alerts = int(status["n_alerts"].fillna(0).sum())
    summary = DemoSummary(
        output_dir=out, n_inputs=len(status), n_ok=len(ok_pairs),
        n_quarantined=int((status["status"] == "quarantined").sum()),
        n_failed=int((status["status"] == "failed").sum()),
        n_detections=int(status["n_detections"].fillna(0).sum()), n_alerts=n_alerts,
        n_on_streak=int(catalog["on_streak"].fillna(False).sum()) if "on_streak" in catalog else 0,
        n_streaks=int(status["n_streaks"].fillna(0).sum()),
        n_injected_real=n_real, n_recovered_real=n_rec, n_injected_bright=n_bright,
        n_recovered_bright=n_rec_bright, seconds=time.perf_counter() - t_start,
        files={"alerts": str(out / "alerts"), "catalog": str(out / "catalog"),
               "manifest": str(out / "manifest.parquet"), "quarantine": str(out / "quarantine.parquet"),
               "overview": str(overview) if overview else "(no processed pair)"},
        realbogus=realbogus)
    if cfg.track:
        _log_to_mlflow(cfg, summary)
    if verbose:
        print(summary.to_text())
        for row in quarantined.itertuples():
            print(f"{row.status} {row.pair_id}: {row.reason}")
    return summary


def realbogus_scores(catalog: pd.DataFrame, truth: pd.DataFrame, *, threshold: float, radius: float) -> dict:
    """Precision and recall of the catalog's ``rb >= threshold`` against the truth, per candidate.

    A candidate is real when an injected real change (``truth["real"]``) of its
    pair lies within ``radius`` pixels (the demo's recovery matching); candidates
    with a NaN ``rb`` (nothing finite to judge) count as scored bogus.
    """
    n_scored = n_real = n_called = tp = 0
    if not catalog.empty and "rb" in catalog:
        for pair_id, cat in catalog.groupby("pair_id"):
            t = truth[(truth["pair_id"] == pair_id) & truth["real"].astype(bool)] if not truth.empty else truth
            _, dist = nearest_truth(cat, t)
            real = dist <= radius
            rb = cat["rb"].to_numpy(np.float64)
            called = np.where(np.isfinite(rb), rb >= threshold, False)
            n_scored += len(cat)
            n_real += int(real.sum())
            n_called += int(called.sum())
            tp += int((real & called).sum())
    return dict(n_scored=n_scored, n_real=n_real, n_scored_real=n_called, true_positives=tp,
                precision=tp / n_called if n_called else float("nan"), recall=tp / n_real if n_real else float("nan"))


def ensure_realbogus_model(scorer: StampScorerConfig, training: DemoTrainingConfig | None, *, out: Path,
                           num_actors: int = 2, progress: bool = True, verbose: bool = True):
    """The registry entry ``scorer.model_uri`` points at (:func:`~astroray.models.scoring.resolve_model`),
    training and registering a small model first when it is the default champion and the store has none.

    Returns ``(info, seconds spent training or None)``.

    Raises
    ------
    ConfigError
        The model is missing and cannot or may not be trained here (the message says what to do).
    """
    from astroray.errors import ConfigError
    from astroray.models.scoring import resolve_model
    from astroray.tracking import tracking_uri

    store = tracking_uri(scorer.tracking_uri)
    try:
        return resolve_model(scorer.model_uri, tracking_uri=store), None
    except ConfigError as exc:
        if training is None or scorer.model_uri != DEFAULT_REALBOGUS_URI:
            raise ConfigError(f"realbogus: {exc}; train one (jobs/train_realbogus.py), point realbogus.model_uri "
                              "at one, or set realbogus: null to run without scoring") from None
    if verbose:
        print(f"no {DEFAULT_REALBOGUS_URI} in {store}: training a small one first "
              f"({training.n_pairs} pairs of {training.size} px, {training.max_epochs} epochs)", flush=True)
    t0 = time.perf_counter()
    _train_small_model(training, out / "realbogus_stamps", store, num_actors=num_actors, progress=progress)
    return resolve_model(scorer.model_uri, tracking_uri=store), time.perf_counter() - t0


def _train_small_model(training: DemoTrainingConfig, stamps: Path, store: str, *, num_actors: int,
                       progress: bool) -> dict:
    from astroray.ray.stamps import StampJobConfig
    from astroray.ray.train_realbogus import TrainRealBogusConfig, train_realbogus

    shutil.rmtree(stamps, ignore_errors=True)  # made afresh: stamps of another config must not mix in
    sky = StampJobConfig().simulation.with_updates(shape=(training.size, training.size))
    cfg = TrainRealBogusConfig(
        data=str(stamps), tracking_uri=store, run_name="demo-small-model", gallery_size=8,
        stamps=StampJobConfig(n_pairs=training.n_pairs, seed=training.seed, simulation=sky, num_actors=num_actors,
                              splits={"train": 0.7, "val": 0.15, "test": 0.15}),
        model={"base_width": training.base_width},
        train={"num_workers": training.num_workers, "max_epochs": training.max_epochs,
               "batch_size": training.batch_size, "monitor": "val_auc", "monitor_mode": "max"})
    return train_realbogus(cfg, progress=progress)


def _read_parts(folder: Path) -> pd.DataFrame:
    parts = sorted(folder.glob("*.parquet"))
    if not parts:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def _overview(out: Path, status: pd.DataFrame, catalog: pd.DataFrame, truth: pd.DataFrame):
    from astroray.imaging.plots import plot_pair_overview
    from astroray.io.fits import read_exposure, read_image

    ok = status[status["status"] == "ok"]
    if ok.empty:
        return None
    first = ok.sort_values("n_streaks", ascending=False, kind="stable").iloc[0]  # a streak, if any, is worth a look
    diff_path = out / "difference" / f"{first.pair_id}.fits"
    if not diff_path.exists():
        return None
    difference, _ = read_image(diff_path)
    sci = read_exposure(first.science_path)
    ref = read_exposure(first.reference_path)
    cat = catalog[catalog["pair_id"] == first.pair_id] if not catalog.empty else None
    tr = truth[truth["pair_id"] == first.pair_id] if not truth.empty else None
    return plot_pair_overview(sci.image, ref.image, difference, out / "overview.png", catalog=cat, truth=tr,
                              title=f"{first.pair_id}: reference, science, difference")


def _log_to_mlflow(cfg: DemoConfig, summary: DemoSummary) -> None:
    from astroray.tracking import setup_mlflow

    mlflow = setup_mlflow("astroray-demo", uri=cfg.tracking_uri)
    with mlflow.start_run(run_name="demo"):
        mlflow.log_params({"n_pairs": cfg.n_pairs, "seed": cfg.seed, "shape": str(tuple(cfg.simulation.shape)),
                           "method": cfg.pipeline.difference.method, "device": cfg.pipeline.device})
        mlflow.log_metrics({"recovered_fraction": summary.recovered_fraction,
                            "recovered_fraction_snr7": summary.recovered_fraction_bright,
                            "n_detections": summary.n_detections, "n_quarantined": summary.n_quarantined,
                            "n_on_streak": summary.n_on_streak, "seconds": summary.seconds})
        rb = summary.realbogus
        if rb:
            mlflow.log_params({"realbogus_model": rb["model"], "realbogus_threshold": rb["threshold"]})
            mlflow.log_metrics({f"rb_{k}": float(rb[k]) for k in ("precision", "recall", "n_scored", "n_real")
                                if np.isfinite(rb[k])})
        overview = summary.files.get("overview", "")
        if overview.endswith(".png"):
            mlflow.log_artifact(overview)
