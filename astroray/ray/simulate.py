"""Ray Data adapter for the simulators: ``ray.data.range(n).map_batches(...)`` writing Parquet.

Every generator in :mod:`astroray.datasets` is a pure function of
``(config, seed, index)``, so a batch of indices can be generated on any
worker of any node and the data set is the same however Ray splits it.

* light curves: one row per object (:data:`~astroray.records.LIGHTCURVE_SCHEMA`
  columns plus the truth columns prefixed ``truth_``);
* text: one row per document (``entities`` as a JSON string);
* images: the workers write the FITS pair files into ``out_dir/fits`` (which
  must be shared storage on a multi-node cluster) and return the truth rows.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import ray

from astroray.datasets.writers import SIMULATORS, resolve_config
from astroray.errors import InvalidInputError

__all__ = ["simulate_dataset", "write_simulated_parquet"]


def _index_runs(ids: np.ndarray):
    """Contiguous runs of sorted indices: ``[(start, length), ...]``."""
    ids = np.sort(np.asarray(ids, dtype=np.int64))
    if ids.size == 0:
        return []
    breaks = np.nonzero(np.diff(ids) != 1)[0] + 1
    return [(int(r[0]), int(len(r))) for r in np.split(ids, breaks)]


class _LightCurveBatch:
    def __init__(self, config, seed):
        self.config, self.seed = config, seed

    def __call__(self, batch: dict) -> pa.Table:
        from astroray.datasets.lightcurves import simulate_lightcurve_table

        tables = []
        for start, n in _index_runs(batch["id"]):
            table, truth = simulate_lightcurve_table(n, config=self.config, seed=self.seed, start=start)
            for col in truth.columns:
                if col not in ("object_id", "label", "survey"):
                    table = table.append_column(f"truth_{col}", pa.array(truth[col].to_numpy()))
            tables.append(table)
        return pa.concat_tables(tables)


class _TextBatch:
    def __init__(self, config, seed):
        self.config, self.seed = config, seed

    def __call__(self, batch: dict) -> pd.DataFrame:
        from astroray.datasets.text import simulate_documents

        rows = []
        for start, n in _index_runs(batch["id"]):
            for doc in simulate_documents(n, config=self.config, seed=self.seed, start=start):
                d = doc.to_dict()
                d["entities"] = json.dumps(d["entities"])
                rows.append(d)
        return pd.DataFrame(rows, columns=["doc_id", "kind", "title", "text", "entities"])


class _ImageBatch:
    def __init__(self, config, seed, fits_dir):
        self.config, self.seed, self.fits_dir = config, seed, fits_dir

    def __call__(self, batch: dict) -> pd.DataFrame:
        from astroray.datasets.images import TRUTH_COLUMNS, simulate_pair
        from astroray.io.fits import write_exposure

        truths = []
        for index in np.sort(np.asarray(batch["id"], dtype=np.int64)):
            pair = simulate_pair(self.config, seed=self.seed, index=int(index))
            for name, exposure in (("reference", pair.reference), ("science", pair.science)):
                write_exposure(exposure, Path(self.fits_dir) / f"{pair.pair_id}_{name}.fits", overwrite=True)
            truths.append(pair.truth)
        if not truths:
            return pd.DataFrame(columns=list(TRUTH_COLUMNS))
        return pd.concat(truths, ignore_index=True)


def simulate_dataset(kind: str, n: int, *, config=None, seed: int = 0, batch_size: int | None = None,
                     fits_dir: str | os.PathLike | None = None) -> ray.data.Dataset:
    """A lazy Ray Dataset of ``n`` simulated items of ``kind`` ("images", "lightcurves", "text").

    Parameters
    ----------
    kind : str
    n : int
    config : config object, dict or YAML path, optional
    seed : int
    batch_size : int, optional
        Indices per batch (default: 1024 light curves, 200 documents, 1 pair).
    fits_dir : path-like
        Required for images: where the workers write the FITS files.
    """
    if kind not in SIMULATORS:
        raise InvalidInputError(f"unknown simulation kind {kind!r}; expected one of {', '.join(SIMULATORS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidInputError(f"n must be a non-negative integer, got {n!r}")
    cfg = resolve_config(config, SIMULATORS[kind])
    ds = ray.data.range(n)
    if kind == "lightcurves":
        # batches of whole seeded blocks: no block is generated twice
        return ds.map_batches(_LightCurveBatch(cfg, seed), batch_size=batch_size or 1024, batch_format="numpy")
    if kind == "text":
        return ds.map_batches(_TextBatch(cfg, seed), batch_size=batch_size or 200, batch_format="numpy")
    if fits_dir is None:
        raise InvalidInputError("images need fits_dir: the folder the workers write FITS files into")
    Path(fits_dir).mkdir(parents=True, exist_ok=True)
    return ds.map_batches(_ImageBatch(cfg, seed, str(fits_dir)), batch_size=batch_size or 1, batch_format="numpy")


def write_simulated_parquet(kind: str, n: int, out_dir: str | os.PathLike, *, config=None, seed: int = 0,
                            batch_size: int | None = None) -> dict[str, Any]:
    """Generate ``n`` items of ``kind`` with Ray Data and write them as Parquet under ``out_dir``.

    Light curves go to ``out_dir/lightcurves``, text to ``out_dir/documents``,
    image truth to ``out_dir/truth`` (FITS files to ``out_dir/fits``).

    Returns
    -------
    dict
        ``kind``, ``n``, ``rows``, ``path``, ``seconds``.
    """
    out = Path(out_dir)
    t0 = time.perf_counter()
    target = {"lightcurves": "lightcurves", "text": "documents", "images": "truth"}.get(kind, "data")
    ds = simulate_dataset(kind, n, config=config, seed=seed, batch_size=batch_size,
                          fits_dir=out / "fits" if kind == "images" else None)
    path = out / target
    ds.write_parquet(str(path))
    # a sink writes no file for an empty data set
    rows = ray.data.read_parquet(str(path)).count() if path.exists() and any(path.iterdir()) else 0
    return {"kind": kind, "n": n, "rows": int(rows), "path": str(path), "seconds": round(time.perf_counter() - t0, 3)}
