"""Source extraction: detection, deblending and measurement as one stage.

:class:`SourceExtractor` finds sources in a background-subtracted image
(SExtractor's algorithm: optional matched filter, threshold, 8-connected
labelling, minimum area, multi-threshold deblending, cleaning) and measures
them with SEP's column names and meanings.

Two implementations share one interface, chosen by the config:

* ``implementation="sep"`` wraps :func:`sep.extract` and SEP's aperture
  functions (CPU only);
* ``implementation="array"`` is astroray's own code in
  :mod:`astroray.kernels.extract`, array code written against ``xp`` (NumPy
  on the CPU, CuPy on the GPU) plus Numba kernels for the per-object loops.

``implementation="auto"`` (the default) uses SEP on the CPU and the array code
on the GPU.

How close the array implementation is to SEP (tests in ``tests/kernels`` and
``tests/imaging``): on SEP's real frame it reproduces SExtractor's catalog
within SEP's own tolerances; on simulated fields without deblending it gives
SEP's objects, in SEP's order, with the same pixels and measurements (also
with masks, error maps, matched filtering and cleaning). With deblending on,
every object SEP splits is split the same way and placed at the same
barycentre, but the faint pixels shared among the children are drawn from a
different random stream than C's ``rand()``, so the children's isophotal
fluxes and second moments differ from SEP's (aperture fluxes agree).

Catalog columns
---------------
(defined once in :mod:`astroray.kernels.catalog`, with the flag bits)
SEP's ``sep.extract`` fields (``thresh, npix, tnpix, xmin, xmax, ymin, ymax,
x, y, x2, y2, xy, errx2, erry2, errxy, a, b, theta, cxx, cyy, cxy, cflux,
flux, cpeak, peak, xcpeak, ycpeak, xpeak, ypeak, flag``; 0-based pixel
coordinates, ``flux`` is the isophotal flux), plus

* ``flux_err`` -- isophotal flux error, ``sqrt(sum of variance over the
  object's pixels)`` (plus the Poisson term when ``gain`` is set);
* ``snr`` -- ``flux / flux_err``;
* ``flux_aper``, ``flux_aper_err``, ``flag_aper`` -- circular aperture of
  ``aperture_radius`` pixels (``aperture_subpix``: 5x5 sub-pixel sampling of
  boundary pixels as SExtractor, or 0 for the exact overlap);
* ``kron_radius``, ``flux_auto``, ``flux_auto_err``, ``flag_auto`` -- Kron
  radius (in units of a, b) and the flux in the Kron ellipse
  ``kron_factor * kron_radius`` (SExtractor's FLUX_AUTO);
* ``flux_radius`` -- radius enclosing ``flux_fraction`` of ``flux_auto``;
* ``xwin``, ``ywin``, ``flag_win`` -- windowed positions;
* ``ra``, ``dec`` -- degrees from the WCS, NaN without one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from astroray.config import AstrorayConfig, Device
from astroray.errors import InvalidInputError
from astroray.imaging.background import (
    Background,
    BackgroundConfig,
    BackgroundResult,
    as_image,
    as_mask,
    following,
    select_implementation,
)
from astroray.kernels.backend import to_numpy
from astroray.kernels.catalog import CATALOG_FIELDS, INT_FIELDS, SEP_FIELDS, catalog_dtype
from astroray.kernels.extract.detect import threshold_rule
from astroray.kernels.extract.pipeline import measure_photometry
from astroray.stage import Stage
from astroray.records import MaskBits

__all__ = ["ExtractionConfig", "ExtractionResult", "SourceExtractor", "DEFAULT_FILTER_KERNEL"]

DEFAULT_FILTER_KERNEL = ((1.0, 2.0, 1.0), (2.0, 4.0, 2.0), (1.0, 2.0, 1.0))
"""SExtractor's ``default.conv``: a 3x3 pyramid with FWHM ~2 pixels."""

Implementation = Literal["auto", "sep", "array"]


