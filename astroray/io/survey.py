"""Survey FITS images in: any telescope's frame with a WCS, as the pieces of an :class:`~astroray.records.Exposure`.

:func:`read_survey_image` (or the configure-once :class:`SurveyReader`)
reads one image and what belongs to it:

* the image HDU by extension name or index (default: ``IMAGE``/``SCI`` or the
  first HDU holding 2-D data), single- or multi-extension, tile-compressed
  (``CompImageHDU``, ``.fz``) or gzipped (by content, whatever the name);
* its noise from a variance, inverse-variance, weight or sigma extension or
  companion file, or, with none, estimated from the image: the sky's mesh RMS
  squared plus the sources' Poisson variance through the gain;
* its mask from a mask/DQ extension or companion file (ZTF's ``mskimg`` beside
  a ``sciimg``), with the survey's bits mapped onto
  :class:`~astroray.records.MaskBits` (LSST planes from the ``MP_*`` cards,
  ZTF's documented bits, astroray's own, or "any nonzero bit is BAD");
  NaN pixels add NO_DATA and pixels at or above the saturation level add SAT;
* gain, saturation, read noise, exposure time, zero point, band and MJD from
  the usual header keywords, each overridable in :class:`SurveyReadConfig`.

What comes back is a :class:`SurveyImage`: everything an ``Exposure`` holds
except the PSF, which :class:`astroray.imaging.psf.PSFEstimator` measures from
the image's own stars (``SurveyImage.to_exposure(psf)`` completes it).  An
``Exposure`` without a PSF cannot exist, so a frame nobody measured a PSF for
cannot reach the differencer by accident.

Zero points: astroray's ``meta['zero_point']`` is the AB magnitude giving one
count per second.  Survey headers usually give the magnitude of one count in
the image as it is (ZTF's ``MAGZP``); those are converted with the exposure
time (``zero_point_convention``).
"""
from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, Mapping

import numpy as np
from pydantic import Field, field_validator

from astroray.config import AstrorayConfig
from astroray.errors import InvalidFITSError, InvalidInputError
from astroray.imaging.background import BackgroundConfig
from astroray.records import Exposure, MaskBits, normalize_band

__all__ = [
    "SurveyReadConfig",
    "SurveyImage",
    "SurveyReader",
    "read_survey_image",
    "ZTF_MASK_BITS",
    "LSST_MASK_PLANES",
    "map_mask_bits",
]


ZTF_MASK_BITS: dict[int, int] = {
    0: MaskBits.BAD,       # aircraft/satellite track
    1: MaskBits.DETECTED,  # source found by SExtractor
    2: MaskBits.BAD,       # low responsivity
    3: MaskBits.BAD,       # high responsivity
    4: MaskBits.BAD,       # noisy
    5: MaskBits.BAD,       # optical ghost
    6: MaskBits.SAT,       # charge spillage beside a saturated star
    7: MaskBits.BAD,       # diffraction spike
    8: MaskBits.SAT,       # saturated
    9: MaskBits.BAD,       # dead
    10: MaskBits.NO_DATA,  # NaN (no data)
    11: MaskBits.DETECTED,  # source found by PSF fitting
    12: MaskBits.BAD,      # bright-star halo
}
"""ZTF ``mskimg`` bit index -> :class:`MaskBits` (ZTF's science-image mask bits; 6141 = its "bad" set)."""

LSST_MASK_PLANES: dict[str, int] = {
    "BAD": MaskBits.BAD, "SAT": MaskBits.SAT, "INTRP": MaskBits.BAD, "CR": MaskBits.CR,
    "EDGE": MaskBits.EDGE, "DETECTED": MaskBits.DETECTED, "DETECTED_NEGATIVE": 0, "SUSPECT": 0,
    "NO_DATA": MaskBits.NO_DATA, "UNMASKEDNAN": MaskBits.NO_DATA, "STREAK": MaskBits.BAD,
    "SAT_TEMPLATE": MaskBits.SAT, "SENSOR_EDGE": MaskBits.EDGE, "VIGNETTED": MaskBits.NO_DATA,
    "CROSSTALK": 0, "NOT_DEBLENDED": 0, "CLIPPED": 0, "INEXACT_PSF": 0, "BRIGHT_OBJECT": 0,
}
"""LSST (afw) mask plane name -> :class:`MaskBits`; bit positions come from the mask header's ``MP_*`` cards."""

_LSST_DEFAULT_PLANES = {"BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "EDGE": 4, "DETECTED": 5,
                        "DETECTED_NEGATIVE": 6, "SUSPECT": 7, "NO_DATA": 8}

