"""Read light-curve files into :class:`~astroray.records.LightCurve` records.

One small reader per layout, chosen by :func:`~astroray.io.sniff.detect_format`:

=========================  ====================================================================
format                     layout
=========================  ====================================================================
``lc-csv``/``-parquet``    one object per file: ``time, mag, magerr, band`` (or ``flux, fluxerr``
                           in nJy); the object id is the file stem (the light-curve test-data
                           layout of the RR Lyrae and BTS samples)
``alerce-detections-*``    ALeRCE/ZTF detections: ``objectId|oid, fid, mjd, magpsf, sigmapsf,
                           isdiffpos`` (difference fluxes, signed by ``isdiffpos``)
``alerce-non-detections-*`` ALeRCE/ZTF upper limits: ``objectId|oid, fid, mjd|jd, diffmaglim``
``snana-csv``/``-parquet`` SNANA photometry: ``SNID, MJD, FLUXCAL, FLUXCALERR, FLT|BAND``
``snana-fits``             SNANA ``*_HEAD.FITS`` + ``*_PHOT.FITS`` pairs
alert formats              alerts with history (e.g. ELAsTiCC), merged per object
``astroray-lc-parquet``    :data:`~astroray.records.LIGHTCURVE_SCHEMA` tables
=========================  ====================================================================

Magnitudes are AB and become nJy fluxes; SNANA's ``FLUXCAL`` (zero point 27.5)
is scaled to nJy.  ``meta['flux_kind']`` says whether a flux is the object's
total flux (``"total"``, from apparent magnitudes) or a difference flux
(``"difference"``, from difference imaging or simulated transient flux).
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from astroray.errors import InvalidInputError, InvalidLightCurveError
from astroray.io._source import Source, open_binary, source_name
from astroray.io._checks import check_points
from astroray.io.fits import open_fits
from astroray.io.limits import MB, current_limits, file_kind, gunzip_bounded, read_file
from astroray.io.sniff import FileFormat, classify_columns, detect_format
from astroray.io.ztf import JD_TO_MJD, is_positive_difference
from astroray.records import LightCurve, mag_to_flux, normalize_band, table_to_lightcurves

__all__ = [
    "read_lightcurve",
    "read_lightcurves",
    "lightcurves_from_alerts",
    "merge_lightcurves",
    "read_labels",
    "attach_labels",
    "read_table",
    "SNANA_ZEROPOINT",
    "SNANA_DETECTION_BIT",
    "IncompleteFileWarning",
]

SNANA_ZEROPOINT = 27.5
"""AB magnitude of SNANA's ``FLUXCAL = 1``."""

SNANA_DETECTION_BIT = 4096
"""``PHOTFLAG`` bit SNANA sets on epochs that passed the detection trigger."""


class IncompleteFileWarning(UserWarning):
    """A file was read, but part of what it refers to is missing (e.g. a cut-short SNANA PHOT file)."""


_FLUXCAL_TO_NJY = 10.0 ** (0.4 * (31.4 - SNANA_ZEROPOINT))
_DETECTION_SNR = 5.0  # for forced photometry that carries no detection flag
_SAME_EPOCH_SECONDS = 1.0


# --------------------------------------------------------------------------- public API


def read_lightcurve(source: Source, *, object_id: str | None = None, name: str | None = None,
                    survey: str = "", label: str | None = None) -> LightCurve:
    """Read one light curve.

    Parameters
    ----------
    source : path, bytes or binary file object
        A light-curve file in any layout :func:`read_lightcurves` reads.
    object_id : str, optional
        Which object to return from a file holding several; for one-object
        files (``time,mag,magerr,band``) it overrides the id taken from the file stem.
    name : str, optional
        What error messages call the input (defaults to the path).
    survey, label : str, optional
        Stored on the light curve (``survey`` only where the file does not say).

    Raises
    ------
    InvalidLightCurveError
        The file is empty, lacks a column, holds no such object, or holds
        several objects and ``object_id`` was not given.
    """
    label_name = source_name(source, name)
    lcs = _read_one(source, label_name, survey=survey, object_id=object_id)
    if object_id is not None:
        lcs = [lc for lc in lcs if lc.object_id == str(object_id)]
        if not lcs:
            raise InvalidLightCurveError(f"no object {object_id!r} in this file", source=label_name)
    if len(lcs) != 1:
        ids = ", ".join(lc.object_id for lc in lcs[:5])
        raise InvalidLightCurveError(f"file holds {len(lcs)} objects ({ids}{' ...' if len(lcs) > 5 else ''}); "
                                     "pass object_id=", source=label_name)
    lc = lcs[0]
    if label is not None:
        lc.label = label
    return lc


