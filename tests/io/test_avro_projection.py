"""The projected Avro decoder against fastavro: the same values for the kept fields, typed errors on bad bytes."""
import dataclasses
import io
import math
import random

import numpy as np
import pytest

from astroray.errors import InvalidAlertError
from astroray.io import read_alerts
from astroray.io._avro_projection import (AvroDecodeError, AvroProjection, ProjectionUnsupported, _header_end,
                                          iter_projected_container)

fastavro = pytest.importorskip("fastavro")

ZTF_FILES = ("alerts/ztf/avro/472263571115115000.avro", "alerts/ztf/avro/2019_01_10_739260766315010006.avro")

# every Avro type, a named type used twice, unions of several branches, nesting through arrays and maps
SCHEMA = {
    "type": "record", "name": "Packet", "namespace": "test.ns",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "small", "type": "int"},
        {"name": "flag", "type": "boolean"},
        {"name": "f32", "type": "float"},
        {"name": "f64", "type": "double"},
        {"name": "name", "type": "string"},
        {"name": "blob", "type": "bytes"},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN", "BLUE"]}},
        {"name": "maybe", "type": ["null", "double"]},
        {"name": "either", "type": ["null", "long", "string", "Colour"]},
        {"name": "point", "type": {"type": "record", "name": "Point", "fields": [
            {"name": "x", "type": "double"}, {"name": "y", "type": ["null", "float"]},
            {"name": "tags", "type": {"type": "array", "items": "string"}}]}},
        {"name": "history", "type": ["null", {"type": "array", "items": "Point"}]},
        {"name": "extras", "type": {"type": "map", "values": ["null", "Point", "long"]}},
        {"name": "nothing", "type": "null"},
        {"name": "digests", "type": {"type": "array", "items": "Digest"}},
    ]}


def _point(rng):
    return {"x": rng.uniform(-1e300, 1e300), "y": rng.choice([None, float(np.float32(rng.gauss(0, 1e3)))]),
            "tags": [rng.choice(["a", "bé", "", "ZTF18abc"]) for _ in range(rng.randrange(3))]}


def _record(rng, i):
    return {
        "id": rng.choice([0, -1, 2**63 - 1, -2**63, rng.randrange(-2**40, 2**40)]),
        "small": rng.randrange(-2**31, 2**31), "flag": rng.random() < 0.5,
        "f32": float(np.float32(rng.choice([rng.gauss(0, 1), float("inf"), -0.0, 1e-40]))),
        "f64": rng.choice([rng.gauss(0, 1e10), float("-inf"), 5e-324, -0.0]),
        "name": rng.choice(["", "objectId ✓", "x" * 300]), "blob": bytes(rng.randrange(256) for _ in range(i % 50)),
        "digest": bytes([i % 256, 1, 2, 3]), "colour": rng.choice(["RED", "GREEN", "BLUE"]),
        "maybe": rng.choice([None, rng.gauss(0, 1)]),
        "either": rng.choice([None, rng.randrange(-10**6, 10**6), "text", "BLUE"]),
        "point": _point(rng), "history": rng.choice([None, [], [_point(rng) for _ in range(rng.randrange(1, 40))]]),
        "extras": {f"k{j}": rng.choice([None, _point(rng), j]) for j in range(rng.randrange(4))},
        "nothing": None, "digests": [bytes([j, j, j, j]) for j in range(rng.randrange(3))],
    }


