"""Run the image pipeline over many exposure pairs with Ray Data.

Shared by the demo and ``jobs/difference.py``.  Inputs are a manifest of
(pair_id, reference_path, science_path); outputs are Parquet part files per
pair, a manifest with every input's status, and a quarantine table.

The outputs under the output folder are exactly the current run's: the job's
own files from an earlier run there (``alerts/``, ``catalog/``,
``difference/``, ``manifest.parquet``, ``quarantine.parquet``) are removed
before the run, and the parts of a pair that did not end ``ok`` are removed
after it, so what is on disk always matches ``manifest.parquet``.  A pair whose
science exposure another pair already covers (the same file, e.g. through a
link, or the same exposure id) is quarantined, so alert ids stay unique.

Plain survey FITS pairs (any telescope's image HDU with a WCS, no PSF) come as
a CSV of (science, reference[, pair_id]) paths (:func:`pairs_from_csv`); each
row is read, registered, given PSFs measured from its stars and differenced by
:func:`~astroray.imaging.survey_pair.difference_pair`
(:class:`~astroray.ray.survey_pairs.SurveyPairProcessor`), into the same
outputs.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import pandas as pd
from pydantic import Field, model_validator

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError
from astroray.imaging.pipeline import ImagePipelineConfig
from astroray.imaging.survey_pair import SurveyPairConfig
from astroray.io.limits import ReadLimits
from astroray.models.scoring import StampScorerConfig

__all__ = ["DifferenceJobConfig", "pairs_in_folder", "pairs_from_csv", "load_survey_pair_config", "run_pairs",
           "check_output_folder", "OUTPUT_FOLDERS"]

OUTPUT_FOLDERS = {"alerts": ".parquet", "catalog": ".parquet", "difference": ".fits"}
"""The job's part-file folders under ``--out`` and the suffix of the parts in each."""
_OUTPUT_FILES = ("manifest.parquet", "quarantine.parquet")


class DifferenceJobConfig(AstrorayConfig):
    """Config of ``jobs/difference.py`` (``configs/difference.yaml``)."""

    pipeline: ImagePipelineConfig = Field(default_factory=ImagePipelineConfig)
    num_actors: int = Field(default=2, ge=1)
    """Pipeline actors (one pair at a time each); on GPU nodes, actors share GPUs by num_gpus_per_actor."""
    num_gpus_per_actor: float = Field(default=0.0, ge=0.0)
    write_difference: bool = True
    actor_restarts: int | None = Field(default=None, ge=-1)
    """``max_restarts`` of the pipeline actors: None restarts them (and retries their pairs) on a cluster,
    where a node can be lost, and not on a local Ray started by the job; -1 is unlimited."""
    read_limits: ReadLimits = Field(default_factory=ReadLimits.from_env)
    """Bounds on reading each input FITS file (size, gzip expansion); default from ``ASTRORAY_MAX_*``."""
    realbogus: StampScorerConfig | None = None
    """The real/bogus model that scores every candidate (``model_uri: models:/astroray-realbogus@champion``,
    ``device``, ...): the catalog's ``rb`` and the alerts' ``scores["rb"]``.  None: no scoring (``rb`` is NaN).
    The alias is read once, when the job starts: every actor scores with that version."""
    survey: SurveyPairConfig | None = None
    """``--pairs FILE.csv`` (plain survey FITS): how each file is read, the reference registered and the PSFs
    measured (None: the defaults).  The differencing itself follows ``pipeline`` above, so ``survey.pipeline``
    is refused."""

    @model_validator(mode="after")
    def _one_pipeline(self):
        if self.survey is not None and "pipeline" in self.survey.model_fields_set:
            raise ValueError("survey.pipeline: set the pipeline's options in the job's top-level 'pipeline:' "
                             "section (it serves both modes)")
        if self.survey is not None and self.survey.science.exposure_id is not None:
            raise ValueError("survey.science.exposure_id: each science file's exposure id (the start of its alert "
                             "ids) comes from its own name in the job; one id for all rows would repeat alert ids")
        return self


_PAIR_NAME = re.compile(r"^(?P<pair>.+?)[_.-](?P<role>reference|ref|template|science|sci|new)\.fits?$", re.I)


