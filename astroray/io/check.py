"""Check that every file under a folder can be read: the core of ``astroray io check PATH``.

Each file is detected (:func:`~astroray.io.sniff.detect_format`) and then
parsed by the reader of its kind: alert files are read to the last alert
(cutouts decoded), light-curve files to the last point, label, feature and
metadata tables to the last row, Avro schemas parsed, FITS images opened.
Every file ends up in the report, either under its kind and format or as a
failure with the reason, so ``n_files`` always equals the regular files found.
What is not a regular file (a named pipe, a device, a socket, a link to a
folder) is never opened: it is listed under ``skipped`` with what it is.
Every read is bounded by :class:`~astroray.io.limits.ReadLimits` (file size,
decompressed size, JSON depth), and one file's failure, whatever it is, never
stops the walk.
"""
from __future__ import annotations

import json
import os
import stat
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from astroray.errors import InvalidInputError
from astroray.io.limits import ReadLimits, file_kind, parse_json, read_file, using_limits
from astroray.io.sniff import DATA_SUFFIXES, FileFormat, detect_format

__all__ = ["FileResult", "CheckReport", "check_path", "check_file"]


@dataclass(frozen=True)
class FileResult:
    """The outcome for one file.

    Attributes
    ----------
    path : str
        Relative to the checked folder.
    kind, format : str
        As :func:`~astroray.io.sniff.detect_format` answered.
    n_records : int
        Alerts, table rows or schemas read (0 for documents and text).
    n_objects : int
        Distinct objects (alerts and light curves).
    n_points : int
        Light-curve points (light curves; alerts' histories plus candidates).
    error : str or None
        Why the file could not be read; ``None`` when it was.
    notes : tuple of str
        Warnings raised while reading (e.g. a cut-short SNANA PHOT file).
    """

    path: str
    kind: str
    format: str
    n_records: int = 0
    n_objects: int = 0
    n_points: int = 0
    error: str | None = None
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class CheckReport:
    """What :func:`check_path` found, file by file.

    ``ok`` is False when any file failed; ``to_text()`` is the summary table
    the CLI prints and ``to_dict()`` its JSON form.
    """

    root: str
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(path, what it is) of entries that are not regular files: never opened, not failures."""

    @property
    def n_files(self) -> int:
        return len(self.files)

    @property
    def failures(self) -> list[FileResult]:
        return [f for f in self.files if f.error is not None]

    @property
    def ok(self) -> bool:
        return not self.failures

    def counts_by_kind(self) -> dict[str, int]:
        """Files read successfully, per kind (failures are counted apart)."""
        out: dict[str, int] = {}
        for f in self.files:
            if f.ok:
                out[f.kind] = out.get(f.kind, 0) + 1
        return out

    def by_format(self) -> list[dict]:
        """One row per (kind, format) read successfully: files, records, objects, points."""
        rows: dict[tuple[str, str], dict] = {}
        for f in self.files:
            if not f.ok:
                continue
            row = rows.setdefault((f.kind, f.format), {"kind": f.kind, "format": f.format, "files": 0,
                                                       "records": 0, "objects": 0, "points": 0})
            row["files"] += 1
            row["records"] += f.n_records
            row["objects"] += f.n_objects
            row["points"] += f.n_points
        return [rows[k] for k in sorted(rows)]

    def to_dict(self) -> dict:
        return {"root": self.root, "ok": self.ok, "n_files": self.n_files, "seconds": round(self.seconds, 3),
                "counts_by_kind": self.counts_by_kind(), "by_format": self.by_format(),
                "failures": [{"path": f.path, "format": f.format, "error": f.error} for f in self.failures],
                "notes": [{"path": f.path, "note": n} for f in self.files for n in f.notes],
                "skipped": [{"path": p, "reason": why} for p, why in self.skipped],
                "files": [asdict(f) for f in self.files]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        """A readable summary: per-format counts, then failures and notes."""
        status = "OK" if self.ok else f"FAILED ({len(self.failures)} file(s))"
        lines = [f"{self.root}: {self.n_files} files in {self.seconds:.1f} s - {status}", ""]
        header = f"{'kind':<14}{'format':<32}{'files':>7}{'records':>10}{'objects':>10}{'points':>10}"
        lines += [header, "-" * len(header)]
        for r in self.by_format():
            lines.append(f"{r['kind']:<14}{r['format']:<32}{r['files']:>7}{r['records']:>10}{r['objects']:>10}"
                         f"{r['points']:>10}")
        lines.append("-" * len(header))
        totals = {k: sum(r[k] for r in self.by_format()) for k in ("files", "records", "objects", "points")}
        lines.append(f"{'read':<46}{totals['files']:>7}{totals['records']:>10}{totals['objects']:>10}"
                     f"{totals['points']:>10}")
        lines.append(f"{'failed':<46}{len(self.failures):>7}")
        if self.failures:
            lines += ["", "failures:"]
            lines += [f"  {f.path} [{f.format}]: {f.error}" for f in self.failures]
        notes = [(f.path, n) for f in self.files for n in f.notes]
        if notes:
            lines += ["", "notes:"]
            lines += [f"  {p}: {n}" for p, n in notes]
        if self.skipped:
            lines += ["", "skipped (not regular files, never opened):"]
            lines += [f"  {p}: {why}" for p, why in self.skipped]
        return "\n".join(lines)


def check_path(path: str | os.PathLike, *, progress: bool = False, cutouts: bool = True,
               limits: ReadLimits | None = None) -> CheckReport:
    """Detect and parse every file under ``path`` (a folder, walked recursively, or one file).

    Parameters
    ----------
    path : path-like
        Folder or regular file to check.
    progress : bool, optional
        Show a progress bar (tqdm) on stderr.
    cutouts : bool, optional
        Decode alert cutouts too (default), which checks every stamp.
    limits : ReadLimits, optional
        Bounds on every read (default: :func:`~astroray.io.limits.current_limits`,
        i.e. the ``ASTRORAY_MAX_*`` environment variables or the defaults).

    Returns
    -------
    CheckReport

    Raises
    ------
    InvalidInputError
        ``path`` does not exist, or is neither a folder nor a regular file
        (a named pipe or ``/dev/zero`` given as the path is refused, not read).
    """
    root = Path(path)
    try:
        mode = os.stat(root).st_mode
    except FileNotFoundError:
        raise InvalidInputError("no such file or folder", source=str(root)) from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read: {exc.strerror or exc}", source=str(root)) from None
    skipped: list[tuple[str, str]] = []
    if stat.S_ISREG(mode):
        paths = [root]
        base = root.parent
    elif stat.S_ISDIR(mode):
        paths = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for d in dirnames:
                link = os.path.join(dirpath, d)
                if os.path.islink(link):  # os.walk does not follow it: say so
                    skipped.append((os.path.relpath(link, root), "a link to a folder (not followed)"))
            for f in sorted(filenames):
                p = Path(dirpath) / f
                kind = _entry_kind(p)
                if kind is None:
                    paths.append(p)
                else:
                    skipped.append((os.path.relpath(p, root), kind))
        base = root
    else:
        raise InvalidInputError(f"not a regular file or a folder ({file_kind(mode)}): nothing to check",
                                source=str(root))
    iterator = paths
    if progress:
        from tqdm import tqdm

        iterator = tqdm(paths, desc=f"checking {root.name or root}", unit="file")
    start = time.perf_counter()
    with using_limits(limits):
        results = [check_file(p, relative_to=base, cutouts=cutouts) for p in iterator]
    return CheckReport(root=str(root), files=results, seconds=time.perf_counter() - start, skipped=skipped)


def _entry_kind(path: Path) -> str | None:
    """``None`` for a regular file, a link to one, or an entry that cannot be stat'ed (check_file reports it);
    else what the entry is."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else file_kind(mode)


