"""The rare-event and anomaly model that scores alerts: a fitted ProtoNet ensemble plus an anomaly detector.

:class:`RareEventModel` bundles what :mod:`astroray.models.protonet` and
:mod:`astroray.models.anomaly` fit separately:

* a :class:`~astroray.models.protonet.ProtoNetClassifier` -- an ensemble of
  encoders, the prototypes of the known classes (their support) and the
  open-set ("none of these") threshold, calibrated on held-back objects;
* an :class:`~astroray.models.anomaly.AnomalyDetector` fitted on the reference
  (training) objects' features, embeddings and labels, whose combined score is
  the object's strangeness percentile among them.

``model.run(light_curves_or_alerts)`` gives :class:`RareEventScores`: class
probabilities over the support's classes, the open-set score and flag, and the
anomaly score in [0, 1], one row per input in input order.  A light curve (or
alert) with no usable point scores NaN (``predicted`` None); it never fails the
batch.

Lifecycle::

    model = fit_rare_event_model(lightcurves, config=RareEventTrainConfig())   # seconds
    info = log_rare_event_model(mlflow, model)                                  # MLflow pyfunc flavour
    register_champion(info.model_uri, "astroray-protonet")
    scorer = RareEventScorer(RareEventScorerConfig())   # loads models:/astroray-protonet@champion
    scores = scorer.run(alerts)                          # one row per alert: its history + its candidate

No Ray import (torch and scikit-learn only).
"""
from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError, NotFittedError
from astroray.models.anomaly import AnomalyConfig, AnomalyDetector
from astroray.models.protonet import (
    CONTEXT_COLUMNS,
    FeatureMatrix,
    FewShotConfig,
    LightCurveFeaturizer,
    ProtoNetClassifier,
    ProtoNetConfig,
    train_protonet,
)
from astroray.records import Alert, LightCurve
from astroray.stage import Stage

__all__ = [
    "DEFAULT_RARE_EVENT_URI",
    "RareEventModel",
    "RareEventScorer",
    "RareEventScorerConfig",
    "RareEventScores",
    "RareEventTrainConfig",
    "fit_rare_event_model",
    "load_rare_event_model",
    "log_rare_event_model",
    "read_support",
]

DEFAULT_RARE_EVENT_URI = "models:/astroray-protonet@champion"
_MODEL_KEYS = ("name", "version", "run_id", "uri")


# --------------------------------------------------------------------------- configs