def pairs_in_folder(folder: str | Path) -> pd.DataFrame:
    """Pair ``<id>_reference.fits`` with ``<id>_science.fits`` (also ``ref``/``template``, ``sci``/``new``).

    Raises
    ------
    InvalidInputError
        No pair found.  Unpaired files are returned with a missing path, so
        the job quarantines them instead of dropping them.
    """
    folder = Path(folder)
    found: dict[str, dict] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = _PAIR_NAME.match(path.name)
        if not m:
            continue
        role = "reference_path" if m["role"].lower() in ("reference", "ref", "template") else "science_path"
        found.setdefault(m["pair"], {"pair_id": m["pair"], "reference_path": "", "science_path": ""})[role] = str(path)
    if not found:
        raise InvalidInputError("no <id>_reference.fits / <id>_science.fits pairs found", source=str(folder))
    return pd.DataFrame(list(found.values()))


def load_survey_pair_config(path: str | Path | None) -> SurveyPairConfig:
    """The :class:`SurveyPairConfig` of a YAML file that is one, or a job config (its ``survey:`` and ``pipeline:``).

    So ``astroray difference --config`` takes the same file as ``jobs/difference.py --pairs``
    (``configs/difference_survey.yaml``).  A file with any of the job's own keys
    (``survey``, ``num_actors``, ...) is read as a job config, else as a pair config.

    Raises
    ------
    ConfigError
        Missing file, not YAML, an unknown key or a bad value (named).
    """
    import yaml

    from astroray.config import load_config

    if path is None:
        return SurveyPairConfig()
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        data = None  # load_config says what is wrong
    job_keys = set(DifferenceJobConfig.model_fields) - set(SurveyPairConfig.model_fields)
    if isinstance(data, dict) and set(data) & job_keys:
        job = load_config(path, DifferenceJobConfig)
        return (job.survey or SurveyPairConfig()).model_copy(update={"pipeline": job.pipeline})
    return load_config(path, SurveyPairConfig)


_CSV_COLUMNS = ("science", "reference", "pair_id")


def pairs_from_csv(path: str | Path) -> pd.DataFrame:
    """The pairs a CSV of plain FITS paths lists: columns ``science``, ``reference`` and optionally ``pair_id``.

    Relative paths are taken from the CSV's folder.  A row without a
    ``pair_id`` (column missing or cell empty) gets its science file's name
    without the FITS suffixes, made unique with ``-2``, ``-3``, ... in row
    order.  Empty or missing files are not refused here: the job quarantines
    those rows with the reason, so every row is in the manifest (``csv_row``:
    its 1-based data row).

    Raises
    ------
    InvalidInputError
        The CSV cannot be read, lacks ``science`` or ``reference``, has other
        columns, has no rows, or gives one ``pair_id`` twice.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError) as exc:  # EmptyDataError is a ValueError
        raise InvalidInputError(f"cannot read the pairs CSV: {exc}", source=str(path)) from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("science", "reference") if c not in table.columns]
    unknown = [c for c in table.columns if c not in _CSV_COLUMNS]
    if missing or unknown:
        what = "; ".join(part for part in (missing and f"missing column(s) {', '.join(missing)}",
                                           unknown and f"unknown column(s) {', '.join(unknown)}") if part)
        raise InvalidInputError(f"{what}: the pairs CSV has a header row with the columns science, reference "
                                "and optionally pair_id", source=str(path))
    if table.empty:
        raise InvalidInputError("the pairs CSV lists no pairs", source=str(path))
    base = path.resolve().parent

    def resolve(cell: str) -> str:
        cell = cell.strip()
        return "" if not cell else str(Path(cell) if Path(cell).is_absolute() else base / cell)

    given = table["pair_id"].str.strip() if "pair_id" in table else pd.Series([""] * len(table))
    repeated = given[(given != "") & given.duplicated()]
    if len(repeated):
        raise InvalidInputError(f"pair_id {repeated.iloc[0]!r} is given to more than one row: each pair's outputs "
                                "are named by its pair_id", source=str(path))
    taken, ids = set(given[given != ""]), []
    for pair, science in zip(given, table["science"]):
        if not pair:
            stem = _survey_exposure_id(science.strip()) or "pair"
            pair, n = stem, 1
            while pair in taken:
                n += 1
                pair = f"{stem}-{n}"
        taken.add(pair)
        ids.append(pair)
    return pd.DataFrame({"pair_id": ids, "reference_path": [resolve(c) for c in table["reference"]],
                         "science_path": [resolve(c) for c in table["science"]],
                         "csv_row": list(range(1, len(table) + 1))})


def check_output_folder(out: str | Path, *, overwrite: bool,
                        outputs: str = "alerts/, catalog/, difference/, manifest.parquet, quarantine.parquet") -> Path:
    """``out`` if the job may write there: missing, empty, or ``overwrite`` given (``outputs``: what the job
    writes there, named in the message).

    Raises
    ------
    InvalidInputError
        ``out`` is not a folder, or holds anything and ``overwrite`` is False.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError("--out exists and is not a folder", source=str(out))
    if out.is_dir() and not overwrite and any(out.iterdir()):
        raise InvalidInputError(
            f"--out is not empty (an earlier run's outputs?): pass --overwrite to replace the job's outputs there "
            f"({outputs}; nothing else is touched), or choose an empty folder", source=str(out))
    return out