class ExtractionConfig(AstrorayConfig):
    """Options of :class:`SourceExtractor` (SEP's ``extract`` arguments, renamed).

    Attributes
    ----------
    threshold : float
        Detection threshold: times the per-pixel error (``"relative"``) or in
        image units (``"absolute"``).
    threshold_type : {"relative", "absolute"}
    min_area : int
        Minimum number of pixels above threshold.
    deblend_nthresh : int
        Number of deblending sub-thresholds.
    deblend_cont : float
        Minimum contrast for deblending; 1.0 switches deblending off.
    filter_kernel : "default", None or 2-D list of float
        Detection filter; ``"default"`` is :data:`DEFAULT_FILTER_KERNEL`,
        ``None`` switches filtering off.
    filter_type : {"matched", "conv"}
        ``"matched"`` accounts for a varying error map (SEP's default); it is
        the same as ``"conv"`` when the error is constant.
    clean : bool
        Remove spurious detections in the wings of bright sources.
    clean_param : float
        SExtractor's ``CLEAN_PARAM``.
    aperture_radius : float
        Radius of the circular aperture (pixels) for ``flux_aper``.
    aperture_subpix : int
        Sub-pixel sampling of aperture boundaries: 0 is the exact pixel/circle
        overlap; 5 (default) is what SExtractor does, and what its catalogs
        match (exact overlap differs from them by up to ~1% at r = 5 px).
    kron_factor, kron_min_radius : float
        FLUX_AUTO ellipse ``kron_factor * kron_radius`` (in a, b units), at
        least ``kron_min_radius`` (SExtractor's ``PHOT_AUTOPARAMS``).
    flux_fraction : float
        Fraction of ``flux_auto`` enclosed by ``flux_radius``.
    gain : float or None
        Electrons per image unit; adds Poisson noise to the errors.
    mask_threshold : float
        Numeric mask values above this mark a pixel as masked.
    segmentation : bool
        Return the segmentation map (on the device the stage ran on).
    photometry : bool
        Aperture, Kron (FLUX_AUTO), flux-radius and windowed measurements.  Turn
        off for detection only (e.g. candidates on a difference score image, where
        PSF photometry is done on D): elongated artefacts make Kron and
        flux-radius apertures of thousands of pixels.
    background : BackgroundConfig
        Used when the stage must estimate the background or the noise itself.
    device : {"cpu", "gpu", "auto"} or None
        None follows the pipeline's device (``"auto"`` for a stage on its own).
    implementation : {"auto", "sep", "array"}
    """

    threshold: float = Field(1.5, gt=0)
    threshold_type: Literal["relative", "absolute"] = "relative"
    min_area: int = Field(5, ge=1)
    deblend_nthresh: int = Field(32, ge=1)
    deblend_cont: float = Field(0.005, ge=0, le=1)
    filter_kernel: Literal["default"] | None | tuple[tuple[float, ...], ...] = "default"
    filter_type: Literal["matched", "conv"] = "matched"
    clean: bool = True
    clean_param: float = Field(1.0, gt=0)
    aperture_radius: float = Field(5.0, gt=0)
    aperture_subpix: int = Field(5, ge=0)
    kron_factor: float = Field(2.5, gt=0)
    kron_min_radius: float = Field(3.5, ge=0)
    flux_fraction: float = Field(0.5, gt=0, le=1)
    gain: float | None = Field(None, gt=0)
    mask_threshold: float = 0.0
    segmentation: bool = True
    photometry: bool = True
    background: BackgroundConfig = BackgroundConfig()
    device: Device | None = None
    implementation: Implementation = "auto"

    @field_validator("filter_kernel")
    @classmethod
    def _rectangular(cls, value):
        if isinstance(value, tuple):
            widths = {len(row) for row in value}
            if len(value) == 0 or len(widths) != 1 or 0 in widths:
                raise ValueError("filter_kernel must be a non-empty rectangular 2-D list")
        return value

    def kernel_array(self) -> np.ndarray | None:
        """The detection filter as a float32 array, or ``None``."""
        if self.filter_kernel is None:
            return None
        k = DEFAULT_FILTER_KERNEL if self.filter_kernel == "default" else self.filter_kernel
        return np.asarray(k, dtype=np.float32)


