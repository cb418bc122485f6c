"""The image pipeline stage: an exposure pair in, a difference, a catalog and alerts out.

``background -> difference (ZOGY or classic) -> detection on the score image
-> photometry on D -> 63x63 cutouts -> score -> Alert records``.  Each step is
its own stage with its own config; this class chains them.  It imports no Ray:
the Ray Data callable in :mod:`astroray.ray.data` wraps it.

The real/bogus score comes from a scorer the pipeline is handed
(``ImagePipeline(config, scorer=...)``, e.g. a
:class:`~astroray.models.scoring.StampScorer`): any callable taking the
candidates' stamps, so this module never imports torch.  Without one the
catalog's ``rb`` column is NaN and alerts carry no ``rb`` score.

One ``device`` (``ImagePipelineConfig.device``) places every stage, unless a
stage's own config names another.  On a GPU the pair's pixel planes are copied
to the device once, stay there from background to cutouts (only per-object
numbers and the stamps come back on the way), and the difference comes back to
the host once, at the end.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from astroray.config import AstrorayConfig, Device
from astroray.errors import ConfigError, InvalidInputError
from astroray.imaging._regions import bounding_box
from astroray.imaging.background import Background, BackgroundConfig
from astroray.imaging.cutouts import cutouts, psf_likeness
from astroray.imaging.difference import DifferenceConfig, Differencer, DifferenceResult
from astroray.imaging.extraction import ExtractionConfig, SourceExtractor
from astroray.imaging.streaks import Streak, StreakConfig, StreakFinder, streak_model
from astroray.kernels.backend import array_module_of, device_synchronize, get_xp, resolve_device, to_numpy
from astroray.records import AB_NJY_ZEROPOINT, Alert, Exposure, LightCurve
from astroray.stage import Stage, StageTimer

__all__ = ["ImagePipelineConfig", "ImagePipeline", "PairResult", "ExposureArrays", "pixel_to_sky",
           "score_peak_positions", "catalog_to_table", "StampScoreFn"]

StampScoreFn = Callable[[Mapping[str, np.ndarray]], Any]
"""What the pipeline is handed as a scorer: candidates' stamps in (a mapping of channel name -- ``science``,
``reference``, ``difference``, ``score`` -- to ``(n, S, S)`` float32 arrays), their real probabilities out: an
``(n,)`` array, or an object with ``scores`` (and optionally ``model``, a dict with ``name`` and ``version``), as
:class:`~astroray.models.scoring.StampScores`."""


class ImagePipelineConfig(AstrorayConfig):
    """Config of :class:`ImagePipeline` (one sub-config per stage)."""

    device: Device = "auto"
    """Where every stage runs (``auto``: the GPU when one is usable), unless a stage's own ``device`` says otherwise."""
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
    """What :meth:`ImagePipeline.run` returns (host arrays)."""

    difference: DifferenceResult
    catalog: pd.DataFrame
    alerts: list[Alert]
    timings_ms: dict = field(default_factory=dict)
    streaks: list[Streak] = field(default_factory=list)


@dataclass
class ExposureArrays:
    """An exposure's pixel planes on the pipeline's device; the record (:class:`Exposure`) stays on the host.

    It has what the stages read of an exposure (``image``, ``variance``,
    ``mask``, ``psf``, ``header``, ``meta``, ``shape``, ``exposure_id``).
    """

    image: Any
    variance: Any
    mask: Any
    psf: np.ndarray
    header: str = ""
    meta: dict = field(default_factory=dict)

    @classmethod
    def upload(cls, exposure: Exposure, xp) -> "ExposureArrays":
        """The planes copied to ``xp``'s device (no copy for NumPy)."""
        return cls(xp.asarray(exposure.image), xp.asarray(exposure.variance), xp.asarray(exposure.mask),
                   exposure.psf, exposure.header, dict(exposure.meta))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.image.shape)

    @property
    def exposure_id(self) -> str:
        return str(self.meta.get("exposure_id", ""))


