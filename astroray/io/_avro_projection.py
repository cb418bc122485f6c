"""Decode only the fields a mapper reads from an Avro object container.

A ZTF packet is ~46 KB: three gzipped FITS stamps, a candidate record of 100
fields and ~20 previous candidates of 60 fields each.  fastavro turns every
one of those fields into a Python object (0.6 ms a packet), although the ZTF
mapper reads ~45 candidate fields and 7 of each previous candidate's; and
its reader-schema projection is slower still, as its skipping is generic.

Here the writer schema is compiled once into a flat tree of nodes, each
marked with the output slot of the field it decodes or -1 to skip it; a
Numba kernel walks a block's records over that tree (skipping costs a few
nanoseconds a field: a varint parsed, a length jumped over) and writes one
event per kept value; a short Python loop builds from the events the same
dicts fastavro would have built for the kept fields (``int``, ``float``,
``str``, ``bytes``, ``bool``, ``None``, lists and dicts), which the mappers
take unchanged.  A kept field the writer schema lacks is absent from the
dict, as with fastavro.

Covered: every Avro type but recursive named types and logical types (the
caller falls back to fastavro: :class:`ProjectionUnsupported`), containers
of codec ``null`` or ``deflate``.  Corrupt data (a truncated block, a union
index or enum symbol out of range, a wrong sync marker, invalid UTF-8, a
block whose records do not fill it exactly) raises :class:`AvroDecodeError`.
"""
from __future__ import annotations

import zlib
from typing import IO, Any, Iterator, Mapping

import numpy as np

from numba import njit

__all__ = ["AvroProjection", "ProjectionUnsupported", "AvroDecodeError", "iter_projected_container"]

# node kinds
_NULL, _BOOL, _LONG, _FLOAT, _DOUBLE, _STRING, _BYTES, _FIXED, _ENUM, _RECORD, _ARRAY, _MAP, _UNION = range(13)
# event kinds (scalars share the node kinds' numbers)
_E_REC, _E_ARR, _E_MAP, _E_END, _E_KEY = 20, 21, 22, 23, 24
_ITEM = 0  # the slot of an array item or map value: appended to the list / set under the last key
_ROOT = 1  # the slot of the top-level record

_PRIMITIVES = {"null": _NULL, "boolean": _BOOL, "int": _LONG, "long": _LONG, "float": _FLOAT, "double": _DOUBLE,
               "string": _STRING, "bytes": _BYTES}
_STATUS = {1: "the data ends inside a value", 2: "a union branch index out of range",
           3: "a negative length", 5: "values nested deeper than 256", 6: "a varint longer than 64 bits",
           7: "an enum index out of range"}
_MAX_DEPTH = 256


class ProjectionUnsupported(Exception):
    """The writer schema uses what this decoder does not cover (recursive or logical types): use fastavro."""


class AvroDecodeError(Exception):
    """The container's bytes are not what its schema says (truncated, corrupt)."""