class RareEventTrainConfig(AstrorayConfig):
    """How :func:`fit_rare_event_model` fits (and the training job simulates) a rare-event model.

    Attributes
    ----------
    n_objects : int
        Simulated objects the training job and test helper fit on (not used by
        :func:`fit_rare_event_model`, which takes the light curves).
    survey : {"lsst", "ztf"}
        Band vocabulary of the featurizer (and the simulator's survey).
    classes : tuple of str, optional
        Simulator classes to simulate (default all 14).
    nondetections : {"forced", "upper_limit"}
        What the simulator stores below 5 sigma; alerts carry upper limits (NaN flux).
    detections_only : bool
        Featurize detections only.  Upper limits (NaN flux) are dropped either way.
    context : tuple of str
        Context columns of the featurizer (``redshift``/``abs_peak_mag`` need a
        redshift alerts usually lack, so the default is the peak flux only).
    hidden, embedding_dim : encoder size.
    members : int
        Encoders in the ensemble (each its own seed).
    epochs, episodes : int
        Training epochs and episodes per epoch (a plain loop, milliseconds a step).
    k_shot : int, optional
        Support objects per class for the prototypes (the first K of each class
        among the training objects); None uses all.  A class with fewer raises.
    alert_views : int
        Alert-like views added per reference object: the light curve as an
        alert at a random detection would carry it (that detection and the
        ``history_days`` before it).  Alerts are scored against prototypes and
        reference objects that look like alerts, not only whole light curves.
    history_days : float
        History an alert carries (ZTF: 30 days).
    validation_fraction : float
        Objects of each class held back from training: validation loss (best
        epoch kept) and the open-set threshold's calibration.
    open_set_quantile : float
        ``none_of_these`` above this quantile of the held-back objects' open-set scores.
    anomaly : AnomalyConfig
        Detectors of the anomaly score (fewer trees and feature components than the
        defaults: scoring speed).
    seed : int
    """

    n_objects: int = Field(default=4000, ge=20)
    survey: Literal["lsst", "ztf"] = "ztf"
    classes: tuple[str, ...] | None = None
    nondetections: Literal["forced", "upper_limit"] = "upper_limit"
    detections_only: bool = False
    context: tuple[Literal["log_peak_flux", "redshift", "abs_peak_mag"], ...] = ("log_peak_flux",)
    hidden: tuple[int, ...] = (128, 64)
    embedding_dim: int = Field(default=32, ge=2, le=1024)
    members: int = Field(default=2, ge=1, le=32)
    epochs: int = Field(default=10, ge=1)
    episodes: int = Field(default=60, ge=1)
    k_shot: int | None = Field(default=None, ge=1)
    alert_views: int = Field(default=1, ge=0, le=16)
    history_days: float = Field(default=30.0, gt=0)
    validation_fraction: float = Field(default=0.2, ge=0, lt=0.9)
    open_set_quantile: float = Field(default=0.95, gt=0, lt=1)
    anomaly: AnomalyConfig = AnomalyConfig(n_estimators=100, lof_components=8)
    seed: int = Field(default=0, ge=0)

    @field_validator("classes")
    @classmethod
    def _classes(cls, value):
        if value is None:
            return value
        from astroray.datasets import CLASSES

        unknown = sorted(set(value) - set(CLASSES))
        if unknown or len(set(value)) < 2:
            raise ValueError(f"classes must name at least two simulator classes ({', '.join(CLASSES)}); "
                             f"got {value!r}")
        return value

    @field_validator("context")
    @classmethod
    def _context(cls, value):
        if len(set(value)) != len(value) or not set(value) <= set(CONTEXT_COLUMNS):
            raise ValueError(f"context must be distinct columns of {CONTEXT_COLUMNS}, got {value!r}")
        return value

    def protonet_config(self) -> ProtoNetConfig:
        """The featurizer and encoder config this training config implies."""
        from astroray.lightcurves import FeatureConfig

        return ProtoNetConfig(features=FeatureConfig(bands=self.survey, groups=("stats", "shape"),
                                                     detections_only=self.detections_only),
                              context=self.context, hidden=self.hidden, embedding_dim=self.embedding_dim,
                              n_way=5, k_shot=5, n_query=10, seed=self.seed)


class RareEventScorerConfig(AstrorayConfig):
    """Options of :class:`RareEventScorer`.

    Attributes
    ----------
    model_uri : str
        ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/RUN/model``.
    tracking_uri : str or None
        MLflow store (default: ``$MLFLOW_TRACKING_URI`` or ``$ASTRORAY_HOME/mlflow.db``).
    threads : int or None
        Torch and Numba threads for scoring (None: their defaults).
    """

    model_uri: str = DEFAULT_RARE_EVENT_URI
    tracking_uri: str | None = None
    threads: int | None = Field(default=None, ge=1)


# --------------------------------------------------------------------------- scores


