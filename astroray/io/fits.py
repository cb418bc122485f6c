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
import math
import os
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from astroray.errors import InvalidFITSError
from astroray.io.limits import MB, ReadLimits, current_limits, gunzip_bounded, read_file, read_stream
from astroray.records import Exposure

__all__ = ["write_exposure", "read_exposure", "exposure_to_bytes", "read_image", "write_image", "image_to_bytes",
           "check_structure",
           "walk_hdus", "open_fits", "HDUInfo", "MIN_IMAGE_SIDE"]

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
_GZIP_MAGIC = b"\x1f\x8b"
_PRINTABLE = bytes(range(32, 127))
# Keywords that fix where an HDU's data ends: a second, different value of one of them is a lie.
_STRUCTURAL = re.compile(r"^(BITPIX|NAXIS\d*|PCOUNT|GCOUNT|ZBITPIX|ZNAXIS\d*|TFIELDS)$")
# Bytes per element of each binary-table TFORM code (X counts bits); P/Q are heap descriptors.
_TFORM_BYTES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16, "P": 8, "Q": 16}
_TFORM = re.compile(r"^\s*(\d*)\s*([LXBIJKAEDCMPQ])", re.I)


def _card_value(card: bytes) -> str:
    return card[10:].split(b"/", 1)[0].strip().decode("ascii", "replace").strip("'").strip()


@dataclass(frozen=True)
class HDUInfo:
    """Where one HDU lies in a FITS file and what its header says, as read from the bytes.

    ``cards`` holds the first value of every ``KEY = value`` card (strings
    unquoted); ``data_end`` is the end of the data proper, before padding.
    """

    index: int
    header_start: int
    data_start: int
    data_end: int
    cards: dict
    bitpix: int
    axes: tuple

    @property
    def extname(self) -> str:
        return self.cards.get("EXTNAME", "").strip().upper()

    @property
    def label(self) -> str:
        return f"HDU {self.index}" + (f" ({self.cards['EXTNAME']})" if self.cards.get("EXTNAME") else "")

    @property
    def is_compressed_image(self) -> bool:
        return self.cards.get("XTENSION", "").strip().upper() == "BINTABLE" and \
            self.cards.get("ZIMAGE", "").upper() == "T"


def check_structure(data, *, name: str = "<bytes>", limits: ReadLimits | None = None) -> list[tuple[int, int]]:
    """Walk the HDUs of a FITS file's bytes without reading their data: ``[(header_start, data_end), ...]``.

    Checks what a reader would otherwise trip over, with a reason that
    depends only on the bytes (so the same bad file is always refused the same
    way): the header blocks and their ``END`` card, ``BITPIX``, ``NAXISn``
    (non-negative, not absurd, not given twice with different values), that
    every HDU's data fits in the file and that nothing but padding follows the
    last one (a ``BITPIX`` or ``NAXISn`` that understates the data leaves
    bytes over), binary-table row widths against their ``TFORMn``, and the
    size a tile-compressed image expands to (at most
    :attr:`~astroray.io.limits.ReadLimits.max_decompressed_mb`).

    Parameters
    ----------
    data : bytes or seekable binary file
        The file's bytes, or an open file: then only the header blocks are
        read (the data is skipped with ``seek``).
    name : str, optional
        What error messages call the input.
    limits : ReadLimits, optional
        Default: :func:`~astroray.io.limits.current_limits`.

    Raises
    ------
    InvalidFITSError
        The first structural problem, naming the HDU.
    """
    return [(h.header_start, h.data_end) for h in walk_hdus(data, name=name, limits=limits)]


def walk_hdus(data, *, name: str = "<bytes>", limits: ReadLimits | None = None) -> list[HDUInfo]:
    """Like :func:`check_structure`, returning an :class:`HDUInfo` per HDU."""
    limits = limits or current_limits()
    if isinstance(data, (bytes, bytearray, memoryview)):
        buf = bytes(data)
        size = len(buf)

        def read_at(offset: int, n: int) -> bytes:
            return buf[offset:offset + n]
    else:
        fh = data
        fh.seek(0, os.SEEK_END)
        size = fh.tell()

        def read_at(offset: int, n: int) -> bytes:
            fh.seek(offset)
            return fh.read(n)
    return _walk(read_at, size, name, limits)


