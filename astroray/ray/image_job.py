"""Run the image pipeline over many exposure pairs with Ray Data.

Shared by the demo and ``jobs/difference.py``.  Inputs are a manifest of
(pair_id, reference_path, science_path); outputs are Parquet part files per
pair, a manifest with every input's status, and a quarantine table.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import pandas as pd
from pydantic import Field

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError
from astroray.imaging.pipeline import ImagePipelineConfig

__all__ = ["DifferenceJobConfig", "pairs_in_folder", "run_pairs"]


class DifferenceJobConfig(AstrorayConfig):
    """Config of ``jobs/difference.py`` (``configs/difference.yaml``)."""

    pipeline: ImagePipelineConfig = Field(default_factory=ImagePipelineConfig)
    num_actors: int = Field(default=2, ge=1)
    """Pipeline actors (one pair at a time each); on GPU nodes, actors share GPUs by num_gpus_per_actor."""
    num_gpus_per_actor: float = Field(default=0.0, ge=0.0)
    write_difference: bool = True
    actor_restarts: int | None = Field(default=None, ge=-1)
    """``max_restarts`` of the pipeline actors: None restarts them (and retries their pairs) on a cluster,
    where a node can be lost, and not on a local Ray started by the job; -1 is unlimited."""


_PAIR_NAME = re.compile(r"^(?P<pair>.+?)[_.-](?P<role>reference|ref|template|science|sci|new)\.fits?$", re.I)


def pairs_in_folder(folder: str | Path) -> pd.DataFrame:
    """Pair ``<id>_reference.fits`` with ``<id>_science.fits`` (also ``ref``/``template``, ``sci``/``new``).

    Raises
    ------
    InvalidInputError
        No pair found.  Unpaired files are returned with a missing path, so
        the job quarantines them instead of dropping them.
    """
    folder = Path(folder)
    found: dict[str, dict] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = _PAIR_NAME.match(path.name)
        if not m:
            continue
        role = "reference_path" if m["role"].lower() in ("reference", "ref", "template") else "science_path"
        found.setdefault(m["pair"], {"pair_id": m["pair"], "reference_path": "", "science_path": ""})[role] = str(path)
    if not found:
        raise InvalidInputError("no <id>_reference.fits / <id>_science.fits pairs found", source=str(folder))
    return pd.DataFrame(list(found.values()))


def run_pairs(manifest: pd.DataFrame, out: Path, cfg: DifferenceJobConfig, *, progress: bool = True) -> pd.DataFrame:
    """Process every pair of ``manifest`` on Ray; write ``manifest.parquet`` and ``quarantine.parquet`` under ``out``.

    Returns the manifest with ``status`` (ok | quarantined), ``reason``,
    ``n_detections``, ``n_alerts``, ``n_streaks`` (satellite streaks found) and ``ms`` per pair.
    """
    from tqdm.auto import tqdm

    from astroray.ray.data import PairProcessor
    from astroray.ray.runtime import actor_restarts, ensure_ray, quiet_ray_data_progress

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ray = ensure_ray()  # joins the cluster under `ray job submit`
    quiet_ray_data_progress()  # one bar of our own, counting pairs
    items = manifest[["pair_id", "reference_path", "science_path"]].to_dict("records")
    with warnings.catch_warnings():
        # max_restarts has no named parameter in Ray 2.60 and its **kwargs route is deprecated for 2.64
        # (Ray is pinned below 2.61: revisit on upgrade)
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ray.data.from_items(items).map_batches(
            PairProcessor,
            fn_constructor_kwargs=dict(pipeline_config=cfg.pipeline.model_dump(mode="json"), output_dir=str(out),
                                       write_difference=cfg.write_difference),
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(cfg.num_actors, len(items))),
            num_gpus=cfg.num_gpus_per_actor or None,
            max_restarts=actor_restarts(cfg.actor_restarts),
        )
    rows = []
    with tqdm(total=len(items), desc="difference + detect", unit="pair", disable=not progress) as bar:
        for row in ds.iter_rows():
            rows.append(row)
            bar.update(1)
    status = manifest.merge(pd.DataFrame(rows), on="pair_id", how="left").sort_values("pair_id", ignore_index=True)
    status["status"] = status["status"].fillna("lost")  # never expected; kept so nothing vanishes silently
    status.to_parquet(out / "manifest.parquet", index=False)
    status[status["status"] != "ok"].to_parquet(out / "quarantine.parquet", index=False)
    return status
