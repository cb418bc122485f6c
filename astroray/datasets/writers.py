"""Write simulated data sets to disk: FITS + Parquet for images, Parquet for light curves, JSONL for text.

These are the functions behind ``astroray simulate images|lightcurves|text``;
each returns a JSON-able summary of what it wrote.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from astroray.config import AstrorayConfig, config_from_dict, load_config
from astroray.errors import InvalidInputError

from .images import ImagePairConfig, simulate_pair
from .lightcurves import BLOCK, LightCurveConfig, simulate_lightcurve_table, simulate_lightcurves
from .text import TextConfig, simulate_documents

__all__ = ["write_images", "write_lightcurves", "write_text", "write_simulated", "resolve_config", "SIMULATORS"]

SIMULATORS = {"images": ImagePairConfig, "lightcurves": LightCurveConfig, "text": TextConfig}
"""Kind -> its config model (what ``--config`` YAML is validated against)."""


def resolve_config(config, model: type[AstrorayConfig]):
    """``config`` as a ``model`` instance: None gives the defaults; a dict or YAML path is validated."""
    if config is None:
        return model()
    if isinstance(config, model):
        return config
    if isinstance(config, dict):
        return config_from_dict(model, config)
    if isinstance(config, (str, os.PathLike)):
        return load_config(config, model)
    raise InvalidInputError(f"config must be a {model.__name__}, a dict or a YAML path, got {type(config).__name__}")


def _check_n(n):
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidInputError(f"n must be a non-negative integer, got {n!r}")


def write_images(n: int, out_dir: str | os.PathLike, *, config=None, seed: int = 0, plot: bool = False,
                 start: int = 0, overwrite: bool = True, progress: bool = False) -> dict[str, Any]:
    """Simulate ``n`` image pairs and write them.

    Writes ``<pair_id>_reference.fits`` and ``<pair_id>_science.fits`` (see
    :mod:`astroray.io.fits`), one ``truth.parquet`` (the changes) and one
    ``sources.parquet`` (the static scene) for all pairs; with ``plot``,
    ``gallery.png`` of the first pairs.

    Parameters
    ----------
    n : int
    out_dir : path-like
    config : ImagePairConfig, dict or YAML path, optional
    seed, start : int
        Pairs ``start .. start + n - 1`` of ``seed``.
    plot : bool
    overwrite : bool
        Replace existing files.
    progress : bool
        Show a progress bar over the pairs.

    Returns
    -------
    dict
        ``kind``, ``n``, ``out_dir``, ``files``, ``truth``, ``sources``, ``n_changes``,
        ``n_real``, ``seconds``, ``plot``.
    """
    from tqdm.auto import tqdm

    from astroray.io.fits import write_exposure

    _check_n(n)
    cfg = resolve_config(config, ImagePairConfig)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files, truths, sources, shown = [], [], [], []
    for i in tqdm(range(start, start + n), desc="simulate pairs", unit="pair", disable=not progress):
        pair = simulate_pair(cfg, seed=seed, index=i)
        for name, exposure in (("reference", pair.reference), ("science", pair.science)):
            path = out / f"{pair.pair_id}_{name}.fits"
            write_exposure(exposure, path, overwrite=overwrite)
            files.append(str(path))
        truths.append(pair.truth)
        sources.append(pair.sources.assign(pair_id=pair.pair_id))
        if plot and len(shown) < 4:
            shown.append(pair)
    truth = pd.concat(truths, ignore_index=True) if truths else pd.DataFrame()
    truth_path = out / "truth.parquet"
    truth.to_parquet(truth_path, index=False)
    sources_path = out / "sources.parquet"
    (pd.concat(sources, ignore_index=True) if sources else pd.DataFrame()).to_parquet(sources_path, index=False)
    plot_path = None
    if plot and shown:
        from .plots import plot_pair_gallery

        plot_path = str(plot_pair_gallery(shown, out / "gallery.png"))
    return {"kind": "images", "n": n, "seed": seed, "out_dir": str(out), "files": len(files),
            "truth": str(truth_path), "sources": str(sources_path), "n_changes": int(len(truth)),
            "n_real": int(truth["real"].sum()) if len(truth) else 0,
            "seconds": round(time.perf_counter() - t0, 3), "plot": plot_path}


def write_lightcurves(n: int, out_dir: str | os.PathLike, *, config=None, seed: int = 0, plot: bool = False,
                      start: int = 0) -> dict[str, Any]:
    """Simulate ``n`` light curves into ``lightcurves.parquet`` (:data:`~astroray.records.LIGHTCURVE_SCHEMA`)
    and ``truth.parquet``; with ``plot``, ``gallery.png`` with a few light curves per class.

    Returns
    -------
    dict
        ``kind``, ``n``, ``out_dir``, ``lightcurves``, ``truth``, ``classes``
        (counts), ``seconds``, ``plot``.
    """
    import pyarrow.parquet as pq

    _check_n(n)
    cfg = resolve_config(config, LightCurveConfig)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    lc_path, truth_path = out / "lightcurves.parquet", out / "truth.parquet"
    truths = []
    writer = None
    try:
        step = 16 * BLOCK
        for lo in range(start, start + n, step):
            table, truth = simulate_lightcurve_table(min(step, start + n - lo), config=cfg, seed=seed, start=lo)
            if writer is None:
                writer = pq.ParquetWriter(lc_path, table.schema)
            writer.write_table(table)
            truths.append(truth)
        if writer is None:  # n == 0: still leave a valid, empty file
            table, _ = simulate_lightcurve_table(0, config=cfg, seed=seed)
            pq.write_table(table, lc_path)
    finally:
        if writer is not None:
            writer.close()
    truth = pd.concat(truths, ignore_index=True) if truths else pd.DataFrame()
    truth.to_parquet(truth_path, index=False)
    seconds = time.perf_counter() - t0
    plot_path = None
    if plot and n:
        from .plots import plot_lightcurve_gallery

        sample = simulate_lightcurves(min(n, 2 * BLOCK), config=cfg, seed=seed, start=start)
        plot_path = str(plot_lightcurve_gallery(sample.lightcurves, out / "gallery.png"))
    classes = truth["label"].value_counts().to_dict() if len(truth) else {}
    return {"kind": "lightcurves", "n": n, "seed": seed, "out_dir": str(out), "lightcurves": str(lc_path),
            "truth": str(truth_path), "classes": {str(k): int(v) for k, v in classes.items()},
            "seconds": round(seconds, 3), "per_second": round(n / seconds, 1) if seconds > 0 else None,
            "plot": plot_path}


def write_text(n: int, out_dir: str | os.PathLike, *, config=None, seed: int = 0, plot: bool = False,
               start: int = 0) -> dict[str, Any]:
    """Simulate ``n`` documents into ``documents.jsonl`` (one JSON object per line: doc_id, kind,
    title, text, entities); with ``plot``, ``documents.html`` with the spans highlighted.

    Returns
    -------
    dict
        ``kind``, ``n``, ``out_dir``, ``documents``, ``entities`` (counts per
        label), ``seconds``, ``plot``.
    """
    _check_n(n)
    cfg = resolve_config(config, TextConfig)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    path = out / "documents.jsonl"
    counts: dict[str, int] = {}
    shown = []
    with path.open("w", encoding="utf-8") as fh:
        for lo in range(start, start + n, 1000):
            for doc in simulate_documents(min(1000, start + n - lo), config=cfg, seed=seed, start=lo):
                fh.write(json.dumps(doc.to_dict(), ensure_ascii=False) + "\n")
                for ent in doc.entities:
                    counts[ent["label"]] = counts.get(ent["label"], 0) + 1
                if plot and len(shown) < 50:
                    shown.append(doc)
    plot_path = None
    if plot and shown:
        from .plots import spans_to_html

        plot_path = out / "documents.html"
        spans_to_html(shown, plot_path)
    return {"kind": "text", "n": n, "seed": seed, "out_dir": str(out), "documents": str(path), "entities": counts,
            "seconds": round(time.perf_counter() - t0, 3), "plot": None if plot_path is None else str(plot_path)}


_WRITERS = {"images": write_images, "lightcurves": write_lightcurves, "text": write_text}


def write_simulated(kind: str, *, n: int, out_dir: str | os.PathLike, seed: int = 0, config=None,
                    plot: bool = False) -> dict[str, Any]:
    """Dispatch to :func:`write_images`, :func:`write_lightcurves` or :func:`write_text`.

    ``config`` may be a YAML path validated against :data:`SIMULATORS` ``[kind]``.
    """
    if kind not in _WRITERS:
        raise InvalidInputError(f"unknown simulation kind {kind!r}; expected one of {', '.join(_WRITERS)}")
    return _WRITERS[kind](n, out_dir, config=resolve_config(config, SIMULATORS[kind]), seed=seed, plot=plot)
