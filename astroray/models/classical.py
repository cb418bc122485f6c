"""Classical real/bogus: hand-made candidate features, an Isolation Forest, a boosted-tree classifier, an ensemble.

The baselines people expect beside a CNN, and a cross-check on it:

* :func:`candidate_features` -- per candidate, from its stamps alone (so they
  exist for alert packets too): the difference stamp's peak S/N, sharpness
  (peak over the flux in the central 5x5), the negative/positive flux balance
  of the centre (dipoles), second moments and elongation, how much of the
  centre is NaN (blanked or masked pixels), how well it correlates with its
  own azimuthal profile (round vs linear), and the science and reference
  brightness at the centre (a change on a bright star or galaxy);
* :class:`ClassicalRealBogus` -- an :class:`~sklearn.ensemble.IsolationForest`
  fitted on the real candidates' features (bogus ones stand out as
  anomalies, which is how it is used without bogus labels), and a
  :class:`~sklearn.ensemble.HistGradientBoostingClassifier` fitted on both
  labels; each gives a real-probability-like score in [0, 1];
* :func:`ensemble_score` -- the mean of the available scores (U-Net,
  boosted trees, Isolation Forest), each calibrated to [0, 1].

No Ray and no torch here.
"""
from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError, NotFittedError

__all__ = ["FEATURE_NAMES", "candidate_features", "ClassicalConfig", "ClassicalRealBogus", "ensemble_score"]

FEATURE_NAMES = ("peak_snr", "sharpness", "negative_fraction", "elongation", "fwhm_proxy", "nan_fraction",
                 "radial_symmetry", "science_centre", "reference_centre", "reference_ratio", "centroid_offset")