@dataclass
class ExtractionResult:
    """What :meth:`SourceExtractor.run` returns.

    Attributes
    ----------
    catalog : pandas.DataFrame
        One row per source (see the module docstring for the columns).
    segmentation : array (H, W) int32 or None
        0 for sky, ``i + 1`` for the pixels of ``catalog`` row ``i``.
    background : BackgroundResult or None
        The background that was subtracted (or used for the noise), if any.
    threshold : float
        The absolute detection threshold where it is one number, else NaN.
    device : str
    """

    catalog: pd.DataFrame
    segmentation: Any = None
    background: BackgroundResult | None = None
    threshold: float = float("nan")
    device: str = "cpu"
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.catalog)

    def to_arrow(self):
        """The catalog as a :class:`pyarrow.Table` (the Catalog record for Ray Data and Parquet)."""
        import pyarrow as pa

        return pa.Table.from_pandas(self.catalog, preserve_index=False)


# --------------------------------------------------------------------------- input preparation


@dataclass
class _Prepared:
    """Validated inputs shared by both implementations (arrays on one device)."""

    data: Any  # background-subtracted, masked pixels set to 0
    mask: Any  # bool or None
    error: Any  # None, float or array (1-sigma)
    background: BackgroundResult | None


def _as_noise(value, shape, name, source, xp):
    if value is None:
        return None
    if np.ndim(value) == 0:
        v = float(value)
        if not np.isfinite(v) or v <= 0:
            raise InvalidInputError(f"{name} must be positive and finite, got {v}", source=source)
        return v
    arr = xp.asarray(value)
    if tuple(arr.shape) != tuple(shape):
        raise InvalidInputError(f"{name} shape {tuple(arr.shape)} does not match image shape {tuple(shape)}",
                                source=source)
    if np.dtype(arr.dtype).kind not in "biuf":
        raise InvalidInputError(f"{name} has dtype {arr.dtype}, which cannot be cast to float", source=source)
    return xp.ascontiguousarray(arr.astype(np.dtype(np.float32).newbyteorder("="), copy=False))


def _prepare(cfg: ExtractionConfig, xp, image, error, variance, mask, background, source) -> _Prepared:
    data = as_image(image, source=source, xp=xp)
    # A background measured here runs where the extraction's arrays are (SEP on the CPU in any case).
    stage_device = "cpu" if xp is np else "gpu"
    shape = data.shape
    m = as_mask(mask, shape, threshold=cfg.mask_threshold, source=source, xp=xp)
    if error is not None and variance is not None:
        raise InvalidInputError("give error or variance, not both", source=source)
    err = _as_noise(error, shape, "error", source, xp)
    if variance is not None:
        var = _as_noise(variance, shape, "variance", source, xp)
        err = float(np.sqrt(var)) if isinstance(var, float) else xp.sqrt(xp.maximum(var, 0)).astype(xp.float32)

    bad = ~xp.isfinite(data)
    if isinstance(err, float) or err is None:
        pass
    else:
        bad |= ~xp.isfinite(err) | (err <= 0)
    if m is not None:
        bad |= m
    has_bad = bool(bad.any())
    if has_bad and bool(bad.all()):
        raise InvalidInputError("every pixel is masked, NaN/inf, or has a non-positive error", source=source)

    bkg_result: BackgroundResult | None = None
    if isinstance(background, str):
        if background != "estimate":
            raise InvalidInputError(f"background must be None, 'estimate', an array or a BackgroundResult, "
                                    f"got {background!r}", source=source)
        bkg_stage = Background(following(cfg.background, stage_device))
        bkg_result = bkg_stage.run(data, mask=bad if has_bad else None, source=source)
        background = bkg_result
    if isinstance(background, BackgroundResult):
        bkg_result = background
        bmap = to_numpy(background.background) if xp is np else xp.asarray(background.background)
    elif background is not None:
        bmap = to_numpy(background) if xp is np else xp.asarray(background)  # a device map for a host stage
        if bmap.ndim != 0 and tuple(bmap.shape) != tuple(shape):
            raise InvalidInputError(f"background shape {tuple(bmap.shape)} does not match image shape "
                                    f"{tuple(shape)}", source=source)
    else:
        bmap = None
    if bmap is not None:
        data = (data - bmap.astype(data.dtype)).astype(data.dtype)

    if err is None and cfg.threshold_type == "relative":
        if bkg_result is None:
            # The image is background-subtracted already: its mesh RMS is the noise.
            bkg_stage = Background(following(cfg.background, stage_device))
            noise = bkg_stage.run(data, mask=bad if has_bad else None, source=source)
            err = noise.global_rms
        else:
            err = bkg_result.global_rms
        if not err > 0:
            raise InvalidInputError("the image noise (global RMS) is zero: give error= or an absolute threshold",
                                    source=source)
    if has_bad:
        data = xp.where(bad, 0, data).astype(data.dtype)
        if err is not None and not isinstance(err, float):
            err = xp.where(bad, 1, err).astype(xp.float32)  # masked anyway; keeps kernels finite
    return _Prepared(data, bad if has_bad else None, err, bkg_result)


