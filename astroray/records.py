"""The data model: records that cross stage and node boundaries as Arrow.

* :class:`Exposure` -- a calibrated CCD image with variance, mask, PSF and WCS.
* :class:`LightCurve` -- one object's photometry, detections and non-detections.
* :class:`Alert` -- one difference-image candidate, its history and cutouts.
* Catalogs are plain Arrow/pandas tables with SEP column names (see
  :data:`CATALOG_SCHEMA`, :data:`CATALOG_COLUMNS`).

Fluxes are in nanojansky (nJy, as Rubin publishes them); AB magnitudes map
through ``mag = 31.4 - 2.5 log10(flux / nJy)``.  Band names are normalised to
one lower-case letter (``ugrizy``); ZTF's ``R``/``fid=2`` becomes ``r``.
"""
from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from astroray.errors import InvalidInputError, InvalidLightCurveError
from astroray.kernels.catalog import CATALOG_FIELDS, SCORE_FIELDS, catalog_dtype

__all__ = [
    "MaskBits",
    "Exposure",
    "LightCurve",
    "Alert",
    "AB_NJY_ZEROPOINT",
    "mag_to_flux",
    "flux_to_mag",
    "normalize_band",
    "CATALOG_COLUMNS",
    "CATALOG_SCHEMA",
    "LIGHTCURVE_SCHEMA",
    "ALERT_SCHEMA",
    "ALERT_OPTIONAL_COLUMNS",
    "lightcurves_to_table",
    "table_to_lightcurves",
    "alerts_to_table",
    "table_to_alerts",
]

AB_NJY_ZEROPOINT = 31.4
"""AB magnitude of a 1 nJy source."""


class MaskBits(enum.IntFlag):
    """Bit flags of the Exposure mask plane."""

    BAD = 1  # dead/hot pixel or bad column
    SAT = 2  # saturated, or a bleed trail
    CR = 4  # cosmic ray
    EDGE = 8  # too close to the edge for full convolution
    NO_DATA = 16  # not observed, NaN in the input
    DETECTED = 32  # part of a detected source footprint


def mag_to_flux(mag, mag_err=None):
    """AB magnitude (and error) to flux in nJy (and error)."""
    mag = np.asarray(mag, dtype=np.float64)
    flux = 10.0 ** (-0.4 * (mag - AB_NJY_ZEROPOINT))
    if mag_err is None:
        return flux
    return flux, np.abs(flux) * np.asarray(mag_err, dtype=np.float64) * (math.log(10.0) / 2.5)


def flux_to_mag(flux, flux_err=None):
    """Flux in nJy (and error) to AB magnitude (and error); NaN where flux <= 0."""
    flux = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, AB_NJY_ZEROPOINT - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)
        if flux_err is None:
            return mag
        err = np.where(flux > 0, (2.5 / math.log(10.0)) * np.asarray(flux_err, np.float64) / flux, np.nan)
    return mag, err


_BANDS = {
    "u": "u", "g": "g", "r": "r", "i": "i", "z": "z", "y": "y",
    "R": "r", "G": "g", "I": "i", "U": "u", "Z": "z", "Y": "y",
    "zg": "g", "zr": "r", "zi": "i", "ztfg": "g", "ztfr": "r", "ztfi": "i",
    "ztf_g": "g", "ztf_r": "r", "ztf_i": "i",
    "lsstu": "u", "lsstg": "g", "lsstr": "r", "lssti": "i", "lsstz": "z", "lssty": "y",
    "1": "g", "2": "r", "3": "i",  # ZTF filter ids
}


def normalize_band(band: Any) -> str:
    """Normalise a band name or ZTF filter id to one of ``ugrizy``.

    Raises
    ------
    InvalidInputError
        The band is not recognised.
    """
    key = str(band).strip()
    if isinstance(band, (int, np.integer)) or key.isdigit():
        key = str(int(key))
    out = _BANDS.get(key) or _BANDS.get(key.lower())
    if out is None:
        raise InvalidInputError(f"unknown band {band!r} (expected one of ugrizy, ZTF g/R/i or fid 1-3)")
    return out


# --------------------------------------------------------------------------- Exposure


