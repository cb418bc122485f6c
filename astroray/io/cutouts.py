"""Decode alert cutouts (postage stamps) from their FITS bytes.

ZTF packs each 63x63 stamp as a gzipped FITS file; Rubin packs a plain FITS
file whose primary HDU is the image (then uncertainty and PSF extensions).
"""
from __future__ import annotations

import gzip
import io
import warnings
import zlib

import numpy as np

from astroray.errors import InvalidAlertError

__all__ = ["decode_cutout"]

_GZIP_MAGIC = b"\x1f\x8b"


def decode_cutout(data: bytes, *, source: str | None = None, label: str = "cutout") -> np.ndarray:
    """Decode one FITS (optionally gzipped) stamp into a 2-D float32 array.

    Parameters
    ----------
    data : bytes
        The stamp as stored in the alert (``stampData`` for ZTF, the raw bytes for Rubin).
    source : str, optional
        The file or alert the stamp came from, for error messages.
    label : str, optional
        Which stamp this is (``cutoutScience``, ...), for error messages.

    Returns
    -------
    ndarray (H, W) float32
        The image of the first HDU holding 2-D data.

    Raises
    ------
    InvalidAlertError
        The bytes are not a readable FITS image.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise InvalidAlertError(f"{label} is empty", source=source)
    return _decode(bytes(data), source, label)


_BLOCK = 2880
_CARD = 80
_FLOAT_TYPES = {-32: ">f4", -64: ">f8"}


def _primary_float_image(data: bytes) -> np.ndarray | None:
    """The primary HDU's pixels when it is a plain unscaled float image, else ``None``.

    Alert stamps are small float images; reading their few header cards
    directly is ~10x faster than a full astropy open.  Anything else (integer
    or scaled pixels, a missing END card, short data) returns ``None`` and is
    left to astropy.
    """
    cards: dict[bytes, bytes] = {}
    pos = 0
    while True:
        block = data[pos:pos + _BLOCK]
        if len(block) < _BLOCK:
            return None
        pos += _BLOCK
        ended = False
        for i in range(0, _BLOCK, _CARD):
            key = block[i:i + 8].rstrip()
            if key == b"END":
                ended = True
                break
            if block[i + 8:i + 10] == b"= ":
                cards[key] = block[i + 10:i + _CARD].split(b"/", 1)[0].strip()
        if ended:
            break
    try:
        if cards.get(b"SIMPLE") != b"T" or int(cards.get(b"NAXIS", b"0")) != 2:
            return None
        dtype = _FLOAT_TYPES.get(int(cards[b"BITPIX"]))
        nx, ny = int(cards[b"NAXIS1"]), int(cards[b"NAXIS2"])
        if dtype is None or float(cards.get(b"BSCALE", b"1")) != 1.0 or float(cards.get(b"BZERO", b"0")) != 0.0:
            return None
    except (KeyError, ValueError):
        return None
    count = nx * ny
    if nx <= 0 or ny <= 0 or len(data) < pos + count * np.dtype(dtype).itemsize:
        return None
    return np.frombuffer(data, dtype=dtype, count=count, offset=pos).reshape(ny, nx).astype(np.float32)


def _decode(data: bytes, source, label) -> np.ndarray:
    from astropy.io import fits

    try:
        if data[:2] == _GZIP_MAGIC:
            data = gzip.decompress(data)
        fast = _primary_float_image(data)
        if fast is not None:
            return fast
        # ZTF stamp headers break minor FITS rules (e.g. the SIMPLE card format); the pixels are fine.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(data), memmap=False) as hdus:
                for hdu in hdus:
                    if hdu.data is not None and np.ndim(hdu.data) == 2:
                        return np.array(hdu.data, dtype=np.float32)
    except (OSError, EOFError, zlib.error, ValueError, TypeError, IndexError) as exc:
        raise InvalidAlertError(f"{label} is not a readable FITS image ({type(exc).__name__}: {exc})",
                                source=source) from None
    raise InvalidAlertError(f"{label} holds no 2-D image", source=source)