def _robust_sigma(stamps: np.ndarray) -> np.ndarray:
    """Per stamp: 1.4826 MAD of the finite pixels (1 where there are none)."""
    flat = stamps.reshape(len(stamps), -1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN stamps
        med = np.nanmedian(flat, axis=1)
        mad = np.nanmedian(np.abs(flat - med[:, None]), axis=1) * 1.4826
    med = np.where(np.isfinite(med), med, 0.0)
    mad = np.where(np.isfinite(mad) & (mad > 0), mad, 1.0)
    return med, mad


def candidate_features(science: np.ndarray, reference: np.ndarray, difference: np.ndarray, *,
                       sign=None) -> np.ndarray:
    """The :data:`FEATURE_NAMES` features of each candidate, ``(n, len(FEATURE_NAMES))`` float64.

    Parameters
    ----------
    science, reference, difference : array (n, S, S)
        Stamps centred on the candidates (NaN where unknown).
    sign : array (n,), optional
        +1 brightening, -1 fading (the difference is flipped for fading ones);
        default: the sign of the centre.

    Raises
    ------
    InvalidInputError
        Stamps of different shapes, not 3-D, or smaller than 9 px.
    """
    arrays = [np.asarray(a, np.float64) for a in (science, reference, difference)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 3:
        raise InvalidInputError(f"stamps must be three (n, S, S) arrays of one shape, got {sorted(shapes)}")
    sci, ref, diff = arrays
    n, h, w = diff.shape
    if n == 0:
        return np.zeros((0, len(FEATURE_NAMES)))
    if min(h, w) < 9:
        raise InvalidInputError(f"stamps of {h}x{w} px are too small for the features (need >= 9)")
    cy, cx = h // 2, w // 2
    med, sigma = _robust_sigma(diff)
    d = (diff - med[:, None, None]) / sigma[:, None, None]
    centre = d[:, cy - 2:cy + 3, cx - 2:cx + 3]
    if sign is None:
        sign = np.sign(np.nan_to_num(np.nansum(centre, axis=(1, 2)), nan=1.0))
        sign[sign == 0] = 1
    d = d * np.asarray(sign, np.float64)[:, None, None]
    dz = np.nan_to_num(d)
    core = dz[:, cy - 2:cy + 3, cx - 2:cx + 3]
    peak = core.max(axis=(1, 2))
    pos = np.clip(core, 0, None).sum(axis=(1, 2))
    neg = np.clip(-dz[:, cy - 4:cy + 5, cx - 4:cx + 5], 0, None).sum(axis=(1, 2))
    sharp = np.where(pos > 0, peak / np.maximum(pos, 1e-9), 0.0)
    negative_fraction = neg / np.maximum(neg + np.clip(dz[:, cy - 4:cy + 5, cx - 4:cx + 5], 0, None).sum(axis=(1, 2)),
                                         1e-9)
    # second moments of the positive light within 6 px
    r = 6
    win = np.clip(dz[:, cy - r:cy + r + 1, cx - r:cx + r + 1], 0, None)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    total = np.maximum(win.sum(axis=(1, 2)), 1e-9)
    mx = (win * xx).sum(axis=(1, 2)) / total
    my = (win * yy).sum(axis=(1, 2)) / total
    x2 = (win * xx * xx).sum(axis=(1, 2)) / total - mx * mx
    y2 = (win * yy * yy).sum(axis=(1, 2)) / total - my * my
    xy = (win * xx * yy).sum(axis=(1, 2)) / total - mx * my
    tr, det = x2 + y2, x2 * y2 - xy * xy
    root = np.sqrt(np.maximum(tr * tr / 4 - det, 0))
    l1, l2 = tr / 2 + root, np.maximum(tr / 2 - root, 1e-6)
    elongation = np.sqrt(np.maximum(l1, 1e-6) / l2)
    fwhm_proxy = 2.355 * np.sqrt(np.maximum(tr / 2, 0))
    nan_fraction = (~np.isfinite(diff[:, cy - 4:cy + 5, cx - 4:cx + 5])).mean(axis=(1, 2))
    # correlation with its own azimuthal average: a round source ~1, a track or a streak lower
    rr = np.hypot(yy, xx).round().astype(int)
    nbins = int(rr.max()) + 1
    counts = np.maximum(np.bincount(rr.ravel(), minlength=nbins), 1)
    prof = np.stack([np.bincount(rr.ravel(), weights=s.ravel(), minlength=nbins) / counts for s in win])
    model = prof[:, rr]
    wc = win - win.mean(axis=(1, 2), keepdims=True)
    mc = model - model.mean(axis=(1, 2), keepdims=True)
    denom = np.sqrt((wc * wc).sum(axis=(1, 2)) * (mc * mc).sum(axis=(1, 2)))
    radial = np.where(denom > 0, (wc * mc).sum(axis=(1, 2)) / np.maximum(denom, 1e-12), 0.0)
    s_med, s_sig = _robust_sigma(sci)
    r_med, r_sig = _robust_sigma(ref)
    sci_c = np.nan_to_num((sci[:, cy, cx] - s_med) / s_sig)
    ref_c = np.nan_to_num((ref[:, cy, cx] - r_med) / r_sig)
    ref_ratio = np.arcsinh(ref_c) - np.arcsinh(peak)
    offset = np.hypot(mx, my)
    out = np.stack([np.arcsinh(peak), sharp, negative_fraction, np.log(elongation), fwhm_proxy, nan_fraction, radial,
                    np.arcsinh(sci_c), np.arcsinh(ref_c), ref_ratio, offset], axis=1)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


class ClassicalConfig(AstrorayConfig):
    """Options of :class:`ClassicalRealBogus`."""

    n_estimators: int = Field(default=200, ge=10)
    """Isolation Forest trees."""
    max_iter: int = Field(default=300, ge=10)
    """Boosting iterations of the tree classifier."""
    learning_rate: float = Field(default=0.1, gt=0)
    seed: int = 0


@dataclass
class ClassicalRealBogus:
    """Isolation Forest (fitted on real candidates) and boosted trees (on both labels) on :func:`candidate_features`."""

    config: ClassicalConfig = field(default_factory=ClassicalConfig)
    iforest: object = None
    trees: object = None
    _if_range: tuple = (0.0, 1.0)

    def fit(self, features: np.ndarray, labels: np.ndarray) -> "ClassicalRealBogus":
        from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest

        x = np.asarray(features, np.float64)
        y = np.asarray(labels).astype(int)
        if x.ndim != 2 or len(x) != len(y) or len(np.unique(y)) < 2:
            raise InvalidInputError("fit needs (n, features) and labels of both classes")
        cfg = self.config
        self.iforest = IsolationForest(n_estimators=cfg.n_estimators, random_state=cfg.seed).fit(x[y == 1])
        raw = self.iforest.score_samples(x)
        self._if_range = (float(np.quantile(raw, 0.01)), float(np.quantile(raw, 0.99)))
        self.trees = HistGradientBoostingClassifier(max_iter=cfg.max_iter, learning_rate=cfg.learning_rate,
                                                    random_state=cfg.seed).fit(x, y)
        return self

    def scores(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """``{"iforest": ..., "trees": ...}`` real-likeness in [0, 1] per candidate."""
        if self.iforest is None or self.trees is None:
            raise NotFittedError("ClassicalRealBogus is not fitted: call fit() or load a saved one")
        x = np.asarray(features, np.float64)
        if len(x) == 0:
            return {"iforest": np.zeros(0), "trees": np.zeros(0)}
        lo, hi = self._if_range
        iso = np.clip((self.iforest.score_samples(x) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
        return {"iforest": iso, "trees": self.trees.predict_proba(x)[:, 1]}

    def save(self, path) -> None:
        with open(path, "wb") as f:
            pickle.dump({"config": self.config.model_dump(), "iforest": self.iforest, "trees": self.trees,
                         "if_range": self._if_range}, f)

    @classmethod
    def load(cls, path) -> "ClassicalRealBogus":
        with open(path, "rb") as f:
            state = pickle.load(f)  # noqa: S301 - our own artifact, from the user's MLflow store
        out = cls(ClassicalConfig(**state["config"]), state["iforest"], state["trees"])
        out._if_range = tuple(state["if_range"])
        return out


def ensemble_score(*scores) -> np.ndarray:
    """The mean of the given score arrays (each in [0, 1]); NaN where every one is NaN."""
    stack = np.stack([np.asarray(s, np.float64) for s in scores if s is not None])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN stamps
        return np.nanmean(stack, axis=0)