def read_lightcurves(source: Source | Sequence[str | os.PathLike], *, name: str | None = None,
                     survey: str = "", file_format: FileFormat | None = None) -> list[LightCurve]:
    """Read every light curve in a file, a list of files or a folder, merged per object.

    A folder is read recursively; files that hold no light curves (labels,
    features, READMEs) are skipped.  Points of one object found in several
    files (ALeRCE detections and non-detections; alerts repeating a history)
    are merged into one light curve with duplicate epochs removed.

    Parameters
    ----------
    source : path, bytes, binary file object, or a sequence of paths
        What to read.
    name : str, optional
        What error messages call a single non-path input.
    survey : str, optional
        Stored on light curves whose file does not say.
    file_format : FileFormat, optional
        For a single file: what :func:`~astroray.io.sniff.detect_format`
        already answered, to skip detecting it again.

    Returns
    -------
    list of LightCurve
        In order of first appearance.

    Raises
    ------
    InvalidLightCurveError
        A file is empty, lacks a required column or holds unusable values.
    """
    formats: dict[Path, FileFormat] = {}
    if isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
    elif isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        paths = sorted(p for p in Path(source).rglob("*") if p.is_file())
        formats = {p: detect_format(p) for p in paths}
        # A PHOT file is read through its HEAD file.
        paths = [p for p in paths if formats[p].kind in ("lightcurves", "alerts")
                 and formats[p].format != "snana-fits-phot"]
    else:
        return merge_lightcurves(_read_one(source, source_name(source, name), survey=survey, fmt=file_format))
    out: list[LightCurve] = []
    for path in paths:
        out.extend(_read_one(path, str(path), survey=survey, fmt=formats.get(path) if formats else None))
    return merge_lightcurves(out)


def lightcurves_from_alerts(alerts: Iterable) -> list[LightCurve]:
    """One light curve per object from alerts: every alert's history plus its candidate.

    Epochs repeated across alerts (each ZTF alert repeats 30 days of history)
    are kept once, a detection winning over a limit or forced point at the
    same epoch and band.
    """
    groups: dict[str, list] = {}
    for alert in alerts:
        groups.setdefault(alert.object_id, []).append(alert)
    out = []
    for object_id, group in groups.items():
        parts = [a.history for a in group]
        parts.append(LightCurve(object_id, [a.mjd for a in group], [a.band for a in group],
                                [a.flux for a in group], [a.flux_err for a in group], [True] * len(group)))
        merged = _merge_points(object_id, parts)
        merged.survey = group[0].survey
        merged.meta = {"flux_kind": "difference", "n_alerts": len(group),
                       "alert_ids": [a.alert_id for a in group], "format": group[0].meta.get("format", "")}
        out.append(merged)
    return out


def merge_lightcurves(lcs: Iterable[LightCurve]) -> list[LightCurve]:
    """Merge light curves that share an ``object_id`` (duplicate epochs kept once)."""
    groups: dict[str, list[LightCurve]] = {}
    for lc in lcs:
        groups.setdefault(lc.object_id, []).append(lc)
    out = []
    for object_id, group in groups.items():
        if len(group) == 1:
            out.append(group[0])
            continue
        merged = _merge_points(object_id, group)
        merged.survey = next((g.survey for g in group if g.survey), "")
        merged.label = next((g.label for g in group if g.label is not None), None)
        merged.meta = {k: v for g in reversed(group) for k, v in g.meta.items()}
        out.append(merged)
    return out


