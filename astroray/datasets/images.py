"""Simulated CCD image pairs (reference + science epoch) with a truth table.

Both epochs are on one pixel grid, as after a pipeline has warped the template
onto the science frame; what is left is a residual sub-pixel misregistration of
the science epoch (also written into its WCS as a CRVAL shift).  With
``reference_grid`` (a :class:`ReferenceGridConfig`) the reference is rendered
instead on its own grid -- shifted, rotated and scaled against the science
grid by a known transform, with the matching WCS -- so registration can be
checked against truth; the science epoch and the truth stay byte for byte what
they are on one grid.

Units and conventions
---------------------
* Pixels hold counts (ADU), sky included (``meta['background_subtracted']`` is
  False).  The sky is ``sky_level * (1 + gx (x / (W - 1) - 0.5) + gy (y / (H - 1)
  - 0.5))`` with ``sky_level``, ``gx = sky_gradient_x`` and ``gy =
  sky_gradient_y`` in the meta.
* ``meta['zero_point']`` is the AB magnitude that gives **1 ADU per second**, so
  a source of magnitude ``m`` gives ``exptime * 10**(-0.4 (m - zero_point))``
  counts; ``meta['njy_per_count']`` converts counts of that exposure to nJy.
* The flux scale between epochs, ``flux_scale`` = science counts per reference
  count of the same source, is in the truth table and in both metas.
* Variance is the expected per-pixel variance of the noiseless scene:
  ``model / gain + (read_noise / gain)**2`` (ADU^2).  Photon noise is drawn in
  its Gaussian limit (the sky gives hundreds of electrons per pixel).
  Detector artifacts (cosmic rays, hot pixels, bad columns) are added after the
  noise and are not in the variance, as in a real frame.
* Positions are 0-based pixel coordinates with pixel centres on integers.

Truth table columns
-------------------
pair_id, change_id, kind, real, epoch, x, y, ra, dec, flux_reference,
flux_science, delta_flux, delta_flux_njy, flux_scale, snr_expected, host_id,
masked, length, angle.  ``x, y`` are in the science frame; fluxes are total
counts of each epoch; ``delta_flux = flux_science - flux_scale *
flux_reference`` in science counts; ``snr_expected`` is the PSF-optimal S/N of
the change on the difference image (science PSF, variance ``var_sci +
flux_scale**2 var_ref``) as a PSF matched filter sees it -- lower than a point
source's for a trailed moving object, much lower for a sharp cosmic ray or hot
pixel of the same flux -- and NaN for changes without one flux at one place
(bad_column, satellite_streak, dipole, saturated_residual).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError
from astroray.records import AB_NJY_ZEROPOINT, Exposure, MaskBits, normalize_band

from . import _render

__all__ = [
    "EpochConfig",
    "ChangeConfig",
    "ReferenceGridConfig",
    "ImagePairConfig",
    "ImagePair",
    "CHANGE_KINDS",
    "REAL_KINDS",
    "TRUTH_COLUMNS",
    "SOURCE_COLUMNS",
    "simulate_pair",
]

REAL_KINDS = ("transient_on_host", "transient_hostless", "variable_star", "moving_object")
BOGUS_KINDS = ("cosmic_ray", "hot_pixel", "bad_column", "satellite_streak", "dipole", "saturated_residual")
CHANGE_KINDS = REAL_KINDS + BOGUS_KINDS
TRUTH_COLUMNS = ("pair_id", "change_id", "kind", "real", "epoch", "x", "y", "ra", "dec", "flux_reference",
                 "flux_science", "delta_flux", "delta_flux_njy", "flux_scale", "snr_expected", "host_id",
                 "masked", "length", "angle")
SOURCE_COLUMNS = ("source_id", "kind", "x", "y", "ra", "dec", "mag", "flux_reference", "flux_science", "sersic_n",
                  "r_eff", "axis_ratio", "angle")
_POINT_LIKE = {"transient_on_host", "transient_hostless", "variable_star", "moving_object", "cosmic_ray",
               "hot_pixel"}
_MPIX = 1024 * 1024


class EpochConfig(AstrorayConfig):
    """Observing conditions of one epoch.

    Parameters
    ----------
    seeing : float
        PSF FWHM at the CCD centre, arcsec.
    seeing_range : (float, float) or None
        Draw each pair's seeing uniformly from this range (arcsec) instead of
        using ``seeing``: a survey's images span a range of seeing (ZTF's
        from about 1.5" to 3").  Drawn from its own random stream, so pairs
        without it are unchanged.
    psf_model : {"moffat", "gaussian"}
    moffat_beta : float
        Moffat power index (4.765 is Kolmogorov turbulence).
    psf_variation : float
        Fractional FWHM change from the CCD centre to a corner (linear in x
        and y; one corner is sharper, the opposite one broader).
    exptime : float
        Seconds.
    zero_point : float
        AB magnitude giving 1 ADU/s.
    sky_brightness : float
        Sky surface brightness, AB mag/arcsec^2.
    sky_gradient : (float, float)
        Fractional change of the sky across the CCD along x and y.
    mjd : float
        Mid-exposure MJD.
    saturation : float or None
        This epoch's saturation level, ADU, in place of the pair's: a
        reference coadded from N exposures and summed saturates at about N
        times one exposure's level (None: the pair's ``saturation``).
    """

    seeing: float = Field(1.0, gt=0.05, le=20.0)
    seeing_range: tuple[float, float] | None = None
    psf_model: Literal["moffat", "gaussian"] = "moffat"
    moffat_beta: float = Field(3.5, gt=1.5, le=20.0)
    psf_variation: float = Field(0.0, ge=0.0, lt=0.5)
    exptime: float = Field(30.0, gt=0.0)
    zero_point: float = Field(28.0, gt=10.0, lt=40.0)
    sky_brightness: float = Field(21.0, gt=10.0, lt=30.0)
    sky_gradient: tuple[float, float] = (0.02, -0.01)
    mjd: float = 60030.0
    saturation: float | None = Field(None, gt=0.0)

    @field_validator("seeing_range")
    @classmethod
    def _seeing_range(cls, value):
        if value is not None and not 0.05 < value[0] <= value[1] <= 20.0:
            raise ValueError(f"seeing_range must be (low, high) arcsec with 0.05 < low <= high <= 20, got {value}")
        return value

    @field_validator("sky_gradient")
    @classmethod
    def _small_gradient(cls, value):
        if any(abs(g) >= 1.0 for g in value):
            raise ValueError("each sky gradient must be a fraction in (-1, 1) so the sky stays positive")
        return value


_DEFAULT_REFERENCE = dict(seeing=0.8, exptime=120.0, zero_point=28.0, sky_brightness=21.2,
                          sky_gradient=(0.02, 0.01), mjd=60000.0)
_DEFAULT_SCIENCE = dict(seeing=1.1, exptime=30.0, zero_point=27.85, sky_brightness=20.9,
                        sky_gradient=(-0.015, 0.03), mjd=60030.0)


class ChangeConfig(AstrorayConfig):
    """How many changes of each kind to inject, per 1024x1024 pixels.

    Counts scale with the image area; a fractional expectation is rounded up
    or down at random (seeded), so rare kinds stay rare.  On-host transients
    get a host galaxy of their own (mag 19-22.5) so their number is exact.
    Cosmic rays are counted per epoch (``cosmic_ray`` in the science epoch,
    ``cosmic_ray_reference`` in the reference); other artifacts are in the
    science epoch only.
    """

    transient_on_host: float = Field(10.0, ge=0)
    transient_hostless: float = Field(10.0, ge=0)
    variable_star: float = Field(5.0, ge=0)
    moving_object: float = Field(3.0, ge=0)
    cosmic_ray: float = Field(20.0, ge=0)
    cosmic_ray_reference: float = Field(5.0, ge=0)
    hot_pixel: float = Field(10.0, ge=0)
    bad_column: float = Field(1.0, ge=0)
    satellite_streak: float = Field(0.3, ge=0)
    dipole: float = Field(5.0, ge=0)


class ReferenceGridConfig(AstrorayConfig):
    """The reference epoch's own pixel grid, against the science epoch's.

    A sky position at science-frame pixel ``p`` (before the science epoch's
    small ``misregistration``) lands on reference pixel
    ``q = scale * R(rotation) (p - c) + c + shift``, with ``c`` the frame
    centre and ``R`` a counter-clockwise rotation in the (x, y) pixel plane.
    The reference's pixels are ``1 / scale`` times the science's (the seeing in
    its pixels and its sky per pixel follow), and its WCS says so exactly.

    Parameters
    ----------
    shift : (float, float)
        ``(dx, dy)`` in reference pixels.
    rotation : float
        Degrees.
    scale : float
        Reference pixels per science pixel.
    """

    shift: tuple[float, float] = (0.0, 0.0)
    rotation: float = Field(0.0, ge=-10.0, le=10.0)
    scale: float = Field(1.0, ge=0.9, le=1.1)

    def matrix(self) -> np.ndarray:
        """``scale * R(rotation)`` acting on ``(x, y)`` column vectors."""
        t = math.radians(self.rotation)
        return self.scale * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])

    def to_reference(self, x, y, shape) -> tuple[np.ndarray, np.ndarray]:
        """Reference-grid pixel positions of science-grid positions ``(x, y)`` (no misregistration)."""
        h, w = shape
        cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
        m = self.matrix()
        dx, dy = np.asarray(x, np.float64) - cx, np.asarray(y, np.float64) - cy
        return (m[0, 0] * dx + m[0, 1] * dy + cx + self.shift[0],
                m[1, 0] * dx + m[1, 1] * dy + cy + self.shift[1])


class ImagePairConfig(AstrorayConfig):
    """A simulated reference/science pair on one CCD.

    Parameters
    ----------
    shape : (int, int)
        (height, width) in pixels, up to a full 4096x4096 CCD or more.
    pixel_scale : float
        Arcsec per pixel.
    band : str
        Filter (normalised to ``ugrizy``).
    center : (float, float) or None
        Field centre (RA, Dec) in degrees; None draws one per pair.
    gain, read_noise, saturation : float
        Electrons per ADU, read noise in electrons, full well in ADU.
    reference, science : EpochConfig
        Conditions of each epoch (defaults: a deep 120 s reference in 0.8"
        seeing, a 30 s science epoch in 1.1" with a 0.15 mag lower zero point).
    misregistration : float
        RMS residual misregistration of the science epoch per axis, pixels.
    star_density, galaxy_density : float
        Sources per arcmin^2 within the magnitude ranges.
    star_mag_range, galaxy_mag_range : (float, float)
        Bright and faint limits, AB mag.
    star_lf_slope, galaxy_lf_slope : float
        Luminosity-function slope, d log10 N / dm.
    galaxy_reff_range : (float, float)
        Effective radii, arcsec (log-uniform).
    snr_range : (float, float)
        PSF-optimal S/N on the difference of injected real changes
        (log-uniform), so detection completeness can be measured across it.
    variable_star_mag_range : (float, float)
        Reference-epoch magnitudes of the variable stars (uniform).  Their
        change's S/N is drawn from ``snr_range`` whatever their brightness, so
        a bright star carries a small fractional change (common on the real
        sky: most of ZTF's real alerts in a dense field are 14-15 mag stars).
    variable_star_min_amplitude : float
        Smallest fractional change ``|delta| / F`` of a variable star (its
        science counts against the reference's, scaled): a change drawn from
        ``snr_range`` below it is raised to it.  The variables surveys alert
        on change by several per cent; a smaller change on a bright star looks
        like a calibration residual (0: changes by S/N alone).
    static_flux_scatter : float
        Fractional rms by which each static star's science flux departs from
        its reference flux times the flux scale (colour terms, non-linearity,
        flat-field error): residuals on bright stars that are no real change,
        so a candidate there is bogus (unmatched in the truth).  0: none.
    changes : ChangeConfig
        Numbers of changes per kind.
    artifact_mask_fraction : float
        Fraction of cosmic rays, hot pixels and bad columns flagged in the
        mask (CR or BAD bits), as a pipeline's detection would; the rest are
        unmasked bogus.  Saturation is always flagged (SAT).
    reference_grid : ReferenceGridConfig or None
        Render the reference on its own, transformed pixel grid (None: on
        the science grid).  The science epoch and the truth are the same as
        without it.
    """

    shape: tuple[int, int] = (1024, 1024)
    pixel_scale: float = Field(0.2, gt=0.0, le=10.0)
    band: str = "r"
    center: tuple[float, float] | None = None
    gain: float = Field(1.5, gt=0.0)
    read_noise: float = Field(5.0, ge=0.0)
    saturation: float = Field(60000.0, gt=0.0)
    reference: EpochConfig = EpochConfig(**_DEFAULT_REFERENCE)
    science: EpochConfig = EpochConfig(**_DEFAULT_SCIENCE)
    misregistration: float = Field(0.05, ge=0.0, le=5.0)
    star_density: float = Field(20.0, ge=0.0)
    star_mag_range: tuple[float, float] = (15.0, 25.0)
    star_lf_slope: float = Field(0.3, ge=0.0, le=1.0)
    galaxy_density: float = Field(8.0, ge=0.0)
    galaxy_mag_range: tuple[float, float] = (18.0, 24.5)
    galaxy_lf_slope: float = Field(0.35, ge=0.0, le=1.0)
    galaxy_reff_range: tuple[float, float] = (0.3, 2.0)
    snr_range: tuple[float, float] = (3.0, 100.0)
    variable_star_mag_range: tuple[float, float] = (19.0, 22.5)
    variable_star_min_amplitude: float = Field(0.0, ge=0.0, le=0.8)
    static_flux_scatter: float = Field(0.0, ge=0.0, le=0.5)
    changes: ChangeConfig = ChangeConfig()
    artifact_mask_fraction: float = Field(1.0, ge=0.0, le=1.0)
    reference_grid: ReferenceGridConfig | None = None

    @field_validator("reference", "science", mode="before")
    @classmethod
    def _epoch_defaults(cls, value, info):
        # a partial epoch in YAML keeps that epoch's own defaults (e.g. the reference's 120 s)
        if isinstance(value, dict):
            base = _DEFAULT_REFERENCE if info.field_name == "reference" else _DEFAULT_SCIENCE
            return {**base, **value}
        return value

    @field_validator("shape")
    @classmethod
    def _shape(cls, value):
        if min(value) < 32 or max(value) > 16384:
            raise ValueError("each side must be between 32 and 16384 pixels")
        return value

    @field_validator("band")
    @classmethod
    def _band(cls, value):
        return normalize_band(value)

    @field_validator("star_mag_range", "galaxy_mag_range", "galaxy_reff_range", "snr_range",
                     "variable_star_mag_range")
    @classmethod
    def _ordered(cls, value):
        if not value[0] < value[1]:
            raise ValueError("expected (low, high) with low < high")
        return value

    @field_validator("galaxy_reff_range", "snr_range")
    @classmethod
    def _positive(cls, value):
        if value[0] <= 0:
            raise ValueError("both ends must be positive")
        return value

    @field_validator("center")
    @classmethod
    def _center(cls, value):
        if value is not None and not (0.0 <= value[0] < 360.0 and -90.0 < value[1] < 90.0):
            raise ValueError("center must be (RA in [0, 360), Dec in (-90, 90)) degrees")
        return value

    @model_validator(mode="after")
    def _epochs_in_order(self):
        if self.science.mjd < self.reference.mjd:
            raise ValueError("the science epoch must not precede the reference epoch (mjd)")
        return self


@dataclass
class ImagePair:
    """One simulated pair: the two exposures and what changed between them.

    Attributes
    ----------
    reference, science : Exposure
    truth : DataFrame
        One row per injected change (:data:`TRUTH_COLUMNS`).
    pair_id : str
    meta : dict
        flux_scale, offset_x/offset_y (science misregistration, px), field
        centre, counts, seed, index.
    sources : DataFrame
        The static scene (:data:`SOURCE_COLUMNS`): galaxies first (their
        row number is the truth's ``host_id``), then stars; positions in the
        science frame, fluxes in each epoch's counts.
    """

    reference: Exposure
    science: Exposure
    truth: pd.DataFrame
    pair_id: str
    meta: dict = field(default_factory=dict)
    sources: pd.DataFrame = field(default_factory=pd.DataFrame)


def simulate_pair(config: ImagePairConfig | None = None, *, seed: int = 0, index: int = 0) -> ImagePair:
    """Simulate one reference/science pair with its truth table.

    A pure function of ``(config, seed, index)``: the same arguments give the
    same bytes, and different ``index`` values give independent pairs (so Ray
    Data can generate pair ``index`` anywhere).

    Parameters
    ----------
    config : ImagePairConfig, optional
        Defaults to ``ImagePairConfig()`` (1024x1024).
    seed, index : int
        Non-negative integers.

    Returns
    -------
    ImagePair
        ``reference`` and ``science`` :class:`~astroray.records.Exposure`
        objects and ``truth``, one row per injected change.

    Raises
    ------
    InvalidInputError
        ``config`` is not an :class:`ImagePairConfig` or ``seed``/``index``
        are not non-negative integers.
    """
    if config is None:
        config = ImagePairConfig()
    if not isinstance(config, ImagePairConfig):
        raise InvalidInputError(f"config must be an ImagePairConfig, got {type(config).__name__}")
    seed, index = _check_seed(seed, index)
    return _simulate_pair(config, seed, index)


def _check_seed(seed, index) -> tuple[int, int]:
    for name, value in (("seed", seed), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")
    return int(seed), int(index)


# --------------------------------------------------------------------------- core


@dataclass
class _Epoch:
    cfg: EpochConfig
    kind: int
    fwhm_px: float
    width_px: float  # Moffat alpha or Gaussian sigma at the centre
    sky_level: float
    offset: tuple[float, float]  # misregistration relative to the reference frame

    def counts(self, mag):
        return self.cfg.exptime * 10.0 ** (-0.4 * (np.asarray(mag, np.float64) - self.cfg.zero_point))

    def widths(self, x, y, shape):
        """PSF width at each position (linear spatial variation)."""
        h, w = shape
        u = (np.asarray(x, np.float64) - 0.5 * (w - 1)) / (0.5 * w)
        v = (np.asarray(y, np.float64) - 0.5 * (h - 1)) / (0.5 * h)
        return self.width_px * (1.0 + self.cfg.psf_variation * 0.5 * (u + v))

    def core(self, width):
        """Radius of pixel integration by sub-sampling for a PSF of this width: one FWHM."""
        return np.asarray(width, np.float64) * (self.fwhm_px / self.width_px)

    def stamps(self, size, width, dx, dy):
        width = np.atleast_1d(np.asarray(width, np.float64))
        return _render.psf_stamps(int(size), self.kind, width, self.cfg.moffat_beta,
                                  np.broadcast_to(np.asarray(dx, np.float64), width.shape).copy(),
                                  np.broadcast_to(np.asarray(dy, np.float64), width.shape).copy(),
                                  self.core(width))


def _saturation(config: ImagePairConfig, epoch: EpochConfig) -> float:
    """The epoch's saturation level, ADU: its own where set, else the pair's."""
    return config.saturation if epoch.saturation is None else epoch.saturation


def _make_epoch(cfg: EpochConfig, config: ImagePairConfig, offset) -> _Epoch:
    fwhm = cfg.seeing / config.pixel_scale
    if cfg.psf_model == "moffat":
        kind, width = _render.MOFFAT, fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / cfg.moffat_beta) - 1.0))
    else:
        kind, width = _render.GAUSSIAN, fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    sky = cfg.exptime * 10.0 ** (-0.4 * (cfg.sky_brightness - cfg.zero_point)) * config.pixel_scale ** 2
    return _Epoch(cfg, kind, fwhm, width, sky, offset)


def _lf_mags(rng, n, mag_range, slope):
    """Magnitudes with N(<m) proportional to 10**(slope m) between the limits."""
    lo, hi = mag_range
    u = rng.random(n)
    if slope <= 0:
        return lo + u * (hi - lo)
    a, b = 10.0 ** (slope * lo), 10.0 ** (slope * hi)
    return np.log10(a + u * (b - a)) / slope


def _n_from_rate(rng, rate):
    """Seeded stochastic rounding: floor(rate) plus one with probability frac(rate)."""
    base = math.floor(rate)
    return int(base + (rng.random() < rate - base))


def _radius(epoch: _Epoch, flux, width, threshold):
    """Truncation radius where a source's profile falls below ``threshold`` counts."""
    beta = epoch.cfg.moffat_beta
    peak = np.abs(flux) * _render.psf_norm(epoch.kind, 1.0, beta) / width ** 2
    ratio = np.maximum(peak / threshold, 1.0 + 1e-9)
    if epoch.kind == _render.MOFFAT:
        r = width * np.sqrt(np.maximum(ratio ** (1.0 / beta) - 1.0, 0.0))
    else:
        r = width * np.sqrt(2.0 * np.log(ratio))
    return np.clip(r, 3.0 * epoch.fwhm_px, max(3.0 * epoch.fwhm_px, 150.0))


def _paint_points(image, epoch: _Epoch, x, y, flux, threshold):
    if len(x) == 0:
        return
    x = np.ascontiguousarray(x, np.float64)
    y = np.ascontiguousarray(y, np.float64)
    flux = np.ascontiguousarray(flux, np.float64)
    width = epoch.widths(x, y, image.shape)
    radius = _radius(epoch, flux, width, threshold)
    # the flux beyond the truncation radius goes inside it, so the total painted is `flux`
    r2 = (radius / width) ** 2
    if epoch.kind == _render.MOFFAT:
        enclosed = 1.0 - (1.0 + r2) ** (1.0 - epoch.cfg.moffat_beta)
    else:
        enclosed = 1.0 - np.exp(-0.5 * r2)
    _render.add_point_sources(image, x, y, flux / enclosed, epoch.kind, width, epoch.cfg.moffat_beta, radius,
                              epoch.core(width))


_STAMP_SIZES = (32, 48, 64, 96, 128)  # FFT-friendly
_GALAXY_TRUNCATION = 4.0  # effective radii
_CHUNK = 256  # galaxies per FFT batch, to bound memory


def _stamp_size(n_pixels: float) -> int:
    for size in _STAMP_SIZES:
        if n_pixels <= size:
            return size
    return _STAMP_SIZES[-1]


def _paint_galaxies(images, epochs, gal, shape):
    """Sersic galaxies convolved with each epoch's local PSF, stamp by stamp (FFT).

    The PSF of each stamp is taken from a small set of widths (0.5 % steps) so
    that its transform is computed once per width, not once per galaxy.
    """
    if len(gal["x"]) == 0:
        return
    from scipy import fft

    fwhm_max = max(e.fwhm_px * (1.0 + e.cfg.psf_variation) for e in epochs)
    need = 2.0 * (_GALAXY_TRUNCATION * gal["re"] + 2.0 * fwhm_max) + 2.0
    sizes = np.array([_stamp_size(v) for v in need])
    ix = np.floor(gal["x"] + 0.5).astype(np.int64)
    iy = np.floor(gal["y"] + 0.5).astype(np.int64)
    fx, fy = gal["x"] - ix, gal["y"] - iy
    for size in np.unique(sizes):
        size = int(size)
        half = size // 2
        members = np.nonzero(sizes == size)[0]
        for start in range(0, len(members), _CHUNK):
            sel = members[start:start + _CHUNK]
            truncation = np.clip((half - 2.0 * fwhm_max) / gal["re"][sel], 1.0, _GALAXY_TRUNCATION)
            sersic = _render.sersic_stamps(size, fx[sel], fy[sel], gal["n"][sel], gal["re"][sel], gal["q"][sel],
                                           gal["angle"][sel], truncation)
            sersic_ft = fft.rfft2(sersic.astype(np.float32), workers=1)
            for image, epoch in zip(images, epochs):
                width = epoch.widths(gal["x"][sel], gal["y"][sel], shape)
                step = 0.005 * epoch.width_px
                bins, which = np.unique(np.round(width / step).astype(np.int64), return_inverse=True)
                psf = epoch.stamps(size, bins * step, epoch.offset[0], epoch.offset[1])
                psf_ft = fft.rfft2(fft.ifftshift(psf.astype(np.float32), axes=(1, 2)), workers=1)
                stamps = fft.irfft2(sersic_ft * psf_ft[which], s=(size, size), workers=1)
                _render.add_stamps(image, stamps, ix[sel] - half, iy[sel] - half, epoch.counts(gal["mag"][sel]))


def _sky(epoch: _Epoch, shape) -> np.ndarray:
    h, w = shape
    gx, gy = epoch.cfg.sky_gradient
    row = (epoch.sky_level * gx * (np.arange(w, dtype=np.float32) / max(w - 1, 1) - 0.5)).astype(np.float32)
    col = (epoch.sky_level * (1.0 + gy * (np.arange(h, dtype=np.float32) / max(h - 1, 1) - 0.5))).astype(np.float32)
    return col[:, None] + row[None, :]


def _wcs(config: ImagePairConfig, center, offset):
    from astropy.wcs import WCS

    h, w = config.shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = [0.5 * (w + 1), 0.5 * (h + 1)]
    scale = config.pixel_scale / 3600.0
    wcs.wcs.cd = np.array([[-scale, 0.0], [0.0, scale]])
    wcs.wcs.crval = list(center)
    if offset != (0.0, 0.0):
        # the science frame sees the sky shifted by `offset` pixels: its reference pixel
        # looks at the sky the reference frame sees at crpix - offset
        ra, dec = wcs.all_pix2world([[wcs.wcs.crpix[0] - offset[0], wcs.wcs.crpix[1] - offset[1]]], 1)[0]
        wcs.wcs.crval = [float(ra), float(dec)]
    return wcs


def _header(wcs, meta) -> str:
    from astropy.io import fits

    header = fits.Header()
    header.extend(wcs.to_header(), update=True)
    for key, card in (("exposure_id", "EXPID"), ("band", "FILTER"), ("mjd", "MJD-OBS"), ("exptime", "EXPTIME"),
                      ("gain", "GAIN"), ("saturation", "SATURATE"), ("zero_point", "MAGZERO"),
                      ("sky_level", "SKYLEVEL"), ("seeing", "SEEING")):
        header[card] = meta[key]
    return header.tostring(sep="\n", endcard=False, padding=False).rstrip()


def _snr_expected(epoch: _Epoch, var_diff, truth, size):
    """S/N of each change in the PSF-matched-filtered difference image.

    ``|dF| sum(P T / V) / sqrt(sum(P^2 / V))`` with P the local science PSF, T
    the change's own unit-sum shape (P for a point source, a trail for a
    moving object, a sharp track for a cosmic ray, one pixel for a hot pixel)
    and V the variance of the difference; for a point source this is the
    optimal ``|dF| sqrt(sum(P^2 / V))``.
    """
    n = len(truth)
    if n == 0:
        return np.zeros(0)
    x, y = truth["x"].to_numpy(), truth["y"].to_numpy()
    h, w = var_diff.shape
    ix = np.floor(x + 0.5).astype(np.int64)
    iy = np.floor(y + 0.5).astype(np.int64)
    fx, fy = x - ix, y - iy
    width = epoch.widths(x, y, var_diff.shape)
    psf = epoch.stamps(size, width, fx, fy)
    shape = psf.copy()
    half = size // 2
    kinds = truth["kind"].to_numpy()
    lengths, angles = truth["length"].to_numpy(), truth["angle"].to_numpy()
    for k in np.nonzero(kinds != "transient_hostless")[0]:
        kind = kinds[k]
        ca, sa = math.cos(math.radians(angles[k])), math.sin(math.radians(angles[k]))
        if kind == "moving_object" and lengths[k] > 0:
            steps = max(int(math.ceil(lengths[k])), 1)
            t = ((np.arange(steps) + 0.5) / steps - 0.5) * lengths[k]
            shape[k] = epoch.stamps(size, np.full(steps, width[k]), fx[k] + t * ca, fy[k] + t * sa).mean(axis=0)
        elif kind == "cosmic_ray":
            track = np.zeros((size, size))
            a = 0.5 * lengths[k]
            _render.add_line(track, np.zeros((size, size), np.uint32), np.uint32(0), half + fx[k] - a * ca,
                             half + fy[k] - a * sa, half + fx[k] + a * ca, half + fy[k] + a * sa, 1.0)
            shape[k] = track
        elif kind == "hot_pixel":
            shape[k] = 0.0
            shape[k, half, half] = 1.0
    offs = np.arange(-half, half + 1)
    rows = iy[:, None] + offs[None, :]
    cols = ix[:, None] + offs[None, :]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    var = var_diff[rows.clip(0, h - 1)[:, :, None], cols.clip(0, w - 1)[:, None, :]].astype(np.float64)
    info = np.where(inside, psf ** 2 / var, 0.0).sum(axis=(1, 2))
    overlap = np.where(inside, psf * shape / var, 0.0).sum(axis=(1, 2))
    return np.abs(truth["delta_flux"].to_numpy()) * overlap / np.sqrt(info)


def _simulate_pair(config: ImagePairConfig, seed: int, index: int) -> ImagePair:
    """The steps of one pair, in the order their random streams are drawn (that order fixes the bytes)."""
    sim = _PairSimulation(config, seed, index)
    sim.place_field()
    sim.draw_static_scene()
    sim.draw_hosts_and_dipoles()
    sim.paint_static_models()
    sim.inject_real_changes()
    sim.add_dipole_rows()
    sim.add_satellite_streaks()
    sim.add_noise()
    sim.add_cosmic_rays()
    sim.add_hot_pixels()
    sim.add_bad_columns()
    sim.saturate()
    if config.reference_grid is not None:
        sim.render_reference_on_grid()
    return sim.assemble()


class _PairSimulation:
    """One pair, built step by step; each step draws from its own random stream.

    Seven streams are spawned from ``(seed, index)``: field, stars, galaxies,
    changes, artifacts and one noise stream per epoch.  A step reads what the
    steps before it left on ``self`` (models, rows of the truth table).
    """

    def __init__(self, config: ImagePairConfig, seed: int, index: int):
        self.config, self.seed, self.index = config, seed, index
        self.h, self.w = config.shape
        self.pair_id = f"sim-s{seed}-i{index:06d}"
        root = np.random.SeedSequence(seed, spawn_key=(index,))
        (self.rng_field, self.rng_stars, self.rng_gal, self.rng_changes, self.rng_art, self.rng_noise_ref,
         self.rng_noise_sci) = (np.random.default_rng(s) for s in root.spawn(7))
        self.area_arcmin2 = self.h * self.w * (config.pixel_scale / 60.0) ** 2
        self.area_mpix = self.h * self.w / _MPIX
        self.read_var = (config.read_noise / config.gain) ** 2
        self.rows: list[dict] = []  # truth rows, in change_id order

    def _n_of(self, rate):
        return _n_from_rate(self.rng_changes, rate * self.area_mpix)

    def _uniform_inside(self, rng, n):
        """``n`` positions at least ``margin`` from the edges."""
        x = rng.uniform(self.margin, self.w - 1 - self.margin, n)
        y = rng.uniform(self.margin, self.h - 1 - self.margin, n)
        return x, y

    # ---- field, epochs, WCS
    def place_field(self):
        """Field centre, the science epoch's misregistration, both epochs' PSFs and skies, the flux scale."""
        config, rng = self.config, self.rng_field
        if config.center is None:
            self.center = (float(rng.uniform(0.0, 360.0)), float(np.degrees(np.arcsin(rng.uniform(-0.95, 0.6)))))
        else:
            self.center = (float(config.center[0]), float(config.center[1]))
        self.offset = tuple(float(v) for v in rng.normal(0.0, config.misregistration, 2)) \
            if config.misregistration > 0 else (0.0, 0.0)
        ref_config, sci_config = config.reference, config.science
        if ref_config.seeing_range or sci_config.seeing_range:
            # its own random stream (the tenth), so pairs at a fixed seeing draw exactly as before
            rng_seeing = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.index, 9)))
            ref_config, sci_config = (
                cfg.model_copy(update={"seeing": float(rng_seeing.uniform(*cfg.seeing_range))})
                if cfg.seeing_range else cfg for cfg in (ref_config, sci_config))
        self.ref = _make_epoch(ref_config, config, (0.0, 0.0))
        self.sci = _make_epoch(sci_config, config, self.offset)
        self.flux_scale = float(self.sci.counts(20.0) / self.ref.counts(20.0))
        # sources are painted out to where they fall below ~2% of the sky noise
        self.thresholds = {id(e): 0.02 * math.sqrt(e.sky_level / config.gain + self.read_var)
                           for e in (self.ref, self.sci)}
        self.margin = float(min(max(3.0 * max(self.ref.fwhm_px, self.sci.fwhm_px), 8.0), 0.25 * min(self.h, self.w)))

    # ---- static scene in reference-frame coordinates
    def draw_static_scene(self):
        """Stars from the luminosity function and Sersic galaxies."""
        config, w, h = self.config, self.w, self.h
        rng = self.rng_stars
        self.n_stars = int(rng.poisson(config.star_density * self.area_arcmin2))
        self.star_x = rng.uniform(-0.5, w - 0.5, self.n_stars)
        self.star_y = rng.uniform(-0.5, h - 0.5, self.n_stars)
        self.star_mag = _lf_mags(rng, self.n_stars, config.star_mag_range, config.star_lf_slope)
        n_gal = int(self.rng_gal.poisson(config.galaxy_density * self.area_arcmin2))
        self.gal = _draw_galaxies(self.rng_gal, n_gal, config, w, h, config.galaxy_mag_range)

    def draw_hosts_and_dipoles(self):
        """Dedicated hosts for on-host transients (so their count is exact) and misregistered stars (dipoles)."""
        config, w, h, rng = self.config, self.w, self.h, self.rng_changes
        self.n_host = self._n_of(config.changes.transient_on_host)
        host_margin = min(self.margin + 10.0, 0.3 * min(h, w))
        self.hosts = _draw_galaxies(rng, self.n_host, config, w, h, (19.0, 22.5), margin=host_margin)
        self.host_first = len(self.gal["x"])
        self.gal = {k: np.concatenate([self.gal[k], self.hosts[k]]) for k in self.gal}
        n_dip = self.n_dip = self._n_of(config.changes.dipole)
        self.dip_x, self.dip_y = self._uniform_inside(rng, n_dip)
        self.dip_mag = rng.uniform(18.5, 21.0, n_dip)  # bright but unsaturated in both epochs
        self.dip_shift = rng.uniform(0.3, 1.0, n_dip)
        self.dip_angle = rng.uniform(0.0, 2 * np.pi, n_dip)

    # ---- noiseless static models of both epochs
    def paint_static_models(self):
        """Sky, stars and galaxies of each epoch; a dipole's star lands shifted in the science epoch."""
        ref, sci, offset = self.ref, self.sci, self.offset
        models = []
        for epoch in (ref, sci):
            model = _sky(epoch, self.config.shape)
            sx, sy = self.star_x + epoch.offset[0], self.star_y + epoch.offset[1]
            counts = epoch.counts(self.star_mag)
            if epoch is sci and self.config.static_flux_scatter > 0:
                # its own random stream (the ninth), so pairs without scatter draw exactly as before
                rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.index, 8)))
                counts = counts * np.maximum(1.0 + self.config.static_flux_scatter
                                             * rng.standard_normal(len(counts)), 0.0)
            _paint_points(model, epoch, sx, sy, counts, self.thresholds[id(epoch)])
            models.append(model)
        _paint_galaxies(models, (ref, sci), self.gal, self.config.shape)
        self.dxs = self.dip_shift * np.cos(self.dip_angle)
        self.dys = self.dip_shift * np.sin(self.dip_angle)
        _paint_points(models[0], ref, self.dip_x, self.dip_y, ref.counts(self.dip_mag), self.thresholds[id(ref)])
        _paint_points(models[1], sci, self.dip_x + offset[0] + self.dxs, self.dip_y + offset[1] + self.dys,
                      sci.counts(self.dip_mag), self.thresholds[id(sci)])
        self.model_ref, self.model_sci = models

    # ---- real changes, positions in the science frame
    def _noise_var(self, x, y):
        """Variance of the difference at (x, y) from both epochs' noiseless models."""
        config, w, h = self.config, self.w, self.h
        ix = np.clip(np.floor(x + 0.5).astype(np.int64), 0, w - 1)
        iy = np.clip(np.floor(y + 0.5).astype(np.int64), 0, h - 1)
        return (self.model_sci[iy, ix] / config.gain + self.read_var
                + self.flux_scale ** 2 * (self.model_ref[iy, ix] / config.gain + self.read_var))

    def _flux_for_snr(self, snr, x, y):
        """Flux giving S/N ``snr``: solve snr^2 (n_eff var + F / gain) = F^2 (background plus the source's photons)."""
        var = self._noise_var(x, y) * self.n_eff
        a = snr ** 2 / self.config.gain
        return 0.5 * (a + np.sqrt(a * a + 4.0 * snr ** 2 * var))

    def _snr_draw(self, n):
        lo, hi = self.config.snr_range
        return np.exp(self.rng_changes.uniform(math.log(lo), math.log(hi), n))

    def inject_real_changes(self):
        """Transients on hosts and hostless, variable stars, moving objects: truth rows, then painted."""
        rng, offset, cnt = self.rng_changes, self.offset, self.config.changes
        # effective number of pixels of the science PSF: 1 / sum(P^2)
        centre_psf = self.sci.stamps(_psf_size(self.sci), self.sci.width_px, 0.0, 0.0)[0]
        self.n_eff = 1.0 / float((centre_psf ** 2).sum())
        real = []
        if self.n_host:  # offset from the host centre along its light profile
            hosts, n_host = self.hosts, self.n_host
            r = hosts["re"] * np.abs(rng.normal(0.0, 0.7, n_host))
            phi = rng.uniform(0.0, 2 * np.pi, n_host)
            u, v = r * np.cos(phi), r * hosts["q"] * np.sin(phi)
            ca, sa = np.cos(hosts["angle"]), np.sin(hosts["angle"])
            tx = hosts["x"] + u * ca - v * sa + offset[0]
            ty = hosts["y"] + u * sa + v * ca + offset[1]
            tflux = self._flux_for_snr(self._snr_draw(n_host), tx, ty)
            real.append(_rows("transient_on_host", tx, ty, 0.0, tflux, host_id=np.arange(n_host) + self.host_first))
        n_hl = self._n_of(cnt.transient_hostless)
        if n_hl:
            tx, ty = self._uniform_inside(rng, n_hl)
            real.append(_rows("transient_hostless", tx, ty, 0.0, self._flux_for_snr(self._snr_draw(n_hl), tx, ty)))
        n_var = self._n_of(cnt.variable_star)
        if n_var:
            vx, vy = self._uniform_inside(rng, n_var)
            delta = self._flux_for_snr(self._snr_draw(n_var), vx, vy) * rng.choice([-1.0, 1.0], n_var)
            f_ref = self.ref.counts(rng.uniform(*self.config.variable_star_mag_range, n_var))
            # a fading star must keep positive flux in the science epoch
            f_ref = np.maximum(f_ref, np.where(delta < 0, 1.25 * np.abs(delta) / self.flux_scale, 0.0))
            # (the floor is at most 0.8 of the scaled flux, so a fading star stays positive)
            floor = self.config.variable_star_min_amplitude * self.flux_scale * f_ref
            delta = np.sign(delta) * np.maximum(np.abs(delta), floor)
            real.append(_rows("variable_star", vx, vy, f_ref, self.flux_scale * f_ref + delta))
        n_mov = self._n_of(cnt.moving_object)
        if n_mov:
            mx, my = self._uniform_inside(rng, n_mov)
            length = rng.uniform(0.0, 12.0, n_mov)
            angle = rng.uniform(0.0, 180.0, n_mov)
            real.append(_rows("moving_object", mx, my, 0.0, self._flux_for_snr(self._snr_draw(n_mov), mx, my),
                              length=length, angle=angle))
        for block in real:
            self._paint_change(block)
        self.rows.extend(real)

    def _paint_change(self, block):
        ref, sci, offset, thr = self.ref, self.sci, self.offset, self.thresholds
        kind = block["kind"][0]
        if kind == "variable_star":
            _paint_points(self.model_ref, ref, block["x"] - offset[0], block["y"] - offset[1],
                          block["flux_reference"], thr[id(ref)])
        if kind == "moving_object":
            for k in range(len(block["x"])):
                _paint_trail(self.model_sci, sci, block["x"][k], block["y"][k], block["flux_science"][k],
                             block["length"][k], block["angle"][k], thr[id(sci)])
        else:
            _paint_points(self.model_sci, sci, block["x"], block["y"], block["flux_science"], thr[id(sci)])

    # ---- bogus changes
    def add_dipole_rows(self):
        """Dipoles are bogus rows over static sources (painted with the static scene)."""
        if self.n_dip:
            f_ref = self.ref.counts(self.dip_mag)
            self.rows.append(_rows("dipole", self.dip_x + self.offset[0] + self.dxs,
                                   self.dip_y + self.offset[1] + self.dys, f_ref, self.flux_scale * f_ref,
                                   length=self.dip_shift, angle=np.degrees(self.dip_angle) % 360.0))

    def add_satellite_streaks(self):
        """Satellite streaks are light from the sky: in the science model, before the noise."""
        rng, w, h = self.rng_art, self.w, self.h
        n_streak = self._n_of(self.config.changes.satellite_streak)
        if not n_streak:
            return
        sigma_sci = self.sci.fwhm_px / 2.3548
        sx0 = rng.uniform(0.0, w - 1, n_streak)
        sy0 = rng.uniform(0.0, h - 1, n_streak)
        ang = rng.uniform(0.0, 180.0, n_streak)
        bg_sigma = np.sqrt(self._noise_var(sx0, sy0) / (1 + self.flux_scale ** 2))
        peak_snr = np.exp(rng.uniform(math.log(0.5), math.log(20.0), n_streak))
        per_px = peak_snr * bg_sigma * math.sqrt(2 * math.pi) * sigma_sci
        lengths, mids = [], []
        for k in range(n_streak):
            seg = _clip_line(sx0[k], sy0[k], math.radians(ang[k]), w, h)
            _render.add_streak(self.model_sci, *seg, float(per_px[k]), sigma_sci)
            lengths.append(math.hypot(seg[2] - seg[0], seg[3] - seg[1]))
            mids.append((0.5 * (seg[0] + seg[2]), 0.5 * (seg[1] + seg[3])))
        mids, lengths = np.array(mids), np.array(lengths)
        self.rows.append(_rows("satellite_streak", mids[:, 0], mids[:, 1], 0.0, per_px * lengths, length=lengths,
                               angle=ang))

    # ---- noise
    def add_noise(self):
        """Gaussian-limit photon and read noise on each model; the variance of the noiseless scene."""
        config = self.config
        pixels = []
        for model, rng in ((self.model_ref, self.rng_noise_ref), (self.model_sci, self.rng_noise_sci)):
            image = rng.standard_normal(size=config.shape, dtype=np.float32)
            variance = np.empty(config.shape, np.float32)
            _render.apply_noise(model, image, 1.0 / config.gain, self.read_var, variance)
            pixels.append((image, variance, np.zeros(config.shape, np.uint32)))
        self.pixels = pixels
        (self.img_ref, self.var_ref, self.mask_ref), (self.img_sci, self.var_sci, self.mask_sci) = pixels

    # ---- detector artifacts (after noise; not in the variance)
    def add_cosmic_rays(self):
        """Cosmic-ray tracks in both epochs (a fraction flagged CR); reference ones reported on the science frame."""
        config, rng, cnt = self.config, self.rng_art, self.config.changes
        for epoch_name, image, mask, rate in (("science", self.img_sci, self.mask_sci, cnt.cosmic_ray),
                                              ("reference", self.img_ref, self.mask_ref, cnt.cosmic_ray_reference)):
            n_cr = _n_from_rate(rng, rate * self.area_mpix)
            if not n_cr:
                continue
            cx, cy = self._uniform_inside(rng, n_cr)
            length = np.where(rng.random(n_cr) < 0.5, 0.0, rng.uniform(1.0, 8.0, n_cr))
            angle = rng.uniform(0.0, 180.0, n_cr)
            flux = np.exp(rng.uniform(math.log(300.0), math.log(20000.0), n_cr)) / config.gain
            masked = rng.random(n_cr) < config.artifact_mask_fraction
            for k in range(n_cr):
                ca, sa = math.cos(math.radians(angle[k])), math.sin(math.radians(angle[k]))
                half = 0.5 * length[k]
                _render.add_line(image, mask, np.uint32(MaskBits.CR if masked[k] else 0), cx[k] - half * ca,
                                 cy[k] - half * sa, cx[k] + half * ca, cy[k] + half * sa, float(flux[k]))
            if epoch_name == "reference":  # kept to paint them again on a transformed reference grid
                self.reference_cosmic_rays = (cx, cy, length, angle, flux, masked)
            if epoch_name == "science":
                self.rows.append(_rows("cosmic_ray", cx, cy, 0.0, flux, masked=masked, length=length, angle=angle,
                                       epoch="science"))
            else:  # report where it lands on the science frame
                self.rows.append(_rows("cosmic_ray", cx + self.offset[0], cy + self.offset[1], flux, 0.0,
                                       masked=masked, length=length, angle=angle, epoch="reference"))

    def add_hot_pixels(self):
        """Hot pixels in the science epoch (a fraction flagged BAD)."""
        rng, m = self.rng_art, self.margin
        n_hot = _n_from_rate(rng, self.config.changes.hot_pixel * self.area_mpix)
        if not n_hot:
            return
        hx = rng.integers(int(m), int(self.w - m), n_hot)
        hy = rng.integers(int(m), int(self.h - m), n_hot)
        flux = np.exp(rng.uniform(math.log(100.0), math.log(30000.0), n_hot))
        masked = rng.random(n_hot) < self.config.artifact_mask_fraction
        np.add.at(self.img_sci, (hy, hx), flux.astype(np.float32))
        self.mask_sci[hy[masked], hx[masked]] |= np.uint32(MaskBits.BAD)
        self.rows.append(_rows("hot_pixel", hx.astype(float), hy.astype(float), 0.0, flux, masked=masked))

    def add_bad_columns(self):
        """Whole or partial bad columns in the science epoch (a fraction flagged BAD)."""
        rng, w, h = self.rng_art, self.w, self.h
        n_col = _n_from_rate(rng, self.config.changes.bad_column * self.area_mpix)
        if not n_col:
            return
        col_x = rng.integers(0, w, n_col)
        full = rng.random(n_col) < 0.5
        y0 = np.where(full, 0, rng.integers(0, h // 2, n_col))
        y1 = np.where(full, h, np.minimum(h, y0 + rng.integers(h // 8 + 1, h // 2 + 1, n_col)))
        level = rng.uniform(50.0, 500.0, n_col)
        masked = rng.random(n_col) < self.config.artifact_mask_fraction
        for k in range(n_col):
            self.img_sci[y0[k]:y1[k], col_x[k]] += np.float32(level[k])
            if masked[k]:
                self.mask_sci[y0[k]:y1[k], col_x[k]] |= np.uint32(MaskBits.BAD)
        seg_len = (y1 - y0).astype(float)
        self.rows.append(_rows("bad_column", col_x.astype(float), 0.5 * (y0 + y1 - 1), 0.0, level * seg_len,
                               masked=masked, length=seg_len, angle=np.full(n_col, 90.0)))

    # ---- saturation and bleed trails (always flagged)
    def saturate(self):
        """Clip at saturation with bleed trails (flagged SAT); saturated static stars become bogus rows."""
        config, ref, sci, w, h = self.config, self.ref, self.sci, self.w, self.h
        ref_sat, sci_sat = _saturation(config, config.reference), _saturation(config, config.science)
        for image, mask, sat in ((self.img_ref, self.mask_ref, ref_sat), (self.img_sci, self.mask_sci, sci_sat)):
            sat = np.float32(sat)
            columns = np.nonzero((image >= sat).any(axis=0))[0].astype(np.int64)
            if len(columns):
                _render.saturate_and_bleed(image, mask, columns, sat, np.uint32(MaskBits.SAT))
        # saturated static stars leave residuals on any difference
        star_x, star_y, star_mag = self.star_x, self.star_y, self.star_mag
        ref_peak = ref.counts(star_mag) * _render.psf_norm(ref.kind, ref.width_px, ref.cfg.moffat_beta)
        sci_peak = sci.counts(star_mag) * _render.psf_norm(sci.kind, sci.width_px, sci.cfg.moffat_beta)
        saturated = (ref_peak + ref.sky_level >= ref_sat) | (sci_peak + sci.sky_level >= sci_sat)
        saturated &= (star_x >= 0) & (star_x <= w - 1) & (star_y >= 0) & (star_y <= h - 1)
        if saturated.any():
            f_ref = ref.counts(star_mag[saturated])
            self.rows.append(_rows("saturated_residual", star_x[saturated] + self.offset[0],
                                   star_y[saturated] + self.offset[1], f_ref, self.flux_scale * f_ref))

    # ---- the reference on its own grid (ReferenceGridConfig)
    def render_reference_on_grid(self):
        """The reference again, on its own grid (:class:`ReferenceGridConfig`): same sky, other pixels.

        Everything static the reference shows -- sky, stars, galaxies (their
        Sersic profiles turned and scaled with the grid), dipoles' stars,
        variable stars' reference flux -- is painted at its transformed position
        with the reference epoch seen through the grid's pixel scale; then noise
        (an eighth random stream, so the seven the pair already drew stay as
        they were), the reference's cosmic rays at their transformed places, and
        saturation.  The one-grid reference stays what the truth's S/N is computed
        with.  Light from beyond the science frame is not simulated: the part of
        the reference grid outside it is empty sky.
        """
        config, grid = self.config, self.config.reference_grid
        shape = config.shape
        grid_config = config.model_copy(update={"pixel_scale": config.pixel_scale / grid.scale})
        epoch = _make_epoch(self.ref.cfg, grid_config, (0.0, 0.0))  # the pair's reference seeing, drawn or not
        threshold = 0.02 * math.sqrt(epoch.sky_level / config.gain + self.read_var)

        def to_grid(x, y):
            return grid.to_reference(x, y, shape)

        model = _sky(epoch, shape)
        sx, sy = to_grid(self.star_x, self.star_y)
        _paint_points(model, epoch, sx, sy, epoch.counts(self.star_mag), threshold)
        gal = dict(self.gal)
        gal["x"], gal["y"] = to_grid(self.gal["x"], self.gal["y"])
        gal["re"] = self.gal["re"] * grid.scale
        gal["angle"] = self.gal["angle"] + math.radians(grid.rotation)
        _paint_galaxies([model], (epoch,), gal, shape)
        dx, dy = to_grid(self.dip_x, self.dip_y)
        _paint_points(model, epoch, dx, dy, epoch.counts(self.dip_mag), threshold)
        for block in self.rows:
            if len(block["kind"]) and block["kind"][0] == "variable_star":
                vx, vy = to_grid(block["x"] - self.offset[0], block["y"] - self.offset[1])
                _paint_points(model, epoch, vx, vy, block["flux_reference"], threshold)
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.index, 7)))
        image = rng.standard_normal(size=shape, dtype=np.float32)
        variance = np.empty(shape, np.float32)
        _render.apply_noise(model, image, 1.0 / config.gain, self.read_var, variance)
        mask = np.zeros(shape, np.uint32)
        crs = getattr(self, "reference_cosmic_rays", None)
        if crs is not None:
            cx, cy, length, angle, flux, masked = crs
            gx, gy = to_grid(cx, cy)
            for k in range(len(cx)):
                a = math.radians(angle[k] + grid.rotation)
                half = 0.5 * length[k] * grid.scale
                _render.add_line(image, mask, np.uint32(MaskBits.CR if masked[k] else 0), gx[k] - half * math.cos(a),
                                 gy[k] - half * math.sin(a), gx[k] + half * math.cos(a), gy[k] + half * math.sin(a),
                                 float(flux[k]))
        sat = np.float32(_saturation(config, config.reference))
        columns = np.nonzero((image >= sat).any(axis=0))[0].astype(np.int64)
        if len(columns):
            _render.saturate_and_bleed(image, mask, columns, sat, np.uint32(MaskBits.SAT))
        # the grid's WCS: q = M (p - c) + c + shift, so CD_q = CD_p M^-1 and CRPIX_q = c + shift (1-based: + 1)
        wcs = _wcs(config, self.center, (0.0, 0.0))
        wcs.wcs.cd = wcs.wcs.cd @ np.linalg.inv(grid.matrix())
        wcs.wcs.crpix = [wcs.wcs.crpix[0] + grid.shift[0], wcs.wcs.crpix[1] + grid.shift[1]]
        self.grid_reference, self.grid_wcs = epoch, wcs
        self.pixels = [(image, variance, mask), self.pixels[1]]

    # ---- exposures and truth
    def _meta(self, name: str, epoch: _Epoch, visit: int) -> dict:
        config = self.config
        return {
            "exposure_id": f"{self.pair_id}-{name[:3]}", "survey": "sim", "visit": int(visit), "ccd": 0,
            "band": config.band, "mjd": float(epoch.cfg.mjd), "exptime": float(epoch.cfg.exptime),
            "gain": float(config.gain), "saturation": float(_saturation(config, epoch.cfg)),
            "zero_point": float(epoch.cfg.zero_point), "read_noise": float(config.read_noise),
            "background_subtracted": False, "sky_level": float(epoch.sky_level),
            "sky_gradient_x": float(epoch.cfg.sky_gradient[0]), "sky_gradient_y": float(epoch.cfg.sky_gradient[1]),
            "seeing": float(epoch.cfg.seeing), "fwhm_px": float(epoch.fwhm_px), "psf_model": epoch.cfg.psf_model,
            "njy_per_count": float(10.0 ** (-0.4 * (epoch.cfg.zero_point + 2.5 * math.log10(epoch.cfg.exptime)
                                                     - AB_NJY_ZEROPOINT))),
            "flux_scale": self.flux_scale, "pair_id": self.pair_id, "epoch": name,
        }

    def assemble(self) -> ImagePair:
        """Both exposures (pixels, PSF stamp, WCS header, meta), the truth table with S/N, the source table."""
        ref, sci, index = self.ref, self.sci, self.index
        metas = [(self._meta(name, epoch, visit), _wcs(self.config, self.center, center_offset))
                 for name, epoch, visit, center_offset in (("reference", ref, 2 * index, (0.0, 0.0)),
                                                           ("science", sci, 2 * index + 1, self.offset))]
        psfs = [e.stamps(_psf_size(e), e.width_px, 0.0, 0.0)[0].astype(np.float32) for e in (ref, sci)]
        grid_ref = getattr(self, "grid_reference", None)
        if grid_ref is not None:  # the reference on its own grid: its epoch (pixel scale), WCS and PSF stamp
            metas[0] = (dict(self._meta("reference", grid_ref, 2 * index),
                             reference_grid=self.config.reference_grid.model_dump()), self.grid_wcs)
            psfs[0] = grid_ref.stamps(_psf_size(grid_ref), grid_ref.width_px, 0.0, 0.0)[0].astype(np.float32)
        exposures = [Exposure(image=image, variance=variance, mask=mask, psf=psf, header=_header(wcs, meta), meta=meta)
                     for (meta, wcs), (image, variance, mask), psf in zip(metas, self.pixels, psfs)]
        truth = _truth_table(self.rows, self.pair_id, self.flux_scale, metas[1][0]["njy_per_count"], metas[1][1])
        point = truth["kind"].isin(_POINT_LIKE).to_numpy()
        snr = np.full(len(truth), np.nan)
        if point.any():
            var_diff = self.var_sci + np.float32(self.flux_scale ** 2) * self.var_ref
            snr[point] = _snr_expected(sci, var_diff, truth[point], _psf_size(sci))
        truth["snr_expected"] = snr
        pair_meta = {"flux_scale": self.flux_scale, "offset_x": self.offset[0], "offset_y": self.offset[1],
                     "center_ra": self.center[0], "center_dec": self.center[1], "n_stars": self.n_stars,
                     "n_galaxies": len(self.gal["x"]), "seed": self.seed, "index": index}
        if grid_ref is not None:
            pair_meta["reference_grid"] = self.config.reference_grid.model_dump()
        sources = _source_table(self.gal, self.star_x, self.star_y, self.star_mag, ref, sci, self.offset,
                                metas[1][1], self.config.pixel_scale)
        return ImagePair(reference=exposures[0], science=exposures[1], truth=truth, pair_id=self.pair_id,
                         meta=pair_meta, sources=sources)


def _source_table(gal, star_x, star_y, star_mag, ref, sci, offset, wcs_sci, pixel_scale) -> pd.DataFrame:
    n_gal, n_star = len(gal["x"]), len(star_x)
    x = np.concatenate([gal["x"], star_x]) + offset[0]
    y = np.concatenate([gal["y"], star_y]) + offset[1]
    mag = np.concatenate([gal["mag"], star_mag])
    ra, dec = wcs_sci.all_pix2world(x, y, 0) if len(x) else (np.zeros(0), np.zeros(0))
    nan = np.full(n_star, np.nan)
    return pd.DataFrame({
        "source_id": np.arange(n_gal + n_star),
        "kind": np.array(["galaxy"] * n_gal + ["star"] * n_star, dtype=object),
        "x": x, "y": y, "ra": np.asarray(ra, np.float64), "dec": np.asarray(dec, np.float64), "mag": mag,
        "flux_reference": ref.counts(mag), "flux_science": sci.counts(mag),
        "sersic_n": np.concatenate([gal["n"], nan]),
        "r_eff": np.concatenate([gal["re"] * pixel_scale, nan]),  # arcsec
        "axis_ratio": np.concatenate([gal["q"], nan]),
        "angle": np.concatenate([np.degrees(gal["angle"]), nan]),
    }, columns=list(SOURCE_COLUMNS))


def _psf_size(epoch: _Epoch) -> int:
    fwhm = epoch.fwhm_px * (1.0 + epoch.cfg.psf_variation)
    return max(2 * int(math.ceil(4.0 * fwhm)) + 1, 15)


def _draw_galaxies(rng, n, config, w, h, mag_range, margin=0.0):
    lo, hi = config.galaxy_reff_range
    return {
        "x": rng.uniform(margin - 0.5, w - 0.5 - margin, n),
        "y": rng.uniform(margin - 0.5, h - 0.5 - margin, n),
        "mag": _lf_mags(rng, n, mag_range, config.galaxy_lf_slope),
        "re": np.exp(rng.uniform(math.log(lo), math.log(hi), n)) / config.pixel_scale,
        "n": rng.uniform(0.6, 4.0, n),
        "q": rng.uniform(0.35, 1.0, n),
        "angle": rng.uniform(0.0, np.pi, n),
    }


def _paint_trail(image, epoch, x, y, flux, length, angle_deg, threshold):
    """A trailed moving object: point sources spaced <= 1 px along the trail."""
    steps = max(int(math.ceil(length)), 1)
    t = (np.arange(steps) + 0.5) / steps - 0.5 if steps > 1 else np.zeros(1)
    ca, sa = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    _paint_points(image, epoch, x + t * length * ca, y + t * length * sa, np.full(steps, flux / steps), threshold)


def _clip_line(x0, y0, theta, w, h):
    """The in-image segment of the line through (x0, y0) at angle ``theta`` (Liang-Barsky)."""
    dx, dy = math.cos(theta), math.sin(theta)
    t_lo, t_hi = -1e9, 1e9
    for p, lo, hi in ((dx, -0.5 - x0, w - 0.5 - x0), (dy, -0.5 - y0, h - 0.5 - y0)):
        if abs(p) < 1e-12:
            continue
        a, b = lo / p, hi / p
        t_lo, t_hi = max(t_lo, min(a, b)), min(t_hi, max(a, b))
    return (x0 + t_lo * dx, y0 + t_lo * dy, x0 + t_hi * dx, y0 + t_hi * dy)


def _rows(kind, x, y, flux_reference, flux_science, *, host_id=None, masked=None, length=None, angle=None,
          epoch="science"):
    x = np.asarray(x, np.float64)
    n = len(x)
    block = {
        "kind": np.array([kind] * n, dtype=object),
        "epoch": np.array([epoch] * n, dtype=object),
        "x": x,
        "y": np.asarray(y, np.float64),
        "flux_reference": np.broadcast_to(np.asarray(flux_reference, np.float64), (n,)).copy(),
        "flux_science": np.broadcast_to(np.asarray(flux_science, np.float64), (n,)).copy(),
        "host_id": np.full(n, -1, np.int64) if host_id is None else np.asarray(host_id, np.int64),
        "masked": np.zeros(n, bool) if masked is None else np.asarray(masked, bool),
        "length": np.zeros(n) if length is None else np.asarray(length, np.float64),
        "angle": np.zeros(n) if angle is None else np.asarray(angle, np.float64),
    }
    return block


def _truth_table(rows, pair_id, flux_scale, njy_per_count, wcs_sci) -> pd.DataFrame:
    if rows:
        data = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    else:
        data = {k: np.zeros(0) for k in ("kind", "epoch", "x", "y", "flux_reference", "flux_science", "host_id",
                                         "masked", "length", "angle")}
    n = len(data["x"])
    if n:
        ra, dec = wcs_sci.all_pix2world(data["x"], data["y"], 0)
    else:
        ra = dec = np.zeros(0)
    delta = data["flux_science"] - flux_scale * data["flux_reference"]
    kind = np.asarray(data["kind"], dtype=object)
    frame = pd.DataFrame({
        "pair_id": pair_id,
        "change_id": [f"{pair_id}-{k:05d}" for k in range(n)],
        "kind": pd.Series(kind, dtype=object),
        "real": np.isin(kind, REAL_KINDS),
        "epoch": pd.Series(np.asarray(data["epoch"], dtype=object), dtype=object),
        "x": data["x"], "y": data["y"], "ra": np.asarray(ra, np.float64), "dec": np.asarray(dec, np.float64),
        "flux_reference": data["flux_reference"], "flux_science": data["flux_science"],
        "delta_flux": delta, "delta_flux_njy": delta * njy_per_count, "flux_scale": flux_scale,
        "snr_expected": np.nan, "host_id": np.asarray(data["host_id"], np.int64),
        "masked": np.asarray(data["masked"], bool), "length": data["length"], "angle": data["angle"],
    }, columns=list(TRUTH_COLUMNS))
    return frame
