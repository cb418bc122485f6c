"""Turn a path, bytes or a binary file object into one readable stream with a name.

Every reader takes ``source`` in one of these forms so that the same code reads
a file on disk, a Kafka message body or an HTTP upload; ``name`` is what error
messages call the input.
"""
from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Union

from astroray.errors import InvalidInputError

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

    Raises
    ------
    InvalidInputError
        The path does not exist or is not a file, or ``source`` is of an unusable type.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError("no such file" if not path.exists() else "not a file", source=name)
        with open(path, "rb") as fh:
            yield fh
        return
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(bytes(source))
        return
    if hasattr(source, "read"):
        seekable = getattr(source, "seekable", lambda: False)()
        # Streams that cannot seek back after sniffing are buffered whole.
        yield source if seekable else io.BytesIO(source.read())
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
