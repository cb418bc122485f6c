"""The PSF of an image, measured from its own stars: an oversampled empirical PSF (ePSF).

:class:`PSFEstimator` takes an :class:`~astroray.records.Exposure`, a
:class:`~astroray.io.survey.SurveyImage` or a plain array and returns a
:class:`PSFResult`: the PSF stamp the differencer takes (odd, centred, summing
to 1, at the image's pixel sampling), the oversampled ePSF it was cut from,
on large frames a ``(ny, nx, h, w)`` grid of them, and the FWHM, axes and
ellipticity.

How (the effective PSF of Anderson & King 2000, solved here as one linear fit):

1. **Stars.** :class:`~astroray.imaging.extraction.SourceExtractor` with
   photometry on the background-subtracted image.  Kept: not on the edge
   (``reject_flags``), S/N >= ``min_snr``, no flagged pixel in the
   core, peak below ``saturation_margin`` of the saturation level, no brighter
   than ``neighbour_flux_fraction`` neighbour within the stamp and none at all
   within ``blend_radius_fwhm``, and on the stellar locus: size (adaptive
   Gaussian-weighted second moments) within ``locus_width`` (in log) of the
   densest cluster of sizes (galaxies are larger, cosmic rays smaller),
   ellipticity near the stars' median.
2. **ePSF.** The ePSF is the pixel-integrated PSF on a grid ``oversampling``
   times finer than the pixels.  Each star pixel samples it, shifted by the
   star's sub-pixel centre and scaled by its flux; cubic-convolution
   interpolation between grid nodes makes every pixel a linear function of
   the nodes, so the nodes follow from one sparse weighted least-squares fit
   over all stars' pixels (weights 1/variance), with a small curvature
   penalty where few pixels sample a node.
3. **Stars again.** Each star's centre, flux and local sky are fitted with
   the new ePSF (Gauss-Newton); pixels more than ``clip_sigma`` off (cosmic
   rays, faint neighbours) and stars whose fit is much worse than the others'
   (binaries, galaxies) drop out; the ePSF's centroid is put on its middle
   node.  Steps 2-3 repeat until the centres move less than
   ``center_tolerance``.
4. **Grid.** With ``grid``, each tile's ePSF is fitted again from the stars
   nearest its centre (at least ``grid_min_stars``), the centres and fluxes
   kept from the whole-frame fit.

The native stamp is the ePSF at whole-pixel offsets from its centre:
exactly what a star centred on a pixel puts in the pixels around it.

With fewer than ``min_stars_empirical`` stars (a cutout, a sparse field) an
oversampled ePSF is not constrained; ``model="auto"`` then fits an elliptical
Moffat profile, integrated over the pixels, jointly to the few stars there
are (shape shared, centre, flux and sky per star), and samples it on the same
grid.  Fewer than ``min_stars`` raise :class:`InvalidInputError`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError
from astroray.imaging.background import Background, BackgroundConfig
from astroray.imaging.extraction import ExtractionConfig, SourceExtractor
from astroray.records import Exposure, MaskBits

__all__ = ["PSFConfig", "PSFResult", "PSFEstimator", "estimate_psf", "psf_shape", "sample_epsf", "adaptive_moments"]

_BAD_BITS = int(MaskBits.BAD | MaskBits.SAT | MaskBits.CR | MaskBits.NO_DATA)


class PSFConfig(AstrorayConfig):
    """Options of :class:`PSFEstimator`.

    Attributes
    ----------
    stamp_size : int or None
        Odd side of the PSF stamp in pixels; None: ``2 ceil(stamp_radius_fwhm
        * FWHM) + 1`` within ``[min_stamp_size, max_stamp_size]``.
    stamp_radius_fwhm : float
        Stamp half-size in FWHM when ``stamp_size`` is None.
    min_stamp_size, max_stamp_size : int
        Bounds of the automatic stamp size.
    oversampling : int or None
        ePSF nodes per pixel; None: 4 below a FWHM of 2 px, 3 below 3 px, else 2.
    model : {"auto", "empirical", "moffat"}
        Empirical ePSF, elliptical Moffat profile, or the ePSF from
        ``min_stars_empirical`` stars up and the Moffat below.
    min_stars : int
        Fewer usable stars than this raise :class:`InvalidInputError`.
    min_stars_empirical : int
        Stars needed for the empirical ePSF under ``model="auto"``.
    max_stars : int
        At most this many stars (highest S/N first).
    min_snr : float
        Isophotal S/N of a PSF star.
    reject_flags : int
        Extraction flags that reject a star (default: truncated by the edge,
        deblending overflow, singular moments).  Deblended stars (flag 1)
        stay: the neighbour tests decide whether their neighbour matters.
    saturation_margin : float
        A star's brightest pixel (sky included) must stay below this fraction
        of ``meta['saturation']`` (non-linearity sets in before saturation).
    neighbour_flux_fraction : float
        A neighbour inside the stamp brighter than this fraction of the star
        rejects it.
    blend_radius_fwhm : float
        Any neighbour closer than this many FWHM rejects the star.
    locus_width : float
        Half-width, in natural log of the size (adaptive second moments), of
        the stellar locus.
    max_ellipticity_excess : float
        A star's ``1 - b/a`` may exceed the candidates' median by this much.
    max_iterations : int
        ePSF/star-fit rounds.
    center_tolerance : float
        Stop when no star centre moves more than this (pixels).
    clip_sigma : float
        Pixels whose residual exceeds this many sigma (scaled by the star's own
        residual scatter) drop out of the fits.
    star_clip : float
        Stars whose reduced chi^2 exceeds this many times the median drop out.
    regularization : float
        Curvature penalty relative to the mean data weight of a node.
    grid : (int, int), "auto" or None
        PSF grid ``(ny, nx)``; "auto": one tile per ``grid_tile_size`` pixels
        per axis (1 x 1, no grid, below 1.5 tiles); None: no grid.
    grid_tile_size : int
        Tile side for ``grid="auto"``.
    grid_min_stars : int
        Stars fitting each tile's ePSF (the nearest to its centre).
    bad_bits : int
        Mask bits of pixels that never enter a fit.
    extraction : ExtractionConfig
        The star finder (needs photometry for the sizes and windowed centres).
    background : BackgroundConfig
        Background subtracted before finding and fitting stars (unless the
        exposure's ``meta['background_subtracted']``).
    """

    stamp_size: int | None = None
    stamp_radius_fwhm: float = Field(default=3.0, gt=0)
    min_stamp_size: int = Field(default=15, ge=5)
    max_stamp_size: int = Field(default=65, ge=5)
    oversampling: int | None = Field(default=None, ge=1, le=8)
    model: Literal["auto", "empirical", "moffat"] = "auto"
    min_stars: int = Field(default=3, ge=1)
    min_stars_empirical: int = Field(default=10, ge=1)
    max_stars: int = Field(default=300, ge=1)
    min_snr: float = Field(default=30.0, gt=0)
    reject_flags: int = 0x2 | 0x4 | 0x8
    saturation_margin: float = Field(default=0.8, gt=0, le=1)
    neighbour_flux_fraction: float = Field(default=0.05, ge=0)
    blend_radius_fwhm: float = Field(default=2.0, ge=0)
    locus_width: float = Field(default=0.3, gt=0)
    max_ellipticity_excess: float = Field(default=0.15, gt=0)
    max_iterations: int = Field(default=8, ge=1)
    center_tolerance: float = Field(default=2e-3, gt=0)
    clip_sigma: float = Field(default=5.0, gt=0)
    star_clip: float = Field(default=4.0, gt=1)
    regularization: float = Field(default=3e-3, ge=0)
    grid: tuple[int, int] | Literal["auto"] | None = "auto"
    grid_tile_size: int = Field(default=1024, ge=64)
    grid_min_stars: int = Field(default=25, ge=1)
    bad_bits: int = _BAD_BITS
    extraction: ExtractionConfig = Field(default_factory=lambda: ExtractionConfig(
        threshold=5.0, min_area=5, deblend_cont=0.005, photometry=True, segmentation=False))
    background: BackgroundConfig = Field(default_factory=BackgroundConfig)

    @field_validator("stamp_size")
    @classmethod
    def _odd(cls, value):
        if value is not None and (value < 5 or value % 2 == 0):
            raise ValueError("stamp_size must be odd and >= 5")
        return value

    @field_validator("grid")
    @classmethod
    def _grid(cls, value):
        if isinstance(value, tuple) and min(value) < 1:
            raise ValueError("grid must be (ny, nx) with both >= 1")
        return value


@dataclass
class PSFResult:
    """What :meth:`PSFEstimator.run` returns.

    Attributes
    ----------
    psf : ndarray (h, w) float32
        The whole frame's PSF stamp (odd, centred, summing to 1).
    grid : ndarray (ny, nx, h, w) float32 or None
        Per-tile stamps (``Differencer.run(psf_science=...)`` takes them), or
        None when one PSF serves the frame.
    epsf : ndarray float64
        The oversampled ePSF (node spacing ``1 / oversampling`` px, centre node
        in the middle, sampled stamp summing to 1).
    oversampling : int
    fwhm, fwhm_major, fwhm_minor : float
        Half-maximum size of the ePSF in pixels: the diameter of the circle of
        the same area, and the full axes of the ellipse of the same second
        moments.
    ellipticity : float
        ``1 - fwhm_minor / fwhm_major``.
    theta : float
        Position angle of the major axis, degrees counter-clockwise from +x.
    grid_fwhm, grid_ellipticity : ndarray (ny, nx) or None
    stars : DataFrame
        Every candidate with ``x, y, flux, sky, snr, chi2, used`` and why it was
        dropped (``reason``).
    n_stars : int
        Stars in the final fit.
    exposure : Exposure or None
        The input completed with ``psf`` (for Exposure and SurveyImage inputs).
    meta : dict
        Iterations, timings (ms), the stamp size, the tile size.
    """

    psf: np.ndarray
    grid: np.ndarray | None
    epsf: np.ndarray
    oversampling: int
    fwhm: float
    fwhm_major: float
    fwhm_minor: float
    ellipticity: float
    theta: float
    grid_fwhm: np.ndarray | None
    grid_ellipticity: np.ndarray | None
    stars: pd.DataFrame
    n_stars: int
    exposure: Exposure | None = None
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- cubic-convolution sampling


def _keys_weights(t: np.ndarray, a: float = -0.5) -> tuple[np.ndarray, np.ndarray]:
    """Weights (and their derivatives in t) of nodes ``i0-1 .. i0+2`` for fractional position ``t``."""
    t = np.asarray(t, np.float64)
    s = np.stack([t + 1.0, t, 1.0 - t, 2.0 - t], axis=-1)  # distances to the four nodes
    sign = np.array([1.0, 1.0, -1.0, -1.0])  # d(distance)/dt
    inner = s <= 1.0
    w = np.where(inner, ((a + 2) * s - (a + 3)) * s * s + 1.0, ((a * s - 5 * a) * s + 8 * a) * s - 4 * a)
    dw = np.where(inner, (3 * (a + 2) * s - 2 * (a + 3)) * s, (3 * a * s - 10 * a) * s + 8 * a) * sign
    return w, dw


def _node_coords(offset: np.ndarray, centre: int, oversampling: int):
    """Node index of the first of the four nodes and the fractional position, for pixel offsets."""
    u = centre + np.asarray(offset, np.float64) * oversampling
    i0 = np.floor(u).astype(np.int64)
    return i0 - 1, u - i0


def sample_epsf(epsf: np.ndarray, oversampling: int, dy, dx, *, derivatives: bool = False):
    """The ePSF at pixel offsets ``(dy, dx)`` from its centre (cubic convolution between nodes).

    Offsets beyond the grid give 0.  With ``derivatives``, also returns the
    derivatives with respect to ``dy`` and ``dx``.
    """
    G = epsf.shape[0]
    c = G // 2
    dy, dx = np.broadcast_arrays(np.asarray(dy, np.float64), np.asarray(dx, np.float64))
    iy, ty = _node_coords(dy, c, oversampling)
    ix, tx = _node_coords(dx, c, oversampling)
    inside = (iy >= 0) & (iy + 3 < G) & (ix >= 0) & (ix + 3 < G)
    iy, ix = np.where(inside, iy, 0), np.where(inside, ix, 0)
    wy, dwy = _keys_weights(ty)
    wx, dwx = _keys_weights(tx)
    k = np.arange(4)
    block = epsf[(iy[..., None, None] + k[:, None]), (ix[..., None, None] + k[None, :])]  # (..., 4, 4)
    value = np.einsum("...ab,...a,...b->...", block, wy, wx) * inside
    if not derivatives:
        return value
    d_y = np.einsum("...ab,...a,...b->...", block, dwy, wx) * inside * oversampling
    d_x = np.einsum("...ab,...a,...b->...", block, wy, dwx) * inside * oversampling
    return value, d_y, d_x


# --------------------------------------------------------------------------- shape measurement


def psf_shape(epsf: np.ndarray, oversampling: int = 1) -> dict:
    """FWHM (area-equivalent and along the axes), ellipticity and angle of a PSF image.

    The half-maximum region (the connected part holding the peak) of the PSF,
    resampled to at least 8 nodes per pixel by cubic interpolation: its area
    gives ``fwhm = 2 sqrt(area / pi)``; its second moments give the axes of
    the uniform ellipse with the same moments (``fwhm_major``,
    ``fwhm_minor``, in pixels), ``ellipticity = 1 - minor / major`` and the
    major axis' angle ``theta`` (degrees from +x, counter-clockwise).
    """
    from scipy import ndimage

    img = np.asarray(epsf, np.float64)
    zoom = max(1, int(math.ceil(8 / oversampling)))
    if zoom > 1:  # exact node spacing 1/zoom (ndimage.zoom would stretch the grid to its end points)
        fine = np.arange(0.0, img.shape[0] - 1 + 1e-9, 1.0 / zoom)
        fine_x = np.arange(0.0, img.shape[1] - 1 + 1e-9, 1.0 / zoom)
        yy, xx = np.meshgrid(fine, fine_x, indexing="ij")
        img = ndimage.map_coordinates(img, [yy, xx], order=3, mode="nearest")
    step = 1.0 / (oversampling * zoom)  # pixels per node
    peak = img.max()
    if not peak > 0:
        raise InvalidInputError("the PSF has no positive peak")
    above = img >= 0.5 * peak
    labels, _ = ndimage.label(above)
    region = labels == labels[np.unravel_index(np.argmax(img), img.shape)]
    yy, xx = np.nonzero(region)
    area = region.sum() * step * step
    cy, cx = yy.mean(), xx.mean()
    cyy = ((yy - cy) ** 2).mean() * step * step + step * step / 12
    cxx = ((xx - cx) ** 2).mean() * step * step + step * step / 12
    cxy = ((yy - cy) * (xx - cx)).mean() * step * step
    evals, evecs = np.linalg.eigh(np.array([[cxx, cxy], [cxy, cyy]]))
    minor, major = 4.0 * np.sqrt(np.maximum(evals, 0.0))
    vx, vy = evecs[:, 1]
    theta = math.degrees(math.atan2(vy, vx)) % 180.0
    return {"fwhm": float(2.0 * math.sqrt(area / math.pi)), "fwhm_major": float(major),
            "fwhm_minor": float(minor), "ellipticity": float(1.0 - minor / major) if major > 0 else 0.0,
            "theta": float(theta)}


# --------------------------------------------------------------------------- the stage


@dataclass
class _Stars:
    """Stamp cubes of the stars being fitted (n, S, S)."""

    data: np.ndarray  # background-subtracted pixels
    weight: np.ndarray  # 1/variance, 0 for flagged pixels
    y0: np.ndarray  # frame row of stamp pixel (0, 0)
    x0: np.ndarray
    yc: np.ndarray  # current centres (frame pixels)
    xc: np.ndarray
    flux: np.ndarray
    sky: np.ndarray
    active: np.ndarray  # bool: still in the fit


class PSFEstimator:
    """Measure an image's PSF from its stars as a configure-once stage.

    Parameters
    ----------
    config : PSFConfig, optional

    Examples
    --------
    >>> est = PSFEstimator(PSFConfig(grid=None))
    >>> res = est.run(exposure)                         # doctest: +SKIP
    >>> res.psf.shape, res.fwhm, res.ellipticity        # doctest: +SKIP
    >>> exposure = res.exposure                         # the input with this PSF
    """

    def __init__(self, config: PSFConfig | None = None):
        self.config = config or PSFConfig()
        self.extractor = SourceExtractor(self.config.extraction)
        self.background = Background(self.config.background)

    def __reduce__(self):
        return (type(self), (self.config,))

    def run(self, source, *, variance=None, mask=None, saturation: float | None = None,
            background_subtracted: bool | None = None, name: str | None = None) -> PSFResult:
        """Measure the PSF of ``source``.

        Parameters
        ----------
        source : Exposure, SurveyImage or ndarray (H, W)
            The image; an Exposure or SurveyImage brings its variance, mask,
            saturation level and background state.
        variance, mask : ndarray (H, W), optional
            For an array input (or to override the record's).  Without a
            variance, the background RMS squared is used.
        saturation : float, optional
            Saturation level (default ``meta['saturation']``).
        background_subtracted : bool, optional
            Whether the image's sky is already removed (default from the meta;
            False for arrays).
        name : str, optional
            What error messages call the input.

        Returns
        -------
        PSFResult

        Raises
        ------
        InvalidInputError
            Not a 2-D image, fewer than ``min_stars`` usable stars, or a fit
            that does not converge to a positive PSF.
        """
        t_start = time.perf_counter()
        image, var, msk, meta, record = self._unpack(source, variance, mask)
        name = name or meta.get("exposure_id") or None
        cfg = self.config
        if saturation is None:
            saturation = meta.get("saturation")
        if background_subtracted is None:
            background_subtracted = bool(meta.get("background_subtracted", False))
        bad = ~np.isfinite(image) | ((msk & np.uint32(cfg.bad_bits)) != 0)
        if var is not None:
            bad |= ~np.isfinite(var) | (var <= 0)
        if bad.all():
            raise InvalidInputError("every pixel is flagged or without data: no stars to measure a PSF from",
                                    source=name)
        raw = np.where(np.isfinite(image), image, 0.0).astype(np.float64)
        if background_subtracted:
            sky = np.zeros_like(raw)
            if var is None:
                rms = self.background.run(raw.astype(np.float32), mask=bad, source=name).global_rms
                var = np.full(raw.shape, rms * rms)
        else:
            bkg = self.background.run(raw.astype(np.float32), mask=bad, source=name)
            sky = np.asarray(bkg.background, np.float64)
            if var is None:
                var = np.asarray(bkg.rms, np.float64) ** 2
        data = raw - sky
        var = np.where(bad, 0.0, np.asarray(var, np.float64))
        t = {"prepare": 1e3 * (time.perf_counter() - t_start)}

        t0 = time.perf_counter()
        cat = self.extractor.run(np.where(bad, 0.0, data).astype(np.float32),
                                 variance=np.where(bad, 1.0, var).astype(np.float32), mask=bad,
                                 source=name).catalog
        t["extract"] = 1e3 * (time.perf_counter() - t0)
        t0 = time.perf_counter()
        candidates, fwhm0 = self._select(cat, raw, data, bad, saturation, name)
        size = self._stamp_size(fwhm0)
        os_ = cfg.oversampling or (4 if fwhm0 < 2.0 else 3 if fwhm0 < 3.0 else 2)
        stars = self._cut(data, var, bad, candidates, size)
        t["select"] = 1e3 * (time.perf_counter() - t0)
        if int(stars.active.sum()) < cfg.min_stars:
            raise InvalidInputError(
                f"only {int(stars.active.sum())} isolated, unsaturated, unblended stars at S/N >= {cfg.min_snr:g} "
                f"with a whole {size}x{size} stamp in the frame (need min_stars={cfg.min_stars}); give the PSF, "
                "or lower min_snr/min_stars", source=name)

        t0 = time.perf_counter()
        n_usable = int(stars.active.sum())
        model = cfg.model if cfg.model != "auto" else ("empirical" if n_usable >= cfg.min_stars_empirical else "moffat")
        moffat = None
        if model == "empirical":
            epsf, iterations, _ = self._fit(stars, size, os_, name)
        else:
            epsf, moffat = self._fit_moffat(stars, size, os_, fwhm0, name)
            iterations = 1
        t["fit"] = 1e3 * (time.perf_counter() - t0)
        psf = _native_stamp(epsf, os_, size)
        shape = psf_shape(epsf, os_)

        t0 = time.perf_counter()
        grid, grid_fwhm, grid_ell, tiles = None, None, None, self._tiles(image.shape)
        if tiles is not None and tiles != (1, 1) and model == "empirical":
            grid, grid_fwhm, grid_ell = self._grid(stars, size, os_, epsf, tiles, image.shape, name)
        t["grid"] = 1e3 * (time.perf_counter() - t0)
        t["total"] = 1e3 * (time.perf_counter() - t_start)

        table = candidates.assign(
            x=stars.xc, y=stars.yc, flux=stars.flux, sky=stars.sky, used=stars.active,
            reason=np.where(stars.active, "", candidates["reason"].where(candidates["reason"] != "", "clipped")))
        exposure = None
        if record is not None:
            new_meta = dict(meta, psf_fwhm=shape["fwhm"], psf_ellipticity=shape["ellipticity"],
                            psf_n_stars=int(stars.active.sum()), psf_source="estimated from the image's stars")
            exposure = Exposure(image=record.image, variance=record.variance, mask=record.mask, psf=psf,
                                header=record.header, meta=new_meta)
        return PSFResult(psf=psf, grid=grid, epsf=epsf, oversampling=os_, fwhm=shape["fwhm"],
                         fwhm_major=shape["fwhm_major"], fwhm_minor=shape["fwhm_minor"],
                         ellipticity=shape["ellipticity"], theta=shape["theta"], grid_fwhm=grid_fwhm,
                         grid_ellipticity=grid_ell, stars=table, n_stars=int(stars.active.sum()),
                         exposure=exposure,
                         meta={"model": model, "moffat": moffat, "iterations": iterations, "stamp_size": size,
                               "fwhm_initial": fwhm0,
                               "grid_shape": None if grid is None else tuple(grid.shape[:2]), "timings_ms": t,
                               "n_candidates": int(len(candidates))})

    __call__ = run

    # ------------------------------------------------------------------ inputs

    @staticmethod
    def _unpack(source, variance, mask):
        if isinstance(source, np.ndarray) or not hasattr(source, "image"):
            image = np.asarray(source, np.float64)
            if image.ndim != 2:
                raise InvalidInputError(f"image must be 2-D, got shape {image.shape}")
            record, meta = None, {}
            var = None if variance is None else np.asarray(variance, np.float64)
            msk = np.zeros(image.shape, np.uint32) if mask is None else np.asarray(mask).astype(np.uint32)
        else:
            record, meta = source, dict(source.meta)
            image = np.asarray(source.image, np.float64)
            var = np.asarray(source.variance if variance is None else variance, np.float64)
            msk = np.asarray(source.mask if mask is None else mask).astype(np.uint32)
        for label, arr in (("variance", var), ("mask", msk)):
            if arr is not None and arr.shape != image.shape:
                raise InvalidInputError(f"{label} shape {arr.shape} does not match image shape {image.shape}")
        if not np.isfinite(image).any():
            raise InvalidInputError("image has no finite pixels")
        return image, var, msk, meta, record

    def _stamp_size(self, fwhm: float) -> int:
        cfg = self.config
        if cfg.stamp_size is not None:
            return cfg.stamp_size
        side = 2 * int(math.ceil(cfg.stamp_radius_fwhm * fwhm)) + 1
        lo, hi = cfg.min_stamp_size | 1, cfg.max_stamp_size | 1
        return int(min(max(side, lo), hi))

    def _tiles(self, shape) -> tuple[int, int] | None:
        g = self.config.grid
        if g is None:
            return None
        if g == "auto":
            ny = max(1, int(round(shape[0] / self.config.grid_tile_size)))
            nx = max(1, int(round(shape[1] / self.config.grid_tile_size)))
            return (ny, nx)
        return tuple(g)

    # ------------------------------------------------------------------ star selection

    def _select(self, cat: pd.DataFrame, raw, data, bad, saturation, name) -> tuple[pd.DataFrame, float]:
        cfg = self.config
        H, W = raw.shape
        if cat.empty:
            raise InvalidInputError(f"no sources found: no stars to measure a PSF from (need min_stars="
                                    f"{cfg.min_stars})", source=name)
        cat = cat.reset_index(drop=True)
        x, y = cat["x"].to_numpy(), cat["y"].to_numpy()
        reason = np.full(len(cat), "", dtype=object)

        def reject(cond, why):
            reason[(reason == "") & cond] = why

        reject((cat["flag"].to_numpy() & cfg.reject_flags) != 0, "flagged (on the edge or singular)")
        reject(~(cat["snr"].to_numpy() >= cfg.min_snr), "low S/N")
        # sizes from adaptive (Gaussian-weighted) moments: blind to flux and to neighbours a few sigma away,
        # unlike the half-light radius (its Kron normalisation takes in neighbours) or isophotal moments
        sizes, ell = np.full(len(cat), np.nan), np.full(len(cat), np.nan)
        pre = np.nonzero(reason == "")[0]
        if pre.size:
            s0 = np.sqrt(np.clip(cat["a"].to_numpy()[pre] * cat["b"].to_numpy()[pre], 0.25, None))
            sizes[pre], ell[pre] = adaptive_moments(data, bad, x[pre], y[pre], float(np.median(s0)))
        r_half = sizes
        reject(~np.isfinite(r_half) | (r_half <= 0), "no size")
        ok = reason == ""
        if not ok.any():
            raise InvalidInputError(
                f"no unflagged source at S/N >= {cfg.min_snr:g}: no stars to measure a PSF from "
                f"(need min_stars={cfg.min_stars})", source=name)
        # the stellar locus: the densest window of log sizes among the bright, unflagged sources
        logr = np.log(r_half[ok])
        srt = np.sort(logr)
        hi_idx = np.searchsorted(srt, srt + 2 * cfg.locus_width * 0.5, side="right")
        best = int(np.argmax(hi_idx - np.arange(len(srt))))
        members = srt[best:hi_idx[best]]
        mode = float(np.median(members))
        reject(np.abs(np.log(np.where(r_half > 0, r_half, 1e-9)) - mode) > cfg.locus_width, "not on the stellar locus")
        ok = reason == ""
        ell_med = float(np.median(ell[ok])) if ok.any() else 0.0
        reject(ell > ell_med + cfg.max_ellipticity_excess, "too elongated")
        fwhm0 = 2.3548 * math.exp(mode)  # the Gaussian of the same adaptive moments
        size = self._stamp_size(fwhm0)
        r = size // 2
        ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
        # the stamp may run off the frame (those pixels get no weight); the core may not
        core = max(2, int(math.ceil(1.5 * fwhm0)))
        reject((ix - core < 0) | (iy - core < 0) | (ix + core >= W) | (iy + core >= H), "core off the frame")
        # isolation against every detection, candidate or not
        from scipy.spatial import cKDTree

        tree = cKDTree(np.column_stack([x, y]))
        flux = cat["flux"].to_numpy()
        pairs = tree.query_pairs(r * math.sqrt(2.0), output_type="ndarray")
        if len(pairs):
            i, j = pairs[:, 0], pairs[:, 1]
            dist = np.hypot(x[i] - x[j], y[i] - y[j])
            close = dist < cfg.blend_radius_fwhm * fwhm0
            for a, b in ((i, j), (j, i)):
                # neighbour b inside a's stamp (box) and bright relative to a, or simply too close
                in_box = (np.abs(x[b] - x[a]) <= r + 1) & (np.abs(y[b] - y[a]) <= r + 1)
                hit = close | (in_box & (flux[b] > cfg.neighbour_flux_fraction * np.maximum(flux[a], 1e-30)))
                crowded = np.zeros(len(cat), bool)
                crowded[a[hit]] = True
                reject(crowded, "neighbour")
        sat_level = None if saturation is None else cfg.saturation_margin * float(saturation)
        for k in np.nonzero(reason == "")[0]:
            win = (slice(max(iy[k] - core, 0), iy[k] + core + 1), slice(max(ix[k] - core, 0), ix[k] + core + 1))
            if bad[win].any():
                reason[k] = "flagged pixel in the core"
            elif sat_level is not None and raw[win].max() >= sat_level:
                reason[k] = "near saturation"
        cat = cat.assign(reason=reason, sigma=r_half, ellipticity=ell)
        usable = cat[cat["reason"] == ""].sort_values("snr", ascending=False)
        rest = cat[cat["reason"] != ""]
        if len(usable) > cfg.max_stars:
            extra = usable.iloc[cfg.max_stars:].assign(reason="beyond max_stars")
            usable = usable.iloc[:cfg.max_stars]
            rest = pd.concat([rest, extra])
        # fitted stars first; the rest stay in the table with their reason
        return pd.concat([usable, rest], ignore_index=True), fwhm0

    def _cut(self, data, var, bad, cat: pd.DataFrame, size: int) -> _Stars:
        r = size // 2
        use = (cat["reason"] == "").to_numpy()
        n = len(cat)
        xs = cat["xwin"].to_numpy() if "xwin" in cat else cat["x"].to_numpy()
        ys = cat["ywin"].to_numpy() if "ywin" in cat else cat["y"].to_numpy()
        xs = np.where(np.isfinite(xs) & (np.abs(xs - cat["x"].to_numpy()) < 1.0), xs, cat["x"].to_numpy())
        ys = np.where(np.isfinite(ys) & (np.abs(ys - cat["y"].to_numpy()) < 1.0), ys, cat["y"].to_numpy())
        ix, iy = np.rint(xs).astype(int), np.rint(ys).astype(int)
        cube = np.zeros((n, size, size))
        weight = np.zeros((n, size, size))
        off = np.arange(-r, r + 1)
        H, W = data.shape
        # stamps running off the frame: pixels beyond the edge carry no weight
        pad_data = np.pad(data, r)
        pad_var = np.pad(var, r)
        pad_bad = np.pad(bad, r, constant_values=True)
        for k in np.nonzero(use)[0]:
            rows, cols = iy[k] + off + r, ix[k] + off + r
            if rows[0] < 0 or cols[0] < 0 or rows[-1] >= H + 2 * r or cols[-1] >= W + 2 * r:
                use[k] = False
                continue
            win = np.ix_(rows, cols)
            cube[k] = pad_data[win]
            v = pad_var[win]
            weight[k] = np.where(pad_bad[win] | ~(v > 0), 0.0, 1.0 / np.where(v > 0, v, 1.0))
        flux0 = np.where(use, (cube * (weight > 0)).sum(axis=(1, 2)), 1.0)
        active = use & (flux0 > 0)
        return _Stars(data=cube, weight=weight, y0=iy - r, x0=ix - r, yc=ys.astype(np.float64),
                      xc=xs.astype(np.float64), flux=np.where(active, flux0, 1.0), sky=np.zeros(n), active=active)

    # ------------------------------------------------------------------ the fit

    def _fit(self, stars: _Stars, size: int, os_: int, name) -> tuple[np.ndarray, int, np.ndarray]:
        cfg = self.config
        r = size // 2
        G = 2 * (os_ * (r + 1) + 2) + 1
        clip_w = stars.weight.copy()
        epsf = None
        iterations = 0
        for iterations in range(1, cfg.max_iterations + 1):
            epsf = self._solve(stars, clip_w, stars.active, G, os_, name, x0=epsf)
            epsf = _normalise(epsf, os_, size, name)
            # recentre: the ePSF's centroid goes to the middle node; the stars' centres follow it
            cy, cx = _centroid(epsf, os_, r)
            epsf = _shift_epsf(epsf, os_, cy, cx)
            stars.yc += cy
            stars.xc += cx
            moved = self._fit_stars(stars, clip_w, epsf, os_)
            clip_w = self._clip(stars, epsf, os_)
            if int(stars.active.sum()) < cfg.min_stars:
                raise InvalidInputError(
                    f"only {int(stars.active.sum())} stars left after rejecting poor fits (need min_stars="
                    f"{cfg.min_stars}); the frame's sources may not be point-like", source=name)
            if moved < cfg.center_tolerance and iterations >= 2:
                break
        epsf = _normalise(self._solve(stars, clip_w, stars.active, G, os_, name, x0=epsf), os_, size, name)
        cy, cx = _centroid(epsf, os_, r)
        epsf = _normalise(_shift_epsf(epsf, os_, cy, cx), os_, size, name)
        stars.yc += cy
        stars.xc += cx
        return epsf, iterations, clip_w

    def _design(self, stars: _Stars, weight, use, G, os_):
        """Rows (star pixels) x nodes: flux-scaled cubic-convolution weights, data and weights."""
        n, S, _ = stars.data.shape
        idx = np.nonzero(use)[0]
        c = G // 2
        off = np.arange(S)
        dy = (stars.y0[idx, None] + off[None, :]) - stars.yc[idx, None]  # (m, S)
        dx = (stars.x0[idx, None] + off[None, :]) - stars.xc[idx, None]
        iy, ty = _node_coords(dy, c, os_)
        ix, tx = _node_coords(dx, c, os_)
        wy, _ = _keys_weights(ty)  # (m, S, 4)
        wx, _ = _keys_weights(tx)
        k = np.arange(4)
        rows_y = iy[:, :, None] + k  # (m, S, 4)
        cols_x = ix[:, :, None] + k
        node = (rows_y[:, :, None, :, None] * G + cols_x[:, None, :, None, :])  # (m, S, S, 4, 4)
        val = (wy[:, :, None, :, None] * wx[:, None, :, None, :]) * stars.flux[idx, None, None, None, None]
        w = weight[idx]
        b = stars.data[idx] - stars.sky[idx, None, None]
        return node, val, w, b

    def _solve(self, stars: _Stars, weight, use, G, os_, name, x0=None) -> np.ndarray:
        from scipy import sparse

        node, val, w, b = self._design(stars, weight, use, G, os_)
        keep = w > 0
        m = int(keep.sum())
        if m == 0:
            raise InvalidInputError("no unflagged star pixels to fit a PSF to", source=name)
        node, val, wk, bk = node[keep], val[keep], w[keep], b[keep]  # (m, 4, 4)
        rows = np.repeat(np.arange(m), 16)
        A = sparse.csr_matrix((val.reshape(-1), (rows, node.reshape(-1))), shape=(m, G * G))
        Aw = A.multiply(wk[:, None]).tocsr()
        normal = (A.T @ Aw).tocsr()
        rhs = A.T @ (wk * bk)
        diag = normal.diagonal()
        covered = diag > 0
        scale = float(diag[covered].mean()) if covered.any() else 1.0
        lap = _laplacian(G)
        system = normal + (self.config.regularization * scale) * (lap.T @ lap) + (1e-9 * scale) * sparse.identity(
            G * G, format="csr")
        epsf = _solve_spd(system.tocsr(), rhs, x0).reshape(G, G)
        if not np.all(np.isfinite(epsf)):
            raise InvalidInputError("the PSF fit did not converge (non-finite nodes)", source=name)
        return epsf

    def _fit_stars(self, stars: _Stars, weight, epsf, os_, n_steps: int = 3) -> float:
        """Gauss-Newton on each active star's (flux, sky, y, x); the largest centre move."""
        idx = np.nonzero(stars.active)[0]
        if idx.size == 0:
            return 0.0
        S = stars.data.shape[1]
        off = np.arange(S)
        moved = np.zeros(idx.size)
        for _ in range(n_steps):
            dy = (stars.y0[idx, None, None] + off[None, :, None]) - stars.yc[idx, None, None]
            dx = (stars.x0[idx, None, None] + off[None, None, :]) - stars.xc[idx, None, None]
            p, py, px = sample_epsf(epsf, os_, dy, dx, derivatives=True)
            f = stars.flux[idx, None, None]
            jac = np.stack([p, np.ones_like(p), -f * py, -f * px], axis=-1)  # d model / d(flux, sky, yc, xc)
            model = f * p + stars.sky[idx, None, None]
            res = stars.data[idx] - model
            w = weight[idx]
            jtw = jac * w[..., None]
            normal = np.einsum("nyxi,nyxj->nij", jtw, jac)
            grad = np.einsum("nyxi,nyx->ni", jtw, res)
            normal += 1e-12 * np.eye(4)[None] * np.maximum(np.abs(np.diagonal(normal, axis1=1, axis2=2)).max(1),
                                                            1.0)[:, None, None]
            try:
                step = np.linalg.solve(normal, grad[..., None])[..., 0]
            except np.linalg.LinAlgError:
                step = np.zeros((idx.size, 4))
            step[:, 2:] = np.clip(step[:, 2:], -0.5, 0.5)  # no jumps beyond half a pixel per step
            stars.flux[idx] += step[:, 0]
            stars.sky[idx] += step[:, 1]
            stars.yc[idx] += step[:, 2]
            stars.xc[idx] += step[:, 3]
            moved = np.maximum(moved, np.hypot(step[:, 2], step[:, 3]))
        # a star whose centre left its central pixel, or whose flux went non-positive, is not a PSF star
        r = S // 2
        lost = (~(stars.flux[idx] > 0) | (np.abs(stars.yc[idx] - (stars.y0[idx] + r)) > 1.0)
                | (np.abs(stars.xc[idx] - (stars.x0[idx] + r)) > 1.0))
        stars.active[idx[lost]] = False
        return float(moved[~lost].max()) if (~lost).any() else 0.0

    def _clip(self, stars: _Stars, epsf, os_, use=None) -> np.ndarray:
        """Weights with outlier pixels zeroed; stars with a much worse fit than the rest deactivated.

        With ``use`` (a subset of stars), only their weights are clipped and no star is deactivated.
        """
        cfg = self.config
        weight = stars.weight.copy()
        idx = np.nonzero(stars.active if use is None else use)[0]
        S = stars.data.shape[1]
        off = np.arange(S)
        dy = (stars.y0[idx, None, None] + off[None, :, None]) - stars.yc[idx, None, None]
        dx = (stars.x0[idx, None, None] + off[None, None, :]) - stars.xc[idx, None, None]
        model = stars.flux[idx, None, None] * sample_epsf(epsf, os_, dy, dx) + stars.sky[idx, None, None]
        w = weight[idx]
        z = (stars.data[idx] - model) * np.sqrt(w)
        valid = w > 0
        scale = np.array([max(1.0, 1.4826 * float(np.median(np.abs(zi[vi])))) if vi.any() else 1.0
                          for zi, vi in zip(z, valid)])
        outlier = np.abs(z) > cfg.clip_sigma * scale[:, None, None]
        w = np.where(outlier, 0.0, w)
        weight[idx] = w
        kept = valid & ~outlier
        chi2 = np.array([float((zi[ki] ** 2).mean()) if ki.any() else np.inf for zi, ki in zip(z, kept)])
        med = float(np.median(chi2[np.isfinite(chi2)])) if np.isfinite(chi2).any() else 1.0
        if use is None:
            stars.active[idx[chi2 > cfg.star_clip * max(med, 1.0)]] = False
        return weight

    # ------------------------------------------------------------------ parametric model

    def _fit_moffat(self, stars: _Stars, size: int, os_: int, fwhm0: float, name) -> tuple[np.ndarray, dict]:
        """Elliptical Moffat, pixel-integrated, fitted jointly to the active stars; sampled on the ePSF grid."""
        from scipy.optimize import least_squares

        idx = np.nonzero(stars.active)[0]
        S = stars.data.shape[1]
        off = np.arange(S)
        data, w = stars.data[idx], stars.weight[idx]
        sw = np.sqrt(w)
        beta0 = 3.0
        alpha0 = max(fwhm0, 1.0) / (2.0 * math.sqrt(2.0 ** (1.0 / beta0) - 1.0))
        n = idx.size
        yc0 = stars.yc[idx] - stars.y0[idx]
        xc0 = stars.xc[idx] - stars.x0[idx]
        flux0 = np.maximum(data.sum(axis=(1, 2)), 1e-3)
        # unbounded parameters for Levenberg-Marquardt (MINPACK: no threaded LAPACK per step):
        # ln A, ln B, atanh(rho), ln(beta - 1.2); flux, sky, centre per star
        x0 = np.concatenate([[-2 * math.log(alpha0), -2 * math.log(alpha0), 0.0, math.log(beta0 - 1.2)], flux0,
                             np.zeros(n), yc0, xc0])

        def shape_of(theta):
            return np.array([theta[0], theta[1], math.tanh(theta[2]) * 0.95, 1.2 + math.exp(min(theta[3], 3.0))])

        def model(theta):
            f, sky = theta[4:4 + n], theta[4 + n:4 + 2 * n]
            yc, xc = theta[4 + 2 * n:4 + 3 * n], theta[4 + 3 * n:]
            dy = off[None, :, None] - yc[:, None, None]
            dx = off[None, None, :] - xc[:, None, None]
            return f[:, None, None] * _moffat_pixels(shape_of(theta), dy, dx) + sky[:, None, None]

        def residual(theta):
            return ((data - model(theta)) * sw).ravel()

        fit = least_squares(residual, x0, method="lm", x_scale="jac", max_nfev=400 * (x0.size + 1))
        if not np.all(np.isfinite(fit.x)):
            raise InvalidInputError(f"the Moffat PSF fit failed ({fit.message})", source=name)
        moved = np.hypot(fit.x[4 + 2 * n:4 + 3 * n] - yc0, fit.x[4 + 3 * n:] - xc0)
        if np.any(moved > 1.5) or np.any(fit.x[4:4 + n] <= 0):
            raise InvalidInputError("the Moffat PSF fit wandered off its stars (a centre moved > 1.5 px or a "
                                    "flux went non-positive)", source=name)
        fit.x[:4] = shape_of(fit.x)
        shape = fit.x[:4]
        stars.flux[idx] = fit.x[4:4 + n]
        stars.sky[idx] = fit.x[4 + n:4 + 2 * n]
        stars.yc[idx] = fit.x[4 + 2 * n:4 + 3 * n] + stars.y0[idx]
        stars.xc[idx] = fit.x[4 + 3 * n:] + stars.x0[idx]
        r = size // 2
        G = 2 * (os_ * (r + 1) + 2) + 1
        nodes = (np.arange(G) - G // 2) / os_
        epsf = _moffat_pixels(shape, nodes[:, None], nodes[None, :])
        epsf = _normalise(epsf, os_, size, name)
        a, b, rho, beta = math.exp(shape[0]), math.exp(shape[1]), float(shape[2]), float(shape[3])
        return epsf, {"inv_alpha2_x": a, "inv_alpha2_y": b, "rho": rho, "beta": beta,
                      "chi2": float(2 * fit.cost / max(fit.fun.size - fit.x.size, 1)), "n_stars": int(n)}

    # ------------------------------------------------------------------ grid

    def _grid(self, stars: _Stars, size, os_, epsf, tiles, shape, name):
        cfg = self.config
        ny, nx = tiles
        H, W = shape
        G = epsf.shape[0]
        act = np.nonzero(stars.active)[0]
        grid = np.empty((ny, nx, size, size), np.float32)
        fwhm = np.empty((ny, nx))
        ell = np.empty((ny, nx))
        for j in range(ny):
            for i in range(nx):
                yc, xc = (j + 0.5) * H / ny - 0.5, (i + 0.5) * W / nx - 0.5
                d = np.hypot((stars.yc[act] - yc) / (H / ny), (stars.xc[act] - xc) / (W / nx))
                order = np.argsort(d)
                n_in = int((d <= 0.75).sum())  # the tile and a quarter tile around it
                pick = act[order[:max(n_in, min(cfg.grid_min_stars, act.size))]]
                use = np.zeros(stars.active.shape, bool)
                use[pick] = True
                # fitted afresh (the frame's clipping would hold the tile to the frame's PSF), then clipped once
                tile = _normalise(self._solve(stars, stars.weight, use, G, os_, name), os_, size, name)
                tile_w = self._clip(stars, tile, os_, use=use)
                tile = _normalise(self._solve(stars, tile_w, use, G, os_, name, x0=tile), os_, size, name)
                cy, cx = _centroid(tile, os_, size // 2)
                if abs(cy) > 1e-3 or abs(cx) > 1e-3:  # the tile's stars' centres are the frame fit's
                    tile = _shift_epsf(tile, os_, cy, cx)
                grid[j, i] = _native_stamp(tile, os_, size)
                shp = psf_shape(tile, os_)
                fwhm[j, i], ell[j, i] = shp["fwhm"], shp["ellipticity"]
        return grid, fwhm, ell

    def estimate(self, source, **kwargs) -> PSFResult:
        """Alias of :meth:`run`."""
        return self.run(source, **kwargs)


# --------------------------------------------------------------------------- helpers


def _solve_spd(system, rhs, x0=None, *, rtol: float = 1e-7, maxiter: int = 3000):
    """Conjugate gradients with a Jacobi preconditioner (the normal matrix is symmetric positive definite).

    Written out rather than :func:`scipy.sparse.linalg.cg`: its vector products
    go through multi-threaded BLAS, which on a busy machine spends
    milliseconds per 10^4-element product waiting for threads.
    """
    d = system.diagonal()
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 1.0)
    x = np.zeros_like(rhs) if x0 is None else np.asarray(x0, np.float64).ravel().copy()
    r = rhs - system @ x
    z = inv * r
    p = z.copy()
    rz = float(np.einsum("i,i->", r, z))
    stop = rtol * math.sqrt(float(np.einsum("i,i->", rhs, rhs)))
    for _ in range(maxiter):
        if math.sqrt(float(np.einsum("i,i->", r, r))) <= stop:
            break
        q = system @ p
        alpha = rz / float(np.einsum("i,i->", p, q))
        x += alpha * p
        r -= alpha * q
        z = inv * r
        rz_new = float(np.einsum("i,i->", r, z))
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x


_SUB = (np.arange(5) + 0.5) / 5 - 0.5  # 5 x 5 sub-pixel samples


def _moffat_pixels(shape, dy, dx) -> np.ndarray:
    """Unnormalised elliptical Moffat ``(1 + A dx^2 + B dy^2 + 2 rho sqrt(AB) dx dy)^-beta`` averaged over each pixel.

    ``shape = (ln A, ln B, rho, beta)``; ``dy, dx`` are pixel-centre offsets (broadcast together).
    """
    a, b, rho, beta = math.exp(shape[0]), math.exp(shape[1]), float(shape[2]), float(shape[3])
    c = rho * math.sqrt(a * b)
    dy, dx = np.broadcast_arrays(np.asarray(dy, np.float64), np.asarray(dx, np.float64))
    out = np.zeros(dy.shape)
    for sy in _SUB:
        yy = dy + sy
        for sx in _SUB:
            xx = dx + sx
            out += (1.0 + a * xx * xx + b * yy * yy + 2.0 * c * xx * yy) ** (-beta)
    return out / _SUB.size ** 2


def adaptive_moments(data, bad, x, y, sigma0: float, n_iter: int = 12, *, centres: bool = False):
    """Gaussian-weighted second moments iterated to the source's own size: (sigma, ellipticity) per source.

    With ``centres``, also the centres ``(y, x)`` the Gaussian weight converged
    on (the weighted first moments of the unclipped pixels: a matched-filter
    centroid, more precise than a wider window's).

    The weight's covariance follows the measured one (``M_w <- 2 M``, the fixed
    point of a Gaussian source being ``M_w = C``); ``sigma = det(C)^(1/4)``,
    ``ellipticity = 1 - sqrt(minor / major)`` eigenvalue ratio.  Flagged pixels
    carry no weight.
    """
    half = int(max(6, math.ceil(6 * sigma0)))
    off = np.arange(-half, half + 1, dtype=np.float64)
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    pad = np.pad(np.where(bad, 0.0, data), half)
    pbad = np.pad(bad, half, constant_values=True)
    rows = iy[:, None] + half + off.astype(int)[None, :]
    cols = ix[:, None] + half + off.astype(int)[None, :]
    stamp = pad[rows[:, :, None], cols[:, None, :]]
    valid = ~pbad[rows[:, :, None], cols[:, None, :]]
    dy0 = (iy - y)[:, None, None] + off[None, :, None]
    dx0 = (ix - x)[:, None, None] + off[None, None, :]
    n = len(x)
    cyy = np.full(n, sigma0 ** 2)
    cxx = cyy.copy()
    cxy = np.zeros(n)
    my, mx = np.zeros(n), np.zeros(n)
    for _ in range(n_iter):
        det = cxx * cyy - cxy ** 2
        det = np.where(det > 1e-6, det, 1e-6)
        dy, dx = dy0 - my[:, None, None], dx0 - mx[:, None, None]
        q = (cyy[:, None, None] * dx * dx + cxx[:, None, None] * dy * dy - 2 * cxy[:, None, None] * dx * dy) / det[
            :, None, None]
        g = np.exp(-0.5 * np.clip(q, 0.0, 50.0)) * valid
        w = g * np.clip(stamp, 0.0, None)
        s = w.sum(axis=(1, 2))
        s = np.where(s > 0, s, np.nan)
        wc = g * stamp  # noise averages out of the first moments unclipped (clipped, it pulls to the window)
        sc = wc.sum(axis=(1, 2))
        sc = np.where(sc > 0, sc, np.nan)
        my = my + (wc * dy).sum(axis=(1, 2)) / sc
        mx = mx + (wc * dx).sum(axis=(1, 2)) / sc
        my = np.clip(np.nan_to_num(my), -1.0, 1.0)
        mx = np.clip(np.nan_to_num(mx), -1.0, 1.0)
        myy = (w * dy * dy).sum(axis=(1, 2)) / s
        mxx = (w * dx * dx).sum(axis=(1, 2)) / s
        mxy = (w * dx * dy).sum(axis=(1, 2)) / s
        cyy = np.clip(np.nan_to_num(2 * myy, nan=sigma0 ** 2), 0.05, (half / 2.0) ** 2)
        cxx = np.clip(np.nan_to_num(2 * mxx, nan=sigma0 ** 2), 0.05, (half / 2.0) ** 2)
        lim = 0.95 * np.sqrt(cxx * cyy)  # keep the weight's covariance positive definite
        cxy = np.clip(np.nan_to_num(2 * mxy), -lim, lim)
    det = np.maximum(cxx * cyy - cxy ** 2, 1e-12)
    tr = cxx + cyy
    disc = np.sqrt(np.maximum(0.25 * (cxx - cyy) ** 2 + cxy ** 2, 0.0))
    lmax, lmin = 0.5 * tr + disc, np.maximum(0.5 * tr - disc, 1e-12)
    if centres:
        return det ** 0.25, 1.0 - np.sqrt(lmin / lmax), np.asarray(y, np.float64) + my, np.asarray(x, np.float64) + mx
    return det ** 0.25, 1.0 - np.sqrt(lmin / lmax)


def _laplacian(G: int):
    from scipy import sparse

    one = sparse.diags([np.ones(G - 1), -2 * np.ones(G), np.ones(G - 1)], [-1, 0, 1], shape=(G, G))
    eye = sparse.identity(G)
    return (sparse.kron(eye, one) + sparse.kron(one, eye)).tocsr()


def _native_stamp(epsf: np.ndarray, os_: int, size: int) -> np.ndarray:
    c = epsf.shape[0] // 2
    r = size // 2
    idx = c + os_ * np.arange(-r, r + 1)
    stamp = epsf[np.ix_(idx, idx)]
    total = stamp.sum()
    return (stamp / total).astype(np.float32)


def _normalise(epsf: np.ndarray, os_: int, size: int, name) -> np.ndarray:
    c = epsf.shape[0] // 2
    r = size // 2
    idx = c + os_ * np.arange(-r, r + 1)
    total = epsf[np.ix_(idx, idx)].sum()
    if not (total > 0) or not np.isfinite(total):
        raise InvalidInputError(f"the fitted PSF sums to {total!r}, not a positive number", source=name)
    return epsf / total


def _centroid(epsf: np.ndarray, os_: int, radius: int) -> tuple[float, float]:
    """Centroid (pixels, relative to the middle node) of the positive part within ``radius`` pixels."""
    G = epsf.shape[0]
    c = G // 2
    off = (np.arange(G) - c) / os_
    w = np.clip(epsf, 0.0, None) * ((np.abs(off)[:, None] <= radius) & (np.abs(off)[None, :] <= radius))
    s = w.sum()
    if not s > 0:
        return 0.0, 0.0
    return float((w.sum(axis=1) * off).sum() / s), float((w.sum(axis=0) * off).sum() / s)


def _shift_epsf(epsf: np.ndarray, os_: int, dy: float, dx: float) -> np.ndarray:
    """The ePSF moved by ``(-dy, -dx)`` pixels (cubic convolution), so a centroid at (dy, dx) lands on the middle."""
    G = epsf.shape[0]
    off = (np.arange(G) - G // 2) / os_
    yy, xx = np.meshgrid(off + dy, off + dx, indexing="ij")
    return sample_epsf(epsf, os_, yy, xx)


def estimate_psf(source, **options) -> PSFResult:
    """One-off :class:`PSFEstimator` run: ``estimate_psf(exposure, grid=None, min_stars=10)``."""
    return PSFEstimator(PSFConfig(**options)).run(source)