def read_labels(path: str | os.PathLike, *, id_column: str | None = None,
                label_column: str | None = None) -> dict[str, str]:
    """Object id to class label from a label table (CSV, Parquet or CDS machine-readable).

    The id and label columns are found by name (``objectId``, ``ZTFID``,
    ``SNID``, ``Num`` ...; ``type``, ``class``, ``classALeRCE``, ``SNTYPE``,
    ``true_target`` ...) unless given.

    Raises
    ------
    InvalidInputError
        The file has no recognisable id or label column.
    """
    from astroray.io.sniff import ID_COLUMNS, LABEL_COLUMNS

    table = read_table(path)
    lower = {c.lower(): c for c in table.column_names}
    ident = id_column or next((lower[c] for c in ID_COLUMNS if c in lower), None)
    lab = label_column or next((lower[c] for c in LABEL_COLUMNS if c in lower), None)
    for role, col in (("id", ident), ("label", lab)):
        if col is None or col not in table.column_names:
            raise InvalidInputError(f"no {role} column found (columns: {', '.join(table.column_names[:15])})",
                                    source=str(path))
    ids = table.column(ident).to_pylist()
    labels = table.column(lab).to_pylist()
    return {_id_str(i): str(v).strip() for i, v in zip(ids, labels) if i is not None and v is not None}


def attach_labels(lcs: Iterable[LightCurve], labels: Mapping[str, str]) -> list[LightCurve]:
    """Set ``label`` on each light curve whose ``object_id`` is in ``labels``; return them all."""
    lcs = list(lcs)
    for lc in lcs:
        if lc.object_id in labels:
            lc.label = labels[lc.object_id]
    return lcs


def read_table(path: str | os.PathLike) -> pa.Table:
    """Any CSV, Parquet or CDS machine-readable table as an Arrow table.

    The file is read within :class:`~astroray.io.limits.ReadLimits` (a regular
    file no larger than ``max_file_mb``; gzip content no larger than
    ``max_decompressed_mb`` once expanded); a UTF-8 byte-order mark is skipped.

    Raises
    ------
    InvalidInputError
        The file cannot be parsed as a table, or breaks a read limit.
    """
    path = Path(path)
    try:
        data = _table_bytes(path, str(path), InvalidInputError)
        if data.startswith(b"PAR1"):
            return _read_parquet(data, str(path), InvalidInputError)
        if b"Byte-by-byte Description" in data[:4096]:
            from astropy.io import ascii as astropy_ascii

            text = data.decode("utf-8", "replace").removeprefix("\ufeff")
            return pa.Table.from_pandas(astropy_ascii.read(text, format="cds").to_pandas(), preserve_index=False)
        return _read_csv(data, str(path))
    except InvalidInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure means an unreadable table
        raise InvalidInputError(f"unreadable table ({type(exc).__name__}: {exc})", source=str(path)) from None


def _table_bytes(src, label: str, error) -> bytes:
    """A table file's bytes (read within the limits), gunzipped (within the limits) when gzip-compressed."""
    limits = current_limits()
    data = read_file(src, name=label, error=error) if isinstance(src, Path) else bytes(src)
    if data[:2] == b"\x1f\x8b":
        data = gunzip_bounded(data, name=label, limit=limits.max_decompressed_bytes, what="gzip-compressed table",
                              error=error)
    return data


def _read_parquet(data: bytes, label: str, error) -> pa.Table:
    """A Parquet table from bytes, refusing row groups whose stated expansion passes ``max_decompressed_mb``."""
    import pyarrow.parquet as pq

    limits = current_limits()
    try:
        pfile = pq.ParquetFile(pa.BufferReader(data))
        meta = pfile.metadata
        for i in range(meta.num_row_groups):
            size = meta.row_group(i).total_byte_size
            if size > limits.max_decompressed_bytes:
                raise error(f"Parquet row group {i} expands to {size / MB:.0f} MB, above the limit of "
                            f"{limits.max_decompressed_mb:g} MB (ReadLimits.max_decompressed_mb)", source=label)
        return pfile.read()
    except InvalidInputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise error(f"corrupt Parquet ({type(exc).__name__}: {exc})", source=label) from None


# --------------------------------------------------------------------------- dispatch


def _read_one(source: Source, label: str, *, survey: str = "", object_id: str | None = None,
              fmt: FileFormat | None = None) -> list[LightCurve]:
    """Every light curve in one input; ``fmt`` skips detection when the caller already knows it."""
    if fmt is not None and isinstance(source, (str, os.PathLike)) and Path(source).is_file() \
            and Path(source).stat().st_size > 0:
        path, data = Path(source), None
    else:
        fmt, path, data = _format_of(source, label)
    reader = _READERS.get(_base_format(fmt.format))
    if fmt.kind == "alerts":
        reader = _read_alert_file
    if reader is None:
        why = f" ({fmt.detail})" if fmt.detail else ""
        raise InvalidLightCurveError(
            f"not a light-curve file: detected {fmt.kind}/{fmt.format}{why}; light-curve tables need "
            "time,mag,magerr,band (or flux,fluxerr), ALeRCE objectId,fid,mjd,magpsf,sigmapsf or SNANA "
            "SNID,MJD,FLUXCAL,FLUXCALERR,FLT columns", source=label)
    try:
        lcs = reader(path if path is not None else data, label, object_id=object_id)
    except InvalidLightCurveError:
        raise
    except InvalidInputError as exc:  # e.g. LightCurve's own checks, which name only the object
        if exc.source and exc.source.startswith(label):  # already says where: keep it, re-typed
            raise InvalidLightCurveError(exc.reason, source=exc.source) from None
        raise InvalidLightCurveError(str(exc), source=label) from None
    for lc in lcs:
        lc.survey = lc.survey or survey
        lc.meta.setdefault("format", fmt.format)
    return lcs