def _walk(read_at, n: int, name: str, limits: ReadLimits) -> list[HDUInfo]:
    if n < _BLOCK or read_at(0, 9) != b"SIMPLE  =":
        raise InvalidFITSError(
            f"not a FITS file ({n} bytes; a FITS file starts with 'SIMPLE  =' and has 2880-byte blocks)", source=name)
    hdus: list[HDUInfo] = []
    pos = 0
    while pos < n:
        index = len(hdus)
        start = pos
        cards, pos = _read_header(read_at, n, start, index, name)
        info = _hdu_info(cards, index, start, pos, name, limits)
        if info.data_end > n:
            raise InvalidFITSError(
                f"truncated: {n} bytes, but the data of {info.label} ends at byte {info.data_end}", source=name)
        hdus.append(info)
        size = info.data_end - info.data_start
        pos += -(-size // _BLOCK) * _BLOCK
        if pos >= n or read_at(pos, 8) != b"XTENSION":
            break
    if pos < n:
        _check_tail(read_at, pos, n, hdus[-1], name)
    if n % _BLOCK:
        raise InvalidFITSError(f"truncated: {n} bytes is not a whole number of 2880-byte FITS blocks (the end of "
                               f"{hdus[-1].label} is missing)", source=name)
    return hdus


def _read_header(read_at, n: int, start: int, index: int, name: str) -> tuple[dict, int]:
    cards: dict[str, str] = {}
    pos = start
    while True:
        if pos + _BLOCK > n:
            raise InvalidFITSError(
                f"truncated: {n} bytes, but the header of HDU {index} (from byte {start}) has no END card "
                "within the file", source=name)
        block = read_at(pos, _BLOCK)
        if block.translate(None, _PRINTABLE):  # a header is printable ASCII: anything else is data (END lost?)
            raise InvalidFITSError(
                f"HDU {index}: the header block at byte {pos} holds bytes that are not printable ASCII "
                "(its END card is missing or damaged)", source=name)
        pos += _BLOCK
        for k in range(0, _BLOCK, _CARD):
            card = block[k:k + _CARD]
            key = card[:8].decode("ascii", "replace").strip()
            if key == "END":
                if card[8:].strip(b" "):
                    raise InvalidFITSError(f"HDU {index}: the END card has text after END", source=name)
                return cards, pos
            if card[8:10] != b"= ":
                continue
            value = _card_value(card)
            if key not in cards:
                cards[key] = value
            elif value != cards[key] and _STRUCTURAL.match(key):
                raise InvalidFITSError(f"HDU {index}: {key} is given twice ({cards[key]} and {value})", source=name)


def _integer(cards: dict, key: str, default: str | None, label: str, name: str) -> int:
    raw = cards.get(key, default)
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise InvalidFITSError(f"{label}: {key} is {'missing' if raw is None else repr(raw)}, "
                               "expected an integer", source=name) from None


def _hdu_info(cards: dict, index: int, start: int, data_start: int, name: str, limits: ReadLimits) -> HDUInfo:
    label = f"HDU {index}" + (f" ({cards['EXTNAME']})" if cards.get("EXTNAME") else "")
    bitpix = _integer(cards, "BITPIX", None, label, name)
    naxis = _integer(cards, "NAXIS", None, label, name)
    if bitpix not in _BITPIX:
        raise InvalidFITSError(f"{label}: BITPIX = {bitpix} is not one of {sorted(_BITPIX)}", source=name)
    if not 0 <= naxis <= 999:
        raise InvalidFITSError(f"{label}: NAXIS = {naxis} is outside 0..999", source=name)
    axes = [_integer(cards, f"NAXIS{i}", None, label, name) for i in range(1, naxis + 1)]
    bad = [(i + 1, a) for i, a in enumerate(axes) if not 0 <= a <= _MAX_AXIS]
    if bad:
        raise InvalidFITSError(f"{label}: NAXIS{bad[0][0]} = {bad[0][1]} is not a valid axis length", source=name)
    pcount = _integer(cards, "PCOUNT", "0", label, name)
    gcount = _integer(cards, "GCOUNT", "1", label, name)
    if not 0 <= pcount <= _MAX_AXIS**2 or not 0 <= gcount <= _MAX_AXIS:
        raise InvalidFITSError(f"{label}: PCOUNT = {pcount} / GCOUNT = {gcount} out of range", source=name)
    size = 0
    if naxis:
        # random groups (NAXIS1 = 0, GROUPS = T) leave the first axis out
        dims = axes[1:] if axes[0] == 0 and cards.get("GROUPS", "").upper() == "T" else axes
        size = abs(bitpix) // 8 * gcount * (pcount + math.prod(dims))
    info = HDUInfo(index, start, data_start, data_start + size, cards, bitpix, tuple(axes))
    if cards.get("XTENSION", "").strip().upper() == "BINTABLE" and naxis == 2:
        _check_table(info, name)
    if info.is_compressed_image:
        _check_compressed(info, name, limits)
    return info


def _check_table(info: HDUInfo, name: str) -> None:
    """A binary table's TFORMn must add up to its row width (NAXIS1), or every column read is misplaced."""
    nfields = _integer(info.cards, "TFIELDS", "0", info.label, name)
    if not 0 <= nfields <= 999:
        raise InvalidFITSError(f"{info.label}: TFIELDS = {nfields} is outside 0..999", source=name)
    width = 0
    for i in range(1, nfields + 1):
        tform = info.cards.get(f"TFORM{i}", "")
        m = _TFORM.match(tform)
        if m is None:
            raise InvalidFITSError(f"{info.label}: TFORM{i} = {tform!r} is not a binary-table format", source=name)
        repeat = int(m[1]) if m[1] else 1
        code = m[2].upper()
        width += -(-repeat // 8) if code == "X" else repeat * _TFORM_BYTES[code]
    if width != info.axes[0]:
        raise InvalidFITSError(f"{info.label}: the columns' TFORMn add up to {width} bytes per row, "
                               f"but NAXIS1 = {info.axes[0]}", source=name)


def _check_compressed(info: HDUInfo, name: str, limits: ReadLimits) -> None:
    """A tile-compressed image may not expand past ``max_decompressed_mb``."""
    zbitpix = _integer(info.cards, "ZBITPIX", None, info.label, name)
    znaxis = _integer(info.cards, "ZNAXIS", None, info.label, name)
    if zbitpix not in _BITPIX or not 0 <= znaxis <= 999:
        raise InvalidFITSError(f"{info.label}: ZBITPIX = {zbitpix} / ZNAXIS = {znaxis} invalid", source=name)
    zaxes = [_integer(info.cards, f"ZNAXIS{i}", None, info.label, name) for i in range(1, znaxis + 1)]
    tiles = [_integer(info.cards, f"ZTILE{i}", "1", info.label, name) for i in range(1, znaxis + 1)]
    if any(not 0 <= a <= _MAX_AXIS for a in zaxes) or any(t < 1 for t in tiles):
        raise InvalidFITSError(f"{info.label}: ZNAXISn/ZTILEn out of range ({zaxes}, {tiles})", source=name)
    expanded = abs(zbitpix) // 8 * math.prod(zaxes) if zaxes else 0
    if expanded > limits.max_decompressed_bytes:
        raise InvalidFITSError(
            f"{info.label}: the tile-compressed image expands to {expanded / MB:.1f} MB, above the limit of "
            f"{limits.max_decompressed_mb:g} MB (ReadLimits.max_decompressed_mb, $ASTRORAY_MAX_DECOMPRESSED_MB)",
            source=name)


def _check_tail(read_at, pos: int, n: int, last: HDUInfo, name: str) -> None:
    """Bytes after the last HDU must be zero padding: anything else means a header understated its data."""
    step = 1 << 20
    for offset in range(pos, n, step):
        if read_at(offset, min(step, n - offset)).strip(b"\x00"):
            raise InvalidFITSError(
                f"{n - pos} bytes after {last.label} (from byte {pos}) are not an HDU: its BITPIX or NAXISn "
                "understates its data, or the next header is damaged", source=name)


def _load(source, name: str, limits: ReadLimits) -> bytes:
    """The uncompressed bytes of ``source`` (path, bytes or stream), every read and expansion bounded."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > limits.max_file_bytes:
            raise InvalidFITSError(f"input is {len(data) / MB:.1f} MB, above the limit of {limits.max_file_mb:g} "
                                   "MB (ReadLimits.max_file_mb)", source=name)
    elif hasattr(source, "read"):
        data = read_stream(source, name=name, limit=limits.max_file_bytes, error=InvalidFITSError)
    else:
        data = read_file(source, name=name, limit=limits.max_file_bytes, error=InvalidFITSError,
                         missing="file not found")
    if data[:2] == _GZIP_MAGIC:
        try:  # a look at the first block: content that is not FITS is refused before it is inflated whole
            head = zlib.decompressobj(wbits=31).decompress(data, 9)
        except zlib.error:
            head = b""
        if head and head != b"SIMPLE  =":
            raise InvalidFITSError(f"gzip-compressed content is not FITS (it starts {head!r})", source=name)
        data = gunzip_bounded(data, name=name, limit=limits.max_decompressed_bytes, what="gzip-compressed FITS",
                              error=InvalidFITSError)
    return data


def open_fits(source, *, name: str | None = None, limits: ReadLimits | None = None):
    """Open an untrusted FITS file (path, bytes, stream; gzip detected by content) as an in-memory HDUList.

    The structure is checked from the bytes first (:func:`check_structure`),
    the file size and any decompression are bounded by ``limits``, and every
    HDU's data is read before returning, so no later access can fail or hang.

    Returns
    -------
    (HDUList, list of HDUInfo)

    Raises
    ------
    InvalidFITSError
        Not a regular file, too large, a decompression bomb, structurally
        unsound, or content astropy cannot read; the message says which.
    """
    limits = limits or current_limits()
    name = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<bytes>")
    data = _load(source, name, limits)
    infos = walk_hdus(data, name=name, limits=limits)
    fits = _fits()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncation shows up below as a typed error instead
            hdul = fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=False)
            hdul.verify("silentfix")
            for hdu in hdul:
                _ = hdu.data  # force the read: truncated data raises here, not later
    except InvalidFITSError:
        raise
    except Exception as exc:  # the structure was sound: the content is not
        raise InvalidFITSError(f"corrupt FITS content ({type(exc).__name__}: {_stable(exc)})", source=name) from None
    return hdul, infos


def _open(source, name, limits=None):
    return open_fits(source, name=name, limits=limits)[0]


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


MIN_IMAGE_SIDE = 2
"""Fewest pixels along each axis of an exposure: differencing takes image gradients, which need two."""

_FLOAT_PLANES = ("IMAGE", "VARIANCE", "PSF")


def _check_float_planes(infos: list[HDUInfo], name: str) -> None:
    """IMAGE, VARIANCE and PSF hold floats; integer BITPIX without scaling means the header misdescribes the data."""
    for info in infos:
        if info.extname in _FLOAT_PLANES and info.bitpix > 0 and "BSCALE" not in info.cards \
                and "BZERO" not in info.cards:
            raise InvalidFITSError(
                f"{info.extname} has BITPIX = {info.bitpix} (integers) without BSCALE/BZERO: an exposure stores "
                "IMAGE, VARIANCE and PSF as floats (BITPIX -32 or -64), so the header does not describe the data",
                source=name)


def _check_planes(image: np.ndarray, variance: np.ndarray, psf: np.ndarray, name: str) -> None:
    """Values no pipeline stage can use: refused here, with the count, instead of failing (or lying) later."""
    if image.ndim == 2 and min(image.shape) < MIN_IMAGE_SIDE:
        raise InvalidFITSError(f"IMAGE is {image.shape[0]}x{image.shape[1]} pixels: an exposure needs at least "
                               f"{MIN_IMAGE_SIDE} along each axis", source=name)
    finite = np.isfinite(variance)
    negative = int(np.count_nonzero(variance[finite] < 0))
    if negative:
        raise InvalidFITSError(f"VARIANCE has {negative} negative value(s): a variance is never negative "
                               "(was a standard deviation or a background-subtracted plane written?)", source=name)
    if not np.any(variance[finite] > 0):
        raise InvalidFITSError("VARIANCE has no positive finite value (all NaN, inf or zero)", source=name)
    if psf.size == 0 or not np.all(np.isfinite(psf)):
        raise InvalidFITSError(f"PSF has {int(psf.size - np.count_nonzero(np.isfinite(psf)))} NaN or inf "
                               "value(s)", source=name)
    total = float(psf.sum(dtype=np.float64))
    if not total > 0:
        raise InvalidFITSError(f"PSF sums to {total:g}: a PSF stamp must have positive total flux "
                               "(it is normalised to sum 1)", source=name)


def _default_name(source) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<bytes>"


def read_image(source: str | os.PathLike | bytes | BinaryIO, *, name: str | None = None, hdu: int | str | None = None,
               limits: ReadLimits | None = None):
    """Read one 2-D image (first HDU with 2-D data, or ``hdu``) as float32 and its header.

    The file goes through :func:`open_fits` (structure checked, size and
    decompression bounded by ``limits``); gzip-compressed files are read too.

    Raises
    ------
    InvalidFITSError
        As :func:`open_fits`, or no such HDU, or no 2-D image in it.
    """
    name = name or _default_name(source)
    hdul, _ = open_fits(source, name=name, limits=limits)
    with hdul:
        if hdu is not None:
            try:
                candidates = [hdul[hdu]]
            except (KeyError, IndexError):
                raise InvalidFITSError(f"no HDU {hdu!r} (the file has {len(hdul)})", source=name) from None
        else:
            candidates = [h for h in hdul if h.data is not None and getattr(h.data, "ndim", 0) == 2
                          and h.data.dtype.fields is None]
        if not candidates or candidates[0].data is None or candidates[0].data.dtype.fields is not None:
            raise InvalidFITSError("no 2-D image HDU found", source=name)
        h = candidates[0]
        if h.data.ndim != 2:
            raise InvalidFITSError(f"HDU {h.name} is {h.data.ndim}-D, expected a 2-D image", source=name)
        return np.ascontiguousarray(h.data, dtype=np.float32), h.header.tostring(sep="\n")


def read_exposure(source: str | os.PathLike | bytes | BinaryIO, *, name: str | None = None,
                  limits: ReadLimits | None = None) -> Exposure:
    """Read an exposure written by :func:`write_exposure`.

    Parameters
    ----------
    source : path, bytes or binary file object
        Gzip-compressed content is read too (its expansion bounded by ``limits``).
    name : str, optional
        Used in error messages (defaults to the path).
    limits : ReadLimits, optional
        File size and decompression bounds; default
        :func:`~astroray.io.limits.current_limits`.

    Returns
    -------
    Exposure

    Raises
    ------
    InvalidFITSError
        Not a regular file, too large, truncated or corrupt, a header that
        misdescribes its data (negative ``NAXISn``, integer ``BITPIX`` on a
        float plane), missing IMAGE/VARIANCE/PSF HDU, arrays whose shapes
        disagree, an image under 2x2 pixels, a negative or wholly unusable
        variance, a PSF with NaN/inf or no positive flux; the message names
        the file and the problem.
    """
    name = name or _default_name(source)
    hdul, infos = open_fits(source, name=name, limits=limits)
    with hdul:
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
    _check_float_planes(infos, name)
    meta.setdefault("exposure_id", Path(name).stem if name != "<bytes>" else "")
    if image.ndim != 2:
        raise InvalidFITSError(f"IMAGE is {image.ndim}-D, expected 2-D", source=name)
    for label, arr in (("VARIANCE", variance), ("MASK", mask)):
        if arr.shape != image.shape:
            raise InvalidFITSError(f"{label} shape {arr.shape} does not match IMAGE shape {image.shape}", source=name)
    _check_planes(image, variance, psf, name)
    try:
        return Exposure(image=image, variance=variance, mask=mask, psf=psf, header=header, meta=meta)
    except InvalidFITSError:
        raise
    except Exception as exc:  # InvalidInputError from Exposure.validate: re-type it with the file named
        raise InvalidFITSError(getattr(exc, "reason", str(exc)), source=name) from None


def _image_hdu(image: np.ndarray, header: str):
    hdr = _parse_header(header)
    for key in _WCS_FREE:
        hdr.remove(key, ignore_missing=True, remove_all=True)
    return _fits().PrimaryHDU(np.asarray(image, np.float32), header=hdr)


def write_image(image: np.ndarray, path: str | os.PathLike, *, header: str = "", overwrite: bool = False) -> Path:
    """Write one 2-D float32 image (e.g. a difference image) as a single-HDU FITS file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _image_hdu(image, header).writeto(path, overwrite=overwrite)
    return path


def image_to_bytes(image: np.ndarray, *, header: str = "") -> bytes:
    """The single-HDU FITS file :func:`write_image` writes, as bytes (for atomic writers and HTTP bodies)."""
    buf = io.BytesIO()
    _image_hdu(image, header).writeto(buf)
    return buf.getvalue()