def check_file(path: str | os.PathLike, *, relative_to: str | os.PathLike | None = None,
               cutouts: bool = True) -> FileResult:
    """Detect and parse one file; never raises for bad content (the reason goes in ``error``).

    Anything that goes wrong while reading, typed or not, becomes this file's
    ``error``; an error that is not astroray's typed one is reported as
    ``unexpected <type> while reading``, which is a reader bug.
    """
    path = Path(path)
    rel = os.path.relpath(path, relative_to) if relative_to is not None else str(path)
    start = time.perf_counter()
    fmt = FileFormat("unknown", "unknown")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _require_regular(path)
            fmt = detect_format(path)
            counts = _parse(path, fmt, cutouts)
            error = None
        except InvalidInputError as exc:
            counts, error = {}, str(exc)
        except RecursionError:
            counts, error = {}, f"{path}: nested too deeply to read (RecursionError)"
        except MemoryError:
            counts, error = {}, f"{path}: too large to read in memory (MemoryError)"
        except Exception as exc:  # noqa: BLE001 - a reader bug must show as a failure, not stop the walk
            counts, error = {}, f"unexpected {type(exc).__name__} while reading: {exc}"
    notes = tuple(dict.fromkeys(str(w.message) for w in caught
                                if not issubclass(w.category, (DeprecationWarning, ResourceWarning))))
    return FileResult(rel, fmt.kind, fmt.format, error=error, notes=notes,
                      seconds=time.perf_counter() - start, **counts)


def _require_regular(path: Path) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:  # a dangling or looping link, a permission problem
        raise InvalidInputError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None
    if not stat.S_ISREG(mode):
        raise InvalidInputError(f"not a regular file ({file_kind(mode)}); only regular files are read",
                                source=str(path))