def _format_of(source: Source, label: str) -> tuple[FileFormat, Path | None, bytes | None]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidLightCurveError("no such file" if not path.exists() else
                                         f"not a regular file ({file_kind(path.stat().st_mode)})", source=label)
        if path.stat().st_size == 0:
            raise InvalidLightCurveError("empty file: no light-curve data", source=label)
        return detect_format(path), path, None
    with open_binary(source, label) as stream:
        data = stream.read()
    if not data:
        raise InvalidLightCurveError("empty input: no light-curve data", source=label)
    data = _table_bytes(data, label, InvalidLightCurveError)  # gzip content expanded within the limits
    # In-memory input: write nothing to disk, detect from the bytes.
    if data.startswith(b"Obj\x01"):
        return FileFormat("alerts", "avro"), None, data
    if data.startswith(b"PAR1"):
        import pyarrow.parquet as pq

        try:
            names = pq.ParquetFile(pa.BufferReader(data)).schema_arrow.names
        except Exception as exc:  # noqa: BLE001
            raise InvalidLightCurveError(f"corrupt Parquet ({type(exc).__name__}: {exc})", source=label) from None
        if "diaSource" in names or "candidate" in names:
            return FileFormat("alerts", "parquet"), None, data
        container = "parquet"
    else:
        first = data.split(b"\n", 1)[0].decode("utf-8", "replace").removeprefix("\ufeff")
        names = [c.strip().strip('"') for c in first.split(",")]
        container = "csv"

    def magpsf_has_values() -> bool:
        col = next(n for n in names if n.lower() == "magpsf")
        table = _load_table(data, label)
        return table.column(col).null_count < table.num_rows

    kind, base, detail = classify_columns(names, label, magpsf_has_values)
    return FileFormat(kind, f"{base}-{container}", detail), None, data


def _base_format(fmt: str) -> str:
    return re.sub(r"-(csv|csv\.gz|parquet)$", "", fmt)


def _load_table(src, label: str) -> pa.Table:
    """CSV or Parquet (path or bytes; gzip-compressed too) as an Arrow table, every read bounded."""
    data = _table_bytes(src, label, InvalidLightCurveError)
    if data.startswith(b"PAR1"):
        return _read_parquet(data, label, InvalidLightCurveError)
    return _read_csv(data, label)


def _read_csv(data: bytes, label: str) -> pa.Table:
    import pyarrow.csv as pacsv

    try:
        # pyarrow skips a leading UTF-8 byte-order mark itself
        table = pacsv.read_csv(pa.BufferReader(data), convert_options=pacsv.ConvertOptions(
            null_values=["", "null", "NULL", "NaN", "nan", "None"], strings_can_be_null=True))
    except pa.ArrowInvalid as exc:
        msg = str(exc)
        if "Empty CSV file" in msg:
            raise InvalidLightCurveError("empty file: no header and no rows", source=label) from None
        raise InvalidLightCurveError(f"unparseable CSV ({msg.splitlines()[0]})", source=label) from None
    # A leading unnamed column is a pandas index written out; drop it.
    if table.column_names and table.column_names[0] in ("", "Unnamed: 0", "index"):
        table = table.drop_columns([table.column_names[0]])
    return table


def _columns(table: pa.Table, required: Sequence[str], label: str, layout: str) -> dict[str, str]:
    """Map lower-case names to the table's own; raise naming every missing column."""
    lower = {c.lower(): c for c in table.column_names}
    missing = [c for c in required if c not in lower]
    if missing:
        raise InvalidLightCurveError(
            f"missing column(s) {', '.join(missing)} (a {layout} table needs {', '.join(required)}; "
            f"found {', '.join(table.column_names[:12])})", source=label)
    if table.num_rows == 0:
        raise InvalidLightCurveError("no data rows (header only)", source=label)
    return lower


