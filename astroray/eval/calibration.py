"""Calibration: how far predicted probabilities are from observed frequencies, and fixing it.

* :func:`reliability_diagram` -- per equal-width confidence bin, the mean
  confidence, the observed accuracy (or frequency) and the count;
  :func:`expected_calibration_error` (ECE) summarises it;
  :func:`negative_log_likelihood`.
* :class:`TemperatureScaling` -- one temperature ``T`` dividing the logits,
  fitted on validation logits by minimising the NLL (Guo et al. 2017); it never
  changes the ranking of binary scores or the argmax of multi-class ones.
* :class:`IsotonicCalibration` -- a monotone step-wise map fitted by isotonic
  regression (binary; one-vs-rest per class then renormalised for multi-class).

A fitted calibrator is saved next to its model as JSON (``to_dict``) and
restored with ``from_dict`` or :func:`calibrator_from_dict`::

    calib = TemperatureScaling().fit(val_logits, val_labels)
    proba = calib.transform(test_logits)
    json.dump(calib.to_dict(), open("calibration.json", "w"))
    calib = calibrator_from_dict(json.load(open("calibration.json")))

Two ECE flavours, picked by the shape of the probabilities:

* 1-D ``P(positive)`` (binary): bins of ``P(positive)``, compared with the
  fraction of positives in each bin;
* 2-D ``(n, k)`` (multi-class, also ``k = 2``): top-label, bins of the highest
  probability, compared with the accuracy of the argmax.

Bin ``i`` of ``M`` holds confidences in ``(i/M, (i+1)/M]`` (the first also holds 0).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from astroray.errors import InvalidInputError, NotFittedError
from astroray.eval._validate import (
    binary_labels,
    class_indices,
    finite_matrix,
    finite_scores,
    jsonable,
    probabilities,
    require_both_classes,
    same_length,
)

__all__ = [
    "ReliabilityDiagram",
    "reliability_diagram",
    "expected_calibration_error",
    "negative_log_likelihood",
    "TemperatureScaling",
    "IsotonicCalibration",
    "calibrator_from_dict",
    "NotFittedError",
]

_NLL_EPS = 1e-15  # probabilities are clipped here so one confident mistake costs ~34.5 nats, not inf


def _labels_for(y_true: Any, p: np.ndarray) -> np.ndarray:
    """Bool labels for 1-D probabilities, class indices for 2-D ones."""
    if p.ndim == 1:
        y = binary_labels(y_true, "y_true")
    else:
        y = class_indices(y_true, p.shape[1], "y_true")
    same_length(y_true=y, probs=p)
    return y


def _check_n_bins(n_bins: Any) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise InvalidInputError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Calibration per confidence bin.

    Attributes
    ----------
    edges : ndarray of float64, shape (n_bins + 1,)
        Equal-width bin edges on [0, 1].
    confidence : ndarray of float64, shape (n_bins,)
        Mean predicted probability per bin (NaN for an empty bin).
    accuracy : ndarray of float64, shape (n_bins,)
        Observed accuracy (top-label) or fraction of positives (binary) per bin.
    counts : ndarray of int64, shape (n_bins,)
    ece : float
        ``sum(counts / n * |accuracy - confidence|)`` over the non-empty bins.
    kind : {"binary", "top-label"}
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray
    ece: float
    kind: str

    def to_dict(self) -> dict:
        """JSON-serialisable (empty bins' NaN becomes ``None``)."""
        return jsonable({"kind": self.kind, "edges": self.edges, "confidence": self.confidence,
                         "accuracy": self.accuracy, "counts": self.counts, "ece": self.ece})


def _reliability(y: np.ndarray, p: np.ndarray, n_bins: int) -> ReliabilityDiagram:
    if p.ndim == 1:
        conf, hit, kind = p, y.astype(np.float64), "binary"
    else:
        conf, hit, kind = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64), "top-label"
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / counts
        mean_hit = np.bincount(which, weights=hit, minlength=n_bins) / counts
    filled = counts > 0
    ece = float(np.sum(counts[filled] / conf.size * np.abs(mean_hit[filled] - mean_conf[filled])))
    return ReliabilityDiagram(edges=edges, confidence=np.where(filled, mean_conf, np.nan),
                              accuracy=np.where(filled, mean_hit, np.nan), counts=counts, ece=ece, kind=kind)


