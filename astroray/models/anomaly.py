"""Anomaly ranking of light curves: embedding distances and classical detectors, combined by rank.

Objects nobody has labelled -- a new class, a broken light curve, a rare
physical event -- should come first in a follow-up list.  Each detector scores
how unlike the *reference* objects (the known classes: a training set) an
object is, higher = stranger:

* ``prototype`` -- in a ProtoNet embedding (:mod:`astroray.models.protonet`):
  the squared distance to the nearest class prototype divided by that class's
  spread (needs the reference labels);
* ``knn`` -- in the same embedding: the mean distance to the ``n_neighbors``
  nearest reference objects;
* ``iforest`` -- an Isolation Forest (Liu et al. 2008) on the standardised
  features: ``-score_samples`` (short isolation paths = anomalous);
* ``feature_knn`` -- the k-NN outlier score (Ramaswamy et al. 2000) on the
  leading principal components of the standardised features (in all ~200
  dimensions every neighbourhood looks alike): the mean distance to the
  ``n_neighbors`` nearest reference objects;
* ``lof`` -- the Local Outlier Factor (Breunig et al. 2000, novelty mode) on
  the same components: how much sparser an object's neighbourhood is than its
  neighbours' own.  Not in the default set: it scored unseen classes near
  chance (likely because such a class forms a group of its own, not a sparse
  spot in the reference's density); on the simulator's classes with one held
  out (SLSN, TDE, KN:
  ``benchmarks/bench_fewshot.py --tasks simulated``) LOF's ROC AUC was 0.52,
  0.74 and 0.45, the k-NN score's on the same components 0.85, 0.92 and 0.66,
  and the combination with it in LOF's place 0.965, 0.963 and 0.892 (with LOF
  0.916, 0.941 and 0.860).

Scores of different detectors live on different scales, so each is turned
into its **percentile among the reference objects' scores** (for the
reference objects themselves, scores without the object itself: the k-NN and
prototype distances leave it out, LOF uses its training outlier factors), and
the combined score is the mean of the percentiles -- a rank combination that
does not depend on the batch being scored.  An object above every reference
object scores 1 in that detector.

The features are the ProtoNet featurizer's output (NaN allowed), standardised
here by a robust scaler fitted on the reference (median and IQR, clipped,
NaN -> 0).  :class:`~astroray.models.classical.ClassicalRealBogus` holds an
Isolation Forest too, but fitted on real/bogus stamp features with labels;
this module uses scikit-learn's detectors directly on light-curve features.

::

    detector = AnomalyDetector(AnomalyConfig()).fit(train_features, embeddings=train_emb, labels=train_labels)
    result = detector.run(new_features, embeddings=new_emb)
    table = follow_up_list(result, object_ids, n=50)
    plot_top_anomalies(lightcurves, result, "anomalies.png", n=12)

No Ray, no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError, NotFittedError

__all__ = ["DEFAULT_DETECTORS", "DETECTORS", "AnomalyConfig", "AnomalyDetector", "AnomalyResult", "IsolationPaths",
           "average_path_length", "follow_up_list", "plot_top_anomalies"]

DETECTORS = ("prototype", "knn", "iforest", "feature_knn", "lof")
Detector = Literal["prototype", "knn", "iforest", "feature_knn", "lof"]
DEFAULT_DETECTORS = ("prototype", "knn", "iforest", "feature_knn")


class AnomalyConfig(AstrorayConfig):
    """Which detectors, and their options.

    Attributes
    ----------
    detectors : tuple of {"prototype", "knn", "iforest", "feature_knn", "lof"}
        ``prototype`` and ``knn`` need embeddings; ``prototype`` also reference labels.
        Default :data:`DEFAULT_DETECTORS` (all but ``lof``; module docstring).
    weights : dict of str to float, optional
        Weight of each detector's percentile in the combination (default equal).
    n_neighbors : int
        k of the k-NN distances (``knn``, ``feature_knn``) and of LOF.
    n_estimators : int
        Isolation Forest trees.
    lof_components : int
        ``feature_knn`` and LOF work on this many principal components of the standardised features.
    clip : float
        Standardised features are clipped to ``[-clip, clip]``.
    seed : int
    """

    detectors: tuple[Detector, ...] = DEFAULT_DETECTORS
    weights: dict[str, float] | None = None
    n_neighbors: int = Field(default=10, ge=1)
    n_estimators: int = Field(default=200, ge=10)
    lof_components: int = Field(default=10, ge=1)
    clip: float = Field(default=6.0, gt=0)
    seed: int = 0

    @field_validator("detectors")
    @classmethod
    def _detectors(cls, value):
        if not value or len(set(value)) != len(value):
            raise ValueError(f"detectors must be a non-empty list without repeats, got {value!r}")
        return value

    @field_validator("weights")
    @classmethod
    def _weights(cls, value):
        if value is None:
            return value
        unknown = set(value) - set(DETECTORS)
        if unknown:
            raise ValueError(f"weights for unknown detectors {sorted(unknown)}; known: {', '.join(DETECTORS)}")
        if any(w < 0 for w in value.values()) or sum(value.values()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        return value


@dataclass
class AnomalyResult:
    """Per object: each detector's raw score and reference percentile, and the combined score in [0, 1]."""

    scores: dict[str, np.ndarray]
    percentiles: dict[str, np.ndarray]
    combined: np.ndarray
    """Weighted mean of the percentiles: the rank of the object's strangeness among the reference objects."""
    valid: np.ndarray = field(default=None)  # type: ignore[assignment]
    """bool: the object had features (an all-NaN row scores NaN)."""

    def order(self) -> np.ndarray:
        """Row indices from most to least anomalous (NaN last)."""
        key = np.where(np.isfinite(self.combined), self.combined, -np.inf)
        return np.argsort(-key, kind="stable")