def _numeric(table: pa.Table, column: str, label: str) -> np.ndarray:
    col = table.column(column)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_null(col.type)):
        raise InvalidLightCurveError(f"column {column} is not numeric (type {col.type})", source=label)
    return col.to_numpy(zero_copy_only=False).astype(np.float64)


def _refuse_impossible(label: str, columns: dict[str, np.ndarray], *, errors: Sequence[str] = ()) -> None:
    """Infinite values anywhere, negative values in error columns: refused, naming the column and first row.

    NaN (an empty cell) is 'missing', not impossible; the readers drop or keep such rows as they document.
    """
    for name, values in columns.items():
        bad = np.isinf(values)
        what = "infinite"
        if name in errors:
            bad |= values < 0
            what = "negative or infinite"
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise InvalidLightCurveError(
                f"column {name} has {int(bad.sum())} {what} value(s) (first in data row {first + 1}: "
                f"{values[first]:g}); {'an error is never negative' if name in errors else 'not a measurement'}",
                source=label)


def _bands(values, label: str) -> np.ndarray:
    """Normalise band names/ids, mapping each distinct value once."""
    arr = np.asarray(values, dtype=object)
    if arr.size and any(v is None for v in arr):
        raise InvalidLightCurveError("band column has missing values", source=label)
    keys = np.array([str(v) for v in arr]) if arr.size else np.array([], dtype=str)
    uniq, inverse = np.unique(keys, return_inverse=True)
    mapped = []
    for u in uniq:
        try:
            mapped.append(normalize_band(str(u)))
        except InvalidInputError as exc:
            raise InvalidLightCurveError(exc.reason, source=label) from None
    return np.asarray(mapped, dtype=str)[inverse] if len(uniq) else np.array([], dtype=str)


def _ids(values) -> np.ndarray:
    return np.array([_id_str(v) for v in values], dtype=object)


def _id_str(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _split_by_object(ids: np.ndarray, label: str, **columns) -> Iterable[tuple[str, dict[str, np.ndarray]]]:
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    bounds = np.flatnonzero(sorted_ids[1:] != sorted_ids[:-1]) + 1
    first_seen = {}
    for i, v in enumerate(ids):
        first_seen.setdefault(v, i)
    chunks = []
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(ids)]):
        idx = order[start:stop]
        chunks.append((first_seen[sorted_ids[start]], sorted_ids[start], {k: v[idx] for k, v in columns.items()}))
    chunks.sort(key=lambda c: c[0])
    return [(oid, cols) for _, oid, cols in chunks]


# --------------------------------------------------------------------------- readers


def _read_lc_table(src, label: str, *, object_id: str | None = None) -> list[LightCurve]:
    table = _load_table(src, label)
    lower = {c.lower(): c for c in table.column_names}
    use_mag = "mag" in lower
    need = ("time", "mag", "magerr", "band") if use_mag or "flux" not in lower else ("time", "flux", "fluxerr", "band")
    cols = _columns(table, need, label, "time,mag,magerr,band")
    mjd = _numeric(table, cols["time"], label)
    band = _bands(table.column(cols["band"]).to_pylist(), label)
    if use_mag:
        mag, magerr = _numeric(table, cols["mag"], label), _numeric(table, cols["magerr"], label)
        _refuse_impossible(label, {cols["time"]: mjd, cols["mag"]: mag, cols["magerr"]: magerr},
                           errors=(cols["magerr"],))
        with np.errstate(over="ignore"):
            flux, err = mag_to_flux(mag, magerr)
    else:
        flux, err = _numeric(table, cols["flux"], label), _numeric(table, cols["fluxerr"], label)
        _refuse_impossible(label, {cols["time"]: mjd, cols["flux"]: flux, cols["fluxerr"]: err},
                           errors=(cols["fluxerr"],))
    # Missing values (empty or NaN cells) drop their row, counted in meta['n_dropped']; impossible ones were refused.
    keep = np.isfinite(mjd) & ~np.isnan(flux) & ~np.isnan(err)
    if not keep.any():
        raise InvalidLightCurveError("no row has finite time, magnitude and error", source=label)
    check_points(flux[keep], err[keep], np.ones(int(keep.sum()), bool), what="the light curve", source=label,
                 error=InvalidLightCurveError)
    meta = {"flux_kind": "total" if use_mag else "flux", "n_dropped": int((~keep).sum())}
    id_col = next((lower[c] for c in ("object_id", "objectid", "oid", "id") if c in lower), None)
    if id_col is None:
        stem = object_id or (Path(label).name.split(".")[0] if label else "object")
        return [LightCurve(stem, mjd[keep], band[keep], flux[keep], err[keep], np.ones(keep.sum(), bool),
                           meta=meta)]
    ids = _ids(table.column(id_col).to_pylist())[keep]
    return [LightCurve(oid, c["mjd"], c["band"], c["flux"], c["err"], np.ones(len(c["mjd"]), bool), meta=dict(meta))
            for oid, c in _split_by_object(ids, label, mjd=mjd[keep], band=band[keep], flux=flux[keep],
                                           err=err[keep])]