# header keywords, in order of preference
_KEYS = {
    "gain": ("GAIN", "EGAIN", "GAINEFF", "CCDGAIN", "ARAWGAIN"),
    "saturation": ("SATURATE", "SATURATN", "SATURATION", "SATLEVEL", "SATURVAL", "SATUR"),
    "read_noise": ("RDNOISE", "READNOI", "READNOIS", "READNOISE", "RON", "RDNOISE1"),
    "exptime": ("EXPTIME", "EXPOSURE", "EXP_TIME", "ITIME"),
    "zero_point": ("MAGZP", "MAGZERO", "MAGZPT", "ZEROPT", "PHOTZP", "ZPMAG", "ZP"),
    "mjd": ("MJD-OBS", "MJD_OBS", "OBSMJD", "MJD", "MJDOBS"),
    "jd": ("OBSJD", "JD"),
    "band": ("BAND", "FILTER", "FILTNAME", "FILTER1", "FILTERID"),
    "exposure_id": ("EXPID", "EXPNUM", "EXPOSURE_ID", "FRAMENUM", "OBSID"),
    "ccd": ("CCD", "CCDNUM", "CCDID", "DETECTOR", "CHIPID"),
    "visit": ("VISIT", "EXPNUM"),
}
_IMAGE_NAMES = ("IMAGE", "SCI", "SCIENCE", "IMG")
_VARIANCE_NAMES = ("VARIANCE", "VAR")
_INVVAR_NAMES = ("IVAR", "INVVAR", "INVERSE_VARIANCE", "INV_VARIANCE")
_WEIGHT_NAMES = ("WEIGHT", "WHT", "WGT")
_SIGMA_NAMES = ("SIGMA", "ERR", "ERROR", "RMS", "NOISE", "UNCERT", "STDDEV")
_MASK_NAMES = ("MASK", "BPM", "DQ", "FLAGS", "BADPIX", "MSK")

MaskConvention = Literal["auto", "astroray", "lsst", "ztf", "nonzero"]
HDUKey = int | str | None


class SurveyReadConfig(AstrorayConfig):
    """Options of :class:`SurveyReader` (and :func:`read_survey_image`).

    Attributes
    ----------
    image_hdu, variance_hdu, inverse_variance_hdu, weight_hdu, sigma_hdu, mask_hdu : int, str or None
        Extension (index or EXTNAME) of each plane; None finds them by their
        usual EXTNAMEs (``IMAGE``/``SCI``; ``VARIANCE``; ``IVAR``;
        ``WEIGHT``/``WHT``; ``SIGMA``/``ERR``; ``MASK``/``BPM``/``DQ``),
        the image falling back to the first HDU holding 2-D data.
    companions : bool
        Look for companion files beside the image: ZTF's ``mskimg`` for a
        ``sciimg``, and ``<stem>.{mask,weight,var,ivar}.fits[.gz|.fz]``.
    weight_kind : {"inverse_variance", "relative"}
        What a weight map is: ``1 / variance`` (SWarp's MAP_WEIGHT), or only
        proportional to it, scaled here so the sky's noise matches the image's.
    mask_convention : {"auto", "astroray", "lsst", "ztf", "nonzero"}
        How mask bits map onto :class:`MaskBits`: "auto" reads LSST ``MP_*``
        cards, recognises ZTF masks (``mskimg`` files, ZTF headers) and
        astroray's own layout, else any nonzero value is BAD.
    gain, saturation, read_noise, exptime, zero_point, mjd : float or None
        Overrides of the header values (gain in e-/count; saturation in the
        image's counts; zero point as ``zero_point_convention`` says).
    band, survey, exposure_id : str or None
        Overrides of the header's (or detected) values.
    zero_point_convention : {"auto", "image", "per_second"}
        The header's zero point is the magnitude of one count in the image as
        it is ("image", ZTF's ``MAGZP``) or of one count per second
        ("per_second", astroray's own files); "auto" picks "per_second" for
        astroray's layout and "image" otherwise.
    flag_saturated : bool
        Flag pixels at or above the saturation level as SAT.
    require_wcs : bool
        Refuse an image without a usable celestial WCS (registration needs one).
    estimate_variance : bool
        Without a noise plane, estimate the variance from the image (else refuse).
    min_usable_fraction : float
        Refuse an image with fewer unflagged finite pixels than this fraction
        (an all-saturated or all-masked frame).
    background : BackgroundConfig
        Mesh background used for the variance estimate.
    """

    image_hdu: HDUKey = None
    variance_hdu: HDUKey = None
    inverse_variance_hdu: HDUKey = None
    weight_hdu: HDUKey = None
    sigma_hdu: HDUKey = None
    mask_hdu: HDUKey = None
    companions: bool = True
    weight_kind: Literal["inverse_variance", "relative"] = "inverse_variance"
    mask_convention: MaskConvention = "auto"
    gain: float | None = Field(default=None, gt=0)
    saturation: float | None = Field(default=None, gt=0)
    read_noise: float | None = Field(default=None, ge=0)
    exptime: float | None = Field(default=None, gt=0)
    zero_point: float | None = None
    mjd: float | None = None
    band: str | None = None
    survey: str | None = None
    exposure_id: str | None = None
    zero_point_convention: Literal["auto", "image", "per_second"] = "auto"
    flag_saturated: bool = True
    require_wcs: bool = True
    estimate_variance: bool = True
    min_usable_fraction: float = Field(default=0.01, ge=0.0, le=1.0)
    background: BackgroundConfig = Field(default_factory=lambda: BackgroundConfig(box_size=64, filter_size=3))

    @field_validator("band")
    @classmethod
    def _band(cls, value):
        return None if value is None else normalize_band(value)


