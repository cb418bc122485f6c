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

__all__ = ["write_exposure", "read_exposure", "exposure_to_bytes", "read_image", "write_image", "check_structure"]

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


_BLOCK = 2880
_CARD = 80
_BITPIX = {8: 1, 16: 2, 32: 4, 64: 8, -32: 4, -64: 8}
_MAX_AXIS = 2**31 - 1


def _card_value(card: bytes) -> str:
    return card[10:].split(b"/", 1)[0].strip().decode("ascii", "replace").strip("'").strip()


def check_structure(data: bytes, *, name: str = "<bytes>") -> list[tuple[int, int]]:
    """Walk the HDUs of a FITS file's bytes without reading their data: ``[(header_start, data_end), ...]``.

    Checks what a reader would otherwise trip over, with a reason that
    depends only on the bytes (so the same bad file is always refused the same
    way): the header blocks and their ``END`` card, ``BITPIX``, ``NAXISn``
    (non-negative, not absurd), and that every HDU's data fits in the file.

    Raises
    ------
    InvalidFITSError
        The first structural problem, naming the HDU.
    """
    n = len(data)
    if n < _BLOCK or not data.startswith(b"SIMPLE  ="):
        raise InvalidFITSError(
            f"not a FITS file ({n} bytes; a FITS file starts with 'SIMPLE  =' and has 2880-byte blocks)", source=name)
    hdus = []
    pos = 0
    index = 0
    while pos < n:
        start = pos
        cards: dict[str, str] = {}
        end_found = False
        while not end_found:
            if pos + _BLOCK > n:
                raise InvalidFITSError(
                    f"truncated: {n} bytes, but the header of HDU {index} (from byte {start}) has no END card "
                    "within the file", source=name)
            block = data[pos:pos + _BLOCK]
            pos += _BLOCK
            for k in range(0, _BLOCK, _CARD):
                card = block[k:k + _CARD]
                key = card[:8].decode("ascii", "replace").strip()
                if key == "END":
                    end_found = True
                    break
                if card[8:10] == b"= " and key not in cards:
                    cards[key] = _card_value(card)
        label = f"HDU {index}" + (f" ({cards['EXTNAME']})" if cards.get("EXTNAME") else "")
        try:
            bitpix = int(cards.get("BITPIX", ""))
            naxis = int(cards.get("NAXIS", ""))
            axes = [int(cards.get(f"NAXIS{i}", "")) for i in range(1, naxis + 1)]
            pcount = int(cards.get("PCOUNT", "0") or 0)
            gcount = int(cards.get("GCOUNT", "1") or 1)
        except ValueError:
            raise InvalidFITSError(f"{label}: BITPIX, NAXIS or NAXISn missing or not an integer", source=name) from None
        if bitpix not in _BITPIX:
            raise InvalidFITSError(f"{label}: BITPIX = {bitpix} is not one of {sorted(_BITPIX)}", source=name)
        if not 0 <= naxis <= 999:
            raise InvalidFITSError(f"{label}: NAXIS = {naxis} is outside 0..999", source=name)
        bad = [(i + 1, a) for i, a in enumerate(axes) if not 0 <= a <= _MAX_AXIS]
        if bad:
            raise InvalidFITSError(f"{label}: NAXIS{bad[0][0]} = {bad[0][1]} is not a valid axis length", source=name)
        if pcount < 0 or gcount < 0:
            raise InvalidFITSError(f"{label}: PCOUNT/GCOUNT must be non-negative", source=name)
        size = 0
        if naxis:
            # random groups (NAXIS1 = 0, GROUPS = T) leave the first axis out
            dims = axes[1:] if axes[0] == 0 and cards.get("GROUPS", "").upper() == "T" else axes
            size = abs(bitpix) // 8 * gcount * (pcount + int(np.prod(dims, dtype=object)))
        data_end = pos + size
        if data_end > n:
            raise InvalidFITSError(
                f"truncated: {n} bytes, but the data of {label} ends at byte {data_end}", source=name)
        hdus.append((start, data_end))
        pos += -(-size // _BLOCK) * _BLOCK
        index += 1
        if pos >= n or not data[pos:pos + 8].startswith(b"XTENSION"):
            break
    return hdus


def _open(source, name):
    fits = _fits()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        check_structure(data, name=name)
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
    except Exception as exc:  # the structure was sound: the content is not
        raise InvalidFITSError(f"corrupt FITS content ({type(exc).__name__}: {_stable(exc)})", source=name) from None
    return hdul


def _stable(exc: Exception) -> str:
    """An exception's message without what changes from run to run (object addresses)."""
    import re

    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(exc))[:300]


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
