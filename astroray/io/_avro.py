"""Checks on an Avro container's writer schema and blocks before fastavro decodes any record.

The writer schema of an Avro file is part of the untrusted input.  Two kinds
of schema make fastavro misbehave rather than fail: a record that contains
itself with no union, array or map to end the nesting (fastavro's compiled
reader recurses until the process crashes), and an array of items that take
no bytes (``null``, empty records), whose block count alone can make the
reader loop for ever without consuming input.  Compressed containers
(``deflate``, ``bzip2``, ``xz``, ``snappy``) are scanned block by block with
the expansion bounded before fastavro inflates them whole.
"""
from __future__ import annotations

import bz2
import lzma
import zlib
from typing import IO, Any

from astroray.errors import InvalidAlertError, InvalidInputError
from astroray.io.limits import MB, ReadLimits

__all__ = ["check_writer_schema", "check_blocks"]

_PRIMITIVE_WIDTH = {"null": 0, "boolean": 1, "int": 1, "long": 1, "float": 4, "double": 8, "bytes": 1,
                    "string": 1}
_MAX_SCHEMA_DEPTH = 64


def check_writer_schema(schema: Any, *, source: str, error: type[InvalidInputError] = InvalidAlertError) -> None:
    """Refuse a writer schema fastavro cannot decode safely (see the module docstring)."""
    named: dict[str, Any] = {}
    nodes: list[Any] = []
    _collect(schema, named, nodes, source, error, "", 0)
    for node in nodes:
        kind = node.get("type")
        if kind in ("record", "error"):
            _width(node, named, (), source, error)
        elif kind == "array" and _width(node.get("items"), named, (), source, error) == 0:
            raise error("Avro writer schema has an array whose items take no bytes (null or empty records): "
                        "refused, as its block count alone could keep a reader looping", source=source)


def _collect(node, named, nodes, source, error, namespace, depth) -> None:
    if depth > _MAX_SCHEMA_DEPTH:
        raise error(f"Avro writer schema nests more than {_MAX_SCHEMA_DEPTH} levels", source=source)
    if isinstance(node, list):
        for branch in node:
            _collect(branch, named, nodes, source, error, namespace, depth + 1)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if isinstance(kind, (dict, list)):
        _collect(kind, named, nodes, source, error, namespace, depth + 1)
        return
    if kind in ("record", "error", "enum", "fixed") and "name" in node:
        name = str(node["name"])
        space = str(node.get("namespace", namespace) or "")
        full = name if "." in name or not space else f"{space}.{name}"
        named[full] = node
        named.setdefault(name.rsplit(".", 1)[-1], node)
        namespace = full.rsplit(".", 1)[0] if "." in full else space
    if kind in ("record", "error", "array"):
        nodes.append(node)
    if kind in ("record", "error"):
        fields = node.get("fields")
        if not isinstance(fields, list):
            raise error(f"Avro record {node.get('name')!r} has no list of fields", source=source)
        for field in fields:
            if isinstance(field, dict):
                _collect(field.get("type"), named, nodes, source, error, namespace, depth + 1)
    elif kind == "array":
        _collect(node.get("items"), named, nodes, source, error, namespace, depth + 1)
    elif kind == "map":
        _collect(node.get("values"), named, nodes, source, error, namespace, depth + 1)


def _width(node, named, records: tuple, source, error) -> int:
    """Fewest bytes a value of ``node`` takes; a record met again inside itself (through fields only) is refused."""
    if isinstance(node, str):
        if node in _PRIMITIVE_WIDTH:
            return _PRIMITIVE_WIDTH[node]
        target = named.get(node) or named.get(node.rsplit(".", 1)[-1])
        return 1 if target is None else _width(target, named, records, source, error)
    if isinstance(node, list):  # a union: its branch index takes a byte
        return 1
    if not isinstance(node, dict):
        return 1
    kind = node.get("type")
    if isinstance(kind, (dict, list)):
        return _width(kind, named, records, source, error)
    if kind in ("array", "map", "enum"):
        return 1
    if kind == "fixed":
        try:
            return max(int(node.get("size", 1)), 0)
        except (TypeError, ValueError):
            return 1
    if kind in ("record", "error"):
        key = id(node)
        if key in records:
            raise error(f"Avro record {node.get('name')!r} contains itself with no union, array or map to end "
                        "the nesting: refused (no value of it can be decoded)", source=source)
        if len(records) > _MAX_SCHEMA_DEPTH:
            raise error(f"Avro writer schema nests records more than {_MAX_SCHEMA_DEPTH} deep", source=source)
        return sum(_width(f.get("type"), named, records + (key,), source, error)
                   for f in node.get("fields", []) if isinstance(f, dict))
    return _PRIMITIVE_WIDTH.get(kind, 1)


