"""Image differencing stage: ZOGY or classic, on the CPU or the GPU, on Exposure records.

Example
-------
>>> from astroray.imaging.difference import Differencer, DifferenceConfig
>>> diff = Differencer(DifferenceConfig(method="zogy", device="auto"))
>>> res = diff.run(reference, science)             # doctest: +SKIP
>>> candidates = res.score > 5                      # doctest: +SKIP

Both exposures must be background-subtracted and on the same pixel grid.
Pixels flagged in either mask (``bad_bits``), non-finite pixels and pixels with
zero variance are set to 0 with variance 0 in *both* images before
differencing; they carry their flags into :attr:`DifferenceResult.mask` and a
score of 0, and so does their neighbourhood where the blanked light leaves a
residual in the score (``mask_residual``, ``mask_grow``).

Conventions: ``flux_ratio`` is ``F_n / F_r`` (science counts per reference
count of the same star); ``F_n = 1``, so :attr:`DifferenceResult.flux` is in
science-image counts for both methods.  For ZOGY, ``difference`` is the proper
difference ``D`` (unit-variance background noise) whose point sources have
total flux ``zero_point * flux``; for classic, ``difference`` is in science
counts and ``zero_point`` is 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from astroray.config import AstrorayConfig, Device
from astroray.errors import InvalidInputError
from astroray.imaging._regions import bounding_box, grow
from astroray.kernels.backend import array_module_of, device_synchronize, get_xp, resolve_device, to_numpy
from astroray.kernels.difference import classic as _classic
from astroray.kernels.difference import zogy as _zogy
from astroray.kernels.difference.common import FourierBackend, fit_flux_ratio, prepare_psf, psf_covariance
from astroray.records import Exposure, MaskBits
from astroray.stage import Stage, StageTimer

__all__ = ["DifferenceConfig", "DifferenceResult", "Differencer", "photometric_flux_ratio"]

_DEFAULT_BAD = int(MaskBits.BAD | MaskBits.SAT | MaskBits.CR | MaskBits.NO_DATA)
_MAX_SEEDS_ONE_BY_ONE = 20000


class DifferenceConfig(AstrorayConfig):
    """Options of :class:`Differencer`.

    Attributes
    ----------
    method : {"zogy", "classic"}
        Proper image subtraction (Zackay, Ofek & Gal-Yam 2016) or the classic
        Gaussian-matched, scaled difference.
    device : {"cpu", "gpu", "auto"} or None
        Where the array work runs; None follows the pipeline's device
        (``"auto"`` for a stage on its own).
    flux_ratio : float or None
        ``F_n / F_r``; None fits it: from stars matched in both images (ZOGY;
        from the exposures' zero points and exposure times when too few stars),
        or as the scale of the pixel fit (classic).
    sigma_astrometric : (float, float)
        Registration noise ``(sigma_x, sigma_y)`` in pixels (ZOGY's astrometric
        term of ``S_corr``).  Set it to the registration's rms: a 0.1 px
        misregistration turns every bright star into a > 5 sigma dipole
        otherwise.
    source_noise : bool
        ZOGY: include the source-noise variance of both images in ``S_corr``
        and the flux errors (two variance convolutions).
    difference_variance : bool
        ZOGY: compute the per-pixel variance of ``D`` with source noise
        (otherwise the background-only constant, about 1).
    pad : int or None
        Zero padding against wrap-around (default: three times the larger PSF side).
    tile_overlap : int or None
        Margin of each tile when a PSF grid is given (default: ``pad``).
    fourier_floor : float
        ZOGY denominator floor relative to its zero-frequency value.
    recenter_psf : bool
        Move each PSF's centroid onto its middle pixel.
    fft_workers : int
        CPU FFT threads (-1: all cores).
    cpu_kernels : {"numba", "numpy"}
        CPU Fourier-space arithmetic: parallel Numba loops, or the NumPy
        expressions the GPU path fuses.
    keep_on_device : bool
        Leave the result arrays on the GPU (CuPy) for the next stage (the
        image pipeline does, and copies its result back once).
    bad_bits : int
        Mask bits that exclude a pixel (blanked in both images).
    mask_residual : float
        ZOGY: where the light blanked with a pixel flagged in one image only
        (read from the other image) may leave a residual above this many sigma
        of ``S_corr``, the score is set to 0 as well (``inf``: flagged pixels
        only, with ``mask_grow=0``).  The two images' kernels
        turn such a hole into a ring of residuals around a flagged star core;
        a flagged pixel on empty sky or a faint host leaves almost none.
    mask_grow : float
        Pixels flagged in both images (saturated cores) whose light is
        unknown: where they border light, the score is set to 0 within this
        many FWHM of the broader PSF (classic: all flagged pixels on light;
        0: flagged pixels only).
    ratio_min_snr : float
        Peak S/N of the stars that fit ``flux_ratio``.
    ratio_photometry : {"psf", "box"}
        Star fluxes for the ratio: PSF fits with each image's stamp (on the
        scale ZOGY subtracts on) or sums over a box holding the PSF.
    classic_score : {"matched_filter", "pixel"}
        Classic detection image: PSF matched filter over its sigma, or ``D / sqrt(var)``.
    fit_offset : bool
        Classic: fit a constant offset.
    clip_sigma : float
        Clipping threshold of the robust fits.
    """

    method: Literal["zogy", "classic"] = "zogy"
    device: Device | None = None
    flux_ratio: float | None = Field(default=None, gt=0)
    sigma_astrometric: tuple[float, float] = (0.0, 0.0)
    source_noise: bool = True
    difference_variance: bool = False
    pad: int | None = Field(default=None, ge=1)
    tile_overlap: int | None = Field(default=None, ge=0)
    fourier_floor: float = Field(default=1e-8, gt=0, lt=1)
    recenter_psf: bool = True
    fft_workers: int = -1
    cpu_kernels: Literal["numba", "numpy"] = "numba"
    keep_on_device: bool = False
    bad_bits: int = _DEFAULT_BAD
    mask_residual: float = Field(default=1.0, gt=0)
    mask_grow: float = Field(default=2.0, ge=0)
    ratio_min_snr: float = Field(default=20.0, gt=0)
    ratio_photometry: Literal["psf", "box"] = "psf"
    classic_score: Literal["matched_filter", "pixel"] = "matched_filter"
    fit_offset: bool = True
    clip_sigma: float = Field(default=3.0, gt=0)

    @field_validator("sigma_astrometric")
    @classmethod
    def _non_negative(cls, value):
        if any(v < 0 for v in value):
            raise ValueError(f"sigma_astrometric must be >= 0, got {value!r}")
        return value


@dataclass
class DifferenceResult:
    """What :meth:`Differencer.run` returns (float32 (H, W) arrays unless noted).

    Attributes
    ----------
    difference : array
        ``D`` (see the module notes for its flux units).
    score : array
        Detection image in sigma units: ZOGY's ``S_corr``; classic: the PSF
        matched filter over its sigma (or ``D / sqrt(variance)``).
    variance : array
        Per-pixel variance of ``difference``.
    psf : ndarray (h, w)
        PSF of ``difference`` (``P_D`` for ZOGY), centred, summing to 1.
    zero_point : float
        ``F_D`` for ZOGY, 1 for classic.
    flux_ratio : float
        ``F_n / F_r``, fitted or given.
    flux, flux_err : array
        PSF-photometry flux (science counts) of a point source centred on
        each pixel, and its error.
    mask : ndarray uint32
        OR of both input masks; non-finite or zero-variance pixels add NO_DATA.
    matched_filter : array or None
        ZOGY's ``S``.
    method, device : str
        What ran, and where ("cpu" or "gpu").
    meta : dict
        Noise levels, flux-ratio fit, timings (ms), FFT grid.
    """

    difference: Any
    score: Any
    variance: Any
    psf: np.ndarray
    zero_point: float
    flux_ratio: float
    flux: Any
    flux_err: Any
    mask: Any
    matched_filter: Any
    method: str
    device: str
    meta: dict = field(default_factory=dict)

    def flux_at(self, y, x) -> tuple[np.ndarray, np.ndarray]:
        """Forced PSF photometry at sub-pixel positions: ``(flux, flux_err)`` in science counts (host arrays).

        :attr:`flux` holds the flux of a source centred on each pixel; it is a
        smooth (PSF-filtered) image, so a cubic spline through the 9 x 9
        pixels around ``(y, x)`` gives the flux of a source centred there.
        Only those windows leave the device.
        """
        from scipy.ndimage import map_coordinates

        ys, xs = np.atleast_1d(np.asarray(y, np.float64)), np.atleast_1d(np.asarray(x, np.float64))
        H, W = self.flux.shape
        outside = ~((ys >= 0) & (ys <= H - 1) & (xs >= 0) & (xs <= W - 1))
        if outside.any():
            k = int(np.flatnonzero(outside)[0])
            raise InvalidInputError(f"position ({ys[k]}, {xs[k]}) is outside the image {(H, W)}")
        n = ys.shape[0]
        if H < 9 or W < 9:  # a tiny image: the whole of it is the window
            flux, err = to_numpy(self.flux), to_numpy(self.flux_err)
            r0, c0 = np.zeros(n, np.int64), np.zeros(n, np.int64)
            win_f, win_e = np.broadcast_to(flux, (n, H, W)), np.broadcast_to(err, (n, H, W))
        else:
            r0 = np.clip(np.rint(ys).astype(np.int64), 4, H - 5) - 4
            c0 = np.clip(np.rint(xs).astype(np.int64), 4, W - 5) - 4
            xp = array_module_of(self.flux)
            offs = np.arange(9)
            rows = xp.asarray((r0[:, None] + offs)[:, :, None])
            cols = xp.asarray((c0[:, None] + offs)[:, None, :])
            win_f, win_e = to_numpy(self.flux[rows, cols]), to_numpy(self.flux_err[rows, cols])
        out_f, out_e = np.empty(n), np.empty(n)
        for k in range(n):
            at = [[ys[k] - r0[k]], [xs[k] - c0[k]]]
            out_f[k] = map_coordinates(win_f[k].astype(np.float64), at, order=3, mode="nearest")[0]
            out_e[k] = map_coordinates(win_e[k].astype(np.float64), at, order=1, mode="nearest")[0]
        return out_f, out_e

    def to_numpy(self) -> "DifferenceResult":
        """The same result with every array on the host."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("difference", "score", "variance", "flux", "flux_err", "mask", "matched_filter"):
            if out[name] is not None:
                out[name] = to_numpy(out[name])
        return DifferenceResult(**out)