# --------------------------------------------------------------------------- implementations


def _wcs_radec(wcs, x, y):
    if wcs is None or len(x) == 0:
        return np.full(len(x), np.nan), np.full(len(x), np.nan)
    from astropy.wcs import WCS

    if not isinstance(wcs, WCS):
        from astropy.io import fits

        if isinstance(wcs, str):  # astroray keeps headers as newline-separated cards
            header = fits.Header.fromstring(wcs, sep="\n" if "\n" in wcs else "")
        else:
            header = wcs
        wcs = WCS(header)
    if not wcs.has_celestial:
        return np.full(len(x), np.nan), np.full(len(x), np.nan)
    ra, dec = wcs.celestial.all_pix2world(np.asarray(x), np.asarray(y), 0)
    return np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)


def _empty_catalog() -> pd.DataFrame:
    return pd.DataFrame({c: np.zeros(0, catalog_dtype(c)) for c in CATALOG_FIELDS})


def _isophotal_error(seg: np.ndarray, n: int, err, flux, gain) -> np.ndarray:
    """``sqrt(sum var)`` over each object's pixels (plus ``flux / gain``)."""
    labels = seg.ravel()
    inside = labels > 0
    if isinstance(err, float):
        var_sum = np.bincount(labels[inside], minlength=n + 1)[1:].astype(np.float64) * err * err
    else:
        var = np.asarray(err, np.float64).ravel()[inside] ** 2
        var_sum = np.bincount(labels[inside], weights=var, minlength=n + 1)[1:]
    if gain:
        var_sum = var_sum + np.maximum(np.asarray(flux, np.float64), 0) / gain
    return np.sqrt(var_sum)


def _sep_extract_growing_stack(data, thresh, **kw):
    """``sep.extract``, doubling SEP's stack of active object pixels when a crowded frame fills it.

    The stack is allocated and initialised on every call, so it starts at SEP's
    default rather than at the image size.
    """
    import sep

    while True:
        try:
            return sep.extract(data, thresh, **kw)
        except Exception as exc:  # SEP raises a bare Exception for a full buffer
            size = sep.get_extract_pixstack()
            if "pixel buffer full" not in str(exc) or size >= data.size:
                raise
            sep.set_extract_pixstack(min(2 * size, int(data.size)))


class _SepApertures:
    """The aperture primitives of :func:`~astroray.kernels.extract.pipeline.measure_photometry` as SEP's functions."""

    @staticmethod
    def sum_circle(data, x, y, r, *, error, mask, gain, subpix):
        import sep

        return sep.sum_circle(data, x, y, r, err=error, mask=mask, gain=gain, subpix=subpix)

    @staticmethod
    def kron_radius(data, x, y, a, b, theta, r, *, mask):
        import sep

        return sep.kron_radius(data, x, y, a, b, theta, r, mask=mask)

    @staticmethod
    def sum_ellipse(data, x, y, a, b, theta, r, *, error, mask, gain, subpix):
        import sep

        return sep.sum_ellipse(data, x, y, a, b, theta, r, err=error, mask=mask, gain=gain, subpix=subpix)

    @staticmethod
    def flux_radius(data, x, y, rmax, frac, *, normflux, mask, subpix):
        import sep

        return sep.flux_radius(data, x, y, rmax, frac, normflux=normflux, mask=mask, subpix=subpix)

    @staticmethod
    def winpos(data, x, y, sig, *, mask):
        import sep

        return sep.winpos(data, x, y, sig, mask=mask)


