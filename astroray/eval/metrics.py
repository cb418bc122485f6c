"""Metrics for astroray's classifiers, from NumPy scores, labels and probabilities.

* binary scores (real/bogus, one class against another): :func:`roc_auc`,
  :func:`roc_curve`, :func:`operating_point` (counts and rates at a threshold),
  :func:`operating_point_at_fpr` (braai's "at 1% FPR, the fraction of real
  lost"), :func:`recall_by_subtype` (e.g. the fraction of each artifact kind
  scored bogus), :func:`worst_scored` (the examples to look at),
  :func:`binary_report`;
* class labels (light-curve classes): :func:`confusion_matrix`,
  :func:`per_class_metrics`, :func:`macro_f1`, :func:`accuracy`,
  :func:`classification_report`;
* a metric against a covariate (F1 against days since first detection):
  :func:`metric_by_bin`;
* open set, anomalies and uncertainty: :func:`open_set_auroc`,
  :func:`misclassification_auroc`, :func:`auroc_vs_reference`,
  :func:`max_probability_uncertainty`, :func:`predictive_entropy`.

Conventions: positives are ``1``/``True``; an example is called positive when
``score >= threshold``.  Metrics that cannot exist for the data raise, those
that are 0/0 for one class are NaN:

* :func:`roc_auc` and everything built on the ROC curve raise
  :class:`~astroray.errors.InvalidInputError` when ``y_true`` holds one class
  only (an AUC of one class is meaningless, and a NaN in a benchmark file would
  hide a broken split);
* per-class precision (nothing predicted as that class) and recall (no example
  of it) are NaN, as are rates at a threshold with an empty denominator;
  :func:`metric_by_bin` gives NaN for a bin where the metric is undefined.
  Reports turn NaN into ``None`` (JSON ``null``).

NaN or infinite scores, empty arrays and arrays of different lengths raise
:class:`~astroray.errors.InvalidInputError`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from astroray.errors import InvalidInputError
from astroray.eval._validate import (
    as_1d,
    binary_labels,
    class_indices,
    encode_labels,
    finite_scores,
    jsonable,
    label_array,
    probabilities,
    require_both_classes,
    same_length,
)

__all__ = [
    "RocCurve",
    "OperatingPoint",
    "ConfusionMatrix",
    "BinnedMetric",
    "roc_auc",
    "roc_curve",
    "operating_point",
    "operating_point_at_fpr",
    "recall_by_subtype",
    "worst_scored",
    "binary_report",
    "confusion_matrix",
    "per_class_metrics",
    "macro_f1",
    "accuracy",
    "classification_report",
    "metric_by_bin",
    "open_set_auroc",
    "misclassification_auroc",
    "auroc_vs_reference",
    "max_probability_uncertainty",
    "predictive_entropy",
]


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


# --------------------------------------------------------------------------- binary


@dataclass(frozen=True)
class RocCurve:
    """A receiver operating characteristic curve.

    Attributes
    ----------
    fpr, tpr : ndarray of float64
        False- and true-positive rates, from (0, 0) to (1, 1), one point per
        distinct score.
    thresholds : ndarray of float64
        ``score >= thresholds[i]`` gives ``(fpr[i], tpr[i])``; the first is
        ``+inf`` (nothing called positive).
    auc : float
        Area under the curve (trapezoidal, ties counted half).
    n_positive, n_negative : int
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float
    n_positive: int
    n_negative: int

    def to_dict(self) -> dict:
        """JSON-serialisable (the infinite first threshold becomes ``None``)."""
        return jsonable({"fpr": self.fpr, "tpr": self.tpr, "thresholds": self.thresholds, "auc": self.auc,
                         "n_positive": self.n_positive, "n_negative": self.n_negative})


