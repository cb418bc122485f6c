"""Padded arrays and masks for a batch of light curves, the input of sequence models.

:class:`LightCurveTensorizer` turns light curves (records, alerts, Arrow
tables or a :class:`~astroray.lightcurves.ragged.RaggedLightCurves` batch)
into a :class:`PaddedBatch`: one row per light curve, one column per point,
in time order.

Per object
----------
* **Time** is days since the first detection (``time_origin=
  "first_detection"``; an object without a detection counts from its first
  point) or since the first point.  Points before the first detection
  (forced photometry, limits kept as zero flux) have negative times.
* **Flux scale** is the object's ``max |flux|`` (``scale="max_abs"``) or the
  ``scale_quantile`` quantile of ``|flux|`` (``"quantile"``, linear
  interpolation as :func:`numpy.quantile`), over its detections
  (``scale_points="detections"``; all its points when it has none or with
  ``"all"``).  A zero or non-finite scale falls back to the median
  ``flux_err``, then to 1 nJy.  Flux *and* flux_err are divided by it; the
  scale is kept (``scale``, nJy, and ``log_scale = log10(scale)``) so a model
  can be given the brightness back as a feature.  ``scale="none"`` keeps nJy.
* Time origin and scale are computed from all the (cleaned, already
  truncated) points of the object before the ``max_length`` cut.

Longer than ``max_length``
--------------------------
``keep="first"`` (default) keeps the earliest ``max_length`` points: a long
light curve then gives the same tensor its prefix gave when it was that long,
which keeps training and as-it-arrived evaluation consistent.  ``"last"``
keeps the most recent points; ``"uniform"`` keeps points at evenly spaced
indices (first and last included), which keeps the whole baseline of a
periodic variable.

Padding and empty light curves
------------------------------
Padded entries are 0 (``band`` is :attr:`PaddedBatch.band_pad_index`,
``len(bands)``, for an embedding's ``padding_idx``); ``mask`` is True on real
points (``padding_mask``, its negation, is what
:class:`torch.nn.MultiheadAttention` takes as ``key_padding_mask``).  A light
curve with no usable point gives a row of length 0: all padding, ``t0`` and
``scale`` NaN, ``log_scale`` 0.  (All-masked attention rows give NaN in
PyTorch; models must treat ``lengths == 0`` themselves.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from astroray.lightcurves.ragged import PreprocessConfig, RaggedLightCurves, _offsets, as_ragged
from astroray.lightcurves.truncation import origin_mjd

__all__ = ["TensorConfig", "PaddedBatch", "LightCurveTensorizer", "pad_lightcurves", "object_scale"]


class TensorConfig(PreprocessConfig):
    """Options of :class:`LightCurveTensorizer` (cleaning options from :class:`PreprocessConfig`).

    Attributes
    ----------
    max_length : int
        Most points per row.
    keep : {"first", "last", "uniform"}
        Which points a longer light curve keeps (module docstring).
    pad_to : {"longest", "max_length"}
        Width of the arrays: the longest row of the batch, or always ``max_length``.
    time_origin : {"first_detection", "first_point"}
    scale : {"max_abs", "quantile", "none"}
    scale_quantile : float
        Quantile of ``|flux|`` for ``scale="quantile"``.
    scale_points : {"detections", "all"}
        Points the scale is computed from.
    dtype : {"float32", "float64"}
        Of the float arrays (``t0`` and ``scale`` are always float64).
    """

    max_length: int = Field(256, ge=1)
    keep: Literal["first", "last", "uniform"] = "first"
    pad_to: Literal["longest", "max_length"] = "longest"
    time_origin: Literal["first_detection", "first_point"] = "first_detection"
    scale: Literal["max_abs", "quantile", "none"] = "max_abs"
    scale_quantile: float = Field(0.95, gt=0.0, le=1.0)
    scale_points: Literal["detections", "all"] = "detections"
    dtype: Literal["float32", "float64"] = "float32"


@dataclass
class PaddedBatch:
    """A batch of light curves as padded ``(n, length)`` arrays.

    Attributes
    ----------
    time : (n, L) float
        Days since ``t0``.
    flux, flux_err : (n, L) float
        Divided by ``scale``.
    band : (n, L) int64
        Index into ``bands``; ``band_pad_index`` in padding.
    detected, mask : (n, L) bool
        Detection flag; True on real points.
    lengths : (n,) int64
        Real points per row.
    full_lengths : (n,) int64
        Points before the ``max_length`` cut.
    t0 : (n,) float64
        MJD of the time origin (NaN for empty rows).
    scale : (n,) float64
        Flux scale in nJy (NaN for empty rows).
    object_ids : (n,) str
    labels : (n,) object or None
    alert_ids : (n,) str or None
    bands : tuple of str
    """

    time: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    band: np.ndarray
    detected: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    full_lengths: np.ndarray
    t0: np.ndarray
    scale: np.ndarray
    object_ids: np.ndarray
    bands: tuple[str, ...]
    labels: np.ndarray | None = None
    alert_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.time.shape[0])

    @property
    def padding_mask(self) -> np.ndarray:
        """True on padding (PyTorch's ``key_padding_mask`` convention)."""
        return ~self.mask

    @property
    def band_pad_index(self) -> int:
        """The band index padding carries (``len(bands)``)."""
        return len(self.bands)

    @property
    def log_scale(self) -> np.ndarray:
        """``log10(scale)`` per row, 0 for empty rows (a model input that is never NaN)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.log10(self.scale)
        return np.where(np.isfinite(out), out, 0.0).astype(self.time.dtype)

    def to_ragged(self) -> RaggedLightCurves:
        """The points back in nJy and MJD (the inverse of padding, up to the float dtype)."""
        lengths = self.lengths.astype(np.int64)
        m = self.mask
        rows = np.nonzero(m)[0]
        return RaggedLightCurves(
            object_ids=self.object_ids, offsets=_offsets(lengths),
            mjd=self.time[m].astype(np.float64) + self.t0[rows],
            band=self.band[m].astype(np.int16),
            flux=self.flux[m].astype(np.float64) * self.scale[rows],
            flux_err=self.flux_err[m].astype(np.float64) * self.scale[rows],
            detected=self.detected[m], bands=self.bands, labels=self.labels, alert_ids=self.alert_ids)

    def to_torch(self, device: Any = None) -> dict[str, Any]:
        """The arrays as torch tensors (torch is imported here, not at module import).

        Returns
        -------
        dict
            ``time, flux, flux_err, log_scale`` (float), ``band, lengths``
            (int64), ``detected, mask, padding_mask`` (bool).
        """
        import torch

        def t(a):
            return torch.from_numpy(np.ascontiguousarray(a)).to(device) if device is not None else \
                torch.from_numpy(np.ascontiguousarray(a))

        return {"time": t(self.time), "flux": t(self.flux), "flux_err": t(self.flux_err),
                "band": t(self.band), "detected": t(self.detected), "mask": t(self.mask),
                "padding_mask": t(self.padding_mask), "lengths": t(self.lengths), "log_scale": t(self.log_scale)}


def _row_quantile(values: np.ndarray, rows: np.ndarray, n_rows: int, q: float) -> np.ndarray:
    """Per-row linear-interpolation quantile of ``values`` (NaN for rows without values)."""
    out = np.full(n_rows, np.nan)
    if values.size == 0:
        return out
    order = np.lexsort((values, rows))
    v, r = values[order], rows[order]
    counts = np.bincount(r, minlength=n_rows)
    starts = _offsets(counts)[:-1]
    has = counts > 0
    h = (counts[has] - 1) * q
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, counts[has] - 1)
    base = starts[has]
    out[has] = v[base + lo] + (h - lo) * (v[base + hi] - v[base + lo])
    return out


def object_scale(data: RaggedLightCurves, *, method: str = "max_abs", quantile: float = 0.95,
                 points: str = "detections") -> np.ndarray:
    """Each row's flux scale in nJy, as :class:`LightCurveTensorizer` computes it (NaN for empty rows).

    See the module docstring for the definition and fallbacks.
    """
    n = len(data)
    if method == "none":
        return np.where(data.lengths > 0, 1.0, np.nan)
    rows = data.row_index()
    use = np.ones(data.n_points, dtype=bool)
    if points == "detections":
        has_det = np.bincount(rows[data.detected], minlength=n) > 0
        use = data.detected | ~has_det[rows]
    q = 1.0 if method == "max_abs" else float(quantile)
    scale = _row_quantile(np.abs(data.flux[use]), rows[use], n, q)
    bad = ~(np.isfinite(scale) & (scale > 0)) & (data.lengths > 0)
    if bad.any():
        err = _row_quantile(data.flux_err, rows, n, 0.5)
        scale = np.where(bad, err, scale)
        scale = np.where(bad & ~(np.isfinite(scale) & (scale > 0)), 1.0, scale)
    return scale


def pad_lightcurves(data, config: TensorConfig | None = None) -> PaddedBatch:
    """Functional form of :meth:`LightCurveTensorizer.run`."""
    return LightCurveTensorizer(config).run(data)


class LightCurveTensorizer:
    """Light curves to a :class:`PaddedBatch` (configure once, run on many batches).

    Example
    -------
    >>> tensorizer = LightCurveTensorizer(TensorConfig(bands="ztf", max_length=128))
    >>> batch = tensorizer.run(lightcurves)           # doctest: +SKIP
    >>> tensors = batch.to_torch()                    # doctest: +SKIP
    """

    def __init__(self, config: TensorConfig | None = None):
        if config is None:
            config = TensorConfig()
        if not isinstance(config, TensorConfig):
            from astroray.errors import InvalidInputError

            raise InvalidInputError(f"config must be a TensorConfig, got {type(config).__name__}")
        self.config = config

    def run(self, data) -> PaddedBatch:
        """Pad ``data`` (LightCurve records, alerts, an Arrow table or a RaggedLightCurves).

        Raises
        ------
        InvalidLightCurveError
            The input breaks a cleaning rule set to ``"raise"``.
        """
        return self._pad(as_ragged(data, self.config))

    def _pad(self, data: RaggedLightCurves) -> PaddedBatch:
        cfg = self.config
        n = len(data)
        lengths = data.lengths
        rows = data.row_index()
        t0 = origin_mjd(data, cfg.time_origin)
        scale = object_scale(data, method=cfg.scale, quantile=cfg.scale_quantile, points=cfg.scale_points)

        L = cfg.max_length
        position = np.arange(data.n_points) - data.offsets[:-1][rows]
        long = lengths > L
        if not long.any():
            keep = np.ones(data.n_points, dtype=bool)
        elif cfg.keep == "first":
            keep = position < L
        elif cfg.keep == "last":
            keep = position >= (lengths - L)[rows]
        else:  # uniform: indices round(k (n - 1) / (L - 1)), strictly increasing because n > L
            keep = ~long[rows]
            big = np.flatnonzero(long)
            k = np.arange(L, dtype=np.float64)
            step = (lengths[big] - 1) / max(L - 1, 1)
            chosen = np.floor(k[None, :] * step[:, None] + 0.5).astype(np.int64) if L > 1 else \
                np.zeros((len(big), 1), dtype=np.int64)
            keep[(data.offsets[:-1][big][:, None] + chosen).ravel()] = True
        kept_lengths = np.bincount(rows[keep], minlength=n).astype(np.int64)
        width = L if cfg.pad_to == "max_length" else int(kept_lengths.max(initial=0))
        idx = np.flatnonzero(keep)
        r = rows[idx]
        col = np.arange(len(idx)) - _offsets(kept_lengths)[:-1][r]

        dt = np.dtype(cfg.dtype)
        time = np.zeros((n, width), dtype=dt)
        flux = np.zeros((n, width), dtype=dt)
        flux_err = np.zeros((n, width), dtype=dt)
        band = np.full((n, width), len(data.bands), dtype=np.int64)
        detected = np.zeros((n, width), dtype=bool)
        mask = np.zeros((n, width), dtype=bool)
        time[r, col] = data.mjd[idx] - t0[r]
        flux[r, col] = data.flux[idx] / scale[r]
        flux_err[r, col] = data.flux_err[idx] / scale[r]
        band[r, col] = data.band[idx]
        detected[r, col] = data.detected[idx]
        mask[r, col] = True
        return PaddedBatch(time=time, flux=flux, flux_err=flux_err, band=band, detected=detected, mask=mask,
                           lengths=kept_lengths, full_lengths=lengths.astype(np.int64), t0=t0, scale=scale,
                           object_ids=data.object_ids, bands=data.bands, labels=data.labels,
                           alert_ids=data.alert_ids)
