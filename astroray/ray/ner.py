"""Source names in text on Ray: train and register, sweep with Tune, and find names in many files with Ray Data.

What ``jobs/train_ner.py``, ``jobs/tune_ner.py`` and ``astroray ner`` run:

* :func:`train_ner_job`: weakly labelled text
  (:func:`astroray.text.training.weak_training_set`), the statistical tagger
  trained in this process (:func:`astroray.text.training.train_ner`, plain
  Python: spaCy trains on one core), scored on the kept evaluation sets beside
  the regex baseline (:func:`astroray.text.report.kept_set_scores`), logged to
  MLflow (config, per-epoch dev metrics, scores, a displaCy page, the model
  with the spaCy flavour) and registered as ``astroray-ner`` with the alias
  ``champion``.
* :func:`tune_ner_job`: a Ray Tune sweep (Optuna + ASHA,
  :func:`astroray.ray.tune.run_sweep` with a plain function trainable) of the
  ``ner.*`` hyperparameters on the weak dev set; every trial its own MLflow
  run under the sweep's; the best configuration is then trained, scored and
  registered as above.
* :func:`find_names_in_files`: every file under a folder through Ray Data
  (``map_batches`` with a configure-once :class:`NerFileProcessor` per actor),
  names as JSON Lines, a manifest with one row per input and the quarantined
  files with their reason.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

from astroray.config import AstrorayConfig
from astroray.errors import ConfigError, InvalidInputError
from astroray.ray.tune import SweepConfig
from astroray.text.pipeline import NerConfig
from astroray.text.registry import DEFAULT_NER_URI, NER_MODEL_NAME, RULES_MODEL
from astroray.text.training import WeakLabelConfig

__all__ = ["TrainNerConfig", "TuneNerConfig", "resolve_shared_data", "train_ner_job", "tune_ner_job",
           "NerFileProcessor", "FILE_STATUS_COLUMNS", "find_names_in_files", "input_files"]


class TrainNerConfig(AstrorayConfig):
    """Config of ``jobs/train_ner.py`` (``configs/train_ner.yaml``)."""

    shared_data: str | None = None
    """The shared data folder (WIESP 2022, GCN subjects, gazetteer, ATel pages); default ``$ASTRORAY_SHARED_DATA``,
    else ``../shared/data`` beside the repository."""
    use_gazetteer: bool = True
    """Put the gazetteer's names in the pipeline's entity ruler (and in the simulated reports)."""
    weak: WeakLabelConfig = Field(default_factory=WeakLabelConfig)
    ner: NerConfig = Field(default_factory=lambda: NerConfig(max_train_seconds=900.0))
    experiment: str = "astroray-ner"
    run_name: str | None = None
    tracking_uri: str | None = None
    register_model: bool = True
    """Register the model as ``astroray-ner`` and point ``champion`` at it."""


class TuneNerConfig(TrainNerConfig):
    """Config of ``jobs/tune_ner.py``: the training config plus the sweep (keys ``ner.<field>``)."""

    sweep: SweepConfig = Field(default_factory=lambda: SweepConfig(metric="dev_names_f1", mode="max"))


def resolve_shared_data(value: str | None) -> Path:
    """The shared data folder: ``value``, else ``$ASTRORAY_SHARED_DATA``, else ``../shared/data`` beside the repo.

    Raises
    ------
    ConfigError
        None of them is a folder.
    """
    candidates = [value] if value else [os.environ.get("ASTRORAY_SHARED_DATA"),
                                         str(Path(__file__).resolve().parents[2].parent / "shared" / "data")]
    for c in candidates:
        if c and Path(c).is_dir():
            if not Path(c).is_absolute():
                raise ConfigError(f"shared_data {c!r} is relative: give an absolute path (a Ray job runs elsewhere)")
            return Path(c)
    raise ConfigError(f"no shared data folder (tried {[c for c in candidates if c]}): set shared_data in the config "
                      "or $ASTRORAY_SHARED_DATA")


def _gazetteer(cfg: TrainNerConfig, shared: Path) -> Path | None:
    folder = shared / "text" / "gazetteer"
    return folder if cfg.use_gazetteer and folder.is_dir() else None


def _train_log_register(cfg: TrainNerConfig, data, shared: Path, mlflow, run_id: str) -> dict:
    """Train in this process, score on the kept sets, log everything to the active run, register."""
    from astroray.text.pipeline import build_pipeline
    from astroray.text.registry import log_ner_model
    from astroray.text.report import kept_set_metrics, kept_set_scores
    from astroray.text.training import train_ner
    from astroray.tracking import register_champion

    gazetteer = _gazetteer(cfg, shared)

    def on_epoch(epoch: int, metrics: dict) -> None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if k != "epoch"}, step=epoch)

    t0 = time.perf_counter()
    nlp, fit = train_ner(cfg.ner, data.train, data.dev, on_epoch=on_epoch, gazetteer_dir=gazetteer)
    rules = build_pipeline(NerConfig(model=False), gazetteer_dir=gazetteer)
    scores = kept_set_scores(nlp, shared_data=shared, rules=rules)
    metrics = kept_set_metrics(scores)
    metrics.update(best_epoch=fit["best_epoch"], best_dev_names_f1=fit["best_dev_names_f1"],
                   epochs_run=fit["epochs_run"], train_seconds=fit["train_seconds"], n_train=fit["n_train"],
                   n_dev=fit["n_dev"], n_train_words=fit["n_train_words"])
    if data.wiesp_heldout:
        from astroray.text.evaluation import evaluate

        held = evaluate(nlp, data.wiesp_heldout)
        metrics.update(wiesp_heldout_names_f1=held["names"]["f1"],
                       wiesp_heldout_names_without_convention_recall=held["names_without_convention"]["recall"])
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
    mlflow.set_tag("astroray.stopped", fit["stopped"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "scores.json").write_text(json.dumps(scores, indent=2, default=float))
        mlflow.log_artifact(str(tmp / "scores.json"))
        from astroray.text.extract import NameFinder
        from astroray.text.evaluation import load_evalset

        finder = NameFinder(nlp)
        pages = [finder.html(d, page=False) for d in load_evalset("atel_pages")]
        (tmp / "atel_pages.html").write_text("<!doctype html><meta charset='utf-8'><title>astroray NER</title>"
                                             + "<hr>".join(pages))
        mlflow.log_artifact(str(tmp / "atel_pages.html"), artifact_path="displacy")
    headline = {k: metrics.get(k) for k in ("gcn_test_names_f1", "gcn_test_regex_names_f1", "atel_names_f1",
                                            "atel_regex_names_f1", "atel_regex_over_raw_html_f1",
                                            "overall_names_f1", "overall_regex_names_f1",
                                            "names_without_convention_pipeline_recall",
                                            "names_without_convention_added_by_model")}
    info = log_ner_model(mlflow, nlp, metadata={"entity_types": list(cfg.ner.labels),
                                                "gazetteer": None if gazetteer is None else str(gazetteer),
                                                **{k: v for k, v in headline.items() if v is not None}})
    version = None
    if cfg.register_model:
        version = register_champion(info.model_uri, NER_MODEL_NAME, tags={"run_id": run_id}, uri=cfg.tracking_uri)
    return {"run_id": run_id, "model_uri": info.model_uri, "registered_version": version,
            "registered_uri": DEFAULT_NER_URI if version is not None else None, **headline,
            "atel_input": scores["atel_pages"]["input"], "best_epoch": fit["best_epoch"],
            "epochs_run": fit["epochs_run"], "stopped": fit["stopped"], "train_seconds": time.perf_counter() - t0}


def _weak_data(cfg: TrainNerConfig, shared: Path):
    from astroray.text.training import weak_training_set

    return weak_training_set(shared, cfg.weak, gazetteer_dir=_gazetteer(cfg, shared))


def train_ner_job(cfg: TrainNerConfig) -> dict:
    """Train, evaluate, log and register the NER pipeline; returns the summary (run id, version, scores)."""
    from astroray.tracking import flatten_params, setup_mlflow

    shared = resolve_shared_data(cfg.shared_data)
    t0 = time.perf_counter()
    data = _weak_data(cfg, shared)
    data_seconds = time.perf_counter() - t0
    mlflow = setup_mlflow(cfg.experiment, uri=cfg.tracking_uri)
    with mlflow.start_run(run_name=cfg.run_name or "train_ner") as run:
        mlflow.log_params(flatten_params(cfg.model_dump(mode="json")))
        mlflow.set_tags({"astroray.model": "ner", "astroray.shared_data": str(shared)})
        mlflow.log_metric("data_seconds", data_seconds)
        summary = _train_log_register(cfg, data, shared, mlflow, run.info.run_id)
    summary["data_seconds"] = data_seconds
    return summary


def _ner_trial(config: dict, *, datasets: dict, report) -> None:
    """The trial function of the sweep: train with this trial's ``ner`` settings, reporting each epoch."""
    from astroray.text.training import train_ner

    ner = NerConfig.model_validate(config["ner"])
    train_ner(ner, datasets["train"], datasets["dev"], gazetteer_dir=config.get("gazetteer_dir"),
              on_epoch=lambda epoch, metrics: report(metrics, step=epoch))