def _run_sep(cfg: ExtractionConfig, prep: _Prepared, xp=np) -> tuple[pd.DataFrame, np.ndarray, float]:
    data, err, mask = prep.data, prep.error, prep.mask
    rule = threshold_rule(cfg.threshold, relative=cfg.threshold_type == "relative", error=err)
    objects, seg = _sep_extract_growing_stack(
        data, rule.value, err=rule.noise, gain=cfg.gain, mask=mask, minarea=cfg.min_area,
        filter_kernel=cfg.kernel_array(), filter_type=cfg.filter_type, deblend_nthresh=cfg.deblend_nthresh,
        deblend_cont=cfg.deblend_cont, clean=cfg.clean, clean_param=cfg.clean_param, segmentation_map=True)
    n = len(objects)
    seg = np.asarray(seg, dtype=np.int32)
    if n == 0:
        return _empty_catalog(), seg, rule.absolute
    cat = pd.DataFrame({name: objects[name].astype(catalog_dtype(name)) for name in SEP_FIELDS})
    if rule.noise is None and err is not None and not isinstance(err, float):
        # Detected without the error map (an absolute threshold): position errors from the map.
        from astroray.kernels.extract import moments_errors

        ex2, ey2, exy = moments_errors(seg, prep.data, err, cat, gain=cfg.gain)
        cat["errx2"], cat["erry2"], cat["errxy"] = ex2, ey2, exy
    flux_err = _isophotal_error(seg, n, err, cat["flux"].to_numpy(), cfg.gain) if err is not None else np.full(n, np.nan)
    cat["flux_err"] = flux_err
    with np.errstate(divide="ignore", invalid="ignore"):
        cat["snr"] = np.where(flux_err > 0, cat["flux"].to_numpy() / flux_err, np.nan)
    if not cfg.photometry:  # detection only: positions, moments, isophotal flux
        return cat, seg, rule.absolute
    # Own writable float64 copies: SEP's memoryviews refuse pandas' read-only column views.
    x, y, a, b, theta = (np.array(objects[k], dtype=np.float64) for k in ("x", "y", "a", "b", "theta"))
    phot = measure_photometry(data, x, y, a, b, theta, error=err, mask=mask, gain=cfg.gain,
                              aperture_radius=cfg.aperture_radius, aperture_subpix=cfg.aperture_subpix,
                              kron_factor=cfg.kron_factor, kron_min_radius=cfg.kron_min_radius,
                              flux_fraction=cfg.flux_fraction, apertures=_SepApertures)
    for name, values in phot.items():
        cat[name] = values
    return cat, seg, rule.absolute


def _run_array(cfg: ExtractionConfig, prep: _Prepared, xp) -> tuple[pd.DataFrame, Any, float]:
    from astroray.kernels import extract as _kx

    out = _kx.extract(prep.data, threshold=cfg.threshold, threshold_type=cfg.threshold_type, error=prep.error,
                      mask=prep.mask, min_area=cfg.min_area, filter_kernel=cfg.kernel_array(),
                      filter_type=cfg.filter_type, deblend_nthresh=cfg.deblend_nthresh,
                      deblend_cont=cfg.deblend_cont, clean=cfg.clean, clean_param=cfg.clean_param,
                      gain=cfg.gain, aperture_radius=cfg.aperture_radius,
                      aperture_subpix=cfg.aperture_subpix, kron_factor=cfg.kron_factor,
                      kron_min_radius=cfg.kron_min_radius, flux_fraction=cfg.flux_fraction,
                      photometry=cfg.photometry)
    cat = pd.DataFrame({k: to_numpy(v) for k, v in out.columns.items()})
    cat = cat.astype({k: np.int64 for k in INT_FIELDS if k in cat.columns})
    return cat, out.segmentation, out.threshold


_CORES = {"sep": _run_sep, "array": _run_array}  # implementation name -> core(config, prepared, xp)