def photometric_flux_ratio(reference: Exposure, science: Exposure) -> float | None:
    """``F_n / F_r`` from the exposures' calibration, or None without it.

    With ``zero_point`` the AB magnitude of one count per second, a source gives
    ``exptime * 10**(0.4 * zero_point)`` counts per unit flux in each exposure.
    """
    try:
        zr, zn = float(reference.meta["zero_point"]), float(science.meta["zero_point"])
        tr, tn = float(reference.meta["exptime"]), float(science.meta["exptime"])
    except (KeyError, TypeError, ValueError):
        return None
    ratio = (tn / tr) * 10.0 ** (0.4 * (zn - zr)) if tr > 0 else float("nan")
    return float(ratio) if np.isfinite(ratio) and ratio > 0 else None


class Differencer(Stage[DifferenceConfig]):
    """Configure once, then difference exposure pairs with :meth:`run`.

    Parameters
    ----------
    config : DifferenceConfig, dict or None
        Defaults: ZOGY on the GPU when one is usable, else the CPU.
    """

    config_class = DifferenceConfig

    def setup(self) -> None:
        self.device = resolve_device(self.config.device or "auto")
        self.xp = get_xp(self.device)
        # One FFT backend per stage: on the GPU it holds the cuFFT plans and fused kernels.
        self.fft = FourierBackend(self.xp, workers=self.config.fft_workers, cpu_kernels=self.config.cpu_kernels)
        self._method = {"zogy": self._run_zogy, "classic": self._run_classic}[self.config.method]

    def run(self, reference: Exposure, science: Exposure, *, flux_ratio: float | None = None,
            psf_reference=None, psf_science=None) -> DifferenceResult:
        """Difference ``science - reference``.

        Parameters
        ----------
        reference, science : Exposure
            Background-subtracted, same pixel grid; their pixel planes may
            already be on the stage's device (the image pipeline's
            :class:`~astroray.imaging.pipeline.ExposureArrays`).
        flux_ratio : float, optional
            ``F_n / F_r`` for this pair (overrides the config; None: config, else fitted).
        psf_reference, psf_science : ndarray (h, w) or (ny, nx, h, w), optional
            PSFs to use instead of the exposures' stamps; a grid of stamps
            (ZOGY only) describes a spatially varying PSF over ``ny x nx``
            equal tiles, differenced tile by tile with overlapping margins.

        Raises
        ------
        InvalidInputError
            Shapes differ, no usable pixels, zero variance everywhere, a PSF
            that cannot be normalised, or too few stars to fit the flux ratio.
        """
        timer = StageTimer(sync=lambda: device_synchronize(self.xp))
        src = science.exposure_id or reference.exposure_id or None
        meta: dict = {}
        try:
            with timer("prepare"):
                inputs = self._prepare(reference, science)
            ratio = flux_ratio if flux_ratio is not None else self.config.flux_ratio
            with timer("flux_ratio"):
                ratio = self._flux_ratio(inputs, reference, science, ratio, meta)
            psf_r = reference.psf if psf_reference is None else to_numpy(psf_reference)
            psf_n = science.psf if psf_science is None else to_numpy(psf_science)
            if self.config.method == "classic" and (psf_r.ndim != 2 or psf_n.ndim != 2):
                raise InvalidInputError("the classic method takes one PSF stamp per image, not a grid")
            with timer("difference"):
                result, blank = self._method(inputs, psf_r, psf_n, None if ratio is None else float(ratio), meta)
        except InvalidInputError as exc:
            if src and exc.source is None:
                raise InvalidInputError(exc.reason, source=src) from None
            raise
        result.score[blank] = 0.0
        result.mask = inputs["mask"]
        meta["timings_ms"] = dict(timer.ms, total=timer.total())
        return result if self.config.keep_on_device else result.to_numpy()

    def _flux_ratio(self, inputs, reference, science, ratio, meta):
        """The given ``F_n / F_r``, or (ZOGY) one fitted to the stars, or one from the zero points."""
        if ratio is None and self.config.method == "zogy":  # classic fits its own scale
            box = max(reference.psf.shape + science.psf.shape)
            psfs = {}
            if self.config.ratio_photometry == "psf":
                psfs = dict(psf_reference=prepare_psf(reference.psf), psf_science=prepare_psf(science.psf))
            try:
                fit = fit_flux_ratio(inputs["R"], inputs["N"], variance_reference=inputs["VR"],
                                     variance_science=inputs["VN"], good=inputs["good"], box=box,
                                     min_snr=self.config.ratio_min_snr, clip_sigma=self.config.clip_sigma, **psfs)
                meta["flux_ratio_fit"] = {"ratio": fit.ratio, "ratio_err": fit.ratio_err, "n_stars": fit.n_stars,
                                          "n_used": fit.n_used}
                return fit.ratio
            except InvalidInputError as exc:
                # Too few stars (small cutouts, sparse fields): the photometric calibration of
                # both exposures gives the ratio, as it does in survey pipelines.
                ratio = photometric_flux_ratio(reference, science)
                if ratio is None:
                    raise InvalidInputError(
                        f"{exc.reason}; nor do both exposures carry zero_point and exptime to derive it") from None
                meta["flux_ratio_fit"] = {"ratio": ratio, "source": "zero_points", "fit_error": exc.reason}
                return ratio
        if ratio is not None and (not (ratio > 0) or not np.isfinite(ratio)):
            raise InvalidInputError(f"flux_ratio must be positive and finite, got {ratio!r}")
        return ratio

    # ------------------------------------------------------------------ steps

    def _prepare(self, reference: Exposure, science: Exposure) -> dict:
        xp = self.xp
        if reference.shape != science.shape:
            raise InvalidInputError(
                f"reference shape {reference.shape} and science shape {science.shape} differ "
                "(resample both onto the same pixel grid first)")
        psfs = [prepare_psf(e.psf, name=f"{n} PSF") for n, e in (("reference", reference), ("science", science))]
        fwhm = 2.3548 * max(float(np.sqrt(np.linalg.eigvalsh(psf_covariance(p)).max())) for p in psfs)
        if xp is np and self.config.cpu_kernels == "numba":
            out = self._prepare_host(reference, science)
            if out is not None:
                out["fwhm"] = fwhm
                return out
        raw: dict = {}
        masks, bads = [], []
        for key, e in (("R", reference), ("N", science)):
            img, var, msk = xp.asarray(e.image), xp.asarray(e.variance), xp.asarray(e.mask)
            bad = ~xp.isfinite(img) | ~xp.isfinite(var) | (var <= 0)
            masks.append(msk | xp.where(bad, np.uint32(MaskBits.NO_DATA), np.uint32(0)))
            bad |= (msk & np.uint32(self.config.bad_bits)) != 0
            if bool(bad.all()):
                name = "reference" if key == "R" else "science"
                if bool(xp.all(var == 0)):
                    raise InvalidInputError(f"{name} variance is zero everywhere")
                raise InvalidInputError(f"{name} has no usable pixels (all flagged, NaN or zero variance)")
            bads.append(bad)
            raw[key], raw["V" + key] = img, var
        bad = bads[0] | bads[1]
        if not bool((~bad).any()):
            raise InvalidInputError("no pixel is usable in both images")
        out: dict = {"bad": bad, "good": ~bad, "mask": masks[0] | masks[1], "raw": None, "bads": bads, "fwhm": fwhm}
        if bool(bad.any()):
            # Blank a pixel flagged in either image in both, so neither keeps light the other lost.
            for key in ("R", "N", "VR", "VN"):
                out[key] = xp.where(bad, np.float32(0), raw[key])
            out["raw"] = raw
        else:  # nothing to blank: no copies
            out.update(raw)
        return out

    def _prepare_host(self, reference: Exposure, science: Exposure) -> dict | None:
        """:meth:`_prepare` for float32 planes and uint32 masks on the host: one parallel pass (Numba) instead of
        a dozen array expressions; the same arrays, and the same errors.  None for other dtypes."""
        planes = [np.asarray(a) for e in (reference, science) for a in (e.image, e.variance)]
        masks = [np.asarray(e.mask) for e in (reference, science)]
        if any(p.dtype != np.float32 for p in planes) or any(m.dtype != np.uint32 for m in masks):
            return None
        from astroray.kernels.difference import _cpu

        R, VR, N, VN = planes
        R0, N0, VR0, VN0, mask, bad_r, bad_n, bad, good, counts = _cpu.prepare_pair(
            R, N, VR, VN, masks[0], masks[1], np.uint32(self.config.bad_bits), np.uint32(MaskBits.NO_DATA))
        for name, n_bad, var in (("reference", counts[0], VR), ("science", counts[1], VN)):
            if n_bad == bad.size:
                if bool(np.all(var == 0)):
                    raise InvalidInputError(f"{name} variance is zero everywhere")
                raise InvalidInputError(f"{name} has no usable pixels (all flagged, NaN or zero variance)")
        if counts[2] == bad.size:
            raise InvalidInputError("no pixel is usable in both images")
        out: dict = {"bad": bad, "good": good, "mask": mask, "raw": None, "bads": [bad_r, bad_n]}
        raw = {"R": R, "N": N, "VR": VR, "VN": VN}
        if counts[2]:
            out.update(R=R0, N=N0, VR=VR0, VN=VN0, raw=raw)
        else:  # nothing blanked: the planes as given, as the array path keeps them
            out.update(raw)
        return out

    # -- where blanking leaves residuals in the score (set to 0 there)

    def _zogy_blank(self, inp, z, psf_r, psf_n, ratio):
        """Flagged pixels, plus where the light blanking removed leaves ``|dS_corr| > mask_residual``.

        Where only one image is flagged the other shows the light removed
        (scaled by the flux ratio); :func:`~astroray.kernels.difference.zogy.lost_light_score`
        gives the residual that light leaves and a bound on its error from
        the PSFs' difference (which dominates when the PSFs differ much: the
        bound does the covering).  Where both are
        flagged (saturated cores) the light is unknown: those pixels grow by
        ``mask_grow`` FWHM when they border light.
        """
        bad, raw = inp["bad"], inp["raw"]
        if raw is None:
            return bad
        xp = self.xp
        bad_r, bad_n = inp["bads"]
        cfg = self.config
        kw = dict(flux_ratio=ratio, sigma_reference=z.meta["sigma_reference"], sigma_science=z.meta["sigma_science"],
                  score_variance=z.score_variance, fft_shape=z.fft_shape, fourier_floor=cfg.fourier_floor,
                  recenter_psf=cfg.recenter_psf, backend=self.fft)
        if xp is np and cfg.cpu_kernels == "numba":
            # On the host, from the flagged pixels alone: a direct sum of the kernels over them
            # (a few per cent of the frame) instead of four full-frame FFTs.
            flagged = np.flatnonzero(bad)
            in_r, in_n = bad_r.ravel()[flagged], bad_n.ravel()[flagged]
            one_side = in_r != in_n
            flagged, from_reference = flagged[one_side], in_r[one_side]
            lost = np.where(from_reference, raw["N"].ravel()[flagged] * np.float32(1.0 / ratio),
                            raw["R"].ravel()[flagged])
            _, _, over = _zogy.lost_light_score_sparse(bad.shape, flagged, lost, from_reference, psf_r, psf_n,
                                                       threshold=cfg.mask_residual, **kw)
            over |= bad
            return over | self._grown(bad_r & bad_n, inp)
        lost_r = xp.where(bad_r & ~bad_n, raw["N"] * np.float32(1.0 / ratio), np.float32(0))
        lost_n = xp.where(bad_n & ~bad_r, raw["R"], np.float32(0))
        delta, spread = _zogy.lost_light_score(lost_r, lost_n, psf_r, psf_n, **kw)
        spread += xp.abs(delta)
        return bad | (spread > cfg.mask_residual) | self._grown(bad_r & bad_n, inp)

    def _classic_blank(self, inp):
        """Flagged pixels, grown by ``mask_grow`` FWHM where they held light (either image > 3 sigma)."""
        bad, raw = inp["bad"], inp["raw"]
        if raw is None:
            return bad
        bad_r, bad_n = inp["bads"]
        return bad | self._grown((bad_r & bad_n) | (bad & self._light(raw, bad_r, bad_n)), inp)

    def _light(self, raw, bad_r, bad_n):
        xp = self.xp
        sig_r = ~bad_r & (raw["R"] > 3 * xp.sqrt(xp.maximum(raw["VR"], 0)))
        sig_n = ~bad_n & (raw["N"] > 3 * xp.sqrt(xp.maximum(raw["VN"], 0)))
        return sig_r | sig_n

    def _grown(self, seeds, inp):
        """``seeds`` that border light (within 2 px), grown by ``mask_grow`` FWHM; flagged sky stays as it is."""
        radius = int(np.ceil(self.config.mask_grow * inp["fwhm"]))
        if self.xp is np and radius > 0:
            grown = self._grown_around(seeds, inp, radius)
            if grown is not None:
                return grown
        return self._grown_box(seeds, inp, radius)

    def _grown_box(self, seeds, inp, radius):
        """:meth:`_grown` as array expressions over the seeds' bounding box (any device)."""
        xp = self.xp
        out = xp.zeros_like(seeds)
        box = bounding_box(seeds, radius + 2, xp) if radius > 0 else None
        if box is None:
            return out
        raw = {k: v[box] for k, v in inp["raw"].items()}
        bad_r, bad_n = (b[box] for b in inp["bads"])
        near_light = grow(self._light(raw, bad_r, bad_n), 2, xp)
        out[box] = grow(seeds[box] & near_light, radius, xp)
        return out

    def _grown_around(self, seeds, inp, radius):
        """:meth:`_grown` on the host, seed by seed: the seeds (saturated cores) are a few pixels scattered
        over the frame, whose bounding box can be the whole frame.  The light within 2 px of each is read from
        its 5 x 5 window, and the seeds on light paint their ``(2 radius + 1)^2`` boxes: the same dilation.
        None when there are so many seeds that the filter over their bounding box is cheaper."""
        ys, xs = np.nonzero(seeds)
        if ys.size > _MAX_SEEDS_ONE_BY_ONE:
            return None  # the maximum filter over their box is cheaper
        out = np.zeros_like(seeds)
        if ys.size == 0:
            return out
        H, W = seeds.shape
        near = np.arange(-2, 3)
        # clipped at the edges: a clipped index repeats a pixel of the window, which changes no "any"
        rows = np.clip(ys[:, None] + near, 0, H - 1)[:, :, None]
        cols = np.clip(xs[:, None] + near, 0, W - 1)[:, None, :]
        raw = {k: v[rows, cols] for k, v in inp["raw"].items()}
        bad_r, bad_n = (b[rows, cols] for b in inp["bads"])
        on_light = self._light(raw, bad_r, bad_n).any(axis=(1, 2))
        for y, x in zip(ys[on_light].tolist(), xs[on_light].tolist()):
            out[max(y - radius, 0):y + radius + 1, max(x - radius, 0):x + radius + 1] = True
        return out

    def _run_zogy(self, inp, psf_r, psf_n, ratio, meta):
        cfg = self.config
        z = _zogy.zogy(inp["R"], inp["N"], psf_r, psf_n, flux_ratio=ratio,
                       variance_reference=inp["VR"], variance_science=inp["VN"],
                       sigma_astrometric=cfg.sigma_astrometric, source_noise=cfg.source_noise,
                       difference_variance=cfg.difference_variance, pad=cfg.pad,
                       fourier_floor=cfg.fourier_floor, recenter_psf=cfg.recenter_psf,
                       tile_overlap=cfg.tile_overlap, backend=self.fft)
        variance = z.difference_variance
        if isinstance(variance, float):
            variance = self.xp.full(z.difference.shape, variance, dtype=self.xp.float32)
        meta.update(z.meta, flux_normalisation=z.flux_normalisation, fft_shape=z.fft_shape)
        result = DifferenceResult(difference=z.difference, score=z.score, variance=variance, psf=z.psf,
                                  zero_point=z.zero_point, flux_ratio=ratio, flux=z.flux, flux_err=z.flux_err,
                                  mask=None, matched_filter=z.matched_filter, method="zogy",
                                  device=self.device, meta=meta)
        return result, self._zogy_blank(inp, z, psf_r, psf_n, ratio)

    def _run_classic(self, inp, psf_r, psf_n, ratio, meta):  # ratio None: fit the scale
        cfg = self.config
        c = _classic.classic_difference(inp["R"], inp["N"], psf_r, psf_n, variance_reference=inp["VR"],
                                        variance_science=inp["VN"], good=inp["good"], flux_ratio=ratio,
                                        fit_offset=cfg.fit_offset, clip_sigma=cfg.clip_sigma,
                                        score=cfg.classic_score, recenter_psf=cfg.recenter_psf,
                                        backend=self.fft)
        meta.update(c.meta, offset=c.offset, convolved=c.convolved)
        result = DifferenceResult(difference=c.difference, score=c.score, variance=c.variance, psf=c.psf,
                                  zero_point=1.0, flux_ratio=c.scale, flux=c.flux, flux_err=c.flux_err,
                                  mask=None, matched_filter=None, method="classic", device=self.device,
                                  meta=meta)
        return result, self._classic_blank(inp)
