"""Check that every file under a folder can be read: the core of ``astroray io check PATH``.

Each file is detected (:func:`~astroray.io.sniff.detect_format`) and then
parsed by the reader of its kind: alert files are read to the last alert
(cutouts decoded), light-curve files to the last point, label, feature and
metadata tables to the last row, Avro schemas parsed, FITS images opened.
Every file ends up in the report, either under its kind and format or as a
failure with the reason, so ``n_files`` always equals the files found.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from astroray.errors import InvalidInputError
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
        return "\n".join(lines)


def check_path(path: str | os.PathLike, *, progress: bool = False, cutouts: bool = True) -> CheckReport:
    """Detect and parse every file under ``path`` (a folder, walked recursively, or one file).

    Parameters
    ----------
    path : path-like
        Folder or file to check.
    progress : bool, optional
        Show a progress bar (tqdm) on stderr.
    cutouts : bool, optional
        Decode alert cutouts too (default), which checks every stamp.

    Returns
    -------
    CheckReport

    Raises
    ------
    InvalidInputError
        ``path`` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise InvalidInputError("no such file or folder", source=str(root))
    if root.is_file():
        paths = [root]
        base = root.parent
    else:
        paths = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            paths.extend(Path(dirpath) / f for f in sorted(filenames))
        base = root
    iterator = paths
    if progress:
        from tqdm import tqdm

        iterator = tqdm(paths, desc=f"checking {root.name or root}", unit="file")
    start = time.perf_counter()
    results = [check_file(p, relative_to=base, cutouts=cutouts) for p in iterator]
    return CheckReport(root=str(root), files=results, seconds=time.perf_counter() - start)


def check_file(path: str | os.PathLike, *, relative_to: str | os.PathLike | None = None,
               cutouts: bool = True) -> FileResult:
    """Detect and parse one file; never raises for bad content (the reason goes in ``error``)."""
    path = Path(path)
    rel = os.path.relpath(path, relative_to) if relative_to is not None else str(path)
    start = time.perf_counter()
    fmt = detect_format(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            counts = _parse(path, fmt, cutouts)
            error = None
        except InvalidInputError as exc:
            counts, error = {}, str(exc)
        except Exception as exc:  # noqa: BLE001 - a reader bug must show as a failure, not stop the walk
            counts, error = {}, f"unexpected {type(exc).__name__} while reading: {exc}"
    notes = tuple(dict.fromkeys(str(w.message) for w in caught
                                if not issubclass(w.category, (DeprecationWarning, ResourceWarning))))
    return FileResult(rel, fmt.kind, fmt.format, error=error, notes=notes,
                      seconds=time.perf_counter() - start, **counts)


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

        if fmt.format in ("avro", "fits-table"):
            return {"n_records": 0}
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
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"Avro schema is not valid JSON ({exc})", source=str(path)) from None
    problem = _schema_problem(doc, "schema")
    if problem:
        raise InvalidInputError(f"invalid Avro schema: {problem}", source=str(path))
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


def _read_images(path: Path, fmt: FileFormat) -> int:
    """Exposures through :func:`~astroray.io.fits.read_exposure`, plain images through ``read_image``."""
    with open(path, "rb") as fh:
        plain = fh.read(9) == b"SIMPLE  ="
    if plain:  # the exposure readers take uncompressed FITS; compressed files are opened by astropy below
        from astroray.io.fits import read_exposure, read_image

        if fmt.format == "exposure-fits":
            read_exposure(path)
            return 1
        if "tile-compressed" not in fmt.detail:
            read_image(path)
            return 1
    return _count_images(path)


def _count_images(path: Path) -> int:
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdus:
                n = sum(1 for h in hdus if h.data is not None and getattr(h.data, "ndim", 0) >= 2)
    except Exception as exc:  # noqa: BLE001
        raise InvalidInputError(f"unreadable FITS image ({type(exc).__name__}: {exc})", source=str(path)) from None
    if n == 0:
        raise InvalidInputError("FITS file holds no image data", source=str(path))
    return n