@dataclass
class Exposure:
    """One calibrated CCD exposure.

    Attributes
    ----------
    image, variance : ndarray (H, W) float32
        Background-subtracted or raw pixels (see ``meta['background_subtracted']``)
        and their per-pixel variance.
    mask : ndarray (H, W) uint32
        :class:`MaskBits` flags.
    psf : ndarray (h, w) float32
        PSF stamp, odd-sized, centred, summing to 1.
    header : str
        FITS header cards (including the WCS) as a string.
    meta : dict
        survey, visit, ccd, band, mjd, exptime, gain, saturation, zero_point, ...
    """

    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    psf: np.ndarray
    header: str = ""
    meta: dict = field(default_factory=dict)

    META_KEYS = ("exposure_id", "survey", "visit", "ccd", "band", "mjd", "exptime", "gain",
                 "saturation", "zero_point")

    def __post_init__(self):
        self.image = np.asarray(self.image, dtype=np.float32)
        self.variance = np.asarray(self.variance, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=np.uint32)
        self.psf = np.asarray(self.psf, dtype=np.float32)
        self.validate()

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape  # type: ignore[return-value]

    @property
    def exposure_id(self) -> str:
        return str(self.meta.get("exposure_id", ""))

    def validate(self) -> None:
        """Check shapes and finiteness; raise :class:`InvalidInputError` naming the problem."""
        src = self.meta.get("exposure_id") or None
        if self.image.ndim != 2:
            raise InvalidInputError(f"image must be 2-D, got shape {self.image.shape}", source=src)
        for name in ("variance", "mask"):
            arr = getattr(self, name)
            if arr.shape != self.image.shape:
                raise InvalidInputError(
                    f"{name} shape {arr.shape} does not match image shape {self.image.shape}", source=src)
        if self.psf.ndim != 2 or self.psf.shape[0] % 2 == 0 or self.psf.shape[1] % 2 == 0:
            raise InvalidInputError(f"PSF stamp must be 2-D with odd sides, got {self.psf.shape}", source=src)
        if not np.isfinite(self.image).any():
            raise InvalidInputError("image has no finite pixels (all NaN/inf)", source=src)

    def to_row(self) -> dict[str, Any]:
        """A flat dict for Arrow / Ray Data (arrays stay arrays)."""
        row = {k: self.meta.get(k) for k in self.META_KEYS}
        row.update(image=self.image, variance=self.variance, mask=self.mask, psf=self.psf,
                   header=self.header)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Exposure":
        meta = {k: _py(row[k]) for k in cls.META_KEYS if k in row and row[k] is not None}
        return cls(image=np.asarray(row["image"]), variance=np.asarray(row["variance"]),
                   mask=np.asarray(row["mask"]), psf=np.asarray(row["psf"]),
                   header=str(row.get("header") or ""), meta=meta)


def _py(value):
    return value.item() if isinstance(value, np.generic) else value


# --------------------------------------------------------------------------- LightCurve


@dataclass
class LightCurve:
    """One object's photometry in one record.

    Detections and non-detections (upper limits, forced photometry below
    threshold) live in the same arrays, told apart by ``detected``.  For an
    upper limit without forced photometry ``flux`` is NaN and ``flux_err`` is
    the 5-sigma limit divided by 5.
    """

    object_id: str
    mjd: np.ndarray
    band: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    detected: np.ndarray
    survey: str = ""
    label: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.object_id = str(self.object_id)
        self.mjd = np.asarray(self.mjd, dtype=np.float64)
        self.band = np.asarray(self.band, dtype=object).astype(str)
        self.flux = np.asarray(self.flux, dtype=np.float64)
        self.flux_err = np.asarray(self.flux_err, dtype=np.float64)
        self.detected = np.asarray(self.detected, dtype=bool)
        n = self.mjd.shape[0]
        for name in ("band", "flux", "flux_err", "detected"):
            if getattr(self, name).shape != (n,):
                raise InvalidLightCurveError(
                    f"column {name} has shape {getattr(self, name).shape}, expected ({n},) like mjd",
                    source=self.object_id)
        if n and not np.all(np.isfinite(self.mjd)):
            raise InvalidLightCurveError("mjd contains NaN or inf", source=self.object_id)
        if n > 1 and np.any(np.diff(self.mjd) < 0):
            order = np.argsort(self.mjd, kind="stable")
            for name in ("mjd", "band", "flux", "flux_err", "detected"):
                setattr(self, name, getattr(self, name)[order])

    def __len__(self) -> int:
        return int(self.mjd.shape[0])

    @property
    def mag(self) -> np.ndarray:
        return flux_to_mag(self.flux)

    @property
    def mag_err(self) -> np.ndarray:
        return flux_to_mag(self.flux, self.flux_err)[1]

    @property
    def n_detections(self) -> int:
        return int(self.detected.sum())

    def detections(self) -> "LightCurve":
        """Only the detected points."""
        return self.select(self.detected)

    def select(self, keep: np.ndarray) -> "LightCurve":
        return LightCurve(self.object_id, self.mjd[keep], self.band[keep], self.flux[keep],
                          self.flux_err[keep], self.detected[keep], survey=self.survey,
                          label=self.label, meta=dict(self.meta))

    @classmethod
    def from_mags(cls, object_id, mjd, band, mag, mag_err, *, detected=None, **kw) -> "LightCurve":
        """Build from AB magnitudes (bands normalised)."""
        flux, flux_err = mag_to_flux(mag, mag_err)
        bands = [normalize_band(b) for b in np.asarray(band)]
        if detected is None:
            detected = np.isfinite(flux)
        return cls(object_id, mjd, bands, flux, flux_err, detected, **kw)