@dataclass
class RareEventScores:
    """What :meth:`RareEventModel.run` and :meth:`RareEventScorer.run` return (one row per input, in order).

    Attributes
    ----------
    object_ids : ndarray (n,) of str
    classes : tuple of str
        The support's classes: the columns of ``probabilities``.
    probabilities : ndarray (n, k)
        Ensemble-mean class probabilities (NaN rows: nothing usable to score).
    predicted : ndarray (n,) of object
        The most probable class, None where unscorable.
    open_set_score : ndarray (n,)
        Normalised distance to the nearest prototype (higher: more foreign).
    none_of_these : ndarray (n,) bool
        ``open_set_score`` above the model's calibrated threshold.
    anomaly_score : ndarray (n,)
        Combined percentile of the anomaly detectors among the reference objects, in [0, 1].
    entropy, mutual_information : ndarray (n,)
        Predictive uncertainty of ``probabilities`` (nats): the entropy of the ensemble mean, and the part of it
        due to the members disagreeing (high: the model has not seen objects like this one).
    model : dict
        ``name``, ``version``, ``run_id``, ``uri`` of the model that scored.
    alert_ids : ndarray (n,) of str, optional
        For alert input, the alert each row scores.
    """

    object_ids: np.ndarray
    classes: tuple[str, ...]
    probabilities: np.ndarray
    predicted: np.ndarray
    open_set_score: np.ndarray
    none_of_these: np.ndarray
    anomaly_score: np.ndarray
    entropy: np.ndarray
    mutual_information: np.ndarray
    model: dict = field(default_factory=dict)
    alert_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.object_ids.shape[0])

    def record(self, i: int) -> dict:
        """Row ``i`` as plain Python values: ``predicted_class``, ``probabilities`` (class -> probability),
        ``open_set_score``, ``none_of_these``, ``anomaly_score``, ``entropy``, ``mutual_information`` (NaN kept)."""
        return {"predicted_class": self.predicted[i],
                "probabilities": dict(zip(self.classes, map(float, self.probabilities[i]))),
                "open_set_score": float(self.open_set_score[i]), "none_of_these": bool(self.none_of_these[i]),
                "anomaly_score": float(self.anomaly_score[i]), "entropy": float(self.entropy[i]),
                "mutual_information": float(self.mutual_information[i])}

    def to_pandas(self):
        """One row per input: ``object_id`` (and ``alert_id``), ``predicted``, ``p_<class>``, the scores."""
        import pandas as pd

        cols: dict = {"object_id": [str(x) for x in self.object_ids]}
        if self.alert_ids is not None:
            cols["alert_id"] = [str(x) for x in self.alert_ids]
        cols["predicted"] = list(self.predicted)
        for j, c in enumerate(self.classes):
            cols[f"p_{c}"] = self.probabilities[:, j]
        cols.update(open_set_score=self.open_set_score, none_of_these=self.none_of_these,
                    anomaly_score=self.anomaly_score, entropy=self.entropy,
                    mutual_information=self.mutual_information)
        return pd.DataFrame(cols)


# --------------------------------------------------------------------------- the model


def _item_id(item, i: int) -> str:
    return str(getattr(item, "object_id", i))


