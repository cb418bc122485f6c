"""Ray Data adapters: FITS and alert-file datasources, and the image-pipeline callable.

Thin by design: parsing lives in :mod:`astroray.io`, science in
:mod:`astroray.imaging`.  Bad files never fail a read task: they come out as
rows with ``error`` set, so a job can quarantine them and account for every input.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
from ray.data._internal.delegating_block_builder import DelegatingBlockBuilder
from ray.data.datasource import FileBasedDatasource

from astroray.errors import InvalidInputError
from astroray.io.fits import read_exposure
from astroray.records import ALERT_SCHEMA, alerts_to_table

__all__ = [
    "FitsExposureDatasource",
    "AlertFileDatasource",
    "read_fits_exposures",
    "read_alert_files",
    "PairProcessor",
    "PAIR_STATUS_COLUMNS",
]


class FitsExposureDatasource(FileBasedDatasource):
    """One row per FITS exposure file: the :meth:`Exposure.to_row` columns plus ``path`` and ``error``.

    A file that cannot be read gives a row with empty (0 x 0) arrays and the
    reason in ``error``.
    """

    _FILE_EXTENSIONS = ["fits", "fit", "fts"]

    def __init__(self, paths, **kwargs):
        kwargs.setdefault("file_extensions", self._FILE_EXTENSIONS)
        super().__init__(paths, **kwargs)

    def _read_stream(self, f, path: str) -> Iterator:
        builder = DelegatingBlockBuilder()
        try:
            row = read_exposure(_read_bounded(f, path), name=path).to_row()
            row.update(path=path, error=None)
        except InvalidInputError as exc:
            empty = np.zeros((0, 0), np.float32)
            row = {k: None for k in ("exposure_id", "survey", "visit", "ccd", "band", "mjd", "exptime", "gain",
                                     "saturation", "zero_point")}
            row.update(image=empty, variance=empty, mask=empty.astype(np.uint32), psf=empty, header="",
                       path=path, error=str(exc))
        builder.add(row)
        yield builder.build()


_ALERT_FILE_SCHEMA = ALERT_SCHEMA.append(pa.field("path", pa.string())).append(pa.field("error", pa.string()))


class AlertFileDatasource(FileBasedDatasource):
    """One row per alert (:data:`~astroray.records.ALERT_SCHEMA` plus ``path`` and ``error``).

    Reads ZTF/LSST Avro, Fink/Rubin Parquet and JSON alert files through
    :func:`astroray.io.read_alerts`; an unreadable file gives one row with
    ``error`` set and every alert column null.
    """

    _FILE_EXTENSIONS = ["avro", "parquet", "json"]

    def __init__(self, paths, **kwargs):
        kwargs.setdefault("file_extensions", self._FILE_EXTENSIONS)
        super().__init__(paths, **kwargs)

    def _read_stream(self, f, path: str) -> Iterator[pa.Table]:
        from astroray.io import read_alerts

        try:
            table = alerts_to_table(read_alerts(_read_bounded(f, path), name=path))
            table = table.append_column("path", pa.array([path] * len(table), pa.string()))
            table = table.append_column("error", pa.nulls(len(table), pa.string()))
        except InvalidInputError as exc:
            table = pa.table({name: pa.nulls(1, _ALERT_FILE_SCHEMA.field(name).type)
                              for name in _ALERT_FILE_SCHEMA.names}, schema=_ALERT_FILE_SCHEMA)
            table = table.set_column(table.schema.get_field_index("path"), "path", pa.array([path]))
            table = table.set_column(table.schema.get_field_index("error"), "error", pa.array([str(exc)]))
        yield table


def _read_bounded(f, path: str) -> bytes:
    """A datasource file's bytes, refused past ``ReadLimits.max_file_mb`` (read one byte beyond, never whole)."""
    from astroray.io.limits import current_limits

    limit = current_limits().max_file_bytes
    data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidInputError(f"file is larger than the limit of {limit / 2**20:.0f} MB (ReadLimits.max_file_mb, "
                                "$ASTRORAY_MAX_FILE_MB)", source=path)
    return bytes(data)


def read_fits_exposures(paths, **kwargs):
    """A Dataset of FITS exposures (one row per file) from a path, folder or list."""
    import ray.data

    return ray.data.read_datasource(FitsExposureDatasource(paths), **kwargs)


def read_alert_files(paths, **kwargs):
    """A Dataset of alerts (one row per alert) from alert files or folders."""
    import ray.data

    return ray.data.read_datasource(AlertFileDatasource(paths), **kwargs)


PAIR_STATUS_COLUMNS = ("pair_id", "status", "reason", "n_detections", "n_alerts", "n_streaks", "ms", "stage_ms")
"""One row per pair; ``stage_ms`` is JSON of the pipeline's stage timings (background, difference, detect, ...)."""


