r"""Predictive uncertainty from an ensemble, beside calibrated probabilities, with an out-of-distribution flag.

A *deep ensemble* (Lakshminarayanan et al. 2017: the same network trained
from several random starts) gives ``M`` probability vectors per object.  From
them (:func:`ensemble_uncertainty`):

* the **mean probabilities** :math:`\bar p = \frac1M \sum_m p_m`;
* the **predictive entropy** :math:`H[\bar p] = -\sum_k \bar p_k \log \bar p_k`
  (total uncertainty, nats);
* the **expected entropy** :math:`\frac1M \sum_m H[p_m]` (what each member
  itself is unsure of: noise, overlapping classes);
* the **mutual information** :math:`H[\bar p] - \frac1M \sum_m H[p_m] \ge 0`
  (Houlsby et al. 2011, "BALD"): the members' disagreement, large where the
  training data said little -- new kinds of objects.

:class:`UncertaintyEstimator` (configure once) takes member probabilities (or
logits), calibrates the mean by a temperature fitted on validation data
(:class:`~astroray.eval.TemperatureScaling`), and raises an
**out-of-distribution flag** where an OOD score (``ood_score``: the mutual
information, the entropy, or any score given, e.g. the anomaly score of
:mod:`astroray.models.anomaly`) exceeds the ``ood_quantile`` of the
validation objects' scores.  Nothing here imports Ray; torch is not needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError, NotFittedError

__all__ = [
    "EnsembleUncertainty",
    "UncertaintyConfig",
    "UncertaintyEstimator",
    "UncertaintyResult",
    "ensemble_uncertainty",
]


@dataclass
class EnsembleUncertainty:
    """Uncertainty of an ensemble's predictions (one entry per object; nats)."""

    mean_probabilities: np.ndarray
    """(n, k) mean over members."""
    entropy: np.ndarray
    """Predictive entropy of the mean (total)."""
    expected_entropy: np.ndarray
    """Mean of the members' entropies (aleatoric part)."""
    mutual_information: np.ndarray
    """``entropy - expected_entropy`` (epistemic part; 0 for one member)."""
    member_std: np.ndarray
    """Standard deviation over members of the probability of the mean's top class."""


def _entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def _member_probabilities(values, *, logits: bool) -> np.ndarray:
    p = np.asarray(values, dtype=np.float64)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3 or p.shape[2] < 1:
        raise InvalidInputError(f"member probabilities must be (members, n, classes), got shape {p.shape}")
    if logits:
        if not np.all(np.isfinite(p)):
            raise InvalidInputError("member logits must be finite")
        p = p - p.max(axis=2, keepdims=True)
        p = np.exp(p)
        p /= p.sum(axis=2, keepdims=True)
        return p
    finite = np.isfinite(p)
    if np.any(finite & ((p < -1e-9) | (p > 1 + 1e-9))):
        raise InvalidInputError("member probabilities must lie in [0, 1]; pass logits=True for logits")
    rows = np.all(finite, axis=2)
    sums = np.where(rows, p.sum(axis=2), 1.0)
    if np.any(np.abs(sums - 1.0) > 1e-4):
        raise InvalidInputError("each member's probabilities must sum to 1 over the classes")
    return np.clip(p, 0.0, 1.0)


def ensemble_uncertainty(member_probabilities, *, logits: bool = False) -> EnsembleUncertainty:
    """Mean probabilities, predictive entropy, expected entropy and mutual information.

    Parameters
    ----------
    member_probabilities : array (members, n, k) or (n, k)
        Each member's class probabilities (rows of NaN are carried through as NaN).
    logits : bool, keyword-only
        The input holds logits (softmax is taken per member).

    Raises
    ------
    InvalidInputError
        Wrong shape, probabilities outside [0, 1] or rows not summing to 1.
    """
    p = _member_probabilities(member_probabilities, logits=logits)
    mean = p.mean(axis=0)
    h = _entropy(mean)
    eh = _entropy(p).mean(axis=0)
    top = np.nan_to_num(mean, nan=0.0).argmax(axis=1) if mean.size else np.zeros(0, np.int64)
    std = p[:, np.arange(p.shape[1]), top].std(axis=0) if p.shape[1] else np.zeros(0)
    bad = ~np.all(np.isfinite(mean), axis=1)
    mi = np.maximum(h - eh, 0.0)
    for arr in (h, eh, mi, std):
        arr[bad] = np.nan
    return EnsembleUncertainty(mean_probabilities=mean, entropy=h, expected_entropy=eh, mutual_information=mi,
                               member_std=std)