class AvroProjection:
    """A writer schema compiled for decoding the fields of ``wanted`` only.

    Parameters
    ----------
    writer_schema : dict
        The container's writer schema (as fastavro's ``reader.writer_schema``).
    wanted : mapping
        Field name -> ``True`` (the whole value) or a nested mapping (the
        fields to keep of the record inside: directly, in an array or map of
        records, or in a union with null).  Names the schema lacks are ignored.

    Raises
    ------
    ProjectionUnsupported
        A recursive or logical type, or a schema this compiler does not know.
    """

    def __init__(self, writer_schema: Mapping[str, Any], wanted: Mapping[str, Any]):
        self._nodes: list[list[int]] = []
        self._children: list[int] = []
        self.slot_names: list[str | None] = [None, None]  # _ITEM, _ROOT
        self.enum_symbols: dict[int, list[str]] = {}
        self._named: dict[str, Any] = {}
        self.root = self._compile(writer_schema, _ROOT, wanted, "", ())
        self.nodes = np.asarray(self._nodes, np.int64).reshape(-1, 4)
        self.children = np.asarray(self._children or [0], np.int64)

    # ------------------------------------------------------------------ compile

    def _node(self, kind: int, slot: int, a: int = 0, b: int = 0) -> int:
        self._nodes.append([kind, slot, a, b])
        return len(self._nodes) - 1

    def _compile(self, schema, slot: int, wanted, namespace: str, defining: tuple) -> int:
        """One node per schema position (named types are expanded where used); ``slot`` -1 skips it."""
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return self._node(_PRIMITIVES[schema], slot)
            full = schema if "." in schema or not namespace else f"{namespace}.{schema}"
            target = self._named.get(full) or self._named.get(schema)
            if target is None:
                raise ProjectionUnsupported(f"unknown type name {schema!r}")
            if id(target[0]) in defining:
                raise ProjectionUnsupported(f"recursive type {schema!r}")
            return self._compile(target[0], slot, wanted, target[1], defining)
        if isinstance(schema, list):
            branches = [self._compile(b, slot, wanted, namespace, defining) for b in schema]
            start = len(self._children)
            self._children.extend(branches)
            return self._node(_UNION, slot, start, len(branches))
        if not isinstance(schema, Mapping):
            raise ProjectionUnsupported(f"schema node {schema!r}")
        if "logicalType" in schema and slot >= 0:
            raise ProjectionUnsupported(f"logical type {schema['logicalType']!r}")
        kind = schema.get("type")
        if isinstance(kind, (list, Mapping)) or kind in _PRIMITIVES:
            return self._compile(kind, slot, wanted, namespace, defining)
        if kind in ("record", "error", "enum", "fixed"):
            name = str(schema.get("name", ""))
            space = str(schema.get("namespace", namespace) or "")
            full = name if "." in name or not space else f"{space}.{name}"
            inner = full.rsplit(".", 1)[0] if "." in full else space
            self._named[full] = self._named[name.rsplit(".", 1)[-1]] = (schema, inner)
            if kind == "enum":
                if slot >= 0:
                    known = self.enum_symbols.setdefault(slot, list(schema["symbols"]))
                    if known != list(schema["symbols"]):
                        raise ProjectionUnsupported("two enums in one field")
                return self._node(_ENUM, slot, len(schema["symbols"]))
            if kind == "fixed":
                return self._node(_FIXED, slot, int(schema["size"]))
            fields = []
            for field in schema["fields"]:
                keep = None if slot < 0 else (True if wanted is True else wanted.get(field["name"]))
                child_slot = -1
                if keep:
                    child_slot = len(self.slot_names)
                    self.slot_names.append(field["name"])
                fields.append(self._compile(field["type"], child_slot, keep if isinstance(keep, Mapping)
                                            else (True if keep else None), inner, defining + (id(schema),)))
            start = len(self._children)
            self._children.extend(fields)
            return self._node(_RECORD, slot, start, len(fields))
        if kind == "array":
            item = self._compile(schema["items"], _ITEM if slot >= 0 else -1, wanted, namespace, defining)
            return self._node(_ARRAY, slot, item)
        if kind == "map":
            value = self._compile(schema["values"], _ITEM if slot >= 0 else -1, wanted, namespace, defining)
            return self._node(_MAP, slot, value)
        raise ProjectionUnsupported(f"type {kind!r}")

    # ------------------------------------------------------------------ decode

    def decode_block(self, block: bytes, count: int) -> list[dict]:
        """The ``count`` records of one (decompressed) block, as dicts of the kept fields."""
        buf = np.frombuffer(block, np.uint8)
        cap = max(1024, count * 64)
        while True:
            ev = (np.empty(cap, np.int32), np.empty(cap, np.int8), np.empty(cap, np.int64), np.empty(cap, np.int64))
            pos, n, status = _decode_records(buf, 0, len(block), count, self.root, self.nodes, self.children, *ev)
            if status != _NO_ROOM:
                break
            cap *= 4  # more kept values than guessed: decode the block again into room enough
        if status:
            raise AvroDecodeError(f"{_STATUS.get(status, 'corrupt data')} at byte {pos} of a block")
        if pos != len(block):
            raise AvroDecodeError(f"a block of {count} records holds {len(block) - pos} bytes more than they take")
        return self._build(block, *(e[:n] for e in ev))

    def _build(self, block: bytes, slots, kinds, a, b) -> list[dict]:
        doubles = a.view(np.float64).tolist()
        with np.errstate(invalid="ignore"):  # any bit pattern is a float32, signalling NaNs included
            floats = (a & 0xFFFFFFFF).astype(np.uint32).view(np.float32).astype(np.float64).tolist()
        names, symbols = self.slot_names, self.enum_symbols
        records: list[dict] = []
        stack: list = []
        keys: list = []
        a_list, b_list = a.tolist(), b.tolist()
        for i, (slot, kind) in enumerate(zip(slots.tolist(), kinds.tolist())):
            if kind == _E_END:
                done = stack.pop()
                keys.pop()
                if not stack:
                    records.append(done)
                continue
            if kind == _E_KEY:
                try:
                    keys[-1] = block[a_list[i]:a_list[i] + b_list[i]].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise AvroDecodeError(f"a map key is not UTF-8 ({exc})") from None
                continue
            if kind == _E_REC or kind == _E_MAP:
                value: Any = {}
            elif kind == _E_ARR:
                value = []
            elif kind == _DOUBLE:
                value = doubles[i]
            elif kind == _LONG:
                value = a_list[i]
            elif kind == _STRING:
                try:
                    value = block[a_list[i]:a_list[i] + b_list[i]].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise AvroDecodeError(f"a string is not UTF-8 ({exc})") from None
            elif kind == _NULL:
                value = None
            elif kind == _FLOAT:
                value = floats[i]
            elif kind == _BYTES or kind == _FIXED:
                value = block[a_list[i]:a_list[i] + b_list[i]]
            elif kind == _BOOL:
                value = a_list[i] == 1
            else:  # _ENUM
                value = symbols[slot][a_list[i]]
            if stack:
                parent = stack[-1]
                if slot == _ITEM:
                    if isinstance(parent, list):
                        parent.append(value)
                    else:
                        parent[keys[-1]] = value
                else:
                    parent[names[slot]] = value
            if kind >= _E_REC:  # a container: its values follow until its END
                stack.append(value)
                keys.append(None)
        return records