def _clear_outputs(outputs) -> None:
    """Remove what an earlier run of the job left (its part files, temporaries and tables), nothing else."""
    for name in _OUTPUT_FILES:
        outputs.remove(None, name)
    for folder, suffix in OUTPUT_FOLDERS.items():
        for name in outputs.names(folder):
            if name.endswith(suffix) or (name.startswith(".") and name.endswith(".tmp")):
                outputs.remove(folder, name)


def _file_identity(path: str):
    try:
        st = os.stat(path)  # follows links: a link and its target are one file
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _science_exposure_id(path: str) -> str | None:
    """The exposure id read_exposure would give the science file (EXPID, else the file stem), from its header."""
    from astroray.io.fits import walk_hdus
    from astroray.io.limits import open_regular

    try:
        with open_regular(path) as fh:
            cards = walk_hdus(fh, name=path)[0].cards
    except (InvalidInputError, OSError):
        return None  # unreadable: the pipeline actor quarantines it with the reason
    return cards.get("EXPID") or Path(path).stem


def _survey_exposure_id(path: str) -> str | None:
    """The exposure id the survey reader gives a plain FITS file: its name without the FITS suffixes."""
    from astroray.io.survey import _split_fits_name

    return _split_fits_name(Path(path))[0] or None


def _duplicate_pairs(manifest: pd.DataFrame, exposure_id=_science_exposure_id) -> dict[str, str]:
    """pair_id -> reason for pairs that repeat an earlier pair's science exposure, or whose id is not a file name.

    ``exposure_id(path)``: the science exposure id the pairs' reader will give (alert ids start with it).
    """
    from astroray.io.outputs import check_file_name

    reasons: dict[str, str] = {}
    files: dict[tuple, str] = {}
    exposures: dict[str, str] = {}
    for row in manifest.sort_values("pair_id", kind="stable").itertuples():
        pair, ref, sci = str(row.pair_id), str(row.reference_path), str(row.science_path)
        try:
            check_file_name(pair, what="pair id")
        except InvalidInputError as exc:
            reasons[pair] = f"{exc.reason}: its outputs could not be written inside --out"
            continue
        sci_id, ref_id = _file_identity(sci), _file_identity(ref)
        if sci_id is None:
            continue  # missing: quarantined by the actor with its own reason
        if sci_id == ref_id:
            reasons[pair] = "reference and science are the same file"
        elif sci_id in files:
            reasons[pair] = (f"science file {sci} is the same file as pair {files[sci_id]}'s (a link or a copy "
                             "under another name): processed once, there, so alert ids stay unique")
        else:
            exposure = exposure_id(sci)
            if exposure is not None and exposure in exposures:
                reasons[pair] = (f"science exposure id {exposure!r} is also pair {exposures[exposure]}'s: "
                                 "its alert ids would repeat; processed once, there")
            elif exposure is not None:
                exposures[exposure] = pair
        files.setdefault(sci_id, pair)
    return reasons


