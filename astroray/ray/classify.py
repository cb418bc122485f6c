"""Classify light-curve files with Ray Data: what ``astroray classify lightcurves`` runs.

Input: a file or a folder of light-curve files (CSV/Parquet tables in any
layout :func:`astroray.io.read_lightcurves` reads, SNANA, alert files whose
histories make light curves, :data:`~astroray.records.LIGHTCURVE_SCHEMA`
Parquet).  Each file is one row of a Ray Dataset; actors
(:class:`LightCurveFileClassifier`) each hold one
:class:`~astroray.models.lc_transformer.LightCurveClassifier` (the model is
loaded once per actor, pinned to the version the alias named when the run
began) and turn files into one row per object: calibrated probabilities, the
predicted class and the model's version.

Every input is accounted for in the manifest (one row per file):

* ``ok`` -- every object classified;
* ``partial`` -- some objects classified, the others quarantined (e.g. a NaN time);
* ``quarantined`` -- the file could not be read (truncated, no light-curve columns, ...);
* ``skipped`` -- not light curves (labels, READMEs, schemas; SNANA PHOT files,
  read through their HEAD file): listed with what was found, never classified;
* ``failed`` -- an internal error (a bug, not bad input), reported with the exception.

Inputs a model needs beyond the points (a period, for a model trained on
periodic stars) are computed from each light curve by the recipe logged with
the model (``context_features``); nothing is looked up in a catalogue.
"""
from __future__ import annotations

import logging
import os
import stat
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
from pydantic import Field

from astroray.config import AstrorayConfig, Device
from astroray.errors import ConfigError, InvalidInputError

__all__ = ["ClassifyLightCurvesConfig", "LightCurveFileClassifier", "classify_lightcurves", "list_inputs",
           "CLASSIFIED_COLUMNS"]

CLASSIFIED_SCHEMA = pa.schema([
    ("path", pa.string()), ("status", pa.string()), ("reason", pa.string()), ("object_id", pa.string()),
    ("class", pa.string()), ("probability", pa.float64()), ("probabilities", pa.list_(pa.float64())),
    ("n_points", pa.int64()), ("calibrated", pa.bool_()), ("model_name", pa.string()), ("model_version", pa.int64()),
    # rare-event model (null without one)
    ("rare_class", pa.string()), ("rare_probabilities", pa.list_(pa.float64())), ("open_set_score", pa.float64()),
    ("none_of_these", pa.bool_()), ("anomaly_score", pa.float64()), ("rare_entropy", pa.float64()),
    ("rare_mutual_information", pa.float64()),
])
CLASSIFIED_COLUMNS = tuple(CLASSIFIED_SCHEMA.names)
"""What each actor returns: one row per object (``status`` ok or quarantined), or one per unreadable or
skipped file (``object_id`` null)."""

_LIGHTCURVE_KINDS = ("lightcurves", "alerts")
_log = logging.getLogger("astroray")


class ClassifyLightCurvesConfig(AstrorayConfig):
    """Options of :func:`classify_lightcurves`.

    Attributes
    ----------
    model_uri : str
        ``models:/NAME@ALIAS`` (resolved to its version once, when the run begins), ``models:/NAME/VERSION``
        or ``runs:/RUN/model``.
    tracking_uri : str or None
        MLflow store (default: ``$MLFLOW_TRACKING_URI`` or ``$ASTRORAY_HOME/mlflow.db``).
    device : {"cpu", "gpu", "auto"}
    batch_size : int
        Light curves per forward pass.
    files_per_batch : int
        Files each actor call reads and classifies together.
    actors : int or None
        Classifier actors (default: as many as there are CPUs for them, at most one per batch of files).
    num_gpus_per_actor : float
        GPU share of each actor (with ``device: gpu``).
    threads_per_actor : int
        Torch threads in each actor.
    rare_events_uri : str or None
        A rare-event model (``models:/astroray-protonet@champion``): adds its class, probabilities, open-set
        ("none of these"), anomaly and uncertainty columns.  None: not used (unless ``support`` is given).
    support : str or None
        A folder of K labelled light curves of each class (``DIR/<class>/...``, see
        :func:`~astroray.models.rare_events.read_support`): the rare-event model's prototypes are built from it,
        so its classes are these (classes never seen in training included).  Implies the champion rare-event
        model when ``rare_events_uri`` is None.
    """

    model_uri: str = "models:/astroray-lc-transformer@champion"
    tracking_uri: str | None = None
    device: Device = "cpu"
    batch_size: int = Field(default=1024, ge=1)
    files_per_batch: int = Field(default=32, ge=1)
    actors: int | None = Field(default=None, ge=1)
    num_gpus_per_actor: float = Field(default=0.0, ge=0)
    threads_per_actor: int = Field(default=1, ge=1)
    rare_events_uri: str | None = None
    support: str | None = None