def _patches(image, x, y, half: int) -> np.ndarray:
    """The ``(2 half + 1)^2`` pixels around integer positions ``(x, y)`` (edges clamped), on the host.

    One gather on the image's device; only the patches come back.
    """
    H, W = image.shape
    offs = np.arange(-half, half + 1)
    rows = np.clip(np.asarray(y, np.int64)[:, None] + offs, 0, H - 1)[:, :, None]
    cols = np.clip(np.asarray(x, np.int64)[:, None] + offs, 0, W - 1)[:, None, :]
    xp = array_module_of(image)
    return to_numpy(image[xp.asarray(rows), xp.asarray(cols)]).astype(np.float64)


def score_peak_positions(score, xpeak, ypeak, sign) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sub-pixel positions of score maxima and the score there: a parabola through the peak and its neighbours.

    ``xpeak``, ``ypeak`` are the objects' brightest pixels on ``sign * score``
    (NumPy or device image); the vertex is kept within half a pixel of them
    (flat or edge peaks stay put).  Returns ``(x, y, |score|)`` at the pixel
    nearest the vertex.
    """
    H, W = score.shape
    ix = np.clip(np.asarray(xpeak, int), 0, W - 1)
    iy = np.clip(np.asarray(ypeak, int), 0, H - 1)
    sign = np.asarray(sign, np.float64)
    patch = _patches(score, ix, iy, 1) * sign[:, None, None]
    centre = patch[:, 1, 1]

    def offset(lower, upper, inside):
        curvature = lower - 2 * centre + upper
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(inside & (curvature < 0), 0.5 * (lower - upper) / curvature, 0.0)
        return np.clip(shift, -0.5, 0.5)

    dx = offset(patch[:, 1, 0], patch[:, 1, 2], (ix > 0) & (ix < W - 1))
    dy = offset(patch[:, 0, 1], patch[:, 2, 1], (iy > 0) & (iy < H - 1))
    x, y = ix + dx, iy + dy
    # |score| at the nearest pixel to the vertex: within the patch, since the shift is at most half a pixel
    ri = np.clip(np.rint(y).astype(int), 0, H - 1) - iy + 1
    ci = np.clip(np.rint(x).astype(int), 0, W - 1) - ix + 1
    peak = np.abs(patch[np.arange(len(ix)), ri, ci])
    return x, y, peak


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


def _on(device: str, config):
    """A stage config placed on the pipeline's ``device`` unless it names its own."""
    return config if config.device is not None else config.model_copy(update={"device": device})


