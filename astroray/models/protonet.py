r"""Prototypical Networks (Snell et al. 2017) for light curves: new classes from K labelled examples.

An **encoder** maps a light curve to a point in an embedding space; a class is
the mean of its K support embeddings (its *prototype*); an object belongs to
the class of the nearest prototype (squared Euclidean distance, softmax over
``-d / T``).  Trained *episodically* -- N classes, K support and Q query
objects each, loss on the queries -- the encoder learns a space where means
of a few examples separate classes, so classes it never saw in training can
be recognised from K examples at inference, with no gradient step.

Encoder: a feature MLP
----------------------
:class:`LightCurveFeaturizer` turns each light curve into a fixed vector:

1. cleaning by the config's :class:`~astroray.lightcurves.FeatureConfig`
   (bands, upper limits, ``detections_only``);
2. fluxes divided by the object's *scale* (its brightest detection; without
   detections its largest absolute flux), so shape features do not depend on
   distance;
3. the batched Numba features (:class:`~astroray.lightcurves.FeatureExtractor`:
   statistics per band, peak, rise, decline, colours; optionally the
   periodogram) on those fluxes, compressed by ``sign(x) log(1 + |x|)``;
4. context columns (``context``): ``log_peak_flux`` (log10 of the scale,
   nJy), ``redshift`` and ``abs_peak_mag`` (peak AB magnitude minus the
   distance modulus of that redshift, flat LCDM H0=70, Om=0.3), and, with
   ``rest_frame``, the rise/decline/duration times divided by ``1 + z``.  The
   redshift comes from ``LightCurve.meta["redshift"]`` or a ``redshift=``
   array (NaN: unknown).

A feature that is undefined (a band without points, too few points, an
unknown redshift) is NaN.  :class:`FeatureEncoder` standardises the vector
with a robust scaler fitted once on training data (median and IQR/1.349;
held as buffers, so a checkpoint carries it), clips to ``+-clip`` and sets
NaN to 0 (the median: "no information") before the MLP.

Open set: "none of these"
-------------------------
:class:`ProtoNetClassifier` (configure once, fit a support, score many
batches) gives, beside the class probabilities, an **open-set score**: the
distance to the nearest prototype, each class's distances divided by that
class's spread (the mean squared distance of its support to its prototype;
for K = 1, the median spread of the other classes, or 1).  Objects far from
every prototype score high.  ``none_of_these`` flags scores above a
threshold: the ``open_set_quantile`` of known objects' scores given to
:meth:`ProtoNetClassifier.calibrate_open_set`, by default of the support's
own leave-one-out scores.  An ensemble of encoders (several trained modules)
averages probabilities and scores and adds the predictive entropy and mutual
information of :mod:`astroray.models.uncertainty`.

Training
--------
:class:`ProtoNetModule` is the LightningModule that Ray Train runs
(:mod:`astroray.ray.train`, ``model: protonet``): ``collate`` turns rows of
light curves (``label_id`` column, :mod:`astroray.lightcurves.rows`) into
feature vectors; every training batch yields ``episodes_per_batch`` episodes
drawn from the classes it holds (a class needs at least two rows: one
support, one query; K and Q shrink for classes with fewer rows); validation
logs ``val_loss`` and ``val_acc`` the same way.  :func:`train_protonet` fits
one in this process from feature arrays with class-balanced episodes.  No
Ray import here.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import nn

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError, InvalidLightCurveError, NotFittedError
from astroray.lightcurves import (
    FeatureConfig,
    FeatureExtractor,
    RaggedLightCurves,
    as_ragged,
    feature_names,
)
from astroray.records import AB_NJY_ZEROPOINT, LightCurve

if TYPE_CHECKING:
    from astroray.models.lightning_modules import ProtoNetModule

__all__ = [
    "CONTEXT_COLUMNS",
    "FeatureEncoder",
    "FeatureMatrix",
    "FewShotConfig",
    "FewShotResult",
    "LightCurveFeaturizer",
    "ProtoNetClassifier",
    "ProtoNetConfig",
    "ProtoNetModule",
    "episode_loss",
    "prototypes",
    "robust_center_scale",
    "squared_distances",
    "train_protonet",
]

CONTEXT_COLUMNS = ("log_peak_flux", "redshift", "abs_peak_mag")
"""Per-object context the featurizer can append (module docstring)."""

Context = Literal["log_peak_flux", "redshift", "abs_peak_mag"]
_TIME_FEATURES = ("rise_time", "decline_time", "duration")  # name prefixes divided by 1 + z with rest_frame


class ProtoNetConfig(AstrorayConfig):
    """The ProtoNet: featurization, encoder size and episodic training.

    Attributes
    ----------
    features : FeatureConfig
        Bands, cleaning and feature groups of the featurizer (default: LSST
        bands, statistics and shape, upper limits dropped).
    context : tuple of {"log_peak_flux", "redshift", "abs_peak_mag"}
        Context columns appended to the features.
    rest_frame : bool
        Also give rise, decline and duration times divided by ``1 + z`` (NaN without a redshift).
    hidden : tuple of int
        Widths of the MLP's hidden layers.
    embedding_dim : int
    dropout : float
    clip : float
        Standardised features are clipped to ``[-clip, clip]``.
    feature_center, feature_scale : tuple of float, optional
        A fitted scaler (:meth:`LightCurveFeaturizer.fit_scaler`); without one the
        module fits it on its first training batch.
    n_way, k_shot, n_query : int
        Classes, support and query objects per class of a training episode.
    episodes_per_batch : int
        Episodes drawn from each training batch.
    feature_noise : float
        Gaussian noise added to the standardised features while training.
    feature_dropout : float
        Fraction of standardised features set to 0 ("unknown") while training.
    lr, weight_decay : float
        AdamW.
    seed : int
        Episode sampling.
    """

    features: FeatureConfig = FeatureConfig(groups=("stats", "shape"))
    context: tuple[Context, ...] = ("log_peak_flux",)
    rest_frame: bool = False
    hidden: tuple[int, ...] = (256, 128)
    embedding_dim: int = Field(default=32, ge=2, le=1024)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    clip: float = Field(default=6.0, gt=0)
    feature_center: tuple[float, ...] | None = None
    feature_scale: tuple[float, ...] | None = None
    n_way: int = Field(default=5, ge=2)
    k_shot: int = Field(default=5, ge=1)
    n_query: int = Field(default=5, ge=1)
    episodes_per_batch: int = Field(default=4, ge=1)
    feature_noise: float = Field(default=0.1, ge=0)
    feature_dropout: float = Field(default=0.1, ge=0, lt=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    seed: int = 0

    @field_validator("context")
    @classmethod
    def _context(cls, value):
        if len(set(value)) != len(value):
            raise ValueError(f"context repeats a column: {value!r}")
        return value

    @field_validator("hidden")
    @classmethod
    def _hidden(cls, value):
        if any(int(h) < 1 for h in value):
            raise ValueError(f"hidden widths must be positive, got {value!r}")
        return value

    @model_validator(mode="after")
    def _scaler(self):
        c, s = self.feature_center, self.feature_scale
        if (c is None) != (s is None):
            raise ValueError("give both feature_center and feature_scale, or neither")
        if c is not None:
            n = len(input_names(self))
            if len(c) != n or len(s) != n:
                raise ValueError(f"feature_center/feature_scale must have {n} entries (the featurizer's columns), "
                                 f"got {len(c)} and {len(s)}")
            if not all(math.isfinite(v) for v in c) or not all(math.isfinite(v) and v > 0 for v in s):
                raise ValueError("feature_center must be finite and feature_scale finite and positive")
        return self


def input_names(config: ProtoNetConfig) -> tuple[str, ...]:
    """The columns of the featurizer's output, in order."""
    names = list(feature_names(config.features)) + list(config.context)
    if config.rest_frame:
        names += [f"{n}_rest" for n in feature_names(config.features) if n.startswith(_TIME_FEATURES)]
    return tuple(names)