def run_pairs(manifest: pd.DataFrame, out: Path, cfg: DifferenceJobConfig, *, progress: bool = True,
              survey: bool = False) -> pd.DataFrame:
    """Process every pair of ``manifest`` on Ray; write ``manifest.parquet`` and ``quarantine.parquet`` under ``out``.

    The job's outputs of an earlier run under ``out`` are replaced (see the
    module docstring; ``jobs/difference.py`` refuses a non-empty ``--out``
    without ``--overwrite`` before calling this).  Every write goes through
    :class:`~astroray.io.outputs.OutputFolder`: unique temporaries, no link
    followed, atomic renames.

    Returns the manifest with ``status`` (ok | quarantined | failed), ``reason``,
    ``n_detections``, ``n_alerts``, ``n_streaks`` (satellite streaks found) and ``ms`` per pair.

    ``survey=True``: the paths are plain survey FITS files (:func:`pairs_from_csv`), each pair read, registered
    and given PSFs by :class:`~astroray.ray.survey_pairs.SurveyPairProcessor` (``cfg.survey``); the returned
    manifest also has ``survey_summary`` (JSON: PSF FWHM and ellipticity, registration, flux ratio).
    """
    from tqdm.auto import tqdm

    from astroray.io.outputs import OutputFolder
    from astroray.ray.data import PAIR_STATUS_COLUMNS, PairProcessor
    from astroray.ray.runtime import actor_restarts, ensure_ray, quiet_ray_data_progress

    out = Path(out)
    outputs = OutputFolder(out)
    _clear_outputs(outputs)
    for folder in OUTPUT_FOLDERS:
        outputs.ensure(folder)  # made now, and a planted link in their place refused before any work
    duplicates = _duplicate_pairs(manifest, _survey_exposure_id) if survey else _duplicate_pairs(manifest)
    processor, survey_kwargs, status_columns = PairProcessor, {}, list(PAIR_STATUS_COLUMNS)
    if survey:
        from astroray.ray.survey_pairs import SURVEY_STATUS_COLUMNS, SurveyPairProcessor

        survey_cfg = (cfg.survey or SurveyPairConfig()).model_copy(update={"pipeline": cfg.pipeline})
        processor, status_columns = SurveyPairProcessor, list(SURVEY_STATUS_COLUMNS)
        survey_kwargs = {"survey_config": survey_cfg.model_dump(mode="json")}
    todo = manifest[~manifest["pair_id"].astype(str).isin(duplicates)]
    items = todo[["pair_id", "reference_path", "science_path"]].to_dict("records")
    rows = [dict(pair_id=pair, status="quarantined", reason=reason, n_detections=0, n_alerts=0, n_streaks=0,
                 ms=0.0, stage_ms="{}") for pair, reason in duplicates.items()]
    if items:
        ray = ensure_ray()  # joins the cluster under `ray job submit`
        quiet_ray_data_progress()  # one bar of our own, counting pairs
        with warnings.catch_warnings():
            # max_restarts has no named parameter in Ray 2.60 and its **kwargs route is deprecated for 2.64
            # (Ray is pinned below 2.61: revisit on upgrade)
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ray.data.from_items(items).map_batches(
                processor,
                fn_constructor_kwargs=dict(**survey_kwargs, pipeline_config=cfg.pipeline.model_dump(mode="json"),
                                           output_dir=str(outputs.path), write_difference=cfg.write_difference,
                                           read_limits=cfg.read_limits.model_dump(mode="json"),
                                           realbogus=pinned_scorer_config(cfg.realbogus)),
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(cfg.num_actors, len(items))),
                num_gpus=cfg.num_gpus_per_actor or None,
                max_restarts=actor_restarts(cfg.actor_restarts),
            )
        with tqdm(total=len(items), desc="difference + detect", unit="pair", disable=not progress) as bar:
            for row in ds.iter_rows():
                rows.append(row)
                bar.update(1)
    found = pd.DataFrame(rows, columns=status_columns)
    status = manifest.merge(found, on="pair_id", how="left").sort_values("pair_id", ignore_index=True)
    status["status"] = status["status"].fillna("lost")  # never expected; kept so nothing vanishes silently
    # Only pairs that ended ok keep outputs (a pair that failed half-way may have written a part).
    for pair in status.loc[status["status"] != "ok", "pair_id"].astype(str):
        if _plain_name(pair):  # a pair id that is no file name wrote nothing
            for folder, suffix in OUTPUT_FOLDERS.items():
                outputs.remove(folder, pair + suffix)
    _write_table(outputs, "manifest.parquet", status)
    _write_table(outputs, "quarantine.parquet", status[status["status"] != "ok"])
    outputs.close()
    return status


def pinned_scorer_config(config: StampScorerConfig | None) -> dict | None:
    """``config`` for the actors: the store made absolute and the alias resolved to its version now, so every
    actor loads the same model wherever it runs (and a missing model fails here, before any pair is read).

    Raises
    ------
    ConfigError
        No such model, version or alias in the store (the message names the store and says how to train one).
    """
    if config is None:
        return None
    from astroray.errors import ConfigError
    from astroray.models.scoring import resolve_model
    from astroray.tracking import tracking_uri

    store = tracking_uri(config.tracking_uri)
    try:
        info = resolve_model(config.model_uri, tracking_uri=store)
    except ConfigError as exc:
        raise ConfigError(f"realbogus: {exc} (train one with jobs/train_realbogus.py, or set realbogus: null to "
                          "skip scoring)") from None
    return config.model_copy(update={"model_uri": info["pinned_uri"], "tracking_uri": store}).model_dump(mode="json")


def _plain_name(name: str) -> bool:
    from astroray.io.outputs import check_file_name

    try:
        check_file_name(name)
    except InvalidInputError:
        return False
    return True


def _write_table(outputs, name: str, frame: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    outputs.write(None, name, lambda fh: pq.write_table(table, fh))