# --------------------------------------------------------------------------- container blocks


def _read_long(fh: IO[bytes]) -> int:
    shift = value = 0
    while True:
        byte = fh.read(1)
        if not byte:
            raise EOFError("the file ends inside a number")
        b = byte[0]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return (value >> 1) ^ -(value & 1)
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than 64 bits")


def _skip_header(fh: IO[bytes]) -> None:
    fh.seek(4)  # magic
    while True:
        count = _read_long(fh)
        if count == 0:
            break
        if count < 0:
            _read_long(fh)  # block size in bytes
            count = -count
        for _ in range(count):
            for _ in range(2):  # key, value
                n = _read_long(fh)
                if n < 0:
                    raise ValueError("negative length in the header")
                fh.seek(n, 1)
    fh.seek(16, 1)  # sync marker


def _expanded_size(codec: str, data: bytes, room: int) -> int:
    """Bytes ``data`` inflates to, counting no further than ``room`` + 1."""
    if codec == "snappy":  # the raw snappy preamble states the length; fastavro drops a 4-byte CRC after it
        shift = value = 0
        for b in data[:10]:
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
        raise ValueError("snappy block without a length")
    if codec == "deflate":
        inflater = zlib.decompressobj(-15)
        feed = inflater.decompress
    elif codec == "bzip2":
        inflater = bz2.BZ2Decompressor()
        feed = inflater.decompress
    else:  # xz
        inflater = lzma.LZMADecompressor()
        feed = inflater.decompress
    total = 0
    pending = data
    while total <= room:
        chunk = feed(pending, min(4 * MB, room + 1 - total))
        total += len(chunk)
        if codec == "deflate":
            pending = inflater.unconsumed_tail
            if inflater.eof or (not pending and not chunk):
                break
        else:
            pending = b""
            if inflater.eof or (getattr(inflater, "needs_input", True) and not chunk):
                break
    return total


def check_blocks(stream: IO[bytes], codec: str, *, source: str, limits: ReadLimits,
                 error: type[InvalidInputError] = InvalidAlertError) -> None:
    """Scan a compressed container's blocks: the expansion of all of them together stays within the limit.

    Leaves ``stream`` where it was.  ``null`` containers need no scan (their
    blocks are as large as the file); codecs astroray does not bound
    (``zstandard``, ``lz4``) are refused.
    """
    if codec == "null":
        return
    if codec not in ("deflate", "bzip2", "xz", "snappy"):
        raise error(f"Avro codec {codec!r} is not read by astroray (null, deflate, bzip2, xz, snappy are)",
                    source=source)
    limit = limits.max_decompressed_bytes
    start = stream.tell()
    total = 0
    try:
        _skip_header(stream)
        while True:
            if not stream.read(1):
                break
            stream.seek(-1, 1)
            _read_long(stream)  # records in the block
            size = _read_long(stream)
            if size < 0:
                raise ValueError("negative block size")
            data = stream.read(size)
            total += _expanded_size(codec, data, limit - total)
            if total > limit:
                raise error(f"compressed Avro blocks expand past {limit / MB:.0f} MB: refused as a decompression "
                            "bomb; raise ReadLimits.max_decompressed_mb ($ASTRORAY_MAX_DECOMPRESSED_MB) if the "
                            "file is genuine", source=source)
            stream.seek(16, 1)
    except InvalidInputError:
        raise
    except (EOFError, ValueError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise error(f"corrupt or truncated Avro container ({type(exc).__name__}: {exc})", source=source) from None
    finally:
        stream.seek(start)
