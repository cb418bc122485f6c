"""Bounds on reading untrusted bytes: what a file may be, how big, how far it may expand, how deep it may nest.

Every astroray reader goes through these helpers before a parser sees the
bytes, so a hostile or broken input is refused with a reason instead of
blocking (a named pipe), ballooning (a gzip bomb) or crashing the caller
(a JSON nested 100 000 levels deep).  None of them needs ``resource`` limits,
threads or subprocesses, so they work the same inside Ray workers and Serve
replicas.

The limits are a :class:`ReadLimits` config.  Its defaults can be changed
for a whole process with environment variables (``ASTRORAY_MAX_FILE_MB``,
``ASTRORAY_MAX_DECOMPRESSED_MB``, ``ASTRORAY_MAX_CUTOUT_MB``,
``ASTRORAY_MAX_JSON_DEPTH``), or for a block of code with
:func:`using_limits`::

    from astroray.io.limits import ReadLimits, using_limits
    with using_limits(ReadLimits(max_decompressed_mb=64)):
        report = check_path("incoming/")
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import os
import stat
import zlib
from typing import IO, Any, Iterator

from pydantic import Field

from astroray.config import AstrorayConfig
from astroray.errors import ConfigError, InvalidInputError

__all__ = ["ReadLimits", "current_limits", "using_limits", "open_regular", "read_file", "read_stream",
           "gunzip_bounded", "parse_json", "json_depth", "file_kind", "MB"]

MB = 2**20

_ENV = {"max_file_mb": "ASTRORAY_MAX_FILE_MB", "max_decompressed_mb": "ASTRORAY_MAX_DECOMPRESSED_MB",
        "max_cutout_mb": "ASTRORAY_MAX_CUTOUT_MB", "max_json_depth": "ASTRORAY_MAX_JSON_DEPTH"}


class ReadLimits(AstrorayConfig):
    """How much of an untrusted input astroray reads before refusing it.

    Attributes
    ----------
    max_file_mb : float
        Largest file read whole (FITS exposures, alert files, tables); checked
        from the file's size before a byte is read.  A 4k x 4k exposure with
        its variance and mask planes is about 200 MB.
    max_decompressed_mb : float
        Largest content a compressed file (``.fits.gz``, ``.csv.gz``,
        tile-compressed FITS, a compressed Avro block) may expand to.
    max_cutout_mb : float
        Largest an alert cutout (a 63 x 63 stamp is ~20 kB) may expand to.
    max_json_depth : int
        Deepest nesting of JSON documents (alerts, schemas); real alerts nest
        fewer than 10 levels.
    """

    max_file_mb: float = Field(default=1024.0, gt=0)
    max_decompressed_mb: float = Field(default=512.0, gt=0)
    max_cutout_mb: float = Field(default=16.0, gt=0)
    max_json_depth: int = Field(default=64, ge=1, le=500)

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * MB)

    @property
    def max_decompressed_bytes(self) -> int:
        return int(self.max_decompressed_mb * MB)

    @property
    def max_cutout_bytes(self) -> int:
        return int(self.max_cutout_mb * MB)

    @classmethod
    def from_env(cls) -> "ReadLimits":
        """The defaults, with any ``ASTRORAY_MAX_*`` environment variable applied."""
        values: dict[str, Any] = {}
        for key, var in _ENV.items():
            raw = os.environ.get(var)
            if raw:
                values[key] = raw
        try:
            return cls.model_validate(values)
        except Exception as exc:  # noqa: BLE001 - pydantic's error, re-typed with the variables named
            raise ConfigError(f"invalid read limit in the environment ({', '.join(_ENV[k] for k in values)}): "
                              f"{exc}") from None


_CURRENT: contextvars.ContextVar[ReadLimits | None] = contextvars.ContextVar("astroray_read_limits", default=None)


def current_limits() -> ReadLimits:
    """The limits in force: those of the innermost :func:`using_limits`, else the environment's defaults."""
    limits = _CURRENT.get()
    return limits if limits is not None else ReadLimits.from_env()


@contextlib.contextmanager
def using_limits(limits: ReadLimits | dict | None) -> Iterator[ReadLimits]:
    """Apply ``limits`` to every read in this block (``None`` keeps the current ones)."""
    if limits is None:
        yield current_limits()
        return
    if isinstance(limits, dict):
        limits = ReadLimits.model_validate(limits)
    token = _CURRENT.set(limits)
    try:
        yield limits
    finally:
        _CURRENT.reset(token)


def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= MB // 10 else f"{n} bytes"


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a ``st_mode`` says the path is, in words (``"a regular file"``, ``"a named pipe"``, ...)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((word for test, word in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str | os.PathLike, *, name: str | None = None,
                 error: type[InvalidInputError] = InvalidInputError, missing: str = "no such file") -> IO[bytes]:
    """Open ``path`` for binary reading only if it is a regular file (never blocking on a pipe or device).

    The file is opened non-blocking and checked with ``fstat`` on the open
    descriptor, so a path swapped for a named pipe between a check and the
    open is refused too.

    Raises
    ------
    error
        The path is missing, unreadable, or not a regular file (a folder,
        a named pipe, a device, a socket).
    """
    name = name or os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(missing, source=name) from None
    except OSError as exc:
        raise error(f"cannot open: {exc.strerror or exc}", source=name) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"not a regular file ({file_kind(mode)}); only regular files are read", source=name)
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
        fh.raw.name = os.fspath(path)  # what error messages and parsers show, instead of the descriptor number
        return fh
    except BaseException:
        os.close(fd)
        raise