LIGHTCURVE_SCHEMA = pa.schema([
    ("object_id", pa.string()),
    ("survey", pa.string()),
    ("label", pa.string()),
    ("mjd", pa.list_(pa.float64())),
    ("band", pa.list_(pa.string())),
    ("flux", pa.list_(pa.float64())),
    ("flux_err", pa.list_(pa.float64())),
    ("detected", pa.list_(pa.bool_())),
])


def _lc_columns(lcs, prefix=""):
    return {
        prefix + "mjd": [lc.mjd.tolist() for lc in lcs],
        prefix + "band": [lc.band.tolist() for lc in lcs],
        prefix + "flux": [_nan_to_none(lc.flux) for lc in lcs],
        prefix + "flux_err": [_nan_to_none(lc.flux_err) for lc in lcs],
        prefix + "detected": [lc.detected.tolist() for lc in lcs],
    }


def _nan_to_none(a):  # Parquet keeps NaN fine; nulls make the non-detections explicit
    return [None if not math.isfinite(v) else v for v in a.tolist()]


def _fill(v):
    return np.array([np.nan if x is None else x for x in v], dtype=np.float64)


def lightcurves_to_table(lcs: list[LightCurve]) -> pa.Table:
    """Light curves as an Arrow table (one row per object, list columns)."""
    cols = {"object_id": [lc.object_id for lc in lcs], "survey": [lc.survey for lc in lcs],
            "label": [lc.label for lc in lcs], **_lc_columns(lcs)}
    return pa.table(cols, schema=LIGHTCURVE_SCHEMA)


def table_to_lightcurves(table: pa.Table) -> list[LightCurve]:
    """Inverse of :func:`lightcurves_to_table`."""
    out = []
    for r in table.to_pylist():
        out.append(LightCurve(r["object_id"], r["mjd"] or [], r["band"] or [], _fill(r["flux"] or []),
                              _fill(r["flux_err"] or []), r["detected"] or [], survey=r.get("survey") or "",
                              label=r.get("label")))
    return out


# --------------------------------------------------------------------------- Alert


@dataclass
class Alert:
    """One difference-image candidate with its history and cutouts.

    The fields are the subset shared by ZTF and LSST alert schemas; ``scores``
    holds the survey's or our own classifier scores (``rb``, ``drb``,
    ``reliability``, ``real_bogus``, ...).
    """

    alert_id: str
    object_id: str
    survey: str
    mjd: float
    ra: float
    dec: float
    band: str
    flux: float
    flux_err: float
    history: LightCurve
    scores: dict = field(default_factory=dict)
    cutout_science: np.ndarray | None = None
    cutout_reference: np.ndarray | None = None
    cutout_difference: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def snr(self) -> float:
        return float(self.flux / self.flux_err) if self.flux_err and self.flux_err > 0 else float("nan")

    @property
    def mag(self) -> float:
        return float(flux_to_mag(abs(self.flux)))


_CUTOUTS = ("science", "reference", "difference")

ALERT_SCHEMA = pa.schema([
    ("alert_id", pa.string()),
    ("object_id", pa.string()),
    ("survey", pa.string()),
    ("mjd", pa.float64()),
    ("ra", pa.float64()),
    ("dec", pa.float64()),
    ("band", pa.string()),
    ("flux", pa.float64()),
    ("flux_err", pa.float64()),
    ("snr", pa.float64()),
    ("scores", pa.map_(pa.string(), pa.float64())),
    ("hist_mjd", pa.list_(pa.float64())),
    ("hist_band", pa.list_(pa.string())),
    ("hist_flux", pa.list_(pa.float64())),
    ("hist_flux_err", pa.list_(pa.float64())),
    ("hist_detected", pa.list_(pa.bool_())),
    *[(f"cutout_{c}", pa.list_(pa.float32())) for c in _CUTOUTS],
    *[(f"cutout_{c}_shape", pa.list_(pa.int32())) for c in _CUTOUTS],
    ("meta_json", pa.string()),
])
ALERT_OPTIONAL_COLUMNS = ("meta_json",)
"""Columns of :data:`ALERT_SCHEMA` that tables written before they existed may lack."""


