"""Postage stamps around detections and a PSF-likeness score.

The PSF-likeness score is the interim real/bogus score of the image pipeline:
the normalised correlation between a difference-image stamp and the
difference PSF.  Point-like changes score near 1; dipoles, cosmic rays and
streaks score low.  The U-Net real/bogus model replaces it once trained.
"""
from __future__ import annotations

import numpy as np

from astroray.errors import InvalidInputError
from astroray.kernels.backend import array_module_of

__all__ = ["cutouts", "psf_likeness"]


def cutouts(image, x, y, *, size: int = 63, fill: float = np.nan):
    """Stamps of ``size`` x ``size`` pixels centred on the nearest pixel to (x, y).

    Parameters
    ----------
    image : array (H, W)
        NumPy or device (CuPy) image; the stamps are cut on its device.
    x, y : array-like
        0-based pixel positions (column, row), on the host.
    size : int, optional
        Odd stamp side (63 as in ZTF and LSST alerts).
    fill : float, optional
        Value for stamp pixels that fall off the image.

    Returns
    -------
    array (n, size, size), float32, on the image's device
    """
    if size < 1 or size % 2 == 0:
        raise InvalidInputError(f"cutout size must be odd and positive, got {size}")
    xp = array_module_of(image)
    image = xp.asarray(image)
    if image.ndim != 2:
        raise InvalidInputError(f"image must be 2-D, got shape {tuple(image.shape)}")
    xi = np.rint(np.atleast_1d(np.asarray(x, dtype=np.float64))).astype(np.int64)
    yi = np.rint(np.atleast_1d(np.asarray(y, dtype=np.float64))).astype(np.int64)
    half = size // 2
    h, w = image.shape
    offsets = np.arange(-half, half + 1)
    rows = yi[:, None] + offsets[None, :]
    cols = xi[:, None] + offsets[None, :]
    # one gather with clamped indices, then the pixels off the image set to `fill`
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    r = xp.asarray(np.clip(rows, 0, h - 1)[:, :, None])
    c = xp.asarray(np.clip(cols, 0, w - 1)[:, None, :])
    out = image[r, c].astype(xp.float32)
    if not inside.all():
        out = xp.where(xp.asarray(inside), out, xp.float32(fill))
    return out


def psf_likeness(stamps: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Normalised correlation of each stamp's centre with the PSF, in [-1, 1].

    Parameters
    ----------
    stamps : ndarray (n, s, s)
        Difference-image stamps (sign-corrected so the change is positive).
    psf : ndarray (p, p)
        The difference PSF; the central min(s, p) square of both is compared.
    """
    stamps = np.asarray(stamps, np.float64)
    psf = np.asarray(psf, np.float64)
    k = min(stamps.shape[-1], psf.shape[0], psf.shape[1])
    k -= 1 - k % 2  # keep it odd so both centre on the same pixel
    def centre(a, k):
        r0, c0 = (a.shape[-2] - k) // 2, (a.shape[-1] - k) // 2
        return a[..., r0:r0 + k, c0:c0 + k]
    s = np.nan_to_num(centre(stamps, k)).reshape(len(stamps), -1)
    p = centre(psf, k).ravel()
    s = s - s.mean(axis=1, keepdims=True)
    p = p - p.mean()
    denom = np.linalg.norm(s, axis=1) * np.linalg.norm(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, s @ p / denom, 0.0)