def _as_matrix(values, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise InvalidInputError(f"{name} must be 2-D (objects, columns), got shape {x.shape}")
    return x


def _as_embeddings(values, n: int) -> np.ndarray:
    e = np.asarray(values, dtype=np.float64)
    if e.ndim == 2:
        e = e[None]
    if e.ndim != 3 or e.shape[1] != n:
        raise InvalidInputError(f"embeddings must be (n, d) or (members, n, d) for {n} objects, got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise InvalidInputError("embeddings must be finite (embed only light curves with points)")
    return e


def average_path_length(n) -> np.ndarray:
    """``c(n)`` of Liu et al. (2008, eq. 1): the mean path length of an unsuccessful search in a binary search
    tree of ``n`` points (0 for n <= 1, 1 for n = 2), the Isolation Forest's normaliser and leaf correction."""
    n = np.asarray(n, dtype=np.float64)
    out = np.where(n == 2, 1.0, 0.0)
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class IsolationPaths:
    """A fitted scikit-learn ``IsolationForest`` scored from its trees' public arrays (``tree_``), for small
    batches: ``score_samples`` equals scikit-learn's (the anomaly score ``-2^(-E[h(x)] / c(max_samples))`` of
    Liu et al. 2008), without its per-tree input validation and dispatch, which cost ~30 ms a call whatever the
    batch size (one alert through Serve paid it in full)."""

    def __init__(self, forest):
        n_features = int(forest.n_features_in_)
        mf = forest.max_features
        k = int(mf * n_features) if isinstance(mf, float) else int(mf)
        subsample = k != n_features  # scikit-learn indexes the features only then, at fit and at score
        self.trees = []
        for estimator, features in zip(forest.estimators_, forest.estimators_features_):
            tree = estimator.tree_
            depth = np.zeros(tree.node_count)
            for node in range(tree.node_count):  # children are numbered after their parent
                for child in (tree.children_left[node], tree.children_right[node]):
                    if child >= 0:
                        depth[child] = depth[node] + 1.0
            path = depth + average_path_length(tree.n_node_samples)  # h(x) at each leaf, corrected
            self.trees.append((tree, np.asarray(features) if subsample else None, path))
        self.normaliser = float(average_path_length([forest.max_samples_])[0]) * len(self.trees)

    def score_samples(self, x) -> np.ndarray:
        """scikit-learn's ``IsolationForest.score_samples`` of ``x`` (n, features): lower is more abnormal."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        depths = np.zeros(len(x))
        for tree, features, path in self.trees:
            part = x if features is None else np.ascontiguousarray(x[:, features])
            depths += path[tree.apply(part)]
        if self.normaliser == 0:  # one training sample: scikit-learn scores everything 1
            return -np.ones(len(x))
        return -(2.0 ** (-depths / self.normaliser))


class AnomalyDetector:
    """Fit on reference (known-class) objects, then score any batch by rank against them (configure once)."""

    def __init__(self, config: AnomalyConfig | None = None):
        if config is None:
            config = AnomalyConfig()
        if not isinstance(config, AnomalyConfig):
            raise InvalidInputError(f"config must be an AnomalyConfig, got {type(config).__name__}")
        self.config = config
        self._fitted = False

    # ---- features

    def _standardize(self, x: np.ndarray) -> np.ndarray:
        z = (x - self._centre) / self._spread
        z = np.where(np.isfinite(z), z, 0.0)
        return np.clip(z, -self.config.clip, self.config.clip)

    def fit(self, features, *, embeddings=None, labels=None) -> AnomalyDetector:
        """Fit every detector on the reference objects.

        Parameters
        ----------
        features : array (n, F)
            Featurizer output (NaN allowed; rows of all NaN are left out).
        embeddings : array (n, d) or (members, n, d), optional
            Needed by ``knn`` and ``prototype``.
        labels : array (n,), optional
            Reference classes, needed by ``prototype``.

        Raises
        ------
        InvalidInputError
            Fewer than ``n_neighbors + 1`` usable objects, or a detector's input missing.
        """
        from sklearn.decomposition import PCA
        from sklearn.ensemble import IsolationForest
        from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

        cfg = self.config
        x = _as_matrix(features, "features")
        keep = np.any(np.isfinite(x), axis=1)
        if int(keep.sum()) <= cfg.n_neighbors:
            raise InvalidInputError(f"the reference needs more than n_neighbors={cfg.n_neighbors} objects with "
                                    f"features, got {int(keep.sum())}")
        x = x[keep]
        from astroray.models.protonet import robust_center_scale

        centre, spread = robust_center_scale(x)
        self._centre = np.where(np.isfinite(centre), centre, 0.0)
        self._spread = np.where(np.isfinite(spread) & (spread > 1e-9), spread, 1.0)
        z = self._standardize(x)
        need_emb = {"knn", "prototype"} & set(cfg.detectors)
        emb = None
        if need_emb:
            if embeddings is None:
                raise InvalidInputError(f"detectors {sorted(need_emb)} need embeddings= of the reference objects")
            emb = _as_embeddings(embeddings, keep.size)[:, keep]
        ref: dict[str, np.ndarray] = {}
        if "iforest" in cfg.detectors:
            self._iforest = IsolationForest(n_estimators=cfg.n_estimators, random_state=cfg.seed).fit(z)
            ref["iforest"] = -self._iforest.score_samples(z)
        if {"feature_knn", "lof"} & set(cfg.detectors):
            # distances in a few hundred noisy dimensions are all alike: both work on the leading components
            n_comp = min(cfg.lof_components, z.shape[1], z.shape[0] - 1)
            self._pca = PCA(n_components=n_comp, random_state=cfg.seed).fit(z) if n_comp < z.shape[1] else None
            zl = self._pca.transform(z) if self._pca is not None else z
        if "feature_knn" in cfg.detectors:
            self._feature_nn = NearestNeighbors(n_neighbors=cfg.n_neighbors + 1).fit(zl)
            # each reference object's own distance (0) is the first neighbour: leave it out
            ref["feature_knn"] = self._feature_nn.kneighbors(zl)[0][:, 1:].mean(axis=1)
        if "lof" in cfg.detectors:
            self._lof = LocalOutlierFactor(n_neighbors=cfg.n_neighbors, novelty=True).fit(zl)
            ref["lof"] = -self._lof.negative_outlier_factor_
        if "knn" in cfg.detectors:
            self._knn = [NearestNeighbors(n_neighbors=cfg.n_neighbors + 1).fit(e) for e in emb]
            # each reference object's own distance (0) is the first neighbour: leave it out
            ref["knn"] = np.mean([nn.kneighbors(e)[0][:, 1:].mean(axis=1) for nn, e in zip(self._knn, emb)], axis=0)
        if "prototype" in cfg.detectors:
            if labels is None:
                raise InvalidInputError("the prototype detector needs labels= of the reference objects")
            lab = np.asarray([str(v) for v in np.asarray(labels, dtype=object)])
            if lab.shape != (keep.size,):
                raise InvalidInputError(f"labels has {lab.size} entries for {keep.size} reference objects")
            lab = lab[keep]
            self._classes = np.unique(lab)
            y = np.searchsorted(self._classes, lab)
            counts = np.bincount(y, minlength=self._classes.size).astype(np.float64)
            self._protos, self._class_spread, loo = [], [], []
            for e in emb:
                protos = np.stack([e[y == j].mean(axis=0) for j in range(self._classes.size)])
                d = ((e[:, None, :] - protos[None]) ** 2).sum(-1)
                own = d[np.arange(y.size), y]
                spread_c = np.array([own[y == j].mean() * counts[j] / max(counts[j] - 1, 1)
                                     for j in range(self._classes.size)])
                fallback = np.median(spread_c[counts >= 2]) if np.any(counts >= 2) else 1.0
                spread_c = np.where((counts >= 2) & (spread_c > 0), spread_c, max(fallback, 1e-12))
                # leave-one-out: the own class's prototype without the object
                d_loo = d.copy()
                c = counts[y]
                d_loo[np.arange(y.size), y] = np.where(c >= 2, own * (c / np.maximum(c - 1, 1)) ** 2, np.inf)
                loo.append((d_loo / spread_c[None]).min(axis=1))
                self._protos.append(protos)
                self._class_spread.append(spread_c)
            ref["prototype"] = np.mean(loo, axis=0)
        self._reference = {k: np.sort(v[np.isfinite(v)]) for k, v in ref.items()}
        self._fitted = True
        return self

    # ---- scoring

    def _raw_scores(self, z: np.ndarray, emb: np.ndarray | None) -> dict[str, np.ndarray]:
        cfg = self.config
        out = {}
        if "iforest" in cfg.detectors:
            paths = getattr(self, "_iforest_paths", None)  # built on first use: detectors pickled before it work
            if paths is None:
                paths = self._iforest_paths = IsolationPaths(self._iforest)
            out["iforest"] = -paths.score_samples(z)
        if {"feature_knn", "lof"} & set(cfg.detectors):
            zl = self._pca.transform(z) if self._pca is not None else z
        if "feature_knn" in cfg.detectors:
            out["feature_knn"] = self._feature_nn.kneighbors(zl, n_neighbors=cfg.n_neighbors)[0].mean(axis=1)
        if "lof" in cfg.detectors:
            out["lof"] = -self._lof.score_samples(zl)
        if "knn" in cfg.detectors:
            k = cfg.n_neighbors
            out["knn"] = np.mean([nn.kneighbors(e, n_neighbors=k)[0].mean(axis=1)
                                  for nn, e in zip(self._knn, emb)], axis=0)
        if "prototype" in cfg.detectors:
            out["prototype"] = np.mean([(((e[:, None, :] - p[None]) ** 2).sum(-1) / s[None]).min(axis=1)
                                        for e, p, s in zip(emb, self._protos, self._class_spread)], axis=0)
        return out

    def run(self, features, *, embeddings=None) -> AnomalyResult:
        """Scores, reference percentiles and the combined score of each object.

        Rows of all-NaN features (light curves with no points) score NaN.
        """
        if not self._fitted:
            raise NotFittedError("AnomalyDetector is not fitted: call fit() on reference objects first")
        cfg = self.config
        x = _as_matrix(features, "features")
        if x.shape[1] != self._centre.size:
            raise InvalidInputError(f"features have {x.shape[1]} columns; the detector was fitted on "
                                    f"{self._centre.size}")
        valid = np.any(np.isfinite(x), axis=1)
        n = x.shape[0]
        emb = None
        if {"knn", "prototype"} & set(cfg.detectors):
            if embeddings is None:
                raise InvalidInputError("this detector uses embeddings: pass embeddings= of the objects")
            emb = np.asarray(embeddings, dtype=np.float64)
            emb = emb[None] if emb.ndim == 2 else emb
            if emb.ndim != 3 or emb.shape[1] != n:
                raise InvalidInputError(f"embeddings must be (n, d) or (members, n, d) for {n} objects, got "
                                        f"{emb.shape}")
            valid = valid & np.all(np.isfinite(emb), axis=(0, 2))
            emb = np.where(np.isfinite(emb), emb, 0.0)
        raw = self._raw_scores(self._standardize(x), emb) if n else {d: np.zeros(0) for d in cfg.detectors}
        percentiles = {}
        for name, s in raw.items():
            ref = self._reference[name]
            pct = np.searchsorted(ref, s, side="right") / max(ref.size, 1)
            raw[name] = np.where(valid, s, np.nan)
            percentiles[name] = np.where(valid, pct, np.nan)
        weights = cfg.weights or {d: 1.0 for d in cfg.detectors}
        w = np.array([weights.get(d, 0.0) for d in raw])
        if w.sum() <= 0:
            raise InvalidInputError(f"the weights give no weight to the configured detectors {list(raw)}")
        stack = np.stack([percentiles[d] for d in raw]) if raw else np.zeros((0, n))
        combined = np.tensordot(w / w.sum(), stack, axes=1) if n else np.zeros(0)
        return AnomalyResult(scores=raw, percentiles=percentiles, combined=combined, valid=valid)


def follow_up_list(result: AnomalyResult, object_ids, *, n: int | None = None, extra: dict | None = None):
    """The objects ranked most anomalous first, as a DataFrame.

    Columns: ``rank`` (1 = most anomalous), ``object_id``, ``anomaly_score``
    (combined), each detector's ``<name>_percentile`` and ``<name>_score``, and any
    ``extra`` columns (one value per object, e.g. the predicted class).
    """
    import pandas as pd

    ids = np.asarray([str(x) for x in object_ids], dtype=object)
    if ids.size != result.combined.size:
        raise InvalidInputError(f"object_ids has {ids.size} entries for {result.combined.size} scored objects")
    order = result.order()
    if n is not None:
        if isinstance(n, bool) or int(n) < 1:
            raise InvalidInputError(f"n must be a positive integer, got {n!r}")
        order = order[:int(n)]
    cols = {"rank": np.arange(1, order.size + 1), "object_id": ids[order], "anomaly_score": result.combined[order]}
    for name in result.scores:
        cols[f"{name}_percentile"] = result.percentiles[name][order]
        cols[f"{name}_score"] = result.scores[name][order]
    for name, values in (extra or {}).items():
        values = np.asarray(values, dtype=object)
        if values.size != ids.size:
            raise InvalidInputError(f"extra column {name!r} has {values.size} entries for {ids.size} objects")
        cols[name] = values[order]
    return pd.DataFrame(cols)


def plot_top_anomalies(lightcurves, result: AnomalyResult, path, *, n: int = 12, ncols: int = 3,
                       labels=None, title: str = "Most anomalous light curves"):
    """A PNG of the ``n`` most anomalous light curves (titles: rank, id, score, optional label)."""
    from astroray.eval import plot_lightcurves

    lcs = list(lightcurves)
    if len(lcs) != result.combined.size:
        raise InvalidInputError(f"{len(lcs)} light curves for {result.combined.size} scored objects")
    order = [i for i in result.order() if np.isfinite(result.combined[i])][:n]
    if not order:
        raise InvalidInputError("no scored light curve to plot")
    titles = []
    for rank, i in enumerate(order, start=1):
        lab = "" if labels is None else f" [{labels[i]}]"
        titles.append(f"#{rank} {lcs[i].object_id}{lab} score {result.combined[i]:.3f}")
    return plot_lightcurves([lcs[i] for i in order], path, titles=titles, ncols=ncols, max_panels=n, title=title)
