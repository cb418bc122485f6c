"""``astroray score stamps``: real/bogus scores of every candidate in alert files or stamp Parquet.

Inputs (a file, or a folder walked in name order): any alert file
:func:`astroray.io.read_alerts` reads (ZTF and Rubin Avro, Fink/Rubin Parquet,
JSON, astroray's own alert Parquet) and the labelled stamp Parquet of
``jobs/make_stamps.py``.  Every candidate is scored by one
:class:`~astroray.models.scoring.StampScorer` (the model loaded once) in
batches; cutouts of other sizes than the model's are centre-cropped or padded
with NaN (:func:`~astroray.models.scoring.fit_stamp`).

Outputs: one Parquet row per scored candidate (:data:`SCORE_SCHEMA`: its id,
``rb``, ``real`` at the model's threshold, the model's name and version, and
the survey's own scores beside ours for comparison) and a quarantine table of
what could not be scored, each with the reason (an unreadable file, an alert
without cutouts, a difference cutout with no finite pixel).  In a folder,
files that hold no alerts (schemas, documentation) are skipped and counted.

Runs in the calling process (no Ray needed: the model is small and batched); it
lives beside the Ray adapters as the command-line face of the same scorer the
image job's actors and the Serve deployment use.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from astroray.errors import InvalidInputError
from astroray.models.scoring import StampScorer, StampScorerConfig

__all__ = ["SCORE_SCHEMA", "QUARANTINE_SCHEMA", "ScoreReport", "score_stamps", "is_stamp_parquet"]

SCORE_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("object_id", pa.string()),
    ("source", pa.string()),
    ("survey", pa.string()),
    ("rb", pa.float32()),
    ("real", pa.bool_()),
    ("threshold", pa.float32()),
    ("model_name", pa.string()),
    ("model_version", pa.int32()),
    ("survey_scores", pa.map_(pa.string(), pa.float64())),
    ("label", pa.int8()),
    ("kind", pa.string()),
])
"""One row per scored candidate.  ``id``: the alert id, or the stamp's ``candidate_id``; ``survey_scores``: the
alert's own scores (ZTF ``rb``/``drb``, Rubin ``reliability``; empty for stamps); ``label``/``kind``: the stamp
file's truth (null for alerts)."""

QUARANTINE_SCHEMA = pa.schema([("source", pa.string()), ("id", pa.string()), ("reason", pa.string())])
"""One row per record (or whole file, ``id`` null) that could not be scored, with the reason."""

_STAMP_COLUMNS = {"candidate_id", "stamp_size", "difference"}
_CHUNK = 256