@dataclass
class SurveyImage:
    """An exposure read from a survey file, everything but its PSF.

    Attributes
    ----------
    image, variance : ndarray (H, W) float32
        Pixels as in the file (sky included unless ``meta['background_subtracted']``)
        and their variance (0 where there is no data).
    mask : ndarray (H, W) uint32
        :class:`~astroray.records.MaskBits` flags.
    header : str
        The image HDU's header cards (with its WCS), newline separated.
    meta : dict
        The :attr:`Exposure.META_KEYS` found, plus ``read_noise``, ``path``,
        ``hdu``, ``variance_source``, ``mask_source``, ``mask_convention``,
        ``background_subtracted``.
    psf : ndarray or None
        A PSF stamp the file carried (astroray's own layout), else None.
    """

    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    header: str = ""
    meta: dict = field(default_factory=dict)
    psf: np.ndarray | None = None

    def __post_init__(self):
        self.image = np.asarray(self.image, dtype=np.float32)
        self.variance = np.asarray(self.variance, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=np.uint32)
        src = self.meta.get("exposure_id") or None
        if self.image.ndim != 2:
            raise InvalidInputError(f"image must be 2-D, got shape {self.image.shape}", source=src)
        for name in ("variance", "mask"):
            if getattr(self, name).shape != self.image.shape:
                raise InvalidInputError(f"{name} shape {getattr(self, name).shape} does not match image "
                                        f"shape {self.image.shape}", source=src)

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape  # type: ignore[return-value]

    @property
    def exposure_id(self) -> str:
        return str(self.meta.get("exposure_id", ""))

    def wcs(self):
        """The celestial :class:`astropy.wcs.WCS` of the header, or None without one."""
        return celestial_wcs(self.header)

    def to_exposure(self, psf: np.ndarray | None = None) -> Exposure:
        """The :class:`Exposure` with ``psf`` (default: the PSF the file carried).

        Raises
        ------
        InvalidInputError
            No PSF given and none in the file: estimate one first
            (:class:`astroray.imaging.psf.PSFEstimator`).
        """
        psf = self.psf if psf is None else psf
        if psf is None:
            raise InvalidInputError("no PSF: estimate one from the image's stars first "
                                    "(astroray.imaging.psf.PSFEstimator) or pass psf=",
                                    source=self.exposure_id or None)
        return Exposure(image=self.image, variance=self.variance, mask=self.mask, psf=psf, header=self.header,
                        meta=dict(self.meta))


# --------------------------------------------------------------------------- FITS access


def _fits():
    from astropy.io import fits  # deferred: astropy import is ~0.5 s

    return fits


