"""The image pipeline stage: an exposure pair in, a difference, a catalog and alerts out.

``background -> difference (ZOGY or classic) -> detection on the score image
-> photometry on D -> 63x63 cutouts -> score -> Alert records``.  Each step is
its own stage with its own config; this class chains them.  It imports no Ray:
the Ray Data callable in :mod:`astroray.ray.data` wraps it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError
from astroray.imaging._regions import bounding_box
from astroray.imaging.background import Background, BackgroundConfig
from astroray.imaging.cutouts import cutouts, psf_likeness
from astroray.imaging.difference import DifferenceConfig, Differencer, DifferenceResult
from astroray.imaging.extraction import ExtractionConfig, SourceExtractor
from astroray.imaging.streaks import Streak, StreakConfig, StreakFinder, streak_model
from astroray.kernels.backend import to_numpy
from astroray.records import AB_NJY_ZEROPOINT, Alert, Exposure, LightCurve

__all__ = ["ImagePipelineConfig", "ImagePipeline", "PairResult", "pixel_to_sky", "score_peak_positions",
           "catalog_to_table"]


class ImagePipelineConfig(AstrorayConfig):
    """Config of :class:`ImagePipeline` (one sub-config per stage)."""

    background: BackgroundConfig = Field(default_factory=BackgroundConfig)
    difference: DifferenceConfig = Field(default_factory=lambda: DifferenceConfig(sigma_astrometric=(0.1, 0.1)))
    """Default registration noise 0.1 px rms: without it, bright stars leave 5-sigma dipoles in S_corr."""
    detection: ExtractionConfig = Field(
        default_factory=lambda: ExtractionConfig(threshold=5.0, threshold_type="absolute", min_area=3,
                                                 filter_kernel=None, deblend_cont=0.005, photometry=False,
                                                 segmentation=False))
    """Candidates on the score image; deblended, so two transients on one host, or one beside a
    dipole, come out as two detections rather than one between them."""
    detect_negative: bool = True
    """Also detect fading sources (negative changes) on -score."""
    streaks: StreakConfig | None = Field(default_factory=StreakConfig)
    """Satellite-streak search on the score image; detections on one get ``on_streak`` (None: no search)."""
    cutout_size: int = 63
    max_detections: int = Field(default=5000, gt=0)
    """More detections than this in one pair means a failed subtraction: the pair is quarantined."""

    @field_validator("cutout_size")
    @classmethod
    def _odd(cls, v):
        if v < 15 or v % 2 == 0:
            raise ValueError("cutout_size must be odd and >= 15")
        return v


@dataclass
class PairResult:
    """What :meth:`ImagePipeline.run` returns."""

    difference: DifferenceResult
    catalog: pd.DataFrame
    alerts: list[Alert]
    timings_ms: dict = field(default_factory=dict)
    streaks: list[Streak] = field(default_factory=list)


def score_peak_positions(score: np.ndarray, xpeak, ypeak, sign) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel positions of score maxima: a parabola through the peak pixel and its neighbours, per axis.

    ``xpeak``, ``ypeak`` are the objects' brightest pixels on ``sign * score``;
    the vertex is kept within half a pixel of them (flat or edge peaks stay put).
    """
    H, W = score.shape
    ix = np.clip(np.asarray(xpeak, int), 0, W - 1)
    iy = np.clip(np.asarray(ypeak, int), 0, H - 1)
    sign = np.asarray(sign, np.float64)
    centre = sign * score[iy, ix]

    def offset(lower, upper, inside):
        curvature = lower - 2 * centre + upper
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(inside & (curvature < 0), 0.5 * (lower - upper) / curvature, 0.0)
        return np.clip(shift, -0.5, 0.5)

    dx = offset(sign * score[iy, np.maximum(ix - 1, 0)], sign * score[iy, np.minimum(ix + 1, W - 1)],
                (ix > 0) & (ix < W - 1))
    dy = offset(sign * score[np.maximum(iy - 1, 0), ix], sign * score[np.minimum(iy + 1, H - 1), ix],
                (iy > 0) & (iy < H - 1))
    return ix + dx, iy + dy