class PairProcessor:
    """``map_batches`` callable: rows of (pair_id, reference_path, science_path) in, one status row per pair out.

    Each pair runs through :class:`~astroray.imaging.pipeline.ImagePipeline`
    and writes its alerts and catalog as Parquet part files under
    ``output_dir/alerts`` and ``output_dir/catalog`` (the layout Ray Data and
    pyarrow read as one dataset).  A pair whose input is bad is quarantined:
    its status row says why, and the other pairs go on.  An unexpected error
    (a bug, not bad input) gives status ``failed`` with the exception, logged
    with its traceback; it too does not stop the other pairs.

    Parameters
    ----------
    pipeline_config : dict
        :class:`~astroray.imaging.pipeline.ImagePipelineConfig` as a dict (kept
        small: actors are built from it on each node).
    output_dir : str
        Shared storage on a cluster; a local folder on one machine.
    write_difference : bool, optional
        Also write each difference image D as ``output_dir/difference/<pair_id>.fits``.
    realbogus : dict, optional
        :class:`~astroray.models.scoring.StampScorerConfig` as a dict: the model
        that scores every candidate (the catalog's ``rb``, the alerts'
        ``scores["rb"]``), loaded once per actor.  Give a pinned
        ``models:/NAME/VERSION`` and an absolute ``tracking_uri`` (as
        :func:`~astroray.ray.image_job.run_pairs` does), so every actor reads the same model.
    """

    def __init__(self, pipeline_config: dict, output_dir: str, write_difference: bool = True,
                 read_limits: dict | None = None, realbogus: dict | None = None):
        from astroray.config import config_from_dict
        from astroray.imaging.pipeline import ImagePipeline, ImagePipelineConfig
        from astroray.io.limits import ReadLimits, current_limits
        from astroray.io.outputs import OutputFolder

        scorer = None
        if realbogus:
            from astroray.models.scoring import StampScorer

            scorer = StampScorer(realbogus)
        self.pipeline = ImagePipeline(config_from_dict(ImagePipelineConfig, pipeline_config), scorer=scorer)
        self.output_dir = Path(output_dir)
        self.outputs = OutputFolder(self.output_dir)  # every write stays inside output_dir (no link followed)
        self.write_difference = write_difference
        self.read_limits = ReadLimits.model_validate(read_limits) if read_limits else current_limits()

    def __call__(self, batch: dict[str, np.ndarray]) -> pd.DataFrame:
        rows = [self._one(str(p), str(r), str(s)) for p, r, s in
                zip(batch["pair_id"], batch["reference_path"], batch["science_path"])]
        return pd.DataFrame(rows, columns=list(PAIR_STATUS_COLUMNS))

    def _one(self, pair_id: str, reference_path: str, science_path: str) -> dict:
        import pyarrow.parquet as pq

        from astroray.imaging.pipeline import catalog_to_table
        from astroray.io.limits import using_limits

        t0 = time.perf_counter()
        try:
            with using_limits(self.read_limits):  # inputs: regular files, size and gzip expansion bounded
                reference, science = read_exposure(reference_path), read_exposure(science_path)
            result = self.pipeline.run(reference, science)
        except InvalidInputError as exc:
            return dict(pair_id=pair_id, status="quarantined", reason=str(exc), n_detections=0, n_alerts=0,
                        n_streaks=0, ms=(time.perf_counter() - t0) * 1e3, stage_ms="{}")
        except Exception as exc:  # a bug must not sink the other CCDs of the visit; it is reported, not hidden
            import logging
            import traceback

            logging.getLogger("astroray").error("pair %s failed:\n%s", pair_id, traceback.format_exc())
            return dict(pair_id=pair_id, status="failed", reason=f"internal error {type(exc).__name__}: {exc}",
                        n_detections=0, n_alerts=0, n_streaks=0, ms=(time.perf_counter() - t0) * 1e3,
                        stage_ms="{}")
        # Unique temporaries created in the target folder, no link followed, renamed atomically (OutputFolder).
        if self.write_difference:
            from astroray.io.fits import image_to_bytes

            data = image_to_bytes(result.difference.difference)
            self.outputs.write("difference", f"{pair_id}.fits", lambda fh: fh.write(data))
        for name, table in (("alerts", alerts_to_table(result.alerts)),
                            ("catalog", catalog_to_table(result.catalog, pair_id=pair_id))):
            self.outputs.write(name, f"{pair_id}.parquet", lambda fh, table=table: pq.write_table(table, fh))
        return dict(pair_id=pair_id, status="ok", reason="", n_detections=len(result.catalog),
                    n_alerts=len(result.alerts), n_streaks=len(result.streaks), ms=(time.perf_counter() - t0) * 1e3,
                    stage_ms=json.dumps({k: round(float(v), 1) for k, v in result.timings_ms.items()}))