def tune_ner_job(cfg: TuneNerConfig) -> dict:
    """Sweep the NER hyperparameters with Ray Tune, then train, evaluate and register the best configuration."""
    from astroray.ray.tune import apply_overrides, run_sweep
    from astroray.tracking import flatten_params, setup_mlflow

    unknown = [k for k in cfg.sweep.search_space if not k.startswith("ner.") or k[4:] not in NerConfig.model_fields]
    if unknown:
        raise ConfigError(f"search space keys {unknown} are not ner.<field> of NerConfig "
                          f"({sorted(NerConfig.model_fields)})")
    shared = resolve_shared_data(cfg.shared_data)
    data = _weak_data(cfg, shared)
    gazetteer = _gazetteer(cfg, shared)
    base = {"ner": cfg.ner.model_dump(mode="json"), "gazetteer_dir": None if gazetteer is None else str(gazetteer)}
    name = cfg.run_name or "tune_ner"
    sweep = run_sweep("ner", base, {"train": data.train, "dev": data.dev}, cfg.sweep, name=name,
                      experiment=cfg.experiment, tracking_uri=cfg.tracking_uri, trainable=_ner_trial,
                      max_t=cfg.ner.epochs + 1)  # epoch 0 (untrained) is a report too
    best = TrainNerConfig.model_validate({**cfg.model_dump(exclude={"sweep"}),
                                          "ner": apply_overrides(base, sweep.best_config)["ner"]})
    mlflow = setup_mlflow(cfg.experiment, uri=cfg.tracking_uri)
    with mlflow.start_run(run_name=f"{name}-best",
                          tags={"mlflow.parentRunId": sweep.parent_run_id, "astroray.model": "ner"}) as run:
        mlflow.log_params(flatten_params(best.model_dump(mode="json")))
        summary = _train_log_register(best, data, shared, mlflow, run.info.run_id)
    summary.update(sweep_run_id=sweep.parent_run_id, best_config=sweep.best_config,
                   best_trial_metrics={k: sweep.best_metrics.get(k) for k in (cfg.sweep.metric, "training_iteration")},
                   n_trials=len(sweep.trials),
                   trials=[{"overrides": t["overrides"], cfg.sweep.metric: t["metrics"].get(cfg.sweep.metric),
                            "iterations": t["metrics"].get("training_iteration"), "error": t["error"],
                            "mlflow_run_id": t["mlflow_run_id"]} for t in sweep.trials])
    return summary


