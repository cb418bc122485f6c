"""The whole extraction, detection to photometry, on one device.

Pixels and images stay on the device (NumPy or CuPy arrays); only per-object
numbers go to the host, for cleaning (an order-dependent loop over ``n``
objects) and for the final catalog.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from astroray.kernels.backend import array_module_of, bincount, to_numpy
from astroray.kernels.catalog import INT_FIELDS, KERNEL_FLOAT32_FIELDS, NOISE_FIELDS, PHOTOMETRY_FIELDS, SEP_FIELDS
from astroray.kernels.extract import aperture as ap
from astroray.kernels.extract.clean import clean_survivors
from astroray.kernels.extract.detect import detect
from astroray.kernels.extract.measure import analyse, minarea_threshold

__all__ = ["ExtractOutput", "extract", "measure_photometry", "ArrayApertures"]


def _empty_columns(xp, photometry):
    """The catalog columns of no object, with the dtypes a non-empty extraction gives them."""
    names = SEP_FIELDS + NOISE_FIELDS + (PHOTOMETRY_FIELDS if photometry else ())
    return {k: xp.zeros(0, dtype=xp.int64 if k in INT_FIELDS else xp.float32 if k in KERNEL_FLOAT32_FIELDS
                        else xp.float64) for k in names}


@dataclass
class ExtractOutput:
    """Catalog columns (device arrays), the segmentation map and the absolute threshold."""

    columns: dict
    segmentation: Any
    threshold: float


def _objects(data, det, *, min_area, deblend_nthresh, deblend_cont, gain, clean, clean_param, backend):
    """Deblend, measure and clean; returns (pixels, measurements) of the surviving objects."""
    xp = array_module_of(data)
    pixels = det.pixels
    thresh = det.object_thresh
    centre = merged = base_flag = None
    if deblend_nthresh > 1 and deblend_cont < 1.0 and pixels.n_objects:
        from astroray.kernels.extract.deblend import deblend

        out = deblend(pixels, thresh, nthresh=deblend_nthresh, mincont=deblend_cont, min_area=min_area,
                      image_shape=data.shape, backend=backend)
        pixels, thresh, centre, merged, base_flag = out.pixels, out.thresh, out.centre, out.merged, out.flag
    meas = analyse(pixels, thresh, image_shape=data.shape, gain=gain, centre=centre, merged=merged,
                   base_flag=base_flag)
    n = pixels.n_objects
    if clean and n > 1:
        mthresh = minarea_threshold(pixels, min_area)
        host = {k: to_numpy(meas[k]) for k in ("x", "y", "a", "b", "cxx", "cyy", "cxy", "fdflux", "thresh",
                                               "npix", "abcor")}
        keep = clean_survivors(host["x"], host["y"], host["a"], host["b"], host["cxx"], host["cyy"],
                               host["cxy"], host["fdflux"], host["thresh"], host["npix"], host["abcor"],
                               to_numpy(mthresh), clean_param=clean_param)
        if not keep.all():
            kept = np.flatnonzero(keep)
            new_id = np.full(n, -1, dtype=np.int64)
            new_id[kept] = np.arange(kept.size)
            new_id = xp.asarray(new_id)
            sel = new_id[pixels.obj] >= 0
            pixels = pixels.take(xp.flatnonzero(sel), obj=new_id[pixels.obj][sel], n_objects=kept.size)
            kept_d = xp.asarray(kept)
            meas = {k: v[kept_d] for k, v in meas.items()}
    return pixels, meas


def extract(data, *, threshold, threshold_type="relative", error=None, mask=None, min_area=5,
            filter_kernel=None, filter_type="matched", deblend_nthresh=32, deblend_cont=0.005, clean=True,
            clean_param=1.0, gain=None, aperture_radius=5.0, aperture_subpix=5, kron_factor=2.5,
            kron_min_radius=3.5, flux_fraction=0.5, photometry=True, backend="auto"):
    """Detect, deblend, clean and measure sources (SEP's ``extract`` plus its aperture functions).

    Parameters
    ----------
    data : array (H, W) float
        Background-subtracted image, masked pixels zero (NumPy or CuPy).
    threshold, threshold_type
        Relative to ``error`` or absolute.
    error : float or array (H, W), optional
    mask : array (H, W) bool, optional
    backend : {"auto", "cpu", "cuda"}
        Where the per-object deblending kernel runs (``auto``: with the data).

    Returns
    -------
    ExtractOutput
    """
    xp = array_module_of(data)
    h, w = data.shape
    # Every step reads the image as float32 (as SEP does): convert it once, not in every aperture call.
    data = xp.ascontiguousarray(data, dtype=xp.float32)
    det = detect(data, threshold=threshold, relative=threshold_type == "relative", error=error, mask=mask,
                 kernel=filter_kernel, matched=filter_type == "matched", min_area=min_area)
    if det.pixels.n_objects == 0:  # nothing above threshold: no per-object work (no empty GPU reductions)
        return ExtractOutput(_empty_columns(xp, photometry), xp.zeros((h, w), dtype=xp.int32), det.threshold)
    pixels, meas = _objects(data, det, min_area=min_area, deblend_nthresh=deblend_nthresh,
                            deblend_cont=deblend_cont, gain=gain, clean=clean, clean_param=clean_param,
                            backend=backend)
    n = pixels.n_objects
    seg = xp.zeros((h, w), dtype=xp.int32)
    if n == 0:
        return ExtractOutput(_empty_columns(xp, photometry), seg, det.threshold)
    seg[pixels.y, pixels.x] = (pixels.obj + 1).astype(xp.int32)
    cols = {k: meas[k] for k in SEP_FIELDS}

    # Isophotal error: the pixel variances over the object (+ Poisson term).
    var_sum = bincount(pixels.obj, weights=pixels.var.astype(xp.float64), minlength=n)[:n]
    flux = cols["flux"].astype(xp.float64)
    if gain:
        var_sum = var_sum + xp.maximum(flux, 0) / gain
    has_noise = error is not None
    flux_err = xp.sqrt(var_sum) if has_noise else xp.full(n, xp.nan)
    cols["flux_err"] = flux_err
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["snr"] = xp.where(flux_err > 0, flux / flux_err, xp.nan)

    if not photometry:  # detection only: positions, moments, isophotal flux
        return ExtractOutput(cols, seg, det.threshold)
    cols.update(measure_photometry(data, cols["x"], cols["y"], cols["a"], cols["b"], cols["theta"], error=error,
                                   mask=mask, gain=gain, aperture_radius=aperture_radius,
                                   aperture_subpix=aperture_subpix, kron_factor=kron_factor,
                                   kron_min_radius=kron_min_radius, flux_fraction=flux_fraction))
    return ExtractOutput(cols, seg, det.threshold)


class ArrayApertures:
    """The aperture primitives of :func:`measure_photometry` as astroray's array code (and CUDA kernels)."""

    @staticmethod
    def sum_circle(data, x, y, r, *, error, mask, gain, subpix):
        return ap.sum_circle(data, x, y, r, error=error, mask=mask, gain=gain, subpix=subpix)

    @staticmethod
    def kron_radius(data, x, y, a, b, theta, r, *, mask):
        cxx, cyy, cxy = ap.ellipse_coeffs(a, b, theta)
        return ap.kron_radius(data, x, y, cxx, cyy, cxy, r, mask=mask)

    @staticmethod
    def sum_ellipse(data, x, y, a, b, theta, r, *, error, mask, gain, subpix):
        return ap.sum_ellipse(data, x, y, a, b, theta, r, error=error, mask=mask, gain=gain, subpix=subpix)

    @staticmethod
    def flux_radius(data, x, y, rmax, frac, *, normflux, mask, subpix):
        return ap.flux_radius(data, x, y, rmax, frac, normflux=normflux, mask=mask, subpix=subpix)

    @staticmethod
    def winpos(data, x, y, sig, *, mask):
        return ap.winpos(data, x, y, sig, mask=mask)


def measure_photometry(data, x, y, a, b, theta, *, error=None, mask=None, gain=None, aperture_radius=5.0,
                       aperture_subpix=5, kron_factor=2.5, kron_min_radius=3.5, flux_fraction=0.5,
                       apertures=ArrayApertures) -> dict:
    """SExtractor's photometry columns of the objects at ``(x, y)`` with ellipses ``(a, b, theta)``.

    The one photometry rule of both extraction implementations: ``apertures``
    supplies the primitives (:class:`ArrayApertures` here; SEP's functions in
    :mod:`astroray.imaging.extraction`).  Circular aperture of
    ``aperture_radius``; FLUX_AUTO in the Kron ellipse of
    ``max(kron_factor * kron_radius, kron_min_radius)`` (Kron radius from the
    first moment within 6 a); the radius enclosing ``flux_fraction`` of
    FLUX_AUTO; windowed positions with sigma ``2 / 2.35 * flux_radius`` (1 where
    that is not finite), at least 0.1.  Errors are NaN without ``error``.

    Returns
    -------
    dict of arrays: flux_aper, flux_aper_err, flag_aper, kron_radius, flux_auto,
    flux_auto_err, flag_auto, flux_radius, xwin, ywin, flag_win
    """
    xp = array_module_of(x)
    n = int(x.shape[0])
    has_noise = error is not None
    nan = xp.full(n, xp.nan)
    out = {}
    f, fe, fl = apertures.sum_circle(data, x, y, aperture_radius, error=error, mask=mask, gain=gain,
                                     subpix=aperture_subpix)
    out["flux_aper"], out["flux_aper_err"], out["flag_aper"] = f, fe if has_noise else nan, fl

    # Degenerate or non-finite ellipses (b = 0, NaN moments of non-positive objects) get a small round
    # stand-in, and a float32 theta of pi/2 that rounds just above it in float64 (vertical streaks) is
    # clipped: SEP rejects both.
    a = xp.asarray(a, dtype=xp.float64)
    b = xp.asarray(b, dtype=xp.float64)
    theta = xp.asarray(theta, dtype=xp.float64)
    a = xp.where(xp.isfinite(a) & (a > 0), a, 0.5)
    b = xp.where(xp.isfinite(b) & (b > 0), xp.minimum(b, a), 0.5 * a)
    theta = xp.clip(xp.where(xp.isfinite(theta), theta, 0.0), -np.pi / 2, np.pi / 2)
    kr, kflag = apertures.kron_radius(data, x, y, a, b, theta, 6.0, mask=mask)
    kr = xp.where(xp.isfinite(kr), kr, 0.0)
    r_auto = xp.maximum(kron_factor * kr, kron_min_radius)
    fa, fae, fla = apertures.sum_ellipse(data, x, y, a, b, theta, r_auto, error=error, mask=mask, gain=gain,
                                         subpix=1)
    out["kron_radius"], out["flux_auto"] = kr, fa
    out["flux_auto_err"] = fae if has_noise else nan
    out["flag_auto"] = fla.astype(xp.int64) | kflag.astype(xp.int64)

    fr, _ = apertures.flux_radius(data, x, y, xp.maximum(6.0 * a, 1.0), flux_fraction,
                                  normflux=xp.where(fa > 0, fa, 1.0), mask=mask, subpix=5)
    flux_radius = xp.where(fa > 0, fr, xp.nan)
    out["flux_radius"] = flux_radius
    sig = 2.0 / 2.35 * xp.where(xp.isfinite(flux_radius), flux_radius, 1.0)
    xw, yw, fw = apertures.winpos(data, x, y, xp.maximum(sig, 0.1), mask=mask)
    out["xwin"], out["ywin"], out["flag_win"] = xw, yw, fw
    return out