def _alerce_common(table: pa.Table, label: str, need: Sequence[str], layout: str):
    lower = {c.lower(): c for c in table.column_names}
    id_col = lower.get("objectid") or lower.get("oid")
    time_col = lower.get("mjd") or lower.get("jd")
    required = [c for c in need]
    if id_col is None:
        required.insert(0, "objectid")
    if time_col is None:
        required.insert(1, "mjd")
    cols = _columns(table, required, label, layout)
    mjd = _numeric(table, time_col, label)
    if time_col.lower() == "jd":
        mjd = mjd - JD_TO_MJD
    ids = _ids(table.column(id_col).to_pylist())
    band = _bands(table.column(cols["fid"]).to_pylist(), label)
    if not np.all(np.isfinite(mjd)):
        raise InvalidLightCurveError(f"column {time_col} has {int((~np.isfinite(mjd)).sum())} missing values",
                                     source=label)
    return cols, ids, mjd, band


def _read_alerce_detections(src, label: str, **_) -> list[LightCurve]:
    table = _load_table(src, label)
    cols, ids, mjd, band = _alerce_common(table, label, ("fid", "magpsf", "sigmapsf", "isdiffpos"),
                                          "ALeRCE detections")
    mag, sig = _numeric(table, cols["magpsf"], label), _numeric(table, cols["sigmapsf"], label)
    _refuse_impossible(label, {cols["magpsf"]: mag, cols["sigmapsf"]: sig}, errors=(cols["sigmapsf"],))
    with np.errstate(over="ignore"):
        flux, err = mag_to_flux(mag, sig)
    sign = np.array([1.0 if is_positive_difference(v) else -1.0 for v in table.column(cols["isdiffpos"]).to_pylist()])
    flux = flux * sign
    bad = np.isnan(flux) | np.isnan(err)
    if bad.any():
        raise InvalidLightCurveError(f"{int(bad.sum())} detection(s) lack magpsf or sigmapsf", source=label)
    check_points(flux, err, np.ones(len(flux), bool), what="the detections", source=label,
                 error=InvalidLightCurveError)
    return [LightCurve(oid, c["mjd"], c["band"], c["flux"], c["err"], np.ones(len(c["mjd"]), bool), survey="ztf",
                       meta={"flux_kind": "difference"})
            for oid, c in _split_by_object(ids, label, mjd=mjd, band=band, flux=flux, err=err)]


def _read_alerce_non_detections(src, label: str, **_) -> list[LightCurve]:
    table = _load_table(src, label)
    cols, ids, mjd, band = _alerce_common(table, label, ("fid", "diffmaglim"), "ALeRCE non-detections")
    limit = _numeric(table, cols["diffmaglim"], label)
    _refuse_impossible(label, {cols["diffmaglim"]: limit})
    with np.errstate(over="ignore"):
        err = mag_to_flux(limit) / 5.0
    check_points(np.full(len(err), np.nan), err, np.zeros(len(err), bool), what="the upper limits", source=label,
                 error=InvalidLightCurveError)
    flux = np.full(len(mjd), np.nan)
    return [LightCurve(oid, c["mjd"], c["band"], c["flux"], c["err"], np.zeros(len(c["mjd"]), bool), survey="ztf",
                       meta={"flux_kind": "difference"})
            for oid, c in _split_by_object(ids, label, mjd=mjd, band=band, flux=flux, err=err)]