def pixel_to_sky(header: str, x, y) -> tuple[np.ndarray, np.ndarray]:
    """RA/Dec (deg) of 0-based pixel positions through the header's WCS (NaN without one)."""
    x = np.atleast_1d(np.asarray(x, np.float64))
    y = np.atleast_1d(np.asarray(y, np.float64))
    if not header or "CTYPE1" not in header:
        return np.full(x.shape, np.nan), np.full(y.shape, np.nan)
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = WCS(fits.Header.fromstring(header, sep="\n" if "\n" in header else ""))
        ra, dec = wcs.pixel_to_world_values(x, y)
    return np.asarray(ra), np.asarray(dec)


def _counts_to_njy(meta: dict) -> float:
    """nJy per image count, for ``zero_point`` = AB magnitude giving one count per second of ``exptime``."""
    zero_point, exptime = meta.get("zero_point"), meta.get("exptime") or 1.0
    if zero_point is None or not np.isfinite(zero_point):
        return np.nan
    return 10.0 ** (-0.4 * (float(zero_point) - AB_NJY_ZEROPOINT)) / float(exptime)


class ImagePipeline:
    """Difference an exposure pair, detect and measure changes, and build alerts.

    Parameters
    ----------
    config : ImagePipelineConfig, optional

    Examples
    --------
    >>> pipe = ImagePipeline(ImagePipelineConfig())          # doctest: +SKIP
    >>> result = pipe.run(reference, science)                 # doctest: +SKIP
    >>> result.catalog[["x", "y", "flux", "snr"]]             # doctest: +SKIP
    """

    def __init__(self, config: ImagePipelineConfig | None = None):
        self.config = config or ImagePipelineConfig()
        self.background = Background(self.config.background)
        self.differencer = Differencer(self.config.difference)
        self.extractor = SourceExtractor(self.config.detection)
        self.streak_finder = StreakFinder(self.config.streaks) if self.config.streaks is not None else None

    def __call__(self, reference: Exposure, science: Exposure) -> PairResult:
        return self.run(reference, science)

    def subtract_background(self, exposure: Exposure) -> Exposure:
        """A copy of ``exposure`` with its mesh background removed (no-op if already done)."""
        if exposure.meta.get("background_subtracted"):
            return exposure
        bkg = self.background.run(exposure.image, mask=exposure.mask != 0)
        meta = dict(exposure.meta, background_subtracted=True, global_background=float(bkg.global_background))
        return Exposure(image=exposure.image - bkg.background, variance=exposure.variance, mask=exposure.mask,
                        psf=exposure.psf, header=exposure.header, meta=meta)

    def run(self, reference: Exposure, science: Exposure) -> PairResult:
        """Run the chain on one pair; raise :class:`InvalidInputError` for unusable input."""
        if reference.shape != science.shape:
            raise InvalidInputError(
                f"reference shape {reference.shape} differs from science shape {science.shape} "
                "(warp the reference onto the science pixel grid first)", source=science.exposure_id or None)
        t = {}
        t0 = time.perf_counter()
        ref = self.subtract_background(reference)
        sci = self.subtract_background(science)
        t["background"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        diff = self.differencer.run(ref, sci)
        t["difference"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        catalog = self._detect(diff, sci)
        t["detect"] = (time.perf_counter() - t0) * 1e3
        if len(catalog) > self.config.max_detections:
            raise InvalidInputError(
                f"{len(catalog)} detections exceed max_detections={self.config.max_detections}: the subtraction "
                "probably failed (check PSFs and registration)", source=science.exposure_id or None)
        t0 = time.perf_counter()
        streaks = self.streak_finder(diff.score) if self.streak_finder is not None else []
        if streaks and self.config.streaks.recover:
            catalog = self._under_streaks(diff, sci, catalog, streaks)
        if not catalog.empty:
            on = self.streak_finder.contains(streaks, catalog["x"], catalog["y"]) if streaks else False
            under = catalog["under_streak"] if "under_streak" in catalog else False
            catalog = catalog.assign(on_streak=on, under_streak=under)
        t["streaks"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        alerts = self._alerts(catalog, diff, ref, sci)
        t["alerts"] = (time.perf_counter() - t0) * 1e3
        return PairResult(difference=diff, catalog=catalog, alerts=alerts, timings_ms=t, streaks=streaks)

    def _detect(self, diff: DifferenceResult, science: Exposure, *, score=None, region=None,
                flux_model=None, peak_image=None, window=None) -> pd.DataFrame:
        """Detections on ``score`` (default the difference's) within ``region``, measured on D.

        ``flux_model`` is light in :attr:`DifferenceResult.flux` units that is
        not the source's own (a streak under it), subtracted from its PSF flux;
        ``peak_image`` (default ``score``) is where the sub-pixel peaks are found;
        ``window`` (a pair of slices) limits the search to that part of the frame.
        """
        window = window or (slice(None), slice(None))
        y0, x0 = (w.start or 0 for w in window)
        score = np.asarray(diff.score if score is None else score, np.float32)[window]
        bad = (science.mask != 0)[window]
        if region is not None:
            bad = bad | ~region[window]
        found = []
        signs = (1, -1) if self.config.detect_negative else (1,)
        for sign in signs:
            cat = self.extractor.run(sign * score, mask=bad).catalog
            cat = cat.assign(sign=sign)
            found.append(cat)
        catalog = pd.concat(found, ignore_index=True) if found else pd.DataFrame()
        if catalog.empty:
            return catalog
        # The matched-filter peak is the point source's most likely position; the isophotal barycentre
        # drifts with noise, neighbours and blanked pixels (median error 0.31 px against 0.20 px on the sims).
        peaks = score if peak_image is None else np.asarray(peak_image)[window]
        x_peak, y_peak = score_peak_positions(peaks, catalog["xpeak"].to_numpy(), catalog["ypeak"].to_numpy(),
                                              catalog["sign"].to_numpy())
        yi = np.clip(np.rint(y_peak).astype(int), 0, score.shape[0] - 1)
        xi = np.clip(np.rint(x_peak).astype(int), 0, score.shape[1] - 1)
        snr = np.abs(peaks[yi, xi])  # the PSF-flux S/N (S_corr on the first pass)
        shifted = {c: catalog[c] + (x0 if c.startswith("x") else y0)
                   for c in ("xpeak", "ypeak", "xcpeak", "ycpeak", "xmin", "xmax", "ymin", "ymax") if c in catalog}
        catalog = catalog.assign(x_iso=catalog["x"] + x0, y_iso=catalog["y"] + y0, x=x_peak + x0, y=y_peak + y0,
                                 **shifted)
        # PSF photometry on the difference (science counts), signed: fading sources come out negative
        flux, flux_err = diff.flux_at(catalog["y"].to_numpy(), catalog["x"].to_numpy())
        if flux_model is not None:
            from scipy.ndimage import map_coordinates

            flux = flux - map_coordinates(flux_model, [catalog["y"].to_numpy(), catalog["x"].to_numpy()], order=1)
        ra, dec = pixel_to_sky(science.header, catalog["x"].to_numpy(), catalog["y"].to_numpy())
        catalog = catalog.assign(flux=flux, flux_err=flux_err, snr=snr, ra=ra, dec=dec,
                                 exposure_id=science.exposure_id)
        return catalog.sort_values("snr", ascending=False, ignore_index=True)

    def _under_streaks(self, diff: DifferenceResult, science: Exposure, catalog: pd.DataFrame,
                       streaks: list[Streak]) -> pd.DataFrame:
        """Candidates a streak's footprint swallowed, detected again with the streak's profile removed.

        The residual is in units of its own scatter along the streak, so a
        bright streak's modelling error does not become candidates.  A
        first-pass detection within 3 px of one found this way was the
        streak's peak there, its position pulled by the streak: it is replaced.
        """
        # Modelled on the PSF-flux image, which is linear in the light (S_corr is not: the streak's own
        # source noise and gradient raise its variance, and a transient on the ridge would split in two).
        flux, flux_err = to_numpy(diff.flux), to_numpy(diff.flux_err)
        flux_model, band, scale = streak_model(flux, streaks, noise=flux_err)
        residual = np.zeros(flux.shape, np.float32)  # only the streaks' bands are searched
        inside = band & (flux_err > 0)
        residual[inside] = (flux[inside] - flux_model[inside]) / flux_err[inside]
        window = bounding_box(band)
        if window is None:
            return catalog.assign(under_streak=False) if not catalog.empty else catalog
        found = self._detect(diff, science, score=residual / scale, region=band, flux_model=flux_model,
                             peak_image=residual, window=window)
        catalog = catalog.assign(under_streak=False) if not catalog.empty else catalog
        if found.empty:
            return catalog
        found = found.assign(under_streak=True)
        if catalog.empty:
            return found
        from scipy.spatial import cKDTree

        dist, _ = cKDTree(found[["x", "y"]].to_numpy()).query(catalog[["x", "y"]].to_numpy())
        yi = np.clip(np.rint(catalog["y"].to_numpy()).astype(int), 0, band.shape[0] - 1)
        xi = np.clip(np.rint(catalog["x"].to_numpy()).astype(int), 0, band.shape[1] - 1)
        replaced = (dist <= 3.0) & band[yi, xi]
        kept = catalog[~replaced]
        if not kept.empty:  # anything else the first pass found stays as it was
            near, _ = cKDTree(kept[["x", "y"]].to_numpy()).query(found[["x", "y"]].to_numpy())
            found = found[near > 3.0]
        merged = pd.concat([kept, found], ignore_index=True)
        return merged.sort_values("snr", ascending=False, ignore_index=True)

    def _alerts(self, catalog, diff, ref, sci) -> list[Alert]:
        if catalog.empty:
            return []
        size = self.config.cutout_size
        x, y = catalog["x"].to_numpy(), catalog["y"].to_numpy()
        stamps = {name: cutouts(img, x, y, size=size) for name, img in
                  (("science", sci.image), ("reference", ref.image), ("difference", diff.difference))}
        sign = catalog["sign"].to_numpy()
        likeness = psf_likeness(stamps["difference"] * sign[:, None, None], np.asarray(diff.psf))
        scale = _counts_to_njy(sci.meta)
        band = str(sci.meta.get("band", ""))
        mjd = float(sci.meta.get("mjd", np.nan))
        survey = str(sci.meta.get("survey", ""))
        alerts = []
        for i, row in enumerate(catalog.itertuples(index=False)):
            alert_id = f"{sci.exposure_id}-{i:05d}"
            flux, flux_err = row.flux * scale, row.flux_err * scale
            history = LightCurve(alert_id, [mjd], [band or "r"], [flux], [flux_err], [True], survey=survey)
            alerts.append(Alert(
                alert_id=alert_id, object_id=alert_id, survey=survey, mjd=mjd, ra=float(row.ra), dec=float(row.dec),
                band=band, flux=float(flux), flux_err=float(flux_err), history=history,
                scores={"psf_likeness": float(likeness[i]), "snr": float(row.snr)},
                cutout_science=stamps["science"][i], cutout_reference=stamps["reference"][i],
                cutout_difference=stamps["difference"][i],
                meta={"x": float(row.x), "y": float(row.y), "sign": int(row.sign),
                      "on_streak": bool(row.on_streak), "under_streak": bool(row.under_streak)}))
        return alerts





def catalog_to_table(catalog: pd.DataFrame, *, pair_id: str = ""):
    """The catalog as an Arrow table with a fixed schema, so every pair's part file unions cleanly."""
    import pyarrow as pa

    float_cols = ("x", "y", "ra", "dec", "flux", "flux_err", "snr", "a", "b", "theta", "peak")
    fields = [pa.field("pair_id", pa.string()), pa.field("exposure_id", pa.string())]
    fields += [pa.field(c, pa.float64()) for c in float_cols]
    fields += [pa.field("npix", pa.int64()), pa.field("flag", pa.int64()), pa.field("sign", pa.int8())]
    # added later, so at the end: older part files are a prefix of this schema
    fields += [pa.field("x_iso", pa.float64()), pa.field("y_iso", pa.float64()),
               pa.field("on_streak", pa.bool_()), pa.field("under_streak", pa.bool_())]
    schema = pa.schema(fields)
    n = len(catalog)
    cols = {}
    for f in schema:
        if f.name == "pair_id":
            cols[f.name] = pa.array([pair_id] * n, f.type)
        elif f.name in catalog:
            cols[f.name] = pa.array(catalog[f.name].to_numpy(), f.type, from_pandas=True)
        else:
            cols[f.name] = pa.nulls(n, f.type)
    return pa.table(cols, schema=schema)