@dataclass(frozen=True)
class OperatingPoint:
    """Counts and rates of a binary classifier at one threshold (positive: ``score >= threshold``).

    Attributes
    ----------
    threshold : float
    tp, fp, tn, fn : int
    precision : float
        ``tp / (tp + fp)``; NaN when nothing is called positive.
    recall : float
        True-positive rate ``tp / (tp + fn)``; NaN without positives.
    fpr : float
        ``fp / (fp + tn)``; NaN without negatives.
    fnr : float
        ``1 - recall``: the fraction of positives lost (for real/bogus, real transients scored bogus).
    target_fpr : float or None
        The false-positive rate asked for, when the threshold was chosen from one.
    """

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    precision: float
    recall: float
    fpr: float
    fnr: float
    target_fpr: float | None = None

    def to_dict(self) -> dict:
        """JSON-serialisable (NaN becomes ``None``)."""
        return jsonable({k: getattr(self, k) for k in ("threshold", "tp", "fp", "tn", "fn", "precision", "recall",
                                                       "fpr", "fnr", "target_fpr")})


def _binary_inputs(y_true: Any, scores: Any, *, y_name: str = "y_true",
                   score_name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    y = binary_labels(y_true, y_name)
    s = finite_scores(scores, score_name)
    same_length(**{y_name: y, score_name: s})
    return y, s


def _roc(y: np.ndarray, s: np.ndarray) -> RocCurve:
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]
    tps = np.cumsum(y_sorted)[last_of_value]
    fps = last_of_value + 1 - tps
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    thresholds = np.r_[np.inf, s_sorted[last_of_value]]
    auc = float(np.trapezoid(tpr, fpr))
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=thresholds, auc=auc, n_positive=n_pos, n_negative=n_neg)


def roc_curve(y_true: Any, scores: Any) -> RocCurve:
    """The ROC curve and its area.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
    scores : array-like of float, shape (n,)
        Higher means more likely positive; any monotone scale (probabilities, logits).

    Returns
    -------
    RocCurve

    Raises
    ------
    InvalidInputError
        Empty or mismatched inputs, labels other than 0/1, NaN or infinite
        scores, or only one class in ``y_true``.
    """
    y, s = _binary_inputs(y_true, scores)
    require_both_classes(y, what="a ROC curve")
    return _roc(y, s)


