"""A batch of light curves as flat arrays plus offsets, cleaned by one set of rules.

:class:`RaggedLightCurves` is what the tensor and feature code consume: every
object's points lie in ``[offsets[i], offsets[i + 1])`` of flat ``mjd``,
``band`` (an index into the band vocabulary), ``flux``, ``flux_err`` (nJy) and
``detected`` arrays, in time order.  It is built from
:class:`~astroray.records.LightCurve` records, from Arrow tables of
:data:`~astroray.records.LIGHTCURVE_SCHEMA` (the Ray Data / Parquet form, no
per-object Python objects) or from alerts.

Cleaning rules (:class:`PreprocessConfig`), applied in this order
------------------------------------------------------------------
1. **Bands** outside the vocabulary are dropped (``unknown_bands="drop"``, the
   default: a ZTF model has no embedding for ``u``) or raise.
2. **Unusable points** raise or are dropped (``invalid_points``): a
   ``flux_err`` that is NaN, infinite, zero or negative; an infinite flux; a
   *detection* without a flux.  An **upper limit** (not detected, NaN flux,
   usable ``flux_err`` -- the :class:`~astroray.records.LightCurve`
   convention) is not invalid: it is dropped (``upper_limits="drop"``) or
   kept as a zero-flux, not-detected point with its ``flux_err``
   (``"zero_flux"``).
3. ``detections_only=True`` keeps detections only.
4. Points are put in time order (a stable sort; points at the same time are
   ordered by band index).
5. **Duplicated epochs** (same object, band and MJD): kept (``"keep"``),
   merged into their inverse-variance weighted mean (``"merge"``: flux
   ``sum(w f) / sum(w)``, error ``1 / sqrt(sum(w))``, detected if any was), or
   raise (``"raise"``).

An object left with no points is kept as an empty light curve (length 0);
what the tensor and feature code make of it is documented there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import pyarrow as pa
from pydantic import field_validator

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError, InvalidLightCurveError
from astroray.lightcurves.bands import SURVEY_BANDS, UNKNOWN_BAND, band_indices, resolve_bands
from astroray.records import Alert, LightCurve, normalize_band

__all__ = [
    "PreprocessConfig",
    "RaggedLightCurves",
    "ragged_from_lightcurves",
    "ragged_from_table",
    "ragged_from_alerts",
    "as_ragged",
]


class PreprocessConfig(AstrorayConfig):
    """How raw light curves are cleaned into a :class:`RaggedLightCurves` batch.

    Attributes
    ----------
    bands : tuple of str, or "lsst" / "ztf"
        The band vocabulary (see :mod:`astroray.lightcurves.bands`).
    unknown_bands : {"drop", "raise"}
        What happens to points in bands outside the vocabulary.
    invalid_points : {"drop", "raise"}
        What happens to points with an unusable flux or error (see the module
        docstring).
    upper_limits : {"drop", "zero_flux"}
        Drop upper limits (NaN flux) or keep them as zero flux with their error.
    duplicates : {"keep", "merge", "raise"}
        Points of one object at the same MJD in the same band.
    detections_only : bool
        Keep detections only.
    """

    bands: tuple[str, ...] = SURVEY_BANDS["lsst"]
    unknown_bands: Literal["drop", "raise"] = "drop"
    invalid_points: Literal["drop", "raise"] = "drop"
    upper_limits: Literal["drop", "zero_flux"] = "drop"
    duplicates: Literal["keep", "merge", "raise"] = "keep"
    detections_only: bool = False

    @field_validator("bands", mode="before")
    @classmethod
    def _bands(cls, value):
        return resolve_bands(value)


@dataclass
class RaggedLightCurves:
    """Cleaned light curves of many objects as flat arrays and offsets.

    Attributes
    ----------
    object_ids : ndarray (n,) of str
        One per row; rows built from alerts repeat an object's id.
    offsets : ndarray (n + 1,) int64
        Row ``i`` holds points ``offsets[i]:offsets[i + 1]``.
    mjd, flux, flux_err : ndarray (n_points,) float64
        Time (MJD), flux and its error in nJy.
    band : ndarray (n_points,) int16
        Index into ``bands``.
    detected : ndarray (n_points,) bool
    bands : tuple of str
        The band vocabulary.
    labels : ndarray (n,) of object, optional
        Class labels where known (None entries where not).
    alert_ids : ndarray (n,) of str, optional
        For rows built per alert, the alert each row is the history of.
    n_dropped : ndarray (n,) int64
        Points removed by cleaning, per row.
    """

    object_ids: np.ndarray
    offsets: np.ndarray
    mjd: np.ndarray
    band: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    detected: np.ndarray
    bands: tuple[str, ...]
    labels: np.ndarray | None = None
    alert_ids: np.ndarray | None = None
    n_dropped: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        n = len(self.object_ids)
        if self.n_dropped is None:
            self.n_dropped = np.zeros(n, dtype=np.int64)
        if self.offsets.shape != (n + 1,) or self.offsets[-1] != self.mjd.shape[0]:
            raise InvalidLightCurveError(f"offsets of shape {self.offsets.shape} do not fit {n} rows and "
                                         f"{self.mjd.shape[0]} points")

    def __len__(self) -> int:
        return int(len(self.object_ids))

    @property
    def lengths(self) -> np.ndarray:
        """Points per row."""
        return np.diff(self.offsets)

    @property
    def n_points(self) -> int:
        return int(self.offsets[-1])

    def row_index(self) -> np.ndarray:
        """The row of each point, (n_points,) int64."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def first_detection_mjd(self) -> np.ndarray:
        """MJD of each row's first detection (NaN where a row has none)."""
        out = np.full(len(self), np.nan)
        det = np.flatnonzero(self.detected)
        if det.size:
            rows = self.row_index()[det]
            first_rows, first_pos = np.unique(rows, return_index=True)
            out[first_rows] = self.mjd[det[first_pos]]
        return out

    def first_mjd(self) -> np.ndarray:
        """MJD of each row's first point (NaN for empty rows)."""
        out = np.full(len(self), np.nan)
        nonempty = self.lengths > 0
        out[nonempty] = self.mjd[self.offsets[:-1][nonempty]]
        return out

    def take(self, rows: Sequence[int] | np.ndarray) -> "RaggedLightCurves":
        """The given rows, in the given order (a copy)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        rows = rows % max(len(self), 1)
        lengths = self.lengths[rows]
        index = _gather_index(self.offsets[:-1][rows], lengths)
        return self._with(rows, lengths, index)

    def select_points(self, keep: np.ndarray) -> "RaggedLightCurves":
        """Only the points where ``keep`` (n_points,) is True; every row stays (possibly empty)."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self.n_points,):
            raise InvalidLightCurveError(f"keep mask has shape {keep.shape}, expected ({self.n_points},)")
        lengths = np.bincount(self.row_index()[keep], minlength=len(self)).astype(np.int64)
        out = self._with(np.arange(len(self)), lengths, np.flatnonzero(keep))
        return out

    def _with(self, rows: np.ndarray, lengths: np.ndarray, index: np.ndarray) -> "RaggedLightCurves":
        return RaggedLightCurves(
            object_ids=self.object_ids[rows], offsets=_offsets(lengths), mjd=self.mjd[index],
            band=self.band[index], flux=self.flux[index], flux_err=self.flux_err[index],
            detected=self.detected[index], bands=self.bands,
            labels=None if self.labels is None else self.labels[rows],
            alert_ids=None if self.alert_ids is None else self.alert_ids[rows],
            n_dropped=self.n_dropped[rows])

    def lightcurve(self, i: int) -> LightCurve:
        """Row ``i`` as a :class:`~astroray.records.LightCurve` (band names from the vocabulary)."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        names = np.asarray(self.bands)[self.band[a:b]] if b > a else np.array([], dtype=str)
        meta = {} if self.alert_ids is None else {"alert_id": str(self.alert_ids[i])}
        return LightCurve(str(self.object_ids[i]), self.mjd[a:b].copy(), names, self.flux[a:b].copy(),
                          self.flux_err[a:b].copy(), self.detected[a:b].copy(),
                          label=None if self.labels is None else self.labels[i], meta=meta)

    def to_lightcurves(self) -> list[LightCurve]:
        return [self.lightcurve(i) for i in range(len(self))]


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _gather_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for each start and length, without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    out_offsets = _offsets(lengths)
    within = np.arange(total, dtype=np.int64) - np.repeat(out_offsets[:-1], lengths)
    return np.repeat(starts.astype(np.int64), lengths) + within


# --------------------------------------------------------------------------- builders


def ragged_from_lightcurves(lightcurves: Iterable[LightCurve], config: PreprocessConfig | None = None
                            ) -> RaggedLightCurves:
    """Clean and flatten :class:`~astroray.records.LightCurve` records.

    Parameters
    ----------
    lightcurves : iterable of LightCurve
    config : PreprocessConfig, optional

    Raises
    ------
    InvalidLightCurveError
        An input is not a LightCurve, or a point breaks a rule set to ``"raise"``.
    """
    config = _check_config(config)
    lcs = list(lightcurves)
    for i, lc in enumerate(lcs):
        if not isinstance(lc, LightCurve):
            raise InvalidLightCurveError(f"item {i} is a {type(lc).__name__}, not a LightCurve")
    counts = np.array([len(lc) for lc in lcs], dtype=np.int64)

    def cat(name, dtype):
        parts = [np.asarray(getattr(lc, name), dtype=dtype) for lc in lcs]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    return _build(np.array([lc.object_id for lc in lcs], dtype=object), counts, cat("mjd", np.float64),
                  cat("band", str), cat("flux", np.float64), cat("flux_err", np.float64), cat("detected", bool),
                  np.array([lc.label for lc in lcs], dtype=object), None, config)


def ragged_from_table(table: pa.Table | pa.RecordBatch | Any, config: PreprocessConfig | None = None
                      ) -> RaggedLightCurves:
    """Clean and flatten a :data:`~astroray.records.LIGHTCURVE_SCHEMA` table without per-object objects.

    Parameters
    ----------
    table : pyarrow.Table, RecordBatch or pandas.DataFrame
        Columns ``object_id, mjd, band, flux, flux_err, detected`` (lists per
        row) and optionally ``label``; null fluxes are upper limits.
    config : PreprocessConfig, optional

    Raises
    ------
    InvalidLightCurveError
        A column is missing, or a row's list columns differ in length.
    """
    config = _check_config(config)
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    elif not isinstance(table, pa.Table):
        try:
            table = pa.Table.from_pandas(table, preserve_index=False)
        except Exception as exc:  # noqa: BLE001 - anything not table-like
            raise InvalidLightCurveError(f"expected an Arrow table or pandas DataFrame, got "
                                         f"{type(table).__name__} ({exc})") from None
    need = ("object_id", "mjd", "band", "flux", "flux_err", "detected")
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise InvalidLightCurveError(f"light-curve table lacks column(s) {', '.join(missing)} "
                                     f"(has {', '.join(table.column_names)})")
    counts = None
    flat = {}
    for name in need[1:]:
        col = table.column(name).combine_chunks()
        lengths = np.asarray(col.value_lengths().fill_null(0), dtype=np.int64)
        if counts is None:
            counts = lengths
        elif not np.array_equal(lengths, counts):
            bad = int(np.flatnonzero(lengths != counts)[0])
            raise InvalidLightCurveError(f"row {bad}: column {name} has {lengths[bad]} values but mjd has "
                                         f"{counts[bad]}", source=str(table.column('object_id')[bad]))
        values = col.flatten()
        flat[name] = values.to_numpy(zero_copy_only=False)
    ids = np.array([str(v) for v in table.column("object_id").to_pylist()], dtype=object)
    labels = (np.array(table.column("label").to_pylist(), dtype=object) if "label" in table.column_names
              else np.full(len(ids), None, dtype=object))
    assert counts is not None
    return _build(ids, counts, flat["mjd"].astype(np.float64), flat["band"].astype(str),
                  flat["flux"].astype(np.float64), flat["flux_err"].astype(np.float64),
                  flat["detected"].astype(bool), labels, None, config)


def ragged_from_alerts(alerts: Iterable, config: PreprocessConfig | None = None, *,
                       per: Literal["alert", "object"] = "alert") -> RaggedLightCurves:
    """Light curves from alerts: each alert as it arrived, or each object's merged history.

    Parameters
    ----------
    alerts : iterable of :class:`~astroray.records.Alert`
    config : PreprocessConfig, optional
    per : {"alert", "object"}
        ``"alert"``: one row per alert, its history plus its own candidate
        (what a broker knew when the alert arrived; ``alert_ids`` says which);
        ``"object"``: one row per object, all its alerts merged
        (:func:`~astroray.io.lightcurves.lightcurves_from_alerts`).
    """
    from astroray.io.lightcurves import lightcurves_from_alerts

    config = _check_config(config)
    alerts = list(alerts)
    if per == "object":
        return ragged_from_lightcurves(lightcurves_from_alerts(alerts), config)
    if per != "alert":
        raise InvalidLightCurveError(f"per must be 'alert' or 'object', got {per!r}")
    lcs = [lightcurves_from_alerts([a])[0] for a in alerts]
    out = ragged_from_lightcurves(lcs, config)
    out.alert_ids = np.array([str(a.alert_id) for a in alerts], dtype=object)
    return out


def as_ragged(data, config: PreprocessConfig | None = None) -> RaggedLightCurves:
    """Whatever light-curve input this package takes, as a :class:`RaggedLightCurves`.

    A :class:`RaggedLightCurves` is returned as is when its band vocabulary
    matches ``config.bands``; a single LightCurve, a list of them, a list of
    alerts (one row per alert) or an Arrow table / DataFrame is cleaned by
    ``config``.

    Raises
    ------
    InvalidLightCurveError
        Unknown input type, or a ragged batch with another vocabulary.
    """
    config = _check_config(config)
    if isinstance(data, RaggedLightCurves):
        if tuple(data.bands) != tuple(config.bands):
            raise InvalidLightCurveError(f"batch has bands {data.bands} but the config says {config.bands}; "
                                         "build it with the same config")
        return data
    if isinstance(data, LightCurve):
        return ragged_from_lightcurves([data], config)
    if isinstance(data, (pa.Table, pa.RecordBatch)) or type(data).__name__ == "DataFrame":
        return ragged_from_table(data, config)
    if isinstance(data, (list, tuple)):
        if data and all(isinstance(x, Alert) for x in data):
            return ragged_from_alerts(data, config)
        return ragged_from_lightcurves(data, config)
    raise InvalidLightCurveError(f"cannot make light curves from a {type(data).__name__}; pass LightCurve "
                                 "records, alerts, an Arrow table or a RaggedLightCurves")


def _check_config(config):
    if config is None:
        return PreprocessConfig()
    if not isinstance(config, PreprocessConfig):
        raise InvalidLightCurveError(f"config must be a PreprocessConfig (or subclass), got {type(config).__name__}")
    return config


def _raise_for(rows: np.ndarray, bad: np.ndarray, ids: np.ndarray, what: str, fix: str):
    first = int(rows[np.flatnonzero(bad)[0]])
    n_bad = int(bad[rows == first].sum())
    raise InvalidLightCurveError(f"{n_bad} point(s) {what}; {fix}", source=str(ids[first]))


def _build(ids: np.ndarray, counts: np.ndarray, mjd: np.ndarray, band_names: np.ndarray, flux: np.ndarray,
           flux_err: np.ndarray, detected: np.ndarray, labels: np.ndarray | None, alert_ids, config
           ) -> RaggedLightCurves:
    n = len(ids)
    rows = np.repeat(np.arange(n, dtype=np.int64), counts)
    if not np.all(np.isfinite(mjd)):
        _raise_for(rows, ~np.isfinite(mjd), ids, "have a NaN or infinite MJD", "times must be finite")
    try:
        band = band_indices(band_names, config.bands)
    except InvalidInputError as exc:  # a band name no survey uses: say which object has it
        bad = np.array([_unknown_name(b) for b in band_names.astype(str)], dtype=bool)
        first = int(rows[np.flatnonzero(bad)[0]]) if bad.any() else 0
        raise InvalidLightCurveError(exc.reason, source=str(ids[first]) if n else None) from None
    keep = np.ones(len(mjd), dtype=bool)

    unknown = band == UNKNOWN_BAND
    if unknown.any() and config.unknown_bands == "raise":
        _raise_for(rows, unknown, ids, f"in bands outside the vocabulary {''.join(config.bands)}",
                   "pass unknown_bands='drop' to drop them or widen bands=")
    keep &= ~unknown

    with np.errstate(invalid="ignore"):
        err_ok = np.isfinite(flux_err) & (flux_err > 0)
    upper = ~detected & np.isnan(flux) & err_ok
    invalid = ~(err_ok & np.isfinite(flux)) & ~upper
    if (invalid & keep).any() and config.invalid_points == "raise":
        _raise_for(rows, invalid & keep, ids, "have a NaN/inf flux or a NaN/inf/non-positive flux_err",
                   "pass invalid_points='drop' to drop them")
    keep &= ~invalid
    if config.upper_limits == "drop":
        keep &= ~upper
    else:
        flux = np.where(upper, 0.0, flux)
    if config.detections_only:
        keep &= detected

    dropped = np.bincount(rows[~keep], minlength=n).astype(np.int64)
    idx = np.flatnonzero(keep)
    rows, mjd, band, flux, flux_err, detected = rows[idx], mjd[idx], band[idx], flux[idx], flux_err[idx], detected[idx]
    order = np.lexsort((band, mjd, rows))
    rows, mjd, band, flux, flux_err, detected = (rows[order], mjd[order], band[order], flux[order],
                                                 flux_err[order], detected[order])

    if len(rows) > 1:
        dup = np.zeros(len(rows), dtype=bool)
        dup[1:] = (rows[1:] == rows[:-1]) & (mjd[1:] == mjd[:-1]) & (band[1:] == band[:-1])
        if dup.any() and config.duplicates == "raise":
            _raise_for(rows, dup, ids, "repeat an earlier point's MJD and band",
                       "pass duplicates='keep' or 'merge'")
        if dup.any() and config.duplicates == "merge":
            starts = np.flatnonzero(~dup)
            w = 1.0 / flux_err ** 2
            sw = np.add.reduceat(w, starts)
            flux = np.add.reduceat(w * flux, starts) / sw
            flux_err = 1.0 / np.sqrt(sw)
            detected = np.logical_or.reduceat(detected, starts)
            merged_away = np.bincount(rows[dup], minlength=n)
            dropped = dropped + merged_away
            rows, mjd, band = rows[starts], mjd[starts], band[starts]
    lengths = np.bincount(rows, minlength=n).astype(np.int64)
    return RaggedLightCurves(object_ids=np.asarray(ids, dtype=object), offsets=_offsets(lengths),
                             mjd=np.ascontiguousarray(mjd, dtype=np.float64), band=band.astype(np.int16),
                             flux=np.ascontiguousarray(flux, dtype=np.float64),
                             flux_err=np.ascontiguousarray(flux_err, dtype=np.float64),
                             detected=np.ascontiguousarray(detected, dtype=bool), bands=tuple(config.bands),
                             labels=labels, alert_ids=alert_ids, n_dropped=dropped)


def _unknown_name(name: str) -> bool:
    try:
        normalize_band(name)
        return False
    except InvalidInputError:
        return True
