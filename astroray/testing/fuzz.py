"""A corpus of corrupted variants of every format astroray reads, and a runner that reads each one under limits.

:func:`build_corpus` writes the variants into a folder: truncations, bit
flips, header lies, compression bombs, wrong schemas, impossible values
(NaN, inf, negative errors, coordinates off the sky) and odd files (named
pipes, dangling and looping links, a folder named like a file), made from
the shared real files (when given) and from simulated ones.  Each
:class:`Variant` says which reader reads it and whether it is one of the
cases that must be refused (a read that returns is then a *silent
acceptance*).

:func:`run_corpus` reads every variant with its reader and with
``io check`` in a worker process whose address space is capped
(``RLIMIT_AS``) and whose every read has a deadline; a read that overruns is
a *hang* (the worker is killed and replaced), one that needs more memory is
a *memory* outcome, an exception that is not astroray's typed
:class:`~astroray.errors.InvalidInputError` is *untyped*.

Command line (the counts go to stdout and ``--report``)::

    python -m astroray.testing.fuzz --shared ../shared/data --out /tmp/astroray-fuzz --report fuzz.json
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import select
import subprocess
import sys
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["Variant", "FuzzLimits", "build_corpus", "run_corpus", "summarize", "OUTCOMES", "READERS", "main"]

OUTCOMES = ("accepted", "refused", "untyped", "hang", "memory", "died")
"""Every outcome of one read: returned, typed refusal, other exception, over the deadline, over the memory
cap (``MemoryError``), worker killed by a signal."""

READERS = ("exposure", "image", "alerts", "lightcurves", "table", "check")
"""What reads a variant: the reader of its format (and ``io check``, which reads every variant too)."""


@dataclass(frozen=True)
class Variant:
    """One corrupted input.

    Attributes
    ----------
    name : str
        Path relative to the corpus folder.
    reader : str
        One of :data:`READERS`.
    family : str
        ``truncation``, ``bitflip``, ``header-lie``, ``bomb``, ``schema``, ``values``, ``odd-file``,
        ``original``.
    must_refuse : bool
        A case that must get a typed error (from its reader and from ``io check``): returning is a
        silent acceptance.
    check_may_accept : bool
        ``io check`` may read it as another kind of data (Avro records that are not alerts are
        metadata to it); only its reader must refuse it.
    note : str
        What was done to it.
    """

    name: str
    reader: str
    family: str
    must_refuse: bool = False
    note: str = ""
    check_may_accept: bool = False


@dataclass(frozen=True)
class FuzzLimits:
    """Limits of one corpus run: read limits given to astroray, and the runner's own deadline and memory cap."""

    timeout_s: float = 20.0
    memory_mb: int = 768
    """Address space a worker may add on top of what it holds after importing the readers."""
    max_file_mb: float = 64.0
    max_decompressed_mb: float = 64.0
    max_cutout_mb: float = 4.0

    def env(self) -> dict[str, str]:
        return {"ASTRORAY_MAX_FILE_MB": str(self.max_file_mb),
                "ASTRORAY_MAX_DECOMPRESSED_MB": str(self.max_decompressed_mb),
                "ASTRORAY_MAX_CUTOUT_MB": str(self.max_cutout_mb)}


# --------------------------------------------------------------------------- building the corpus

_BOMB_MEMBER_MB = 16