def read_file(path: str | os.PathLike, *, name: str | None = None, limit: int | None = None,
              error: type[InvalidInputError] = InvalidInputError, missing: str = "no such file") -> bytes:
    """The bytes of a regular file no larger than ``limit`` (default :attr:`ReadLimits.max_file_bytes`).

    The size is checked before anything is read, and the read stops one byte
    past the limit (a file growing meanwhile cannot slip through).
    """
    name = name or os.fspath(path)
    limit = current_limits().max_file_bytes if limit is None else int(limit)
    with open_regular(path, name=name, error=error, missing=missing) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise error(f"file is {_mb(size)}, above the limit of {_mb(limit)} (ReadLimits.max_file_mb, "
                        f"${_ENV['max_file_mb']})", source=name)
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise error(f"file grew past the limit of {_mb(limit)} while being read", source=name)
    return data


def read_stream(stream: IO[bytes], *, name: str, limit: int | None = None,
                error: type[InvalidInputError] = InvalidInputError) -> bytes:
    """Up to ``limit`` bytes of a binary stream; more than that is refused."""
    limit = current_limits().max_file_bytes if limit is None else int(limit)
    data = stream.read(limit + 1)
    if isinstance(data, str):
        raise error("stream is open in text mode; open it in binary mode ('rb')", source=name)
    if len(data) > limit:
        raise error(f"input is larger than the limit of {_mb(limit)} (ReadLimits.max_file_mb, "
                    f"${_ENV['max_file_mb']})", source=name)
    return bytes(data)


_CHUNK = 4 * MB


def gunzip_bounded(data: bytes, *, name: str, limit: int | None = None, what: str = "gzip content",
                   error: type[InvalidInputError] = InvalidInputError,
                   setting: str = "max_decompressed_mb") -> bytes:
    """Decompress gzip ``data`` (one or more members), refusing to expand past ``limit`` bytes.

    Memory stays within ``limit`` plus one 4 MB chunk however far the stream
    would expand: a 1 MB bomb that inflates to 2 GB is refused after 512 MB
    (the default) were produced, not after 2 GB.

    Raises
    ------
    error
        The stream expands past the limit (the message says the limit and the
        setting that raises it), is corrupt, or is truncated.
    """
    if limit is None:
        limit = current_limits().max_cutout_bytes if setting == "max_cutout_mb" else \
            current_limits().max_decompressed_bytes
    pieces: list[bytes] = []
    total = 0
    pending = bytes(data)
    try:
        while True:
            inflater = _inflate_module.decompressobj(wbits=31)
            while True:
                chunk = inflater.decompress(pending, _CHUNK)
                total += len(chunk)
                if total > limit:
                    raise error(f"{what} expands past {_mb(limit)} (from {_mb(len(data))} compressed): "
                                f"refused as a decompression bomb; raise ReadLimits.{setting} "
                                f"(${_ENV[setting]}) if the file is genuine", source=name)
                pieces.append(chunk)
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    break
                if not pending and not chunk:
                    raise error(f"{what} is truncated (the gzip stream ends early)", source=name)
            pending = inflater.unused_data
            if not pending.startswith(b"\x1f\x8b"):
                if pending.strip(b"\x00"):
                    raise error(f"{what} has {len(pending)} bytes of trailing garbage after the gzip stream",
                                source=name)
                break
    except _GZIP_ERRORS as exc:
        raise error(f"{what} is not a valid gzip stream ({exc})", source=name) from None
    return b"".join(pieces)


try:  # Intel's ISA-L inflates ZTF's gzipped stamps 1.6x faster than zlib (same API, same output)
    from isal import isal_zlib as _inflate_module
except ImportError:  # pragma: no cover - a platform without isal's wheels
    _inflate_module = zlib
_GZIP_ERRORS = (zlib.error, _inflate_module.error)


def parse_json(text: str | bytes, *, name: str, error: type[InvalidInputError] = InvalidInputError,
               max_depth: int | None = None) -> Any:
    """``json.loads`` that refuses documents nested deeper than ``max_depth`` with a typed error.

    Raises ``error`` for invalid JSON too (with the decoder's message), so a
    caller needs only one ``except``.
    """
    max_depth = current_limits().max_json_depth if max_depth is None else max_depth
    try:
        doc = json.loads(text)
    except RecursionError:
        raise error(f"JSON nested too deeply to parse (the limit is {max_depth} levels)", source=name) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"invalid JSON ({exc})", source=name) from None
    depth = json_depth(doc, stop=max_depth + 1)
    if depth > max_depth:
        raise error(f"JSON nested more than {max_depth} levels deep (ReadLimits.max_json_depth)", source=name)
    return doc


def json_depth(doc: Any, *, stop: int | None = None) -> int:
    """Nesting depth of a parsed JSON document (a scalar is 0), without recursion; stops counting at ``stop``."""
    deepest = 0
    stack = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            depth += 1
            deepest = max(deepest, depth)
            if stop is not None and deepest >= stop:
                return deepest
            stack.extend((v, depth) for v in (node.values() if isinstance(node, dict) else node))
    return deepest