# --------------------------------------------------------------------------- featurizer


@dataclass
class FeatureMatrix:
    """Featurizer output: ``values[i]`` is object ``object_ids[i]`` (NaN where undefined).

    Attributes
    ----------
    values : ndarray (n, n_inputs) float64
    names : tuple of str
    object_ids : ndarray (n,) of str
    labels : ndarray (n,) of object, optional
    n_points : ndarray (n,) int64
        Points left after cleaning (0: nothing to judge).
    """

    values: np.ndarray
    names: tuple[str, ...]
    object_ids: np.ndarray
    labels: np.ndarray | None
    n_points: np.ndarray

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def take(self, rows) -> FeatureMatrix:
        rows = np.asarray(rows, dtype=np.int64)
        return FeatureMatrix(self.values[rows], self.names, self.object_ids[rows],
                             None if self.labels is None else self.labels[rows], self.n_points[rows])


def robust_center_scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the median and IQR / 1.349 of the finite values (vectorised; NaN where a column has none)."""
    x = np.asarray(values, dtype=np.float64)
    srt = np.sort(np.where(np.isfinite(x), x, np.inf), axis=0)  # non-finite values sort last
    n = np.isfinite(x).sum(axis=0)
    cols = np.arange(x.shape[1])

    def quantile(q):
        pos = q * np.maximum(n - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        frac = pos - lo
        with np.errstate(invalid="ignore"):
            out = srt[lo, cols] * (1 - frac) + np.where(frac > 0, srt[hi, cols], 0.0) * frac
        return np.where(n > 0, out, np.nan)

    return quantile(0.5), (quantile(0.75) - quantile(0.25)) / 1.349


def _signed_log(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.sign(x) * np.log1p(np.abs(x))


def _row_max(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-row maximum of flat ``values`` (-inf for an empty row)."""
    n = len(offsets) - 1
    out = np.full(n, -np.inf)
    lengths = np.diff(offsets)
    nonempty = lengths > 0
    if values.size and nonempty.any():
        out[nonempty] = np.maximum.reduceat(values, offsets[:-1][nonempty])
    return out