def gzip_bomb(head: bytes = b"", *, expand_mb: int = 2048) -> bytes:
    """``head`` then zeros, ``expand_mb`` MB in all, as concatenated gzip members (~1000:1; ~2 MB for 2 GB).

    Built from one compressed member reused, so making it costs two 16 MB compressions.
    """
    def member(data_head: bytes, zeros: int) -> bytes:
        deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
        parts = [deflate.compress(data_head)]
        chunk = bytes(1 << 20)
        for _ in range(zeros >> 20):
            parts.append(deflate.compress(chunk))
        parts.append(deflate.flush())
        return b"".join(parts)

    first = member(head, _BOMB_MEMBER_MB << 20)
    rest = member(b"", _BOMB_MEMBER_MB << 20)
    return first + rest * max(expand_mb // _BOMB_MEMBER_MB - 1, 0)


def _flip(data: bytes, rng: random.Random, n: int, *, start: int = 0) -> bytes:
    buf = bytearray(data)
    for _ in range(n):
        i = rng.randrange(start, len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)


def _card(data: bytes, key: bytes, value: bytes, *, after: int = 0) -> bytes:
    """``data`` with the first ``KEY = ...`` card at or after byte ``after`` set to ``value``."""
    buf = bytearray(data)
    k = buf.index(key.ljust(8) + b"=", after)
    buf[k:k + 80] = (key.ljust(8) + b"= " + value.rjust(20)).ljust(80)
    return bytes(buf)


class _Writer:
    def __init__(self, root: Path):
        self.root = root
        self.variants: list[Variant] = []

    def add(self, name: str, data: bytes | None, reader: str, family: str, *, must_refuse: bool = False,
            note: str = "", check_may_accept: bool = False) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            path.write_bytes(data)
        self.variants.append(Variant(name, reader, family, must_refuse, note, check_may_accept))
        return path

    def mutations(self, stem: str, suffix: str, data: bytes, reader: str, rng: random.Random, *,
                  cuts=(0.1, 0.5, 0.9), flips: int = 4, flip_bits: int = 8, flip_from: int = 0) -> None:
        """Truncations and bit flips of ``data``."""
        for frac in cuts:
            cut = max(1, int(len(data) * frac))
            self.add(f"{stem}_cut{int(frac * 100)}{suffix}", data[:cut], reader, "truncation",
                     note=f"first {cut} bytes")
        self.add(f"{stem}_lastbyte{suffix}", data[:-1], reader, "truncation", note="one byte short")
        for k in range(flips):
            self.add(f"{stem}_flip{k}{suffix}", _flip(data, rng, flip_bits, start=flip_from), reader, "bitflip",
                     note=f"{flip_bits} random bits")


def _exposure_bytes(shape=(64, 64), seed=1) -> tuple[bytes, object]:
    from astroray.datasets import ImagePairConfig, simulate_pair
    from astroray.io.fits import exposure_to_bytes

    exposure = simulate_pair(ImagePairConfig(shape=shape), seed=seed, index=0).science
    return exposure_to_bytes(exposure), exposure


def _replace_plane(data: bytes, extname: str, values: np.ndarray) -> bytes:
    from astropy.io import fits

    hdul = fits.open(io.BytesIO(data))
    hdul[extname].data = values
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def _fits_variants(w: _Writer, rng: random.Random, shared: Path | None) -> None:
    from astropy.io import fits

    from astroray.io.fits import exposure_to_bytes
    from astroray.records import Exposure

    data, exposure = _exposure_bytes()
    w.add("fits/exposure.fits", data, "exposure", "original")
    w.mutations("fits/exposure", ".fits", data, "exposure", rng, cuts=(0.05, 0.3, 0.6, 0.95), flips=6, flip_bits=4,
                flip_from=2880)
    image_hdu = 2880  # the IMAGE header starts after the primary's single block
    lies = {
        "naxis1_minus5": (b"NAXIS1", b"-5"), "naxis2_minus1": (b"NAXIS2", b"-1"),
        "naxis1_huge": (b"NAXIS1", b"2147483647"), "naxis_1000": (b"NAXIS", b"1000"),
        "bitpix_7": (b"BITPIX", b"7"), "bitpix_16": (b"BITPIX", b"16"), "bitpix_32": (b"BITPIX", b"32"),
        "bitpix_64": (b"BITPIX", b"-64"), "naxis1_float": (b"NAXIS1", b"64.5"),
    }
    for label, (key, value) in lies.items():
        w.add(f"fits/lie_{label}.fits", _card(data, key, value, after=image_hdu), "exposure", "header-lie",
              must_refuse=True, note=f"IMAGE {key.decode()} = {value.decode()}")
    w.add("fits/lie_naxis1_quoted.fits", _card(data, b"NAXIS1", b"'64'", after=image_hdu), "exposure", "header-lie",
          note="IMAGE NAXIS1 = '64' (a string holding the right number)")
    w.add("fits/lie_gcount.fits", _card(data, b"GCOUNT", b"-1", after=image_hdu), "exposure", "header-lie",
          must_refuse=True, note="IMAGE GCOUNT = -1")
    w.add("fits/lie_pcount.fits", _card(data, b"PCOUNT", b"4000000000", after=image_hdu), "exposure", "header-lie",
          must_refuse=True, note="IMAGE PCOUNT = 4e9")
    psf_at = data.index(b"EXTNAME = 'PSF")
    psf_header = data.rindex(b"XTENSION", 0, psf_at)
    w.add("fits/lie_psf_bitpix16.fits", _card(data, b"BITPIX", b"16", after=psf_header), "exposure", "header-lie",
          must_refuse=True, note="BITPIX 16 on the float32 PSF (the last HDU)")
    no_end = bytearray(data)
    k = no_end.index(b"END" + b" " * 77, image_hdu)
    no_end[k:k + 3] = b"   "
    w.add("fits/lie_no_end.fits", bytes(no_end), "exposure", "header-lie", must_refuse=True, note="IMAGE END removed")
    dup = bytearray(data)
    k = dup.index(b"END" + b" " * 77, image_hdu)
    dup[k:k + 80] = b"NAXIS1  =                   -5".ljust(80)
    dup[k + 80:k + 160] = b"END".ljust(80)
    w.add("fits/lie_naxis1_twice.fits", bytes(dup), "exposure", "header-lie", must_refuse=True,
          note="a second NAXIS1 = -5 card")
    shape = exposure.image.shape
    psf_shape = exposure.psf.shape
    values = {
        "variance_negative": ("VARIANCE", -np.ones(shape, np.float32)),
        "variance_nan": ("VARIANCE", np.full(shape, np.nan, np.float32)),
        "variance_zero": ("VARIANCE", np.zeros(shape, np.float32)),
        "psf_zero": ("PSF", np.zeros(psf_shape, np.float32)),
        "psf_nan": ("PSF", np.full(psf_shape, np.nan, np.float32)),
        "image_nan": ("IMAGE", np.full(shape, np.nan, np.float32)),
    }
    for label, (ext, plane) in values.items():
        w.add(f"fits/values_{label}.fits", _replace_plane(data, ext, plane), "exposure", "values", must_refuse=True,
              note=f"{ext} replaced")
    tiny = Exposure(exposure.image[:1, :1], exposure.variance[:1, :1], exposure.mask[:1, :1], exposure.psf,
                    meta=dict(exposure.meta))
    w.add("fits/values_1x1.fits", exposure_to_bytes(tiny), "exposure", "values", must_refuse=True, note="1x1 image")
    # bombs: a gzipped exposure that expands to 2 GB, a tile-compressed image whose header claims 2 GB
    w.add("fits/bomb.fits.gz", gzip_bomb(data[:2880 * 3]), "exposure", "bomb", must_refuse=True,
          note="gzip: 2 GB of zeros behind a FITS header")
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)
    packed = gz.compress(data) + gz.flush()
    w.add("fits/exposure.fits.gz", packed, "exposure", "original", note="gzip-compressed exposure")
    w.mutations("fits/gz", ".fits.gz", packed, "exposure", rng, cuts=(0.5,), flips=2)
    frame = np.random.default_rng(3).normal(100, 5, (64, 64)).astype(np.float32)
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(frame, compression_type="RICE_1")]).writeto(buf)
    tiled = buf.getvalue()
    w.add("fits/tiled.fits.fz", tiled, "image", "original", note="tile-compressed image")
    w.mutations("fits/tiled", ".fits.fz", tiled, "image", rng, cuts=(0.5,), flips=2, flip_from=2880)
    w.add("fits/tiled_bomb.fits.fz", _card(_card(tiled, b"ZNAXIS1", b"46341", after=2880), b"ZNAXIS2", b"46341",
                                           after=2880),
          "image", "bomb", must_refuse=True, note="tile-compressed, header claims 46341 x 46341 float32 (8 GB)")
    if shared is not None:
        sep = (shared / "images/sep/image.fits").read_bytes()
        w.add("fits/sep.fits", sep, "image", "original")
        w.mutations("fits/sep", ".fits", sep, "image", rng, cuts=(0.01, 0.5), flips=3, flip_bits=3)
        w.add("fits/sep_lie_naxis1.fits", _card(sep, b"NAXIS1", b"-5"), "image", "header-lie", must_refuse=True,
              note="primary NAXIS1 = -5")
        w.add("fits/sep_lie_naxis2_huge.fits", _card(sep, b"NAXIS2", b"100000"), "image", "header-lie",
              must_refuse=True, note="primary NAXIS2 beyond the file")
        # SNANA HEAD/PHOT pairs: each variant in its own folder, the PHOT file corrupted
        raw = shared / "lightcurves/supernnova/tests/raw"
        head, phot = (raw / "DES_Ia-0001_HEAD.FITS").read_bytes(), (raw / "DES_Ia-0001_PHOT.FITS").read_bytes()
        phot_cases = {"cut": (phot[: len(phot) // 3], "truncation", False),
                      "flip": (_flip(phot, rng, 6, start=2880 * 2), "bitflip", False),
                      "naxis2_lie": (_card(phot, b"NAXIS2", b"99999999", after=2880), "header-lie", True),
                      "tform_lie": (_card(phot, b"NAXIS1", b"7", after=2880), "header-lie", True)}
        for label, (bad, family, refuse) in phot_cases.items():
            folder = f"snana/{label}"
            w.add(f"{folder}/DES_Ia-0001_PHOT.FITS", bad, "lightcurves", family, note="PHOT file")
            w.variants.pop()  # the PHOT file is read through its HEAD file
            w.add(f"{folder}/DES_Ia-0001_HEAD.FITS", head, "lightcurves", family, must_refuse=refuse,
                  note=f"SNANA pair, PHOT {label}")
        w.add("snana/head_cut/DES_Ia-0001_HEAD.FITS", head[:5000], "lightcurves", "truncation", note="HEAD cut")


def _avro_container(schema: dict, records: list, codec: str = "null") -> bytes:
    import fastavro

    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), records, codec=codec)
    return buf.getvalue()


