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


def _decode(data: bytes, source, label) -> np.ndarray:
    from astropy.io import fits

    try:
        if data[:2] == _GZIP_MAGIC:
            data = gzip.decompress(data)
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