class ImagePipeline(Stage[ImagePipelineConfig]):
    """Difference an exposure pair, detect and measure changes, and build alerts.

    Parameters
    ----------
    config : ImagePipelineConfig, dict or None
    scorer : callable, optional
        Real/bogus scorer of the candidates' stamps (:data:`StampScoreFn`, e.g. a
        :class:`~astroray.models.scoring.StampScorer`); its scores fill the
        catalog's ``rb`` column and the alerts' ``scores["rb"]``.  None: ``rb`` is NaN.

    Examples
    --------
    >>> pipe = ImagePipeline(ImagePipelineConfig(device="cpu"))     # doctest: +SKIP
    >>> result = pipe.run(reference, science)                         # doctest: +SKIP
    >>> result.catalog[["x", "y", "flux", "snr"]]                     # doctest: +SKIP
    >>> scored = ImagePipeline(config, scorer=StampScorer({"model_uri": "models:/astroray-realbogus@champion"}))
    ... # doctest: +SKIP
    """

    config_class = ImagePipelineConfig

    def __init__(self, config: ImagePipelineConfig | dict | None = None, *, scorer: StampScoreFn | None = None):
        if scorer is not None and not callable(scorer):
            raise TypeError(f"scorer must be callable (stamps -> real probabilities), got {type(scorer).__name__}")
        self.scorer = scorer
        super().__init__(config)

    def __reduce__(self):  # rebuilt from the config, with the scorer (a Stage scorer pickles by its own config)
        import functools

        return (functools.partial(type(self), scorer=self.scorer), (self.config,))

    def setup(self) -> None:
        cfg = self.config
        self.device = resolve_device(cfg.device)
        self.xp = get_xp(self.device)
        self.background = Background(_on(self.device, cfg.background))
        # The pipeline brings the difference back itself, once, after the cutouts.
        self.differencer = Differencer(_on(self.device, cfg.difference).model_copy(update={"keep_on_device": True}))
        self.extractor = SourceExtractor(_on(self.device, cfg.detection))
        self.streak_finder = StreakFinder(cfg.streaks) if cfg.streaks is not None else None
        model_size = getattr(self.scorer, "stamp_size", None)
        if model_size is not None and model_size < cfg.cutout_size:
            raise ConfigError(f"the real/bogus model reads stamps of at most {model_size} px, but the pipeline cuts "
                              f"{cfg.cutout_size} px (set cutout_size: {model_size}, or use a model trained on "
                              f"{cfg.cutout_size} px stamps)")

    def subtract_background(self, exposure: Exposure | ExposureArrays) -> ExposureArrays:
        """The exposure's planes on the background stage's device, mesh background removed (no-op if already done)."""
        xp = self.background.xp
        arrays = exposure if isinstance(exposure, ExposureArrays) else ExposureArrays.upload(exposure, xp)
        if arrays.meta.get("background_subtracted"):
            return arrays
        bkg = self.background.run(arrays.image, mask=arrays.mask != 0)
        meta = dict(arrays.meta, background_subtracted=True, global_background=float(bkg.global_background))
        return ExposureArrays(arrays.image - bkg.background, arrays.variance, arrays.mask, arrays.psf,
                              arrays.header, meta)

    def run(self, reference: Exposure, science: Exposure, *, psf_reference=None, psf_science=None,
            flux_ratio: float | None = None) -> PairResult:
        """Run the chain on one pair; raise :class:`InvalidInputError` for unusable input.

        ``psf_reference``, ``psf_science`` (a stamp or a ``(ny, nx, h, w)``
        grid) and ``flux_ratio`` (``F_n / F_r``) go to the differencer in
        place of the exposures' PSF stamps and the config's or fitted ratio
        (see :meth:`Differencer.run <astroray.imaging.difference.Differencer.run>`).
        """
        if reference.shape != science.shape:
            raise InvalidInputError(
                f"reference shape {reference.shape} differs from science shape {science.shape} "
                "(warp the reference onto the science pixel grid first)", source=science.exposure_id or None)
        timer = StageTimer(sync=lambda: device_synchronize(self.xp))
        with timer("background"):
            ref = self.subtract_background(reference)
            sci = self.subtract_background(science)
        with timer("difference"):
            diff = self.differencer.run(ref, sci, flux_ratio=flux_ratio, psf_reference=psf_reference,
                                        psf_science=psf_science)
        with timer("detect"):
            catalog = self._detect(diff, sci)
        if len(catalog) > self.config.max_detections:
            raise InvalidInputError(
                f"{len(catalog)} detections exceed max_detections={self.config.max_detections}: the subtraction "
                "probably failed (check PSFs and registration)", source=science.exposure_id or None)
        with timer("streaks"):
            streaks = self.streak_finder(diff.score) if self.streak_finder is not None else []
            if streaks and self.config.streaks.recover:
                catalog = self._under_streaks(diff, sci, catalog, streaks)
            if not catalog.empty:
                on = self.streak_finder.contains(streaks, catalog["x"], catalog["y"]) if streaks else False
                under = catalog["under_streak"] if "under_streak" in catalog else False
                catalog = catalog.assign(on_streak=on, under_streak=under)
        with timer("alerts"):
            stamps = self._stamps(catalog, diff, ref, sci)
        with timer("score"):
            catalog, rb_model = self._score(catalog, stamps)
        with timer("alerts"):
            alerts = self._alerts(catalog, stamps, diff, sci, rb_model)
        with timer("to_host"):  # the one copy of the pair's images back to the host
            diff = diff.to_numpy()
        return PairResult(difference=diff, catalog=catalog, alerts=alerts, timings_ms=timer.ms, streaks=streaks)

    def _detect(self, diff: DifferenceResult, science: ExposureArrays, *, score=None, origin=(0, 0), region=None,
                flux_model=None, peak_image=None) -> pd.DataFrame:
        """Detections on ``score`` (default the difference's) within ``region``, measured on D.

        ``score`` and the optional ``region`` (where to search), ``flux_model``
        (light in :attr:`DifferenceResult.flux` units that is not the source's
        own, a streak under it, subtracted from its PSF flux) and
        ``peak_image`` (where the sub-pixel peaks are found; default
        ``score``) cover the part of the frame that starts at pixel
        ``origin`` (row, column): all of it on the first pass.
        """
        y0, x0 = origin
        score = diff.score if score is None else score
        xp = array_module_of(score)
        h, w = score.shape
        bad = science.mask[y0:y0 + h, x0:x0 + w] != 0
        if array_module_of(bad) is not xp:  # a host score (the search under streaks): its window of the mask
            bad = to_numpy(bad)
        if region is not None:
            bad = bad | ~region
        found = []
        signs = (1, -1) if self.config.detect_negative else (1,)
        ext = self.extractor.config
        if (self.extractor.implementation == "sep" and ext.threshold_type == "absolute" and ext.threshold > 0
                and ext.filter_kernel is None and not ext.photometry):
            # SEP detecting above a positive level, unfiltered, measuring footprints only: a pixel set to 0
            # is never in a footprint, as a masked one is not, and the extraction skips its mask passes.
            data = xp.where(bad, xp.float32(0), score.astype(xp.float32, copy=False))
            for sign in signs:
                found.append(self.extractor.run(data if sign > 0 else -data).catalog.assign(sign=sign))
        else:
            for sign in signs:
                cat = self.extractor.run(sign * score, mask=bad).catalog
                found.append(cat.assign(sign=sign))
        catalog = pd.concat(found, ignore_index=True)
        if catalog.empty:
            return catalog
        # The matched-filter peak is the point source's most likely position; the isophotal barycentre
        # drifts with noise, neighbours and blanked pixels (median error 0.31 px against 0.20 px on the sims).
        peaks = score if peak_image is None else peak_image
        x_peak, y_peak, snr = score_peak_positions(peaks, catalog["xpeak"].to_numpy(), catalog["ypeak"].to_numpy(),
                                                   catalog["sign"].to_numpy())  # snr: the PSF-flux S/N there
        shifted = {c: catalog[c] + (x0 if c.startswith("x") else y0)
                   for c in ("xpeak", "ypeak", "xcpeak", "ycpeak", "xmin", "xmax", "ymin", "ymax") if c in catalog}
        catalog = catalog.assign(x_iso=catalog["x"] + x0, y_iso=catalog["y"] + y0, x=x_peak + x0, y=y_peak + y0,
                                 **shifted)
        # PSF photometry on the difference (science counts), signed: fading sources come out negative
        flux, flux_err = diff.flux_at(catalog["y"].to_numpy(), catalog["x"].to_numpy())
        if flux_model is not None:
            from scipy.ndimage import map_coordinates

            flux = flux - map_coordinates(flux_model, [y_peak, x_peak], order=1)
        ra, dec = pixel_to_sky(science.header, catalog["x"].to_numpy(), catalog["y"].to_numpy())
        catalog = catalog.assign(flux=flux, flux_err=flux_err, snr=snr, ra=ra, dec=dec,
                                 exposure_id=science.exposure_id)
        return catalog.sort_values("snr", ascending=False, ignore_index=True)

    def _under_streaks(self, diff: DifferenceResult, science: ExposureArrays, catalog: pd.DataFrame,
                       streaks: list[Streak]) -> pd.DataFrame:
        """Candidates a streak's footprint swallowed, detected again with the streak's profile removed.

        The residual is in units of its own scatter along the streak, so a
        bright streak's modelling error does not become candidates.  A
        first-pass detection within 3 px of one found this way was the
        streak's peak there, its position pulled by the streak: it is replaced.
        The work is on the host, on the window that holds the streaks' bands.
        """
        catalog = catalog.assign(under_streak=False) if not catalog.empty else catalog
        window = _streak_window(streaks, diff.flux.shape, margin=_STREAK_MODEL_MARGIN + 2)
        if window is None:
            return catalog
        (y0, y1), (x0, x1) = window
        # Modelled on the PSF-flux image, which is linear in the light (S_corr is not: the streak's own
        # source noise and gradient raise its variance, and a transient on the ridge would split in two).
        flux, flux_err = to_numpy(diff.flux[y0:y1, x0:x1]), to_numpy(diff.flux_err[y0:y1, x0:x1])
        local = [dataclasses.replace(s, x0=s.x0 - x0, y0=s.y0 - y0, x1=s.x1 - x0, y1=s.y1 - y0) for s in streaks]
        flux_model, band, scale = streak_model(flux, local, noise=flux_err, margin=_STREAK_MODEL_MARGIN)
        residual = np.zeros(flux.shape, np.float32)  # only the streaks' bands are searched
        inside = band & (flux_err > 0)
        residual[inside] = (flux[inside] - flux_model[inside]) / flux_err[inside]
        box = bounding_box(band)
        if box is None:
            return catalog
        (by, bx), origin = box, (y0 + box[0].start, x0 + box[1].start)
        found = self._detect(diff, science, score=residual[by, bx] / scale[by, bx], origin=origin,
                             region=band[by, bx], flux_model=flux_model[by, bx], peak_image=residual[by, bx])
        if found.empty:
            return catalog
        found = found.assign(under_streak=True)
        if catalog.empty:
            return found
        from scipy.spatial import cKDTree

        dist, _ = cKDTree(found[["x", "y"]].to_numpy()).query(catalog[["x", "y"]].to_numpy())
        yi = np.rint(catalog["y"].to_numpy()).astype(int) - y0
        xi = np.rint(catalog["x"].to_numpy()).astype(int) - x0
        in_window = (yi >= 0) & (yi < band.shape[0]) & (xi >= 0) & (xi < band.shape[1])
        on_band = np.zeros(len(catalog), bool)
        on_band[in_window] = band[yi[in_window], xi[in_window]]
        replaced = (dist <= 3.0) & on_band
        kept = catalog[~replaced]
        if not kept.empty:  # anything else the first pass found stays as it was
            near, _ = cKDTree(kept[["x", "y"]].to_numpy()).query(found[["x", "y"]].to_numpy())
            found = found[near > 3.0]
        merged = pd.concat([kept, found], ignore_index=True)
        return merged.sort_values("snr", ascending=False, ignore_index=True)

    def _stamps(self, catalog, diff, ref, sci) -> dict[str, np.ndarray]:
        """Each candidate's ``cutout_size`` stamps (host arrays); ``score`` (S_corr) too when a scorer may read it."""
        if catalog.empty:
            return {}
        size = self.config.cutout_size
        x, y = catalog["x"].to_numpy(), catalog["y"].to_numpy()
        planes = [("science", sci.image), ("reference", ref.image), ("difference", diff.difference)]
        if self.scorer is not None and "score" in getattr(self.scorer, "channels", ("score",)):
            planes.append(("score", diff.score))
        # Cut on the device; only the stamps come back.
        return {name: to_numpy(cutouts(img, x, y, size=size)) for name, img in planes}

    def _score(self, catalog: pd.DataFrame, stamps: dict) -> tuple[pd.DataFrame, dict]:
        """The catalog with ``rb`` (NaN without a scorer), and the scoring model's name and version."""
        if self.scorer is None or catalog.empty:
            return catalog.assign(rb=np.nan) if not catalog.empty else catalog, {}
        out = self.scorer(stamps)
        rb = np.asarray(getattr(out, "scores", out), np.float64).reshape(-1)
        if rb.shape != (len(catalog),):
            raise ValueError(f"the scorer returned {rb.shape[0]} scores for {len(catalog)} candidates")
        model = getattr(out, "model", None) or {}
        return catalog.assign(rb=rb), {k: model.get(k) for k in ("name", "version") if model.get(k) is not None}

    def _alerts(self, catalog, stamps, diff, sci, rb_model: dict) -> list[Alert]:
        if catalog.empty:
            return []
        sign = catalog["sign"].to_numpy()
        likeness = psf_likeness(stamps["difference"] * sign[:, None, None], to_numpy(diff.psf))
        scale = _counts_to_njy(sci.meta)
        band = str(sci.meta.get("band", ""))
        mjd = float(sci.meta.get("mjd", np.nan))
        survey = str(sci.meta.get("survey", ""))
        scored = self.scorer is not None
        rb_meta = {f"rb_model_{k}": v for k, v in rb_model.items()}  # which model scored, beside the score
        alerts = []
        for i, row in enumerate(catalog.itertuples(index=False)):
            alert_id = f"{sci.exposure_id}-{i:05d}"
            flux, flux_err = row.flux * scale, row.flux_err * scale
            history = LightCurve(alert_id, [mjd], [band or "r"], [flux], [flux_err], [True], survey=survey)
            scores = {"psf_likeness": float(likeness[i]), "snr": float(row.snr)}
            if scored:
                scores["rb"] = float(row.rb)
            alerts.append(Alert(
                alert_id=alert_id, object_id=alert_id, survey=survey, mjd=mjd, ra=float(row.ra), dec=float(row.dec),
                band=band, flux=float(flux), flux_err=float(flux_err), history=history, scores=scores,
                cutout_science=stamps["science"][i], cutout_reference=stamps["reference"][i],
                cutout_difference=stamps["difference"][i],
                meta={"x": float(row.x), "y": float(row.y), "sign": int(row.sign),
                      "on_streak": bool(row.on_streak), "under_streak": bool(row.under_streak), **rb_meta}))
        return alerts