def alerts_to_table(alerts: list[Alert]) -> pa.Table:
    """Alerts as an Arrow table matching :data:`ALERT_SCHEMA` (cutouts flattened with shapes)."""
    cols: dict[str, list] = {name: [] for name in ALERT_SCHEMA.names}
    for a in alerts:
        for key in ("alert_id", "object_id", "survey", "band"):
            cols[key].append(str(getattr(a, key)))
        for key in ("mjd", "ra", "dec", "flux", "flux_err"):
            cols[key].append(float(getattr(a, key)))
        cols["snr"].append(a.snr)
        cols["scores"].append([(k, float(v)) for k, v in a.scores.items()])
        for key, values in _lc_columns([a.history], prefix="hist_").items():
            cols[key].append(values[0])
        for c in _CUTOUTS:
            arr = getattr(a, f"cutout_{c}")
            cols[f"cutout_{c}"].append(None if arr is None else np.asarray(arr, np.float32).ravel().tolist())
            cols[f"cutout_{c}_shape"].append(None if arr is None else list(np.shape(arr)))
        # The survey's own context (ZTF's sgscore1/distpsnr1, Rubin's diaObject, SNANA groups) as JSON:
        # brokers filter on it, and a map column cannot hold its nested, mixed-type values.
        cols["meta_json"].append(json.dumps(_jsonable(a.meta), allow_nan=False) if a.meta else None)
    return pa.table(cols, schema=ALERT_SCHEMA)


def _jsonable(value):
    """``value`` with NumPy scalars and arrays as Python values, NaN/inf as None and bytes dropped (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items() if not isinstance(v, (bytes, bytearray))}
    if isinstance(value, (set, frozenset)):
        value = sorted(value, key=str)
    if isinstance(value, (list, tuple, np.ndarray)):
        items = value.tolist() if isinstance(value, np.ndarray) else value
        return [_jsonable(v) for v in items if not isinstance(v, (bytes, bytearray))]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def table_to_alerts(table: pa.Table) -> list[Alert]:
    """Inverse of :func:`alerts_to_table`."""
    out = []
    for r in table.to_pylist():
        hist = LightCurve(r["object_id"], r["hist_mjd"] or [], r["hist_band"] or [], _fill(r["hist_flux"] or []),
                          _fill(r["hist_flux_err"] or []), r["hist_detected"] or [], survey=r["survey"])
        cut = {}
        for c in _CUTOUTS:
            v, shape = r[f"cutout_{c}"], r[f"cutout_{c}_shape"]
            cut[f"cutout_{c}"] = None if v is None else np.asarray(v, np.float32).reshape(shape)
        meta = json.loads(r["meta_json"]) if r.get("meta_json") else {}
        out.append(Alert(r["alert_id"], r["object_id"], r["survey"], r["mjd"], r["ra"], r["dec"], r["band"],
                         r["flux"], r["flux_err"], hist, scores=dict(r["scores"] or []), meta=meta, **cut))
    return out


def _catalog_field(name: str, arrow_type=None) -> pa.Field:
    if arrow_type is None:
        arrow_type = pa.int64() if catalog_dtype(name) == np.int64 else pa.float64()
    return pa.field(name, arrow_type)


CATALOG_SCHEMA = pa.schema(
    [_catalog_field("pair_id", pa.string()), _catalog_field("exposure_id", pa.string())]
    + [_catalog_field(c) for c in ("x", "y", "ra", "dec", "flux", "flux_err", "snr", "a", "b", "theta", "peak",
                                   "npix", "flag")]
    + [_catalog_field("sign", pa.int8())]
    # added later, so at the end: older part files are a prefix of this schema
    + [_catalog_field("x_iso", pa.float64()), _catalog_field("y_iso", pa.float64()),
       _catalog_field("on_streak", pa.bool_()), _catalog_field("under_streak", pa.bool_())]
    + [_catalog_field(c) for c in SCORE_FIELDS])
"""The Catalog record: the image pipeline's catalog part files (one row per candidate).

Measurement columns have SEP's names and the dtypes of :mod:`astroray.kernels.catalog`;
``flux``/``flux_err`` there are PSF photometry on D, ``snr`` the score at the peak,
``x``/``y`` the score's sub-pixel peak (``x_iso``/``y_iso`` the isophotal barycentre),
``sign`` +1 for brightening and -1 for fading changes, ``rb`` the real/bogus model's real probability
(:data:`~astroray.kernels.catalog.SCORE_FIELDS`; null where the pipeline had no scorer).
"""

CATALOG_COLUMNS = tuple(f.name for f in CATALOG_SCHEMA if f.name in CATALOG_FIELDS)
"""The measurement columns every catalog carries, extraction catalogs included (SEP names, plus ra, dec, snr)."""
