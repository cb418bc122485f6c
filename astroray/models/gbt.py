"""A gradient-boosted-trees baseline on light-curve features (scikit-learn's HistGradientBoostingClassifier).

The features are :class:`~astroray.lightcurves.FeatureExtractor`'s
(statistics per band, peak, rise and decline, colours, and with the
``period`` group the multi-band Lomb-Scargle period), computed from each
light curve as given -- a partial light curve gets the features of the part
that exists.  NaN features (a band without points, a light curve too short)
are left as NaN: the trees send them down a learned branch.

:class:`FeatureGBTClassifier` is configure-once::

    gbt = FeatureGBTClassifier(GBTConfig(classes=("SNIa", "SNII"), features=FeatureConfig(bands="lsst")))
    gbt.fit(train_lightcurves, train_labels, val_data=val_lightcurves, val_labels=val_labels)
    proba = gbt.predict_proba(test_lightcurves)          # (n, 2), columns in ``classes`` order
    gbt.save("gbt/"); gbt = FeatureGBTClassifier.load("gbt/")

The data can be anything :class:`~astroray.lightcurves.FeatureExtractor`
takes (LightCurve records, alerts, Arrow rows, a RaggedLightCurves) or a
:class:`~astroray.lightcurves.FeatureTable` already computed with the
config's features (its column names are checked).  With validation data,
boosting stops when the validation loss has not improved for
``n_iter_no_change`` rounds; without, it runs ``max_iter`` rounds (the
estimator's own random hold-out would mix rows of one object between its
training and stopping sets).  No torch, no Ray.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError, NotFittedError
from astroray.lightcurves import FeatureConfig, FeatureExtractor, FeatureTable
from astroray.lightcurves.rows import label_ids

__all__ = ["FeatureGBTClassifier", "GBTConfig"]

_MODEL_FILE = "model.pkl"
_META_FILE = "gbt.json"


class GBTConfig(AstrorayConfig):
    """The gradient-boosted-trees baseline: classes, features and boosting options.

    Attributes
    ----------
    classes : tuple of str
        Class vocabulary (the columns of ``predict_proba``), at least 2.
    features : FeatureConfig
        Which features, bands and cleaning (default: statistics and shape, no periodogram).
    extra_columns : tuple of str
        Per-row numbers given beside the features (``extra=`` of fit and predict), e.g. a period found from the
        light curve or an alert's host photometric redshift; NaN allowed.
    learning_rate, max_iter, max_leaf_nodes, min_samples_leaf, l2_regularization, max_features
        HistGradientBoostingClassifier's options.
    class_weight : {"balanced", None}
        Weight classes inversely to their frequency.
    n_iter_no_change : int
        Early stopping patience on the validation data (when given).
    random_state : int
    """

    classes: tuple[str, ...]
    features: FeatureConfig = FeatureConfig(groups=("stats", "shape"))
    extra_columns: tuple[str, ...] = ()
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    max_iter: int = Field(default=500, ge=1)
    max_leaf_nodes: int = Field(default=31, ge=2)
    min_samples_leaf: int = Field(default=20, ge=1)
    l2_regularization: float = Field(default=0.0, ge=0)
    max_features: float = Field(default=1.0, gt=0, le=1)
    class_weight: Literal["balanced"] | None = "balanced"
    n_iter_no_change: int = Field(default=20, ge=1)
    random_state: int = 0

    @field_validator("classes")
    @classmethod
    def _classes(cls, value):
        if len(value) < 2 or len(set(value)) != len(value):
            raise ValueError(f"classes must be at least 2 distinct names, got {list(value)!r}")
        return value


class FeatureGBTClassifier:
    """Light-curve features, then gradient-boosted trees (configure once, fit, predict, save, load)."""

    def __init__(self, config: GBTConfig):
        if not isinstance(config, GBTConfig):
            raise InvalidInputError(f"config must be a GBTConfig, got {type(config).__name__}")
        self.config = config
        self.extractor = FeatureExtractor(config.features)
        self.model = None
        self.n_iter: int | None = None

    def __repr__(self) -> str:
        return f"FeatureGBTClassifier(classes={self.config.classes}, fitted={self.model is not None})"

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The light-curve features (``extra_columns`` follow them in the trees' input)."""
        return self.extractor.names

    def features(self, data: Any, extra: Any = None) -> np.ndarray:
        """The input matrix ``(n, n_features + n_extra)`` of ``data`` (a FeatureTable is checked and used as is)
        and the ``extra_columns`` (a mapping of name to ``(n,)`` values)."""
        if isinstance(data, FeatureTable):
            if tuple(data.names) != tuple(self.feature_names):
                raise InvalidInputError("the FeatureTable's columns differ from this model's features; compute it "
                                        "with FeatureExtractor(config.features)")
            x = np.asarray(data.values, dtype=np.float64)
        else:
            x = self.extractor.run(data).values
        names = self.config.extra_columns
        if not names:
            if extra:
                raise InvalidInputError(f"extra columns {sorted(extra)} given to a model without extra_columns")
            return x
        missing = [c for c in names if c not in (extra or {})]
        if missing:
            raise InvalidInputError(f"the model reads extra column(s) {missing}: pass extra={{name: values}}")
        cols = []
        for name in names:
            col = np.asarray(extra[name], dtype=np.float64)
            if col.shape != (x.shape[0],):
                raise InvalidInputError(f"extra column {name!r} has shape {col.shape}, expected ({x.shape[0]},)")
            cols.append(col)
        return np.concatenate([x, np.stack(cols, axis=1)], axis=1)

    def _labels(self, labels: Any, n: int) -> np.ndarray:
        arr = np.asarray(labels)
        if arr.shape != (n,):
            raise InvalidInputError(f"labels have shape {arr.shape}, expected ({n},): one per light curve")
        if arr.dtype.kind in "iu":
            if arr.size and (arr.min() < 0 or arr.max() >= len(self.config.classes)):
                raise InvalidInputError(f"label ids must lie in [0, {len(self.config.classes) - 1}]")
            return arr.astype(np.int64)
        ids = label_ids(list(arr.tolist()), self.config.classes)
        if np.any(ids < 0):
            raise InvalidInputError("labels contain None: every training light curve needs a class")
        return ids.astype(np.int64)

    def fit(self, data: Any, labels: Any, *, val_data: Any = None, val_labels: Any = None, extra: Any = None,
            val_extra: Any = None) -> FeatureGBTClassifier:
        """Fit on light curves (or their FeatureTable) and labels (class names or ids).

        Raises
        ------
        InvalidInputError
            Labels of the wrong length or outside ``classes``; fewer than 2 classes present.
        """
        from sklearn.ensemble import HistGradientBoostingClassifier

        cfg = self.config
        x = self.features(data, extra)
        y = self._labels(labels, x.shape[0])
        if np.unique(y).size < 2:
            raise InvalidInputError("the training labels hold fewer than 2 classes")
        fit_kw: dict = {}
        early = val_data is not None
        if early:
            if val_labels is None:
                raise InvalidInputError("val_data was given without val_labels")
            xv = self.features(val_data, val_extra)
            fit_kw = {"X_val": xv, "y_val": self._labels(val_labels, xv.shape[0])}
        model = HistGradientBoostingClassifier(
            learning_rate=cfg.learning_rate, max_iter=cfg.max_iter, max_leaf_nodes=cfg.max_leaf_nodes,
            min_samples_leaf=cfg.min_samples_leaf, l2_regularization=cfg.l2_regularization,
            max_features=cfg.max_features, class_weight=cfg.class_weight, early_stopping=early,
            n_iter_no_change=cfg.n_iter_no_change, random_state=cfg.random_state)
        model.fit(x, y, **fit_kw)
        self.model = model
        self.n_iter = int(model.n_iter_)
        return self

    def _require_fitted(self) -> None:
        if self.model is None:
            raise NotFittedError("FeatureGBTClassifier is not fitted: call fit() or load()")

    def predict_proba(self, data: Any, *, extra: Any = None) -> np.ndarray:
        """Class probabilities ``(n, n_classes)``, columns in ``config.classes`` order."""
        self._require_fitted()
        x = self.features(data, extra)
        out = np.zeros((x.shape[0], len(self.config.classes)))
        if x.shape[0]:
            out[:, self.model.classes_] = self.model.predict_proba(x)
        return out

    def predict(self, data: Any, *, extra: Any = None) -> np.ndarray:
        """Class names of the most probable class."""
        return np.asarray(self.config.classes, dtype=object)[self.predict_proba(data, extra=extra).argmax(axis=1)]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to folder ``path`` (``gbt.json``: config and versions; ``model.pkl``: the trees).

        ``model.pkl`` is a pickle: load only folders you wrote yourself.
        """
        import sklearn

        self._require_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / _MODEL_FILE, "wb") as fh:
            pickle.dump(self.model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        meta = {"config": self.config.model_dump(mode="json"), "feature_names": list(self.feature_names),
                "n_iter": self.n_iter, "sklearn_version": sklearn.__version__}
        (folder / _META_FILE).write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureGBTClassifier:
        """Read a model written by :meth:`save`.

        Raises
        ------
        InvalidInputError
            The folder lacks its files, or its features differ from what its config computes
            (written by another astroray version).
        """
        import sklearn

        from astroray.config import config_from_dict

        folder = Path(path)
        if not (folder / _META_FILE).is_file() or not (folder / _MODEL_FILE).is_file():
            raise InvalidInputError(f"{folder} is not a saved FeatureGBTClassifier (needs {_META_FILE} and {_MODEL_FILE})")
        meta = json.loads((folder / _META_FILE).read_text())
        out = cls(config_from_dict(GBTConfig, meta.get("config"), source=str(folder / _META_FILE)))
        if list(out.feature_names) != list(meta.get("feature_names", [])):
            raise InvalidInputError("the saved feature names differ from what this astroray computes for the saved "
                                    "config; refit the model", source=str(folder))
        if meta.get("sklearn_version") != sklearn.__version__:
            import warnings

            warnings.warn(f"model saved with scikit-learn {meta.get('sklearn_version')}, loading with "
                          f"{sklearn.__version__}", stacklevel=2)
        with open(folder / _MODEL_FILE, "rb") as fh:
            out.model = pickle.load(fh)
        out.n_iter = meta.get("n_iter")
        return out