def is_stamp_parquet(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Parquet file of labelled stamps (``candidate_id``, ``stamp_size``, ``difference``)."""
    import pyarrow.parquet as pq

    from astroray.io.limits import open_regular
    from astroray.io.sniff import PARQUET_MAGIC

    try:
        with open_regular(Path(path)) as fh:
            if fh.read(4) != PARQUET_MAGIC:
                return False
            fh.seek(0)
            return _STAMP_COLUMNS <= set(pq.ParquetFile(fh).schema_arrow.names)
    except (OSError, InvalidInputError, pa.ArrowException):
        return False


@dataclass
class ScoreReport:
    """What :func:`score_stamps` did (``to_dict`` is what the command prints)."""

    out: str
    quarantine: str
    model: dict
    threshold: float
    n_files: int = 0
    n_scored: int = 0
    n_real: int = 0
    n_quarantined: int = 0
    reasons: dict = field(default_factory=dict)
    """Quarantine counts by reason (file-specific prefixes removed)."""
    skipped: dict = field(default_factory=dict)
    """Files in a folder that hold no alerts, counted by kind."""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("out", "quarantine", "model", "threshold", "n_files", "n_scored",
                                              "n_real", "n_quarantined", "reasons", "skipped", "seconds")}


class _Collector:
    """Rows of the two output tables, by column."""

    def __init__(self, scorer: StampScorer):
        self.scorer = scorer
        self.rows = {name: [] for name in SCORE_SCHEMA.names}
        self.quarantined = {name: [] for name in QUARANTINE_SCHEMA.names}
        self.reasons: dict[str, int] = {}

    def quarantine(self, source: str, record_id, reason: str) -> None:
        self.quarantined["source"].append(source)
        self.quarantined["id"].append(None if record_id is None else str(record_id))
        self.quarantined["reason"].append(reason)
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def scored(self, source: str, ids, scores, *, object_ids=None, surveys=None, survey_scores=None, labels=None,
               kinds=None) -> None:
        n = len(ids)
        model, threshold = self.scorer.info, float(self.scorer.threshold)
        rows = self.rows
        rows["id"] += [str(i) for i in ids]
        rows["object_id"] += [None if o is None else str(o) for o in (object_ids or [None] * n)]
        rows["source"] += [source] * n
        rows["survey"] += list(surveys or [None] * n)
        rows["rb"] += [float(s) for s in scores]
        rows["real"] += [bool(s >= threshold) for s in scores]
        rows["threshold"] += [threshold] * n
        rows["model_name"] += [model.get("name")] * n
        rows["model_version"] += [model.get("version")] * n
        rows["survey_scores"] += [list((k, float(v)) for k, v in (d or {}).items()) for d in
                                  (survey_scores or [None] * n)]
        rows["label"] += [None if v is None else int(v) for v in (labels if labels is not None else [None] * n)]
        rows["kind"] += list(kinds if kinds is not None else [None] * n)

    def score_alerts(self, source: str, alerts) -> None:
        stamps, reasons = self.scorer.alert_stamps(alerts)
        ok = [i for i, r in enumerate(reasons) if r is None]
        for i, reason in enumerate(reasons):
            if reason is not None:
                self.quarantine(source, alerts[i].alert_id, reason)
        if not ok:
            return
        scores = self.scorer.run(stamps[ok]).scores
        keep = [alerts[i] for i in ok]
        self.scored(source, [a.alert_id for a in keep], scores, object_ids=[a.object_id for a in keep],
                    surveys=[a.survey for a in keep], survey_scores=[_finite_scores(a.scores) for a in keep])

    def score_stamp_table(self, source: str, table: pa.Table) -> None:
        from astroray.datasets.stamps import stamp_arrays

        channels = self.scorer.channels
        missing = [c for c in channels if c not in table.column_names]
        ids = table["candidate_id"].to_pylist()
        if missing:
            for i in ids:
                self.quarantine(source, i, f"the stamp file lacks the channel(s) {missing} the model reads")
            return
        arrays = stamp_arrays(table, names=channels)
        stack = np.stack([arrays[c] for c in channels], axis=1).astype(np.float32, copy=False)
        size = self.scorer.stamp_size
        if stack.shape[-1] > size:  # centre crop to the model's size
            start = (stack.shape[-1] - size) // 2
            stack = stack[..., start:start + size, start:start + size]
        key = stack[:, channels.index("difference")] if "difference" in channels else stack
        judgeable = np.isfinite(key.reshape(len(stack), -1)).any(axis=1)
        for i in np.flatnonzero(~judgeable):
            self.quarantine(source, ids[i], "no finite pixel in the difference cutout")
        ok = np.flatnonzero(judgeable)
        if len(ok) == 0:
            return
        scores = self.scorer.run(stack[ok]).scores
        cols = table.column_names
        self.scored(source, [ids[i] for i in ok], scores,
                    object_ids=[table["pair_id"][int(i)].as_py() for i in ok] if "pair_id" in cols else None,
                    labels=[table["label"][int(i)].as_py() for i in ok] if "label" in cols else None,
                    kinds=[table["kind"][int(i)].as_py() for i in ok] if "kind" in cols else None)

    def tables(self) -> tuple[pa.Table, pa.Table]:
        return (pa.table(self.rows, schema=SCORE_SCHEMA),
                pa.table(self.quarantined, schema=QUARANTINE_SCHEMA))


def _finite_scores(scores: dict) -> dict:
    return {str(k): float(v) for k, v in (scores or {}).items() if v is not None and np.isfinite(float(v))}


def _inputs(path: Path) -> tuple[list[Path], bool]:
    """The files to read under ``path`` (a file, or a folder walked in name order) and whether it was a folder."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()), True
    if not path.exists():
        raise InvalidInputError("no such file or folder", source=str(path))
    return [path], False


def _score_file(collector: _Collector, path: Path, in_folder: bool, skipped: dict) -> bool:
    """Score one file; False when it was skipped (a folder's file holding no alerts)."""
    import pyarrow.parquet as pq

    from astroray.io import detect_format, iter_alerts
    from astroray.io.limits import open_regular

    source = str(path)
    if is_stamp_parquet(path):
        try:
            with open_regular(path) as fh:
                for batch in pq.ParquetFile(fh).iter_batches(batch_size=collector.scorer.config.batch_size):
                    collector.score_stamp_table(source, pa.Table.from_batches([batch]))
        except (OSError, pa.ArrowException) as exc:
            collector.quarantine(source, None, f"unreadable stamp Parquet: {exc}")
        return True
    fmt = detect_format(path)
    if fmt.kind != "alerts":
        if in_folder:
            skipped[fmt.kind] = skipped.get(fmt.kind, 0) + 1
            return False
        collector.quarantine(source, None, f"not an alert file or stamp Parquet ({fmt.kind}: {fmt.detail})")
        return True
    chunk = []
    try:
        for alert in iter_alerts(path):
            chunk.append(alert)
            if len(chunk) == _CHUNK:
                collector.score_alerts(source, chunk)
                chunk = []
    except InvalidInputError as exc:  # the rest of the file is unreadable: what was read is kept
        collector.quarantine(source, None, exc.reason)
    if chunk:
        collector.score_alerts(source, chunk)
    return True


def _write_parquet(table: pa.Table, path: Path) -> None:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)  # readers never see half a file


