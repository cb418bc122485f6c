"""Serve deployments: each wraps one configure-once stage; the ingress holds their handles."""
from __future__ import annotations

import math
import time

from ray import serve

from astroray.config import config_from_dict
from astroray.imaging.pipeline import ImagePipeline, ImagePipelineConfig
from astroray.io.fits import read_exposure
from astroray.io.limits import ReadLimits
from astroray.ray.serve.http import user_errors_as_values

__all__ = ["DifferencerDeployment"]


def _finite(v):
    v = float(v)
    return v if math.isfinite(v) else None


@serve.deployment(name="differencer", max_ongoing_requests=4)
class DifferencerDeployment:
    """Background, difference, detection and scoring of one exposure pair (GPU when configured).

    ``realbogus`` (a :class:`~astroray.models.scoring.StampScorerConfig` dict, as
    :func:`~astroray.ray.serve.realbogus.scorer_user_config` gives under ``scorer``):
    every detection is scored in-process by that model (``rb``), which is
    reloaded when its alias moves (checked every ``reload_check_s`` seconds).
    """

    def __init__(self, pipeline_config: dict, read_limits: dict | None = None, realbogus: dict | None = None,
                 reload_check_s: float = 30.0):
        self.scorer = None
        if realbogus:
            from astroray.models.scoring import StampScorer

            self.scorer = StampScorer(realbogus)
        self.reload_check_s = float(reload_check_s)
        self._checked = time.monotonic()
        self.pipeline = ImagePipeline(config_from_dict(ImagePipelineConfig, pipeline_config, source="serve args"),
                                      scorer=self.scorer)
        # Bounds on reading the uploaded FITS (gzip expansion, size); the header is checked before any data is read.
        self.read_limits = ReadLimits.model_validate(read_limits) if read_limits else ReadLimits.from_env()

    @user_errors_as_values
    def difference(self, reference_fits: bytes, science_fits: bytes, *, return_difference: bool = False,
                   max_detections: int = 1000) -> dict:
        """Run the pair; bad input comes back as a :class:`~astroray.ray.serve.http.UserError` (a 4xx at the ingress)."""
        ref = read_exposure(reference_fits, name="reference", limits=self.read_limits)
        sci = read_exposure(science_fits, name="science", limits=self.read_limits)
        if self.scorer is not None and time.monotonic() - self._checked >= self.reload_check_s:
            self._checked = time.monotonic()
            self.scorer.reload_if_moved()  # the pipeline holds this scorer: it scores with the new version
        result = self.pipeline.run(ref, sci)
        cat = result.catalog
        detections = []
        for alert in result.alerts[:max_detections]:
            detections.append(dict(
                x=alert.meta["x"], y=alert.meta["y"], ra=_finite(alert.ra), dec=_finite(alert.dec),
                flux=alert.flux if math.isfinite(alert.flux) else 0.0,
                flux_err=alert.flux_err if math.isfinite(alert.flux_err) else 0.0,
                snr=alert.scores["snr"], sign=alert.meta["sign"], psf_likeness=alert.scores["psf_likeness"],
                on_streak=bool(alert.meta.get("on_streak", False)), rb=_finite(alert.scores.get("rb", math.nan))))
        out = dict(science_id=sci.exposure_id, n_detections=len(cat), detections=detections,
                   flux_ratio=_finite(getattr(result.difference, "flux_ratio", float("nan"))),
                   method=str(result.difference.method), device=str(result.difference.device),
                   timings_ms=result.timings_ms, difference_fits=None,
                   streaks=[[s.x0, s.y0, s.x1, s.y1, s.half_width] for s in result.streaks])
        if self.scorer is not None:
            out["realbogus_model"] = {"name": self.scorer.info.get("name"), "version": self.scorer.version}
        if return_difference:
            import base64
            import io

            import numpy as np
            from astropy.io import fits

            buf = io.BytesIO()
            fits.PrimaryHDU(np.asarray(result.difference.difference, np.float32)).writeto(buf)
            out["difference_fits"] = base64.b64encode(buf.getvalue()).decode()
        return out