# --------------------------------------------------------------------------- many files with Ray Data

FILE_STATUS_COLUMNS = ("path", "status", "reason", "n_documents", "n_names", "ms", "cpu_ms", "model", "rows")
"""One row per input file from :class:`NerFileProcessor`: ``ms`` wall and ``cpu_ms`` CPU time spent on it (its
actor's process), ``rows`` the JSON Lines of its names."""


class NerFileProcessor:
    """``map_batches`` callable: rows of ``path`` in, one status row per file out (its names as JSON Lines).

    Builds a :class:`~astroray.text.registry.NerFinder` once per actor.  A
    file the readers refuse (not UTF-8, empty, HTML without a telegram, too
    large, not the format) is ``quarantined`` with the reader's message; any
    other error is ``failed`` with the exception (logged with its traceback);
    neither stops the other files.

    Parameters
    ----------
    finder_config : dict
        :class:`~astroray.text.registry.NerFinderConfig` as a dict.
    format : str
        Reader format for every file (``"auto"``: by suffix and contents).
    """

    def __init__(self, finder_config: dict, format: str = "auto"):
        from astroray.text.registry import NerFinder

        self.finder = NerFinder(finder_config)
        self.format = format

    def __call__(self, batch: dict) -> pd.DataFrame:
        return pd.DataFrame([self._one(str(p)) for p in batch["path"]], columns=list(FILE_STATUS_COLUMNS))

    def _one(self, path: str) -> dict[str, Any]:
        from astroray.text.readers import read_documents

        t0, c0 = time.perf_counter(), time.process_time()
        model = self.finder.info["model"]
        try:
            docs = read_documents(path, format=self.format)
            rows = self.finder.run(docs)
        except InvalidInputError as exc:
            return dict(path=path, status="quarantined", reason=str(exc), n_documents=0, n_names=0,
                        ms=(time.perf_counter() - t0) * 1e3, cpu_ms=(time.process_time() - c0) * 1e3, model=model,
                        rows="")
        except Exception as exc:  # a bug must not sink the other files; it is reported, not hidden
            import logging
            import traceback

            logging.getLogger("astroray").error("NER on %s failed:\n%s", path, traceback.format_exc())
            return dict(path=path, status="failed", reason=f"internal error {type(exc).__name__}: {exc}",
                        n_documents=0, n_names=0, ms=(time.perf_counter() - t0) * 1e3,
                        cpu_ms=(time.process_time() - c0) * 1e3, model=model, rows="")
        lines = "".join(json.dumps({"file": path, **r}, ensure_ascii=False) + "\n" for r in rows)
        return dict(path=path, status="ok", reason="", n_documents=len(docs), n_names=len(rows),
                    ms=(time.perf_counter() - t0) * 1e3, cpu_ms=(time.process_time() - c0) * 1e3, model=model,
                    rows=lines)


