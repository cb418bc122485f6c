r"""A transformer classifier for irregular multi-band light curves, trained on partial ones.

Input: light curves as rows (:data:`~astroray.records.LIGHTCURVE_SCHEMA` lists
``mjd, band, flux, flux_err, detected`` plus an integer ``label_id``; see
:func:`~astroray.lightcurves.rows.lightcurve_rows`), turned by
:func:`collate_lightcurves` into padded tensors with
:class:`~astroray.lightcurves.LightCurveTensorizer`: time in days since the
first detection, flux and flux error divided by the object's scale (its
brightest detection), band index, detection flag, mask of real points, and a
few per-object numbers (:func:`object_feature_names`).

Per point the encoder (:class:`LightCurveEncoder`) sums

* a projection of the measurement: ``flux/scale`` (clipped to +-10),
  ``asinh(S/N / 3)`` with ``S/N = flux / flux_err``, ``log10(flux_err/scale)``,
  the detection flag, ``asinh(t / 10 d)``, and a flag for points whose flux is
  hidden (below);
* a **band embedding** (the padding index is the vocabulary's length);
* a **continuous time encoding**: ``sin`` and ``cos`` of ``2 pi f_k t`` for
  ``n_frequencies`` frequencies, initialised on a geometric grid of periods
  from ``min_period`` to ``max_period`` days and learned
  (``learn_frequencies``), then projected;
* with ``period_column`` (a period found from the light curve itself), the
  phase ``t / P`` as ``n_phase_harmonics`` sine/cosine pairs: the folded
  light curve, for periodic variables.

A learned **object token** (plus a projection of the per-object numbers:
``log10`` of the flux scale, so brightness is not lost to the normalisation,
the number of points, the period) is put in front, so every row attends to at
least one position: a light curve with 0 points gives finite probabilities
(PyTorch's attention over a fully masked row gives NaN).  Padding is a
``key_padding_mask``.  The embedding (``embedding_dim``) is a projection of the
object token's output and the masked mean of the points' outputs;
:class:`LightCurveEncoder` is that map, reused by the few-shot models.

Per-point errors are used twice in training:

* **in the loss**, an auxiliary masked-flux reconstruction: a random
  ``mask_fraction`` of the points of each light curve (with at least 2 points)
  have their flux and S/N hidden, and a linear head predicts ``flux/scale``
  there from the point's own time, band and error and the other points; the
  residual is divided by the point's error (``sqrt(err^2 + error_floor^2)``,
  scaled) and passed through a Huber loss (a chi-square with outliers tamed),
  weighted ``reconstruction_weight``.  Dividing by the error is what makes it
  a fit to the data rather than to the noise: a 5-sigma miss on a precise
  point costs more than on a noisy one, and the floor keeps very precise
  points of bright stars from dominating.  It also trains the encoder on
  light-curve shape beyond the class labels, which helps with few labels.
* optionally (``flux_noise`` > 0) in the **input**: each flux is redrawn
  within ``flux_noise`` times its error each step (error-aware augmentation).
  Off by default: the simulated and ELAsTiCC fluxes already carry their noise,
  and redrawing adds it again (``benchmarks/bench_lightcurves_models.py``
  reports both).

**Partial light curves.** With ``truncate`` (default) every training batch is
cut with :func:`~astroray.lightcurves.random_truncate` (each light curve kept
up to a random point at or after its ``min_detections``-th detection; a
``full_fraction`` kept whole) and normalised again from the kept points only,
so the model sees light curves as they arrive.  ``period_column`` and
``context_columns`` describe a whole light curve and cannot be recomputed for
a cut one, so they cannot be combined with ``truncate``.

* :class:`LightCurveModule` -- the LightningModule (``collate`` for Ray Data
  batches of NumPy arrays, class weights, ``val_loss``, ``val_macro_f1``,
  ``val_accuracy``).
* :class:`LightCurveNet` -- what is logged and served: one packed float tensor
  ``(batch, n_object_features + 6 length)`` in (:func:`pack_inputs`; the
  PyTorch MLflow flavour passes one array), class probabilities out, with a
  temperature for calibration.
* :class:`LightCurveClassifier` -- configure once (``models:/astroray-lc-transformer@champion``
  from MLflow, or :meth:`~LightCurveClassifier.from_model` in memory), then
  ``classifier.run(lightcurves)`` on LightCurve records, alerts, a
  RaggedLightCurves batch or Arrow / Ray Data rows: calibrated probabilities
  per row, in input order (:class:`LightCurvePredictions`, ``to_table()``).

No Ray here.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import nn

from astroray.config import AstrorayConfig, config_from_dict
from astroray.errors import InvalidInputError, InvalidLightCurveError
from astroray.lightcurves import (
    FeatureConfig,
    FeatureExtractor,
    LightCurveTensorizer,
    PaddedBatch,
    PeriodogramConfig,
    TensorConfig,
    ragged_from_table,
    random_truncate,
    resolve_bands,
    truncate,
)
from astroray.lightcurves.rows import (
    LABEL_ID_COLUMN,
    UNLABELLED,
    label_ids,
    lightcurve_rows,
    ragged_rows,
)

if TYPE_CHECKING:
    from astroray.models.lightning_modules import LightCurveModule

__all__ = [
    "LABEL_ID_COLUMN",
    "POINT_CHANNELS",
    "DEFAULT_LC_TRANSFORMER_URI",
    "LightCurveClassifier",
    "LightCurveClassifierConfig",
    "LightCurveEncoder",
    "LightCurveModelConfig",
    "LightCurveModule",
    "LightCurveNet",
    "LightCurvePredictions",
    "RunningStandardScaler",
    "balanced_class_weights",
    "collate_lightcurves",
    "encoder_inputs",
    "label_ids",
    "lightcurve_rows",
    "object_feature_names",
    "pack_inputs",
    "predict_rows",
    "ragged_rows",
    "truncate_batch",
    "unpack_inputs",
]

POINT_CHANNELS = ("time", "flux", "flux_err", "band", "detected", "mask")
"""Per-point channels of :class:`LightCurveNet`'s packed input, in order; the object features follow."""

_LIST_COLUMNS = ("mjd", "band", "flux", "flux_err", "detected")
_FLUX_CLIP = 10.0
_LOG_SCALE_CENTRE, _LOG_SCALE_SPREAD = 4.5, 1.5  # log10 nJy: 10^4.5 nJy is AB 20.1