class UncertaintyConfig(AstrorayConfig):
    """Options of :class:`UncertaintyEstimator`.

    Attributes
    ----------
    ood_score : {"mutual_information", "entropy", "external"}
        What the OOD flag thresholds ("external": a score passed to ``run``).
    ood_quantile : float
        The flag is raised above this quantile of the validation scores.
    calibrate : bool
        Fit a temperature to the mean probabilities on the validation data.
    """

    ood_score: Literal["mutual_information", "entropy", "external"] = "mutual_information"
    ood_quantile: float = Field(default=0.95, gt=0, lt=1)
    calibrate: bool = True


@dataclass
class UncertaintyResult:
    """Per object: calibrated probabilities, uncertainties, OOD score and flag."""

    probabilities: np.ndarray
    """(n, k) calibrated mean probabilities (uncalibrated when ``calibrate`` is off)."""
    entropy: np.ndarray
    mutual_information: np.ndarray
    expected_entropy: np.ndarray
    ood_score: np.ndarray
    ood: np.ndarray
    """bool: ``ood_score`` above the threshold."""


class UncertaintyEstimator:
    """Calibrated ensemble probabilities, entropy, mutual information and an OOD flag (configure once).

    Example
    -------
    >>> est = UncertaintyEstimator(UncertaintyConfig()).fit(val_member_proba, val_labels)   # doctest: +SKIP
    >>> out = est.run(test_member_proba)                                                   # doctest: +SKIP
    >>> out.probabilities, out.mutual_information, out.ood                                  # doctest: +SKIP
    """

    def __init__(self, config: UncertaintyConfig | None = None):
        if config is None:
            config = UncertaintyConfig()
        if not isinstance(config, UncertaintyConfig):
            raise InvalidInputError(f"config must be an UncertaintyConfig, got {type(config).__name__}")
        self.config = config
        self.calibrator = None
        self.threshold: float | None = None

    def _score(self, unc: EnsembleUncertainty, external) -> np.ndarray:
        if self.config.ood_score == "external":
            if external is None:
                raise InvalidInputError("ood_score='external' needs the score passed as external_score=")
            s = np.asarray(external, np.float64).reshape(-1)
            if s.shape != unc.entropy.shape:
                raise InvalidInputError(f"external_score has {s.size} values for {unc.entropy.size} objects")
            return s
        return unc.mutual_information if self.config.ood_score == "mutual_information" else unc.entropy

    def fit(self, member_probabilities, labels, *, external_score=None, logits: bool = False
            ) -> UncertaintyEstimator:
        """Fit the temperature and the OOD threshold on validation objects of the known classes.

        Parameters
        ----------
        member_probabilities : array (members, n, k)
        labels : array (n,) of int
            Class indices (columns of the probabilities).
        external_score : array (n,), optional
            For ``ood_score="external"``.
        """
        from astroray.eval import TemperatureScaling

        unc = ensemble_uncertainty(member_probabilities, logits=logits)
        y = np.asarray(labels).reshape(-1)
        if y.shape[0] != unc.entropy.shape[0]:
            raise InvalidInputError(f"labels has {y.shape[0]} entries for {unc.entropy.shape[0]} objects")
        ok = np.all(np.isfinite(unc.mean_probabilities), axis=1)
        if self.config.calibrate:
            logp = np.log(np.clip(unc.mean_probabilities[ok], 1e-12, 1.0))
            self.calibrator = TemperatureScaling().fit(logp, y[ok].astype(np.int64))
        score = self._score(unc, external_score)
        finite = score[np.isfinite(score)]
        if finite.size == 0:
            raise InvalidInputError("no finite OOD score among the validation objects")
        self.threshold = float(np.quantile(finite, self.config.ood_quantile))
        return self

    def run(self, member_probabilities, *, external_score=None, logits: bool = False) -> UncertaintyResult:
        """Calibrated probabilities, uncertainties and OOD flags of new objects."""
        if self.threshold is None:
            raise NotFittedError("UncertaintyEstimator is not fitted: call fit() on validation objects first")
        unc = ensemble_uncertainty(member_probabilities, logits=logits)
        proba = unc.mean_probabilities.copy()
        ok = np.all(np.isfinite(proba), axis=1)
        if self.calibrator is not None and ok.any():
            proba[ok] = self.calibrator.transform(np.log(np.clip(proba[ok], 1e-12, 1.0)))
        score = self._score(unc, external_score)
        return UncertaintyResult(probabilities=proba, entropy=unc.entropy, mutual_information=unc.mutual_information,
                                 expected_entropy=unc.expected_entropy, ood_score=score,
                                 ood=np.isfinite(score) & (score > self.threshold))