class RareEventModel:
    """A fitted ProtoNet ensemble with its support, open-set threshold and anomaly detector (picklable).

    Parameters
    ----------
    classifier : ProtoNetClassifier
        Fitted support (:meth:`~ProtoNetClassifier.fit_support`).
    detector : AnomalyDetector
        Fitted on the reference objects' features and embeddings of ``classifier``.
    config : RareEventTrainConfig, optional
        What it was fitted with.
    summary : dict, optional
        Training figures (objects, classes, history).

    Attributes
    ----------
    info : dict
        ``name``, ``version``, ``run_id``, ``uri`` once loaded from the registry (empty otherwise).
    """

    def __init__(self, classifier: ProtoNetClassifier, detector: AnomalyDetector, *,
                 config: RareEventTrainConfig | None = None, summary: dict | None = None):
        if not isinstance(classifier, ProtoNetClassifier) or classifier.classes is None:
            raise NotFittedError("RareEventModel needs a ProtoNetClassifier with a fitted support")
        if not isinstance(detector, AnomalyDetector) or not detector._fitted:
            raise NotFittedError("RareEventModel needs a fitted AnomalyDetector")
        self.classifier = classifier
        self.detector = detector
        self.config = config
        self.summary = dict(summary or {})
        self.info: dict = {}

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.classifier.classes)

    @property
    def open_set_threshold(self) -> float:
        return float(self.classifier.open_set_threshold)

    def features(self, data, *, n_threads: int | None = None) -> tuple[FeatureMatrix, np.ndarray | None]:
        """Featurizer output of ``data`` (one row per light curve or alert) and the alert ids where alerts.

        A batch the cleaning rules refuse as a whole (e.g. an alert whose
        candidate has a NaN time) is featurized item by item: the refused items
        become empty rows (NaN features, no points), the rest score normally.
        """
        featurizer = self.classifier.featurizer
        items = [data] if isinstance(data, (LightCurve, Alert)) else data
        try:
            return featurizer.run(items, n_threads=n_threads), _alert_ids(items)
        except InvalidInputError:
            if not isinstance(items, (list, tuple)):
                raise
        # isolate the refused items rather than fail the batch
        rows = []
        for i, item in enumerate(items):
            try:
                rows.append(featurizer.run([item], n_threads=n_threads))
            except InvalidInputError:
                rows.append(self._empty_matrix([_item_id(item, i)]))
        return (FeatureMatrix(np.concatenate([r.values for r in rows]), featurizer.names,
                              np.concatenate([np.asarray(r.object_ids, dtype=object) for r in rows]), None,
                              np.concatenate([r.n_points for r in rows])), _alert_ids(items))

    def _empty_matrix(self, ids: Sequence[str]) -> FeatureMatrix:
        names = self.classifier.featurizer.names
        return FeatureMatrix(np.full((len(ids), len(names)), np.nan), names, np.asarray(ids, dtype=object), None,
                             np.zeros(len(ids), np.int64))

    def run(self, data, *, n_threads: int | None = None) -> RareEventScores:
        """Class probabilities, open-set score and flag, and anomaly score of every light curve or alert.

        Parameters
        ----------
        data : list of LightCurve, list of Alert, LightCurve, FeatureMatrix
            Alerts give one row each: the alert's history plus its own candidate.
            Upper limits (NaN flux) and bands outside the model's survey are dropped.
        n_threads : int, optional
            Numba threads of the featurizer.

        Returns
        -------
        RareEventScores
            In input order; rows with no usable point are NaN (``predicted`` None).
        """
        if isinstance(data, FeatureMatrix):
            matrix, alert_ids = self.classifier.features(data), None
        elif isinstance(data, (list, tuple)) and len(data) == 0:
            k = len(self.classes)
            return RareEventScores(np.zeros(0, dtype=object), self.classes, np.zeros((0, k)),
                                   np.zeros(0, dtype=object), np.zeros(0), np.zeros(0, bool), np.zeros(0),
                                   np.zeros(0), np.zeros(0), self._model_info(), None)
        else:
            matrix, alert_ids = self.features(data, n_threads=n_threads)
        empty = matrix.n_points == 0
        values = matrix.values.copy()
        values[empty] = np.nan  # no points: nothing to judge (counts like n_points=0 are not evidence)
        res = self.classifier.run(FeatureMatrix(values, matrix.names, matrix.object_ids, None, matrix.n_points))
        anomaly = self.detector.run(values, embeddings=res.embeddings).combined
        anomaly = np.where(empty, np.nan, anomaly)
        return RareEventScores(object_ids=np.asarray(matrix.object_ids, dtype=object), classes=self.classes,
                               probabilities=res.probabilities, predicted=res.predicted,
                               open_set_score=res.open_set_score, none_of_these=np.asarray(res.none_of_these, bool),
                               anomaly_score=anomaly, entropy=res.entropy, mutual_information=res.mutual_information,
                               model=self._model_info(), alert_ids=alert_ids)

    def with_support(self, lightcurves: Sequence[LightCurve], labels: Sequence[str] | None = None
                     ) -> RareEventModel:
        """A copy whose classes are those of a new support: K labelled light curves of each class, embedded
        by this model's encoders (classes it never saw in training are the point).  The open-set threshold
        comes from the new support's leave-one-out scores (classes with K >= 2); the anomaly detector is kept.

        Raises
        ------
        InvalidInputError
            As :meth:`ProtoNetClassifier.fit_support`: no labels, an empty light curve, no support at all.
        """
        classifier = copy.deepcopy(self.classifier)
        classifier.fit_support(list(lightcurves), labels)
        out = RareEventModel(classifier, self.detector, config=self.config, summary=self.summary)
        out.info = dict(self.info)
        return out

    def _model_info(self) -> dict:
        return {k: self.info.get(k) for k in _MODEL_KEYS}

    def metadata(self) -> dict:
        """What the registry records beside the model (JSON-able)."""
        cfg = self.config
        return {"classes": list(self.classes), "open_set_threshold": self.open_set_threshold,
                "members": len(self.classifier.encoders), "survey": None if cfg is None else cfg.survey,
                "detections_only": None if cfg is None else cfg.detections_only,
                "detectors": list(self.detector.config.detectors),
                **{k: v for k, v in self.summary.items() if isinstance(v, (int, float, str, bool))}}