def _zz(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _raw_container(schema: dict, body: bytes, codec: bytes = b"null") -> bytes:
    """An Avro container written by hand (fastavro refuses to write the schemas we want to feed it)."""
    def s(b):
        return _zz(len(b)) + b
    sync = b"0123456789abcdef"
    return (b"Obj\x01" + _zz(2) + s(b"avro.schema") + s(json.dumps(schema).encode()) + s(b"avro.codec") + s(codec)
            + _zz(0) + sync + body + sync)


def _alert_variants(w: _Writer, rng: random.Random, shared: Path | None) -> None:
    import copy

    import fastavro
    import pyarrow as pa
    import pyarrow.parquet as pq

    from astroray.records import Alert, LightCurve, alerts_to_table

    # astroray's own alert table (the layout the image pipeline writes)
    stamp = np.random.default_rng(4).normal(0, 1, (63, 63)).astype(np.float32)
    alerts = [Alert(alert_id=f"sim-{i:05d}", object_id=f"sim-{i:05d}", survey="sim", mjd=60000.5 + i,
                    ra=150.0 + 0.01 * i, dec=2.0, band="r", flux=1000.0 + i, flux_err=50.0,
                    history=LightCurve(f"sim-{i:05d}", [60000.5 + i], ["r"], [1000.0 + i], [50.0], [True]),
                    scores={"snr": 20.0}, cutout_science=stamp, cutout_reference=stamp, cutout_difference=stamp)
              for i in range(4)]
    table = alerts_to_table(alerts)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    w.add("alerts/astroray.parquet", buf.getvalue(), "alerts", "original")
    w.mutations("alerts/astroray", ".parquet", buf.getvalue(), "alerts", rng, cuts=(0.5, 0.98), flips=2)
    for label, column, value in (("ra999", "ra", 999.0), ("dec_minus200", "dec", -200.0),
                                 ("ra_nan", "ra", float("nan")), ("flux_inf", "flux", float("inf")),
                                 ("fluxerr_negative", "flux_err", -1.0)):
        bad = table.set_column(table.schema.get_field_index(column), column,
                               pa.array([value] * len(table), table.schema.field(column).type))
        buf = io.BytesIO()
        pq.write_table(bad, buf)
        w.add(f"alerts/astroray_{label}.parquet", buf.getvalue(), "alerts", "values", must_refuse=True,
              note=f"{column} = {value}")
    if shared is None:
        return
    ztf = shared / "alerts/ztf/avro/472263571115115000.avro"
    data = ztf.read_bytes()
    w.add("alerts/ztf.avro", data, "alerts", "original")
    w.mutations("alerts/ztf", ".avro", data, "alerts", rng, cuts=(0.02, 0.3, 0.7), flips=6, flip_bits=6)
    with open(ztf, "rb") as fh:
        reader = fastavro.reader(fh)
        schema, packet = reader.writer_schema, next(reader)
    for label, field, value in (("ra999", "ra", 999.0), ("dec_minus200", "dec", -200.0),
                                ("ra_nan", "ra", float("nan")), ("dec_nan", "dec", float("nan")),
                                ("magpsf_inf", "magpsf", float("inf")), ("magpsf_nan", "magpsf", float("nan")),
                                ("sigmapsf_negative", "sigmapsf", -0.1), ("jd_inf", "jd", float("inf"))):
        bad = copy.deepcopy(packet)
        bad["candidate"][field] = value
        w.add(f"alerts/ztf_{label}.avro", _avro_container(schema, [bad]), "alerts", "values", must_refuse=True,
              note=f"candidate.{field} = {value}")
    bad = copy.deepcopy(packet)
    bad["prv_candidates"][0]["magpsf"] = float("inf")
    bad["prv_candidates"][0]["candid"] = bad["prv_candidates"][0].get("candid") or 1
    bad["prv_candidates"][0]["sigmapsf"] = bad["prv_candidates"][0].get("sigmapsf") or 0.1
    w.add("alerts/ztf_history_magpsf_inf.avro", _avro_container(schema, [bad]), "alerts", "values", must_refuse=True,
          note="prv_candidates[0].magpsf = inf")
    bad = copy.deepcopy(packet)
    import gzip

    stamp_header = gzip.decompress(packet["cutoutScience"]["stampData"])[:2880]
    bad["cutoutScience"]["stampData"] = gzip_bomb(stamp_header)
    w.add("alerts/ztf_cutout_bomb.avro", _avro_container(schema, [bad]), "alerts", "bomb", must_refuse=True,
          note="cutoutScience: gzip expanding to 2 GB")
    w.add("alerts/ztf_deflate_bomb.avro",
          _raw_container({"type": "record", "name": "alert", "fields": [{"name": "candidate", "type": "bytes"}]},
                         _deflate_block(_zz(1) + _zz(600 << 20)), b"deflate"),
          "alerts", "bomb", must_refuse=True, note="deflate container block expanding to 600 MB")
    renamed = copy.deepcopy(schema)
    for field in renamed["fields"]:
        if field["name"] == "candidate":
            field["name"] = "candidat"
    renamed_packet = {("candidat" if k == "candidate" else k): v for k, v in packet.items()}
    w.add("alerts/ztf_schema_renamed.avro", _avro_container(renamed, [renamed_packet]), "alerts", "schema",
          must_refuse=True, check_may_accept=True, note="'candidate' renamed: valid Avro, not alerts")
    w.add("alerts/schema_recursive.avro",
          _raw_container({"type": "record", "name": "A", "fields": [{"name": "candidate", "type": "A"}]},
                         _zz(1) + _zz(10) + bytes(10)),
          "alerts", "schema", must_refuse=True, note="a record containing itself (crashes fastavro's reader)")
    w.add("alerts/schema_null_array.avro",
          _raw_container({"type": "record", "name": "B", "fields": [
              {"name": "candidate", "type": {"type": "array", "items": "null"}}]},
              _zz(1) + _zz(12) + _zz(2**40) + bytes(6)),
          "alerts", "schema", must_refuse=True, note="array of null with a 2^40 block count")
    w.add("alerts/not_alerts.avro",
          _avro_container({"type": "record", "name": "x", "fields": [{"name": "a", "type": "int"}]}, [{"a": 1}]),
          "alerts", "schema", must_refuse=True, check_may_accept=True, note="Avro records that are not alerts")
    lsst = shared / "alerts/lsst/schema/11/0/sample_data"
    data = (lsst / "fakeAlert.avro").read_bytes()
    w.add("alerts/lsst.avro", data, "alerts", "original")
    w.mutations("alerts/lsst", ".avro", data, "alerts", rng, cuts=(0.3, 0.8), flips=3)
    doc = json.loads((lsst / "alert.json").read_text())
    w.add("alerts/lsst.json", json.dumps(doc).encode(), "alerts", "original")
    w.mutations("alerts/lsst", ".json", json.dumps(doc).encode(), "alerts", rng, cuts=(0.5,), flips=2)
    for label, field, value in (("ra999", "ra", 999.0), ("dec_minus200", "dec", -200.0),
                                ("ra_nan", "ra", float("nan")), ("psfflux_inf", "psfFlux", float("inf")),
                                ("psffluxerr_negative", "psfFluxErr", -1.0), ("mjd_text", "midpointMjdTai", "soon"),
                                ("ra_text", "ra", "north")):
        bad = copy.deepcopy(doc)
        bad["diaSource"][field] = value
        w.add(f"alerts/lsst_{label}.json", json.dumps(bad).encode(), "alerts", "values", must_refuse=True,
              note=f"diaSource.{field} = {value!r}")
    bad = copy.deepcopy(doc)
    bad["diaSource"]["diaObjectId"] = float("nan")
    bad.get("diaObject", {}).pop("diaObjectId", None) if isinstance(bad.get("diaObject"), dict) else None
    w.add("alerts/lsst_objectid_nan.json", json.dumps(bad).encode(), "alerts", "values", must_refuse=True,
          note="diaObjectId = NaN (a plain ValueError before)")
    fink = pq.read_table(shared / "alerts/fink/alerts.parquet").slice(0, 4)
    buf = io.BytesIO()
    pq.write_table(fink, buf)
    w.add("alerts/fink.parquet", buf.getvalue(), "alerts", "original", note="4 real ZTF alerts (Fink)")
    w.mutations("alerts/fink", ".parquet", buf.getvalue(), "alerts", rng, cuts=(0.5, 0.999), flips=3, flip_bits=16)
    buf = io.BytesIO()
    pq.write_table(fink.drop_columns(["candidate"]), buf)
    w.add("alerts/fink_no_candidate.parquet", buf.getvalue(), "alerts", "schema", must_refuse=True,
          note="column 'candidate' dropped")
    rubin = pq.read_table(shared / "alerts/fink/hostless_detection/rubin_sample_data_10_0.parquet").slice(0, 3)
    buf = io.BytesIO()
    pq.write_table(rubin, buf)
    w.add("alerts/rubin.parquet", buf.getvalue(), "alerts", "original", note="3 real Rubin alerts")
    w.mutations("alerts/rubin", ".parquet", buf.getvalue(), "alerts", rng, cuts=(0.5,), flips=2, flip_bits=16)
    schema_path = shared / "alerts/ztf/schema/candidate.avsc"
    text = schema_path.read_bytes()
    w.add("alerts/candidate.avsc", text, "check", "original")
    w.mutations("alerts/candidate", ".avsc", text, "check", rng, cuts=(0.5,), flips=2)
    w.add("alerts/recursive.avsc", json.dumps({"type": "record", "name": "A", "namespace": "x",
                                               "fields": [{"name": "a", "type": "A"}]}).encode(),
          "check", "schema", must_refuse=True, note="a schema whose record contains itself")


def _deflate_block(prefix: bytes) -> bytes:
    """One Avro block (1 record) whose deflate-compressed data expands to 600 MB.

    A full flush leaves the stream byte-aligned with no history, so one compressed MB of zeros can be
    repeated: making it costs one 1 MB compression.
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
    zeros = deflate.compress(bytes(1 << 20)) + deflate.flush(zlib.Z_FULL_FLUSH)
    data = head + zeros * 600 + deflate.flush()
    return _zz(1) + _zz(len(data)) + data


def _lightcurve_variants(w: _Writer, rng: random.Random, shared: Path | None) -> None:
    import pyarrow.parquet as pq

    from astroray.datasets import simulate_lightcurves
    from astroray.records import lightcurves_to_table

    buf = io.BytesIO()
    pq.write_table(lightcurves_to_table(simulate_lightcurves(4, seed=3).lightcurves), buf)
    w.add("lightcurves/simulated.parquet", buf.getvalue(), "lightcurves", "original")
    w.mutations("lightcurves/simulated", ".parquet", buf.getvalue(), "lightcurves", rng, cuts=(0.5,), flips=2)
    rows = [f"{51081.0 + i * 0.9:.6f},{17.0 + 0.1 * np.sin(i):.3f},0.01,{'gri'[i % 3]}" for i in range(40)]
    good = ("time,mag,magerr,band\n" + "\n".join(rows) + "\n").encode()
    w.add("lightcurves/star.csv", good, "lightcurves", "original")
    w.mutations("lightcurves/star", ".csv", good, "lightcurves", rng, cuts=(0.02, 0.5), flips=3, flip_bits=4)

    def with_row(i: int, row: str) -> bytes:
        lines = good.decode().splitlines()
        lines[i] = row
        return ("\n".join(lines) + "\n").encode()

    values = {"mag_inf": "51081.5,inf,0.01,g", "mag_minus_inf": "51081.5,-inf,0.01,g",
              "magerr_negative": "51081.5,17.0,-0.01,g", "magerr_inf": "51081.5,17.0,inf,g",
              "time_inf": "inf,17.0,0.01,g", "mag_huge_negative": "51081.5,-1000,0.01,g"}
    for label, row in values.items():
        w.add(f"lightcurves/star_{label}.csv", with_row(5, row), "lightcurves", "values", must_refuse=True, note=row)
    w.add("lightcurves/star_mag_text.csv", with_row(5, "51081.5,bright,0.01,g"), "lightcurves", "values",
          must_refuse=True, note="a word in the mag column")
    w.add("lightcurves/star_mag_nan.csv", with_row(5, "51081.5,NaN,0.01,g"), "lightcurves", "values",
          note="NaN magnitude: a missing value, its row dropped (meta n_dropped)")
    w.add("lightcurves/star_bom.csv", b"\xef\xbb\xbf" + good, "lightcurves", "values",
          note="UTF-8 byte-order mark: read as a light curve, not 'metadata'")
    w.add("lightcurves/star_no_magerr.csv", good.replace(b"magerr", b"magerx"), "lightcurves", "schema",
          must_refuse=True, note="magerr column missing")
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)
    w.add("lightcurves/star.csv.gz", gz.compress(good) + gz.flush(), "lightcurves", "original")
    w.add("lightcurves/bomb.csv.gz", gzip_bomb(b"time,mag,magerr,band\n"), "lightcurves", "bomb", must_refuse=True,
          note="gzip expanding to 2 GB")
    header = "objectId,fid,mjd,magpsf,sigmapsf,isdiffpos\n"
    det = "".join(f"ZTF18abc,{1 + i % 2},{58300 + i:.4f},{19 + 0.05 * i:.3f},0.08,t\n" for i in range(20))
    w.add("lightcurves/alerce_detections.csv", (header + det).encode(), "lightcurves", "original")
    w.mutations("lightcurves/alerce_detections", ".csv", (header + det).encode(), "lightcurves", rng, cuts=(0.5,),
                flips=2, flip_bits=4)
    for label, row in {"magpsf_inf": "ZTF18abc,1,58400.0,inf,0.08,t",
                       "sigmapsf_negative": "ZTF18abc,1,58400.0,19.0,-0.08,t"}.items():
        w.add(f"lightcurves/alerce_{label}.csv", (header + det + row + "\n").encode(), "lightcurves", "values",
              must_refuse=True, note=row)
    nondet = "objectId,fid,mjd,diffmaglim\n" + "".join(f"ZTF18abc,1,{58200 + i}.5,20.5\n" for i in range(10))
    w.add("lightcurves/alerce_non_detections.csv", nondet.encode(), "lightcurves", "original")
    w.add("lightcurves/alerce_diffmaglim_inf.csv", (nondet + "ZTF18abc,1,58300.5,inf\n").encode(), "lightcurves",
          "values", must_refuse=True, note="diffmaglim = inf")
    snana = "SNID,MJD,FLUXCAL,FLUXCALERR,FLT\n" + "".join(f"1001,{56950 + i}.2,{10 + i}.5,2.5,{'griz'[i % 4]}\n"
                                                           for i in range(16))
    w.add("lightcurves/snana.csv", snana.encode(), "lightcurves", "original")
    w.add("lightcurves/snana_fluxcalerr_negative.csv", (snana + "1001,56990.2,12.0,-2.5,g\n").encode(),
          "lightcurves", "values", must_refuse=True, note="FLUXCALERR < 0 on an epoch")
    w.add("lightcurves/snana_marker.csv", (snana + "1001,-777.0,-777.0,-777.0,-\n").encode(), "lightcurves",
          "values", note="SNANA's -777 end-of-event marker row: skipped, as SNANA means it")
    labels = "objectId,classALeRCE\nZTF18abc,SNIa\nZTF18abd,SNII\n"
    w.add("lightcurves/labels.csv", labels.encode(), "table", "original")
    w.add("lightcurves/labels_cut.csv", labels.encode()[:20], "table", "truncation")
    if shared is not None:
        real = (shared / "lightcurves/rrlyrae/light-curves/1013184.csv").read_bytes()
        w.add("lightcurves/rrlyrae.csv", real, "lightcurves", "original")
        w.mutations("lightcurves/rrlyrae", ".csv", real, "lightcurves", rng, cuts=(0.3,), flips=2, flip_bits=6)


def _odd_variants(w: _Writer) -> None:
    root = w.root / "odd"
    root.mkdir(parents=True, exist_ok=True)
    w.add("odd/one_byte.fits", b"S", "check", "odd-file", must_refuse=True, note="a 1-byte .fits")
    w.add("odd/text.avro", b"hello, this is not Avro\n", "check", "odd-file", must_refuse=True,
          note="text named .avro")
    w.add("odd/text.parquet", b"time,mag\n1,2\n", "check", "odd-file", must_refuse=True, note="CSV named .parquet")
    w.add("odd/empty.fits", b"", "exposure", "odd-file", must_refuse=True, note="empty .fits")
    w.add("odd/empty.csv", b"", "lightcurves", "odd-file", must_refuse=True, note="empty .csv")
    w.add("odd/zeros.fits", bytes(2880 * 4), "exposure", "odd-file", must_refuse=True, note="four blocks of zeros")
    w.add("odd/deep.json", b"[" * 100_000 + b"]" * 100_000, "alerts", "odd-file", must_refuse=True,
          note="JSON nested 100 000 deep")
    w.add("odd/deep_dict.json", b'{"a":' * 5000 + b"1" + b"}" * 5000, "check", "odd-file", must_refuse=True,
          note="JSON nested 5000 deep")
    w.add("odd/deep.avsc", b'{"type": ' * 3000 + b'"int"' + b"}" * 3000, "check", "odd-file", must_refuse=True,
          note="schema nested 3000 deep")
    fifo = root / "pipe.fits"
    if not fifo.exists():
        os.mkfifo(fifo)
    w.add("odd/pipe.fits", None, "exposure", "odd-file", must_refuse=True, note="a named pipe (no writer)")
    w.add("odd/pipe.fits", None, "check", "odd-file", must_refuse=True, note="a named pipe given to io check")
    for name, target in (("zero.fits", "/dev/zero"), ("dangling.fits", "missing-target.fits"),
                         ("loop.fits", "loop.fits")):
        link = root / name
        if not link.is_symlink():
            os.symlink(target, link)
        w.add(f"odd/{name}", None, "exposure", "odd-file", must_refuse=True, note=f"a link to {target}")
    w.add("odd/zero.fits", None, "check", "odd-file", must_refuse=True, note="a link to /dev/zero given to io check")
    (root / "folder.fits").mkdir(exist_ok=True)
    w.add("odd/folder.fits", None, "exposure", "odd-file", must_refuse=True, check_may_accept=True,
          note="a folder named .fits (io check walks it: an empty folder)")


def build_corpus(out: str | os.PathLike, *, shared: str | os.PathLike | None = None, seed: int = 0) -> list[Variant]:
    """Write the corpus under ``out`` (made if missing) and return its variants (also in ``out/corpus.json``).

    ``shared`` is the shared real-data folder (``../shared/data``): its files
    are the base of most variants; without it only simulated files are used.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shared = Path(shared) if shared is not None else None
    rng = random.Random(seed)
    w = _Writer(out)
    _fits_variants(w, rng, shared)
    _alert_variants(w, rng, shared)
    _lightcurve_variants(w, rng, shared)
    _odd_variants(w)
    (out / "corpus.json").write_text(json.dumps([asdict(v) for v in w.variants], indent=1))
    return w.variants


# --------------------------------------------------------------------------- reading it


def _read_one(root: Path, name: str, reader: str) -> dict:
    """Read one variant in this process: its reader's outcome and ``io check``'s."""
    import warnings

    from astroray.errors import InvalidInputError

    path = root / name
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if reader != "check":
            out["read"] = _outcome(lambda: _READ[reader](path), InvalidInputError)
        out["check"] = _check_outcome(path, InvalidInputError)
    return out


def _outcome(fn, typed) -> dict:
    t0 = time.perf_counter()
    try:
        fn()
        result = {"outcome": "accepted", "message": ""}
    except typed as exc:
        result = {"outcome": "refused", "message": str(exc)[:300]}
    except MemoryError:
        result = {"outcome": "memory", "message": "MemoryError"}
    except BaseException as exc:  # noqa: BLE001 - what we count
        result = {"outcome": "untyped", "message": f"{type(exc).__name__}: {str(exc)[:300]}"}
    result["seconds"] = round(time.perf_counter() - t0, 4)
    return result


def _check_outcome(path: Path, typed) -> dict:
    from astroray.io.check import check_path

    def run():
        report = check_path(path)
        failures = report.failures
        if failures:
            error = failures[0].error
            if error.startswith("unexpected ") or "(RecursionError)" in error or "(MemoryError)" in error:
                raise RuntimeError(error)
            raise typed(error)
        # a report without failures is what makes `astroray io check` exit 0: an acceptance, even of nothing
    return _outcome(run, typed)


def _read_exposure(path):
    from astroray.io.fits import read_exposure

    read_exposure(path)


def _read_image(path):
    from astroray.io.fits import read_image

    read_image(path)


def _read_alerts(path):
    from astroray.io.alerts import read_alerts

    read_alerts(path)


def _read_lightcurves(path):
    from astroray.io.lightcurves import read_lightcurves

    read_lightcurves(path)


def _read_table(path):
    from astroray.io.lightcurves import read_table

    read_table(path)


_READ = {"exposure": _read_exposure, "image": _read_image, "alerts": _read_alerts,
         "lightcurves": _read_lightcurves, "table": _read_table}


def _worker(root: Path, memory_mb: int) -> None:
    """Read variants named on stdin (one JSON line each) and answer each on stdout, under an address-space cap."""
    import resource

    from astropy.io import fits  # noqa: F401

    import astroray.io  # noqa: F401 - imports (astropy, pyarrow, fastavro) before the cap is measured
    import astroray.io.check  # noqa: F401

    vm = _vm_size_bytes()
    cap = vm + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    print(json.dumps({"ready": True, "vm_mb": round(vm / 2**20), "cap_mb": round(cap / 2**20)}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        result = _read_one(root, job["name"], job["reader"])
        print(json.dumps(result), flush=True)


def _vm_size_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


class _Worker:
    def __init__(self, root: Path, limits: FuzzLimits):
        env = dict(os.environ, **limits.env(), PYTHONWARNINGS="ignore")
        self.proc = subprocess.Popen([sys.executable, "-m", "astroray.testing.fuzz", "--worker", str(root),
                                      "--memory-mb", str(limits.memory_mb)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
                                     bufsize=1)
        ready = self._line(120.0)
        if ready is None:
            self.kill()
            raise RuntimeError("the fuzz worker did not start")
        self.info = json.loads(ready)

    def _line(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return line or None

    def ask(self, name: str, reader: str, timeout: float) -> dict | None:
        """The worker's answer, or None when it overran ``timeout`` or died (then it is killed)."""
        try:
            self.proc.stdin.write(json.dumps({"name": name, "reader": reader}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return None
        line = self._line(timeout)
        return json.loads(line) if line else None

    def kill(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None


def run_corpus(root: str | os.PathLike, variants: list[Variant] | None = None, *,
               limits: FuzzLimits = FuzzLimits()) -> list[dict]:
    """Read every variant (its reader, then ``io check``) in a capped worker; one result dict per variant.

    Each result holds the variant's fields and, per read (``read``: its
    reader; ``check``: ``io check``), an ``outcome`` from :data:`OUTCOMES`, the message and the
    seconds it took.
    """
    root = Path(root)
    if variants is None:
        variants = [Variant(**v) for v in json.loads((root / "corpus.json").read_text())]
    results = []
    worker = _Worker(root, limits)
    try:
        for v in variants:
            # two reads per variant (reader, io check), each within the deadline
            answer = worker.ask(v.name, v.reader, 2 * limits.timeout_s)
            if answer is None:
                alive = worker.proc.poll() is None
                code = worker.kill()
                outcome = "hang" if alive else ("memory" if code in (-9, 137) else "died")
                message = f"no answer within {2 * limits.timeout_s:g} s" if alive else f"worker exit {code}"
                answer = {key: {"outcome": outcome, "message": message, "seconds": None}
                          for key in (("check",) if v.reader == "check" else ("read", "check"))}
                worker = _Worker(root, limits)
            results.append({**asdict(v), **answer})
    finally:
        worker.kill()
    return results


def summarize(results: list[dict]) -> dict:
    """Counts per outcome (readers and io check), silent acceptances of must-refuse cases, slowest reads."""
    per = {"read": Counter(), "check": Counter()}
    silent = []
    families = Counter(r["family"] for r in results)
    for r in results:
        for key in ("read", "check"):
            if key in r:
                per[key][r[key]["outcome"]] += 1
                if r["must_refuse"] and r[key]["outcome"] == "accepted" \
                        and not (key == "check" and r.get("check_may_accept")):
                    silent.append(f"{r['name']} ({key})")
    bad = [f"{r['name']} ({key}): {r[key]['outcome']}: {r[key]['message'][:160]}" for r in results
           for key in ("read", "check") if key in r and r[key]["outcome"] in ("untyped", "hang", "memory", "died")]
    times = [(r[key]["seconds"] or 0.0, f"{r['name']} ({key})") for r in results for key in ("read", "check")
             if key in r]
    return {"n_variants": len(results), "n_must_refuse": sum(r["must_refuse"] for r in results),
            "families": dict(sorted(families.items())),
            "outcomes": {k: {o: c[o] for o in OUTCOMES} for k, c in per.items()},
            "silent_acceptances": silent, "failures": bad,
            "slowest": [f"{name}: {s:.2f} s" for s, name in sorted(times, reverse=True)[:5]]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="corpus folder (made if missing)")
    parser.add_argument("--shared", default=None, help="the shared real-data folder (../shared/data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=FuzzLimits.timeout_s)
    parser.add_argument("--memory-mb", type=int, default=FuzzLimits.memory_mb)
    parser.add_argument("--report", default=None, help="write the summary and every result as JSON here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(Path(args.worker), args.memory_mb)
        return 0
    if not args.out:
        parser.error("--out is required")
    t0 = time.perf_counter()
    variants = build_corpus(args.out, shared=args.shared, seed=args.seed)
    t_build = time.perf_counter() - t0
    limits = FuzzLimits(timeout_s=args.timeout_s, memory_mb=args.memory_mb)
    results = run_corpus(args.out, variants, limits=limits)
    summary = summarize(results)
    summary.update(build_seconds=round(t_build, 1), run_seconds=round(time.perf_counter() - t0 - t_build, 1),
                   limits=asdict(limits))
    print(json.dumps(summary, indent=1))
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps({"summary": summary, "results": results}, indent=1))
    clean = not (summary["silent_acceptances"] or summary["failures"])
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
