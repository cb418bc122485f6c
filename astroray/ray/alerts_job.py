"""A night of alerts through Ray Data: every alert scored once, keyed by alert id (``jobs/classify_alerts.py``).

Inputs: alert files under a folder (ZTF and Rubin Avro, Fink/Rubin Parquet,
JSON, astroray's alert Parquet; anything :func:`astroray.io.read_alerts`
reads).  Each file is one task for a pool of actors, each holding one
:class:`~astroray.models.alert_scoring.AlertScorer` (its models loaded once,
at the versions the driver pinned when the job began).  An actor reads the
file, scores its alerts in batches and writes ``predictions/<NNNNNN>-<name>.parquet``
(:data:`~astroray.models.alert_scoring.ALERT_SCORES_SCHEMA`) through a
unique temporary renamed into place, so a task Ray retries after a lost node
rewrites the same part and never adds rows.

Outputs under ``--out``: ``predictions/`` (a Parquet dataset, one row per
alert), ``manifest.parquet`` (one row per input entry: ``ok``,
``quarantined`` with the reason, ``skipped`` for files that hold no alerts
such as schemas, ``failed`` for an internal error), ``quarantine.parquet``
(bad files, and alerts whose id was already scored from another file or
earlier in the same one: the first is kept), and ``summary.json``.
Every input is accounted for: ``n_alerts`` of the ok files equals the
prediction rows plus the duplicates quarantined.
"""
from __future__ import annotations

import json
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
from pydantic import Field

from astroray.config import AstrorayConfig
from astroray.errors import ConfigError, InvalidInputError
from astroray.io.limits import ReadLimits
from astroray.models.alert_scoring import ALERT_SCORES_SCHEMA, MODEL_SECTIONS, AlertScorerConfig

__all__ = ["ClassifyAlertsConfig", "AlertFileScorer", "classify_alerts", "read_predictions", "pinned_alert_scorer",
           "MANIFEST_SCHEMA", "QUARANTINE_SCHEMA", "OUTPUT_NAMES"]

OUTPUT_NAMES = ("predictions", "manifest.parquet", "quarantine.parquet", "summary.json")
"""What the job writes under ``--out`` (and removes there first with ``overwrite``)."""

MANIFEST_SCHEMA = pa.schema([
    ("path", pa.string()),
    ("status", pa.string()),
    ("reason", pa.string()),
    ("format", pa.string()),
    ("n_alerts", pa.int64()),
    ("n_scored", pa.int64()),
    ("n_duplicates", pa.int64()),
    ("part", pa.string()),
    ("ms", pa.float64()),
])
"""One row per input entry.  ``n_alerts``: read from the file; ``n_scored``: its rows in ``predictions/``;
``n_duplicates``: its alerts quarantined because their id was scored already."""

QUARANTINE_SCHEMA = pa.schema([("path", pa.string()), ("alert_id", pa.string()), ("status", pa.string()),
                               ("reason", pa.string())])
"""A bad file (``alert_id`` null) or one duplicate alert, with the reason."""


class ClassifyAlertsConfig(AstrorayConfig):
    """Config of ``jobs/classify_alerts.py`` (``configs/classify_alerts.yaml``).

    Attributes
    ----------
    scorer : AlertScorerConfig
        The models (real/bogus, light-curve classifier, rare events; a section
        set to null is skipped) and their store.
    num_actors : int or None
        Scoring actors (None: one per CPU of the cluster, at most one per file).
    cpus_per_actor : float
        CPUs each actor reserves; its torch threads follow (at least one).
    num_gpus_per_actor : float
    batch_size : int
        Alerts per forward pass.
    actor_restarts : int or None
        ``max_restarts`` of the actors (None: restart on a cluster, where a node
        can be lost; not on a local Ray the job started).
    read_limits : ReadLimits
        Bounds on reading each input file (default from ``ASTRORAY_MAX_*``).
    """

    scorer: AlertScorerConfig = Field(default_factory=AlertScorerConfig)
    num_actors: int | None = Field(default=None, ge=1)
    cpus_per_actor: float = Field(default=1.0, gt=0)
    num_gpus_per_actor: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=512, ge=1)
    actor_restarts: int | None = Field(default=None, ge=-1)
    read_limits: ReadLimits = Field(default_factory=ReadLimits.from_env)