def _snana_points(table: pa.Table, label: str):
    lower = {c.lower(): c for c in table.column_names}
    band_col = lower.get("flt") or lower.get("band") or lower.get("filter")
    required = ["mjd", "fluxcal", "fluxcalerr"] + ([] if band_col else ["flt"])
    cols = _columns(table, required, label, "SNANA photometry")
    mjd = _numeric(table, cols["mjd"], label)
    flux = _numeric(table, cols["fluxcal"], label) * _FLUXCAL_TO_NJY
    err = _numeric(table, cols["fluxcalerr"], label) * _FLUXCAL_TO_NJY
    bands = [str(b).strip() for b in table.column(band_col).to_pylist()]
    if "photflag" in lower:
        flags = table.column(lower["photflag"]).to_numpy(zero_copy_only=False).astype(np.int64)
        detected = (flags & SNANA_DETECTION_BIT) != 0
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            detected = np.abs(flux / err) >= _DETECTION_SNR
    # SNANA marks season breaks and event ends with MJD = -777 rows (band "-"); they are not epochs.
    marker = (mjd < 0) | np.array([b in ("-", "") for b in bands], dtype=bool)
    epochs = ~marker
    _refuse_impossible(label, {cols["mjd"]: mjd[epochs], cols["fluxcal"]: flux[epochs],
                               cols["fluxcalerr"]: err[epochs]}, errors=(cols["fluxcalerr"],))
    return mjd, bands, flux, err, detected, "photflag" in lower, marker


def _read_snana_table(src, label: str, **_) -> list[LightCurve]:
    table = _load_table(src, label)
    _columns(table, ["snid"], label, "SNANA photometry")
    mjd, bands, flux, err, detected, flagged, marker = _snana_points(table, label)
    keep = ~marker
    ids = _ids(table.column({c.lower(): c for c in table.column_names}["snid"]).to_pylist())[keep]
    mjd, flux, err, detected = mjd[keep], flux[keep], err[keep], detected[keep]
    band = _bands([b for b, k in zip(bands, keep) if k], label)
    meta = {"flux_kind": "difference", "detected_from": "PHOTFLAG" if flagged else f"snr>={_DETECTION_SNR:g}"}
    return [LightCurve(oid, c["mjd"], c["band"], c["flux"], c["err"], c["det"], meta=dict(meta))
            for oid, c in _split_by_object(ids, label, mjd=mjd, band=band, flux=flux, err=err, det=detected)]


