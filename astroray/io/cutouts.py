"""Decode alert cutouts (postage stamps) from their FITS bytes.

ZTF packs each 63x63 stamp as a gzipped FITS file; Rubin packs a plain FITS
file whose primary HDU is the image (then uncertainty and PSF extensions).
A stamp may expand to at most :attr:`~astroray.io.limits.ReadLimits.max_cutout_mb`
(16 MB by default, ``$ASTRORAY_MAX_CUTOUT_MB``): a gzip bomb in an alert is
refused with that reason, having used no more memory than the limit.
"""
from __future__ import annotations

import numpy as np

from astroray.errors import InvalidAlertError, InvalidInputError
from astroray.io.limits import current_limits, gunzip_bounded

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
    from astroray.io.fits import open_fits

    limits = current_limits()
    if data[:2] == _GZIP_MAGIC:
        # ZTF gzips each stamp: a stamp that inflates past max_cutout_mb is a bomb, not a 63x63 image
        data = gunzip_bounded(data, name=source, limit=limits.max_cutout_bytes, what=label,
                              error=InvalidAlertError, setting="max_cutout_mb")
    if len(data) > limits.max_cutout_bytes:
        raise InvalidAlertError(f"{label} is {len(data)} bytes, above the limit of {limits.max_cutout_mb:g} MB "
                                "(ReadLimits.max_cutout_mb)", source=source)
    fast = _primary_float_image(data)
    if fast is not None:
        return fast
    try:
        # The structure is checked from the bytes before astropy reads them (open_fits); ZTF stamp headers
        # break minor FITS rules (e.g. the SIMPLE card format), which astropy's silent fix tolerates.
        hdus, _ = open_fits(data, name=label, limits=limits)
    except InvalidInputError as exc:
        raise InvalidAlertError(f"{label} is not a readable FITS image ({exc.reason})", source=source) from None
    with hdus:
        for hdu in hdus:
            if hdu.data is not None and np.ndim(hdu.data) == 2 and hdu.data.dtype.fields is None:
                return np.array(hdu.data, dtype=np.float32)
    raise InvalidAlertError(f"{label} holds no 2-D image", source=source)
