"""Small plain-FITS survey pairs (one image HDU with a WCS each), for tests of the survey paths.

:func:`write_survey_pair` writes a science frame and a reference as a
telescope would: one image HDU, a TAN WCS, ``GAIN``/``SATURATE``/``RDNOISE``
and no PSF.  The reference points elsewhere (its pixel grid is shifted and
turned against the science frame's; the WCSs say by how much, exactly), is
deeper and sharper; the science frame adds point sources that the reference
lacks (the transients, at known positions).  The sky is a field of isolated
Gaussian stars, bright enough to measure each PSF and the flux ratio from.
Fast (a 256 x 256 pair in milliseconds), which is the point: the simulator
(:mod:`astroray.datasets`) gives truer skies at seconds a pair.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SurveyPairFiles", "survey_wcs_header", "render_stars", "write_survey_pair"]

_PIXEL_DEG = 1.0 / 3600  # 1 arcsec pixels


@dataclass
class SurveyPairFiles:
    """Paths of a pair :func:`write_survey_pair` wrote and what it put in them.

    Attributes
    ----------
    science, reference : Path
    transients : ndarray (n, 2)
        (x, y) of the sources only the science frame has, science pixels.
    stars : ndarray (n, 2)
        (x, y) of the static stars, science pixels.
    shift : (float, float)
        Reference pixel minus science pixel at the frame centre (x, y).
    rotation_deg : float
    """

    science: Path
    reference: Path
    transients: np.ndarray
    stars: np.ndarray
    shift: tuple[float, float]
    rotation_deg: float


def survey_wcs_header(shape, *, crval=(150.0, 2.0), crpix=None, rotation_deg: float = 0.0):
    """A TAN WCS header (astropy ``Header``) of 1 arcsec pixels, north up, turned by ``rotation_deg``."""
    from astropy.wcs import WCS

    h, w = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = list(crpix) if crpix is not None else [0.5 * (w + 1), 0.5 * (h + 1)]
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    wcs.wcs.cd = _PIXEL_DEG * np.array([[-c, s], [s, c]])
    wcs.wcs.crval = list(crval)
    return wcs.to_header()


def render_stars(shape, xy: np.ndarray, flux: np.ndarray, fwhm: float) -> np.ndarray:
    """Gaussian point sources of total ``flux`` at 0-based ``xy`` (pixel-integrated to first order)."""
    h, w = shape
    sigma = fwhm / 2.3548
    half = int(math.ceil(5 * sigma))
    out = np.zeros(shape)
    offs = np.arange(-half, half + 1)
    for (x, y), f in zip(np.asarray(xy, float), np.asarray(flux, float)):
        ix, iy = int(round(x)), int(round(y))
        xs, ys = ix + offs, iy + offs
        gx = np.exp(-0.5 * ((xs - x) / sigma) ** 2)
        gy = np.exp(-0.5 * ((ys - y) / sigma) ** 2)
        stamp = f * np.outer(gy, gx) / (2 * math.pi * sigma ** 2)
        oky, okx = (ys >= 0) & (ys < h), (xs >= 0) & (xs < w)
        out[np.ix_(ys[oky], xs[okx])] += stamp[np.ix_(oky, okx)]
    return out


def write_survey_pair(folder, *, shape=(256, 256), n_stars: int = 90, n_transients: int = 3,
                      shift=(5.3, -3.7), rotation_deg: float = 0.4, fwhm_science: float = 3.4,
                      fwhm_reference: float = 2.6, seed: int = 0, science_name: str = "sci.fits",
                      reference_name: str = "ref.fits") -> SurveyPairFiles:
    """Write a science frame and a reference on another pointing; see the module docstring.

    Both frames have one zero point (flux ratio 1), sky 400 counts, gain 2
    e-/count, read noise 5 e-; the reference has a quarter of the
    science frame's sky noise (a stack).
    """
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = shape
    margin = 12
    # stars spread out on a jittered lattice, so most are isolated
    side = int(math.ceil(math.sqrt(n_stars)))
    gx, gy = np.meshgrid(np.linspace(margin, w - 1 - margin, side), np.linspace(margin, h - 1 - margin, side))
    cell = min((w - 2 * margin) / side, (h - 2 * margin) / side)
    stars = np.column_stack([gx.ravel(), gy.ravel()])[:n_stars] + rng.uniform(-0.3, 0.3, (n_stars, 2)) * cell
    flux = 10 ** rng.uniform(3.6, 5.0, n_stars)
    # transients: in the middle of lattice cells, >= 0.2 cell from every star
    sx, sy = gx[0, 1] - gx[0, 0], gy[1, 0] - gy[0, 0]
    cells = rng.choice((side - 1) ** 2, n_transients, replace=False)
    transients = np.column_stack([gx[0, 0] + (cells % (side - 1) + 0.5) * sx, gy[0, 0] + (cells // (side - 1) + 0.5) * sy])
    t_flux = np.full(n_transients, 3e4)

    sky, gain, rdnoise = 400.0, 2.0, 5.0
    science = sky + render_stars(shape, stars, flux, fwhm_science) + render_stars(shape, transients, t_flux,
                                                                                  fwhm_science)
    science = science + rng.normal(size=shape) * np.sqrt(science / gain + (rdnoise / gain) ** 2)

    # reference pixel = R (science pixel - centre) + centre + shift, R a rotation by rotation_deg
    c = np.array([0.5 * (w - 1), 0.5 * (h - 1)])
    ang = math.radians(rotation_deg)
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    ref_xy = (stars - c) @ rot.T + c + np.asarray(shift)
    reference = sky + render_stars(shape, ref_xy, flux, fwhm_reference)
    reference = reference + rng.normal(size=shape) * 0.25 * np.sqrt(reference / gain + (rdnoise / gain) ** 2)

    sci_header = survey_wcs_header(shape)
    # the reference's WCS: the same sky at pixel R (p - centre) + centre + shift; CD turned by -rotation
    crpix_sci = np.array([0.5 * (w + 1), 0.5 * (h + 1)]) - 1  # 0-based
    crpix_ref = rot @ (crpix_sci - c) + c + np.asarray(shift) + 1
    ref_header = survey_wcs_header(shape, crpix=crpix_ref, rotation_deg=-rotation_deg)
    for hdr, name in ((sci_header, "science"), (ref_header, "reference")):
        hdr["GAIN"], hdr["SATURATE"], hdr["RDNOISE"] = gain, 60000.0, rdnoise
        hdr["EXPTIME"], hdr["FILTER"], hdr["MJD-OBS"] = 30.0, "r", 60000.0 if name == "reference" else 60100.0
        hdr["EXPID"] = f"synthetic-{seed}-{name}"
    sci_path, ref_path = folder / science_name, folder / reference_name
    fits.PrimaryHDU(science.astype(np.float32), header=sci_header).writeto(sci_path, overwrite=True)
    fits.PrimaryHDU(reference.astype(np.float32), header=ref_header).writeto(ref_path, overwrite=True)
    return SurveyPairFiles(science=sci_path, reference=ref_path, transients=transients, stars=stars,
                           shift=(float(shift[0]), float(shift[1])), rotation_deg=float(rotation_deg))