def _alert_ids(items) -> np.ndarray | None:
    if isinstance(items, (list, tuple)) and items and all(isinstance(a, Alert) for a in items):
        return np.array([str(a.alert_id) for a in items], dtype=object)
    return None


# --------------------------------------------------------------------------- fitting


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, held back): ``fraction`` of each class with at least 3 rows held back."""
    rng = np.random.default_rng([seed, 7])
    train, held = [], []
    for c in sorted(set(labels.tolist())):
        rows = rng.permutation(np.flatnonzero(labels == c))
        n_held = round(fraction * rows.size) if rows.size >= 3 else 0
        held.append(rows[:n_held])
        train.append(rows[n_held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def _alert_view(lc: LightCurve, rng: np.random.Generator, days: float) -> LightCurve | None:
    """``lc`` as an alert at a random detection carries it: that detection and the ``days`` before it."""
    det = np.flatnonzero(lc.detected & np.isfinite(lc.flux))
    if det.size == 0:
        return None
    t = lc.mjd[det[rng.integers(det.size)]]
    return lc.select((lc.mjd <= t) & (lc.mjd >= t - days))


def fit_rare_event_model(lightcurves, *, config: RareEventTrainConfig | None = None,
                         labels: Sequence | None = None) -> RareEventModel:
    """Fit the rare-event model on labelled light curves of the known classes.

    Featurize; hold back ``validation_fraction`` of each class's objects; add
    ``alert_views`` alert-like views of every object (its own split); train
    ``members`` ProtoNets with :func:`~astroray.models.protonet.train_protonet`
    (validation loss picks each one's epoch); build the prototypes from the
    training objects (``k_shot`` of each class, or all); set the open-set
    threshold at ``open_set_quantile`` of the held-back objects' scores (of the
    support's leave-one-out scores when nothing is held back); fit the anomaly
    detector on the training objects' features, embeddings and labels.

    Parameters
    ----------
    lightcurves : list of LightCurve
        The reference objects; light curves with no usable point are left out.
    config : RareEventTrainConfig, optional
    labels : sequence of str, optional
        One per light curve (default: each light curve's ``label``).

    Raises
    ------
    InvalidInputError
        A missing label, fewer than two classes with two usable light curves,
        a class with fewer training objects than ``k_shot``, or too few
        objects for the anomaly detector's neighbours.
    """
    cfg = config if config is not None else RareEventTrainConfig()
    if not isinstance(cfg, RareEventTrainConfig):
        raise InvalidInputError(f"config must be a RareEventTrainConfig, got {type(cfg).__name__}")
    lcs = list(lightcurves)
    if labels is None:
        labels = [lc.label if isinstance(lc, LightCurve) else None for lc in lcs]
    labels = np.asarray([None if v is None else str(v) for v in labels], dtype=object)
    if labels.shape != (len(lcs),):
        raise InvalidInputError(f"labels has {labels.size} entries for {len(lcs)} light curves")
    missing = np.flatnonzero(labels == None)
    if missing.size:
        raise InvalidInputError(f"{missing.size} light curve(s) have no label (e.g. {_item_id(lcs[missing[0]], 0)}): "
                                "label every reference object or pass labels=")
    t0 = time.perf_counter()
    pcfg = cfg.protonet_config()
    featurizer = LightCurveFeaturizer(pcfg)
    matrix = featurizer.run(lcs)
    usable = np.flatnonzero(matrix.n_points > 0)
    matrix, labels = matrix.take(usable), labels[usable]
    classes = sorted(set(labels.tolist()))
    # split by object before adding views, so no object's views straddle training and validation
    train, held = _stratified_split(labels, cfg.validation_fraction, cfg.seed)
    if cfg.alert_views:
        rng = np.random.default_rng([cfg.seed, 13])
        parts, part_labels, is_train = [matrix], [labels], [np.isin(np.arange(len(matrix)), train)]
        for _ in range(cfg.alert_views):
            views, rows = [], []
            for r in range(len(matrix)):
                view = _alert_view(lcs[usable[r]], rng, cfg.history_days)
                if view is not None:
                    views.append(view)
                    rows.append(r)
            view_matrix = featurizer.run(views)
            ok = np.flatnonzero(view_matrix.n_points > 0)
            rows = np.asarray(rows, dtype=np.int64)[ok]
            parts.append(view_matrix.take(ok))
            part_labels.append(labels[rows])
            is_train.append(np.isin(rows, train))
        matrix = FeatureMatrix(np.concatenate([p.values for p in parts]), matrix.names,
                               np.concatenate([np.asarray(p.object_ids, dtype=object) for p in parts]), None,
                               np.concatenate([p.n_points for p in parts]))
        labels = np.concatenate(part_labels)
        mask = np.concatenate(is_train)
        train, held = np.flatnonzero(mask), np.flatnonzero(~mask)
    y = np.array([classes.index(c) for c in labels], dtype=np.int64)
    features_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    members = []
    previous_threads = torch.get_num_threads()
    # steps of ~100 rows through a small MLP: extra threads only spin against each other on a busy CPU
    torch.set_num_threads(1)
    try:
        for m in range(cfg.members):
            members.append(train_protonet(matrix.values[train], y[train], pcfg, max_epochs=cfg.epochs,
                                          episodes_per_epoch=cfg.episodes,
                                          val_features=matrix.values[held] if held.size else None,
                                          val_labels=y[held] if held.size else None, seed=cfg.seed + m))
    finally:
        torch.set_num_threads(previous_threads)
    train_s = time.perf_counter() - t1
    clf = ProtoNetClassifier(members, FewShotConfig(k_shot=cfg.k_shot, open_set_quantile=cfg.open_set_quantile))
    clf.fit_support(matrix.take(train), labels[train])
    known_held = held[np.isin(labels[held], clf.classes)]
    if known_held.size:
        clf.calibrate_open_set(matrix.take(known_held))
    reference = clf.embed(matrix.take(train))
    detector = AnomalyDetector(cfg.anomaly).fit(matrix.values[train], embeddings=reference, labels=labels[train])
    history = [h for mod in members for h in mod.history[-1:]]
    summary = {"n_objects": len(lcs), "n_usable": int(usable.size), "n_rows": len(matrix),
               "n_train": int(train.size),
               "n_held_back": int(held.size), "n_classes": len(clf.classes), "features_s": round(features_s, 3),
               "train_s": round(train_s, 3), "fit_s": round(time.perf_counter() - t0, 3)}
    finals = [h.get("val_acc") for h in history if h.get("val_acc") is not None]
    if finals:
        summary["val_acc_last_epoch"] = float(np.mean(finals))
    return RareEventModel(clf, detector, config=cfg, summary=summary)


def read_support(path: str | os.PathLike) -> tuple[list[LightCurve], list[str]]:
    """The labelled light curves of a support folder, and their labels.

    Two layouts: one subfolder per class (``DIR/<class>/...``: the folder's name is the label of every light
    curve under it, in any format :func:`astroray.io.read_lightcurves` reads), or light-curve files directly in
    ``DIR`` whose light curves carry their own label (astroray light-curve Parquet's ``label`` column).

    Raises
    ------
    InvalidInputError
        ``path`` is not a folder, holds no light curves, or has light curves with no label.
    """
    from pathlib import Path

    from astroray.io import detect_format, read_lightcurves

    root = Path(path)
    if not root.is_dir():
        raise InvalidInputError(f"the support {root} is not a folder: give a folder with one subfolder of light "
                                "curves per class (DIR/<class>/...)")
    lightcurves: list[LightCurve] = []
    labels: list[str | None] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = read_lightcurves(sub)
        lightcurves += found
        labels += [sub.name] * len(found)
    loose = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")
                   and detect_format(p).kind in ("lightcurves", "alerts"))  # a README beside them is no support
    if loose:
        found = read_lightcurves(loose)
        lightcurves += found
        labels += [lc.label for lc in found]
    if not lightcurves:
        raise InvalidInputError(f"no light curves in the support {root}: put K light curves of each class in "
                                "DIR/<class>/")
    unlabelled = [str(lc.object_id) for lc, label in zip(lightcurves, labels) if not label]
    if unlabelled:
        raise InvalidInputError(f"{len(unlabelled)} support light curve(s) directly in {root} have no label (e.g. "
                                f"{unlabelled[:3]}): move them into a subfolder named after their class")
    return lightcurves, [str(x) for x in labels]


# --------------------------------------------------------------------------- MLflow


def _points_to_lightcurves(frame) -> list[LightCurve]:
    """A DataFrame of light-curve points (one row per point) as LightCurves, in first-seen object order."""
    need = ("object_id", "mjd", "band", "flux", "flux_err")
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"the light-curve points lack column(s) {', '.join(missing)}; give one row per point "
                                f"with {', '.join(need)} and optionally detected")
    ids = frame["object_id"].astype(str).to_numpy()
    order = list(dict.fromkeys(ids.tolist()))
    flux = frame["flux"].to_numpy(np.float64)
    detected = (frame["detected"].to_numpy(bool) if "detected" in frame.columns else np.isfinite(flux))
    mjd, band, err = frame["mjd"].to_numpy(np.float64), frame["band"].astype(str).to_numpy(), frame["flux_err"].to_numpy(np.float64)
    out = []
    for oid in order:
        sel = ids == oid
        out.append(LightCurve(oid, mjd[sel], band[sel], flux[sel], err[sel], detected[sel]))
    return out


def _pyfunc_class():
    import mlflow.pyfunc

    # MLflow advises type hints on predict (a UserWarning it shows whatever the filters); the input is a
    # DataFrame of points, checked by _points_to_lightcurves
    class RareEventPyfunc(mlflow.pyfunc.PythonModel):
        """MLflow's view of a :class:`RareEventModel`: a DataFrame of light-curve points in, scores out."""

        def __init__(self, model: RareEventModel):
            self.model = model

        def predict(self, context, model_input, params=None):
            return self.model.run(_points_to_lightcurves(model_input)).to_pandas()

    return RareEventPyfunc


def log_rare_event_model(mlflow, model: RareEventModel, *, name: str = "model", metadata: dict | None = None):
    """Log ``model`` to the active run with MLflow's pyfunc flavour; returns MLflow's ``ModelInfo``.

    ``mlflow.pyfunc.load_model(uri).predict(points)`` takes a DataFrame of
    light-curve points (``object_id, mjd, band, flux, flux_err[, detected]``)
    and returns one row of scores per object; :func:`load_rare_event_model`
    gives the :class:`RareEventModel` itself.  ``pip_requirements`` are pinned
    to this environment so MLflow does not infer them (a minute on a busy CPU).
    """
    import mlflow as _mlflow
    import sklearn
    import torch

    if not isinstance(model, RareEventModel):
        raise InvalidInputError(f"log a RareEventModel, got {type(model).__name__}")
    pip = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}",
           f"scikit-learn=={sklearn.__version__}", f"mlflow=={_mlflow.__version__}"]
    meta = {**model.metadata(), **(metadata or {})}
    # the wrapper is cloudpickled: loading runs astroray's own classes, so load only models you logged
    return mlflow.pyfunc.log_model(name=name, python_model=_pyfunc_class()(model), pip_requirements=pip,
                                   metadata=meta)


def load_rare_event_model(model_uri: str = DEFAULT_RARE_EVENT_URI, *, tracking_uri: str | None = None
                          ) -> tuple[RareEventModel, dict]:
    """Load a logged rare-event model (an alias is resolved once and the version pinned).

    Returns ``(model, info)``; ``info`` as :func:`astroray.tracking.load_logged_model`, and ``model.info``
    its ``name``, ``version``, ``run_id`` and ``uri``.

    Raises
    ------
    ConfigError
        No such model, version or alias in the store.
    InvalidInputError
        The URI holds another kind of model.
    """
    import mlflow

    from astroray.tracking import load_logged_model

    model, info = load_logged_model(model_uri, lambda resolved: mlflow.pyfunc.load_model(resolved).unwrap_python_model(),
                                    uri=tracking_uri)
    inner = getattr(model, "model", None)
    if not isinstance(inner, RareEventModel):
        raise InvalidInputError(f"{model_uri} holds a {type(model).__name__}, not a rare-event model "
                                "(log it with log_rare_event_model)")
    inner.info = {k: info.get(k) for k in _MODEL_KEYS}
    return inner, info


# --------------------------------------------------------------------------- the stage


class RareEventScorer(Stage[RareEventScorerConfig]):
    """Rare-event and anomaly scores of light curves or alerts from a registered model, loaded once.

    Example
    -------
    >>> scorer = RareEventScorer(RareEventScorerConfig())     # doctest: +SKIP
    >>> scores = scorer.run(alerts)                            # doctest: +SKIP
    >>> scores.anomaly_score, scores.none_of_these             # doctest: +SKIP
    """

    config_class = RareEventScorerConfig

    def setup(self) -> None:
        if self.config.threads:
            import torch

            torch.set_num_threads(self.config.threads)
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        model, info = load_rare_event_model(self.config.model_uri, tracking_uri=self.config.tracking_uri)
        with self._lock:  # callers see the old model or the new one, never a mix
            self.model, self.info = model, info

    @property
    def version(self) -> int | None:
        return self.info.get("version")

    @property
    def classes(self) -> tuple[str, ...]:
        with self._lock:
            return self.model.classes

    def reload_if_moved(self) -> bool:
        """Reload when the configured alias now points at another version; True if it did."""
        from astroray.tracking import moved_alias

        if moved_alias(self.config.model_uri, self.version, uri=self.config.tracking_uri) is None:
            return False
        self._load()
        return True

    def run(self, data) -> RareEventScores:
        """Scores of a list of light curves or alerts (one row each, input order); empty input, empty arrays.

        Raises
        ------
        InvalidInputError
            ``data`` is not light curves or alerts.
        """
        if isinstance(data, (LightCurve, Alert)):
            data = [data]
        if not isinstance(data, (list, tuple)):
            raise InvalidInputError(f"score a list of LightCurve or Alert records, got {type(data).__name__}")
        bad = [type(x).__name__ for x in data if not isinstance(x, (LightCurve, Alert))]
        if bad:
            raise InvalidInputError(f"score LightCurve or Alert records; got {len(bad)} {bad[0]} item(s)")
        with self._lock:
            model = self.model
        return model.run(list(data), n_threads=self.config.threads)