class LightCurveModelConfig(AstrorayConfig):
    """The light-curve transformer: classes, input, network size, partial light curves and loss.

    Attributes
    ----------
    classes : tuple of str
        The class vocabulary (``label_id`` indexes it), at least 2.
    bands : tuple of str, or "lsst" / "ztf"
        Band vocabulary of the band embedding; points in other bands are dropped.
    max_length : int
        Most points per light curve; ``keep`` says which (``"first"`` keeps a
        long light curve consistent with its prefixes, ``"uniform"`` keeps the
        whole baseline of a periodic variable).
    upper_limits, duplicates
        Cleaning (:class:`~astroray.lightcurves.PreprocessConfig`): upper limits
        as zero flux with their error (default) or dropped; repeated epochs kept or merged.
    d_model, n_heads, n_layers, ff_dim, dropout
        Transformer size (``d_model`` divisible by ``n_heads``).
    embedding_dim : int
        Size of the encoder's output embedding.
    n_frequencies, min_period, max_period, learn_frequencies
        Time encoding: frequencies on a geometric grid of periods (days), learned or fixed.
    period_column : str or None
        A row column with a period (days) found from the light curve; adds phase features.
    n_phase_harmonics : int
    context_columns : tuple of str
        Further per-row numbers (from the light curve itself) given to the object token.
    static_columns : tuple of str
        Per-object numbers that do not change as the light curve grows and that come with the
        alert itself (e.g. the host galaxy's photometric redshift and the Milky Way extinction of an
        LSST ``diaObject``), given to the object token (NaN as 0); allowed with ``truncate``: a cut keeps them.
    feature_groups : tuple of {"stats", "shape", "period"}
        :class:`~astroray.lightcurves.FeatureExtractor` groups computed in ``collate`` (and again after every
        training cut) from the points the model sees, fluxes divided by the object's scale, and given to the
        object token as ``sign(x) log(1 + |x|)`` (NaN as 0).  ``period`` costs ~1 ms per light curve.
    feature_period : PeriodogramConfig
        The period search of the ``period`` group.
    truncate : bool
        Train on random partial light curves (:func:`~astroray.lightcurves.random_truncate`).
    truncate_mode : {"points", "days"}
    min_detections : int
        Detections each cut keeps.
    full_fraction : float
        Fraction of training light curves kept whole.
    flux_noise : float
        Training fluxes redrawn within this many errors (0: off).
    reconstruction_weight, mask_fraction, error_floor
        The auxiliary error-weighted flux reconstruction (weight 0: off);
        ``error_floor`` in units of the object's scale.
    object_skip : bool
        Add a linear map of the object features (:func:`object_feature_names`) to the logits (wide and deep):
        with a few hundred training objects the attention layers alone did not pick up what one period or
        amplitude says plainly.
    standardize_objects : bool
        Standardise the object features (both paths) by running means and variances of the training rows, kept with
        the weights (:class:`RunningStandardScaler`).  Off by default, so models saved before it load unchanged.
    class_weights : tuple of float or None
        Cross-entropy weight per class (:func:`balanced_class_weights`).
    label_smoothing : float
    lr, weight_decay : float
        AdamW; the learning rate follows a cosine over the epochs.
    """

    classes: tuple[str, ...]
    bands: tuple[str, ...] = ("u", "g", "r", "i", "z", "y")
    max_length: int = Field(default=256, ge=1, le=4096)
    keep: Literal["first", "last", "uniform"] = "first"
    upper_limits: Literal["drop", "zero_flux"] = "zero_flux"
    duplicates: Literal["keep", "merge"] = "keep"
    d_model: int = Field(default=32, ge=4, le=512)
    n_heads: int = Field(default=2, ge=1, le=16)
    n_layers: int = Field(default=2, ge=1, le=12)
    ff_dim: int = Field(default=64, ge=4, le=4096)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    embedding_dim: int = Field(default=32, ge=2, le=1024)
    n_frequencies: int = Field(default=16, ge=1, le=256)
    min_period: float = Field(default=0.1, gt=0)
    max_period: float = Field(default=1000.0, gt=0)
    learn_frequencies: bool = True
    period_column: str | None = None
    n_phase_harmonics: int = Field(default=3, ge=1, le=10)
    context_columns: tuple[str, ...] = ()
    static_columns: tuple[str, ...] = ()
    feature_groups: tuple[Literal["stats", "shape", "period"], ...] = ()
    feature_period: PeriodogramConfig = PeriodogramConfig(min_period=0.1, max_period=100.0, oversampling=3.0,
                                                          max_n_frequencies=2000)
    truncate: bool = True
    truncate_mode: Literal["points", "days"] = "points"
    min_detections: int = Field(default=1, ge=0)
    full_fraction: float = Field(default=0.1, ge=0, le=1)
    flux_noise: float = Field(default=0.0, ge=0, le=5)
    reconstruction_weight: float = Field(default=0.1, ge=0)
    mask_fraction: float = Field(default=0.15, ge=0, lt=1)
    error_floor: float = Field(default=0.02, gt=0)
    object_skip: bool = True
    standardize_objects: bool = False
    class_weights: tuple[float, ...] | None = None
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)

    @field_validator("bands", mode="before")
    @classmethod
    def _bands(cls, value):
        return resolve_bands(value)

    @field_validator("classes")
    @classmethod
    def _classes(cls, value):
        if len(value) < 2 or len(set(value)) != len(value):
            raise ValueError(f"classes must be at least 2 distinct names, got {list(value)!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.max_period <= self.min_period:
            raise ValueError(f"max_period ({self.max_period}) must exceed min_period ({self.min_period})")
        if self.class_weights is not None:
            if len(self.class_weights) != len(self.classes):
                raise ValueError(f"class_weights has {len(self.class_weights)} entries for {len(self.classes)} classes")
            if any(not (w > 0 and math.isfinite(w)) for w in self.class_weights):
                raise ValueError(f"class_weights must be positive and finite, got {list(self.class_weights)}")
        if len(set(self.feature_groups)) != len(self.feature_groups):
            raise ValueError(f"feature_groups repeats a group: {list(self.feature_groups)}")
        if self.truncate and (self.period_column or self.context_columns):
            raise ValueError("period_column and context_columns describe the whole light curve and cannot be "
                             "recomputed for a cut one: set truncate=false to use them")
        return self

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def tensor_config(self) -> TensorConfig:
        """How rows become padded arrays (cleaning, normalisation, length)."""
        return TensorConfig(bands=self.bands, max_length=self.max_length, keep=self.keep,
                            upper_limits=self.upper_limits, duplicates=self.duplicates,
                            time_origin="first_detection", scale="max_abs", scale_points="detections",
                            dtype="float32")

    def feature_config(self) -> FeatureConfig | None:
        """The features of ``feature_groups`` (None without any)."""
        if not self.feature_groups:
            return None
        return FeatureConfig(bands=self.bands, upper_limits=self.upper_limits, duplicates=self.duplicates,
                             groups=self.feature_groups, period=self.feature_period)


def object_feature_names(config: LightCurveModelConfig) -> tuple[str, ...]:
    """The per-object numbers after :data:`POINT_CHANNELS` in the packed input, in order.

    ``log_scale`` is ``(log10(scale / nJy) - 4.5) / 1.5``; ``log_period`` is
    ``log10`` of the period in days (0 where unknown) and ``has_period`` 1 where
    it is known; context columns follow as given (NaN becomes 0), then the
    ``feature_groups`` features (``feature:NAME``).
    """
    from astroray.lightcurves import feature_names

    names = ["log_scale"]
    if config.period_column:
        names += ["log_period", "has_period"]
    names += list(config.context_columns)
    names += [f"static:{name}" for name in config.static_columns]
    features = config.feature_config()
    if features is not None:
        names += [f"feature:{name}" for name in feature_names(features)]
    return tuple(names)


def balanced_class_weights(labels: Any, n_classes: int) -> tuple[float, ...]:
    """``n / (k * count)`` per class (1 for a class with no example), for ``class_weights``."""
    y = np.asarray(labels, dtype=np.int64)
    y = y[y >= 0]
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    with np.errstate(divide="ignore"):
        w = np.where(counts > 0, y.size / (n_classes * np.maximum(counts, 1)), 1.0)
    return tuple(float(v) for v in w)


# --------------------------------------------------------------------------- collate


def _list_column(values: Any, name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, flat values) of a list column given as an object array of arrays, a 2-D array or a list."""
    if isinstance(values, np.ndarray) and values.dtype != object and values.ndim == 2:
        return np.full(n, values.shape[1], dtype=np.int64), values.reshape(-1)
    items = list(values)
    if len(items) != n:
        raise InvalidLightCurveError(f"column {name} has {len(items)} rows, expected {n}")
    parts = [np.asarray([] if v is None else v).reshape(-1) for v in items]
    lengths = np.array([p.size for p in parts], dtype=np.int64)
    flat = np.concatenate(parts) if parts and lengths.sum() else np.zeros(0)
    return lengths, flat


def _as_columns(batch: Any) -> dict[str, Any]:
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    if isinstance(batch, pa.Table):
        return {name: batch.column(name) for name in batch.column_names}
    if type(batch).__name__ == "DataFrame":
        return {name: batch[name].to_numpy() for name in batch.columns}
    if isinstance(batch, Mapping):
        return dict(batch)
    raise InvalidLightCurveError(f"collate takes a dict of NumPy arrays (a Ray Data batch), an Arrow table or a "
                                 f"DataFrame, got {type(batch).__name__}")


def _rows_table(columns: dict[str, Any]) -> pa.Table:
    """The light-curve columns as an Arrow table of :data:`~astroray.records.LIGHTCURVE_SCHEMA` lists."""
    missing = [c for c in _LIST_COLUMNS if c not in columns]
    if missing:
        raise InvalidLightCurveError(f"light-curve rows lack column(s) {', '.join(missing)} "
                                     f"(have {', '.join(sorted(columns))})")
    if isinstance(columns["mjd"], (pa.ChunkedArray, pa.Array)):
        cols = {c: columns[c] for c in _LIST_COLUMNS}
        n = len(cols["mjd"])
        ids = columns.get("object_id")
        cols["object_id"] = ids if ids is not None else pa.array([f"row{i}" for i in range(n)])
        return pa.table(cols)
    n = len(columns["mjd"])
    lengths, mjd = _list_column(columns["mjd"], "mjd", n)
    out = {}
    for name in _LIST_COLUMNS[1:]:
        lens, flat = _list_column(columns[name], name, n)
        if not np.array_equal(lens, lengths):
            bad = int(np.flatnonzero(lens != lengths)[0])
            raise InvalidLightCurveError(f"row {bad}: column {name} has {lens[bad]} values but mjd has {lengths[bad]}")
        out[name] = flat
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    ids = columns.get("object_id")
    ids = [f"row{i}" for i in range(n)] if ids is None else [str(x) for x in ids]
    return pa.table({
        "object_id": pa.array(ids, pa.string()),
        "mjd": pa.ListArray.from_arrays(offsets, pa.array(np.asarray(mjd, np.float64))),
        "band": pa.ListArray.from_arrays(offsets, pa.array(np.asarray(out["band"]).astype(str), pa.string())),
        "flux": pa.ListArray.from_arrays(offsets, pa.array(np.asarray(out["flux"], np.float64))),
        "flux_err": pa.ListArray.from_arrays(offsets, pa.array(np.asarray(out["flux_err"], np.float64))),
        "detected": pa.ListArray.from_arrays(offsets, pa.array(np.asarray(out["detected"], bool))),
    })


def _column_values(columns: dict, name: str, n: int) -> np.ndarray:
    if name not in columns:
        raise InvalidLightCurveError(f"the model reads column {name!r}, which the rows lack "
                                     f"(have {', '.join(sorted(columns))})")
    col = columns[name]
    if isinstance(col, (pa.ChunkedArray, pa.Array)):
        col = col.to_numpy(zero_copy_only=False)
    arr = np.asarray([np.nan if v is None else v for v in col] if np.asarray(col).dtype == object else col,
                     dtype=np.float64).reshape(-1)
    if arr.shape != (n,):
        raise InvalidLightCurveError(f"column {name!r} must hold one number per row, got shape {arr.shape}")
    return arr


def _object_features(padded: PaddedBatch, columns: dict | None, config: LightCurveModelConfig) -> np.ndarray:
    n = len(padded)
    feats = [(padded.log_scale.astype(np.float64) - _LOG_SCALE_CENTRE) / _LOG_SCALE_SPREAD]
    if config.period_column:
        period = _column_values(columns or {}, config.period_column, n)
        known = np.isfinite(period) & (period > 0)
        feats += [np.where(known, np.log10(np.where(known, period, 1.0)), 0.0), known.astype(np.float64)]
    for name in (*config.context_columns, *config.static_columns):
        feats.append(np.nan_to_num(_column_values(columns or {}, name, n), nan=0.0, posinf=0.0, neginf=0.0))
    out = np.stack(feats, axis=1)
    features = config.feature_config()
    if features is not None:
        out = np.concatenate([out, _scaled_features(padded, features)], axis=1)
    return out.astype(np.float32)


def _scaled_features(padded: PaddedBatch, features: FeatureConfig) -> np.ndarray:
    """Features of the points a padded batch holds, fluxes in units of each object's scale, signed-log, NaN 0."""
    ragged = padded.to_ragged()
    rows = ragged.row_index()
    scale = np.where(np.isfinite(padded.scale), padded.scale, 1.0)[rows]
    ragged.flux, ragged.flux_err = ragged.flux / scale, ragged.flux_err / scale
    values = FeatureExtractor(features).run(ragged).values
    with np.errstate(invalid="ignore"):
        values = np.sign(values) * np.log1p(np.abs(values))
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def _to_tensors(padded: PaddedBatch, objects: np.ndarray, labels: np.ndarray | None,
                static: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    n, width = padded.time.shape
    if width == 0:  # every row empty: one padded column keeps shapes valid everywhere
        def widen(a, fill):
            return np.full((n, 1), fill, dtype=a.dtype)
        padded = PaddedBatch(time=widen(padded.time, 0), flux=widen(padded.flux, 0), flux_err=widen(padded.flux_err, 0),
                             band=widen(padded.band, padded.band_pad_index), detected=widen(padded.detected, False),
                             mask=widen(padded.mask, False), lengths=padded.lengths, full_lengths=padded.full_lengths,
                             t0=padded.t0, scale=padded.scale, object_ids=padded.object_ids, bands=padded.bands)
    out = {
        "time": torch.from_numpy(np.ascontiguousarray(padded.time)),
        "flux": torch.from_numpy(np.ascontiguousarray(padded.flux)),
        "flux_err": torch.from_numpy(np.ascontiguousarray(padded.flux_err)),
        "band": torch.from_numpy(np.ascontiguousarray(padded.band)),
        "detected": torch.from_numpy(np.ascontiguousarray(padded.detected)),
        "mask": torch.from_numpy(np.ascontiguousarray(padded.mask)),
        "lengths": torch.from_numpy(padded.lengths.astype(np.int64)),
        "objects": torch.from_numpy(objects),
        "t0": torch.from_numpy(padded.t0.astype(np.float64)),
        "scale": torch.from_numpy(padded.scale.astype(np.float64)),
    }
    if labels is not None:
        out["label"] = torch.from_numpy(labels.astype(np.int64))
    if static is not None:  # raw values of the static columns: a cut batch gets them back
        out["static"] = torch.from_numpy(np.ascontiguousarray(static, dtype=np.float64))
    return out


def collate_lightcurves(batch: Any, config: LightCurveModelConfig, *, with_targets: bool = True
                        ) -> dict[str, torch.Tensor]:
    """Rows of light curves as the model's tensors.

    Parameters
    ----------
    batch : dict of NumPy arrays, Arrow table or DataFrame
        One row per light curve: list columns ``mjd, band, flux, flux_err,
        detected`` (object arrays of arrays, or 2-D arrays when every row has
        the same length; None/NaN flux is an upper limit), optionally
        ``object_id``, ``label_id`` (int, -1 unlabelled) and the columns named
        by ``period_column``, ``context_columns`` and ``static_columns``.
    config : LightCurveModelConfig
    with_targets : bool
        Add ``label`` from ``label_id`` when present.

    Returns
    -------
    dict of torch.Tensor
        ``time, flux, flux_err`` (float32, (n, L)), ``band`` (int64, pad =
        number of bands), ``detected, mask`` (bool), ``lengths`` (int64),
        ``objects`` (float32, (n, F), :func:`object_feature_names`), ``t0,
        scale`` (float64: MJD origin and nJy scale, for re-cutting) and
        ``label`` (int64).  ``L`` is the longest row (at least 1).

    Raises
    ------
    InvalidLightCurveError
        A column is missing, list columns of a row differ in length, or a
        value breaks the cleaning rules (a NaN time).
    """
    columns = _as_columns(batch)
    table = _rows_table(columns)
    tensor_config = config.tensor_config()
    padded = LightCurveTensorizer(tensor_config).run(ragged_from_table(table, tensor_config))
    labels = None
    if with_targets and LABEL_ID_COLUMN in columns:
        labels = _column_values(columns, LABEL_ID_COLUMN, len(padded)).astype(np.int64)
        if np.any((labels < UNLABELLED) | (labels >= config.n_classes)):
            raise InvalidLightCurveError(f"label_id must lie in [-1, {config.n_classes - 1}] for "
                                         f"{config.n_classes} classes, got {sorted(set(labels.tolist()))[:5]}")
    static = None
    if config.static_columns:
        static = np.stack([_column_values(columns, name, len(padded)) for name in config.static_columns], axis=1)
    return _to_tensors(padded, _object_features(padded, columns, config), labels, static)


def truncate_batch(batch: Mapping[str, torch.Tensor], config: LightCurveModelConfig, *,
                   rng: np.random.Generator | int | None = None, n_points: Any = None, days: Any = None
                   ) -> dict[str, torch.Tensor]:
    """Cut the light curves of a collated batch and normalise them again from the kept points.

    With ``n_points`` or ``days`` the cut is :func:`~astroray.lightcurves.truncate`'s;
    otherwise :func:`~astroray.lightcurves.random_truncate`'s with the config's
    mode, ``min_detections`` and ``full_fraction``.  The result equals
    :func:`collate_lightcurves` of rows cut the same way (up to float32
    rounding).  Tensors come back on the batch's device.
    """
    if config.period_column or config.context_columns:
        raise InvalidInputError("a batch with period or context columns cannot be cut: they describe the "
                                "whole light curve")
    device = batch["time"].device
    a = {k: batch[k].detach().cpu().numpy() for k in ("time", "flux", "flux_err", "band", "detected", "mask",
                                                     "lengths", "t0", "scale")}
    n = a["time"].shape[0]
    padded = PaddedBatch(time=a["time"], flux=a["flux"], flux_err=a["flux_err"], band=a["band"], detected=a["detected"],
                         mask=a["mask"], lengths=a["lengths"], full_lengths=a["lengths"], t0=a["t0"], scale=a["scale"],
                         object_ids=np.array([f"row{i}" for i in range(n)], dtype=object), bands=config.bands)
    ragged = padded.to_ragged()
    if n_points is not None or days is not None:
        cut = truncate(ragged, n_points=n_points, days=days)
    else:
        cut = random_truncate(ragged, rng=rng, mode=config.truncate_mode, min_detections=config.min_detections,
                              full_fraction=config.full_fraction)
    out_padded = LightCurveTensorizer(config.tensor_config()).run(cut)
    labels = batch["label"].detach().cpu().numpy() if "label" in batch else None
    static, columns = None, None
    if config.static_columns:
        static = batch["static"].detach().cpu().numpy()
        columns = {name: static[:, j] for j, name in enumerate(config.static_columns)}
    out = _to_tensors(out_padded, _object_features(out_padded, columns, config), labels, static)
    return {k: v.to(device) for k, v in out.items()}


def encoder_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of a collated batch the encoder reads."""
    return {k: batch[k] for k in (*POINT_CHANNELS, "objects")}


def pack_inputs(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """A collated batch as :class:`LightCurveNet`'s one float32 tensor ``(n, F + 6 L)``.

    The ``F`` object features (:func:`object_feature_names`) come first, then
    each of the ``L`` points' :data:`POINT_CHANNELS` (band and flags as floats).
    """
    n, width = batch["time"].shape
    points = torch.stack([batch["time"].float(), batch["flux"].float(), batch["flux_err"].float(),
                          batch["band"].float(), batch["detected"].float(), batch["mask"].float()], dim=-1)
    return torch.cat([batch["objects"].float(), points.reshape(n, width * len(POINT_CHANNELS))], dim=1)


def unpack_inputs(x: torch.Tensor, n_bands: int, n_object_features: int) -> dict[str, torch.Tensor]:
    """Inverse of :func:`pack_inputs` (padding positions get the pad band)."""
    c = len(POINT_CHANNELS)
    if x.ndim != 2 or x.shape[1] < n_object_features or (x.shape[1] - n_object_features) % c:
        raise InvalidInputError(f"packed light curves must be (batch, {n_object_features} + {c} x length), "
                                f"got {tuple(x.shape)}")
    points = x[:, n_object_features:].reshape(x.shape[0], -1, c)
    mask = points[..., 5] > 0.5
    band = torch.where(mask, points[..., 3].round().long().clamp(0, n_bands - 1),
                       torch.full_like(points[..., 3], n_bands).long())
    return {"time": points[..., 0], "flux": points[..., 1], "flux_err": points[..., 2], "band": band,
            "detected": points[..., 4] > 0.5, "mask": mask, "objects": x[:, :n_object_features]}


# --------------------------------------------------------------------------- network


class TransformerLayer(nn.Module):
    """A pre-LN transformer layer (self-attention over the object token and the points, then a GELU MLP).

    Attention is :func:`torch.nn.functional.scaled_dot_product_attention` with
    an additive mask (-inf on padding): on two CPU cores it runs several times
    faster than :class:`torch.nn.TransformerEncoderLayer` at these sizes
    (``benchmarks/bench_lightcurves_models.py``).
    """

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, bias):
        b, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                              dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.out(attn.transpose(1, 2).reshape(b, length, d)))
        return x + self.drop(self.ff(self.norm2(x)))


class TimeEncoding(nn.Module):
    """``sin`` and ``cos`` of ``2 pi f t`` on a geometric grid of periods, optionally learned (log-frequencies)."""

    def __init__(self, n_frequencies: int, min_period: float, max_period: float, learned: bool):
        super().__init__()
        periods = np.geomspace(min_period, max_period, n_frequencies)
        log_freq = torch.tensor(np.log(2.0 * np.pi / periods), dtype=torch.float32)
        if learned:
            self.log_freq = nn.Parameter(log_freq)
        else:
            self.register_buffer("log_freq", log_freq)

    def forward(self, t):
        angle = t[..., None] * torch.exp(self.log_freq)
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class RunningStandardScaler(nn.Module):
    """Per-column standardisation by the mean and variance of every training row seen so far.

    The object numbers span very different ranges (a period's log10 varies by
    0.3 among RR Lyrae, a flux scale's by 3): unscaled, the narrow ones reach
    the token too weakly to be learned from a few hundred objects.  The
    statistics are buffers (saved with the weights); they are updated in
    training only, from whole batches (any size, unlike batch norm's), and
    the running values are what every forward uses, in training as in
    inference.
    """

    def __init__(self, n: int, *, min_std: float = 1e-2, clip: float = 8.0):
        super().__init__()
        self.min_std, self.clip = min_std, clip
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(n, dtype=torch.float64))

    def forward(self, x: torch.Tensor, *, update: bool = False) -> torch.Tensor:
        if update and x.shape[0] > 0:
            with torch.no_grad():  # Chan et al.'s parallel update of the running moments
                batch = x.detach().double()
                n_b = float(batch.shape[0])
                mean_b = batch.mean(dim=0)
                m2_b = ((batch - mean_b) ** 2).sum(dim=0)
                total = self.count + n_b
                delta = mean_b - self.mean
                self.mean += delta * (n_b / total)
                self.m2 += m2_b + delta ** 2 * (self.count * n_b / total)
                self.count.copy_(total)
        if self.count < 2:
            return x
        # a floor, so a column constant in training (a flag always set) cannot blow up a different value later,
        # and a clip, so one wild feature of one object cannot swamp the token
        std = torch.sqrt(self.m2 / (self.count - 1)).clamp_min(self.min_std)
        return ((x - self.mean.to(x.dtype)) / std.to(x.dtype)).clamp(-self.clip, self.clip)


class LightCurveEncoder(nn.Module):
    """Padded light curves to one embedding each (see the module docstring for the inputs).

    ``forward(inputs)`` takes a dict with ``time, flux, flux_err`` (float,
    (B, L), flux and error divided by the object's scale), ``band`` (long, pad
    index ``n_bands``), ``detected, mask`` (bool) and ``objects`` (float, (B,
    F)) -- what :func:`collate_lightcurves` and :func:`unpack_inputs` give --
    and returns ``(B, embedding_dim)``.  :meth:`encode` also returns the
    points' outputs ``(B, L, d_model)``.
    """

    N_POINT_FEATURES = 6

    def __init__(self, config: LightCurveModelConfig | dict):
        super().__init__()
        cfg = config if isinstance(config, LightCurveModelConfig) else LightCurveModelConfig(**config)
        self.config = cfg
        d = cfg.d_model
        self.n_bands = len(cfg.bands)
        self.n_object_features = len(object_feature_names(cfg))
        self.point_proj = nn.Linear(self.N_POINT_FEATURES, d)
        self.band_embedding = nn.Embedding(self.n_bands + 1, d, padding_idx=self.n_bands)
        self.time_encoding = TimeEncoding(cfg.n_frequencies, cfg.min_period, cfg.max_period, cfg.learn_frequencies)
        self.time_proj = nn.Linear(2 * cfg.n_frequencies, d)
        self.phase_proj = nn.Linear(2 * cfg.n_phase_harmonics, d) if cfg.period_column else None
        self.object_token = nn.Parameter(torch.zeros(d))
        self.object_scaler = RunningStandardScaler(self.n_object_features) if cfg.standardize_objects else None
        self.object_proj = nn.Linear(self.n_object_features + 1, d)  # + log(1 + number of points)
        self.layers = nn.ModuleList(TransformerLayer(d, cfg.n_heads, cfg.ff_dim, cfg.dropout)
                                    for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(d)
        self.pool = nn.Sequential(nn.Linear(2 * d, cfg.embedding_dim), nn.LayerNorm(cfg.embedding_dim))

    def point_features(self, inputs: Mapping[str, torch.Tensor], hidden: torch.Tensor | None = None):
        """The per-point measurement vector (module docstring); ``hidden`` points lose flux and S/N."""
        flux, err = inputs["flux"].float(), inputs["flux_err"].float().clamp_min(1e-6)
        snr = torch.asinh(flux / err / 3.0)
        scaled = flux.clamp(-_FLUX_CLIP, _FLUX_CLIP)
        hide = torch.zeros_like(flux) if hidden is None else hidden.float()
        if hidden is not None:
            scaled, snr = scaled * (1 - hide), snr * (1 - hide)
        t = inputs["time"].float()
        return torch.stack([scaled, snr, torch.log10(err).clamp(-4.0, 2.0), inputs["detected"].float(),
                            torch.asinh(t / 10.0), hide], dim=-1)

    def scale_objects(self, objects: torch.Tensor, *, update: bool = False) -> torch.Tensor:
        """The object features standardised (``standardize_objects``; unchanged without); ``update``: in training,
        fold this batch into the running moments first (the encoder does, once per batch)."""
        if self.object_scaler is None:
            return objects
        return self.object_scaler(objects, update=update and self.training)

    def encode(self, inputs: Mapping[str, torch.Tensor], hidden: torch.Tensor | None = None):
        """``(embedding (B, E), point outputs (B, L, d_model))``."""
        mask = inputs["mask"].bool()
        t = inputs["time"].float()
        objects = inputs["objects"].float()
        if objects.shape[-1] != self.n_object_features:
            raise InvalidInputError(f"the model takes {self.n_object_features} object feature(s) "
                                    f"{object_feature_names(self.config)}, got {objects.shape[-1]}")
        band = torch.where(mask, inputs["band"].long(), torch.full_like(inputs["band"].long(), self.n_bands))
        x = self.point_proj(self.point_features(inputs, hidden)) + self.band_embedding(band) \
            + self.time_proj(self.time_encoding(t))
        if self.phase_proj is not None:
            log_period = objects[:, 1]
            known = objects[:, 2:3] > 0.5
            phase = t / torch.pow(10.0, log_period)[:, None]
            k = torch.arange(1, self.config.n_phase_harmonics + 1, device=t.device, dtype=t.dtype)
            angle = 2 * math.pi * phase[..., None] * k
            x = x + self.phase_proj(torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)) * known[..., None]
        x = x * mask[..., None]
        n_points = mask.sum(dim=1, keepdim=True).float()
        token = self.object_token + self.object_proj(
            torch.cat([self.scale_objects(objects, update=True), torch.log1p(n_points) / 4.0], dim=-1))
        seq = torch.cat([token[:, None, :], x], dim=1)
        valid = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        bias = torch.zeros(valid.shape, dtype=seq.dtype, device=seq.device).masked_fill(~valid, float("-inf"))
        bias = bias[:, None, None, :]  # (B, heads, queries, keys) by broadcasting
        h = seq
        for layer in self.layers:
            h = layer(h, bias)
        h = self.final_norm(h)
        points = h[:, 1:] * mask[..., None]
        mean = points.sum(dim=1) / n_points.clamp_min(1.0)
        return self.pool(torch.cat([h[:, 0], mean], dim=-1)), points

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.encode(inputs)[0]


class LightCurveNet(nn.Module):
    """Packed padded light curves ``(B, F + 6 L)`` in, class probabilities ``(B, n_classes)`` out.

    What is logged to MLflow and served.  The input is :func:`pack_inputs` of
    :func:`collate_lightcurves` (the PyTorch MLflow flavour passes one array);
    :meth:`logits` takes the collated dict.  ``temperature`` (a buffer, 1 until
    :meth:`set_temperature`) divides the logits, so a model calibrated by
    temperature scaling returns calibrated probabilities.  ``classes`` names
    the columns.
    """

    def __init__(self, config: LightCurveModelConfig | dict):
        super().__init__()
        cfg = config if isinstance(config, LightCurveModelConfig) else LightCurveModelConfig(**config)
        self.config = cfg
        self.classes = tuple(cfg.classes)
        self.encoder = LightCurveEncoder(cfg)
        e = cfg.embedding_dim
        self.head = nn.Sequential(nn.Linear(e, e), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(e, cfg.n_classes))
        # wide and deep: the per-object numbers (period, features) also reach the logits through one linear map,
        # so what they say plainly is learned in a few steps rather than through the attention layers
        self.object_head = nn.Linear(self.encoder.n_object_features, cfg.n_classes) if cfg.object_skip else None
        self.register_buffer("temperature", torch.tensor(1.0))

    def set_temperature(self, temperature: float) -> None:
        if not (temperature > 0 and math.isfinite(temperature)):
            raise InvalidInputError(f"temperature must be positive and finite, got {temperature!r}")
        self.temperature.fill_(float(temperature))

    def logits(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Uncalibrated logits ``(B, n_classes)`` of a collated batch."""
        return self.classify(self.encoder(inputs), inputs["objects"])

    def classify(self, embedding: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        """Logits from the encoder's embedding and (with ``object_skip``) the object features."""
        logits = self.head(embedding)
        if self.object_head is not None:
            logits = logits + self.object_head(self.encoder.scale_objects(objects.float()))
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(unpack_inputs(x, len(self.config.bands), self.encoder.n_object_features))
        return torch.softmax(logits / self.temperature, dim=-1)


# --------------------------------------------------------------------------- training


def _f1_and_accuracy(y: np.ndarray, pred: np.ndarray, n_classes: int) -> tuple[float, float]:
    """Macro-F1 over the classes present in ``y`` or ``pred``, and accuracy (NaN for no rows)."""
    if y.size == 0:
        return float("nan"), float("nan")
    from astroray.eval import macro_f1

    present = sorted(set(y.tolist()) | set(pred.tolist()))
    return float(macro_f1(y, pred, labels=present)), float(np.mean(y == pred))


# --------------------------------------------------------------------------- inference


def predict_rows(model: LightCurveNet | LightCurveModule, rows: Any, *, batch_size: int = 1024,
                 logits: bool = False) -> np.ndarray:
    """Class probabilities (or uncalibrated logits) of every row, ``(n, n_classes)`` float64, in row order.

    ``rows`` is anything :func:`collate_lightcurves` takes.  Rows are batched
    by length (``batch_size`` at a time, shortest first), so little is spent
    on padding; runs on the model's device in inference mode.
    """
    import pyarrow.compute as pc

    net = model if isinstance(model, LightCurveNet) else model.net
    if not isinstance(net, LightCurveNet):
        raise InvalidInputError(f"predict_rows takes a LightCurveNet or LightCurveModule, got {type(model).__name__}")
    if isinstance(rows, pa.RecordBatch):
        rows = pa.Table.from_batches([rows])
    if not isinstance(rows, pa.Table):
        rows = _rows_as_table(rows)
    if "mjd" not in rows.column_names:
        raise InvalidLightCurveError(f"light-curve rows lack column mjd (have {', '.join(rows.column_names)})")
    k = net.config.n_classes
    out = np.zeros((rows.num_rows, k))
    if rows.num_rows == 0:
        return out
    order = np.argsort(pc.list_value_length(rows.column("mjd")).fill_null(0).to_numpy(), kind="stable")
    rows = rows.take(pa.array(order))
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            for start in range(0, rows.num_rows, batch_size):
                batch = collate_lightcurves(rows.slice(start, batch_size), net.config, with_targets=False)
                inputs = {key: v.to(device) for key, v in encoder_inputs(batch).items()}
                z = net.logits(inputs)
                values = z if logits else torch.softmax(z / net.temperature, dim=-1)
                out[order[start:start + batch_size]] = values.double().cpu().numpy()
    finally:
        net.train(was_training)
    return out


def _rows_as_table(rows: Any) -> pa.Table:
    columns = _as_columns(rows)
    table = _rows_table(columns)
    for name, values in columns.items():
        if name not in table.column_names and name not in _LIST_COLUMNS:
            arr = np.asarray(values)
            if arr.ndim == 1 and arr.dtype.kind in "biuf":
                table = table.append_column(name, pa.array(arr))
    return table


# --------------------------------------------------------------------------- the classifier (configure once)

DEFAULT_LC_TRANSFORMER_URI = "models:/astroray-lc-transformer@champion"


class LightCurveClassifierConfig(AstrorayConfig):
    """Options of :class:`LightCurveClassifier`.

    Attributes
    ----------
    model_uri : str
        ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/RUN/model`` (a logged :class:`LightCurveNet`).
    tracking_uri : str or None
        MLflow store (default: ``$MLFLOW_TRACKING_URI`` or ``$ASTRORAY_HOME/mlflow.db``).
    device : {"cpu", "gpu", "auto"}
    batch_size : int
        Light curves per forward pass (rows are batched by length).
    threads : int or None
        Torch CPU threads (None: torch's default).
    """

    model_uri: str = DEFAULT_LC_TRANSFORMER_URI
    tracking_uri: str | None = None
    device: Literal["cpu", "gpu", "auto"] = "cpu"
    batch_size: int = Field(default=1024, ge=1)
    threads: int | None = Field(default=None, ge=1)


class LightCurvePredictions:
    """What :meth:`LightCurveClassifier.run` returns: one row per input light curve, in input order.

    Attributes
    ----------
    object_ids : ndarray (n,) of str
    alert_ids : ndarray (n,) of str or None
        For rows built from alerts (one row per alert history).
    classes : tuple of str
        The columns of ``probabilities``.
    probabilities : ndarray (n, n_classes) float64
        Class probabilities (calibrated when ``calibrated``); each row sums to 1.
    n_points : ndarray (n,) int64
        Points the model saw per row after cleaning (0: an empty light curve, whose
        probabilities are the model's answer to "nothing observed yet").
    calibrated : bool
        Whether a calibration (temperature, or a calibrator logged with the model) was applied.
    model : dict
        ``name``, ``version``, ``run_id``, ``uri`` of the model.
    """

    def __init__(self, object_ids, alert_ids, classes, probabilities, n_points, calibrated, model):
        self.object_ids = object_ids
        self.alert_ids = alert_ids
        self.classes = tuple(classes)
        self.probabilities = probabilities
        self.n_points = n_points
        self.calibrated = bool(calibrated)
        self.model = dict(model)

    def __len__(self) -> int:
        return int(self.probabilities.shape[0])

    @property
    def predicted(self) -> np.ndarray:
        """The most probable class of each row (object array of names)."""
        if not len(self):
            return np.zeros(0, dtype=object)
        return np.asarray(self.classes, dtype=object)[self.probabilities.argmax(axis=1)]

    def to_table(self) -> pa.Table:
        """One row per light curve: ``object_id``, ``alert_id`` (when known), ``class``, ``probability``
        (of that class), ``p_<CLASS>`` per class, ``n_points``, ``calibrated``, ``model_name``, ``model_version``."""
        n = len(self)
        cols: dict[str, pa.Array] = {"object_id": pa.array([str(x) for x in self.object_ids], pa.string())}
        if self.alert_ids is not None:
            cols["alert_id"] = pa.array([str(x) for x in self.alert_ids], pa.string())
        cols["class"] = pa.array([str(x) for x in self.predicted], pa.string())
        cols["probability"] = pa.array(self.probabilities.max(axis=1) if n else np.zeros(0), pa.float64())
        for j, name in enumerate(self.classes):
            cols[f"p_{name}"] = pa.array(self.probabilities[:, j], pa.float64())
        cols["n_points"] = pa.array(self.n_points.astype(np.int64), pa.int64())
        cols["calibrated"] = pa.array([self.calibrated] * n, pa.bool_())
        cols["model_name"] = pa.array([self.model.get("name")] * n, pa.string())
        version = self.model.get("version")
        cols["model_version"] = pa.array([None if version is None else int(version)] * n, pa.int64())
        return pa.table(cols)


class LightCurveClassifier:
    """Calibrated class probabilities of light curves from a logged :class:`LightCurveNet`, loaded once.

    ``LightCurveClassifier(config)`` loads ``config.model_uri`` from MLflow;
    :meth:`from_model` wraps a net (or a trained :class:`LightCurveModule`)
    in memory.  :meth:`run` takes LightCurve records, alerts (one row per
    alert: its history), a :class:`~astroray.lightcurves.RaggedLightCurves`
    batch, or rows (an Arrow table / Ray Data batch of
    :data:`~astroray.records.LIGHTCURVE_SCHEMA` columns), cleans them by the
    model's own rules and returns :class:`LightCurvePredictions` in input
    order.  Probabilities are divided by the net's temperature and, when the
    model was logged with a ``calibration`` entry in its metadata
    (:meth:`astroray.eval.TemperatureScaling.to_dict` /
    :meth:`~astroray.eval.IsotonicCalibration.to_dict`), passed through it.

    Edge cases: an empty batch gives empty arrays; an empty, all-NaN or
    upper-limits-only light curve gets the model's probabilities for "no
    detection" (finite, summing to 1) with ``n_points`` saying how little it
    saw; unsorted points are sorted; duplicated epochs follow the model's
    ``duplicates`` rule; points in bands the model does not know are dropped.
    A NaN time, or list columns of unequal length, raise
    :class:`~astroray.errors.InvalidLightCurveError`.

    A model with a ``period_column``, ``context_columns`` or ``static_columns`` needs those
    per-row numbers (found from each light curve, e.g. with
    :class:`~astroray.lightcurves.FeatureExtractor`) as ``extra=``; for a list of light curves or
    alerts, those the model logged a recipe for (:meth:`context_inputs`) are computed when ``extra``
    is not given.
    """

    config_class = LightCurveClassifierConfig

    def __init__(self, config: LightCurveClassifierConfig | dict | None = None, *, _net=None, _info=None):
        if config is None:
            config = LightCurveClassifierConfig()
        elif isinstance(config, dict):
            config = config_from_dict(LightCurveClassifierConfig, config, source="LightCurveClassifier config")
        elif not isinstance(config, LightCurveClassifierConfig):
            raise InvalidInputError(f"LightCurveClassifier takes a LightCurveClassifierConfig, a dict or None; "
                                    f"got {type(config).__name__}")
        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        from astroray.kernels.backend import resolve_device

        self.device = "cuda" if resolve_device(config.device) == "gpu" else "cpu"
        if _net is None:
            from astroray.tracking import load_torch_model

            _net, _info = load_torch_model(config.model_uri, device=self.device, uri=config.tracking_uri)
            if not isinstance(_net, LightCurveNet):
                raise InvalidInputError(f"{config.model_uri} is a {type(_net).__name__}, not a LightCurveNet")
        self.net = _net.to(self.device).eval()
        self.info = dict(_info or {})
        self.calibrator = None
        calibration = (self.info.get("metadata") or {}).get("calibration")
        if calibration:
            import json

            from astroray.eval import calibrator_from_dict

            self.calibrator = calibrator_from_dict(json.loads(calibration) if isinstance(calibration, str)
                                                   else calibration)

    @classmethod
    def from_model(cls, model: LightCurveNet | LightCurveModule, *, calibrator=None,
                   config: LightCurveClassifierConfig | dict | None = None, name: str | None = None,
                   version: int | None = None) -> LightCurveClassifier:
        """A classifier around a net in memory (no MLflow); ``calibrator`` a fitted TemperatureScaling
        (on logits) or IsotonicCalibration (on probabilities), optional."""
        net = model if isinstance(model, LightCurveNet) else model.net
        if not isinstance(net, LightCurveNet):
            raise InvalidInputError(f"from_model takes a LightCurveNet or LightCurveModule, got {type(model).__name__}")
        info = {"name": name, "version": version, "run_id": None, "uri": None, "metadata": {}}
        out = cls(config if config is not None else LightCurveClassifierConfig(model_uri="memory:"), _net=net,
                  _info=info)
        out.calibrator = calibrator
        return out

    def __reduce__(self):  # Ray ships stages between processes: rebuild from the config (a registry model)
        if self.config.model_uri == "memory:":
            raise InvalidInputError("a LightCurveClassifier built from_model cannot be pickled; log the model and "
                                    "load it by URI")
        return (type(self), (self.config,))

    def __repr__(self) -> str:
        return f"LightCurveClassifier(model={self.config.model_uri!r}, classes={self.classes})"

    def __call__(self, data: Any, **kwargs) -> LightCurvePredictions:
        return self.run(data, **kwargs)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.net.config.classes)

    @property
    def version(self) -> int | None:
        return self.info.get("version")

    @property
    def calibrated(self) -> bool:
        return self.calibrator is not None or float(self.net.temperature) != 1.0

    def rows(self, data: Any, *, extra: Mapping[str, Any] | None = None) -> pa.Table:
        """``data`` as unlabelled model rows (:func:`~astroray.lightcurves.rows.ragged_rows`)."""
        from astroray.lightcurves import PreprocessConfig, RaggedLightCurves, as_ragged
        from astroray.records import Alert, LightCurve

        if isinstance(data, (pa.Table, pa.RecordBatch, Mapping)) or type(data).__name__ == "DataFrame":
            table = data if isinstance(data, pa.Table) else (
                pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else _rows_as_table(data))
            if "mjd" not in table.column_names:
                table = _rows_as_table(data)
        else:
            if isinstance(data, (LightCurve, Alert)):
                data = [data]
            elif not isinstance(data, (RaggedLightCurves, list, tuple)) and hasattr(data, "__iter__") \
                    and not isinstance(data, (str, bytes)):
                data = list(data)
            if isinstance(data, (list, tuple)) and not data:
                return _rows_table({c: np.zeros(0, dtype=object) for c in _LIST_COLUMNS})
            # cleaned again by the model's own rules in collate: keep every point here (a ragged batch of any
            # band vocabulary goes through as band names)
            if not isinstance(data, RaggedLightCurves):
                data = as_ragged(data, PreprocessConfig(bands=self.net.config.bands, upper_limits="zero_flux",
                                                        duplicates="keep"))
            unlabelled = RaggedLightCurves(object_ids=data.object_ids, offsets=data.offsets, mjd=data.mjd,
                                           band=data.band, flux=data.flux, flux_err=data.flux_err,
                                           detected=data.detected, bands=data.bands, labels=None,
                                           alert_ids=data.alert_ids, n_dropped=data.n_dropped)
            table = ragged_rows(unlabelled, self.classes)
        for name, values in (extra or {}).items():
            arr = np.asarray(values, dtype=np.float64)
            if arr.shape != (table.num_rows,):
                raise InvalidLightCurveError(f"extra column {name!r} has shape {arr.shape}, expected "
                                             f"({table.num_rows},): one value per light curve")
            if name in table.column_names:
                table = table.drop_columns([name])
            table = table.append_column(name, pa.array(arr, pa.float64()))
        return table

    def context_inputs(self, lightcurves) -> dict[str, np.ndarray] | None:
        """The per-object inputs the model was trained with beside the points (its logged ``context_features``
        recipe: ``{column: {"feature": NAME, "config": FeatureConfig}}``), computed from each light curve (or
        alert history) itself; None when the model reads none.  :meth:`run` computes them for lists of records."""
        recipe = (self.info.get("metadata") or {}).get("context_features")
        if not recipe:
            return None
        from astroray.lightcurves import FeatureConfig, FeatureExtractor

        out: dict[str, np.ndarray] = {}
        tables: dict[str, Any] = {}
        for column, spec in recipe.items():
            key = repr(sorted(spec["config"].items()))
            if key not in tables:
                tables[key] = FeatureExtractor(FeatureConfig(**spec["config"])).run(lightcurves)
            out[column] = np.asarray(tables[key].column(spec["feature"]), dtype=np.float64)
        return out

    def run(self, data: Any, *, extra: Mapping[str, Any] | None = None) -> LightCurvePredictions:
        """Calibrated class probabilities of every light curve in ``data`` (see the class docstring).

        Raises
        ------
        InvalidLightCurveError
            Unreadable input (a NaN time, list columns of unequal length, an unknown input type, a column the
            model reads is missing).
        """
        if extra is None and isinstance(data, (list, tuple)):
            extra = self.context_inputs(data)
        table = self.rows(data, extra=extra)
        n = table.num_rows
        k = len(self.classes)
        object_ids = np.asarray(table.column("object_id").to_pylist(), dtype=object) if n else np.zeros(0, object)
        alert_ids = (np.asarray(table.column("alert_id").to_pylist(), dtype=object)
                     if "alert_id" in table.column_names else None)
        if n == 0:
            probs, n_points = np.zeros((0, k)), np.zeros(0, np.int64)
        else:
            z = predict_rows(self.net, table, batch_size=self.config.batch_size, logits=True)
            probs = _apply_calibration(z, float(self.net.temperature), self.calibrator)
            tc = self.net.config.tensor_config()
            n_points = ragged_from_table(table, tc).lengths.astype(np.int64)
            n_points = np.minimum(n_points, tc.max_length)
        info = {key: self.info.get(key) for key in ("name", "version", "run_id", "uri")}
        return LightCurvePredictions(object_ids, alert_ids, self.classes, probs, n_points, self.calibrated, info)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _apply_calibration(logits: np.ndarray, temperature: float, calibrator) -> np.ndarray:
    """Probabilities from logits: the net's temperature, then a logged calibrator (on logits or probabilities)."""
    if calibrator is None:
        return _softmax(logits / temperature)
    from astroray.eval import TemperatureScaling

    if isinstance(calibrator, TemperatureScaling):
        return calibrator.transform(logits / temperature)
    return calibrator.transform(_softmax(logits / temperature))


def __getattr__(name: str):
    # The LightningModule lives in astroray.models.lightning_modules: scoring never imports Lightning (3-5 s a process)
    if name in ("LightCurveModule",):
        from astroray.models import lightning_modules

        return getattr(lightning_modules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
