"""Turn a path, bytes or a binary file object into one readable stream with a name.

Every reader takes ``source`` in one of these forms so that the same code reads
a file on disk, a Kafka message body or an HTTP upload; ``name`` is what error
messages call the input.
"""
from __future__ import annotations

import io
import os
from contextlib import contextmanager
from typing import IO, Iterator, Union

from astroray.errors import InvalidInputError
from astroray.io.limits import MB, current_limits, open_regular, read_stream

__all__ = ["Source", "source_name", "open_binary", "read_head"]

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes]]


def source_name(source: Source, name: str | None = None) -> str:
    """The name to put in error messages: ``name``, else the path, else a description."""
    if name:
        return str(name)
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return str(getattr(source, "name", None) or "<stream>")


@contextmanager
def open_binary(source: Source, name: str) -> Iterator[IO[bytes]]:
    """A seekable binary stream over ``source``, closed afterwards if we opened it.

    A path must be a regular file (a named pipe or a device is refused, never
    opened for a blocking read) no larger than
    :attr:`~astroray.io.limits.ReadLimits.max_file_mb`; bytes and unseekable
    streams are held to the same size.

    Raises
    ------
    InvalidInputError
        The path does not exist, is not a regular file, or the input is too
        large, or ``source`` is of an unusable type.
    """
    limit = current_limits().max_file_bytes
    if isinstance(source, (str, os.PathLike)):
        with open_regular(source, name=name) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise InvalidInputError(f"file is {size / MB:.1f} MB, above the limit of {limit / MB:.1f} MB "
                                        "(ReadLimits.max_file_mb, $ASTRORAY_MAX_FILE_MB)", source=name)
            yield fh
        return
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > limit:
            raise InvalidInputError(f"input is {len(source) / MB:.1f} MB, above the limit of {limit / MB:.1f} MB "
                                    "(ReadLimits.max_file_mb)", source=name)
        yield io.BytesIO(bytes(source))
        return
    if hasattr(source, "read"):
        seekable = getattr(source, "seekable", lambda: False)()
        # Streams that cannot seek back after sniffing are buffered (up to the size limit).
        yield source if seekable else io.BytesIO(read_stream(source, name=name, limit=limit))
        return
    raise InvalidInputError(
        f"cannot read from a {type(source).__name__}; pass a path, bytes or a binary file object", source=name)


def read_head(stream: IO[bytes], n: int = 64) -> bytes:
    """The first ``n`` bytes of ``stream``, leaving its position where it was."""
    pos = stream.tell()
    head = stream.read(n)
    stream.seek(pos)
    if isinstance(head, str):
        raise InvalidInputError("stream is open in text mode; open it in binary mode ('rb')",
                                source=getattr(stream, "name", None))
    return head