# kernel status codes (the wrapper's messages are in _STATUS)
_TRUNCATED, _BAD_UNION, _NEGATIVE_LENGTH, _NO_ROOM, _TOO_DEEP, _LONG_VARINT, _BAD_ENUM = 1, 2, 3, 4, 5, 6, 7


@njit(cache=True, nogil=True, inline="always")
def _varint(buf, pos, end):
    """(value, next position); a negative next position is a status: -1 truncated, -6 longer than 64 bits."""
    shift = 0
    acc = np.uint64(0)
    while True:
        if pos >= end:
            return np.int64(0), np.int64(-1)
        byte = np.uint64(buf[pos])
        pos += 1
        acc |= (byte & np.uint64(0x7F)) << np.uint64(shift)
        if byte < np.uint64(0x80):
            break
        shift += 7
        if shift > 63:
            return np.int64(0), np.int64(-6)
    value = np.int64(acc >> np.uint64(1)) ^ -np.int64(acc & np.uint64(1))
    return value, np.int64(pos)


@njit(cache=True, nogil=True, inline="always")
def _span(buf, pos, end):
    """A length-prefixed run of bytes (string, bytes, map key): (start, length, status)."""
    n, p = _varint(buf, pos, end)
    if p < 0:
        return pos, np.int64(0), -p
    if n < 0:
        return pos, np.int64(0), 3
    if p + n > end:
        return pos, np.int64(0), 1
    return p, n, 0


@njit(cache=True, nogil=True, inline="always")
def _emit(ev_slot, ev_kind, ev_a, ev_b, ne, slot, kind, a, b):
    """Write one event at ``ne``; the next index, or -1 when the arrays are full."""
    if ne >= ev_slot.shape[0]:
        return -1
    ev_slot[ne] = slot
    ev_kind[ne] = kind
    ev_a[ne] = a
    ev_b[ne] = b
    return ne + 1


