"""Boolean-region helpers shared by the imaging stages, on NumPy or CuPy arrays."""
from __future__ import annotations

import numpy as np

from astroray.kernels.backend import get_ndimage

__all__ = ["bounding_box", "grow"]


def bounding_box(region, margin: int = 0, xp=np) -> tuple[slice, slice] | None:
    """The slices holding every True pixel of ``region`` plus ``margin``, or None when there is none."""
    rows = xp.flatnonzero(region.any(axis=1))
    if int(rows.size) == 0:
        return None
    cols = xp.flatnonzero(region.any(axis=0))
    H, W = region.shape
    return (slice(max(int(rows[0]) - margin, 0), min(int(rows[-1]) + margin + 1, H)),
            slice(max(int(cols[0]) - margin, 0), min(int(cols[-1]) + margin + 1, W)))


def grow(region, radius: int, xp=np):
    """Binary dilation by a (2 radius + 1)^2 box: a separable maximum filter over the region's bounding box."""
    if radius <= 0:
        return region
    box = bounding_box(region, radius, xp)
    out = xp.zeros_like(region)
    if box is not None:
        out[box] = get_ndimage(xp).maximum_filter(region[box].view(xp.uint8), size=2 * radius + 1,
                                                  mode="constant").view(bool)
    return out
