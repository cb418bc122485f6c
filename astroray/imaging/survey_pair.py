"""One survey pair end to end: plain FITS files (or records) in, a difference and its alerts out.

:func:`difference_pair` reads a science frame and a reference
(:mod:`astroray.io.survey`), resamples the reference onto the science grid
(:class:`~astroray.imaging.registration.Registration`), measures both PSFs
from their stars on the science grid (:class:`~astroray.imaging.psf.PSFEstimator`;
after the resampling, so the reference's PSF includes its rotation, scale
and the interpolation's slight blur), and runs
:class:`~astroray.imaging.pipeline.ImagePipeline` with the registration's
fitted error as ZOGY's astrometric noise.  :func:`difference_files` does
that and writes D, S_corr, the catalogue, the alerts, a PNG and a summary
to a folder (what ``astroray difference SCI REF --out DIR`` and the CSV mode
of ``jobs/difference.py`` call).

:func:`difference_cutouts` differences two small stamps already on one grid
(alert cutouts) with nothing but their pixels: a flat background and its
noise, the sharper stamp's PSF from its stars (an elliptical Moffat when
there are few), and the broader one's through a Gaussian matching kernel
fitted to all the light the stamps share -- the candidate at the centre
modelled as a point source of free flux -- with the flux ratio either
given (alert templates scaled to the science frame) or fitted with it.

Bad input raises :class:`~astroray.errors.InvalidInputError` (or
:class:`~astroray.errors.InvalidFITSError`) with the reason: no WCS, WCSs
that do not overlap, an all-saturated frame, too few stars for a PSF or a
registration.  Nothing is differenced on a guess.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError
from astroray.imaging.background import Background, BackgroundConfig
from astroray.imaging.difference import DifferenceConfig, Differencer, DifferenceResult
from astroray.imaging.pipeline import ImagePipeline, ImagePipelineConfig, PairResult
from astroray.imaging.psf import PSFConfig, PSFEstimator, PSFResult
from astroray.imaging.registration import Registration, RegistrationConfig, RegistrationResult
from astroray.io.survey import SurveyImage, SurveyReadConfig, SurveyReader
from astroray.records import Exposure, MaskBits

__all__ = ["SurveyPairConfig", "SurveyPairResult", "difference_pair", "difference_files", "check_pair_folder",
           "pair_products", "overview_png", "PAIR_FILES", "CutoutDifferenceConfig",
           "CutoutDifference", "difference_cutouts", "fit_matching_kernel", "MatchingKernel"]


class SurveyPairConfig(AstrorayConfig):
    """Config of :func:`difference_pair` / :func:`difference_files` (``astroray difference --config FILE``).

    Attributes
    ----------
    science, reference : SurveyReadConfig
        How each file is read (extensions, companions, header overrides).
    registration : RegistrationConfig or None
        How the reference is resampled onto the science grid; None: the two
        share one grid already.
    estimate_psf : {"missing", "always"}
        Measure a PSF only where the input carries none (astroray's own files
        carry one), or always.
    psf : PSFConfig
    psf_grid : bool
        Hand the differencer the PSF grids of large frames, where the
        pipeline takes them (else the whole-frame PSF; the summary says which).
    astrometric_noise_from_registration : bool
        ZOGY's ``sigma_astrometric`` per axis: the larger of the pipeline
        config's and the registration's fitted error.
    pipeline : ImagePipelineConfig
    write_score, write_png : bool
        Also write S_corr (FITS) and the overview PNG.
    """

    science: SurveyReadConfig = Field(default_factory=SurveyReadConfig)
    reference: SurveyReadConfig = Field(default_factory=SurveyReadConfig)
    registration: RegistrationConfig | None = Field(default_factory=RegistrationConfig)
    estimate_psf: Literal["missing", "always"] = "missing"
    psf: PSFConfig = Field(default_factory=PSFConfig)
    psf_grid: bool = True
    astrometric_noise_from_registration: bool = True
    pipeline: ImagePipelineConfig = Field(default_factory=ImagePipelineConfig)
    write_score: bool = True
    write_png: bool = True


@dataclass
class SurveyPairResult:
    """What :func:`difference_pair` returns.

    Attributes
    ----------
    pair : PairResult
        The pipeline's difference, catalogue, alerts and streaks.
    science, reference : Exposure
        What was differenced: the science frame and the reference on its
        grid, each with its PSF.
    registration : RegistrationResult or None
    psf_science, psf_reference : PSFResult or None
        None where the input's own PSF was used.
    psf_grid_used : bool
        Whether the differencer got PSF grids.
    timings_ms : dict
    """

    pair: PairResult
    science: Exposure
    reference: Exposure
    registration: RegistrationResult | None
    psf_science: PSFResult | None
    psf_reference: PSFResult | None
    psf_grid_used: bool = False
    timings_ms: dict = field(default_factory=dict)


def _read(source, reader: SurveyReader, role: str):
    if isinstance(source, (Exposure, SurveyImage)):
        return source
    if isinstance(source, (str, os.PathLike, bytes, bytearray)):
        return reader.run(source)
    raise InvalidInputError(f"the {role} must be a FITS path, bytes, an Exposure or a SurveyImage, "
                            f"got {type(source).__name__}")


def _with_psf(record, estimator: PSFEstimator, mode: str) -> tuple[Exposure, PSFResult | None]:
    if mode == "missing":
        if isinstance(record, Exposure):
            return record, None
        if getattr(record, "psf", None) is not None:
            return record.to_exposure(), None
    result = estimator.run(record)
    return result.exposure, result


def _pipeline_takes_psf_grids() -> bool:
    params = inspect.signature(ImagePipeline.run).parameters
    return "psf_reference" in params and "psf_science" in params


def difference_pair(science, reference, *, config: SurveyPairConfig | None = None, scorer=None) -> SurveyPairResult:
    """Read, register, measure PSFs and difference one pair.

    Parameters
    ----------
    science, reference : path, bytes, Exposure or SurveyImage
        The new frame and the template (any pointing and seeing).
    config : SurveyPairConfig, optional
    scorer : callable, optional
        The real/bogus scorer handed to :class:`ImagePipeline` (the
        catalogue's ``rb``, the alerts' ``scores["rb"]``); None: no scoring.

    Returns
    -------
    SurveyPairResult

    Raises
    ------
    InvalidInputError
        Unreadable files, no WCS, non-overlapping WCSs, an all-saturated
        frame, too few stars for a PSF or a registration, or a failed
        subtraction (the pipeline's ``max_detections``); the message says which.
    """
    cfg = config or SurveyPairConfig()
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    sci = _read(science, SurveyReader(cfg.science), "science frame")
    ref = _read(reference, SurveyReader(cfg.reference), "reference")
    t["read"] = 1e3 * (time.perf_counter() - t0)

    registration = None
    if cfg.registration is not None:
        t0 = time.perf_counter()
        registration = Registration(cfg.registration).run(ref, sci)
        ref = registration.reference
        t["register"] = 1e3 * (time.perf_counter() - t0)
    elif tuple(ref.image.shape) != tuple(sci.image.shape):
        raise InvalidInputError(f"reference shape {ref.image.shape} differs from the science frame's "
                                f"{sci.image.shape} and registration is None", source=getattr(sci, "exposure_id", None))

    t0 = time.perf_counter()
    estimator = PSFEstimator(cfg.psf)
    sci_exp, psf_sci = _with_psf(sci, estimator, cfg.estimate_psf)
    ref_exp, psf_ref = _with_psf(ref, estimator, cfg.estimate_psf)
    t["psf"] = 1e3 * (time.perf_counter() - t0)

    pipe_cfg = cfg.pipeline
    if registration is not None and cfg.astrometric_noise_from_registration and np.all(
            np.isfinite(registration.fit_error)):
        base = pipe_cfg.difference.sigma_astrometric
        sigma = (max(base[0], float(registration.fit_error[0])), max(base[1], float(registration.fit_error[1])))
        pipe_cfg = pipe_cfg.with_updates(difference={"sigma_astrometric": sigma})
    pipeline = ImagePipeline(pipe_cfg, scorer=scorer)
    grids = {}
    if cfg.psf_grid and psf_sci is not None and psf_ref is not None and (
            psf_sci.grid is not None or psf_ref.grid is not None):
        grids = {"psf_science": _grid_or_stamp(psf_sci, psf_ref), "psf_reference": _grid_or_stamp(psf_ref, psf_sci)}
    use_grids = bool(grids) and _pipeline_takes_psf_grids()
    t0 = time.perf_counter()
    pair = pipeline.run(ref_exp, sci_exp, **grids) if use_grids else pipeline.run(ref_exp, sci_exp)
    t["pipeline"] = 1e3 * (time.perf_counter() - t0)
    return SurveyPairResult(pair=pair, science=sci_exp, reference=ref_exp, registration=registration,
                            psf_science=psf_sci, psf_reference=psf_ref, psf_grid_used=use_grids, timings_ms=t)


def _grid_or_stamp(mine: PSFResult, other: PSFResult) -> np.ndarray:
    """This image's PSF grid, or its one stamp repeated on the other's grid (ZOGY needs both on one tiling)."""
    if mine.grid is not None and (other.grid is None or other.grid.shape[:2] == mine.grid.shape[:2]):
        return mine.grid
    ny, nx = other.grid.shape[:2]
    return np.broadcast_to(mine.psf, (ny, nx) + mine.psf.shape).copy()


PAIR_FILES: dict[str, str] = {"difference": "difference.fits", "score": "score.fits", "catalog": "catalog.parquet",
                              "alerts": "alerts.parquet", "png": "overview.png", "summary": "summary.json"}
"""What :func:`difference_files` writes in its folder: product -> file name."""


def check_pair_folder(out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """``out_dir`` if :func:`difference_files` may write there: missing, empty, or ``overwrite`` given.

    Raises
    ------
    InvalidInputError
        ``out_dir`` is not a folder, or holds anything and ``overwrite`` is False.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInputError("the output path exists and is not a folder", source=str(out))
    if out.is_dir() and not overwrite and any(out.iterdir()):
        raise InvalidInputError("the output folder is not empty: pass overwrite (--overwrite) to replace the "
                                f"pair's files there ({', '.join(PAIR_FILES.values())}; nothing else is touched), "
                                "or choose an empty folder", source=str(out))
    return out


def difference_files(science, reference, out_dir: str | os.PathLike, *, config: SurveyPairConfig | None = None,
                     overwrite: bool = False, pair_id: str | None = None) -> dict[str, Any]:
    """Difference one pair of files and write the results to ``out_dir``.

    Writes ``difference.fits`` (D, with the science frame's header and WCS),
    ``score.fits`` (S_corr, likewise), ``catalog.parquet`` and
    ``alerts.parquet`` (the image job's schemas), ``overview.png`` (science,
    registered reference, D and S_corr with the detections marked) and
    ``summary.json`` (the returned dict, less ``paths``).

    Everything is computed and rendered in memory first; only then is
    anything written, each file to a new unique temporary in ``out_dir`` and
    renamed into place (:class:`~astroray.io.outputs.OutputFolder`), so bad
    input leaves ``out_dir`` as it was (not even created).

    Parameters
    ----------
    science, reference : path, bytes, Exposure or SurveyImage
    out_dir : path
        Missing or empty, unless ``overwrite``.
    config : SurveyPairConfig, optional
    overwrite : bool
        Write into a non-empty folder, replacing the files named in
        :data:`PAIR_FILES` (the ones this run does not write are removed, so
        the folder holds one run's products); nothing else there is touched.
    pair_id : str, optional
        The catalogue's ``pair_id`` (default: the science exposure id).

    Returns
    -------
    dict
        Paths written, detections and alerts counted, each PSF's FWHM,
        ellipticity and star count, the registration's rms, fitted error,
        matches and shift/rotation/scale, the flux ratio, timings (ms).

    Raises
    ------
    InvalidInputError
        As :func:`difference_pair`, or a non-empty ``out_dir`` without
        ``overwrite``; nothing is written then.
    """
    from astroray.io.outputs import OutputFolder

    cfg = config or SurveyPairConfig()
    t_start = time.perf_counter()
    out = check_pair_folder(out_dir, overwrite=overwrite)
    res = difference_pair(science, reference, config=cfg)
    products = pair_products(res, pair_id=pair_id, write_score=cfg.write_score, write_png=cfg.write_png)
    summary = products.pop("summary_dict")
    summary["timings_ms"]["total"] = 1e3 * (time.perf_counter() - t_start)
    summary["paths"] = {kind: str(out.resolve() / PAIR_FILES[kind]) for kind in [*products, "summary"]}
    products["summary"] = json.dumps(summary, indent=2, default=json_default).encode()
    outputs = OutputFolder(out)
    try:
        for kind, data in products.items():
            outputs.write(None, PAIR_FILES[kind], lambda fh, data=data: fh.write(data))
        for kind, name in PAIR_FILES.items():
            if kind not in products:  # an earlier run's product this run does not make
                outputs.remove(None, name)
    finally:
        outputs.close()
    return summary


def pair_products(res: SurveyPairResult, *, pair_id: str | None = None, write_score: bool = True,
                  write_png: bool = True) -> dict[str, Any]:
    """A differenced pair's files, rendered in memory: product (:data:`PAIR_FILES`' keys) -> bytes.

    ``summary_dict`` holds the summary as a dict (``summary`` is not
    rendered: the caller adds its own timings and paths).  Used by
    :func:`difference_files` and by the image job's CSV mode, which write
    them where each wants.
    """
    import io

    import pyarrow.parquet as pq

    from astroray.imaging.pipeline import catalog_to_table
    from astroray.io.fits import image_to_bytes
    from astroray.records import alerts_to_table

    diff = res.pair.difference
    pair_id = pair_id or res.science.exposure_id or "science"
    products: dict[str, Any] = {"difference": image_to_bytes(diff.difference, header=res.science.header)}
    if write_score:
        products["score"] = image_to_bytes(diff.score, header=res.science.header)
    for kind, table in (("catalog", catalog_to_table(res.pair.catalog, pair_id=pair_id)),
                        ("alerts", alerts_to_table(res.pair.alerts))):
        buf = io.BytesIO()
        pq.write_table(table, buf)
        products[kind] = buf.getvalue()
    summary = _summary(res, {})
    summary["pair_id"] = pair_id
    if write_png:
        products["png"] = overview_png(res, title=_title(pair_id, summary))
    products["summary_dict"] = summary
    return products


def _title(pair_id: str, summary: dict) -> str:
    def fwhm(key):
        value = summary[key].get("fwhm_px")
        return "given" if value is None else f"{value:.2f} px"

    reg = summary["registration"]
    rms = "" if reg is None else f", registration rms {reg['rms_px']:.3f} px"
    return (f"{pair_id}: {summary['n_detections']} detections; PSF FWHM science {fwhm('psf_science')}, "
            f"reference {fwhm('psf_reference')}; flux ratio {summary['flux_ratio']:.3f}{rms}")


def overview_png(res: SurveyPairResult, *, title: str = "", dpi: int = 80) -> bytes:
    """A PNG of the science frame, the registered reference, D and S_corr, the detections marked on the last two.

    Circles: green a positive change, magenta a negative one, orange one on a
    satellite streak.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    diff = res.pair.difference
    catalog = res.pair.catalog
    panels = (("science", res.science.image, "gray"), ("reference, on the science grid", res.reference.image, "gray"),
              ("difference D", diff.difference, "RdBu_r"), ("score S_corr", diff.score, "RdBu_r"))
    fig, axes = plt.subplots(1, 4, figsize=(22, 6.0), constrained_layout=True)
    for ax, (name, img, cmap) in zip(axes, panels):
        img = np.asarray(img, np.float64)
        finite = img[np.isfinite(img)]
        if cmap == "gray":
            lo, hi = np.percentile(finite, [1.0, 99.5]) if finite.size else (0.0, 1.0)
        else:  # symmetric about zero, so the sign of a change reads off the colour
            s = float(np.percentile(np.abs(finite), 99.5)) if finite.size else 1.0
            lo, hi = -s, s
        ax.imshow(img, origin="lower", cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel("x [px]")
        if cmap != "gray" and len(catalog):
            pos = catalog["sign"].to_numpy() > 0
            streak = (catalog["on_streak"].fillna(False).to_numpy(bool) if "on_streak" in catalog
                      else np.zeros(len(pos), bool))
            for sel, colour, label in ((pos & ~streak, "lime", "detected (+)"), (~pos & ~streak, "magenta",
                                                                                 "detected (-)"),
                                       (streak, "orange", "on a satellite streak")):
                if sel.any():
                    ax.scatter(catalog["x"][sel], catalog["y"][sel], s=140, facecolors="none", edgecolors=colour,
                               linewidths=1.1, label=label)
            ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    axes[0].set_ylabel("y [px]")
    if title:
        fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def json_default(value):
    """``json.dumps`` ``default=`` for summaries holding NumPy scalars and arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _psf_summary(res: PSFResult | None, exposure: Exposure) -> dict:
    if res is None:
        return {"source": "given", "shape": list(exposure.psf.shape)}
    return {"source": "estimated", "model": res.meta.get("model"), "fwhm_px": res.fwhm,
            "fwhm_major_px": res.fwhm_major, "fwhm_minor_px": res.fwhm_minor, "ellipticity": res.ellipticity,
            "n_stars": res.n_stars, "stamp": list(res.psf.shape),
            "grid": None if res.grid is None else list(res.grid.shape[:2])}


def _summary(res: SurveyPairResult, paths: dict) -> dict:
    diff = res.pair.difference
    reg = res.registration
    summary = {
        "status": "ok",
        "science": res.science.exposure_id,
        "reference": res.reference.meta.get("reference_exposure_id", res.reference.exposure_id),
        "n_detections": int(len(res.pair.catalog)),
        "n_alerts": int(len(res.pair.alerts)),
        "n_streaks": int(len(res.pair.streaks)),
        "flux_ratio": float(diff.flux_ratio),
        "flux_ratio_fit": diff.meta.get("flux_ratio_fit"),
        "psf_science": _psf_summary(res.psf_science, res.science),
        "psf_reference": _psf_summary(res.psf_reference, res.reference),
        "psf_grid_used": res.psf_grid_used,
        "registration": None if reg is None else {
            "method": reg.method, "rms_px": reg.rms, "rms_x_px": reg.rms_x, "rms_y_px": reg.rms_y,
            "fit_error_px": list(reg.fit_error), "n_matches": reg.n_matches, "overlap": reg.overlap,
            **reg.summary},
        "timings_ms": dict(res.timings_ms, **{f"pipeline_{k}": v for k, v in res.pair.timings_ms.items()}),
        "paths": paths,
    }
    return summary


# --------------------------------------------------------------------------- cutouts


class CutoutDifferenceConfig(AstrorayConfig):
    """Options of :func:`difference_cutouts`.

    Attributes
    ----------
    psf : PSFConfig
        Star-based PSF of each stamp (relaxed for stamps: a star at S/N 15
        counts, the Moffat model below 10 stars, neighbours up to 30% of the
        star's flux allowed in its stamp).
    psf_fallback : PSFConfig or None
        Tried when ``psf`` finds no star in either stamp: the most star-like
        sources at S/N >= 8 whatever their neighbours (None: raise instead).
    background : BackgroundConfig
        One mesh over the whole stamp: a flat sky and its rms.
    centre_radius : float
        Pixels around the stamp centre (where the candidate is) left out of
        the matching-kernel and flux-ratio fits when the sharp stamp has no
        PSF to model the candidate's change with.
    relative_psf : {"kernel", "stars"}
        The broader stamp's PSF: the sharper one's through the fitted
        matching kernel (what ZOGY's cancellation depends on), or its own
        stars' where it has some.
    flux_ratio : float or None
        ``F_n / F_r`` if known; None fits it from the stamps' static light.
    gain : float or None
        e-/count of the science stamp, for the sources' Poisson variance
        (None: background noise only).
    difference : DifferenceConfig
    """

    psf: PSFConfig = Field(default_factory=lambda: PSFConfig(
        grid=None, min_stars=1, min_stars_empirical=10, min_snr=15.0, neighbour_flux_fraction=0.3,
        blend_radius_fwhm=1.5, min_stamp_size=11, max_stamp_size=31, locus_width=0.3,
        background=BackgroundConfig(box_size=64, filter_size=1)))
    psf_fallback: PSFConfig | None = Field(default_factory=lambda: PSFConfig(
        grid=None, model="moffat", min_stars=1, min_snr=8.0, neighbour_flux_fraction=10.0, blend_radius_fwhm=1.0,
        min_stamp_size=9, max_stamp_size=21, stamp_radius_fwhm=2.0, locus_width=0.7, max_ellipticity_excess=0.4,
        saturation_margin=0.95, background=BackgroundConfig(box_size=64, filter_size=1)))
    background: BackgroundConfig = Field(default_factory=lambda: BackgroundConfig(box_size=64, filter_size=1))
    centre_radius: float = Field(default=6.0, ge=0)
    relative_psf: Literal["kernel", "stars"] = "kernel"
    flux_ratio: float | None = Field(default=None, gt=0)
    gain: float | None = Field(default=None, gt=0)
    difference: DifferenceConfig = Field(default_factory=lambda: DifferenceConfig(
        method="zogy", device="cpu", sigma_astrometric=(0.0, 0.0), source_noise=False))


@dataclass
class MatchingKernel:
    """A Gaussian kernel and scale relating two stamps: ``broad ~ scale * (sharp (x) G(cov)) + offset``.

    ``science_broader`` says which stamp is the broad one; ``scale`` is then
    ``F_n / F_r`` (science broader) or ``F_r / F_n``.
    """

    cov: np.ndarray
    scale: float
    offset: float
    science_broader: bool
    chi2: float
    n_pixels: int

    @property
    def flux_ratio(self) -> float:
        return self.scale if self.science_broader else 1.0 / self.scale

    def apply(self, stamp: np.ndarray) -> np.ndarray:
        """``stamp`` convolved with the kernel (a PSF stamp, normalised to sum 1)."""
        out = _gauss_convolve(np.asarray(stamp, np.float64), self.cov)
        total = out.sum()
        return (out / total).astype(np.float32) if total > 0 else np.asarray(stamp, np.float32)


@dataclass
class CutoutDifference:
    """What :func:`difference_cutouts` returns.

    Attributes
    ----------
    difference : DifferenceResult
    science, reference : Exposure
        The background-subtracted stamps with their PSFs and variances.
    flux_ratio : float
    psf_science_source, psf_reference_source : str
        "stars (<model>, n)" or "matching kernel".
    kernel : MatchingKernel
    meta : dict
    """

    difference: DifferenceResult
    science: Exposure
    reference: Exposure
    flux_ratio: float
    psf_science_source: str
    psf_reference_source: str
    kernel: MatchingKernel
    meta: dict = field(default_factory=dict)


def _gauss_convolve(img: np.ndarray, cov: np.ndarray, pad: int | None = None, shift=(0.0, 0.0)) -> np.ndarray:
    """``img`` convolved with a unit-sum Gaussian of covariance ``cov``, moved by ``shift`` (dy, dx) px.

    In the Fourier domain, zero padded against wrap-around.
    """
    h, w = img.shape
    if pad is None:
        sig = math.sqrt(max(float(np.linalg.eigvalsh(cov).max()), 0.0))
        pad = min(int(math.ceil(4 * sig + max(abs(shift[0]), abs(shift[1])))) + 2, max(h, w))
    big = np.zeros((h + 2 * pad, w + 2 * pad))
    big[pad:pad + h, pad:pad + w] = img
    ky = np.fft.fftfreq(big.shape[0])[:, None]
    kx = np.fft.rfftfreq(big.shape[1])[None, :]
    g = np.exp(-2 * np.pi ** 2 * (cov[1, 1] * kx * kx + cov[0, 0] * ky * ky + 2 * cov[0, 1] * kx * ky))
    if shift[0] or shift[1]:
        g = g * np.exp(-2j * np.pi * (ky * shift[0] + kx * shift[1]))
    out = np.fft.irfft2(np.fft.rfft2(big) * g, s=big.shape)
    return out[pad:pad + h, pad:pad + w]


_KERNEL_MAX = 4.0  # px: the kernel's Cholesky factors stay within +-4 (sigma^2 <= 32 px^2)


def fit_matching_kernel(science: np.ndarray, reference: np.ndarray, *, variance_science, variance_reference,
                        good: np.ndarray, centre: tuple[float, float] | None = None, centre_radius: float = 6.0,
                        psf_science=None, psf_reference=None, flux_ratio: float | None = None,
                        clip_sigma: float = 5.0, max_clipped: float = 0.2) -> MatchingKernel:
    """Fit ``broad = scale * (sharp (x) G) + offset [+ change]`` over ``good`` pixels, both ways; keep the better.

    ``G`` is a Gaussian of free covariance (``L L^T``, so it may shrink to a
    delta); each pixel's residual is weighted by the variance of both sides.

    With ``centre`` (the candidate's position) and the sharp stamp's PSF,
    the candidate's change is part of the model -- a point source of free
    flux within 1.5 px of ``centre``, seen through the broad side's PSF -- so
    the light there (often the brightest in the stamp) shapes ``G`` too;
    without that PSF the pixels within ``centre_radius`` are left out.  With
    ``flux_ratio`` the scale is held at it.

    Both directions are fitted and the one with the lower chi^2 over the
    pixels both used is kept; it is then refitted without pixels more than
    ``clip_sigma`` (robust) off -- moving objects, cosmic rays -- unless that
    would drop more than ``max_clipped`` of the pixels with light.
    Background-subtracted stamps on one grid.
    """
    from scipy.optimize import least_squares

    sci, ref = np.asarray(science, np.float64), np.asarray(reference, np.float64)
    vs, vr = np.asarray(variance_science, np.float64), np.asarray(variance_reference, np.float64)
    h, w = sci.shape
    cy, cx = centre if centre is not None else ((h - 1) / 2, (w - 1) / 2)
    yy, xx = np.mgrid[0:h, 0:w]
    disk = np.hypot(yy - cy, xx - cx) <= centre_radius
    outside = good & ~disk
    bright = outside & (sci > 3 * np.sqrt(vs)) & (ref > 3 * np.sqrt(vr))
    ratio0 = flux_ratio or (float(np.median(sci[bright] / ref[bright])) if bright.sum() >= 5 else float(
        np.sum(np.clip(sci[outside], 0, None)) / max(np.sum(np.clip(ref[outside], 0, None)), 1e-30)))
    if not (np.isfinite(ratio0) and ratio0 > 0):
        raise InvalidInputError("no light common to both stamps to fit a matching kernel and flux ratio to")
    lit = good & ((sci > 3 * np.sqrt(vs)) | (ref > 3 * np.sqrt(vr)))

    def fit_once(science_broader, use, x0):
        broad, sharp = (sci, ref) if science_broader else (ref, sci)
        vb, vsh = (vs, vr) if science_broader else (vr, vs)
        sharp_psf = psf_reference if science_broader else psf_science
        point = None
        if centre is not None and sharp_psf is not None:
            point = _Fourier(_embed(np.asarray(sharp_psf, np.float64), (h, w), (int(round(cy)), int(round(cx)))))
        sharp_ft = _Fourier(sharp)
        fixed = None if flux_ratio is None else (flux_ratio if science_broader else 1.0 / flux_ratio)

        def unpack(p):
            k = 3
            scale = fixed if fixed is not None else p[k]
            k += fixed is None
            offset = p[k]
            k += 1
            amp, dy, dx = (p[k], p[k + 1], p[k + 2]) if point is not None else (0.0, 0.0, 0.0)
            return _cov(p), scale, offset, amp, dy, dx

        def full(p):
            cov, scale, offset, amp, dy, dx = unpack(p)
            model = scale * sharp_ft.convolve(cov) + offset
            if point is not None:
                model = model + amp * point.convolve(cov, shift=(cy - round(cy) + dy, cx - round(cx) + dx))
            # the convolution averages the sharp stamp's noise down by the kernel's sum of squares
            return (broad - model) / np.sqrt(vb + scale ** 2 * vsh * _sum_of_squares(cov))

        if point is None:
            use = use & ~disk
        if x0 is None:
            start = math.atanh(0.5 / _KERNEL_MAX)  # a kernel of sigma 0.5 px to start
            x0 = [start, 0.0, start] + ([ratio0 if science_broader else 1.0 / ratio0] if fixed is None else []) + [0.0]
            if point is not None:
                x0 += [0.0, 0.0, 0.0]
        # Levenberg-Marquardt (MINPACK): a few parameters over thousands of pixels; the bounded solvers'
        # per-step SVD goes through threaded LAPACK, which is slow on a busy machine.  L L^T needs no bound.
        res = least_squares(lambda p: full(p)[use], np.asarray(x0, np.float64), method="lm", x_scale="jac",
                            max_nfev=400)
        cov, scale, offset, *_ = unpack(res.x)
        if not (scale > 0):
            raise InvalidInputError(f"the matching-kernel fit found a non-positive flux scale ({scale:g})")
        return res, full(res.x), use, (cov, scale, offset)

    fits = {science_broader: fit_once(science_broader, good, None) for science_broader in (True, False)}
    both = fits[True][2] & fits[False][2]
    science_broader = float(np.mean(fits[True][1][both] ** 2)) <= float(np.mean(fits[False][1][both] ** 2))
    res, z, use, parts = fits[science_broader]
    for _ in range(3):
        robust = max(1.0, 1.4826 * float(np.median(np.abs(z[use]))))
        new_use = use & (np.abs(z) <= clip_sigma * robust)
        if (lit & use & ~new_use).sum() > max_clipped * max((lit & use).sum(), 1) or np.array_equal(new_use, use):
            break
        res, z, use, parts = fit_once(science_broader, new_use, res.x)
    cov, scale, offset = parts
    return MatchingKernel(cov=cov, scale=float(scale), offset=float(offset), science_broader=bool(science_broader),
                          chi2=float(np.mean(z[use] ** 2)), n_pixels=int(use.sum()))


class _Fourier:
    """An image's transform, zero padded once, for many Gaussian convolutions (and shifts) of it."""

    def __init__(self, img: np.ndarray, pad: int = 4 * int(math.ceil(_KERNEL_MAX * math.sqrt(2))) + 3):
        h, w = img.shape
        self.pad, self.shape = pad, (h, w)
        big = np.zeros((h + 2 * pad, w + 2 * pad))
        big[pad:pad + h, pad:pad + w] = img
        self.big_shape = big.shape
        self.ft = np.fft.rfft2(big)
        self.ky = np.fft.fftfreq(big.shape[0])[:, None]
        self.kx = np.fft.rfftfreq(big.shape[1])[None, :]

    def convolve(self, cov: np.ndarray, shift=(0.0, 0.0)) -> np.ndarray:
        ky, kx = self.ky, self.kx
        g = np.exp(-2 * np.pi ** 2 * (cov[1, 1] * kx * kx + cov[0, 0] * ky * ky + 2 * cov[0, 1] * kx * ky))
        if shift[0] or shift[1]:
            g = g * np.exp(-2j * np.pi * (ky * shift[0] + kx * shift[1]))
        out = np.fft.irfft2(self.ft * g, s=self.big_shape)
        p, (h, w) = self.pad, self.shape
        return out[p:p + h, p:p + w]


def _embed(stamp: np.ndarray, shape, at: tuple[int, int]) -> np.ndarray:
    """``stamp`` (odd, centred) placed in a zero image of ``shape`` with its centre on pixel ``at`` (clipped)."""
    out = np.zeros(shape)
    sh, sw = stamp.shape
    y0, x0 = at[0] - sh // 2, at[1] - sw // 2
    ys, xs = slice(max(y0, 0), min(y0 + sh, shape[0])), slice(max(x0, 0), min(x0 + sw, shape[1]))
    out[ys, xs] = stamp[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return out


def _sum_of_squares(cov: np.ndarray) -> float:
    """Sum of squares of the unit-sum pixel kernel of a Gaussian: ``1 / (4 pi sqrt(det(cov + I / 4 pi)))``.

    Exact for a broad kernel (the continuous Gaussian's), 1 for a delta.
    """
    c = np.asarray(cov, np.float64) + np.eye(2) / (4 * math.pi)
    return float(min(1.0, 1.0 / (4 * math.pi * math.sqrt(max(np.linalg.det(c), 1e-12)))))


def _cov(p) -> np.ndarray:
    """The kernel covariance ``L L^T`` from unbounded parameters (``L``'s entries are ``4 tanh(p)``)."""
    l11, l21, l22 = (_KERNEL_MAX * math.tanh(v) for v in (p[0], p[1], p[2]))
    L = np.array([[l22, 0.0], [l21, l11]])  # (y, x) order: cov[1, 1] is x
    return L @ L.T


def _stamp_record(img: np.ndarray, *, background: Background, gain, name: str):
    """(background-subtracted image, variance, mask, sky, rms) of a stamp; NaN pixels are NO_DATA."""
    finite = np.isfinite(img)
    if not finite.any():
        raise InvalidInputError(f"the {name} stamp has no finite pixel")
    data = np.where(finite, img, 0.0).astype(np.float32)
    bkg = background.run(data, mask=~finite if not finite.all() else None, source=name)
    sky, rms = float(bkg.global_background), float(bkg.global_rms)
    if not rms > 0:
        raise InvalidInputError(f"the {name} stamp's noise is zero (a constant stamp)")
    sub = np.where(finite, img - sky, 0.0)
    var = np.full(img.shape, rms * rms)
    if gain:
        var = var + np.maximum(sub, 0.0) / gain
    var = np.where(finite, var, 0.0)
    mask = np.where(finite, 0, np.uint32(MaskBits.NO_DATA)).astype(np.uint32)
    return sub, var, mask, sky, rms


def difference_cutouts(science: np.ndarray, reference: np.ndarray, *,
                       config: CutoutDifferenceConfig | None = None, name: str | None = None) -> CutoutDifference:
    """ZOGY difference of two stamps on one grid, from their pixels alone.

    Parameters
    ----------
    science, reference : ndarray (h, w)
        The stamps (e.g. an alert's science and template cutouts); NaN marks
        missing pixels.
    config : CutoutDifferenceConfig, optional
    name : str, optional
        What error messages call the pair.

    Returns
    -------
    CutoutDifference

    Raises
    ------
    InvalidInputError
        Stamps of different shapes, without finite pixels or noise, or with a
        usable star in neither stamp (no PSF can be measured).
    """
    cfg = config or CutoutDifferenceConfig()
    sci_raw, ref_raw = np.asarray(science, np.float64), np.asarray(reference, np.float64)
    if sci_raw.ndim != 2 or sci_raw.shape != ref_raw.shape:
        raise InvalidInputError(f"stamps must be 2-D and of one shape, got {sci_raw.shape} and {ref_raw.shape}",
                                source=name)
    background = Background(cfg.background)
    sci, var_s, mask_s, sky_s, rms_s = _stamp_record(sci_raw, background=background, gain=cfg.gain, name="science")
    ref, var_r, mask_r, sky_r, rms_r = _stamp_record(ref_raw, background=background, gain=None, name="reference")

    psfs, sources, errors = {}, {}, {}
    stamps = (("science", sci, var_s, mask_s), ("reference", ref, var_r, mask_r))
    for label, psf_cfg in (("stars", cfg.psf), ("star-like sources", cfg.psf_fallback)):
        if psfs or psf_cfg is None:
            break
        estimator = PSFEstimator(psf_cfg)
        for role, img, var, mask in stamps:
            try:
                res = estimator.run(img, variance=np.where(var > 0, var, 1.0), mask=mask, background_subtracted=True)
                psfs[role] = res.psf
                sources[role] = f"{label} ({res.meta['model']}, {res.n_stars})"
            except InvalidInputError as exc:
                errors[role] = exc.reason
    if not psfs:
        raise InvalidInputError(f"no usable star in either stamp to measure a PSF from (science: "
                                f"{errors['science']}; reference: {errors['reference']})", source=name)

    h, w = sci.shape
    good = (mask_s == 0) & (mask_r == 0)
    # stay away from the stamp's edges: the kernel's convolution reads zeros beyond them
    edge = 3
    good[:edge] = good[-edge:] = False
    good[:, :edge] = good[:, -edge:] = False
    kernel = fit_matching_kernel(sci, ref, variance_science=np.where(var_s > 0, var_s, 1.0),
                                 variance_reference=np.where(var_r > 0, var_r, 1.0), good=good,
                                 centre=((h - 1) / 2, (w - 1) / 2), centre_radius=cfg.centre_radius,
                                 psf_science=psfs.get("science"), psf_reference=psfs.get("reference"),
                                 flux_ratio=cfg.flux_ratio)
    sharp, broad = ("reference", "science") if kernel.science_broader else ("science", "reference")
    if sharp in psfs and (cfg.relative_psf == "kernel" or broad not in psfs):
        # the broad side's PSF is the sharp side's seen through the kernel fitted to all the shared light
        psfs[broad] = kernel.apply(psfs[sharp])
        sources[broad] = "matching kernel"
    elif sharp not in psfs:  # no star in the sharp stamp: its PSF is the broad one's (an upper bound on its width)
        psfs[sharp] = np.asarray(psfs[broad], np.float32)
        sources[sharp] = "the other stamp's PSF"
    flux_ratio = cfg.flux_ratio or kernel.flux_ratio
    meta = {"sky_science": sky_s, "sky_reference": sky_r, "rms_science": rms_s, "rms_reference": rms_r,
            "psf_errors": errors, "kernel_cov": kernel.cov.tolist(), "kernel_chi2": kernel.chi2}
    psf_sci, psf_ref = _pad_psfs(psfs)
    ref_exp = Exposure(image=ref, variance=var_r, mask=mask_r, psf=psf_ref, meta={"exposure_id": "reference"})
    sci_exp = Exposure(image=sci, variance=var_s, mask=mask_s, psf=psf_sci, meta={"exposure_id": "science"})
    diff = Differencer(cfg.difference).run(ref_exp, sci_exp, flux_ratio=flux_ratio)
    return CutoutDifference(difference=diff, science=sci_exp, reference=ref_exp, flux_ratio=float(flux_ratio),
                            psf_science_source=sources["science"], psf_reference_source=sources["reference"],
                            kernel=kernel, meta=meta)


def _pad_psfs(psfs: dict) -> tuple[np.ndarray, np.ndarray]:
    """Both PSF stamps on one (odd) size, zero padded, each summing to 1."""
    a, b = np.asarray(psfs["science"], np.float64), np.asarray(psfs["reference"], np.float64)
    n = max(a.shape[0], b.shape[0], a.shape[1], b.shape[1])
    n += 1 - n % 2
    out = []
    for p in (a, b):
        py, px = (n - p.shape[0]) // 2, (n - p.shape[1]) // 2
        q = np.pad(p, ((py, n - p.shape[0] - py), (px, n - p.shape[1] - px)))
        out.append((q / q.sum()).astype(np.float32))
    return out[0], out[1]
