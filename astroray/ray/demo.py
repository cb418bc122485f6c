"""The end-to-end demo job: simulated sky -> Ray Data image pipeline -> alerts, catalog, overview.

``astroray demo`` and ``jobs/demo.py`` both call :func:`run_demo`.  It runs on
a local Ray (started here) or, under ``ray job submit``, on the cluster the job
was submitted to; the code is the same.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import Field

from astroray.config import AstrorayConfig, astroray_home
from astroray.datasets import ImagePairConfig, write_images
from astroray.eval import match_to_truth
from astroray.imaging.pipeline import ImagePipelineConfig
from astroray.ray.image_job import DifferenceJobConfig, pairs_in_folder, run_pairs

__all__ = ["DemoConfig", "DemoSummary", "run_demo"]


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
            ("wall time", f"{self.seconds:.1f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = ["astroray demo summary", "-" * (width + 24)]
        lines += [f"{k:<{width}}  {v}" for k, v in rows]
        lines.append("-" * (width + 24))
        lines += [f"{k:<{width}}  {v}" for k, v in self.files.items()]
        return "\n".join(lines)


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
    for sub in ("inputs", "alerts", "catalog", "difference"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True, exist_ok=True)
    manifest = _simulate_inputs(cfg, out / "inputs", progress)

    job = DifferenceJobConfig(pipeline=cfg.pipeline, num_actors=cfg.num_actors,
                              num_gpus_per_actor=cfg.num_gpus_per_actor, write_difference=True)
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
               "overview": str(overview) if overview else "(no processed pair)"})
    if cfg.track:
        _log_to_mlflow(cfg, summary)
    if verbose:
        print(summary.to_text())
        for row in quarantined.itertuples():
            print(f"{row.status} {row.pair_id}: {row.reason}")
    return summary


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
        overview = summary.files.get("overview", "")
        if overview.endswith(".png"):
            mlflow.log_artifact(overview)