def score_stamps(input_path: str | os.PathLike, out: str | os.PathLike, *, scorer: StampScorer | None = None,
                 config: StampScorerConfig | dict | None = None, quarantine: str | os.PathLike | None = None,
                 overwrite: bool = False, progress: bool = False) -> ScoreReport:
    """Score every candidate under ``input_path``; write ``out`` (:data:`SCORE_SCHEMA`) and the quarantine table.

    Parameters
    ----------
    input_path : path
        An alert file, a stamp Parquet file, or a folder of them.
    out : path
        The scores' Parquet file.
    scorer : StampScorer, optional
        An already loaded scorer; else one is built from ``config``.
    config : StampScorerConfig or dict, optional
        The model (``model_uri``, default ``models:/astroray-realbogus@champion``), store and device.
    quarantine : path, optional
        Default: ``out`` with ``.quarantine.parquet`` in place of its suffix.
    overwrite : bool
        Replace existing output files (else they are refused).

    Raises
    ------
    InvalidInputError
        No such input, or an output exists and ``overwrite`` is False.
    ConfigError
        The model cannot be loaded (the message names the store).
    """
    t0 = time.perf_counter()
    input_path, out = Path(input_path), Path(out)
    quarantine = Path(quarantine) if quarantine else out.with_name(out.name.removesuffix(".parquet")
                                                                   + ".quarantine.parquet")
    for target in (out, quarantine):
        if target.exists() and not overwrite:
            raise InvalidInputError("exists: pass --overwrite to replace it, or choose another name",
                                    source=str(target))
    files, in_folder = _inputs(input_path)
    scorer = scorer or StampScorer(config)
    collector = _Collector(scorer)
    skipped: dict[str, int] = {}
    n_files = 0
    from tqdm.auto import tqdm

    for path in tqdm(files, desc="score", unit="file", disable=not progress):
        n_files += int(_score_file(collector, path, in_folder, skipped))
    scores, quarantined = collector.tables()
    _write_parquet(scores, out)
    _write_parquet(quarantined, quarantine)
    return ScoreReport(out=str(out), quarantine=str(quarantine),
                       model={k: scorer.info.get(k) for k in ("name", "version", "run_id", "uri")},
                       threshold=float(scorer.threshold), n_files=n_files, n_scored=scores.num_rows,
                       n_real=int(np.sum(scores["real"].to_numpy(zero_copy_only=False))) if scores.num_rows else 0,
                       n_quarantined=quarantined.num_rows, reasons=dict(sorted(collector.reasons.items())),
                       skipped=skipped, seconds=round(time.perf_counter() - t0, 3))
