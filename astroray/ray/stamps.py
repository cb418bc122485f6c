"""Real/bogus training stamps on Ray Data: simulated pairs through the real image pipeline, labelled, to Parquet.

``jobs/make_stamps.py`` calls :func:`make_stamps`: the pair indices
feeds an actor pool (each actor builds the pipeline once) that simulates pair
``i``, runs the pipeline and labels its candidates against the truth
(:func:`astroray.datasets.stamps.simulate_candidates`); the rows get a split
(train/val/test) from their pair id, so no pair is in two splits, and are
written as Parquet partitioned by split (``OUT/split=train/...``).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from pydantic import Field, model_validator

from astroray.config import AstrorayConfig
from astroray.datasets.images import ChangeConfig, ImagePairConfig
from astroray.imaging.pipeline import ImagePipelineConfig

__all__ = ["StampJobConfig", "CandidateStampMaker", "make_stamps", "class_balance"]


def _training_sky() -> ImagePairConfig:
    # Artifacts are rarer on the sky than real changes among raw detections only after masking: for training,
    # most are left unflagged (so the pipeline detects them) and they are injected more often.
    return ImagePairConfig(shape=(1024, 1024), artifact_mask_fraction=0.2, misregistration=0.1,
                           changes=ChangeConfig(cosmic_ray=60.0, cosmic_ray_reference=20.0, hot_pixel=30.0,
                                                bad_column=2.0, satellite_streak=1.0, dipole=15.0))


class StampJobConfig(AstrorayConfig):
    """Config of ``jobs/make_stamps.py`` (``configs/make_stamps.yaml``)."""

    n_pairs: int = Field(default=200, ge=1)
    seed: int = 7
    simulation: ImagePairConfig = Field(default_factory=_training_sky)
    pipeline: ImagePipelineConfig = Field(default_factory=ImagePipelineConfig)
    stamp_size: int = Field(default=63, ge=15)
    match_radius: float = Field(default=2.0, gt=0)
    """Pixels within which a real change claims a candidate."""
    splits: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    """Fractions of pairs (not of candidates: a pair's candidates stay together); cut exactly, by a hash of the id."""
    num_actors: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _consistent(self):
        if self.pipeline.cutout_size != self.stamp_size:
            raise ValueError(f"pipeline.cutout_size ({self.pipeline.cutout_size}) must equal stamp_size "
                             f"({self.stamp_size})")
        total = sum(self.splits.values())
        if any(v < 0 for v in self.splits.values()) or abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {self.splits}")
        return self


class CandidateStampMaker:
    """``map_batches`` callable: pair indices in, one status row per pair out.

    Each pair's labelled candidates (with their split) are written by the
    actor itself as ``out/split=<split>/<pair_id>.parquet`` (through a
    temporary name, so readers never see half a file), as the image job's
    actors write their parts: no write stage competes with the actors for CPUs.
    """

    def __init__(self, config: dict, output_dir: str):
        from astroray.config import config_from_dict
        from astroray.imaging.pipeline import ImagePipeline

        self.config = config_from_dict(StampJobConfig, config)
        self.pipeline = ImagePipeline(self.config.pipeline)
        self.output_dir = Path(output_dir)

    def __call__(self, batch: dict) -> dict:
        import os

        import numpy as np
        import pyarrow.parquet as pq

        from astroray.datasets.stamps import simulate_candidates
        cfg = self.config
        rows = {"index": [], "pair_id": [], "split": [], "n_candidates": [], "n_real": []}
        for i, split in zip(batch["id"], batch["split"]):
            table = simulate_candidates(self.pipeline, cfg.simulation, seed=cfg.seed, index=int(i),
                                        size=cfg.stamp_size, match_radius=cfg.match_radius)
            pair_id, split = pair_name(cfg.seed, int(i)), str(split)
            if table.num_rows:
                folder = self.output_dir / f"split={split}"
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f".{pair_id}.parquet.tmp"
                pq.write_table(table, tmp)
                os.replace(tmp, folder / f"{pair_id}.parquet")
            rows["index"].append(int(i))
            rows["pair_id"].append(pair_id)
            rows["split"].append(split)
            rows["n_candidates"].append(table.num_rows)
            rows["n_real"].append(int(np.sum(table["label"].to_numpy())) if table.num_rows else 0)
        return {k: np.asarray(v) for k, v in rows.items()}


def pair_name(seed: int, index: int) -> str:
    """The simulator's pair id of ``(seed, index)``."""
    return f"sim-s{seed}-i{index:06d}"


def pair_splits(cfg: StampJobConfig) -> list[str]:
    """The split of each pair: by a stable hash of its id, cut to the fractions exactly (every split non-empty)."""
    from astroray.eval.splits import split_groups

    ids = [pair_name(cfg.seed, i) for i in range(cfg.n_pairs)]
    if cfg.n_pairs < len([v for v in cfg.splits.values() if v > 0]):
        return [next(iter(cfg.splits))] * cfg.n_pairs
    return [str(v) for v in split_groups(ids, fractions=cfg.splits, balanced=True,
                                         salt=f"stamps-{cfg.seed}").assignment]


def make_stamps(cfg: StampJobConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Write the labelled stamps of ``cfg.n_pairs`` simulated pairs under ``out``; return the class balance.

    ``out/manifest.parquet`` lists every pair (its split and candidate
    count); ``out/class_balance.json`` the counts per split, label and kind.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from astroray.ray.runtime import actor_restarts, ensure_ray, quiet_ray_data_progress

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ray = ensure_ray()
    quiet_ray_data_progress()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # max_restarts: see astroray.ray.image_job
        # from_items, not range: a read task would need a CPU the actors may all hold (a deadlock on 2 cores)
        ds = ray.data.from_items([{"id": i, "split": s} for i, s in enumerate(pair_splits(cfg))]).map_batches(
            CandidateStampMaker, fn_constructor_kwargs={"config": cfg.model_dump(mode="json"),
                                                        "output_dir": str(out)},
            batch_size=1, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(cfg.num_actors, cfg.n_pairs)),
            max_restarts=actor_restarts(None))
    rows = []
    with tqdm(total=cfg.n_pairs, desc="simulate + pipeline + label", unit="pair", disable=not progress) as bar:
        for row in ds.iter_rows():
            rows.append(row)
            bar.update(1)
    pd.DataFrame(rows).sort_values("index").to_parquet(out / "manifest.parquet", index=False)
    balance = class_balance(out)
    (out / "class_balance.json").write_text(json.dumps(balance, indent=2))
    return balance


def class_balance(folder: str | Path) -> dict:
    """Counts per split, label and kind of a stamp folder (read from the small columns only)."""
    import pyarrow.dataset as pds

    files = sorted(str(p) for p in Path(folder).glob("split=*/*.parquet"))
    table = pds.dataset(files, format="parquet", partitioning="hive", partition_base_dir=str(folder)).to_table(
        columns=["split", "label", "kind", "pair_id"])
    df = table.to_pandas()
    out: dict = {"n_candidates": int(len(df)), "n_pairs": int(df["pair_id"].nunique()), "splits": {}}
    for split, part in df.groupby("split"):
        out["splits"][str(split)] = {
            "n": int(len(part)), "n_pairs": int(part["pair_id"].nunique()),
            "real": int((part["label"] == 1).sum()), "bogus": int((part["label"] == 0).sum()),
            "kinds": {str(k): int(v) for k, v in part["kind"].value_counts().items()}}
    return out