def _parse(path: Path, fmt: FileFormat, cutouts: bool) -> dict:
    if fmt.kind == "alerts":
        from astroray.io.alerts import iter_alerts

        n, objects, points = 0, set(), 0
        for alert in iter_alerts(path, cutouts=cutouts):
            n += 1
            objects.add(alert.object_id)
            points += len(alert.history) + 1
        return {"n_records": n, "n_objects": len(objects), "n_points": points}
    if fmt.kind == "lightcurves":
        from astroray.io.lightcurves import read_lightcurves

        lcs = read_lightcurves(path, file_format=fmt)
        return {"n_records": len(lcs), "n_objects": len(lcs), "n_points": sum(len(lc) for lc in lcs)}
    if fmt.kind in ("labels", "features", "metadata"):
        from astroray.io.lightcurves import read_table

        if fmt.format == "avro":
            return {"n_records": _count_avro(path)}
        if fmt.format == "fits-table":
            return {"n_records": _count_fits_rows(path)}
        return {"n_records": read_table(path).num_rows}
    if fmt.kind == "schema":
        return {"n_records": _parse_schema(path)}
    if fmt.kind == "image":
        return {"n_records": _read_images(path, fmt)}
    if fmt.kind == "unknown" and (path.suffix.lower() in DATA_SUFFIXES or fmt.format != "unknown"):
        raise InvalidInputError(f"not a recognisable {fmt.format if fmt.format != 'unknown' else path.suffix} "
                                f"file: {fmt.detail or 'content not understood'}", source=str(path))
    return {}


def _parse_schema(path: Path) -> int:
    """Parse an ``.avsc`` file and check its structure (named types from sibling files stay unresolved)."""
    from astroray.io._avro import check_writer_schema

    text = read_file(path)
    try:
        doc = parse_json(text, name=str(path))
    except InvalidInputError as exc:
        raise InvalidInputError(f"Avro schema is not valid JSON ({exc.reason})", source=str(path)) from None
    problem = _schema_problem(doc, "schema")
    if problem:
        raise InvalidInputError(f"invalid Avro schema: {problem}", source=str(path))
    check_writer_schema(doc, source=str(path), error=InvalidInputError)
    return 1


def _schema_problem(node, where: str) -> str | None:
    if isinstance(node, str):
        return None  # a primitive or a named reference
    if isinstance(node, list):  # a union
        for i, branch in enumerate(node):
            problem = _schema_problem(branch, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if not isinstance(node, dict) or "type" not in node:
        return f"{where} has no 'type'"
    kind = node["type"]
    if kind in ("record", "error"):
        if "name" not in node or not isinstance(node.get("fields"), list):
            return f"{where}: record needs 'name' and a 'fields' list"
        for field in node["fields"]:
            if not isinstance(field, dict) or "name" not in field or "type" not in field:
                return f"{where}: a field lacks 'name' or 'type'"
            problem = _schema_problem(field["type"], f"{where}.{field['name']}")
            if problem:
                return problem
        return None
    if kind == "array":
        return _schema_problem(node.get("items"), f"{where}.items") if "items" in node else f"{where}: array needs 'items'"
    if kind == "map":
        return _schema_problem(node.get("values"), f"{where}.values") if "values" in node else f"{where}: map needs 'values'"
    if kind == "enum" and not isinstance(node.get("symbols"), list):
        return f"{where}: enum needs 'symbols'"
    if kind == "fixed" and "size" not in node:
        return f"{where}: fixed needs 'size'"
    return _schema_problem(kind, where) if isinstance(kind, (dict, list)) else None


def _count_avro(path: Path) -> int:
    """Records of an Avro file that holds no alerts, read to the end (writer schema and blocks checked first)."""
    import fastavro

    from astroray.io._avro import check_blocks, check_writer_schema
    from astroray.io.limits import current_limits, open_regular

    with open_regular(path) as fh:
        try:
            reader = fastavro.reader(fh)
            schema, codec = reader.writer_schema, str(reader.codec)
        except Exception as exc:  # noqa: BLE001 - fastavro raises many types for bad headers
            raise InvalidInputError(f"corrupt Avro header ({type(exc).__name__}: {exc})", source=str(path)) from None
        check_writer_schema(schema, source=str(path), error=InvalidInputError)
        check_blocks(fh, codec, source=str(path), limits=current_limits(), error=InvalidInputError)
        n = 0
        try:
            for _ in reader:
                n += 1
        except Exception as exc:  # noqa: BLE001 - truncation and bit flips surface as many types
            raise InvalidInputError(f"corrupt or truncated Avro data after {n} record(s) "
                                    f"({type(exc).__name__}: {exc})", source=str(path)) from None
    return n


def _count_fits_rows(path: Path) -> int:
    """Rows of the tables in a FITS file, read through :func:`~astroray.io.fits.open_fits`."""
    from astroray.io.fits import open_fits

    hdus, _ = open_fits(path)
    with hdus:
        return sum(len(h.data) for h in hdus[1:] if h.data is not None and h.data.dtype.fields is not None)


def _read_images(path: Path, fmt: FileFormat) -> int:
    """Exposures through :func:`~astroray.io.fits.read_exposure`; other images opened through
    :func:`~astroray.io.fits.open_fits` (structure checked, size and decompression bounded)."""
    from astroray.io.fits import open_fits, read_exposure

    if fmt.format == "exposure-fits":
        read_exposure(path)
        return 1
    hdus, _ = open_fits(path)
    with hdus:
        n = sum(1 for h in hdus if h.data is not None and getattr(h.data, "ndim", 0) >= 2
                and h.data.dtype.fields is None)
    if n == 0:
        raise InvalidInputError("FITS file holds no image data", source=str(path))
    return n