def roc_auc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random negative.

    Ties count half.  Raises :class:`~astroray.errors.InvalidInputError` (it
    does not return NaN) when ``y_true`` holds a single class; see
    :func:`roc_curve` for the inputs.
    """
    y, s = _binary_inputs(y_true, scores)
    require_both_classes(y, what="ROC AUC")
    return _roc(y, s).auc


def _operating_point(y: np.ndarray, s: np.ndarray, threshold: float, target_fpr: float | None = None
                     ) -> OperatingPoint:
    pred = s >= threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    tn = int(np.sum(~pred & ~y))
    recall = _ratio(tp, tp + fn)
    return OperatingPoint(threshold=float(threshold), tp=tp, fp=fp, tn=tn, fn=fn, precision=_ratio(tp, tp + fp),
                          recall=recall, fpr=_ratio(fp, fp + tn), fnr=1.0 - recall, target_fpr=target_fpr)


def _check_threshold(threshold: Any) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise InvalidInputError(f"threshold must be a number, got {threshold!r}") from None
    if np.isnan(value):
        raise InvalidInputError("threshold is NaN")
    return value


def operating_point(y_true: Any, scores: Any, *, threshold: float) -> OperatingPoint:
    """Confusion counts, precision, recall, FPR and FNR at ``threshold`` (positive: ``score >= threshold``).

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
    scores : array-like of float, shape (n,)
    threshold : float, keyword-only

    Returns
    -------
    OperatingPoint
        Rates with an empty denominator (e.g. recall without positives) are NaN.
    """
    y, s = _binary_inputs(y_true, scores)
    return _operating_point(y, s, _check_threshold(threshold))


def _check_rate(value: Any, name: str) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise InvalidInputError(f"{name} must lie in [0, 1], got {value!r}")
    return rate


def operating_point_at_fpr(y_true: Any, scores: Any, *, target_fpr: float = 0.01) -> OperatingPoint:
    """The lowest threshold whose false-positive rate does not exceed ``target_fpr``, and its rates there.

    This is braai's operating point: at 1% FPR, ``fnr`` is the fraction of
    real transients lost.  With tied scores the achieved ``fpr`` may be below
    the target; it is never above.  When even the top score gives too many
    false positives the threshold is just above the top score (nothing
    called positive).

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
    scores : array-like of float, shape (n,)
    target_fpr : float in [0, 1], keyword-only

    Returns
    -------
    OperatingPoint

    Raises
    ------
    InvalidInputError
        As :func:`roc_curve`, or ``target_fpr`` outside [0, 1].
    """
    target = _check_rate(target_fpr, "target_fpr")
    y, s = _binary_inputs(y_true, scores)
    require_both_classes(y, what="an operating point at a false-positive rate")
    curve = _roc(y, s)
    idx = int(np.flatnonzero(curve.fpr <= target + 1e-12)[-1])  # fpr rises along the curve; keep the most recall
    threshold = curve.thresholds[idx]
    if not np.isfinite(threshold):
        threshold = float(np.nextafter(s.max(), np.inf))
    return _operating_point(y, s, threshold, target_fpr=target)


def recall_by_subtype(y_true: Any, scores: Any, subtypes: Any, *, threshold: float) -> dict[str, dict]:
    """Per sub-type, the fraction of its examples on the right side of ``threshold``.

    For a real/bogus model with real = 1, a bogus kind's recall is the fraction
    of it scored bogus (``score < threshold``), a real kind's the fraction
    scored real.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
    scores : array-like of float, shape (n,)
    subtypes : array-like, shape (n,)
        The sub-type of each example (artifact kind, transient class).
    threshold : float, keyword-only

    Returns
    -------
    dict
        ``{subtype: {"n": int, "n_correct": int, "recall": float, "positive": bool}}``
        sorted by sub-type; ``positive`` is the true class of the sub-type when
        all its members share one, else ``None``.
    """
    y, s = _binary_inputs(y_true, scores)
    kinds = label_array(subtypes, "subtypes")
    same_length(y_true=y, subtypes=kinds)
    thr = _check_threshold(threshold)
    correct = (s >= thr) == y
    out: dict[str, dict] = {}
    for kind in np.unique(kinds).tolist():
        sel = kinds == kind
        positive = y[sel]
        out[str(kind)] = {"n": int(sel.sum()), "n_correct": int(correct[sel].sum()),
                          "recall": float(correct[sel].mean()),
                          "positive": bool(positive[0]) if np.all(positive == positive[0]) else None}
    return out


def worst_scored(y_true: Any, scores: Any, *, n: int = 16, among: str = "all") -> np.ndarray:
    """Indices of the examples scored most wrongly: positives with the lowest, negatives with the highest scores.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n_examples,)
    scores : array-like of float, shape (n_examples,)
    n : int, keyword-only
        How many to return (fewer when there are fewer examples).
    among : {"all", "positive", "negative"}, keyword-only
        Rank both classes together (by the rank of the score, so any score
        scale works), only the positives (missed reals) or only the negatives
        (bogus scored real).

    Returns
    -------
    ndarray of int64
        Worst first.
    """
    y, s = _binary_inputs(y_true, scores)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidInputError(f"n must be a positive integer, got {n!r}")
    if among not in ("all", "positive", "negative"):
        raise InvalidInputError(f"among must be 'all', 'positive' or 'negative', got {among!r}")
    # a rank in [0, 1] makes "how wrong" comparable across the classes whatever the score scale
    ranks = np.argsort(np.argsort(s, kind="mergesort"), kind="mergesort") / max(s.size - 1, 1)
    wrongness = np.where(y, 1.0 - ranks, ranks)
    candidates = {"all": np.ones_like(y), "positive": y, "negative": ~y}[among]
    idx = np.flatnonzero(candidates)
    return idx[np.argsort(-wrongness[idx], kind="mergesort")][:n].astype(np.int64)


def binary_report(y_true: Any, scores: Any, *, threshold: float = 0.5, target_fpr: float = 0.01,
                  subtypes: Any = None, n_bins: int = 15) -> dict:
    """Everything a binary scorer is judged by, as a JSON-serialisable dict.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
    scores : array-like of float, shape (n,)
    threshold : float, keyword-only
        The deployed threshold, reported in ``"at_threshold"``.
    target_fpr : float, keyword-only
        Reported in ``"at_target_fpr"`` (:func:`operating_point_at_fpr`).
    subtypes : array-like, shape (n,), keyword-only
        Adds ``"recall_by_subtype"`` at ``threshold``.
    n_bins : int, keyword-only
        Bins of the binary ECE, reported only when all scores lie in [0, 1].

    Returns
    -------
    dict
        ``n``, ``n_positive``, ``n_negative``, ``roc_auc``, ``at_threshold``,
        ``at_target_fpr``, ``ece`` (or ``None``) and, with subtypes,
        ``recall_by_subtype``.  NaN values are ``None``.

    Raises
    ------
    InvalidInputError
        As :func:`roc_curve` (one class only is an error here too).
    """
    from astroray.eval.calibration import expected_calibration_error

    y, s = _binary_inputs(y_true, scores)
    require_both_classes(y, what="a binary report (ROC AUC)")
    report: dict[str, Any] = {
        "n": int(y.size), "n_positive": int(y.sum()), "n_negative": int((~y).sum()),
        "roc_auc": _roc(y, s).auc,
        "at_threshold": _operating_point(y, s, _check_threshold(threshold)).to_dict(),
        "at_target_fpr": operating_point_at_fpr(y, s, target_fpr=target_fpr).to_dict(),
        "ece": (expected_calibration_error(y, s, n_bins=n_bins)
                if np.all((s >= 0) & (s <= 1)) else None),
    }
    if subtypes is not None:
        report["recall_by_subtype"] = recall_by_subtype(y, s, subtypes, threshold=threshold)
    return jsonable(report)


# --------------------------------------------------------------------------- multi-class


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of true (rows) against predicted (columns) classes.

    Attributes
    ----------
    counts : ndarray of int64, shape (k, k)
    labels : list
        The class of each row and column.
    """

    counts: np.ndarray
    labels: list = field(default_factory=list)

    @property
    def normalized(self) -> np.ndarray:
        """Rows divided by their sums (each true class's predictions as fractions); NaN rows for absent classes."""
        totals = self.counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, self.counts / np.where(totals > 0, totals, 1), np.nan)

    def to_dict(self) -> dict:
        """``{"labels", "counts", "normalized"}``, JSON-serialisable."""
        return jsonable({"labels": [str(x) for x in self.labels], "counts": self.counts,
                         "normalized": self.normalized})