def _same(a, b) -> bool:
    """Equal values of equal types (NaNs equal; a Python float and an int are not the same value here)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _container(records, codec, sync_interval=16000) -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, SCHEMA, records, codec=codec, sync_interval=sync_interval)
    return buf.getvalue()


def _decode(data: bytes, wanted, codec):
    reader = fastavro.reader(io.BytesIO(data))
    return list(iter_projected_container(io.BytesIO(data), AvroProjection(reader.writer_schema, wanted), codec))


@pytest.mark.parametrize("codec,sync_interval", [("null", 16000), ("deflate", 16000), ("null", 1)])
def test_every_type_decodes_as_fastavro_does(codec, sync_interval):
    rng = random.Random(7)
    records = [_record(rng, i) for i in range(300)]
    data = _container(records, codec, sync_interval)
    expected = list(fastavro.reader(io.BytesIO(data)))
    got = _decode(data, {f["name"]: True for f in SCHEMA["fields"]}, codec)
    assert len(got) == len(expected) == 300
    for e, g in zip(expected, got):
        assert _same(e, g), (e, g)


def test_projection_keeps_only_the_fields_asked_for():
    rng = random.Random(11)
    records = [_record(rng, i) for i in range(120)]
    data = _container(records, "deflate")
    wanted = {"id": True, "either": True, "history": {"x": True}, "extras": {"y": True}, "point": {"tags": True},
              "not_in_schema": True}
    got = _decode(data, wanted, "deflate")
    for rec, g in zip(fastavro.reader(io.BytesIO(data)), got):
        assert set(g) == {"id", "either", "history", "extras", "point"}
        assert _same(g["id"], rec["id"]) and _same(g["either"], rec["either"])
        assert _same(g["point"], {"tags": rec["point"]["tags"]})
        assert _same(g["history"], None if rec["history"] is None else [{"x": p["x"]} for p in rec["history"]])
        assert _same(g["extras"], {k: v if not isinstance(v, dict) else {"y": v["y"]}
                                   for k, v in rec["extras"].items()})


def test_ztf_packets_decode_as_fastavro_does(shared_data):
    from astroray.io.ztf import ztf_fields_read

    for rel in ZTF_FILES:
        data = (shared_data / rel).read_bytes()
        reader = fastavro.reader(io.BytesIO(data))
        expected, codec = list(reader), reader.codec
        whole = _decode(data, {f["name"]: True for f in reader.writer_schema["fields"]}, codec)
        assert len(whole) == len(expected) and all(_same(e, g) for e, g in zip(expected, whole))
        wanted = ztf_fields_read(cutouts=True)
        for e, g in zip(expected, _decode(data, wanted, codec)):
            assert _same(g["candidate"], {k: v for k, v in e["candidate"].items() if k in wanted["candidate"]})
            assert _same(g["cutoutScience"], {"stampData": e["cutoutScience"]["stampData"]})


def _alert_fields(alert) -> dict:
    out = {}
    for f in dataclasses.fields(alert):
        v = getattr(alert, f.name)
        if f.name == "history":
            v = {k: getattr(v, k) for k in ("object_id", "mjd", "band", "flux", "flux_err", "detected")}
        out[f.name] = v
    return out


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return _same(a, b) if isinstance(a, (float, list)) else a == b


@pytest.mark.parametrize("cutouts", [True, False])
def test_read_alerts_gives_the_same_alerts_as_through_fastavro(shared_data, monkeypatch, cutouts):
    import astroray.io.alerts as alerts_module

    for rel in ZTF_FILES:
        fast = read_alerts(shared_data / rel, cutouts=cutouts)
        with monkeypatch.context() as m:
            m.setattr(alerts_module, "_projected_packets", lambda *args: None)  # fastavro decodes every field
            slow = read_alerts(shared_data / rel, cutouts=cutouts)
        assert len(fast) == len(slow) > 0
        for a, b in zip(fast, slow):
            assert _equal(_alert_fields(a), _alert_fields(b)), a.alert_id


def test_a_container_further_into_a_stream_reads_from_where_the_stream_stands(shared_data):
    data = (shared_data / ZTF_FILES[0]).read_bytes()
    stream = io.BytesIO(b"not part of the container" + data)
    stream.seek(len(b"not part of the container"))
    [alert] = read_alerts(stream, name="offset.avro")
    assert alert.alert_id == read_alerts(shared_data / ZTF_FILES[0])[0].alert_id


def test_schemas_it_does_not_cover_fall_back_to_fastavro(shared_data):
    reader = fastavro.reader(io.BytesIO((shared_data / "alerts/lsst/schema/11/0/sample_data/fakeAlert.avro")
                                        .read_bytes()))
    with pytest.raises(ProjectionUnsupported, match="logical type"):
        AvroProjection(reader.writer_schema, {f["name"]: True for f in reader.writer_schema["fields"]})
    recursive = {"type": "record", "name": "Node", "fields": [
        {"name": "v", "type": "long"}, {"name": "next", "type": ["null", "Node"]}]}
    with pytest.raises(ProjectionUnsupported, match="recursive"):
        AvroProjection(recursive, {"v": True, "next": True})
    with pytest.raises(ProjectionUnsupported, match="codec"):
        next(iter_projected_container(io.BytesIO(b""), AvroProjection(SCHEMA, {"id": True}), "snappy"))


def test_corrupt_bytes_raise_a_typed_error_never_a_crash():
    rng = random.Random(3)
    data = _container([_record(rng, i) for i in range(40)], "null", sync_interval=1)
    projection = AvroProjection(SCHEMA, {f["name"]: True for f in SCHEMA["fields"]})
    stream = io.BytesIO(data)
    _header_end(stream)
    header = stream.tell()

    def decode(blob):
        return list(iter_projected_container(io.BytesIO(blob), projection, "null"))

    assert len(decode(data)) == 40
    for cut in sorted(rng.sample(range(1, len(data)), 80)):  # truncated anywhere, the header included
        with pytest.raises(AvroDecodeError):
            decode(data[:cut])
    refused = 0
    for _ in range(300):  # bit flips past the header: a typed error, or records (a flip inside a value is valid)
        flipped = bytearray(data)
        flipped[rng.randrange(header, len(data))] ^= 1 << rng.randrange(8)
        try:
            decode(bytes(flipped))
        except AvroDecodeError:
            refused += 1
    assert 0 < refused < 300


def test_truncated_ztf_container_says_how_many_alerts_were_whole(shared_data, tmp_path):
    with open(shared_data / ZTF_FILES[0], "rb") as fh:
        reader = fastavro.reader(fh)
        packet, schema = next(reader), reader.writer_schema
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [packet] * 5, sync_interval=1)  # a block per packet, as ZTF's files hold
    data = buf.getvalue()
    path = tmp_path / "cut.avro"
    path.write_bytes(data[:len(data) // 2])  # inside the third packet
    with pytest.raises(InvalidAlertError, match=r"corrupt or truncated Avro data after 2 alert\(s\)"):
        read_alerts(path)
