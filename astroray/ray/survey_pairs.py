"""The image job's ``map_batches`` callable for plain survey FITS pairs (``jobs/difference.py --pairs FILE.csv``).

:class:`SurveyPairProcessor` is :class:`~astroray.ray.data.PairProcessor`
with another first step: each (science, reference) pair of plain FITS files
goes through :func:`~astroray.imaging.survey_pair.difference_pair` (read,
register the reference onto the science grid, measure both PSFs, difference)
and its products are rendered by the same code as ``astroray difference``
(:func:`~astroray.imaging.survey_pair.pair_products`), then written in the
job's layout: ``difference/<pair_id>.fits`` (D with the science WCS),
``alerts/<pair_id>.parquet``, ``catalog/<pair_id>.parquet``.  A pair's
summary (each PSF's FWHM and ellipticity, the registration, the flux ratio)
is its status row's ``survey_summary`` (JSON), so it lands in the manifest.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from astroray.errors import InvalidInputError
from astroray.imaging.survey_pair import json_default
from astroray.ray.data import PAIR_STATUS_COLUMNS, PairProcessor

__all__ = ["SurveyPairProcessor", "SURVEY_STATUS_COLUMNS"]

SURVEY_STATUS_COLUMNS = (*PAIR_STATUS_COLUMNS, "survey_summary")
""":data:`~astroray.ray.data.PAIR_STATUS_COLUMNS` and the pair's summary as JSON ("" when it did not end ok)."""


class SurveyPairProcessor(PairProcessor):
    """``map_batches`` callable: rows of (pair_id, reference_path, science_path) of plain FITS, one status row out.

    Parameters
    ----------
    survey_config : dict
        :class:`~astroray.imaging.survey_pair.SurveyPairConfig` as a dict;
        its ``pipeline`` is the job's.
    **kwargs
        As :class:`~astroray.ray.data.PairProcessor` (``pipeline_config``,
        ``output_dir``, ``write_difference``, ``read_limits``, ``realbogus``:
        its scorer scores these pairs' candidates too).
    """

    def __init__(self, *args, survey_config: dict, **kwargs):
        from astroray.config import config_from_dict
        from astroray.imaging.survey_pair import SurveyPairConfig

        super().__init__(*args, **kwargs)
        self.survey_config = config_from_dict(SurveyPairConfig, survey_config)

    def __call__(self, batch: dict[str, np.ndarray]) -> pd.DataFrame:
        rows = [self._one(str(p), str(r), str(s)) for p, r, s in
                zip(batch["pair_id"], batch["reference_path"], batch["science_path"])]
        return pd.DataFrame(rows, columns=list(SURVEY_STATUS_COLUMNS))

    def _one(self, pair_id: str, reference_path: str, science_path: str) -> dict:
        from astroray.imaging.survey_pair import difference_pair, pair_products
        from astroray.io.limits import using_limits

        t0 = time.perf_counter()

        def status(state, reason, **extra):
            return dict(dict(pair_id=pair_id, status=state, reason=reason, n_detections=0, n_alerts=0, n_streaks=0,
                             ms=(time.perf_counter() - t0) * 1e3, stage_ms="{}", survey_summary=""), **extra)

        try:
            for role, path in (("science", science_path), ("reference", reference_path)):
                if not path:
                    raise InvalidInputError(f"the CSV row gives no {role} path")
            with using_limits(self.read_limits):  # inputs: regular files, size and gzip expansion bounded
                result = difference_pair(science_path, reference_path, config=self.survey_config,
                                         scorer=self.pipeline.scorer)
            products = pair_products(result, pair_id=pair_id, write_score=False, write_png=False)
        except InvalidInputError as exc:
            return status("quarantined", str(exc))
        except Exception as exc:  # a bug must not sink the other pairs; it is reported, not hidden
            import logging
            import traceback

            logging.getLogger("astroray").error("pair %s failed:\n%s", pair_id, traceback.format_exc())
            return status("failed", f"internal error {type(exc).__name__}: {exc}")
        # Unique temporaries created in the target folder, no link followed, renamed atomically (OutputFolder).
        if self.write_difference:
            self.outputs.write("difference", f"{pair_id}.fits", lambda fh: fh.write(products["difference"]))
        for name in ("alerts", "catalog"):
            self.outputs.write(name, f"{pair_id}.parquet", lambda fh, data=products[name]: fh.write(data))
        summary = products["summary_dict"]
        summary.pop("paths", None)
        stage_ms = dict(result.timings_ms, **{f"pipeline_{k}": v for k, v in result.pair.timings_ms.items()})
        return status("ok", "", n_detections=summary["n_detections"], n_alerts=summary["n_alerts"],
                      n_streaks=summary["n_streaks"],
                      stage_ms=json.dumps({k: round(float(v), 1) for k, v in stage_ms.items()}),
                      survey_summary=json.dumps(summary, default=json_default))

