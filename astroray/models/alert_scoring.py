"""Every score a broker wants for an alert, in one configure-once stage: real/bogus, class, rare event, anomaly.

:class:`AlertScorer` holds up to three registered models, each loaded once by
its registry URI (the alias resolved and pinned when loaded):

* ``realbogus`` -- :class:`~astroray.models.scoring.StampScorer` on the
  alert's science, reference and difference cutouts (``rb``, ``real``);
* ``classifier`` -- :class:`~astroray.models.lc_transformer.LightCurveClassifier`
  on the alert's history plus its own candidate (calibrated class
  probabilities: what the broker knew when the alert arrived);
* ``rare_events`` -- :class:`~astroray.models.rare_events.RareEventScorer`
  on the same light curve: the ProtoNet's probabilities over its support
  classes, its open-set ("none of these") score and the anomaly score.

A section set to ``None`` is not loaded and its columns stay null.  An alert
that one model cannot take (no cutouts, an empty history) gets nulls in that
model's columns and the reason in ``notes``; the batch is never failed by one
alert.  :meth:`AlertScorer.run` returns :class:`AlertScores`, one row per alert
in input order, as an Arrow table (:data:`ALERT_SCORES_SCHEMA`, what
``jobs/classify_alerts.py`` writes) or JSON-ready dicts (what ``/alerts``
answers).  Ray Data actors, the Serve deployment and tests all use this object.

::

    scorer = AlertScorer(AlertScorerConfig())          # the three champions of $ASTRORAY_HOME
    scores = scorer.run(read_alerts("night.avro"))
    scores.to_table()                                   # one row per alert, keyed by alert_id
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
from pydantic import Field

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError
from astroray.models.scoring import StampScorerConfig, hold_torch_threads
from astroray.stage import Stage

__all__ = ["AlertScorerConfig", "AlertScorer", "AlertScores", "ALERT_SCORES_SCHEMA", "MODEL_SECTIONS"]

MODEL_SECTIONS = ("realbogus", "classifier", "rare_events")
"""The model sections of :class:`AlertScorerConfig`, in the order they run."""

_F32 = pa.float32()
ALERT_SCORES_SCHEMA = pa.schema([
    ("alert_id", pa.string()),
    ("object_id", pa.string()),
    ("survey", pa.string()),
    ("source", pa.string()),
    ("mjd", pa.float64()),
    ("band", pa.string()),
    ("ra", pa.float64()),
    ("dec", pa.float64()),
    ("rb", _F32),
    ("real", pa.bool_()),
    ("class", pa.string()),
    ("class_probability", _F32),
    ("class_probabilities", pa.map_(pa.string(), _F32)),
    ("n_points", pa.int32()),
    ("rare_class", pa.string()),
    ("rare_probability", _F32),
    ("open_set_score", _F32),
    ("none_of_these", pa.bool_()),
    ("anomaly_score", _F32),
    ("survey_scores", pa.map_(pa.string(), pa.float64())),
    ("realbogus_version", pa.int32()),
    ("classifier_version", pa.int32()),
    ("rare_events_version", pa.int32()),
    ("notes", pa.string()),
])
"""One row per scored alert.  ``rb``/``real``: the real/bogus model (null without usable cutouts);
``class*``: the light-curve classifier's calibrated probabilities; ``rare_*``, ``open_set_score``,
``none_of_these``: the ProtoNet over its support classes; ``anomaly_score``: in [0, 1], the percentile
among the reference objects (1: stranger than all of them); ``survey_scores``: the survey's own scores
(ZTF ``rb``/``drb``, Rubin ``reliability``) for comparison; ``*_version``: the registry version that scored;
``notes``: why a model left its columns null (``;``-separated), else null."""


def _classifier_config():
    from astroray.models.lc_transformer import LightCurveClassifierConfig

    return LightCurveClassifierConfig


def _rare_config():
    from astroray.models.rare_events import RareEventScorerConfig

    return RareEventScorerConfig


class AlertScorerConfig(AstrorayConfig):
    """Which models :class:`AlertScorer` runs (``None``: not run, its columns null).

    Attributes
    ----------
    realbogus : dict or None
        :class:`~astroray.models.scoring.StampScorerConfig` (default: ``models:/astroray-realbogus@champion``).
    classifier : dict or None
        :class:`~astroray.models.lc_transformer.LightCurveClassifierConfig`
        (default: ``models:/astroray-lc-transformer@champion``).
    rare_events : dict or None
        :class:`~astroray.models.rare_events.RareEventScorerConfig`
        (default: ``models:/astroray-protonet@champion``).
    tracking_uri : str or None
        The MLflow store of every section that names none (default:
        ``$MLFLOW_TRACKING_URI`` or ``$ASTRORAY_HOME/mlflow.db``).
    threads : int or None
        Torch (and Numba) CPU threads of every model section that sets none (None: their defaults); one per
        core an actor holds.
    """

    realbogus: dict | None = Field(default_factory=dict)
    classifier: dict | None = Field(default_factory=dict)
    rare_events: dict | None = Field(default_factory=dict)
    tracking_uri: str | None = None
    threads: int | None = Field(default=None, ge=1)

    def section(self, name: str):
        """The validated config of model section ``name`` (None when it is off), the store filled in."""
        values = getattr(self, name)
        if values is None:
            return None
        cls = {"realbogus": lambda: StampScorerConfig, "classifier": _classifier_config,
               "rare_events": _rare_config}[name]()
        values = dict(values)
        if values.get("tracking_uri") is None and self.tracking_uri is not None:
            values["tracking_uri"] = self.tracking_uri
        if values.get("threads") is None and self.threads is not None and "threads" in cls.model_fields:
            # each model keeps to the cores its process holds: two actors whose Numba or torch pools each span
            # the machine spin against each other
            values["threads"] = self.threads
        from astroray.config import config_from_dict

        return config_from_dict(cls, values, source=f"alert scorer section {name!r}")

    def pinned(self, versions: dict[str, int | None]) -> AlertScorerConfig:
        """This config with each alias URI replaced by ``models:/NAME/VERSION`` of ``versions`` (what a driver
        hands its workers, so every one scores with the versions the run began with)."""
        from astroray.tracking import parse_model_uri

        changes = {}
        for name, version in versions.items():
            values = getattr(self, name)
            if values is None or version is None:
                continue
            uri = self.section(name).model_uri
            if uri.startswith("models:/"):
                model, alias = parse_model_uri(uri)
                if alias is not None:
                    changes[name] = {**values, "model_uri": f"models:/{model}/{version}"}
        return self.with_updates(**changes) if changes else self


@dataclass
class AlertScores:
    """What :meth:`AlertScorer.run` returns: one entry per alert, in input order."""

    columns: dict[str, list]
    """Column name -> values (the names of :data:`ALERT_SCORES_SCHEMA`)."""
    classes: tuple[str, ...] = ()
    rare_classes: tuple[str, ...] = ()
    models: dict = field(default_factory=dict)
    """Per section: name, version, run id and URI of the model that scored."""
    timings_ms: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.columns["alert_id"])

    def to_table(self) -> pa.Table:
        cols = dict(self.columns)
        for name in ("class_probabilities", "survey_scores"):
            cols[name] = [None if d is None else list(d.items()) for d in cols[name]]
        return pa.Table.from_pydict(cols, schema=ALERT_SCORES_SCHEMA)

    def to_dicts(self) -> list[dict]:
        """One JSON-ready dict per alert (NaN as None)."""
        names = list(self.columns)
        out = []
        for i in range(len(self)):
            out.append({n: _json_value(self.columns[n][i]) for n in names})
        return out


def _json_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    return v


def _f(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


class AlertScorer(Stage[AlertScorerConfig]):
    """Real/bogus, class, rare-event and anomaly scores of alerts from registered models, loaded once.

    Raises (at construction)
    ------------------------
    ConfigError
        A configured model is not in the store (the message names the store and what to run to make it).
    """

    config_class = AlertScorerConfig

    def setup(self) -> None:
        if self.config.threads:
            import torch

            torch.set_num_threads(self.config.threads)
        self.realbogus = self.classifier = self.rare_events = None
        cfg = self.config.section("realbogus")
        if cfg is not None:
            from astroray.models.scoring import StampScorer

            self.realbogus = StampScorer(cfg)
        cfg = self.config.section("classifier")
        if cfg is not None:
            from astroray.models.lc_transformer import LightCurveClassifier

            self.classifier = LightCurveClassifier(cfg)
        cfg = self.config.section("rare_events")
        if cfg is not None:
            from astroray.models.rare_events import RareEventScorer

            self.rare_events = RareEventScorer(cfg)

    # ---- models

    def models(self) -> dict[str, dict]:
        out = {}
        for name in MODEL_SECTIONS:
            part = getattr(self, name)
            if part is not None:
                out[name] = {k: part.info.get(k) for k in ("name", "version", "run_id", "uri")}
        return out

    def reload_if_moved(self) -> list[str]:
        """Reload each model whose alias now points at another version; the sections reloaded."""
        moved = []
        if self.realbogus is not None and self.realbogus.reload_if_moved():
            moved.append("realbogus")
        if self.classifier is not None and self._classifier_moved():
            moved.append("classifier")
        if self.rare_events is not None and self.rare_events.reload_if_moved():
            moved.append("rare_events")
        return moved

    def _classifier_moved(self) -> bool:
        from astroray.models.lc_transformer import LightCurveClassifier
        from astroray.tracking import moved_alias

        cfg = self.classifier.config
        if moved_alias(cfg.model_uri, self.classifier.version, uri=cfg.tracking_uri) is None:
            return False
        self.classifier = LightCurveClassifier(cfg)  # one assignment: a batch sees the old model or the new
        return True

    # ---- scoring

    def run(self, alerts: Sequence, *, sources: Sequence[str] | None = None) -> AlertScores:
        """Score every alert (a list of :class:`~astroray.records.Alert`); one row each, in order.

        Parameters
        ----------
        alerts : sequence of Alert
        sources : sequence of str, optional
            The file (or request) each alert came from, for the ``source`` column.

        Raises
        ------
        InvalidInputError
            ``alerts`` is not a list of Alert records, or ``sources`` has another length.
        """
        from astroray.records import Alert

        alerts = list(alerts)
        bad = [type(a).__name__ for a in alerts if not isinstance(a, Alert)]
        if bad:
            raise InvalidInputError(f"AlertScorer.run takes Alert records (astroray.io.read_alerts), got {bad[0]}")
        if sources is not None and len(sources) != len(alerts):
            raise InvalidInputError(f"{len(sources)} sources for {len(alerts)} alerts: give one per alert")
        n = len(alerts)
        cols: dict[str, list] = {name: [None] * n for name in ALERT_SCORES_SCHEMA.names}
        cols["alert_id"] = [str(a.alert_id) for a in alerts]
        cols["object_id"] = [str(a.object_id) for a in alerts]
        cols["survey"] = [a.survey for a in alerts]
        cols["source"] = list(sources) if sources is not None else [None] * n
        cols["mjd"] = [_f(a.mjd) for a in alerts]
        cols["band"] = [a.band for a in alerts]
        cols["ra"] = [_f(a.ra) for a in alerts]
        cols["dec"] = [_f(a.dec) for a in alerts]
        cols["survey_scores"] = [{k: float(v) for k, v in (a.scores or {}).items()} or None for a in alerts]
        notes: list[list[str]] = [[] for _ in range(n)]
        timings: dict[str, float] = {}
        out = AlertScores(cols)
        if n:
            histories = None
            if self.classifier is not None or self.rare_events is not None:
                # each alert's light curve as the broker saw it (its history plus its own candidate), built once
                # for both models
                from astroray.io.lightcurves import lightcurves_from_alerts

                t0 = time.perf_counter()
                histories = []
                for i, alert in enumerate(alerts):
                    try:
                        histories.append((i, lightcurves_from_alerts([alert])[0]))
                    except InvalidInputError as exc:  # this alert's history is unusable; the others go on
                        notes[i].append(f"history: {exc}")
                timings["histories"] = round((time.perf_counter() - t0) * 1e3, 3)
            for name in MODEL_SECTIONS:
                if getattr(self, name) is None:
                    continue
                hold_torch_threads(self.config.threads)
                t0 = time.perf_counter()
                getattr(self, f"_{name}")(histories if name != "realbogus" else alerts, cols, notes, out)
                timings[name] = round((time.perf_counter() - t0) * 1e3, 3)
        cols["notes"] = ["; ".join(x) if x else None for x in notes]
        out.models = self.models()
        out.timings_ms = timings
        return out

    def _realbogus(self, alerts, cols, notes, out) -> None:
        scorer = self.realbogus
        stamps, reasons = scorer.alert_stamps(alerts)
        ok = np.array([r is None for r in reasons])
        for i, reason in enumerate(reasons):
            if reason is not None:
                notes[i].append(f"rb: {reason}")
        if ok.any():
            res = scorer.run(stamps[ok])
            for i, score, real in zip(np.flatnonzero(ok), res.scores, res.real):
                cols["rb"][i] = _f(score)
                cols["real"][i] = bool(real) if math.isfinite(float(score)) else None
        cols["realbogus_version"] = [scorer.version] * len(alerts)

    def _classifier(self, histories, cols, notes, out) -> None:
        clf = self.classifier
        preds = _per_item(clf.run, histories, notes, "class")
        n = len(cols["alert_id"])
        out.classes = tuple(clf.classes)
        for i, p in preds:
            if p is None or not np.isfinite(p.probabilities).all() or int(p.n_points[0]) == 0:
                if p is not None:
                    notes[i].append("class: no usable point in the history")
                continue
            probs = p.probabilities[0]
            j = int(np.argmax(probs))
            cols["class"][i] = str(clf.classes[j])
            cols["class_probability"][i] = float(probs[j])
            cols["class_probabilities"][i] = {c: float(v) for c, v in zip(clf.classes, probs)}
            cols["n_points"][i] = int(p.n_points[0])
        cols["classifier_version"] = [clf.version] * n

    def _rare_events(self, histories, cols, notes, out) -> None:
        rare = self.rare_events
        res = _per_item(rare.run, histories, notes, "rare")
        n = len(cols["alert_id"])
        for i, r in res:
            if r is None:
                continue
            out.rare_classes = tuple(r.classes)
            if r.predicted[0] is None:
                notes[i].append("rare: no usable point in the history")
                continue
            probs = r.probabilities[0]
            cols["rare_class"][i] = str(r.predicted[0])
            cols["rare_probability"][i] = _f(np.nanmax(probs))
            cols["open_set_score"][i] = _f(r.open_set_score[0])
            cols["none_of_these"][i] = bool(r.none_of_these[0])
            cols["anomaly_score"][i] = _f(r.anomaly_score[0])
        cols["rare_events_version"] = [rare.version] * n


class _Row:
    """One row of a batch result (``result[i]`` for results that are column arrays)."""


def _per_item(run, items: list[tuple[int, Any]], notes, label: str) -> list[tuple[int, Any]]:
    """``run`` on every item (``(alert index, input)`` pairs) at once, split into one single-row result per
    alert; when the batch raises a user error, each alone (its error noted, the others scored)."""
    if not items:
        return []
    inputs = [x for _, x in items]
    try:
        whole = run(inputs)
        return [(i, _take(whole, k)) for k, (i, _) in enumerate(items)]
    except InvalidInputError:
        pass
    out = []
    for i, x in items:
        try:
            out.append((i, _take(run([x]), 0)))
        except InvalidInputError as exc:
            notes[i].append(f"{label}: {exc}")
            out.append((i, None))
    return out


def _take(result, i: int):
    """Row ``i`` of a column-array result as a one-row view with the same attribute names."""
    row = _Row()
    n = len(result.object_ids)
    for name, value in vars(result).items():
        if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == n:
            setattr(row, name, value[i:i + 1])
        else:
            setattr(row, name, value)
    return row