def reliability_diagram(y_true: Any, probs: Any, *, n_bins: int = 15) -> ReliabilityDiagram:
    """Mean confidence, observed accuracy and count per equal-width confidence bin.

    Parameters
    ----------
    y_true : array-like, shape (n,)
        0/1 (or bool) with 1-D ``probs``; class indices into the columns with 2-D ``probs``.
    probs : array-like, shape (n,) or (n, k)
        ``P(positive)``, or class probabilities whose rows sum to 1.
    n_bins : int, keyword-only

    Returns
    -------
    ReliabilityDiagram

    Raises
    ------
    InvalidInputError
        Empty or mismatched inputs, NaN, values outside [0, 1] (logits), rows
        not summing to 1, labels that are not 0/1 or valid class indices.
    """
    n_bins = _check_n_bins(n_bins)
    p = probabilities(probs, "probs")
    return _reliability(_labels_for(y_true, p), p, n_bins)


def expected_calibration_error(y_true: Any, probs: Any, *, n_bins: int = 15) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins.

    Binary (1-D ``P(positive)``) or top-label (2-D probabilities); see
    :func:`reliability_diagram` for the inputs and the module docstring for the
    definitions.  0 is perfect calibration.
    """
    return reliability_diagram(y_true, probs, n_bins=n_bins).ece


def _nll(y: np.ndarray, p: np.ndarray) -> float:
    if p.ndim == 1:
        p_true = np.where(y, p, 1.0 - p)
    else:
        p_true = p[np.arange(y.size), y]
    return float(-np.mean(np.log(np.clip(p_true, _NLL_EPS, 1.0))))


def negative_log_likelihood(y_true: Any, probs: Any) -> float:
    """Mean negative log-likelihood (log loss, nats) of the true labels.

    Probabilities are clipped at 1e-15, so a confident mistake costs about 34.5
    nats rather than infinity.  Inputs as :func:`reliability_diagram`.
    """
    p = probabilities(probs, "probs")
    return _nll(_labels_for(y_true, p), p)


# --------------------------------------------------------------------------- calibrators


def _check_method(data: Any, method: str) -> dict:
    if not isinstance(data, dict):
        raise InvalidInputError(f"a saved calibrator is a dict, got {type(data).__name__}")
    if data.get("method") != method:
        raise InvalidInputError(f"this is not a saved {method} calibrator (method={data.get('method')!r})")
    return data


class TemperatureScaling:
    """Divide logits by one temperature fitted to minimise the validation NLL.

    Binary models give 1-D logits (log-odds of the positive class, turned into
    ``sigmoid(z / T)``); multi-class models give ``(n, k)`` logits (turned into
    ``softmax(z / T)``).  For a model that only outputs probabilities, pass
    ``log(p)`` (multi-class) or ``log(p / (1 - p))`` (binary).

    Parameters
    ----------
    bounds : (float, float), keyword-only
        The temperatures searched; a fit that ends on a bound warns (the logits
        separate the validation classes perfectly, or carry no information).

    Attributes
    ----------
    temperature : float or None
        ``None`` until fitted.  ``T > 1`` softens over-confident models.
    binary : bool or None
        Whether it was fitted on 1-D (binary) logits.
    n_classes : int or None
        2 for binary logits.
    nll_before, nll_after : float or None
        Validation NLL at ``T = 1`` and at the fitted ``T``.
    """

    method: ClassVar[str] = "temperature"

    def __init__(self, *, bounds: tuple[float, float] = (0.05, 20.0)):
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise InvalidInputError(f"bounds must be two temperatures (low, high), got {bounds!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
            raise InvalidInputError(f"bounds must satisfy 0 < low < high, got {bounds!r}")
        self.bounds = (lo, hi)
        self.temperature: float | None = None
        self.binary: bool | None = None
        self.n_classes: int | None = None
        self.nll_before: float | None = None
        self.nll_after: float | None = None

    def __repr__(self) -> str:
        return f"TemperatureScaling(temperature={self.temperature}, n_classes={self.n_classes})"

    @staticmethod
    def _logits(logits: Any) -> np.ndarray:
        z = np.asarray(logits)
        if z.ndim == 1:
            return finite_scores(z, "logits")
        if z.ndim == 2:
            return finite_matrix(z, "logits")
        raise InvalidInputError(f"logits must be 1-D (binary log-odds) or 2-D (examples, classes), got shape {z.shape}")

    @staticmethod
    def _nll_at(z: np.ndarray, y: np.ndarray, beta: float) -> float:
        from scipy.special import log_expit, logsumexp

        if z.ndim == 1:
            sign = np.where(y, 1.0, -1.0)
            return float(-np.mean(log_expit(sign * beta * z)))
        scaled = beta * z
        return float(np.mean(logsumexp(scaled, axis=1) - scaled[np.arange(y.size), y]))

    def fit(self, logits: Any, y_true: Any) -> TemperatureScaling:
        """Fit the temperature on validation logits and labels.

        Parameters
        ----------
        logits : array-like, shape (n,) or (n, k)
        y_true : array-like, shape (n,)
            0/1 (or bool) for 1-D logits, class indices for 2-D ones.

        Returns
        -------
        TemperatureScaling
            ``self``, fitted.

        Raises
        ------
        InvalidInputError
            Empty or mismatched inputs, NaN logits, bad labels, or a single class.
        """
        z = self._logits(logits)
        if z.ndim == 1:
            y = binary_labels(y_true, "y_true")
            same_length(logits=z, y_true=y)
            require_both_classes(y, what="temperature scaling")
        else:
            y = class_indices(y_true, z.shape[1], "y_true")
            same_length(logits=z, y_true=y)
            if np.unique(y).size < 2:
                raise InvalidInputError(f"y_true holds only class {int(y[0])}: temperature scaling needs "
                                        "validation examples of at least two classes")
        from scipy.optimize import minimize_scalar

        # The NLL is convex in beta = 1 / T, so a bounded 1-D search finds the global minimum.
        lo, hi = 1.0 / self.bounds[1], 1.0 / self.bounds[0]
        result = minimize_scalar(lambda b: self._nll_at(z, y, b), bounds=(lo, hi), method="bounded",
                                 options={"xatol": 1e-10 * hi})
        candidates = [(float(result.fun), float(result.x)), (self._nll_at(z, y, lo), lo), (self._nll_at(z, y, hi), hi)]
        nll, beta = min(candidates)
        self.temperature = 1.0 / beta
        self.binary = z.ndim == 1
        self.n_classes = 2 if self.binary else int(z.shape[1])
        self.nll_before = self._nll_at(z, y, 1.0)
        self.nll_after = nll
        if np.isclose(beta, lo, rtol=1e-6) or np.isclose(beta, hi, rtol=1e-6):
            warnings.warn(f"temperature scaling stopped at the bound T={self.temperature:.4g} of {self.bounds}: "
                          "the validation logits separate the classes perfectly or carry no information",
                          stacklevel=2)
        return self

    def _require_fitted(self) -> None:
        if self.temperature is None:
            raise NotFittedError("TemperatureScaling is not fitted: call fit(logits, y_true) or load one with "
                                 "from_dict")

    def transform(self, logits: Any) -> np.ndarray:
        """Calibrated probabilities: ``sigmoid(z / T)`` (shape (n,)) or ``softmax(z / T)`` (shape (n, k))."""
        self._require_fitted()
        z = self._logits(logits)
        if (z.ndim == 1) != self.binary or (z.ndim == 2 and z.shape[1] != self.n_classes):
            fitted = "1-D binary logits" if self.binary else f"logits with {self.n_classes} columns"
            raise InvalidInputError(f"fitted on {fitted}, got logits of shape {z.shape}")
        from scipy.special import expit, softmax

        if z.ndim == 1:
            return expit(z / self.temperature)
        return softmax(z / self.temperature, axis=1)

    def to_dict(self) -> dict:
        """The fitted state as a JSON-serialisable dict."""
        self._require_fitted()
        return jsonable({"method": self.method, "temperature": self.temperature, "binary": self.binary,
                         "n_classes": self.n_classes, "bounds": list(self.bounds),
                         "nll_before": self.nll_before, "nll_after": self.nll_after})

    @classmethod
    def from_dict(cls, data: dict) -> TemperatureScaling:
        """Restore a calibrator saved with :meth:`to_dict`."""
        data = _check_method(data, cls.method)
        try:
            out = cls(bounds=tuple(data.get("bounds", (0.05, 20.0))))
            temperature = float(data["temperature"])
            binary = bool(data["binary"])
            n_classes = int(data["n_classes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"saved temperature calibrator is incomplete or malformed: {exc!r}") from None
        if not (np.isfinite(temperature) and temperature > 0) or n_classes < 2:
            raise InvalidInputError(f"saved temperature calibrator has temperature={temperature}, "
                                    f"n_classes={n_classes}: need T > 0 and at least 2 classes")
        out.temperature, out.binary, out.n_classes = temperature, binary, n_classes
        out.nll_before, out.nll_after = data.get("nll_before"), data.get("nll_after")
        return out


class IsotonicCalibration:
    """A monotone non-decreasing map from scores to probabilities, fitted by isotonic regression.

    Binary: 1-D scores (any monotone scale: probabilities, logits) to
    ``P(positive)``.  Multi-class: each column of ``(n, k)`` scores is
    calibrated one-vs-rest, then rows are renormalised to sum to 1 (a row that
    maps to all zeros becomes uniform).  Outside the fitted range the map is
    flat (clipped).  It can merge neighbouring scores into ties, so a ROC AUC
    may drop slightly; it never reverses an order.

    Attributes
    ----------
    binary : bool or None
    n_classes : int or None
    x_thresholds, y_thresholds : list of ndarray or None
        Per class (one entry for binary), the knots of the piecewise-linear
        map; ``None`` until fitted.
    """

    method: ClassVar[str] = "isotonic"

    def __init__(self):
        self.binary: bool | None = None
        self.n_classes: int | None = None
        self.x_thresholds: list[np.ndarray] | None = None
        self.y_thresholds: list[np.ndarray] | None = None

    def __repr__(self) -> str:
        return f"IsotonicCalibration(n_classes={self.n_classes})"

    @staticmethod
    def _scores(scores: Any) -> np.ndarray:
        s = np.asarray(scores)
        if s.ndim == 1:
            return finite_scores(s, "scores")
        if s.ndim == 2:
            return finite_matrix(s, "scores")
        raise InvalidInputError(f"scores must be 1-D (binary) or 2-D (examples, classes), got shape {s.shape}")

    @staticmethod
    def _fit_one(x: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        iso.fit(x, target.astype(np.float64))
        return np.asarray(iso.X_thresholds_, np.float64), np.asarray(iso.y_thresholds_, np.float64)

    def fit(self, scores: Any, y_true: Any) -> IsotonicCalibration:
        """Fit on validation scores and labels.

        Parameters
        ----------
        scores : array-like, shape (n,) or (n, k)
        y_true : array-like, shape (n,)
            0/1 (or bool) for 1-D scores; class indices for 2-D ones, every
            class present at least once.

        Returns
        -------
        IsotonicCalibration
            ``self``, fitted.

        Raises
        ------
        InvalidInputError
            Empty or mismatched inputs, NaN scores, bad labels, a single class
            (binary) or a class without validation examples (multi-class).
        """
        s = self._scores(scores)
        if s.ndim == 1:
            y = binary_labels(y_true, "y_true")
            same_length(scores=s, y_true=y)
            require_both_classes(y, what="isotonic calibration")
            knots = [self._fit_one(s, y)]
        else:
            k = s.shape[1]
            y = class_indices(y_true, k, "y_true")
            same_length(scores=s, y_true=y)
            missing = sorted(set(range(k)) - set(np.unique(y).tolist()))
            if missing:
                raise InvalidInputError(f"classes {missing} have no validation example: isotonic calibration "
                                        "needs every class at least once (use temperature scaling, or a larger "
                                        "validation split)")
            knots = [self._fit_one(s[:, c], y == c) for c in range(k)]
        self.binary = s.ndim == 1
        self.n_classes = 2 if self.binary else int(s.shape[1])
        self.x_thresholds = [x for x, _ in knots]
        self.y_thresholds = [v for _, v in knots]
        return self

    def _require_fitted(self) -> None:
        if self.x_thresholds is None:
            raise NotFittedError("IsotonicCalibration is not fitted: call fit(scores, y_true) or load one with "
                                 "from_dict")

    def transform(self, scores: Any) -> np.ndarray:
        """Calibrated probabilities, shape (n,) for binary, (n, k) rows summing to 1 for multi-class."""
        self._require_fitted()
        s = self._scores(scores)
        if (s.ndim == 1) != self.binary or (s.ndim == 2 and s.shape[1] != self.n_classes):
            fitted = "1-D binary scores" if self.binary else f"scores with {self.n_classes} columns"
            raise InvalidInputError(f"fitted on {fitted}, got scores of shape {s.shape}")
        if s.ndim == 1:
            return np.interp(s, self.x_thresholds[0], self.y_thresholds[0])
        cols = np.stack([np.interp(s[:, c], self.x_thresholds[c], self.y_thresholds[c])
                         for c in range(self.n_classes)], axis=1)
        totals = cols.sum(axis=1, keepdims=True)
        return np.where(totals > 0, cols / np.where(totals > 0, totals, 1.0), 1.0 / self.n_classes)

    def to_dict(self) -> dict:
        """The fitted knots as a JSON-serialisable dict."""
        self._require_fitted()
        return jsonable({"method": self.method, "binary": self.binary, "n_classes": self.n_classes,
                         "x_thresholds": self.x_thresholds, "y_thresholds": self.y_thresholds})

    @classmethod
    def from_dict(cls, data: dict) -> IsotonicCalibration:
        """Restore a calibrator saved with :meth:`to_dict`."""
        data = _check_method(data, cls.method)
        try:
            binary = bool(data["binary"])
            n_classes = int(data["n_classes"])
            xs = [np.asarray(x, np.float64) for x in data["x_thresholds"]]
            ys = [np.asarray(v, np.float64) for v in data["y_thresholds"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"saved isotonic calibrator is incomplete or malformed: {exc!r}") from None
        expected = 1 if binary else n_classes
        if len(xs) != expected or len(ys) != expected:
            raise InvalidInputError(f"saved isotonic calibrator needs {expected} knot lists, got {len(xs)}")
        for x, v in zip(xs, ys):
            if (x.ndim != 1 or x.shape != v.shape or x.size == 0 or np.any(np.diff(x) < 0)
                    or not np.all(np.isfinite(x)) or not np.all((v >= 0) & (v <= 1))):
                raise InvalidInputError("saved isotonic calibrator has malformed knots (need equal-length, "
                                        "sorted x and y in [0, 1])")
        out = cls()
        out.binary, out.n_classes, out.x_thresholds, out.y_thresholds = binary, n_classes, xs, ys
        return out


_CALIBRATORS = {TemperatureScaling.method: TemperatureScaling, IsotonicCalibration.method: IsotonicCalibration}


def calibrator_from_dict(data: dict) -> TemperatureScaling | IsotonicCalibration:
    """Restore whichever calibrator ``data`` (from ``to_dict``) describes, by its ``"method"`` key."""
    if not isinstance(data, dict) or data.get("method") not in _CALIBRATORS:
        method = data.get("method") if isinstance(data, dict) else None
        raise InvalidInputError(f"unknown calibrator method {method!r}; known: {sorted(_CALIBRATORS)}")
    return _CALIBRATORS[data["method"]].from_dict(data)