_STREAK_MODEL_MARGIN = 8.0
"""Pixels beyond a streak's half width that its model covers (and that are searched again)."""


def _streak_window(streaks: list[Streak], shape, *, margin: float):
    """``((y0, y1), (x0, x1))`` holding every streak with its half width plus ``margin``, or None."""
    H, W = shape
    xs = [v for s in streaks for v in (s.x0, s.x1)]
    ys = [v for s in streaks for v in (s.y0, s.y1)]
    reach = max(s.half_width for s in streaks) + margin
    x0, x1 = max(int(np.floor(min(xs) - reach)), 0), min(int(np.ceil(max(xs) + reach)) + 1, W)
    y0, y1 = max(int(np.floor(min(ys) - reach)), 0), min(int(np.ceil(max(ys) + reach)) + 1, H)
    if x0 >= x1 or y0 >= y1:
        return None
    return (y0, y1), (x0, x1)


def catalog_to_table(catalog: pd.DataFrame, *, pair_id: str = ""):
    """The catalog as an Arrow table of :data:`~astroray.records.CATALOG_SCHEMA`, so every pair's part file unions."""
    import pyarrow as pa

    from astroray.records import CATALOG_SCHEMA

    n = len(catalog)
    cols = {}
    for f in CATALOG_SCHEMA:
        if f.name == "pair_id":
            cols[f.name] = pa.array([pair_id] * n, f.type)
        elif f.name in catalog:
            cols[f.name] = pa.array(catalog[f.name].to_numpy(), f.type, from_pandas=True)
        else:
            cols[f.name] = pa.nulls(n, f.type)
    return pa.table(cols, schema=CATALOG_SCHEMA)
