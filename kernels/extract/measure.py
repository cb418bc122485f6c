"""Per-object measurements from a segmentation map, as ``xp`` array code."""
from __future__ import annotations

import numpy as np

from astroray.kernels.backend import array_module_of

__all__ = ["moments_errors"]


def moments_errors(segmentation, data, error, catalog, *, gain=None, filtered=None):
    """SEP's ``errx2, erry2, errxy`` of each segmentation label.

    ``sum(var * dx^2) / cflux^2`` over the object's pixels, with ``dx`` from
    the catalog barycentre and the singular-ellipse correction of SEP's
    ``analyse``; ``var`` adds ``filtered / gain`` for positive pixels when a
    gain is given.
    """
    xp = array_module_of(data)
    seg = xp.asarray(segmentation)
    n = len(catalog)
    ys, xs = xp.nonzero(seg)
    lab = seg[ys, xs].astype(xp.int64) - 1
    if np.ndim(error) == 0:
        var = xp.full(lab.shape, float(error) ** 2, dtype=xp.float64)
    else:
        var = xp.asarray(error, dtype=xp.float64)[ys, xs] ** 2
    if gain:
        fv = xp.asarray(filtered if filtered is not None else data, dtype=xp.float64)[ys, xs]
        var = var + xp.where(fv > 0, fv / gain, 0.0)
    cx = xp.asarray(np.asarray(catalog["x"], np.float64))
    cy = xp.asarray(np.asarray(catalog["y"], np.float64))
    rv = xp.asarray(np.asarray(catalog["cflux"], np.float64))
    dx = xs - cx[lab]
    dy = ys - cy[lab]
    ex2 = xp.bincount(lab, weights=var * dx * dx, minlength=n) / rv ** 2
    ey2 = xp.bincount(lab, weights=var * dy * dy, minlength=n) / rv ** 2
    exy = xp.bincount(lab, weights=var * dx * dy, minlength=n) / rv ** 2
    vsum = xp.bincount(lab, weights=var, minlength=n) * (0.08333 / rv ** 2)
    x2 = xp.asarray(np.asarray(catalog["x2"], np.float64))
    y2 = xp.asarray(np.asarray(catalog["y2"], np.float64))
    xy = xp.asarray(np.asarray(catalog["xy"], np.float64))
    singular = ((x2 - 0.0833333) * (y2 - 0.0833333) - xy * xy < 0.00694) & (ex2 * ey2 - exy * exy < vsum * vsum)
    ex2 = xp.where(singular, ex2 + vsum, ex2)
    ey2 = xp.where(singular, ey2 + vsum, ey2)
    return ex2, ey2, exy