def _name_of(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return "<bytes>"


def _open_hdul(source, name: str):
    """An in-memory HDUList with every HDU's data read (gzip by content), through the untrusted-input checks
    of :func:`astroray.io.fits.open_fits` (regular files only, size and decompression bounded, structure first)."""
    from astroray.io.fits import open_fits

    hdul, _ = open_fits(source, name=name)
    return hdul


def _extname(hdu) -> str:
    return str(hdu.header.get("EXTNAME", hdu.name or "")).strip().upper()


def _is_image(hdu) -> bool:
    data = hdu.data
    return data is not None and getattr(data, "ndim", 0) == 2 and data.size > 0


def _find_hdu(hdul, key: HDUKey, names: tuple[str, ...], name: str, what: str, *, exclude=()):
    """The HDU ``key`` names (index or EXTNAME), else the first 2-D HDU whose EXTNAME is in ``names``."""
    if key is not None:
        try:
            hdu = hdul[key] if not isinstance(key, str) else hdul[key.upper()]
        except (KeyError, IndexError):
            have = [f"{i}:{_extname(h) or '-'}" for i, h in enumerate(hdul)]
            raise InvalidFITSError(f"no HDU {key!r} for the {what} (HDUs: {', '.join(have)})", source=name) from None
        if not _is_image(hdu):
            raise InvalidFITSError(f"HDU {key!r} ({what}) holds no 2-D data", source=name)
        return hdu
    for hdu in hdul:
        if hdu in exclude:
            continue
        if _extname(hdu) in names and _is_image(hdu):
            return hdu
        # LSST writes EXTTYPE as well as EXTNAME
        if str(hdu.header.get("EXTTYPE", "")).strip().upper() in names and _is_image(hdu):
            return hdu
    return None


def _plane(hdu, shape, label: str, name: str, dtype=np.float64) -> np.ndarray:
    arr = np.asarray(hdu.data)
    if arr.shape != tuple(shape):
        raise InvalidFITSError(f"{label} shape {arr.shape} does not match the image shape {tuple(shape)}",
                               source=name)
    return np.ascontiguousarray(arr, dtype=dtype)


# --------------------------------------------------------------------------- header values


def _merged_header(hdul, image_hdu):
    """Keyword lookup over the image HDU's header, then the primary's (the image's own cards win)."""
    primary = hdul[0].header
    own = image_hdu.header

    def get(key):
        for h in (own, primary):
            if key in h and h[key] is not None and not (isinstance(h[key], str) and not h[key].strip()):
                return h[key]
        return None

    return get


def _first(get, keys):
    for key in keys:
        value = get(key)
        if value is not None:
            return key, value
    return None, None


def _as_float(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _band_from(value) -> str | None:
    if value is None:
        return None
    try:
        return normalize_band(value)
    except InvalidInputError:
        pass
    for part in re.split(r"[\s_\-./]+", str(value)):
        if part:
            try:
                return normalize_band(part)
            except InvalidInputError:
                continue
    return None


def _mjd_from(get) -> float | None:
    _, mjd = _first(get, _KEYS["mjd"])
    if _as_float(mjd) is not None:
        return _as_float(mjd)
    _, jd = _first(get, _KEYS["jd"])
    if _as_float(jd) is not None:
        return _as_float(jd) - 2400000.5
    date = get("DATE-OBS")
    if date:
        try:
            from astropy.time import Time

            text = str(date)
            time_obs = get("TIME-OBS") or get("UT")
            if "T" not in text and time_obs:
                text = f"{text}T{time_obs}"
            return float(Time(text, scale="utc").mjd)
        except Exception:
            return None
    return None


def _detect_survey(get, path_name: str, layout: str) -> str:
    if layout == "astroray":
        return str(get("SURVEY") or "astroray")
    text = " ".join(str(get(k) or "") for k in ("ORIGIN", "TELESCOP", "INSTRUME", "SURVEY")).upper()
    if "ZTF" in text or "ZWICKY" in text or re.search(r"ztf_.*_(sci|msk)img", path_name, re.I):
        return "ztf"
    if "LSST" in text or "RUBIN" in text or layout == "lsst":
        return "lsst"
    for key in ("SURVEY", "TELESCOP", "INSTRUME"):
        value = get(key)
        if value:
            return str(value).strip().lower()
    return ""


def celestial_wcs(header):
    """The celestial WCS of a header (string or :class:`astropy.io.fits.Header`), or None without one."""
    if header is None or (isinstance(header, str) and "CTYPE" not in header):
        return None
    from astropy.wcs import WCS

    fits = _fits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if isinstance(header, str):
                header = fits.Header.fromstring(header, sep="\n" if "\n" in header else "")
            wcs = WCS(header)
        except Exception:
            return None
    if not wcs.has_celestial:
        return None
    return wcs.celestial


def _check_wcs(header, shape, name: str) -> None:
    wcs = celestial_wcs(header)
    if wcs is None:
        raise InvalidFITSError(
            "no celestial WCS in the image header (CTYPE1/2, CRVAL, CRPIX, CD or CDELT/PC): registration "
            "needs one; set require_wcs=False only for frames already on one pixel grid", source=name)
    h, w = shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ra, dec = wcs.all_pix2world([0.5 * (w - 1)], [0.5 * (h - 1)], 0)
        except Exception as exc:
            raise InvalidFITSError(f"the WCS cannot map pixels to the sky ({exc})", source=name) from None
    if not (np.isfinite(ra).all() and np.isfinite(dec).all()):
        raise InvalidFITSError("the WCS maps the image centre to NaN on the sky", source=name)


# --------------------------------------------------------------------------- masks


def map_mask_bits(raw: np.ndarray, convention: str, *, planes: Mapping[str, int] | None = None) -> np.ndarray:
    """A survey mask as :class:`MaskBits` flags.

    Parameters
    ----------
    raw : ndarray (H, W) of int
        The survey's mask plane.
    convention : {"astroray", "lsst", "ztf", "nonzero"}
    planes : mapping, optional
        LSST plane name -> bit index (from the ``MP_*`` cards); default the
        standard afw assignment.

    Returns
    -------
    ndarray (H, W) uint32
    """
    raw = np.asarray(raw)
    if raw.dtype.kind == "f":
        raw = np.where(np.isfinite(raw), raw, 0)
    raw = raw.astype(np.int64)
    if convention == "astroray":
        return (raw & 0xFFFFFFFF).astype(np.uint32)
    if convention == "nonzero":
        return np.where(raw != 0, np.uint32(MaskBits.BAD), np.uint32(0)).astype(np.uint32)
    if convention == "ztf":
        table = ZTF_MASK_BITS
    elif convention == "lsst":
        planes = dict(planes or _LSST_DEFAULT_PLANES)
        table = {bit: LSST_MASK_PLANES.get(plane, MaskBits.BAD) for plane, bit in planes.items()}
    else:
        raise InvalidInputError(f"unknown mask convention {convention!r}")
    out = np.zeros(raw.shape, np.uint32)
    for bit, flag in table.items():
        if flag:
            out[(raw >> int(bit)) & 1 != 0] |= np.uint32(int(flag))
    if convention == "ztf":  # bits above 12 are reserved: anything there is unknown, so bad
        out[(raw >> 13) != 0] |= np.uint32(MaskBits.BAD)
    return out


def _lsst_planes(header) -> dict[str, int] | None:
    planes = {}
    for key in header:
        if key.startswith("MP_"):
            try:
                planes[key[3:]] = int(header[key])
            except (TypeError, ValueError):
                continue
    return planes or None


# --------------------------------------------------------------------------- companions


_COMPANION_SUFFIXES = {
    "mask": (".mask", "_mask", ".msk", "_msk", ".bpm", "_bpm", ".dq", "_dq", ".flags"),
    "weight": (".weight", "_weight", ".wht", "_wht"),
    "variance": (".var", "_var", ".variance", "_variance"),
    "inverse_variance": (".ivar", "_ivar", ".invvar", "_invvar"),
}
_FITS_EXTS = (".fits.fz", ".fits.gz", ".fit.gz", ".fits", ".fit", ".fz")


def _split_fits_name(path: Path) -> tuple[str, str]:
    name = path.name
    for ext in _FITS_EXTS:
        if name.lower().endswith(ext):
            return name[: -len(ext)], name[-len(ext):]
    return path.stem, path.suffix


def find_companions(path: str | os.PathLike) -> dict[str, Path]:
    """Companion files of ``path`` that exist: ZTF ``mskimg`` for ``sciimg``, ``<stem>.mask.fits`` and kin."""
    path = Path(path)
    out: dict[str, Path] = {}
    stem, ext = _split_fits_name(path)
    if "sciimg" in path.name:
        for candidate in (path.with_name(path.name.replace("sciimg", "mskimg")),):
            if candidate.is_file():
                out["mask"] = candidate
    for kind, suffixes in _COMPANION_SUFFIXES.items():
        if kind in out:
            continue
        for suffix in suffixes:
            for e in dict.fromkeys((ext, ".fits", ".fits.gz", ".fits.fz")):
                candidate = path.with_name(stem + suffix + e)
                if candidate.is_file() and candidate != path:
                    out[kind] = candidate
                    break
            if kind in out:
                break
    return out


def _companion_plane(source, shape, label: str, name: str):
    """(array, header) of a companion given as a path, bytes or an array."""
    if isinstance(source, np.ndarray):
        if source.shape != tuple(shape):
            raise InvalidFITSError(f"{label} shape {source.shape} does not match the image shape {tuple(shape)}",
                                   source=name)
        return np.asarray(source), None
    cname = _name_of(source)
    hdul = _open_hdul(source, cname)
    with hdul:
        hdu = next((h for h in hdul if _is_image(h)), None)
        if hdu is None:
            raise InvalidFITSError(f"the {label} file holds no 2-D image", source=cname)
        return _plane(hdu, shape, label, cname, dtype=np.asarray(hdu.data).dtype), hdu.header.copy()


# --------------------------------------------------------------------------- the reader


class SurveyReader:
    """Read survey FITS images into :class:`SurveyImage` records.

    Parameters
    ----------
    config : SurveyReadConfig, optional

    Examples
    --------
    >>> reader = SurveyReader(SurveyReadConfig(mask_convention="ztf"))      # doctest: +SKIP
    >>> sci = reader.run("ztf_..._sciimg.fits")        # finds the mskimg beside it   # doctest: +SKIP
    >>> sci.meta["gain"], sci.meta["zero_point"]                          # doctest: +SKIP
    """

    def __init__(self, config: SurveyReadConfig | None = None):
        self.config = config or SurveyReadConfig()

    def run(self, source: str | os.PathLike | bytes | BinaryIO, *, mask=None, variance=None,
            inverse_variance=None, weight=None, name: str | None = None) -> SurveyImage:
        """Read one image with its noise and mask.

        Parameters
        ----------
        source : path, bytes or binary file object
            The FITS file (plain, gzipped or tile-compressed).
        mask, variance, inverse_variance, weight : path, bytes or ndarray, optional
            Companion planes given explicitly (they win over extensions and
            discovered companion files).
        name : str, optional
            What error messages call the input (defaults to the path).

        Returns
        -------
        SurveyImage

        Raises
        ------
        InvalidFITSError
            Unreadable, truncated or corrupt file; a named HDU that is not
            there; planes of another shape; no usable WCS (``require_wcs``);
            no noise plane and ``estimate_variance=False``; fewer usable
            pixels than ``min_usable_fraction`` (an all-saturated frame).
        """
        name = name or _name_of(source)
        explicit = {"mask": mask, "variance": variance, "inverse_variance": inverse_variance, "weight": weight}
        if self.config.companions and isinstance(source, (str, os.PathLike)):
            for kind, path in find_companions(source).items():
                if explicit.get(kind) is None:
                    explicit[kind] = path
        hdul = _open_hdul(source, name)
        with hdul:
            return self._read(hdul, name, explicit)

    __call__ = run

    def _read(self, hdul, name: str, explicit: dict) -> SurveyImage:
        cfg = self.config
        image_hdu = _find_hdu(hdul, cfg.image_hdu, _IMAGE_NAMES, name, "image")
        if image_hdu is None:
            image_hdu = next((h for h in hdul if _is_image(h)), None)
        if image_hdu is None:
            raise InvalidFITSError("no HDU holds a 2-D image", source=name)
        image = np.ascontiguousarray(image_hdu.data, dtype=np.float64)
        shape = image.shape
        header = image_hdu.header.copy()
        for key in ("ZIMAGE", "ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZTILE1", "ZTILE2", "ZCMPTYPE"):
            header.remove(key, ignore_missing=True, remove_all=True)
        header_text = header.tostring(sep="\n", endcard=False, padding=False).rstrip()
        get = _merged_header(hdul, image_hdu)
        names = {_extname(h) for h in hdul}
        layout = ("astroray" if {"IMAGE", "VARIANCE", "PSF"} <= names
                  else "lsst" if {"IMAGE", "MASK", "VARIANCE"} <= names else "plain")
        if cfg.require_wcs:
            _check_wcs(header, shape, name)

        meta = self._meta(get, name, layout)
        finite = np.isfinite(image)
        mask = np.zeros(shape, np.uint32)

        # ---- mask
        mask_src, convention = None, None
        raw_mask, mask_header = None, None
        if explicit.get("mask") is not None:
            raw_mask, mask_header = _companion_plane(explicit["mask"], shape, "mask", name)
            mask_src = _name_of(explicit["mask"]) if not isinstance(explicit["mask"], np.ndarray) else "array"
        else:
            hdu = _find_hdu(hdul, cfg.mask_hdu, _MASK_NAMES, name, "mask", exclude=(image_hdu,))
            if hdu is not None:
                raw_mask, mask_header = _plane(hdu, shape, "mask", name, dtype=np.asarray(hdu.data).dtype), hdu.header
                mask_src = f"extension {_extname(hdu) or hdul.index_of(hdu)}"
        if raw_mask is not None:
            convention = cfg.mask_convention
            planes = _lsst_planes(mask_header) if mask_header is not None else None
            if convention == "auto":
                if planes:
                    convention = "lsst"
                elif layout == "astroray":
                    convention = "astroray"
                elif meta.get("survey") == "ztf" or "mskimg" in str(mask_src):
                    convention = "ztf"
                elif layout == "lsst":
                    convention = "lsst"
                else:
                    convention = "nonzero"
            mask |= map_mask_bits(raw_mask, convention, planes=planes)
        mask[~finite] |= np.uint32(MaskBits.NO_DATA)

        # ---- saturation
        saturation = meta.get("saturation")
        if cfg.flag_saturated and saturation is not None:
            with np.errstate(invalid="ignore"):
                mask[finite & (image >= saturation)] |= np.uint32(MaskBits.SAT)

        self._check_usable(mask, name)

        # ---- noise
        variance, var_src = self._variance(hdul, image_hdu, image, mask, meta, explicit, name)
        no_data = ~finite | ~np.isfinite(variance) | (variance <= 0)
        mask[no_data] |= np.uint32(MaskBits.NO_DATA)
        self._check_usable(mask, name)
        image = np.where(finite, image, 0.0)
        variance = np.where(no_data, 0.0, variance)

        psf = None
        if layout == "astroray":
            psf_hdu = _find_hdu(hdul, None, ("PSF",), name, "PSF")
            psf = None if psf_hdu is None else np.asarray(psf_hdu.data, np.float32)
        meta.update(variance_source=var_src, mask_source=mask_src or "none", mask_convention=convention or "none",
                    hdu=_extname(image_hdu) or hdul.index_of(image_hdu), layout=layout)
        return SurveyImage(image=image.astype(np.float32), variance=variance.astype(np.float32), mask=mask,
                           header=header_text, meta=meta, psf=psf)

    def _check_usable(self, mask, name) -> None:
        """Refuse a frame with too few unflagged pixels (all saturated, all masked, no data)."""
        cfg = self.config
        unusable = (mask & np.uint32(MaskBits.BAD | MaskBits.SAT | MaskBits.NO_DATA)) != 0
        usable = 1.0 - float(unusable.mean())
        if usable < max(cfg.min_usable_fraction, 1e-12):
            sat = float(((mask & np.uint32(MaskBits.SAT)) != 0).mean())
            raise InvalidFITSError(
                f"only {100 * usable:.2f}% of the pixels are usable ({100 * sat:.1f}% saturated; the rest flagged "
                f"or without data); need {100 * cfg.min_usable_fraction:g}%", source=name)

    def _meta(self, get, name: str, layout: str) -> dict:
        cfg = self.config
        meta: dict[str, Any] = {}
        for key in ("gain", "saturation", "read_noise", "exptime"):
            value = getattr(cfg, key)
            if value is None:
                card, raw = _first(get, _KEYS[key])
                value = _as_float(raw)
                if value is not None and key in ("gain", "saturation", "exptime") and value <= 0:
                    value = None  # GAIN = 0 or SATURATE = 0 mean "unknown" in some headers
            if value is not None:
                meta[key] = float(value)
        zp = cfg.zero_point
        if zp is None:
            card, raw = _first(get, _KEYS["zero_point"])
            zp = _as_float(raw)
            if zp is None:
                fluxmag0 = _as_float(get("FLUXMAG0"))
                zp = 2.5 * math.log10(fluxmag0) if fluxmag0 and fluxmag0 > 0 else None
        if zp is not None:
            convention = cfg.zero_point_convention
            if convention == "auto":
                convention = "per_second" if layout == "astroray" else "image"
            meta["zero_point_header"] = float(zp)
            if convention == "image":
                exptime = meta.get("exptime")
                zp = zp - 2.5 * math.log10(exptime) if exptime else None
                if zp is None:
                    meta["zero_point_note"] = "image zero point without EXPTIME: not converted"
            if zp is not None:
                meta["zero_point"] = float(zp)
        mjd = cfg.mjd if cfg.mjd is not None else _mjd_from(get)
        if mjd is not None:
            meta["mjd"] = float(mjd)
        band = cfg.band
        if band is None:
            _, raw = _first(get, _KEYS["band"])
            band = _band_from(raw)
            if raw is not None:
                meta["filter"] = str(raw).strip()
        if band:
            meta["band"] = band
        meta["survey"] = cfg.survey or _detect_survey(get, Path(name).name, layout)
        exp_id = cfg.exposure_id
        if exp_id is None:
            _, raw = _first(get, _KEYS["exposure_id"])
            stem = _split_fits_name(Path(name))[0] if name != "<bytes>" else ""
            exp_id = stem or (str(raw).strip() if raw is not None else "")
        meta["exposure_id"] = str(exp_id)
        for key in ("ccd", "visit"):
            _, raw = _first(get, _KEYS[key])
            if raw is not None:
                meta[key] = raw if isinstance(raw, (int, float)) else str(raw).strip()
        meta["background_subtracted"] = False  # headers rarely say; a mesh background of a flat sky is ~0 anyway
        meta["path"] = name
        return meta

    def _variance(self, hdul, image_hdu, image, mask, meta, explicit, name):
        """(variance, where it came from); NaN/inf/<=0 left for the caller to flag as NO_DATA."""
        cfg = self.config
        shape = image.shape
        sources = []  # (kind, array, label)
        for kind in ("variance", "inverse_variance", "weight"):
            if explicit.get(kind) is not None:
                arr, _ = _companion_plane(explicit[kind], shape, kind.replace("_", " "), name)
                label = _name_of(explicit[kind]) if not isinstance(explicit[kind], np.ndarray) else "array"
                sources.append((kind, arr, label))
                break
        if not sources:
            for kind, key, names in (("variance", cfg.variance_hdu, _VARIANCE_NAMES),
                                     ("inverse_variance", cfg.inverse_variance_hdu, _INVVAR_NAMES),
                                     ("weight", cfg.weight_hdu, _WEIGHT_NAMES),
                                     ("sigma", cfg.sigma_hdu, _SIGMA_NAMES)):
                hdu = _find_hdu(hdul, key, names, name, kind.replace("_", " "), exclude=(image_hdu,))
                if hdu is not None:
                    sources.append((kind, _plane(hdu, shape, kind, name),
                                    f"extension {_extname(hdu) or hdul.index_of(hdu)}"))
                    break
        with np.errstate(divide="ignore", invalid="ignore"):
            if sources:
                kind, arr, label = sources[0]
                arr = np.asarray(arr, np.float64)
                if kind == "variance":
                    return arr, f"variance ({label})"
                if kind == "sigma":
                    return arr * arr, f"sigma squared ({label})"
                if kind == "inverse_variance" or cfg.weight_kind == "inverse_variance":
                    return np.where(arr > 0, 1.0 / arr, 0.0), f"1 / {kind.replace('_', ' ')} ({label})"
                # relative weights: scaled so the sky's noise is the image's own
                var = np.where(arr > 0, 1.0 / arr, 0.0)
                sky_var, _ = self._sky_variance(image, mask, name)
                good = (var > 0) & (mask == 0) & np.isfinite(image)
                scale = float(np.median(sky_var[good]) / np.median(var[good])) if good.any() else 1.0
                return var * scale, f"relative weight scaled to the sky noise ({label})"
        if not cfg.estimate_variance:
            raise InvalidFITSError("no variance, inverse-variance, weight or sigma plane (extension or companion "
                                   "file), and estimate_variance=False", source=name)
        sky_var, background = self._sky_variance(image, mask, name)
        gain = meta.get("gain")
        if gain:
            source_var = np.maximum(np.where(np.isfinite(image), image, 0.0) - background, 0.0) / gain
            return sky_var + source_var, f"estimated: sky mesh RMS^2 + sources' Poisson (gain {gain:g})"
        return sky_var, "estimated: sky mesh RMS^2 (no gain: sources' Poisson noise left out)"

    def _sky_variance(self, image, mask, name):
        from astroray.imaging.background import Background

        bad = ~np.isfinite(image) | ((mask & np.uint32(MaskBits.BAD | MaskBits.SAT | MaskBits.NO_DATA |
                                                         MaskBits.CR)) != 0)
        if bad.all():
            raise InvalidFITSError("no unflagged finite pixel to estimate the noise from", source=name)
        data = np.where(bad, 0.0, image).astype(np.float32)
        bkg = Background(self.config.background).run(data, mask=bad if bad.any() else None, source=name)
        rms = np.asarray(bkg.rms, np.float64)
        return rms * rms, np.asarray(bkg.background, np.float64)


def read_survey_image(source: str | os.PathLike | bytes | BinaryIO, *, config: SurveyReadConfig | None = None,
                      mask=None, variance=None, inverse_variance=None, weight=None,
                      name: str | None = None) -> SurveyImage:
    """Read one survey FITS image: :meth:`SurveyReader.run` with ``config``."""
    return SurveyReader(config).run(source, mask=mask, variance=variance, inverse_variance=inverse_variance,
                                    weight=weight, name=name)
