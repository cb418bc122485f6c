"""Read alert packets (ZTF, Rubin/LSST, ELAsTiCC) into :class:`~astroray.records.Alert` records.

The container is detected from the content, not the file name: an Avro object
container (``Obj\\x01``), a Parquet file (``PAR1``), JSON, or -- when a
``schema`` is given -- one schemaless Avro message, optionally in Confluent
wire framing (a zero byte and a 4-byte schema id, as Rubin's Kafka stream
sends).  The alert schema is then recognised from the record layout
(``candidate`` for ZTF, ``diaSource`` for Rubin and ELAsTiCC, our own
:data:`~astroray.records.ALERT_SCHEMA` tables) and each record goes through one
small mapper (:mod:`astroray.io.ztf`, :mod:`astroray.io.lsst`).  ZTF Avro
containers decode only the fields the ZTF mapper reads
(:mod:`astroray.io._avro_projection`, ~4x faster than whole packets).

Columns a broker added to the packets (Fink's classifier outputs ``snn_*``,
``rf_*``, ``cats_*``, ..., SNANA truth such as ``GENTYPE``) never reach
``Alert.scores``: they are kept apart in ``meta['fink_predictions']``,
``meta['snana_truth']`` and ``meta['broker']`` so that no model reads them by
accident.
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
import os
from typing import IO, Any, Iterable, Iterator, Mapping

import numpy as np
import pyarrow as pa

from astroray.errors import InvalidAlertError, InvalidInputError
from astroray.io._checks import check_photometry, check_points, sky_position
from astroray.io._source import Source, open_binary, read_head, source_name
from astroray.io.limits import current_limits, json_depth, parse_json, read_stream
from astroray.io.sniff import sniff_container
from astroray.io.lsst import lsst_packet_to_alert
from astroray.io.ztf import ztf_packet_to_alert
from astroray.records import ALERT_OPTIONAL_COLUMNS, ALERT_SCHEMA, Alert, table_to_alerts

__all__ = ["read_alerts", "iter_alerts", "alerts_from_table", "alerts_from_records", "split_extra_columns"]

_ZTF_FIELDS = frozenset({"schemavsn", "publisher", "objectId", "candid", "candidate", "prv_candidates",
                         "fp_hists", "cutoutScience", "cutoutTemplate", "cutoutDifference"})
_LSST_FIELDS = frozenset({"alertId", "diaSourceId", "observation_reason", "target_name", "diaSource",
                          "prvDiaSources", "prvDiaForcedSources", "prvDiaNondetectionLimits", "diaObject",
                          "ssObject", "ssSource", "mpc_orbits", "cutoutScience", "cutoutTemplate",
                          "cutoutDifference"})
_PREDICTION_PREFIXES = ("snn_", "rf_", "cats_", "t2", "mulens", "anomaly", "finkclass", "pred", "clf",
                        "lc_features", "tracklet", "roid", "ml_", "xgb", "slsn", "early_", "kn_", "cnn")
_BATCH_ROWS = 64


def read_alerts(source: Source, *, name: str | None = None, cutouts: bool = True,
                schema: Any = None) -> list[Alert]:
    """Read every alert in a file, byte string or binary stream.

    Parameters
    ----------
    source : path, bytes or binary file object
        An Avro container, a Parquet file or JSON (one packet, a list of
        packets, or JSON lines); with ``schema``, one schemaless Avro message.
    name : str, optional
        What error messages call the input (defaults to the path).
    cutouts : bool, optional
        Decode the FITS stamps into arrays (default); ``False`` skips them,
        which is several times faster for light-curve work.
    schema : dict or path, optional
        Writer schema for schemaless or Confluent-framed Avro: a parsed schema
        or an ``.avsc`` file (named types are resolved from the ``.avsc`` files
        beside it, e.g. Rubin's ``lsst.v11_0.alert.avsc``).

    Returns
    -------
    list of Alert

    Raises
    ------
    InvalidAlertError
        The content is not a known alert format, is corrupt or truncated, or
        lacks a required column or field; the message names the input.
    """
    return list(iter_alerts(source, name=name, cutouts=cutouts, schema=schema))


def iter_alerts(source: Source, *, name: str | None = None, cutouts: bool = True,
                schema: Any = None) -> Iterator[Alert]:
    """Like :func:`read_alerts`, one alert at a time (Parquet is read in row batches)."""
    label = source_name(source, name)
    with open_binary(source, label) as stream:
        head = read_head(stream)
        kind = sniff_container(head)
        if schema is not None and kind != "avro":
            yield from _iter_schemaless(stream, schema, label, cutouts)
        elif kind == "avro":
            yield from _iter_avro(stream, label, cutouts)
        elif kind == "parquet":
            yield from _iter_parquet(stream, label, cutouts)
        elif kind == "json":
            yield from _iter_json(stream, label, cutouts)
        elif not head:
            raise InvalidAlertError("empty input: no alert data", source=label)
        else:
            raise InvalidAlertError(
                f"not an alert file: content starts with {head[:8]!r}, expected an Avro container "
                "(Obj\\x01), Parquet (PAR1) or JSON; for schemaless Avro pass schema=", source=label)


def alerts_from_table(table, *, name: str | None = None, cutouts: bool = True) -> list[Alert]:
    """Alerts from an in-memory table (pyarrow Table or pandas DataFrame), one packet per row.

    The table may follow ZTF's packet layout (``objectId``, ``candidate``, ...),
    Rubin's/ELAsTiCC's (``diaSource``, ...) or astroray's own
    :data:`~astroray.records.ALERT_SCHEMA`.
    """
    label = name or "<table>"
    if not isinstance(table, pa.Table):
        try:
            table = pa.Table.from_pandas(table, preserve_index=False)
        except Exception as exc:  # noqa: BLE001 - any conversion failure is bad input
            raise InvalidAlertError(f"cannot convert {type(table).__name__} to an Arrow table ({exc})",
                                    source=label) from None
    flavour = _table_flavour(table.schema.names, label)
    return list(_alerts_from_batches(table.to_batches(_BATCH_ROWS), flavour, label, cutouts))


def alerts_from_records(records: Iterable[Mapping[str, Any]], *, name: str | None = None,
                        cutouts: bool = True) -> list[Alert]:
    """Alerts from packets already decoded to dicts (ZTF or Rubin layout, told apart per record)."""
    label = name or "<records>"
    return [_packet_to_alert(rec, label, cutouts, _record_format(rec, label, "records"))
            for rec in records]


# --------------------------------------------------------------------------- Avro


def _iter_avro(stream: IO[bytes], label: str, cutouts: bool) -> Iterator[Alert]:
    import fastavro

    from astroray.io._avro import check_blocks, check_writer_schema

    start = stream.tell()
    try:
        reader = fastavro.reader(stream)
        writer_schema = reader.writer_schema
        codec = str(reader.codec)
    except Exception as exc:  # noqa: BLE001 - fastavro raises many types for bad headers (RecursionError too)
        raise InvalidAlertError(f"corrupt Avro container header ({type(exc).__name__}: {exc})",
                                source=label) from None
    fmt = _avro_format(writer_schema, label)
    # The writer schema and the blocks are untrusted too: checked before fastavro decodes a record.
    check_writer_schema(writer_schema, source=label)
    check_blocks(stream, codec, source=label, limits=current_limits())
    packets = _projected_packets(stream, start, writer_schema, codec, fmt, cutouts) or reader
    count = 0
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except Exception as exc:  # noqa: BLE001 - truncation and bit flips surface as many types
            raise InvalidAlertError(
                f"corrupt or truncated Avro data after {count} alert(s) ({type(exc).__name__}: {exc})",
                source=label) from None
        count += 1
        yield _packet_to_alert(packet, label, cutouts, fmt)
    if count == 0:
        raise InvalidAlertError("Avro container holds no alerts", source=label)


def _projected_packets(stream: IO[bytes], start: int, writer_schema: Any, codec: str, fmt: str,
                       cutouts: bool) -> Iterator[dict] | None:
    """ZTF packets with only the fields the mapper reads (4x faster than fastavro's whole packets), or ``None``
    where the projection does not cover the schema or codec (fastavro decodes those)."""
    if not fmt.startswith("ztf") or codec not in ("null", "deflate"):
        return None
    from astroray.io._avro_projection import ProjectionUnsupported, iter_projected_container

    try:
        projection = _ztf_projection(json.dumps(writer_schema, sort_keys=True), cutouts)
    except ProjectionUnsupported:
        return None
    return iter_projected_container(stream, projection, codec, start=start)


@functools.lru_cache(maxsize=8)
def _ztf_projection(writer_schema_json: str, cutouts: bool):
    from astroray.io._avro_projection import AvroProjection
    from astroray.io.ztf import ztf_fields_read

    return AvroProjection(json.loads(writer_schema_json), ztf_fields_read(cutouts=cutouts))


def _avro_format(schema: Any, label: str) -> str:
    if not isinstance(schema, Mapping) or schema.get("type") != "record":
        raise InvalidAlertError("Avro writer schema is not a record schema", source=label)
    fields = {f.get("name") for f in schema.get("fields", [])}
    full_name = str(schema.get("name", ""))
    if "candidate" in fields:
        version = schema.get("version") or ""
        return f"ztf-avro-{version}" if version else "ztf-avro"
    if "diaSource" in fields:
        # Rubin names its schemas lsst.vMAJOR_MINOR.alert.
        parts = full_name.split(".")
        if len(parts) >= 2 and parts[0] == "lsst" and parts[1].startswith("v"):
            return f"lsst-avro-{parts[1].split('_')[0]}"
        return "elasticc-avro" if "elasticc" in full_name.lower() else "lsst-avro"
    raise InvalidAlertError(
        f"Avro records of schema {full_name or '?'} are not alerts: missing field 'candidate' (ZTF) "
        "or 'diaSource' (Rubin/LSST)", source=label)


def _iter_schemaless(stream: IO[bytes], schema: Any, label: str, cutouts: bool) -> Iterator[Alert]:
    import io

    import fastavro

    from astroray.io._avro import check_writer_schema

    parsed = _load_schema(schema, label)
    check_writer_schema(parsed, source=label)
    data = read_stream(stream, name=label, error=InvalidAlertError)
    meta = {}
    # Confluent wire format: magic 0, then the registry's schema id as a big-endian int32.
    if len(data) > 5 and data[0] == 0:
        meta["confluent_schema_id"] = int.from_bytes(data[1:5], "big")
        data = data[5:]
    try:
        packet = fastavro.schemaless_reader(io.BytesIO(data), parsed)
    except Exception as exc:  # noqa: BLE001
        raise InvalidAlertError(
            f"cannot decode schemaless Avro with the given schema ({type(exc).__name__}: {exc})",
            source=label) from None
    fmt = _avro_format(parsed, label)
    alert = _packet_to_alert(packet, label, cutouts, fmt)
    alert.meta.update(meta)
    yield alert


def _load_schema(schema: Any, label: str):
    import fastavro.schema

    try:
        if isinstance(schema, (str, os.PathLike)):
            return fastavro.schema.load_schema(os.fspath(schema))
        return fastavro.parse_schema(schema)
    except Exception as exc:  # noqa: BLE001
        raise InvalidInputError(f"unusable Avro schema {schema if isinstance(schema, str) else ''} "
                                f"({type(exc).__name__}: {exc})", source=label) from None


# --------------------------------------------------------------------------- Parquet


def _iter_parquet(stream: IO[bytes], label: str, cutouts: bool) -> Iterator[Alert]:
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(stream)
        names = pfile.schema_arrow.names
    except Exception as exc:  # noqa: BLE001 - ArrowInvalid, OSError, ...
        raise InvalidAlertError(f"corrupt or truncated Parquet file ({type(exc).__name__}: {exc})",
                                source=label) from None
    flavour = _table_flavour(names, label)

    def batches():
        try:
            yield from pfile.iter_batches(batch_size=_BATCH_ROWS)
        except Exception as exc:  # noqa: BLE001
            raise InvalidAlertError(f"corrupt Parquet data ({type(exc).__name__}: {exc})",
                                    source=label) from None

    yield from _alerts_from_batches(batches(), flavour, label, cutouts)


def _table_flavour(names: list[str], label: str) -> str:
    """Which layout a table follows, from its columns; raise naming what is missing."""
    cols = set(names)
    if "alert_id" in cols and "hist_mjd" in cols:
        missing = [n for n in ALERT_SCHEMA.names if n not in cols and n not in ALERT_OPTIONAL_COLUMNS]
        if missing:
            raise InvalidAlertError(f"astroray alert table lacks column(s) {', '.join(missing)}", source=label)
        return "astroray-parquet"
    if "candidate" in cols or "objectId" in cols or "prv_candidates" in cols:
        missing = [n for n in ("objectId", "candidate") if n not in cols]
        if missing:
            raise InvalidAlertError(f"ZTF alert table lacks required column(s) {', '.join(missing)}",
                                    source=label)
        return "fink-parquet"
    if "diaSource" in cols:
        return "lsst-parquet"  # refined per row into rubin-/elasticc-parquet
    raise InvalidAlertError(
        "not an alert table: missing required column 'candidate' (ZTF), 'diaSource' (Rubin/LSST) or "
        f"'alert_id' (astroray); columns are {', '.join(names[:12])}{' ...' if len(names) > 12 else ''}",
        source=label)


def _alerts_from_batches(batches, flavour: str, label: str, cutouts: bool) -> Iterator[Alert]:
    for batch in batches:
        if flavour == "astroray-parquet":
            for alert in table_to_alerts(pa.Table.from_batches([batch])):
                yield _checked(alert, label)
            continue
        known = _ZTF_FIELDS if flavour == "fink-parquet" else _LSST_FIELDS
        extra_names = [n for n in batch.schema.names if n not in known]
        for row in batch.to_pylist():
            fmt = flavour if flavour == "fink-parquet" else _lsst_flavour(row)
            extra = split_extra_columns({n: row[n] for n in extra_names})
            yield _packet_to_alert(row, label, cutouts, fmt, extra)


def _checked(alert: Alert, label: str) -> Alert:
    """An alert read from an astroray table, held to the same checks as one mapped from a survey packet."""
    where = f"{label}: alert {alert.alert_id}"
    alert.ra, alert.dec = sky_position(alert.ra, alert.dec, source=where)
    check_photometry(alert.flux, alert.flux_err, what="the candidate", source=where)
    check_points(alert.history.flux, alert.history.flux_err, alert.history.detected, what="the history",
                 source=where)
    return alert


def _lsst_flavour(row: Mapping[str, Any]) -> str:
    dia = row.get("diaSource") or {}
    return "elasticc-parquet" if "midPointTai" in dia else "rubin-parquet"


def split_extra_columns(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Sort a broker's extra per-alert columns into clearly-named ``meta`` groups.

    Returns a dict with up to three keys: ``fink_predictions`` (classifier
    outputs: ``snn_*``, ``rf_*``, ``cats_*``, ``t2*``, ``mulens``, ...),
    ``snana_truth`` (upper-case simulation columns such as ``GENTYPE``,
    ``SIM_*``, ``PEAKMJD``) and ``broker`` (the rest: cross-matches,
    timestamps, versions).  Only scalar values are kept.
    """
    groups: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        value = _scalar(value)
        if value is _SKIP:
            continue
        if key.lower().startswith(_PREDICTION_PREFIXES):
            group = "fink_predictions"
        elif key.upper() == key and any(c.isalpha() for c in key):
            group = "snana_truth"
        else:
            group = "broker"
        groups.setdefault(group, {})[key] = value
    return groups


_SKIP = object()


def _scalar(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    return _SKIP


# --------------------------------------------------------------------------- JSON


def _iter_json(stream: IO[bytes], label: str, cutouts: bool) -> Iterator[Alert]:
    text = read_stream(stream, name=label, error=InvalidAlertError)
    try:
        doc = json.loads(text)
    except RecursionError:
        raise InvalidAlertError("JSON nested too deeply to parse", source=label) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        # JSON lines: one packet per line (each line's nesting checked)
        packets = [parse_json(line, name=label, error=InvalidAlertError) for line in text.splitlines() if line.strip()]
    else:
        depth, limit = json_depth(doc, stop=current_limits().max_json_depth + 1), current_limits().max_json_depth
        if depth > limit:
            raise InvalidAlertError(f"JSON nested more than {limit} levels deep (ReadLimits.max_json_depth)",
                                    source=label)
        packets = doc if isinstance(doc, list) else [doc]
    if not packets:
        raise InvalidAlertError("JSON holds no alerts", source=label)
    for i, packet in enumerate(packets):
        if not isinstance(packet, Mapping):
            raise InvalidAlertError(f"JSON item {i} is a {type(packet).__name__}, not an alert object",
                                    source=label)
        yield _packet_to_alert(packet, label, cutouts, _record_format(packet, label, "json"))


def _record_format(packet: Mapping[str, Any], label: str, container: str) -> str:
    if "candidate" in packet:
        return f"ztf-{container}"
    if "diaSource" in packet:
        return f"lsst-{container}"
    raise InvalidAlertError(
        f"record is not an alert: missing field 'candidate' (ZTF) or 'diaSource' (Rubin/LSST); "
        f"fields are {', '.join(list(packet)[:12])}", source=label)


# --------------------------------------------------------------------------- dispatch


def _packet_to_alert(packet: Mapping[str, Any], label: str, cutouts: bool, fmt: str,
                     extra: Mapping[str, Any] | None = None) -> Alert:
    if fmt.startswith(("ztf", "fink")):
        return ztf_packet_to_alert(packet, source=label, cutouts=cutouts, fmt=fmt, extra=extra)
    return lsst_packet_to_alert(packet, source=label, cutouts=cutouts, fmt=fmt, extra=extra)