def _label_inputs(y_true: Any, y_pred: Any, labels: Sequence | None) -> tuple[list, np.ndarray, np.ndarray]:
    t = label_array(y_true, "y_true")
    p = label_array(y_pred, "y_pred")
    same_length(y_true=t, y_pred=p)
    if labels is None and t.dtype.kind != p.dtype.kind and {t.dtype.kind, p.dtype.kind} - {"i", "u"}:
        raise InvalidInputError(f"y_true ({t.dtype}) and y_pred ({p.dtype}) hold different kinds of labels; "
                                "use the same labels for both")
    labels, (ti, pi) = encode_labels({"y_true": t, "y_pred": p}, labels)
    return labels, ti, pi


def _confusion(ti: np.ndarray, pi: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(ti * k + pi, minlength=k * k).reshape(k, k).astype(np.int64)


def confusion_matrix(y_true: Any, y_pred: Any, *, labels: Sequence | None = None) -> ConfusionMatrix:
    """Counts of each true class (rows) predicted as each class (columns).

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n,)
        Class labels (ints or strings), the same kind in both.
    labels : sequence, keyword-only
        Classes in the order of the rows; default the sorted union of the
        labels seen.  Labels outside it are an error; classes in it that never
        occur give zero rows and columns.

    Returns
    -------
    ConfusionMatrix
    """
    labels, ti, pi = _label_inputs(y_true, y_pred, labels)
    return ConfusionMatrix(counts=_confusion(ti, pi, len(labels)), labels=labels)


def _per_class(counts: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(counts).astype(np.float64)
    predicted = counts.sum(axis=0).astype(np.float64)
    support = counts.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), np.nan)
        recall = np.where(support > 0, tp / np.where(support > 0, support, 1), np.nan)
        f1 = np.where(support + predicted > 0, 2 * tp / np.where(support + predicted > 0, support + predicted, 1),
                      np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def per_class_metrics(y_true: Any, y_pred: Any, *, labels: Sequence | None = None) -> dict[str, dict]:
    """Precision, recall, F1 and support of each class.

    F1 is ``2 tp / (2 tp + fp + fn)``: 0 for a class predicted or present but
    never right, NaN for a class neither present nor predicted.  Precision is
    NaN for a class never predicted, recall NaN for one never present.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n,)
    labels : sequence, keyword-only
        As :func:`confusion_matrix`.

    Returns
    -------
    dict
        ``{str(label): {"precision", "recall", "f1", "support"}}`` in the order of ``labels``.
    """
    labels, ti, pi = _label_inputs(y_true, y_pred, labels)
    stats = _per_class(_confusion(ti, pi, len(labels)))
    return {str(lab): {"precision": float(stats["precision"][i]), "recall": float(stats["recall"][i]),
                       "f1": float(stats["f1"][i]), "support": int(stats["support"][i])}
            for i, lab in enumerate(labels)}


def macro_f1(y_true: Any, y_pred: Any, *, labels: Sequence | None = None) -> float:
    """Unweighted mean F1 over the classes present in ``y_true`` or ``y_pred``.

    Classes listed in ``labels`` that occur in neither are left out of the mean
    (their F1 is undefined).  Equals scikit-learn's ``f1_score(average="macro")``
    with its default labels.
    """
    labels, ti, pi = _label_inputs(y_true, y_pred, labels)
    return float(np.nanmean(_per_class(_confusion(ti, pi, len(labels)))["f1"]))


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of examples whose predicted label equals the true one."""
    _, ti, pi = _label_inputs(y_true, y_pred, None)
    return float(np.mean(ti == pi))


def _column_indices(values: Any, name: str, labels: list, k: int) -> np.ndarray:
    """Labels to column indices: by ``labels``, or as indices when they are integers not all in ``labels``."""
    arr = label_array(values, name)
    if arr.dtype.kind in "iu" and not np.isin(arr, np.asarray(labels)).all():
        return class_indices(arr, k, name)
    return encode_labels({name: arr}, labels)[1][0]


def classification_report(y_true: Any, y_pred: Any = None, *, proba: Any = None, labels: Sequence | None = None,
                          n_bins: int = 15) -> dict:
    """Per-class and overall metrics of a multi-class classifier, as a JSON-serialisable dict.

    Parameters
    ----------
    y_true : array-like, shape (n,)
        True labels.  With ``proba``: labels from ``labels`` (which name the
        columns) or, when they are integers not all in ``labels``, column indices.
    y_pred : array-like, shape (n,), optional
        Predicted labels; default the argmax of ``proba``.
    proba : array-like, shape (n, k), keyword-only
        Class probabilities (rows summing to 1).  Adds top-label ``ece``
        (``n_bins`` equal-width bins), ``nll`` and one-vs-rest ROC AUC per class
        with its mean ``macro_roc_auc`` (classes with both positives and
        negatives in ``y_true``).
    labels : sequence, keyword-only
        Class labels in order (the columns of ``proba``); default ``range(k)``
        with ``proba``, else the sorted union of the labels seen.
    n_bins : int, keyword-only

    Returns
    -------
    dict
        ``n``, ``labels``, ``accuracy``, ``macro_f1``, ``per_class``
        (precision, recall, f1, support), ``confusion_matrix`` (labels, counts,
        normalized) and, with ``proba``, ``ece``, ``nll``, ``roc_auc_per_class``,
        ``macro_roc_auc``.  NaN values are ``None``.

    Raises
    ------
    InvalidInputError
        Neither ``y_pred`` nor ``proba``; empty or mismatched inputs; labels not in ``labels``;
        probabilities outside [0, 1] or rows not summing to 1.
    """
    from astroray.eval.calibration import expected_calibration_error, negative_log_likelihood

    if y_pred is None and proba is None:
        raise InvalidInputError("give y_pred (predicted labels) or proba (class probabilities), or both")
    p = None
    if proba is not None:
        p = probabilities(proba, "proba")
        if p.ndim != 2:
            raise InvalidInputError(f"proba must be 2-D (examples, classes), got shape {p.shape}; "
                                    "use binary_report for scores of one class")
        k = p.shape[1]
        if labels is None:
            labels = list(range(k))
        elif len(labels) != k:
            raise InvalidInputError(f"labels has {len(labels)} entries but proba has {k} columns")
        labels = list(labels)
        ti = _column_indices(y_true, "y_true", labels, k)
        same_length(y_true=ti, proba=p)
        pi = p.argmax(axis=1) if y_pred is None else _column_indices(y_pred, "y_pred", labels, k)
        same_length(y_true=ti, y_pred=pi)
    else:
        labels, ti, pi = _label_inputs(y_true, y_pred, labels)
    k = len(labels)
    counts = _confusion(ti, pi, k)
    stats = _per_class(counts)
    matrix = ConfusionMatrix(counts=counts, labels=labels)
    report: dict[str, Any] = {
        "n": int(ti.size),
        "labels": [str(x) for x in labels],
        "accuracy": float(np.mean(ti == pi)),
        "macro_f1": float(np.nanmean(stats["f1"])),
        "per_class": {str(lab): {"precision": stats["precision"][i], "recall": stats["recall"][i],
                                 "f1": stats["f1"][i], "support": stats["support"][i]}
                      for i, lab in enumerate(labels)},
        "confusion_matrix": matrix.to_dict(),
    }
    if p is not None:
        aucs = {}
        for i, lab in enumerate(labels):
            y_i = ti == i
            aucs[str(lab)] = _roc(y_i, p[:, i]).auc if 0 < y_i.sum() < y_i.size else float("nan")
        values = np.array(list(aucs.values()))
        report.update(ece=expected_calibration_error(ti, p, n_bins=n_bins), nll=negative_log_likelihood(ti, p),
                      roc_auc_per_class=aucs,
                      macro_roc_auc=float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"))
    return jsonable(report)


# --------------------------------------------------------------------------- against a covariate


@dataclass(frozen=True)
class BinnedMetric:
    """A metric computed separately in bins of a covariate.

    Attributes
    ----------
    edges : ndarray of float64, shape (n_bins + 1,)
        Bin ``i`` holds ``edges[i] <= x < edges[i + 1]`` (the last bin includes its right edge).
    values : ndarray of float64, shape (n_bins,)
        The metric per bin; NaN where the bin has fewer than ``min_count`` rows
        or the metric is undefined there (e.g. ROC AUC of a bin with one class).
    counts : ndarray of int64, shape (n_bins,)
        Rows per bin.
    metric : str
        The metric's name.
    n_outside : int
        Rows not counted: covariate NaN or outside the edges.
    """

    edges: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    metric: str
    n_outside: int = 0

    @property
    def centers(self) -> np.ndarray:
        """Bin centres."""
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    def to_dict(self) -> dict:
        """JSON-serialisable (NaN becomes ``None``)."""
        return jsonable({"metric": self.metric, "edges": self.edges, "values": self.values, "counts": self.counts,
                         "n_outside": self.n_outside})


_NAMED_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "roc_auc": roc_auc,
}


def _bin_edges(x: np.ndarray, bins: int | Sequence[float] | np.ndarray) -> np.ndarray:
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            raise InvalidInputError(f"bins must be a positive integer or increasing edges, got {bins}")
        finite = x[np.isfinite(x)]
        if finite.size == 0:
            raise InvalidInputError("the covariate has no finite value to bin")
        lo, hi = float(finite.min()), float(finite.max())
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        return np.linspace(lo, hi, int(bins) + 1)
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise InvalidInputError(f"bin edges must be at least 2 finite, strictly increasing numbers, got {bins!r}")
    return edges


def metric_by_bin(covariate: Any, y_true: Any, predictions: Any, *,
                  metric: str | Callable[[np.ndarray, np.ndarray], float] = "accuracy",
                  bins: int | Sequence[float] = 10, min_count: int = 1) -> BinnedMetric:
    """A metric in bins of a covariate, e.g. macro-F1 against days since first detection.

    Parameters
    ----------
    covariate : array-like of float, shape (n,)
        The quantity to bin by (days since first detection, number of
        detections, magnitude).  NaN or out-of-range rows are left out and
        counted in ``n_outside``.
    y_true : array-like, shape (n,)
    predictions : array-like, shape (n,)
        Predicted labels for ``"accuracy"``/``"macro_f1"``, scores for ``"roc_auc"``,
        whatever a callable ``metric`` takes.
    metric : {"accuracy", "macro_f1", "roc_auc"} or callable, keyword-only
        A callable gets ``(y_true_in_bin, predictions_in_bin)`` and returns a
        float; if it raises :class:`~astroray.errors.InvalidInputError` for a
        bin (e.g. one class only), that bin's value is NaN (if it raises in
        every bin, the error is raised).
    bins : int or sequence of float, keyword-only
        A number of equal-width bins over the covariate's finite range, or the edges.
    min_count : int, keyword-only
        Bins with fewer rows get NaN.

    Returns
    -------
    BinnedMetric
    """
    x = as_1d(covariate, "covariate")
    if x.dtype.kind not in "biuf":
        raise InvalidInputError(f"covariate must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float64)
    y = as_1d(y_true, "y_true")
    pred = np.asarray(predictions)
    if pred.ndim == 0:
        raise InvalidInputError("predictions must be an array with one entry per row")
    same_length(covariate=x, y_true=y, predictions=pred)
    if isinstance(metric, str):
        if metric not in _NAMED_METRICS:
            raise InvalidInputError(f"unknown metric {metric!r}; use one of {sorted(_NAMED_METRICS)} or a callable")
        name, fn = metric, _NAMED_METRICS[metric]
    elif callable(metric):
        name, fn = getattr(metric, "__name__", "metric"), metric
    else:
        raise InvalidInputError(f"metric must be a name or a callable, got {metric!r}")
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise InvalidInputError(f"min_count must be a positive integer, got {min_count!r}")
    # whole-array checks first, so bad input is an error rather than a row of NaN bins
    if name == "roc_auc":
        binary_labels(y, "y_true")
        finite_scores(pred, "predictions")
    elif name in ("accuracy", "macro_f1"):
        _label_inputs(y, pred, None)
    edges = _bin_edges(x, bins)
    inside = np.isfinite(x) & (x >= edges[0]) & (x <= edges[-1])
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
    n_bins = edges.size - 1
    values = np.full(n_bins, np.nan)
    counts = np.zeros(n_bins, np.int64)
    errors: list[InvalidInputError] = []
    for b in range(n_bins):
        sel = inside & (which == b)
        counts[b] = int(sel.sum())
        if counts[b] >= min_count:
            try:
                values[b] = float(fn(y[sel], pred[sel]))
            except InvalidInputError as exc:  # undefined in this bin (e.g. one class only): NaN
                errors.append(exc)
    if errors and len(errors) == int(np.sum(counts >= min_count)):
        raise InvalidInputError(f"{name} failed in every bin; the first error: {errors[0]}")
    return BinnedMetric(edges=edges, values=values, counts=counts, metric=name, n_outside=int((~inside).sum()))


# --------------------------------------------------------------------------- open set and uncertainty


def open_set_auroc(scores: Any, is_unknown: Any) -> float:
    """AUROC of a "none of the known classes" (anomaly) score: unknowns should score higher.

    Parameters
    ----------
    scores : array-like of float, shape (n,)
        Higher means more likely unknown (distance to the nearest prototype,
        anomaly score, ``1 - max probability``).
    is_unknown : array-like of bool or {0, 1}, shape (n,)
        True for examples of classes the model never saw.

    Returns
    -------
    float
        0.5 is chance, 1 a perfect separation.

    Raises
    ------
    InvalidInputError
        No known or no unknown example, NaN scores, empty or mismatched inputs.
    """
    y, s = _binary_inputs(is_unknown, scores, y_name="is_unknown", score_name="scores")
    require_both_classes(y, "is_unknown", what="open-set AUROC (known against unknown)")
    return _roc(y, s).auc


def misclassification_auroc(uncertainty: Any, is_correct: Any) -> float:
    """AUROC of an uncertainty for telling misclassified from correctly classified examples.

    Parameters
    ----------
    uncertainty : array-like of float, shape (n,)
        Higher means less sure (ensemble variance, entropy, ``1 - max probability``).
    is_correct : array-like of bool or {0, 1}, shape (n,)
        Whether the prediction was right.

    Returns
    -------
    float
        The probability that a wrong example is more uncertain than a right one.

    Raises
    ------
    InvalidInputError
        All right or all wrong, NaN values, empty or mismatched inputs.
    """
    correct, u = _binary_inputs(is_correct, uncertainty, y_name="is_correct", score_name="uncertainty")
    wrong = ~correct
    require_both_classes(wrong, "is_correct", what="misclassification AUROC (right against wrong)")
    return _roc(wrong, u).auc


def auroc_vs_reference(scores: Any, labels: Any, *, reference: Any, min_count: int = 1) -> dict:
    """ROC AUC of each class against a reference class, by one score.

    For rare sub-types against normal SN Ia (score: the sub-type's probability),
    or each held-out class against the known ones (score: the anomaly score).

    Parameters
    ----------
    scores : array-like of float, shape (n,)
        Higher means more likely *not* the reference.
    labels : array-like, shape (n,)
    reference : label or sequence of labels, keyword-only
        The negative class(es); every other label is scored against them.
    min_count : int, keyword-only
        Classes with fewer examples get ``auroc`` None and stay out of the mean.

    Returns
    -------
    dict
        ``{"per_class": {label: {"auroc", "n"}}, "mean_auroc", "n_classes",
        "n_reference", "reference", "min_count"}``, JSON-serialisable.
    """
    s = finite_scores(scores, "scores")
    labs = label_array(labels, "labels")
    same_length(scores=s, labels=labs)
    refs = list(reference) if isinstance(reference, (list, tuple, set, np.ndarray)) else [reference]
    is_ref = np.isin(labs, np.asarray(refs))
    if not is_ref.any():
        raise InvalidInputError(f"no example has the reference label(s) {refs}; the labels are "
                                f"{np.unique(labs).tolist()[:10]}")
    if is_ref.all():
        raise InvalidInputError(f"every example has the reference label(s) {refs}: nothing to score against them")
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise InvalidInputError(f"min_count must be a positive integer, got {min_count!r}")
    per_class: dict[str, dict] = {}
    used = []
    for lab in np.unique(labs[~is_ref]).tolist():
        sel = labs == lab
        n = int(sel.sum())
        auc = float("nan")
        if n >= min_count:
            keep = sel | is_ref
            auc = _roc(sel[keep], s[keep]).auc
            used.append(auc)
        per_class[str(lab)] = {"auroc": auc, "n": n}
    return jsonable({"per_class": per_class, "mean_auroc": float(np.mean(used)) if used else float("nan"),
                     "n_classes": len(used), "n_reference": int(is_ref.sum()),
                     "reference": [str(r) for r in refs], "min_count": int(min_count)})


def max_probability_uncertainty(proba: Any) -> np.ndarray:
    """``1 - max_k p_k`` per row: 0 when certain, ``1 - 1/k`` when uniform."""
    p = probabilities(proba, "proba")
    if p.ndim != 2:
        raise InvalidInputError(f"proba must be 2-D (examples, classes), got shape {p.shape}")
    return 1.0 - p.max(axis=1)


def predictive_entropy(proba: Any, *, normalize: bool = False) -> np.ndarray:
    """Shannon entropy of each row of class probabilities, in nats (or divided by ``log k`` when ``normalize``)."""
    p = probabilities(proba, "proba")
    if p.ndim != 2:
        raise InvalidInputError(f"proba must be 2-D (examples, classes), got shape {p.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    return h / np.log(p.shape[1]) if normalize else h