def input_files(path: str | Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Regular files under ``path`` (recursive, sorted, hidden names skipped) and what was skipped with why.

    Raises
    ------
    InvalidInputError
        ``path`` does not exist.
    """
    root = Path(path)
    if root.is_file():
        return [root], []
    if not root.is_dir():
        raise InvalidInputError("no such file or folder", source=str(root))
    files, skipped = [], []
    for p in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if p.is_symlink() and p.is_dir():
            skipped.append((p, "a link to a folder (not followed)"))
        elif p.is_file():
            files.append(p)
        elif not p.is_dir():
            skipped.append((p, "not a regular file (pipe, socket or device; never opened)"))
    return files, skipped


def _write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def find_names_in_files(input_path: str | Path, out: str | Path, *, model_uri: str | None = None,
                        tracking_uri: str | None = None, gazetteer_dir: str | None = None, format: str = "auto",
                        concurrency: int | None = None, files_per_batch: int = 4) -> dict[str, Any]:
    """Names in every file under ``input_path`` with Ray Data, as JSON Lines in ``out``.

    Parameters
    ----------
    input_path : path-like
        A file or a folder (walked recursively; hidden names skipped).
    out : path-like
        JSON Lines of names: ``file``, ``doc_id``, ``text``, ``label`` (the
        type), ``start``, ``end`` (character offsets in the document's text),
        ``normalised``, ``source`` (which rule, or ``model``).  Beside it
        ``<stem>.manifest.jsonl`` (one row per input: status ``ok``,
        ``quarantined``, ``failed`` or ``skipped``, the reason, counts, the
        model) and ``<stem>.quarantine.jsonl`` (the inputs that are not ok).
    model_uri : str, optional
        Default: ``models:/astroray-ner@champion`` when registered, else the
        rules pipeline built here (``"rules"`` asks for it).
    tracking_uri, gazetteer_dir : str, optional
        See :class:`~astroray.text.registry.NerFinderConfig`.
    concurrency : int, optional
        Actors (default: Ray's CPUs, at most one per file).
    files_per_batch : int
        Files per ``map_batches`` call.

    Returns
    -------
    dict
        Counts per status, names, documents, seconds, documents/s, the model
        used, and the output paths.
    """
    import warnings

    from astroray.ray.runtime import actor_restarts, ensure_ray, quiet_ray_data_progress
    from astroray.text.registry import NerFinderConfig, registered_ner_uri
    from astroray.tracking import tracking_uri as resolve_tracking_uri

    out = Path(out)
    if out.is_dir():
        raise InvalidInputError("--out must be a file (JSON Lines), not a folder", source=str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    files, skipped = input_files(input_path)
    # The store and the alias are resolved once, here: every actor (whatever its environment) loads the same
    # pinned version from the same store.
    tracking_uri = resolve_tracking_uri(tracking_uri)
    uri = model_uri or DEFAULT_NER_URI
    note = ""
    if uri.startswith("models:/") and "@" in uri:
        pinned = registered_ner_uri(uri, tracking_uri=tracking_uri)
        if pinned is None and model_uri is not None:
            raise ConfigError(f"{uri} is not registered in the MLflow store {tracking_uri}; train one with "
                              "jobs/train_ner.py or use --model rules")
        if pinned is None:
            note = f" ({uri} is not registered in {tracking_uri})"
        uri = pinned or RULES_MODEL
    finder_config = NerFinderConfig(model_uri=uri, tracking_uri=tracking_uri, gazetteer_dir=gazetteer_dir,
                                    fallback="error").model_dump(mode="json")
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    manifest_path, quarantine_path = out.with_name(f"{stem}.manifest.jsonl"), out.with_name(f"{stem}.quarantine.jsonl")
    manifest: list[dict] = []
    t0 = time.perf_counter()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    model = None
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            if files:
                ray = ensure_ray()
                quiet_ray_data_progress()
                cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
                n_actors = max(1, min(concurrency or cpus, len(files)))
                ctx = ray.data.DataContext.get_current()
                keep_order = ctx.execution_options.preserve_order
                ctx.execution_options.preserve_order = True  # names come out in the order of the files
                ds = ray.data.from_items([{"path": str(p)} for p in files],
                                         override_num_blocks=min(len(files), 4 * n_actors))
                with warnings.catch_warnings():
                    # max_restarts has no named parameter in Ray 2.60 (its **kwargs route is deprecated for 2.64)
                    warnings.simplefilter("ignore", DeprecationWarning)
                    ds = ds.map_batches(NerFileProcessor, fn_constructor_kwargs={"finder_config": finder_config,
                                                                                 "format": format},
                                        batch_size=files_per_batch, batch_format="numpy", num_cpus=1,
                                        compute=ray.data.ActorPoolStrategy(size=n_actors),
                                        max_restarts=actor_restarts())
                try:
                    for batch in ds.iter_batches(batch_format="pandas", batch_size=None):
                        for row in batch.to_dict("records"):
                            fh.write(row.pop("rows"))
                            row["n_documents"], row["n_names"] = int(row["n_documents"]), int(row["n_names"])
                            model = model or row["model"]
                            manifest.append(row)
                finally:
                    ctx.execution_options.preserve_order = keep_order
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    seconds = time.perf_counter() - t0
    for path, why in skipped:
        manifest.append(dict(path=str(path), status="skipped", reason=why, n_documents=0, n_names=0, ms=0.0,
                             cpu_ms=0.0, model=None))
    manifest.sort(key=lambda r: r["path"])
    _write_jsonl(manifest_path, manifest)
    _write_jsonl(quarantine_path, [r for r in manifest if r["status"] != "ok"])
    counts = {s: sum(r["status"] == s for r in manifest) for s in ("ok", "quarantined", "failed", "skipped")}
    n_docs = sum(r["n_documents"] for r in manifest)
    if model is None:
        model = "rules+blank pipeline built here" if uri == RULES_MODEL else uri
    model += note
    return {"inputs": len(manifest), **counts, "documents": n_docs, "names": sum(r["n_names"] for r in manifest),
            "seconds": seconds, "documents_per_second": n_docs / seconds if seconds else 0.0, "model": model,
            "out": str(out), "manifest": str(manifest_path), "quarantine": str(quarantine_path)}