def _redshifts(data, redshift, n: int) -> np.ndarray:
    if redshift is not None:
        z = np.asarray(redshift, dtype=np.float64).reshape(-1)
        if z.shape != (n,):
            raise InvalidInputError(f"redshift must hold one value per light curve ({n}), got shape {z.shape}")
        return z
    records = [data] if isinstance(data, LightCurve) else data
    if isinstance(records, (list, tuple)) and records and all(isinstance(x, LightCurve) for x in records):
        return np.array([float(lc.meta.get("redshift", np.nan)) if lc.meta else np.nan for lc in records])
    return np.full(n, np.nan)


class LightCurveFeaturizer:
    """Light curves -> the fixed-length vectors the ProtoNet encoder reads (configure once, run on many batches).

    Example
    -------
    >>> featurizer = LightCurveFeaturizer(ProtoNetConfig(features=FeatureConfig(bands="ztf")))
    >>> matrix = featurizer.run(lightcurves)            # doctest: +SKIP
    """

    def __init__(self, config: ProtoNetConfig | None = None):
        if config is None:
            config = ProtoNetConfig()
        if not isinstance(config, ProtoNetConfig):
            raise InvalidInputError(f"config must be a ProtoNetConfig, got {type(config).__name__}")
        self.config = config
        self.names = input_names(config)
        self._extractor = FeatureExtractor(config.features)

    def run(self, data, *, redshift=None, n_threads: int | None = None) -> FeatureMatrix:
        """Features and context of every light curve in ``data`` (records, alerts, Arrow rows, ragged batch).

        Parameters
        ----------
        data : LightCurve records, alerts, Arrow table or RaggedLightCurves
            A ragged batch is taken as already cleaned.
        redshift : array (n,), optional
            Per object (NaN: unknown); default ``meta["redshift"]`` of LightCurve records.
        n_threads : int, optional
            Numba threads.

        Raises
        ------
        InvalidLightCurveError
            The input breaks a cleaning rule set to ``"raise"`` (e.g. a NaN time).
        """
        cfg = self.config
        ragged = as_ragged(data, cfg.features)
        n = len(ragged)
        z = _redshifts(data, redshift, n)
        scale = self._scale(ragged)
        rows = ragged.row_index()
        unit = np.where(np.isfinite(scale), scale, 1.0)
        scaled = dataclasses.replace(ragged, flux=ragged.flux / unit[rows], flux_err=ragged.flux_err / unit[rows])
        feats = self._extractor.run(scaled, n_threads=n_threads).values
        cols = [_signed_log(feats)]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_scale = np.log10(scale)
            known_z = np.isfinite(z) & (z > 0)
            if cfg.context:
                from astroray.datasets.lightcurves import distance_modulus

                mu = np.where(known_z, distance_modulus(np.where(known_z, z, 0.1)), np.nan)
                context = {"log_peak_flux": log_scale, "redshift": np.where(np.isfinite(z), z, np.nan),
                           "abs_peak_mag": AB_NJY_ZEROPOINT - 2.5 * log_scale - mu}
                cols.append(np.stack([context[c] for c in cfg.context], axis=1))
            if cfg.rest_frame:
                names = self._extractor.names
                idx = [j for j, name in enumerate(names) if name.startswith(_TIME_FEATURES)]
                dilation = np.where(known_z, 1.0 + z, np.nan)
                cols.append(_signed_log(feats[:, idx] / dilation[:, None]))
        values = np.concatenate(cols, axis=1)
        values[~np.isfinite(values)] = np.nan
        return FeatureMatrix(values=values, names=self.names, object_ids=np.asarray(ragged.object_ids),
                             labels=ragged.labels, n_points=ragged.lengths.astype(np.int64))

    @staticmethod
    def _scale(ragged: RaggedLightCurves) -> np.ndarray:
        """Brightest detection per object; without one, the largest |flux|; NaN for an empty light curve."""
        det_max = _row_max(np.where(ragged.detected, ragged.flux, -np.inf), ragged.offsets)
        abs_max = _row_max(np.abs(ragged.flux), ragged.offsets)
        scale = np.where(np.isfinite(det_max) & (det_max > 0), det_max, abs_max)
        return np.where(np.isfinite(scale) & (scale > 0), scale, np.nan)

    def fit_scaler(self, values: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Robust centre and scale of each column of featurizer output (for ``feature_center/scale``).

        Median and IQR / 1.349 of the finite values; a column with no spread
        (or no finite value) gets scale 1 (and centre 0 when it has no value).
        """
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.names) or x.shape[0] == 0:
            raise InvalidInputError(f"fit_scaler takes (n >= 1, {len(self.names)}) featurizer output, "
                                    f"got shape {x.shape}")
        centre, spread = robust_center_scale(x)
        centre = np.where(np.isfinite(centre), centre, 0.0)
        spread = np.where(np.isfinite(spread) & (spread > 1e-9), spread, 1.0)
        return tuple(float(v) for v in centre), tuple(float(v) for v in spread)


# --------------------------------------------------------------------------- encoder and ProtoNet maths


class FeatureEncoder(nn.Module):
    """Featurizer output (NaN allowed) -> embedding: robust standardisation, clip, NaN to 0, an MLP."""

    def __init__(self, config: ProtoNetConfig):
        super().__init__()
        self.config = config
        n_in = len(input_names(config))
        fitted = config.feature_center is not None
        self.register_buffer("center", torch.tensor(config.feature_center if fitted else [0.0] * n_in,
                                                    dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(config.feature_scale if fitted else [1.0] * n_in,
                                                   dtype=torch.float32))
        self.register_buffer("fitted", torch.tensor(bool(fitted)))
        layers: list[nn.Module] = []
        width = n_in
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(config.dropout)]
            width = h
        layers.append(nn.Linear(width, config.embedding_dim))
        self.mlp = nn.Sequential(*layers)
        # learnable temperature of the softmax over -distance (log of 1 / T)
        self.log_inv_temperature = nn.Parameter(torch.zeros(()))

    @property
    def n_inputs(self) -> int:
        return int(self.center.shape[0])

    def set_scaler(self, center, scale) -> None:
        self.center.copy_(torch.as_tensor(np.asarray(center), dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(np.asarray(scale), dtype=torch.float32))
        self.fitted.fill_(True)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise InvalidInputError(f"the encoder takes (n, {self.n_inputs}) featurizer output, got "
                                    f"{tuple(x.shape)}")
        z = (x.float() - self.center) / self.scale
        z = torch.where(torch.isfinite(z), z, torch.zeros_like(z))
        return z.clamp(-self.config.clip, self.config.clip)

    def embed_standardized(self, z: torch.Tensor) -> torch.Tensor:
        return self.mlp(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.standardize(x))


def prototypes(embeddings: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Mean embedding of each class ``0 .. n_classes - 1`` (``(n_classes, d)``; a class without rows is NaN)."""
    d = embeddings.shape[1]
    sums = torch.zeros(n_classes, d, dtype=embeddings.dtype, device=embeddings.device)
    sums.index_add_(0, labels, embeddings)
    counts = torch.bincount(labels, minlength=n_classes).to(embeddings.dtype)
    return sums / counts[:, None]


def squared_distances(embeddings: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """``(n, k)`` squared Euclidean distances."""
    return ((embeddings[:, None, :] - protos[None, :, :]) ** 2).sum(-1)


def _episode_indices(labels: np.ndarray, *, n_way: int, k_shot: int, n_query: int, rng: np.random.Generator):
    """(support rows, support class 0..m-1, query rows, query class) of one episode from a batch, or None.

    Classes with at least two rows take part (up to ``n_way`` of them); a class
    with fewer than ``k_shot + n_query`` rows gives ``k = min(k_shot, rows - 1)``
    supports and the rest (up to ``n_query``) as queries.
    """
    classes, counts = np.unique(labels[labels >= 0], return_counts=True)
    eligible = classes[counts >= 2]
    if eligible.size < 2:
        return None
    chosen = rng.choice(eligible, size=min(n_way, eligible.size), replace=False)
    s_rows, s_cls, q_rows, q_cls = [], [], [], []
    for j, c in enumerate(chosen):
        rows = rng.permutation(np.flatnonzero(labels == c))
        k = min(k_shot, rows.size - 1)
        q = min(n_query, rows.size - k)
        s_rows.append(rows[:k])
        q_rows.append(rows[k:k + q])
        s_cls.append(np.full(k, j))
        q_cls.append(np.full(q, j))
    return (np.concatenate(s_rows), np.concatenate(s_cls), np.concatenate(q_rows), np.concatenate(q_cls),
            len(chosen))


def episode_loss(encoder: FeatureEncoder, z: torch.Tensor, labels: np.ndarray, *, n_way: int, k_shot: int,
                 n_query: int, n_episodes: int, rng: np.random.Generator):
    """Mean cross-entropy and accuracy over ``n_episodes`` episodes drawn from standardised rows ``z``.

    Returns ``(loss, accuracy)`` tensors, or ``(None, None)`` when the rows hold fewer than two classes
    with two rows each.
    """
    losses, hits, total = [], 0, 0
    emb = encoder.embed_standardized(z)
    inv_t = encoder.log_inv_temperature.exp()
    for _ in range(n_episodes):
        ep = _episode_indices(labels, n_way=n_way, k_shot=k_shot, n_query=n_query, rng=rng)
        if ep is None:
            return None, None
        s_rows, s_cls, q_rows, q_cls, m = ep
        protos = prototypes(emb[torch.from_numpy(s_rows)], torch.from_numpy(s_cls).to(emb.device), m)
        logits = -squared_distances(emb[torch.from_numpy(q_rows)], protos) * inv_t
        target = torch.from_numpy(q_cls).to(emb.device)
        losses.append(F.cross_entropy(logits, target))
        hits += int((logits.argmax(1) == target).sum())
        total += int(target.numel())
    return torch.stack(losses).mean(), torch.tensor(hits / max(total, 1))


# --------------------------------------------------------------------------- LightningModule


def _rows_table(batch):
    """A Ray Data batch (dict of arrays), DataFrame or Arrow table of light-curve rows as an Arrow table."""
    import pyarrow as pa

    if isinstance(batch, pa.RecordBatch):
        return pa.Table.from_batches([batch])
    if isinstance(batch, pa.Table):
        return batch
    if type(batch).__name__ == "DataFrame":
        return pa.Table.from_pandas(batch, preserve_index=False)
    if isinstance(batch, dict):
        cols = {}
        for name, values in batch.items():
            if isinstance(values, np.ndarray) and values.dtype == object:
                values = [None if v is None else (v.tolist() if isinstance(v, np.ndarray) else v) for v in values]
            elif isinstance(values, np.ndarray) and values.ndim == 2:
                values = list(values)
            cols[name] = values
        try:
            return pa.table(cols)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidLightCurveError(f"light-curve rows could not be read: {exc}") from None
    raise InvalidLightCurveError(f"collate takes a dict of arrays (a Ray Data batch), an Arrow table or a "
                                 f"DataFrame, got {type(batch).__name__}")


# --------------------------------------------------------------------------- training in this process


def _episode_rows(by_class: dict, config: ProtoNetConfig, rng: np.random.Generator) -> np.ndarray:
    """Rows of one class-balanced episode: ``n_way`` classes x up to ``k_shot + n_query`` rows each."""
    classes = np.array(sorted(c for c, rows in by_class.items() if rows.size >= 2))
    chosen = rng.choice(classes, size=min(config.n_way, classes.size), replace=False)
    per = config.k_shot + config.n_query
    return np.concatenate([rng.choice(by_class[int(c)], size=min(per, by_class[int(c)].size), replace=False)
                           for c in chosen])


def train_protonet(features: np.ndarray, labels: np.ndarray, config: ProtoNetConfig | dict | None = None, *,
                   max_epochs: int = 20, episodes_per_epoch: int = 100, val_features: np.ndarray | None = None,
                   val_labels: np.ndarray | None = None, seed: int = 0) -> ProtoNetModule:
    """Fit a :class:`ProtoNetModule` here, on featurizer output and integer labels (CPU, no Trainer).

    The module's own training step runs on class-balanced episodes (``n_way``
    classes, ``k_shot + n_query`` rows each), ``episodes_per_epoch`` per epoch,
    with its optimiser (AdamW, cosine decay over the epochs): a plain loop,
    because a Lightning Trainer costs more than these millisecond steps on a
    small CPU.  The scaler is fitted on ``features`` when the config has none.
    With validation data, the module's ``history`` gets each epoch's mean
    validation loss and accuracy, and the weights of the epoch with the lowest
    validation loss are kept.

    Raises
    ------
    InvalidInputError
        Shapes disagree, or fewer than two classes have two rows.
    """
    import copy

    cfg = config if isinstance(config, ProtoNetConfig) else ProtoNetConfig(**(config or {}))
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    names = input_names(cfg)
    if x.ndim != 2 or x.shape != (y.size, len(names)):
        raise InvalidInputError(f"features must be (n, {len(names)}) featurizer output with one label each, got "
                                f"{x.shape} and {y.shape}")
    _, counts = np.unique(y[y >= 0], return_counts=True)
    if int(np.sum(counts >= 2)) < 2:
        raise InvalidInputError("episodic training needs at least two classes with two labelled rows each")
    if cfg.feature_center is None:
        centre, spread = LightCurveFeaturizer(cfg).fit_scaler(x)
        cfg = cfg.with_updates(feature_center=centre, feature_scale=spread)
    torch.manual_seed(seed)
    from astroray.models.lightning_modules import ProtoNetModule

    module = ProtoNetModule(cfg)
    module._rng = np.random.default_rng([cfg.seed, seed])
    rng = np.random.default_rng([seed, 1])
    by_class = {int(c): np.flatnonzero(y == c) for c in np.unique(y[y >= 0])}
    xt = torch.from_numpy(x.astype(np.float32))
    yt = torch.from_numpy(y)
    has_val = val_features is not None and val_labels is not None
    if has_val:
        vx = torch.from_numpy(np.asarray(val_features, np.float32))
        vy = np.asarray(val_labels, np.int64).reshape(-1)
        v_by_class = {int(c): np.flatnonzero(vy == c) for c in np.unique(vy[vy >= 0])}
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(int(max_epochs), 1))
    module.history = []
    best = (float("inf"), None)
    for epoch in range(int(max_epochs)):
        module.train()
        losses = []
        for _ in range(int(episodes_per_epoch)):
            rows = torch.from_numpy(_episode_rows(by_class, cfg, rng))
            loss, _ = module._step({"x": xt[rows], "label": yt[rows]}, train=True)
            if loss is None:
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        sched.step()
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan")}
        if has_val and len([c for c, r in v_by_class.items() if r.size >= 2]) >= 2:
            module.eval()
            v_rng = np.random.default_rng([seed, 2])  # the same validation episodes every epoch
            vl, va = [], []
            with torch.no_grad():
                for _ in range(max(int(episodes_per_epoch) // 4, 8)):
                    rows = _episode_rows(v_by_class, cfg, v_rng)
                    module._rng = np.random.default_rng([seed, 3, len(vl)])
                    loss, acc = module._step({"x": vx[rows], "label": torch.from_numpy(vy[rows])}, train=False)
                    vl.append(float(loss))
                    va.append(float(acc))
            record.update(val_loss=float(np.mean(vl)), val_acc=float(np.mean(va)))
            if record["val_loss"] < best[0]:
                best = (record["val_loss"], copy.deepcopy(module.state_dict()))
        module.history.append(record)
    if best[1] is not None:
        module.load_state_dict(best[1])
    module.eval()
    return module


# --------------------------------------------------------------------------- inference


class FewShotConfig(AstrorayConfig):
    """How :class:`ProtoNetClassifier` builds prototypes and the open-set flag.

    Attributes
    ----------
    k_shot : int, optional
        Support objects used per class (the first ``k_shot`` of each class, in
        the given order); None uses all.  A class with fewer raises.
    normalize_open_set : bool
        Divide each class's distances by its support spread for the open-set score.
    open_set_quantile : float
        ``none_of_these`` is set above this quantile of known objects' scores.
    batch_size : int
        Objects embedded per forward pass.
    """

    k_shot: int | None = Field(default=None, ge=1)
    normalize_open_set: bool = True
    open_set_quantile: float = Field(default=0.95, gt=0, lt=1)
    batch_size: int = Field(default=4096, ge=1)


@dataclass
class FewShotResult:
    """What :meth:`ProtoNetClassifier.run` returns (one row per object).

    Attributes
    ----------
    classes : tuple of str
        The support's classes: the columns of ``probabilities`` and ``distances``.
    probabilities : ndarray (n, k)
        Mean over the ensemble of ``softmax(-d / T)``; NaN rows for empty light curves.
    distances : ndarray (n, k)
        Squared distances to the prototypes (ensemble mean).
    predicted : ndarray (n,) of object
        The most probable class (None for empty light curves).
    open_set_score : ndarray (n,)
        "None of these": the nearest prototype's normalised distance (higher: more foreign).
    none_of_these : ndarray (n,) bool
        ``open_set_score`` above :attr:`ProtoNetClassifier.open_set_threshold`.
    entropy, mutual_information : ndarray (n,)
        Predictive entropy of the mean probabilities, and its part due to
        disagreement between ensemble members (0 for one member), nats.
    embeddings : ndarray (members, n, d)
    object_ids : ndarray (n,)
    """

    classes: tuple[str, ...]
    probabilities: np.ndarray
    distances: np.ndarray
    predicted: np.ndarray
    open_set_score: np.ndarray
    none_of_these: np.ndarray
    entropy: np.ndarray
    mutual_information: np.ndarray
    embeddings: np.ndarray
    object_ids: np.ndarray

    def to_pandas(self):
        """One row per object: ``object_id``, ``predicted``, ``p_<class>``, the scores."""
        import pandas as pd

        cols = {"object_id": [str(x) for x in self.object_ids], "predicted": list(self.predicted)}
        for j, c in enumerate(self.classes):
            cols[f"p_{c}"] = self.probabilities[:, j]
        cols.update(open_set_score=self.open_set_score, none_of_these=self.none_of_these, entropy=self.entropy,
                    mutual_information=self.mutual_information)
        return pd.DataFrame(cols)


def _encoders(model) -> list[FeatureEncoder]:
    items = list(model) if isinstance(model, (list, tuple)) else [model]
    if not items:
        raise InvalidInputError("give at least one trained ProtoNet (module or encoder)")
    out = []
    for i, m in enumerate(items):
        enc = m if isinstance(m, FeatureEncoder) else getattr(m, "encoder", m)
        if not isinstance(enc, FeatureEncoder):
            raise InvalidInputError(f"model[{i}] is a {type(m).__name__}; give ProtoNetModule or FeatureEncoder")
        if not bool(enc.fitted):
            raise NotFittedError(f"model[{i}] has no fitted feature scaler: train it first (train_protonet)")
        out.append(enc.eval())
    names = {input_names(e.config) for e in out}
    if len(names) != 1:
        raise InvalidInputError("the ensemble's members read different features: train them with one featurizer "
                                "config")
    return out


class ProtoNetClassifier:
    """Classify by the nearest prototype of a labelled support set, with an open-set score (configure once).

    Parameters
    ----------
    model : ProtoNetModule, FeatureEncoder, or a list of them (an ensemble)
        Trained encoders reading the same features.
    config : FewShotConfig, optional

    Example
    -------
    >>> clf = ProtoNetClassifier(module, FewShotConfig(k_shot=5))        # doctest: +SKIP
    >>> clf.fit_support(support_lightcurves, support_labels)            # doctest: +SKIP
    >>> result = clf.run(new_lightcurves)                               # doctest: +SKIP
    >>> result.probabilities, result.open_set_score                      # doctest: +SKIP
    """

    def __init__(self, model, config: FewShotConfig | None = None):
        if config is None:
            config = FewShotConfig()
        if not isinstance(config, FewShotConfig):
            raise InvalidInputError(f"config must be a FewShotConfig, got {type(config).__name__}")
        self.config = config
        self.encoders = _encoders(model)
        self.featurizer = LightCurveFeaturizer(self.encoders[0].config)
        self.classes: tuple[str, ...] | None = None
        self.open_set_threshold: float = float("inf")
        self._protos: list[torch.Tensor] = []
        self._spread: list[np.ndarray] = []

    # ---- inputs

    def features(self, data, *, redshift=None) -> FeatureMatrix:
        """Featurizer output of ``data`` (a :class:`FeatureMatrix` is returned as is)."""
        if isinstance(data, FeatureMatrix):
            if tuple(data.names) != tuple(self.featurizer.names):
                raise InvalidInputError("the FeatureMatrix was made with another featurizer config")
            return data
        return self.featurizer.run(data, redshift=redshift)

    @torch.no_grad()
    def embed(self, data, *, redshift=None) -> np.ndarray:
        """Embeddings ``(members, n, d)`` of light curves or a :class:`FeatureMatrix`."""
        return self._embed(self.features(data, redshift=redshift).values)

    @torch.no_grad()
    def _embed(self, values: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(values, np.float32))
        bs = self.config.batch_size
        out = []
        for enc in self.encoders:
            parts = [enc(x[i:i + bs]) for i in range(0, max(len(x), 1), bs)] if len(x) else [
                torch.zeros(0, enc.config.embedding_dim)]
            out.append(torch.cat(parts).numpy().astype(np.float64))
        return np.stack(out)

    # ---- support

    def fit_support(self, data, labels: Sequence | None = None, *, redshift=None) -> ProtoNetClassifier:
        """Build one prototype per class from labelled light curves (K of each, see ``k_shot``).

        Parameters
        ----------
        data : light curves or FeatureMatrix
        labels : sequence of str, optional
            One per light curve; default the light curves' own labels.
        redshift : array, optional

        Raises
        ------
        InvalidInputError
            No labels, a label missing, a class with fewer than ``k_shot`` light
            curves, or a support light curve with no usable point.
        """
        matrix = self.features(data, redshift=redshift)
        n = len(matrix)
        if labels is None:
            labels = matrix.labels
        if labels is None:
            raise InvalidInputError("the support needs labels: pass labels= or light curves with a label")
        labels = np.asarray([None if v is None else str(v) for v in labels], dtype=object)
        if labels.shape != (n,):
            raise InvalidInputError(f"labels has {labels.size} entries for {n} support light curves")
        if n == 0:
            raise InvalidInputError("the support is empty: give K labelled light curves of each class")
        missing = [str(matrix.object_ids[i]) for i in np.flatnonzero(labels == None)]
        if missing:
            raise InvalidInputError(f"{len(missing)} support light curve(s) have no label, e.g. {missing[:3]}")
        empty = [str(matrix.object_ids[i]) for i in np.flatnonzero(matrix.n_points == 0)]
        if empty:
            raise InvalidInputError(f"{len(empty)} support light curve(s) have no usable point after cleaning, e.g. "
                                    f"{empty[:3]}: a prototype cannot be built from them; drop them")
        classes = tuple(dict.fromkeys(labels.tolist()))  # first-seen order
        k = self.config.k_shot
        rows = []
        for c in classes:
            idx = np.flatnonzero(labels == c)
            if k is not None and idx.size < k:
                raise InvalidInputError(f"class {c!r} has {idx.size} support light curve(s) but k_shot={k}: give "
                                        f"at least {k}, lower k_shot, or set k_shot=None to use all there are")
            rows.append(idx if k is None else idx[:k])
        keep = np.concatenate(rows)
        y = np.concatenate([np.full(r.size, j) for j, r in enumerate(rows)])
        emb = self._embed(matrix.values[keep])
        self._protos, self._spread = [], []
        loo = []
        for m in range(len(self.encoders)):
            e = torch.from_numpy(emb[m])
            protos = prototypes(e, torch.from_numpy(y), len(classes))
            d_own = squared_distances(e, protos)[np.arange(y.size), y].numpy()
            counts = np.bincount(y, minlength=len(classes))
            spread = np.full(len(classes), np.nan)
            for j in range(len(classes)):
                if counts[j] >= 2:  # unbiased: E|x - mean|^2 over K points is (K-1)/K of the variance
                    spread[j] = d_own[y == j].mean() * counts[j] / (counts[j] - 1)
            fallback = float(np.nanmedian(spread)) if np.isfinite(spread).any() else 1.0
            spread = np.where(np.isfinite(spread) & (spread > 0), spread, max(fallback, 1e-12))
            self._protos.append(protos)
            self._spread.append(spread)
            # leave-one-out distances of the support to their own class (classes with K >= 2 only)
            with np.errstate(invalid="ignore", divide="ignore"):
                c = counts[y].astype(np.float64)
                loo.append(np.where(c >= 2, d_own * (c / np.maximum(c - 1, 1)) ** 2, np.nan))
        self.classes = classes
        loo_score = np.mean(loo, axis=0)
        if self.config.normalize_open_set:
            loo_score = loo_score / np.mean([s[y] for s in self._spread], axis=0)
        finite = loo_score[np.isfinite(loo_score)]
        self.open_set_threshold = (float(np.quantile(finite, self.config.open_set_quantile)) if finite.size
                                   else float("inf"))
        return self

    def calibrate_open_set(self, data, *, redshift=None) -> float:
        """Set ``none_of_these``'s threshold at ``open_set_quantile`` of the scores of known-class objects."""
        scores = self.run(data, redshift=redshift).open_set_score
        scores = scores[np.isfinite(scores)]
        if scores.size == 0:
            raise InvalidInputError("no scorable light curve to calibrate the open-set threshold on")
        self.open_set_threshold = float(np.quantile(scores, self.config.open_set_quantile))
        return self.open_set_threshold

    # ---- scoring

    def run(self, data, *, redshift=None) -> FewShotResult:
        """Probabilities over the support's classes, distances, open-set score and uncertainty of each object."""
        from astroray.models.uncertainty import ensemble_uncertainty

        if self.classes is None:
            raise NotFittedError("no support yet: call fit_support(light_curves, labels) first")
        matrix = self.features(data, redshift=redshift)
        emb = self._embed(matrix.values)
        member_p, member_d, member_s = [], [], []
        for m, enc in enumerate(self.encoders):
            d = squared_distances(torch.from_numpy(emb[m]), self._protos[m]).numpy()
            logits = -d * float(enc.log_inv_temperature.detach().exp())
            logits -= logits.max(axis=1, keepdims=True) if len(d) else 0.0
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            member_p.append(p)
            member_d.append(d)
            member_s.append((d / self._spread[m][None, :] if self.config.normalize_open_set else d).min(axis=1)
                            if len(d) else np.zeros(0))
        stack = np.stack(member_p)
        unc = ensemble_uncertainty(stack)
        empty = matrix.n_points == 0
        proba = unc.mean_probabilities
        score = np.mean(member_s, axis=0)
        proba[empty] = np.nan
        score = np.where(empty, np.nan, score)
        entropy = np.where(empty, np.nan, unc.entropy)
        mi = np.where(empty, np.nan, unc.mutual_information)
        predicted = np.array([None if e else self.classes[int(j)] for e, j in
                              zip(empty, np.nan_to_num(proba, nan=0.0).argmax(axis=1))], dtype=object)
        return FewShotResult(classes=self.classes, probabilities=proba, distances=np.mean(member_d, axis=0),
                             predicted=predicted, open_set_score=score,
                             none_of_these=np.where(empty, False, score > self.open_set_threshold),
                             entropy=entropy, mutual_information=mi, embeddings=emb,
                             object_ids=matrix.object_ids)


def __getattr__(name: str):
    # The LightningModule lives in astroray.models.lightning_modules: scoring never imports Lightning (3-5 s a process)
    if name in ("ProtoNetModule",):
        from astroray.models import lightning_modules

        return getattr(lightning_modules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