_DEFAULT_MASK_BITS = int(MaskBits.BAD | MaskBits.SAT | MaskBits.CR | MaskBits.EDGE | MaskBits.NO_DATA)


def _to_host(*values):
    """Arrays to NumPy for the SEP core (scalars and None pass through)."""
    return tuple(None if v is None else (v if np.ndim(v) == 0 else to_numpy(v)) for v in values)


# --------------------------------------------------------------------------- the stage


class SourceExtractor(Stage[ExtractionConfig]):
    """Detect and measure sources, SExtractor/SEP style, as a configure-once stage.

    Parameters
    ----------
    config : ExtractionConfig, optional
        Options; defaults to ``ExtractionConfig()``.

    Examples
    --------
    >>> ext = SourceExtractor(ExtractionConfig(threshold=5.0, deblend_cont=0.005))
    >>> r = ext.run(image, background="estimate")        # doctest: +SKIP
    >>> r.catalog[["x", "y", "flux", "flux_err"]]          # doctest: +SKIP
    """

    config_class = ExtractionConfig

    def setup(self) -> None:
        self.device, self.implementation, self.xp = select_implementation(self.config.device,
                                                                          self.config.implementation)
        self._core = _CORES[self.implementation]

    def run(self, image, *, error=None, variance=None, mask=None, background=None, wcs=None,
            source: str | None = None) -> ExtractionResult:
        """Extract and measure the sources of ``image``.

        Parameters
        ----------
        image : array (H, W)
            The image, background-subtracted unless ``background`` says otherwise.
        error, variance : float or array (H, W), optional
            1-sigma noise or its square (not both). Without either, a relative
            threshold uses the background's global RMS (estimated from the image
            when no ``background`` is given).
        mask : array (H, W) of bool or int flags, optional
            True / nonzero marks pixels to ignore. NaN/inf pixels (in the image
            or the error) are always masked: set to zero for detection and left
            out of every flux.
        background : None, "estimate", array or BackgroundResult, optional
            What to subtract first: nothing, a background measured here with
            ``config.background``, a map, or a :class:`BackgroundResult`.
        wcs : astropy.wcs.WCS, FITS header or header string, optional
            Gives ``ra``/``dec``; without it they are NaN.
        source : str, optional
            Name of the input, used in error messages.

        Returns
        -------
        ExtractionResult

        Raises
        ------
        InvalidInputError
            Image not 2-D, a dtype that cannot be cast to float, no finite
            pixel, or mask / error / background of another shape.
        """
        if self.xp is np:  # the SEP core and NumPy take host arrays
            image, mask, error, variance = _to_host(image, mask, error, variance)
        prep = _prepare(self.config, self.xp, image, error, variance, mask, background, source)
        cat, seg, thresh = self._core(self.config, prep, self.xp)
        ra, dec = _wcs_radec(wcs, cat["x"].to_numpy(), cat["y"].to_numpy())
        cat["ra"], cat["dec"] = ra, dec
        cat = cat[[c for c in CATALOG_FIELDS if c in cat]]  # photometry=False has fewer
        cat = cat.astype({k: np.int64 for k in INT_FIELDS if k in cat.columns})
        return ExtractionResult(cat.reset_index(drop=True), seg if self.config.segmentation else None,
                                prep.background, float(thresh), self.device,
                                meta={"implementation": self.implementation})

    def run_exposure(self, exposure, *, background=None, mask_bits: int = _DEFAULT_MASK_BITS) -> ExtractionResult:
        """Extract from an :class:`astroray.records.Exposure`.

        Uses its variance, the ``mask_bits`` of its mask (by default BAD, SAT,
        CR, EDGE and NO_DATA; not DETECTED), and the WCS in its header.
        Without ``background``, the background is estimated unless
        ``meta['background_subtracted']`` is true.
        """
        if background is None and not exposure.meta.get("background_subtracted"):
            background = "estimate"
        mask = (np.asarray(exposure.mask).astype(np.uint32) & np.uint32(int(mask_bits))) != 0
        return self.run(exposure.image, variance=exposure.variance, mask=mask, background=background,
                        wcs=exposure.header or None, source=exposure.exposure_id or None)