# --------------------------------------------------------------------------- inputs


def list_inputs(path: str | os.PathLike) -> tuple[list[str], list[dict]]:
    """The regular files under ``path`` (a file or a folder, recursively; hidden entries left out), and a
    manifest row for each other entry met (pipes, sockets, devices: listed as skipped, never opened).

    Raises
    ------
    InvalidInputError
        ``path`` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise InvalidInputError("no such file or folder", source=str(root))
    candidates = [root] if not root.is_dir() else sorted(
        p for p in root.rglob("*") if not any(part.startswith(".") for part in p.relative_to(root).parts))
    files, others = [], []
    for p in candidates:
        try:
            mode = os.stat(p).st_mode
        except OSError as exc:
            others.append(_manifest_row(str(p), "quarantined", f"cannot stat: {exc.strerror}", 0, 0))
            continue
        if stat.S_ISDIR(mode):
            continue
        if stat.S_ISREG(mode):
            files.append(str(p))
        else:
            from astroray.io.limits import file_kind

            others.append(_manifest_row(str(p), "skipped", f"not a regular file ({file_kind(mode)})", 0, 0))
    return files, others


def _manifest_row(path: str, status: str, reason: str, n_objects: int, n_quarantined: int) -> dict:
    return {"path": path, "status": status, "reason": reason, "n_objects": n_objects,
            "n_quarantined_objects": n_quarantined}


# --------------------------------------------------------------------------- the actor


class LightCurveFileClassifier:
    """``map_batches`` callable: a batch of file paths in, one row per object (or per bad file) out.

    Built once per actor: the classifier (the model loaded once) and the read
    limits.  Bad input never fails the batch: an unreadable file gives one
    ``quarantined`` row with the reason; an object the model cannot take (a
    NaN time) gives a ``quarantined`` row with its ``object_id`` while the
    file's other objects are classified.
    """

    def __init__(self, classifier_config: dict, read_limits: dict | None = None, *,
                 rare_event_model: bytes | None = None):
        import pickle

        from astroray.io.limits import ReadLimits, current_limits
        from astroray.models.lc_transformer import LightCurveClassifier

        self.classifier = LightCurveClassifier(classifier_config)
        self.read_limits = ReadLimits.model_validate(read_limits) if read_limits else current_limits()
        # the driver's model, its support already fitted (one pickle: every actor scores with the same prototypes)
        self.rare = None if rare_event_model is None else pickle.loads(rare_event_model)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        rows: list[dict] = []
        for path in batch["path"]:
            rows.extend(self._file(str(path)))
        return pa.Table.from_pylist(rows, schema=CLASSIFIED_SCHEMA)

    def _file(self, path: str) -> list[dict]:
        from astroray.io import detect_format, read_lightcurves
        from astroray.io.limits import using_limits

        try:
            with using_limits(self.read_limits):
                fmt = detect_format(path)
                if fmt.kind == "unknown":  # content that cannot be recognised: bad data, not something else
                    return [_bad(path, "quarantined", f"unrecognised content ({fmt.format}"
                                                      f"{': ' + fmt.detail if fmt.detail else ''})")]
                if fmt.kind not in _LIGHTCURVE_KINDS:
                    return [_bad(path, "skipped", f"not light curves: {fmt.kind}/{fmt.format}")]
                if fmt.format == "snana-fits-phot":
                    return [_bad(path, "skipped", "a SNANA PHOT file: read through its HEAD file")]
                lightcurves = read_lightcurves(path, file_format=fmt)
            if not lightcurves:
                return [_bad(path, "quarantined", f"no light curves in this {fmt.format} file")]
            return self._classify(path, lightcurves)
        except InvalidInputError as exc:
            return [_bad(path, "quarantined", str(exc))]
        except Exception as exc:  # a bug must not sink the other files; it is reported, not hidden
            import traceback

            _log.error("classifying %s failed:\n%s", path, traceback.format_exc())
            return [_bad(path, "failed", f"internal error {type(exc).__name__}: {exc}")]

    def _classify(self, path: str, lightcurves: list) -> list[dict]:
        try:
            return self._rows(path, lightcurves)
        except InvalidInputError:
            if len(lightcurves) == 1:
                raise
        out = []  # one bad object: find it, classify the rest
        for lc in lightcurves:
            try:
                out.extend(self._rows(path, [lc]))
            except InvalidInputError as exc:
                row = _bad(path, "quarantined", str(exc))
                row["object_id"] = str(lc.object_id)
                out.append(row)
        return out

    def _rows(self, path: str, lightcurves: list) -> list[dict]:
        preds = self.classifier.run(lightcurves)
        version = preds.model.get("version")
        predicted = preds.predicted
        rows = [{"path": path, "status": "ok", "reason": "", "object_id": str(preds.object_ids[i]),
                 "class": str(predicted[i]), "probability": float(preds.probabilities[i].max()),
                 "probabilities": preds.probabilities[i].astype(np.float64).tolist(),
                 "n_points": int(preds.n_points[i]), "calibrated": bool(preds.calibrated),
                 "model_name": preds.model.get("name"), "model_version": None if version is None else int(version)}
                for i in range(len(preds))]
        if self.rare is not None:
            rare = self.rare.run(list(lightcurves))  # one row per light curve, input order, NaN where unscorable
            for i, row in enumerate(rows):
                rec = rare.record(i)
                row.update(rare_class=rec["predicted_class"], rare_probabilities=list(rec["probabilities"].values()),
                           open_set_score=rec["open_set_score"], none_of_these=rec["none_of_these"],
                           anomaly_score=rec["anomaly_score"], rare_entropy=rec["entropy"],
                           rare_mutual_information=rec["mutual_information"])
        return rows


def _bad(path: str, status: str, reason: str) -> dict:
    row = {name: None for name in CLASSIFIED_COLUMNS}
    row.update(path=path, status=status, reason=reason)
    return row


# --------------------------------------------------------------------------- the job


def _pinned(classifier, model_uri: str) -> str:
    """``models:/NAME/VERSION`` for an alias URI (every actor loads the version the run began with)."""
    from astroray.tracking import parse_model_uri

    if model_uri.startswith("models:/"):
        name, alias = parse_model_uri(model_uri)
        if alias is not None and classifier.version is not None:
            return f"models:/{name}/{classifier.version}"
    return model_uri


def _outputs(out: str | os.PathLike) -> dict[str, Path]:
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise ConfigError(f"--out {out}: give a .parquet or .csv file name")
    stem = out.with_suffix("")
    return {"predictions": out, "quarantine": Path(f"{stem}.quarantine.parquet"),
            "manifest": Path(f"{stem}.manifest.parquet")}


def _write(table: pa.Table, path: Path) -> None:
    """Into a unique temporary beside ``path``, then renamed over it."""
    import tempfile

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if path.suffix.lower() == ".csv":
                pacsv.write_csv(table, fh)
            else:
                pq.write_table(table, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def classify_lightcurves(input_path: str | os.PathLike, out: str | os.PathLike,
                         config: ClassifyLightCurvesConfig | None = None, *, overwrite: bool = False) -> dict:
    """Classify every light curve in the files under ``input_path``; write the predictions to ``out``.

    Writes ``out`` (``.parquet`` or ``.csv``: one row per object with ``path,
    object_id, class, probability, p_<CLASS>..., n_points, calibrated,
    model_name, model_version``; with a rare-event model also ``rare_class,
    rare_p_<CLASS>..., open_set_score, none_of_these, anomaly_score,
    rare_entropy, rare_mutual_information``), ``<out stem>.quarantine.parquet`` (bad files
    and objects with the reason) and ``<out stem>.manifest.parquet`` (one row
    per input file with its status; see the module docstring).

    Returns
    -------
    dict
        Counts per status, objects classified and quarantined, the model, the
        output paths and the wall time.

    Raises
    ------
    ConfigError
        The model cannot be loaded, or ``out`` exists (without ``overwrite``) or has another suffix.
    InvalidInputError
        ``input_path`` does not exist.
    """
    import pyarrow.compute as pc

    from astroray.models.lc_transformer import LightCurveClassifier
    from astroray.ray.runtime import actor_restarts, ensure_ray, quiet_ray_data_progress

    t0 = time.perf_counter()
    cfg = config or ClassifyLightCurvesConfig()
    paths = _outputs(out)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{existing[0]} exists: choose another --out or pass --overwrite")
    paths["predictions"].parent.mkdir(parents=True, exist_ok=True)
    files, others = list_inputs(input_path)
    # here, once: a wrong URI fails before any actor starts, and the alias is pinned to one version
    probe = LightCurveClassifier({"model_uri": cfg.model_uri, "tracking_uri": cfg.tracking_uri, "device": "cpu"})
    classes = probe.classes
    model_uri = _pinned(probe, cfg.model_uri)
    model = {"name": probe.info.get("name"), "version": probe.version, "uri": model_uri,
             "calibrated": probe.calibrated}
    del probe
    rare, rare_info = _rare_event_model(cfg)
    from astroray.tracking import tracking_uri as _resolve

    classifier_config = {"model_uri": model_uri, "tracking_uri": _resolve(cfg.tracking_uri), "device": cfg.device,
                         "batch_size": cfg.batch_size, "threads": cfg.threads_per_actor}
    tables = []
    if files:
        ray = ensure_ray()
        quiet_ray_data_progress()
        n_batches = -(-len(files) // cfg.files_per_batch)
        cpus = max(int(ray.available_resources().get("CPU", 1)) - 1, 1)
        actors = cfg.actors or max(1, min(n_batches, cpus))
        from astroray.io.limits import current_limits

        ds = ray.data.from_items([{"path": p} for p in files], override_num_blocks=n_batches)
        with warnings.catch_warnings():
            # max_restarts has no named parameter in Ray 2.60 and its **kwargs route is deprecated for 2.64
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ds.map_batches(LightCurveFileClassifier, batch_size=cfg.files_per_batch, batch_format="numpy",
                                fn_constructor_kwargs={"classifier_config": classifier_config,
                                                       "read_limits": current_limits().model_dump(mode="json"),
                                                       "rare_event_model": rare},
                                compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1,
                                num_gpus=cfg.num_gpus_per_actor or None, max_restarts=actor_restarts())
        tables = [pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b
                  for b in ds.iter_batches(batch_format="pyarrow", batch_size=None)]
    rows = pa.concat_tables(tables).cast(CLASSIFIED_SCHEMA) if tables else CLASSIFIED_SCHEMA.empty_table()
    ok_mask = pc.equal(rows.column("status"), "ok")
    good, bad = rows.filter(ok_mask), rows.filter(pc.invert(ok_mask))
    predictions = _predictions_table(good, classes, None if rare_info is None else rare_info["classes"])
    refused = pc.is_in(bad.column("status"), value_set=pa.array(["quarantined", "failed"]))
    quarantine = bad.filter(refused).select(["path", "object_id", "status", "reason"])  # skipped: manifest only
    manifest = _manifest(rows, files, others)
    _write(predictions, paths["predictions"])
    _write(quarantine, paths["quarantine"])
    _write(manifest, paths["manifest"])
    statuses = manifest.column("status").to_pylist()
    counts = {s: statuses.count(s) for s in ("ok", "partial", "quarantined", "skipped", "failed")}
    return {"input": str(input_path), "files": len(statuses), **{f"files_{k}": v for k, v in counts.items()},
            "objects_classified": predictions.num_rows,
            "objects_quarantined": int(pc.sum(pc.is_valid(bad.column("object_id"))).as_py() or 0),
            "model": model, "classes": list(classes), **({"rare_events": rare_info} if rare_info else {}),
            "outputs": {k: str(v) for k, v in paths.items()},
            "seconds": round(time.perf_counter() - t0, 3)}


def _class_columns(column: pa.ChunkedArray, classes, prefix: str) -> dict:
    """``prefix<CLASS>`` columns from a column of per-class probability lists."""
    matrix = np.asarray(column.to_pylist(), dtype=np.float64).reshape(len(column), len(classes))
    return {f"{prefix}{name}": pa.array(matrix[:, j], pa.float64()) for j, name in enumerate(classes)}


def _predictions_table(good: pa.Table, classes, rare_classes=None) -> pa.Table:
    cols = {name: good.column(name) for name in ("path", "object_id", "class", "probability")}
    cols.update(_class_columns(good.column("probabilities"), classes, "p_"))
    for name in ("n_points", "calibrated", "model_name", "model_version"):
        cols[name] = good.column(name)
    if rare_classes is not None:
        cols["rare_class"] = good.column("rare_class")
        cols.update(_class_columns(good.column("rare_probabilities"), rare_classes, "rare_p_"))
        for name in ("open_set_score", "none_of_these", "anomaly_score", "rare_entropy", "rare_mutual_information"):
            cols[name] = good.column(name)
    return pa.table(cols)


def _rare_event_model(cfg: ClassifyLightCurvesConfig) -> tuple[bytes | None, dict | None]:
    """The rare-event model the actors use (pickled, its support fitted here once) and what the summary says of
    it; ``(None, None)`` when none is asked for."""
    import pickle

    from astroray.models.rare_events import DEFAULT_RARE_EVENT_URI, load_rare_event_model, read_support

    if cfg.rare_events_uri is None and cfg.support is None:
        return None, None
    model, _ = load_rare_event_model(cfg.rare_events_uri or DEFAULT_RARE_EVENT_URI, tracking_uri=cfg.tracking_uri)
    info = {"model": dict(model.info), "support": None}
    if cfg.support is not None:
        lightcurves, labels = read_support(cfg.support)
        model = model.with_support(lightcurves, labels)
        info["support"] = {"path": str(cfg.support), "light_curves": len(lightcurves),
                           "per_class": {c: labels.count(c) for c in dict.fromkeys(labels)}}
    info.update(classes=list(model.classes), open_set_threshold=model.open_set_threshold)
    return pickle.dumps(model), info


def _manifest(rows: pa.Table, files: list[str], others: list[dict]) -> pa.Table:
    per_file: dict[str, dict] = {}
    for path, status, reason, oid in zip(rows.column("path").to_pylist(), rows.column("status").to_pylist(),
                                         rows.column("reason").to_pylist(), rows.column("object_id").to_pylist()):
        entry = per_file.setdefault(path, {"ok": 0, "bad_objects": 0, "file_status": None, "reasons": []})
        if status == "ok":
            entry["ok"] += 1
        elif oid is not None:
            entry["bad_objects"] += 1
            entry["reasons"].append(f"{oid}: {reason}")
        else:
            entry["file_status"], entry["reasons"] = status, [reason]
    out = []
    for path in files:
        entry = per_file.get(path)
        if entry is None:  # cannot happen unless an actor lost rows: say so rather than drop the file
            out.append(_manifest_row(path, "failed", "no result came back for this file", 0, 0))
        elif entry["file_status"] is not None:
            out.append(_manifest_row(path, entry["file_status"], entry["reasons"][0], 0, 0))
        else:
            status = "ok" if not entry["bad_objects"] else ("partial" if entry["ok"] else "quarantined")
            out.append(_manifest_row(path, status, "; ".join(entry["reasons"])[:2000], entry["ok"],
                                     entry["bad_objects"]))
    out.extend(others)
    schema = pa.schema([("path", pa.string()), ("status", pa.string()), ("reason", pa.string()),
                        ("n_objects", pa.int64()), ("n_quarantined_objects", pa.int64())])
    return pa.Table.from_pylist(out, schema=schema)
