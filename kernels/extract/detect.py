"""Detection as ``xp`` array code: filter, threshold, 8-connected labels, pixel lists.

SExtractor scans the image once (Lutz's algorithm); here the same pixel sets
come from a filtered image, a threshold mask and ``ndimage.label`` with
8-connectivity (SciPy on the CPU, ``cupyx.scipy.ndimage`` on the GPU), after
which every object is a contiguous run of a pixel list sorted by object.
Objects are numbered in the order SExtractor finishes them (by their last
row, then by the end of that row's run), which is also SEP's output order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from astroray.kernels.backend import array_module_of, bincount, get_ndimage

__all__ = ["convolve_image", "matched_filter", "PixelList", "Detection", "ThresholdRule", "threshold_rule", "detect"]


def _normalised(kernel, xp):
    k = xp.asarray(kernel, dtype=xp.float32)
    return (k / xp.abs(k).sum()).astype(xp.float32)


def _shifted_sum(data, weights_fn, kh, kw, xp):
    """sum_{i,j} weights_fn(i, j, window) over the kernel, zero outside the image (SEP's clipping)."""
    h, w = data.shape
    cy, cx = kh // 2, kw // 2
    padded = xp.pad(data, ((cy, kh - 1 - cy), (cx, kw - 1 - cx)))
    out = xp.zeros((h, w), dtype=data.dtype)
    for i in range(kh):
        for j in range(kw):
            out += weights_fn(i, j, padded[i:i + h, j:j + w])
    return out


def convolve_image(data, kernel):
    """Correlate ``data`` with ``kernel / sum|kernel|``, zero beyond the edges (float32, SEP's order)."""
    xp = array_module_of(data)
    k = _normalised(kernel, xp)
    kh, kw = k.shape
    d = xp.asarray(data, dtype=xp.float32)
    return _shifted_sum(d, lambda i, j, win: k[i, j] * win, kh, kw, xp)


def matched_filter(data, var, kernel):
    """``sum(k d / v) / sqrt(sum(k^2 / v))`` over the kernel, skipping pixels with zero variance."""
    xp = array_module_of(data)
    k = _normalised(kernel, xp)
    kh, kw = k.shape
    d = xp.asarray(data, dtype=xp.float32)
    v = xp.asarray(var, dtype=xp.float32)
    inv = xp.where(v != 0, 1.0 / xp.where(v != 0, v, 1), 0).astype(xp.float32)  # inf variance -> 0
    num = _shifted_sum(d * inv, lambda i, j, win: k[i, j] * win, kh, kw, xp)
    den = _shifted_sum(inv, lambda i, j, win: (k[i, j] * k[i, j]) * win, kh, kw, xp)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (num / xp.sqrt(den)).astype(xp.float32)


@dataclass
class PixelList:
    """Pixels of all objects, sorted by object (raster order inside each).

    Attributes
    ----------
    obj : array (N,) int64
        Object index of each pixel, ``0 .. n_objects - 1``.
    x, y : array (N,) int64
    value, cvalue : array (N,) float32
        Image and filtered-image values.
    var : array (N,) float32
        Pixel variance (0 without noise information).
    thresh : array (N,) float32
        Detection threshold at the pixel.
    n_objects : int
    start, count : array (n,) int64
        First pixel and number of pixels of each object.
    """

    obj: Any
    x: Any
    y: Any
    value: Any
    cvalue: Any
    var: Any
    thresh: Any
    n_objects: int
    start: Any
    count: Any

    def take(self, index, obj=None, n_objects=None):
        """The pixels at ``index`` (optionally renumbered), re-sorted by object."""
        o = self.obj[index] if obj is None else obj
        n = self.n_objects if n_objects is None else int(n_objects)
        sub = PixelList(o, self.x[index], self.y[index], self.value[index], self.cvalue[index], self.var[index],
                        self.thresh[index], n, None, None)
        return sub.sorted()

    def sorted(self):
        xp = array_module_of(self.x)
        key = (self.obj.astype(xp.int64) << 42) | (self.y.astype(xp.int64) << 21) | self.x.astype(xp.int64)
        order = xp.argsort(key)
        out = PixelList(self.obj[order], self.x[order], self.y[order], self.value[order], self.cvalue[order],
                        self.var[order], self.thresh[order], self.n_objects, None, None)
        out.count = bincount(out.obj, minlength=self.n_objects)[: self.n_objects].astype(xp.int64)
        out.start = (xp.cumsum(out.count) - out.count).astype(xp.int64)
        return out


@dataclass(frozen=True)
class ThresholdRule:
    """How a detection threshold meets the noise: the one rule both extraction implementations follow.

    Attributes
    ----------
    value : float
        The threshold handed to the detector.
    noise : None, float or array (H, W)
        The 1-sigma error ``value`` is relative to; None for an absolute ``value``.
    absolute : float
        The absolute threshold where it is one number, else NaN (a threshold map).
    """

    value: float
    noise: Any
    absolute: float


def threshold_rule(threshold: float, *, relative: bool, error=None) -> ThresholdRule:
    """What a detector gets for ``threshold`` (relative to ``error`` or absolute) and the noise it has.

    * relative: ``threshold`` times ``error`` (a number or a map; required);
    * absolute with a scalar ``error``: ``threshold / error`` relative to it
      (SEP's threshold is relative whenever it is given an error);
    * absolute with an error map, or without an error: ``threshold`` in
      image units, detected without the map (SEP cannot combine an absolute
      threshold with a map; position errors still come from the map).

    Raises
    ------
    ValueError
        A relative threshold without an error.
    """
    threshold = float(threshold)
    if relative:
        if error is None:
            raise ValueError("a relative threshold needs an error")
        if np.ndim(error) == 0:
            absolute = float(np.float32(np.float32(threshold) * np.float32(float(error))))
            return ThresholdRule(threshold, float(error), absolute)
        return ThresholdRule(threshold, error, float("nan"))
    if error is not None and np.ndim(error) == 0:
        return ThresholdRule(threshold / float(error), float(error), threshold)
    return ThresholdRule(threshold, None, threshold)


@dataclass
class Detection:
    """What :func:`detect` returns."""

    pixels: PixelList
    filtered: Any  # the filtered image (or the image itself without a filter)
    object_thresh: Any  # (n,) float32, SEP's per-object threshold
    threshold: float  # the absolute threshold when it is one number, else NaN


def detect(data, *, threshold, relative, error=None, mask=None, kernel=None, matched=True, min_area=5):
    """Pixels above threshold, grouped into 8-connected objects of at least ``min_area`` pixels.

    Parameters
    ----------
    data : array (H, W) float
        Background-subtracted image; masked pixels already zero.
    threshold : float
        Relative (times ``error``) or absolute.
    relative : bool
    error : float or array (H, W), optional
        1-sigma noise; required for a relative threshold.
    mask : array (H, W) bool, optional
        Masked pixels (already zero in ``data``) are never detected with an
        error map; with a scalar or no error they may join an object, as in SEP.
    kernel : array (h, w), optional
        Detection filter; ``None`` detects on the image itself.
    matched : bool
        With a kernel and an error map, threshold the matched-filter
        significance (SEP's ``filter_type="matched"``).
    min_area : int

    Returns
    -------
    Detection
    """
    xp = array_module_of(data)
    h, w = data.shape
    data = xp.asarray(data, dtype=xp.float32)
    noise_map = error is not None and np.ndim(error) != 0
    if error is None:
        var_img = None
        var_scalar = np.float32(0.0)
    elif noise_map:
        e = xp.asarray(error, dtype=xp.float32)
        var_img = (e * e).astype(xp.float32)
        var_scalar = None
    else:
        var_img = None
        var_scalar = np.float32(float(error) ** 2)

    cimg = data if kernel is None else convolve_image(data, kernel)
    rule = threshold_rule(threshold, relative=relative, error=error)
    map_threshold = rule.noise is not None and np.ndim(rule.noise) != 0
    if map_threshold:
        thresh_img = (np.float32(rule.value) * xp.asarray(rule.noise, dtype=xp.float32)).astype(xp.float32)
        scalar_threshold = float("nan")
    else:
        thresh_img = None
        scalar_threshold = float(np.float32(rule.absolute))  # SEP compares in float32

    if kernel is not None and matched and map_threshold:
        v = var_img if mask is None else xp.where(mask, xp.inf, var_img)
        above = matched_filter(data, v, kernel) > np.float32(threshold)
    elif thresh_img is not None:
        above = cimg > thresh_img
    else:
        above = cimg > np.float32(scalar_threshold)
    if mask is not None and noise_map:
        # SEP gives masked pixels an infinite noise: with a noise map they never pass the
        # threshold. With a scalar noise they are zeros that may join an object (as in SEP).
        above &= ~mask

    ndi = get_ndimage(xp)
    labels, nlab = ndi.label(above, structure=xp.ones((3, 3), dtype=bool))
    nlab = int(nlab)
    flat = labels.ravel()
    idx = xp.flatnonzero(flat)  # raster order
    lab = flat[idx].astype(xp.int64)
    counts = bincount(lab, minlength=nlab + 1)
    keep = counts >= min_area
    keep[0] = False
    sel = keep[lab]
    idx, lab = idx[sel], lab[sel]
    # Renumber in SExtractor's completion order: last row, then the end of that row's run.
    # Last pixel (raster order) of each label: sort by (label, index), take each run's end.
    # (A plain scatter `last[lab] = idx` leaves the winner undefined on the GPU.)
    srt = xp.sort((lab << 32) | idx.astype(xp.int64))
    run_end = xp.flatnonzero(xp.diff(srt >> 32, append=xp.asarray([-1], dtype=xp.int64)) != 0)
    last = xp.zeros(nlab + 1, dtype=xp.int64)
    last[srt[run_end] >> 32] = srt[run_end] & 0xFFFFFFFF
    kept = xp.flatnonzero(keep)
    n = int(kept.shape[0])
    rank = xp.zeros(nlab + 1, dtype=xp.int64)
    rank[kept[xp.argsort(last[kept])]] = xp.arange(n)
    obj = rank[lab]
    y, x = idx // w, idx % w
    value = data.ravel()[idx]
    cvalue = cimg.ravel()[idx]
    var = var_img.ravel()[idx] if var_img is not None else xp.full(idx.shape, var_scalar, dtype=xp.float32)
    thresh = (thresh_img.ravel()[idx] if thresh_img is not None
              else xp.full(idx.shape, np.float32(scalar_threshold), dtype=xp.float32))
    pixels = PixelList(obj, x, y, value, cvalue, var, thresh, n, None, None).sorted()

    if thresh_img is None:
        object_thresh = xp.full(n, np.float32(scalar_threshold), dtype=xp.float32)
    else:
        # With a threshold map, SEP 1.4 gives each object the mean threshold of its pixels.
        tsum = bincount(pixels.obj, weights=pixels.thresh.astype(xp.float64), minlength=n)[:n]
        object_thresh = (tsum / xp.maximum(pixels.count, 1)).astype(xp.float32)
    return Detection(pixels, cimg, object_thresh, scalar_threshold)