@njit(cache=True, nogil=True, inline="always")
def _push(st_node, st_i, st_flag, sp, node):
    """Start ``node`` on top of the stack; the new depth, or -1 past the stack's size."""
    if sp >= st_node.shape[0]:
        return -1
    st_node[sp] = node
    st_i[sp] = 0
    st_flag[sp] = 0
    return sp + 1


@njit(cache=True, nogil=True)
def _decode_records(buf, pos, end, count, root, nodes, children, ev_slot, ev_kind, ev_a, ev_b):
    """Walk ``count`` records from ``pos``; one event per kept value.  Returns (pos, events, status):
    status 0 ok, else one of the codes above."""
    st_node = np.empty(256, np.int64)
    st_i = np.empty(256, np.int64)
    st_flag = np.zeros(256, np.int64)
    ne = 0
    for _ in range(count):
        sp = _push(st_node, st_i, st_flag, 0, root)
        while sp > 0:
            t = sp - 1
            nd = st_node[t]
            kind = nodes[nd, 0]
            slot = nodes[nd, 1]
            child = -1  # the node to start next, if any
            if kind == 9:  # record: its start, each field in turn, its end
                i = st_i[t]
                if st_flag[t] == 0:
                    st_flag[t] = 1
                    if slot >= 0:
                        ne = _emit(ev_slot, ev_kind, ev_a, ev_b, ne, slot, 20, 0, 0)
                if i < nodes[nd, 3]:
                    st_i[t] = i + 1
                    child = children[nodes[nd, 2] + i]
                else:
                    if slot >= 0 and ne >= 0:
                        ne = _emit(ev_slot, ev_kind, ev_a, ev_b, ne, slot, 23, 0, 0)
                    sp -= 1
            elif kind == 10 or kind == 11:  # array, map: blocks of items (st_i: items left in this block)
                if st_flag[t] == 0:
                    st_flag[t] = 1
                    st_i[t] = 0
                    if slot >= 0:
                        ne = _emit(ev_slot, ev_kind, ev_a, ev_b, ne, slot, 21 if kind == 10 else 22, 0, 0)
                if st_i[t] == 0:
                    n, p = _varint(buf, pos, end)
                    if p < 0:
                        return pos, ne, -p
                    pos = p
                    if n < 0:
                        n = -n
                        _, p = _varint(buf, pos, end)  # the block's byte size: not needed
                        if p < 0:
                            return pos, ne, -p
                        pos = p
                    st_i[t] = n
                if st_i[t] == 0:  # the closing empty block
                    if slot >= 0 and ne >= 0:
                        ne = _emit(ev_slot, ev_kind, ev_a, ev_b, ne, slot, 23, 0, 0)
                    sp -= 1
                else:
                    st_i[t] -= 1
                    if kind == 11:
                        start, n, status = _span(buf, pos, end)
                        if status:
                            return pos, ne, status
                        if slot >= 0 and ne >= 0:
                            ne = _emit(ev_slot, ev_kind, ev_a, ev_b, ne, slot, 24, start, n)
                        pos = start + n
                    child = nodes[nd, 2]
            elif kind == 12:  # union: the branch index, then the branch
                if st_flag[t] == 0:
                    st_flag[t] = 1
                    b, p = _varint(buf, pos, end)
                    if p < 0:
                        return pos, ne, -p
                    if b < 0 or b >= nodes[nd, 3]:
                        return pos, ne, _BAD_UNION
                    pos = p
                    child = children[nodes[nd, 2] + b]
                else:
                    sp -= 1
            else:  # a scalar: decoded, kept or skipped
                sp -= 1
                va = np.int64(0)
                vb = np.int64(0)
                if kind == 2 or kind == 8:  # int/long, enum
                    v, p = _varint(buf, pos, end)
                    if p < 0:
                        return pos, ne, -p
                    if kind == 8 and (v < 0 or v >= nodes[nd, 2]):
                        return pos, ne, _BAD_ENUM
                    pos = p
                    va = v
                elif kind == 4 or kind == 3:  # double, float: little-endian bits
                    width = 8 if kind == 4 else 4
                    if pos + width > end:
                        return pos, ne, _TRUNCATED
                    bits = np.uint64(0)
                    for k in range(width):
                        bits |= np.uint64(buf[pos + k]) << np.uint64(8 * k)
                    pos += width
                    va = np.int64(bits)
                elif kind == 5 or kind == 6:  # string, bytes
                    start, n, status = _span(buf, pos, end)
                    if status:
                        return pos, ne, status
                    va, vb = start, n
                    pos = start + n
                elif kind == 7:  # fixed
                    n = nodes[nd, 2]
                    if pos + n > end:
                        return pos, ne, _TRUNCATED
                    va, vb = pos, n
                    pos += n
                elif kind == 1:  # boolean
                    if pos >= end:
                        return pos, ne, _TRUNCATED
                    va = np.int64(buf[pos])
                    pos += 1
                if slot >= 0:  # null (kind 0) reads nothing
                    ne = _emit(ev_slot, ev_kind, ev_a, ev_b, ne, slot, kind, va, vb)
            if ne < 0:
                return pos, 0, _NO_ROOM
            if child >= 0:
                sp = _push(st_node, st_i, st_flag, sp, child)
                if sp < 0:
                    return pos, ne, _TOO_DEEP
    return pos, ne, 0