_ALERT_KINDS = ("alerts",)


def _part_name(index: int, path: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", re.sub(r"\.parquet$", "", Path(path).name))[:80] or "file"
    return f"{index:06d}-{stem}.parquet"


class AlertFileScorer:
    """``map_batches`` callable: rows of (index, path) in, one manifest row per file out.

    Built once per actor (the scorer's models loaded once).  A file that
    cannot be read is a ``quarantined`` row with the reason; a file that holds
    no alerts is ``skipped``; an internal error is ``failed`` (logged with its
    traceback) and never sinks the other files.
    """

    def __init__(self, scorer_config: dict, output_dir: str, batch_size: int = 512, read_limits: dict | None = None):
        from astroray.io.limits import current_limits
        from astroray.io.outputs import OutputFolder
        from astroray.models.alert_scoring import AlertScorer

        self.scorer = AlertScorer(scorer_config)
        self.outputs = OutputFolder(output_dir)
        self.batch_size = int(batch_size)
        self.read_limits = ReadLimits.model_validate(read_limits) if read_limits else current_limits()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = [self._file(int(i), str(p)) for i, p in zip(batch["index"], batch["path"])]
        return {name: [r[name] for r in rows] for name in MANIFEST_SCHEMA.names}

    def _file(self, index: int, path: str) -> dict:
        from astroray.io import detect_format, read_alerts
        from astroray.io.limits import using_limits

        t0 = time.perf_counter()
        row = {"path": path, "status": "ok", "reason": None, "format": None, "n_alerts": 0, "n_scored": 0,
               "n_duplicates": 0, "part": None, "ms": 0.0}
        try:
            with using_limits(self.read_limits):
                fmt = detect_format(path)
                row["format"] = fmt.format
                if fmt.kind == "unknown":
                    raise InvalidInputError(f"unrecognised content ({fmt.format}"
                                            f"{': ' + fmt.detail if fmt.detail else ''})", source=path)
                if fmt.kind not in _ALERT_KINDS:
                    row.update(status="skipped", reason=f"not alerts: {fmt.kind}/{fmt.format}")
                    return row
                alerts = read_alerts(path)
            if not alerts:
                raise InvalidInputError(f"no alerts in this {fmt.format} file", source=path)
            row["n_alerts"] = len(alerts)
            chunks = [alerts[i:i + self.batch_size] for i in range(0, len(alerts), self.batch_size)]
            table = pa.concat_tables([self.scorer.run(chunk, sources=[path] * len(chunk)).to_table()
                                      for chunk in chunks])
            import pyarrow.parquet as pq

            part = _part_name(index, path)
            self.outputs.write("predictions", part, lambda fh: pq.write_table(table, fh))
            row.update(n_scored=table.num_rows, part=part)
        except InvalidInputError as exc:
            row.update(status="quarantined", reason=str(exc), n_alerts=row["n_alerts"] or 0)
        except Exception as exc:  # a bug must not sink the other files; reported, not hidden
            import logging
            import traceback

            logging.getLogger("astroray").error("scoring %s failed:\n%s", path, traceback.format_exc())
            row.update(status="failed", reason=f"internal error {type(exc).__name__}: {exc}")
        finally:
            row["ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        return row


def pinned_alert_scorer(config: AlertScorerConfig) -> tuple[AlertScorerConfig, dict]:
    """``config`` with every store made absolute and every alias resolved to its version now (the actors all
    load these versions, and a missing model fails here, before any file is read); and the models' info.

    Raises
    ------
    ConfigError
        A configured model is not in its store (the message says which and how to make one).
    """
    from astroray.models.scoring import resolve_model
    from astroray.tracking import tracking_uri

    store = tracking_uri(config.tracking_uri)
    config = config.with_updates(tracking_uri=store)
    how = {"realbogus": "jobs/train_realbogus.py", "classifier": "jobs/train_lightcurves.py",
           "rare_events": "jobs/train_rare_events.py"}
    versions, models = {}, {}
    for name in MODEL_SECTIONS:
        section = config.section(name)
        if section is None:
            continue
        try:
            info = resolve_model(section.model_uri, tracking_uri=section.tracking_uri)
        except ConfigError as exc:
            raise ConfigError(f"scorer.{name}: {exc} (train one with {how[name]}, or set scorer.{name}: null to "
                              "skip it)") from None
        versions[name] = info.get("version")
        models[name] = {"uri": section.model_uri, "pinned_uri": info["pinned_uri"], "version": info.get("version")}
    return config.pinned(versions), models


def _list_inputs(path: str | os.PathLike) -> tuple[list[str], list[dict]]:
    from astroray.ray.classify import list_inputs

    files, others = list_inputs(path)
    return files, [{"path": o["path"], "status": o["status"], "reason": o["reason"], "format": None, "n_alerts": 0,
                    "n_scored": 0, "n_duplicates": 0, "part": None, "ms": 0.0} for o in others]


def check_output_folder(out: str | os.PathLike, *, overwrite: bool) -> Path:
    """``out`` if the job may write there: missing, empty, or ``overwrite`` given (as the image job's)."""
    from astroray.ray.image_job import check_output_folder as check

    return check(out, overwrite=overwrite, outputs="predictions/, manifest.parquet, quarantine.parquet, summary.json")


def classify_alerts(input_path: str | os.PathLike, out: str | os.PathLike, config: ClassifyAlertsConfig | None = None,
                    *, overwrite: bool = False, progress: bool = True) -> dict:
    """Score every alert in the files under ``input_path`` with Ray Data; write the outputs under ``out``.

    Returns
    -------
    dict
        Files per status, alerts read, scored and quarantined as duplicates, the models (pinned versions),
        alerts per second and the output paths (also written as ``summary.json``).

    Raises
    ------
    ConfigError
        A model is not in the store.
    InvalidInputError
        ``input_path`` does not exist, or ``out`` is not empty without ``overwrite``.
    """
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    from astroray.io.outputs import OutputFolder
    from astroray.ray.runtime import actor_restarts, ensure_ray, quiet_ray_data_progress

    t0 = time.perf_counter()
    cfg = config or ClassifyAlertsConfig()
    check_output_folder(out, overwrite=overwrite)
    files, others = _list_inputs(input_path)
    scorer_config, models = pinned_alert_scorer(cfg.scorer)
    threads = max(int(cfg.cpus_per_actor), 1)
    scorer_config = scorer_config.with_updates(threads=scorer_config.threads or threads)
    outputs = OutputFolder(out)
    for name in ("manifest.parquet", "quarantine.parquet", "summary.json"):
        outputs.remove(None, name)
    for name in outputs.names("predictions"):
        if name.endswith((".parquet", ".tmp")):
            outputs.remove("predictions", name)
    outputs.ensure("predictions")
    rows: list[dict] = list(others)
    if files:
        ray = ensure_ray()
        quiet_ray_data_progress()
        cpus = max(int(ray.cluster_resources().get("CPU", 1) // cfg.cpus_per_actor), 1)
        actors = min(cfg.num_actors or cpus, len(files))
        items = [{"index": i, "path": p} for i, p in enumerate(files)]
        with warnings.catch_warnings():
            # max_restarts has no named parameter in Ray 2.60 and its **kwargs route is deprecated for 2.64
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                AlertFileScorer, batch_size=1, batch_format="numpy",
                fn_constructor_kwargs={"scorer_config": scorer_config.model_dump(mode="json"),
                                       "output_dir": str(outputs.path), "batch_size": cfg.batch_size,
                                       "read_limits": cfg.read_limits.model_dump(mode="json")},
                compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cfg.cpus_per_actor,
                num_gpus=cfg.num_gpus_per_actor or None, max_restarts=actor_restarts(cfg.actor_restarts))
        with tqdm(total=len(files), desc="score alerts", unit="file", disable=not progress) as bar:
            for row in ds.iter_rows():
                rows.append(dict(row))
                bar.update(1)
    seen = {r["path"] for r in rows}
    rows += [{"path": p, "status": "lost", "reason": "no result came back (never expected)", "format": None,
              "n_alerts": 0, "n_scored": 0, "n_duplicates": 0, "part": None, "ms": 0.0} for p in files if p not in seen]
    rows.sort(key=lambda r: r["path"])
    quarantine = [{"path": r["path"], "alert_id": None, "status": r["status"], "reason": r["reason"]}
                  for r in rows if r["status"] in ("quarantined", "failed", "lost")]
    quarantine += _drop_duplicates(outputs, rows)
    manifest = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    outputs.write(None, "manifest.parquet", lambda fh: pq.write_table(manifest, fh))
    qtable = pa.Table.from_pylist(quarantine, schema=QUARANTINE_SCHEMA)
    outputs.write(None, "quarantine.parquet", lambda fh: pq.write_table(qtable, fh))
    seconds = time.perf_counter() - t0
    statuses = [r["status"] for r in rows]
    n_scored = sum(r["n_scored"] for r in rows)
    summary = {"input": str(input_path), "out": str(outputs.path),
               "files": len(rows), **{f"files_{s}": statuses.count(s) for s in
                                      ("ok", "quarantined", "skipped", "failed", "lost")},
               "alerts_read": sum(r["n_alerts"] for r in rows if r["status"] == "ok"),
               "alerts_scored": n_scored, "alerts_duplicate": sum(r["n_duplicates"] for r in rows),
               "models": models, "seconds": round(seconds, 3),
               "alerts_per_second": round(n_scored / seconds, 1) if seconds > 0 else None}
    outputs.write(None, "summary.json", lambda fh: fh.write(json.dumps(summary, indent=2).encode()))
    outputs.close()
    return summary


def _drop_duplicates(outputs, rows: list[dict]) -> list[dict]:
    """Keep each alert id's first row (files in path order); rewrite the parts that repeat one and return a
    quarantine row per dropped alert."""
    import pyarrow.parquet as pq

    seen: dict[str, str] = {}
    out = []
    for row in rows:
        if row["status"] != "ok" or not row["part"]:
            continue
        path = outputs.path / "predictions" / row["part"]
        ids = pq.read_table(path, columns=["alert_id"]).column("alert_id").to_pylist()
        keep = np.ones(len(ids), bool)
        for i, alert_id in enumerate(ids):
            first = seen.get(alert_id)
            if first is None:
                seen[alert_id] = row["path"]
                continue
            keep[i] = False
            where = "earlier in this file" if first == row["path"] else f"from {first}"
            out.append({"path": row["path"], "alert_id": alert_id, "status": "duplicate",
                        "reason": f"alert id already scored {where}; the first is kept"})
        if not keep.all():
            table = pq.read_table(path).filter(pa.array(keep))
            outputs.write("predictions", row["part"], lambda fh, t=table: pq.write_table(t, fh))
            row["n_duplicates"] = int((~keep).sum())
            row["n_scored"] = table.num_rows
    return out


def read_predictions(out: str | os.PathLike) -> pa.Table:
    """The job's predictions under ``out`` as one table (:data:`ALERT_SCORES_SCHEMA`)."""
    import pyarrow.parquet as pq

    parts = sorted((Path(out) / "predictions").glob("*.parquet"))
    if not parts:
        return ALERT_SCORES_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(p, schema=ALERT_SCORES_SCHEMA) for p in parts])
