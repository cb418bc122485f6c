"""Sniff what a file holds from its content (and, for tables, its columns): its format, not its name.

:func:`detect_format` answers with a :class:`FileFormat`: a *kind* (alerts,
light curves, labels, features, metadata, schema, image, documentation, text,
unknown) and a *format* naming the layout (``ztf-avro-3.3``, ``lsst-avro-v11``,
``fink-parquet``, ``rubin-parquet``, ``lc-csv``, ``snana-fits``, ...).  The
readers dispatch on it; :func:`astroray.io.check.check_path` reports it.

Content decides, not the file name: the magic bytes pick the container (Avro,
Parquet, FITS, JSON), then the record layout or the table columns pick the
format.  Names only break ties the content cannot (a ``README``, a table
whose file name says ``features``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

__all__ = ["FileFormat", "KINDS", "DATA_SUFFIXES", "detect_format", "sniff_container", "classify_columns"]

KINDS = ("alerts", "lightcurves", "labels", "features", "metadata", "schema", "image", "documentation",
         "text", "unknown")
"""Every kind :func:`detect_format` may answer."""

AVRO_MAGIC = b"Obj\x01"
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
FITS_MAGIC = b"SIMPLE  ="

DATA_SUFFIXES = frozenset({".avro", ".parquet", ".pq", ".fits", ".fit", ".fts", ".fz", ".gz", ".csv", ".json",
                           ".jsonl", ".avsc"})
"""Suffixes that promise data: such a file that cannot be recognised is an error, not 'unknown'."""

_DOC_SUFFIXES = {".md", ".rst"}
# Suffixes naming a binary container: content that is not that container is an error, not text.
_CONTAINER_SUFFIXES = {".avro": "avro", ".parquet": "parquet", ".pq": "parquet", ".fits": "fits", ".fit": "fits",
                       ".fts": "fits", ".fz": "fits", ".gz": "gzip"}
_TEXT_SUFFIXES = {".txt", ".html", ".htm", ".xml", ".tex", ".dat", ".cat", ".param", ".conv", ".sex", ".jsonl"}
_HEAD_BYTES = 65536

# Table columns (compared lower-case) that name what an object is.
LABEL_COLUMNS = ("label", "class", "classalerce", "type", "sntype", "true_target", "target", "gentype",
                 "classid", "class_name", "spec_class", "sn_type", "true_class")
ID_COLUMNS = ("object_id", "objectid", "oid", "ztfid", "snid", "name", "num", "id", "diaobjectid", "iauid")


@dataclass(frozen=True)
class FileFormat:
    """What one file holds.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    format : str
        The layout, e.g. ``"ztf-avro-3.3"``, ``"lsst-avro-v11"``, ``"fink-parquet"``,
        ``"rubin-parquet"``, ``"elasticc-parquet"``, ``"lc-csv"``, ``"snana-fits"``,
        ``"alerce-detections-csv"``, ``"labels-csv"``, ``"avro-schema"``, ``"unknown"``.
    detail : str
        A short note: the columns that decided, or why the file is not understood.
    """

    kind: str
    format: str
    detail: str = ""

    @property
    def container(self) -> str:
        """The storage container: avro, parquet, csv, fits, json, text, or unknown."""
        for c in ("avro", "parquet", "csv", "fits", "json"):
            if c in self.format:
                return c
        return "text" if self.kind in ("documentation", "text") else "unknown"


def sniff_container(head: bytes) -> str | None:
    """The container format of a file from its first bytes.

    Returns ``"avro"``, ``"parquet"``, ``"fits"``, ``"gzip"``, ``"json"`` or
    ``None`` when none of these match.
    """
    if head.startswith(AVRO_MAGIC):
        return "avro"
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(FITS_MAGIC):
        return "fits"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"{", b"["):
        return "json"
    return None


def detect_format(path: str | os.PathLike) -> FileFormat:
    """Detect what the file at ``path`` holds.

    Never raises for unreadable content: such a file comes back as kind
    ``"unknown"`` with the reason in ``detail``.

    Parameters
    ----------
    path : path-like
        A file.

    Returns
    -------
    FileFormat
    """
    from astroray.errors import InvalidInputError
    from astroray.io.limits import open_regular

    path = Path(path)
    try:
        # never a blocking open: a named pipe or a device is refused, not read
        with open_regular(path, missing="cannot open: no such file") as fh:
            head = fh.read(_HEAD_BYTES)
            return _detect(path, head, fh)
    except InvalidInputError as exc:
        return FileFormat("unknown", "unknown", exc.reason)
    except OSError as exc:
        return FileFormat("unknown", "unknown", f"cannot open: {exc.strerror or exc}")


def _detect(path: Path, head: bytes, fh: IO[bytes]) -> FileFormat:
    container = sniff_container(head)
    if container == "avro":
        return _detect_avro(fh)
    if container == "parquet":
        return _detect_parquet(fh)
    if container == "fits":
        return _detect_fits(fh, path)
    if container == "json":
        return _detect_json(path)
    suffix = path.suffix.lower()
    stem = path.name.lower()
    if container == "gzip":
        return _detect_gzip(path)
    if not head:
        return FileFormat("unknown", "empty", "empty file")
    promised = _CONTAINER_SUFFIXES.get(suffix)
    if promised is not None:  # a name that promises a binary container whose content is something else
        return FileFormat("unknown", promised, f"named {suffix} but the content is not {promised.upper()} "
                                               f"({len(head)}{'+' if len(head) == _HEAD_BYTES else ''} bytes "
                                               f"starting {head[:12]!r})")
    text = _as_text(head)
    if text is None:
        return FileFormat("unknown", "unknown", f"binary content starting {head[:8]!r}")
    if suffix in _DOC_SUFFIXES or stem.startswith(("readme", "license", "changelog")):
        return FileFormat("documentation", "markdown" if suffix == ".md" else "text")
    if _looks_like_cds_table(text):
        return FileFormat("labels" if re.search(r"\bType\b", text[:4000]) else "metadata", "cds-mrt",
                          "CDS machine-readable table")
    if suffix == ".csv" or (suffix not in _TEXT_SUFFIXES and _first_line(text).count(",") >= 1):
        return _detect_csv(path, text)
    return FileFormat("text", suffix.lstrip(".") or "text")


def _detect_gzip(path: Path) -> FileFormat:
    """Gzipped FITS and CSV are read (expanded within ReadLimits.max_decompressed_mb); other content is not."""
    import gzip

    from astroray.errors import InvalidInputError
    from astroray.io.limits import gunzip_bounded, open_regular, read_file

    try:
        with open_regular(path) as raw, gzip.open(raw, "rb") as fh:
            inner = fh.read(_HEAD_BYTES)  # the head only: bounded whatever the stream expands to
    except (OSError, EOFError, InvalidInputError) as exc:
        return FileFormat("unknown", "gzip", f"corrupt gzip stream ({type(exc).__name__})")
    container = sniff_container(inner)
    if container == "fits":
        try:
            data = gunzip_bounded(read_file(path), name=str(path), what="gzip-compressed FITS")
        except InvalidInputError as exc:
            return FileFormat("unknown", "fits", exc.reason)
        return _detect_fits(data, path)
    text = _as_text(inner) if container is None else None
    if text is not None and path.name.lower().endswith(".csv.gz"):
        found = _detect_csv(path, text)
        return FileFormat(found.kind, found.format + ".gz", found.detail)
    return FileFormat("unknown", "gzip", f"gzip-compressed {container or 'content'} that astroray does not read")


def _as_text(head: bytes) -> str | None:
    if b"\x00" in head[:4096]:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4:  # a multi-byte character cut at the end of the sample
            return head[: exc.start].decode("utf-8")
        return None


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line
    return ""


def _looks_like_cds_table(text: str) -> bool:
    return "Byte-by-byte Description" in text[:4000]


# --------------------------------------------------------------------------- containers


def _detect_avro(fh: IO[bytes]) -> FileFormat:
    import fastavro

    fh.seek(0)
    try:
        schema = fastavro.reader(fh).writer_schema  # the header only: no record is decoded here
    except Exception as exc:  # noqa: BLE001 - a corrupt header raises many types (RecursionError too)
        return FileFormat("unknown", "avro", f"corrupt Avro header ({type(exc).__name__})")
    fields = {f.get("name") for f in schema.get("fields", [])} if isinstance(schema, dict) else set()
    name = str(schema.get("name", "")) if isinstance(schema, dict) else ""
    if "candidate" in fields:
        version = schema.get("version")
        return FileFormat("alerts", f"ztf-avro-{version}" if version else "ztf-avro", name)
    if "diaSource" in fields:
        parts = name.split(".")
        if len(parts) >= 2 and parts[0] == "lsst" and parts[1].startswith("v"):
            return FileFormat("alerts", f"lsst-avro-{parts[1].split('_')[0]}", name)
        return FileFormat("alerts", "lsst-avro", name)
    return FileFormat("metadata", "avro", f"Avro records of schema {name or '?'}")


def _detect_parquet(fh: IO[bytes]) -> FileFormat:
    import pyarrow.parquet as pq

    path = Path(fh.name)
    fh.seek(0)
    try:
        pfile = pq.ParquetFile(fh)
        schema = pfile.schema_arrow
    except Exception as exc:  # noqa: BLE001
        return FileFormat("unknown", "parquet", f"corrupt Parquet footer ({type(exc).__name__})")
    names = schema.names
    if "diaSource" in names:
        dia = schema.field("diaSource").type
        sub = {dia.field(i).name for i in range(dia.num_fields)} if hasattr(dia, "num_fields") else set()
        fmt = "elasticc-parquet" if "midPointTai" in sub else "rubin-parquet"
        return FileFormat("alerts", fmt, "diaSource")
    if "candidate" in names or "objectId" in names and "prv_candidates" in names:
        return FileFormat("alerts", "fink-parquet", "candidate")
    if "alert_id" in names and "hist_mjd" in names:
        return FileFormat("alerts", "astroray-parquet", "ALERT_SCHEMA")
    if {"object_id", "mjd", "flux", "detected"} <= set(names):
        return FileFormat("lightcurves", "astroray-lc-parquet", "LIGHTCURVE_SCHEMA")

    def magpsf_has_values() -> bool:
        col = next(n for n in names if n.lower() == "magpsf")
        return pfile.read(columns=[col]).column(0).null_count < pfile.metadata.num_rows

    kind, fmt, detail = classify_columns(names, path.name, magpsf_has_values)
    return FileFormat(kind, f"{fmt}-parquet", detail)


def _detect_csv(path: Path, text: str) -> FileFormat:
    header = _first_line(text.removeprefix("\ufeff"))  # a UTF-8 byte-order mark is not part of the first name
    names = [c.strip().strip('"') for c in header.split(",")]

    def magpsf_has_values() -> bool:
        import pandas as pd

        col = next(n for n in names if n.lower() == "magpsf")
        sample = pd.read_csv(path, usecols=[col], nrows=200)
        return bool(sample[col].notna().any())

    kind, fmt, detail = classify_columns(names, path.name, magpsf_has_values)
    return FileFormat(kind, f"{fmt}-csv", detail)


def _detect_fits(data, path: Path) -> FileFormat:
    """What a FITS file holds, from its header cards alone (walked from the bytes; no data is read)."""
    from astroray.errors import InvalidInputError
    from astroray.io.fits import walk_hdus

    try:
        infos = walk_hdus(data, name=str(path))
    except InvalidInputError as exc:
        return FileFormat("unknown", "fits", exc.reason)
    if {"IMAGE", "VARIANCE", "PSF"} <= {info.extname for info in infos}:  # astroray.io.fits.write_exposure's layout
        return FileFormat("image", "exposure-fits", "IMAGE, VARIANCE, MASK, PSF HDUs")
    for info in infos:
        if info.is_compressed_image:  # tile-compressed image (.fz), stored as a table
            return FileFormat("image", "fits-image", "tile-compressed")
        if info.cards.get("XTENSION", "").strip().upper() in ("BINTABLE", "TABLE"):
            n = int(info.cards.get("TFIELDS", "0") or 0) if str(info.cards.get("TFIELDS", "0")).isdigit() else 0
            cols = {info.cards.get(f"TTYPE{i}", "").strip().upper() for i in range(1, n + 1)}
            if {"SNID", "PTROBS_MIN", "PTROBS_MAX"} <= cols:
                return FileFormat("lightcurves", "snana-fits", "SNANA HEAD table (PHOT file beside it)")
            if {"MJD", "FLUXCAL", "FLUXCALERR"} <= cols:
                return FileFormat("lightcurves", "snana-fits-phot", "SNANA PHOT table")
            return FileFormat("metadata", "fits-table", "FITS binary table")
        if len(info.axes) >= 2:
            return FileFormat("image", "fits-image", f"{info.axes[0]}x{info.axes[1]}")
    return FileFormat("unknown", "fits", "FITS file without a table or image")


def _detect_json(path: Path) -> FileFormat:
    from astroray.errors import InvalidInputError
    from astroray.io.limits import parse_json, read_file

    try:
        data = read_file(path)
    except InvalidInputError as exc:
        return FileFormat("unknown", "json", exc.reason)
    try:
        doc = parse_json(data, name=str(path))
    except InvalidInputError as exc:
        if path.suffix.lower() == ".jsonl" and "nested" not in exc.reason:
            return FileFormat("text", "jsonl")
        return FileFormat("unknown", "json", exc.reason)
    first = doc[0] if isinstance(doc, list) and doc else doc
    if isinstance(first, dict):
        if "diaSource" in first:
            return FileFormat("alerts", "lsst-json", "diaSource")
        if "candidate" in first and "objectId" in first:
            return FileFormat("alerts", "ztf-json", "candidate")
        if first.get("type") in ("record", "enum", "fixed") and "name" in first:
            return FileFormat("schema", "avro-schema", str(first.get("namespace", "")) + "." + str(first["name"]))
    return FileFormat("text", "json")


# --------------------------------------------------------------------------- tables


def classify_columns(names: Sequence[str], filename: str = "", magpsf_has_values=None) -> tuple[str, str, str]:
    """Kind and base format of a table from its column names.

    Parameters
    ----------
    names : sequence of str
        The columns.
    filename : str, optional
        Breaks ties columns cannot (``*features*``, ``*non_det*``).
    magpsf_has_values : callable, optional
        Says whether an ALeRCE-style table's ``magpsf`` column holds any value:
        detections have one, non-detection tables carry the column empty.

    Returns
    -------
    (kind, format, detail) : tuple of str
    """
    lower = {n.lower(): n for n in names if n}
    low = set(lower)
    fname = filename.lower()
    if "time" in low and ({"mag", "magerr", "flux", "fluxerr"} & low):
        # Even with a column missing this is a light curve; its reader names what is missing.
        return "lightcurves", "lc", "time, mag/flux, err, band"
    if {"snid", "mjd", "fluxcal", "fluxcalerr"} <= low and ({"flt", "band", "filter"} & low):
        return "lightcurves", "snana", "SNID, MJD, FLUXCAL, FLUXCALERR, band"
    if ({"objectid", "oid"} & low) and "fid" in low and ({"mjd", "jd"} & low):
        has_mag = {"magpsf", "sigmapsf"} <= low
        if has_mag and "non_det" not in fname and (magpsf_has_values is None or magpsf_has_values()):
            return "lightcurves", "alerce-detections", "objectId, fid, mjd, magpsf, sigmapsf"
        if "diffmaglim" in low:
            return "lightcurves", "alerce-non-detections", "objectId, fid, mjd, diffmaglim"
    label = next((lower[c] for c in LABEL_COLUMNS if c in low), None)
    if "feature" in fname:
        return "features", "features", f"{len(names)} columns"
    if label is not None:
        ident = next((lower[c] for c in ID_COLUMNS if c in low), names[0] if names else "")
        return "labels", "labels", f"id={ident} label={label}"
    suffixed = sum(bool(re.search(r"_(\d|[ugrizy])$", n)) for n in names)
    if len(names) >= 20 and suffixed >= 0.5 * len(names):
        return "features", "features", f"{len(names)} columns"
    return "metadata", "table", f"{len(names)} columns"