def _read_long(stream: IO[bytes]) -> int | None:
    """A zigzag varint from the stream; ``None`` at a clean end of the stream."""
    shift = value = 0
    first = True
    while True:
        byte = stream.read(1)
        if not byte:
            if first:
                return None
            raise AvroDecodeError("the file ends inside a block header")
        first = False
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return (value >> 1) ^ -(value & 1)
        shift += 7
        if shift > 63:
            raise AvroDecodeError("a varint longer than 64 bits in a block header")


def _header_end(stream: IO[bytes], start: int = 0) -> bytes:
    """Move ``stream`` past the container header that begins at ``start``; return its sync marker."""
    stream.seek(start)
    if stream.read(4) != b"Obj\x01":
        raise AvroDecodeError("not an Avro object container")
    while True:
        count = _read_long(stream)
        if count is None:
            raise AvroDecodeError("the file ends inside the header")
        if count == 0:
            break
        if count < 0:
            _read_long(stream)
            count = -count
        for _ in range(2 * count):  # key, value
            n = _read_long(stream)
            if n is None or n < 0:
                raise AvroDecodeError("a bad length in the header")
            stream.seek(n, 1)
    sync = stream.read(16)
    if len(sync) != 16:
        raise AvroDecodeError("the file ends inside the header")
    return sync


def iter_projected_container(stream: IO[bytes], projection: AvroProjection, codec: str, *,
                             start: int = 0) -> Iterator[dict]:
    """Every record of the container at ``start`` of a seekable ``stream``, as a dict of the projection's kept
    fields, block by block.

    Raises
    ------
    ProjectionUnsupported
        A codec other than ``null`` and ``deflate``.
    AvroDecodeError
        Corrupt or truncated data (records already yielded stay valid).
    """
    if codec not in ("null", "deflate"):
        raise ProjectionUnsupported(f"codec {codec!r}")
    sync = _header_end(stream, start)
    while True:
        count = _read_long(stream)
        if count is None:
            return
        size = _read_long(stream)
        if count < 0 or size is None or size < 0:
            raise AvroDecodeError("a block header with a negative count or size")
        data = stream.read(size)
        if len(data) != size or stream.read(16) != sync:
            raise AvroDecodeError("a truncated block or a wrong sync marker after it")
        if codec == "deflate":
            try:
                data = zlib.decompress(data, -15)
            except zlib.error as exc:
                raise AvroDecodeError(f"a deflate block does not inflate ({exc})") from None
        yield from projection.decode_block(data, count)
