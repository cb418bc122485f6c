"""FITS exposures: image, variance, mask, PSF and header/WCS as HDUs.

Layout (one file per exposure, like an LSST ``ExposureF``)::

    PRIMARY   no data; meta cards (EXPID, SURVEY, VISIT, CCD, FILTER, MJD-OBS, ...)
    IMAGE     float32 pixels; header holds the WCS
    VARIANCE  float32 per-pixel variance
    MASK      int32 :class:`~astroray.records.MaskBits` flags
    PSF       float32 odd-sized PSF stamp, normalised to sum 1

Reading also accepts a single-HDU image (e.g. a raw frame): see :func:`read_exposure`.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np

from astroray.errors import InvalidFITSError
from astroray.records import Exposure

__all__ = ["write_exposure", "read_exposure", "exposure_to_bytes", "read_image", "write_image"]

# meta key -> FITS card (standard names where one exists)
_CARDS = {
    "exposure_id": "EXPID", "survey": "SURVEY", "visit": "VISIT", "ccd": "CCD", "band": "FILTER",
    "mjd": "MJD-OBS", "exptime": "EXPTIME", "gain": "GAIN", "saturation": "SATURATE", "zero_point": "MAGZERO",
}
_EXTRA_PREFIX = "HIERARCH AR "
_WCS_FREE = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "PCOUNT", "GCOUNT", "EXTNAME", "BZERO", "BSCALE"}


def _fits():
    from astropy.io import fits  # deferred: astropy import is ~0.5 s

    return fits


def _parse_header(text: str):
    """Header cards from newline-separated text or from concatenated 80-character cards."""
    fits = _fits()
    if not text:
        return fits.Header()
    return fits.Header.fromstring(text, sep="\n" if "\n" in text else "")


def _hdul(exposure: Exposure):
    fits = _fits()
    primary = fits.PrimaryHDU()
    for key, value in exposure.meta.items():
        if value is None:
            continue
        card = _CARDS.get(key)
        if card is None:
            if not isinstance(value, (bool, int, float, str, np.generic)):
                continue  # arrays and nested meta have no FITS card form
            card = _EXTRA_PREFIX + key.upper()
        primary.header[card] = value.item() if isinstance(value, np.generic) else value
    image_header = _parse_header(exposure.header)
    for key in _WCS_FREE:
        image_header.remove(key, ignore_missing=True, remove_all=True)
    return fits.HDUList([
        primary,
        fits.ImageHDU(exposure.image, header=image_header, name="IMAGE"),
        fits.ImageHDU(exposure.variance, name="VARIANCE"),
        fits.ImageHDU(exposure.mask.astype(np.int32), name="MASK"),
        fits.ImageHDU(exposure.psf, name="PSF"),
    ])


def write_exposure(exposure: Exposure, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``exposure`` as a multi-extension FITS file and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _hdul(exposure).writeto(path, overwrite=overwrite)
    return path


def exposure_to_bytes(exposure: Exposure) -> bytes:
    """The FITS file of ``exposure`` as bytes (for HTTP bodies and object stores)."""
    buf = io.BytesIO()
    _hdul(exposure).writeto(buf)
    return buf.getvalue()


def _open(source, name):
    fits = _fits()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) < 2880 or not data.startswith(b"SIMPLE  ="):
            raise InvalidFITSError(
                f"not a FITS file ({len(data)} bytes; a FITS file starts with 'SIMPLE  =' and has 2880-byte blocks)",
                source=name)
        if len(data) % 2880:
            raise InvalidFITSError(
                f"truncated: {len(data)} bytes is not a whole number of 2880-byte FITS blocks", source=name)
        fileobj = io.BytesIO(data)
    elif hasattr(source, "read"):
        return _open(source.read(), name)
    else:
        p = Path(source)
        if not p.is_file():
            raise InvalidFITSError("file not found", source=name)
        return _open(p.read_bytes(), name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncation shows up below as a typed error instead
            hdul = fits.open(fileobj, memmap=False, lazy_load_hdus=False)
            hdul.verify("silentfix")
            for hdu in hdul:
                _ = hdu.data  # force the read: truncated data raises here, not later
    except InvalidFITSError:
        raise
    except Exception as exc:
        raise InvalidFITSError(f"corrupt or truncated FITS ({type(exc).__name__}: {exc})", source=name) from None
    return hdul


def _array(hdul, extname, name, dtype):
    if extname not in hdul:
        return None
    data = hdul[extname].data
    if data is None:
        raise InvalidFITSError(f"HDU {extname} has no data", source=name)
    return np.ascontiguousarray(data, dtype=dtype)


def read_image(source: str | os.PathLike | bytes | BinaryIO, *, name: str | None = None, hdu: int | str | None = None):
    """Read one 2-D image (first HDU with 2-D data, or ``hdu``) as float32 and its header."""
    name = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<bytes>")
    with _open(source, name) as hdul:
        candidates = [hdul[hdu]] if hdu is not None else [h for h in hdul if h.data is not None and h.data.ndim == 2]
        if not candidates or candidates[0].data is None:
            raise InvalidFITSError("no 2-D image HDU found", source=name)
        h = candidates[0]
        if h.data.ndim != 2:
            raise InvalidFITSError(f"HDU {h.name} is {h.data.ndim}-D, expected a 2-D image", source=name)
        return np.ascontiguousarray(h.data, dtype=np.float32), h.header.tostring(sep="\n")


def read_exposure(source: str | os.PathLike | bytes | BinaryIO, *, name: str | None = None) -> Exposure:
    """Read an exposure written by :func:`write_exposure`.

    Parameters
    ----------
    source : path, bytes or binary file object
    name : str, optional
        Used in error messages (defaults to the path).

    Returns
    -------
    Exposure

    Raises
    ------
    InvalidFITSError
        Truncated or corrupt file, missing IMAGE/PSF HDU, or arrays whose shapes
        disagree; the message names the file and the problem.
    """
    name = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<bytes>")
    with _open(source, name) as hdul:
        image = _array(hdul, "IMAGE", name, np.float32)
        if image is None:
            raise InvalidFITSError(
                "no IMAGE HDU (an astroray exposure has IMAGE, VARIANCE, MASK and PSF extensions; "
                "use astroray.io.fits.read_image for a plain single-HDU image)", source=name)
        variance = _array(hdul, "VARIANCE", name, np.float32)
        if variance is None:
            raise InvalidFITSError("no VARIANCE HDU", source=name)
        mask = _array(hdul, "MASK", name, np.int64)
        mask = np.zeros(image.shape, np.uint32) if mask is None else mask.astype(np.uint32)
        psf = _array(hdul, "PSF", name, np.float32)
        if psf is None:
            raise InvalidFITSError("no PSF HDU", source=name)
        meta = {}
        primary = hdul[0].header
        for key, card in _CARDS.items():
            if card in primary:
                meta[key] = primary[card]
        for card in primary:
            if card.startswith("AR "):
                meta[card[3:].lower()] = primary[card]
        header = hdul["IMAGE"].header.tostring(sep="\n")
    meta.setdefault("exposure_id", Path(name).stem if name != "<bytes>" else "")
    if image.ndim != 2:
        raise InvalidFITSError(f"IMAGE is {image.ndim}-D, expected 2-D", source=name)
    for label, arr in (("VARIANCE", variance), ("MASK", mask)):
        if arr.shape != image.shape:
            raise InvalidFITSError(f"{label} shape {arr.shape} does not match IMAGE shape {image.shape}", source=name)
    try:
        return Exposure(image=image, variance=variance, mask=mask, psf=psf, header=header, meta=meta)
    except InvalidFITSError:
        raise
    except Exception as exc:  # InvalidInputError from Exposure.validate: re-type it with the file named
        raise InvalidFITSError(getattr(exc, "reason", str(exc)), source=name) from None


def write_image(image: np.ndarray, path: str | os.PathLike, *, header: str = "", overwrite: bool = False) -> Path:
    """Write one 2-D float32 image (e.g. a difference image) as a single-HDU FITS file."""
    fits = _fits()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hdr = _parse_header(header)
    for key in _WCS_FREE:
        hdr.remove(key, ignore_missing=True, remove_all=True)
    fits.PrimaryHDU(np.asarray(image, np.float32), header=hdr).writeto(path, overwrite=overwrite)
    return path