def _read_snana_fits(src, label: str, **_) -> list[LightCurve]:
    """A SNANA HEAD/PHOT pair, given either file."""

    if not isinstance(src, Path):
        raise InvalidLightCurveError("SNANA FITS needs its HEAD and PHOT files on disk; pass a path", source=label)
    name = src.name
    if re.search(r"_PHOT\.FITS(\.GZ)?$", name, re.I):
        head_path, phot_path = src.with_name(re.sub(r"_PHOT", "_HEAD", name, flags=re.I)), src
    else:
        head_path, phot_path = src, src.with_name(re.sub(r"_HEAD", "_PHOT", name, flags=re.I))
    for p in (head_path, phot_path):
        if not p.is_file():
            raise InvalidLightCurveError(f"SNANA pair incomplete: {p.name} not found beside it", source=label)
    try:
        # open_fits checks each file's structure from its bytes (and bounds size and gzip) before astropy reads it
        (hh, _), (ph, _) = open_fits(head_path), open_fits(phot_path)
        with hh, ph:
            head = pa.Table.from_pandas(_fits_table_frame(hh[1].data), preserve_index=False)
            phot = pa.Table.from_pandas(_fits_table_frame(ph[1].data), preserve_index=False)
    except InvalidInputError as exc:
        raise InvalidLightCurveError(f"unreadable SNANA FITS: {exc}", source=label) from None
    except (OSError, IndexError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InvalidLightCurveError(f"unreadable SNANA FITS ({type(exc).__name__}: {exc})", source=label) from None
    hcols = _columns(head, ["snid", "ptrobs_min", "ptrobs_max"], str(head_path), "SNANA HEAD")
    mjd, bands, flux, err, detected, flagged, marker = _snana_points(phot, str(phot_path))
    snid = _ids(head.column(hcols["snid"]).to_pylist())
    lo = head.column(hcols["ptrobs_min"]).to_numpy().astype(np.int64)
    hi = head.column(hcols["ptrobs_max"]).to_numpy().astype(np.int64)
    sntype = head.column(hcols["sntype"]).to_pylist() if "sntype" in hcols else [None] * len(snid)
    meta_cols = [hcols[c] for c in ("redshift_final", "hostgal_photoz", "hostgal_specz", "mwebv", "ra", "decl")
                 if c in hcols]
    meta_vals = {c: head.column(c).to_pylist() for c in meta_cols}
    out = []
    n_phot = len(mjd)
    # PTROBS are 1-based inclusive row pointers into PHOT.
    if np.any((lo < 1) | (hi < lo)):
        raise InvalidLightCurveError("HEAD has PTROBS_MIN < 1 or PTROBS_MAX < PTROBS_MIN", source=str(head_path))
    beyond = hi > n_phot
    if beyond.all():
        raise InvalidLightCurveError(f"no HEAD entry points inside PHOT's {n_phot} rows", source=label)
    if beyond.any():
        warnings.warn(IncompleteFileWarning(
            f"{phot_path.name} has {n_phot} rows; {int(beyond.sum())} of {len(snid)} HEAD entries point beyond "
            "them and were skipped (PHOT file cut short)"), stacklevel=3)
    for i, oid in enumerate(snid):
        if beyond[i]:
            continue
        rows = np.arange(lo[i] - 1, hi[i])
        sl = rows[~marker[rows]]
        band = _bands([bands[j] for j in sl], str(phot_path))
        meta = {"flux_kind": "difference", "sntype": sntype[i],
                "detected_from": "PHOTFLAG" if flagged else f"snr>={_DETECTION_SNR:g}"}
        meta.update({c.lower(): meta_vals[c][i] for c in meta_cols})
        out.append(LightCurve(oid, mjd[sl], band, flux[sl], err[sl], detected[sl],
                              label=None if sntype[i] is None else str(sntype[i]), meta=meta))
    return out


def _fits_table_frame(data):
    import pandas as pd

    frame = {}
    for name in data.columns.names:
        col = np.asarray(data[name])
        if col.dtype.kind == "S":
            col = np.char.decode(col, "ascii").astype(object)
        elif col.dtype.byteorder == ">":
            col = col.astype(col.dtype.newbyteorder("="))
        if col.ndim == 1:
            frame[name] = col
    return pd.DataFrame(frame)


def _read_astroray_lc(src, label: str, **_) -> list[LightCurve]:
    return table_to_lightcurves(_load_table(src, label))


def _read_alert_file(src, label: str, **_) -> list[LightCurve]:
    from astroray.io.alerts import iter_alerts

    lcs = lightcurves_from_alerts(iter_alerts(src, name=label, cutouts=False))
    # Hive-partitioned folders (classId=111/) carry the class in the path.
    match = re.search(r"(?:^|[/\\])classId=([^/\\]+)", label)
    if match:
        for lc in lcs:
            lc.label = match.group(1)
    return lcs


_READERS = {
    "lc": _read_lc_table,
    "alerce-detections": _read_alerce_detections,
    "alerce-non-detections": _read_alerce_non_detections,
    "snana": _read_snana_table,
    "snana-fits": _read_snana_fits,
    "snana-fits-phot": _read_snana_fits,
    "astroray-lc": _read_astroray_lc,
}


# --------------------------------------------------------------------------- merging


def _merge_points(object_id: str, parts: Sequence[LightCurve]) -> LightCurve:
    mjd = np.concatenate([p.mjd for p in parts]) if parts else np.array([])
    band = np.concatenate([p.band.astype(str) for p in parts]) if parts else np.array([], dtype=str)
    flux = np.concatenate([p.flux for p in parts]) if parts else np.array([])
    err = np.concatenate([p.flux_err for p in parts]) if parts else np.array([])
    det = np.concatenate([p.detected for p in parts]) if parts else np.array([], dtype=bool)
    if mjd.size:
        epoch = np.round(mjd * 86400.0 / _SAME_EPOCH_SECONDS).astype(np.int64)
        # Best record first within an epoch: detections, then finite fluxes.
        order = np.lexsort((~np.isfinite(flux), ~det, band, epoch))
        e, b = epoch[order], band[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (e[1:] != e[:-1]) | (b[1:] != b[:-1])
        keep = order[first]
        mjd, band, flux, err, det = mjd[keep], band[keep], flux[keep], err[keep], det[keep]
    return LightCurve(object_id, mjd, band, flux, err, det)
