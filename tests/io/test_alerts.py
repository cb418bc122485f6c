"""Alert readers on the shared real packets, checked against values read independently."""
from __future__ import annotations

import gzip
import io
import json
import math

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from astroray.errors import InvalidAlertError, InvalidInputError
from astroray.io.alerts import alerts_from_records, alerts_from_table, iter_alerts, read_alerts
from astroray.records import Alert, alerts_to_table, table_to_alerts

ZTF_32 = "alerts/ztf/avro/2019_01_10_739260766315010006.avro"
ZTF_33 = "alerts/ztf/avro/472263571115115000.avro"
LSST_AVRO = {10: "alerts/lsst/schema/10/0/sample_data/fakeAlert.avro",
             11: "alerts/lsst/schema/11/0/sample_data/fakeAlert.avro"}
FINK_ZTF = "alerts/fink/alerts.parquet"
FINK_DATATEST = "alerts/fink/datatest/part-00002-bdab8e46-89c4-4ac1-8603-facd71833e8a-c000.snappy.parquet"
RUBIN = "alerts/fink/hostless_detection/rubin_sample_data_10_0.parquet"
ELASTICC = "alerts/fink/elasticc_parquet/test_elasticc_earlysnia.parquet"
ELASTICC_SEED = "alerts/fink/elasticc_sample_seed0.parquet"


def _avro_packet(path):
    with open(path, "rb") as fh:
        return next(fastavro.reader(fh))


def _ab_flux(mag):
    return 10 ** (-0.4 * (mag - 31.4))


# ----------------------------------------------------------------------------- ZTF Avro


def test_ztf_32_packet_maps_candidate_history_and_cutouts(shared_data):
    path = shared_data / ZTF_32
    packet = _avro_packet(path)
    (alert,) = read_alerts(path)
    cand = packet["candidate"]
    assert alert.object_id == "ZTF17aaacxxf" and alert.alert_id == str(packet["candid"])
    assert alert.survey == "ztf" and alert.meta["format"] == "ztf-avro-3.2"
    assert alert.mjd == pytest.approx(cand["jd"] - 2400000.5, abs=1e-9)
    assert alert.band == "r" and cand["fid"] == 2
    # isdiffpos 'f': a negative difference whose |flux| has magnitude magpsf.
    assert cand["isdiffpos"] == "f" and alert.flux < 0
    assert alert.mag == pytest.approx(cand["magpsf"], abs=1e-9)
    assert abs(alert.flux) / alert.flux_err == pytest.approx(2.5 / math.log(10) / cand["sigmapsf"], rel=1e-9)
    assert alert.scores == {"rb": pytest.approx(cand["rb"])}
    # README: 28 previous candidates; detections are those with a candid.
    prv = packet["prv_candidates"]
    assert len(alert.history) == len(prv) == 28
    n_det = sum(p["candid"] is not None for p in prv)
    assert alert.history.n_detections == n_det == 22
    limits = alert.history.select(~alert.history.detected)
    expected = sorted((p["jd"] - 2400000.5, _ab_flux(p["diffmaglim"]) / 5) for p in prv if p["candid"] is None)
    assert np.all(np.isnan(limits.flux))
    np.testing.assert_allclose(limits.mjd, [e[0] for e in expected])
    np.testing.assert_allclose(limits.flux_err, [e[1] for e in expected], rtol=1e-6)
    det = alert.history.detections()
    det_mag = 31.4 - 2.5 * np.log10(np.abs(det.flux))  # magpsf is the magnitude of |flux|
    np.testing.assert_allclose(np.sort(det_mag), np.sort([p["magpsf"] for p in prv if p["candid"] is not None]),
                               rtol=1e-9)
    negative = {round(p["jd"] - 2400000.5, 6) for p in prv if p["candid"] is not None and p["isdiffpos"] in "f0"}
    assert {round(m, 6) for m in det.mjd[det.flux < 0]} == negative
    assert set(alert.history.band) == {"g", "r"}


@pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")
def test_ztf_cutouts_are_63x63_float_images_equal_to_astropy(shared_data):
    packet = _avro_packet(shared_data / ZTF_32)
    (alert,) = read_alerts(shared_data / ZTF_32)
    for field, arr in (("cutoutScience", alert.cutout_science), ("cutoutTemplate", alert.cutout_reference),
                       ("cutoutDifference", alert.cutout_difference)):
        assert arr.shape == (63, 63) and arr.dtype == np.float32
        with fits.open(io.BytesIO(gzip.decompress(packet[field]["stampData"]))) as hdus:
            np.testing.assert_array_equal(arr, hdus[0].data.astype(np.float32))


def test_ztf_33_packet_has_only_upper_limits_and_drb(shared_data):
    packet = _avro_packet(shared_data / ZTF_33)
    (alert,) = read_alerts(shared_data / ZTF_33)
    assert alert.object_id == "ZTF17aaajnnn" and alert.meta["format"] == "ztf-avro-3.3"
    assert len(alert.history) == 11 and alert.history.n_detections == 0
    assert alert.flux > 0 and alert.mag == pytest.approx(packet["candidate"]["magpsf"])
    assert alert.scores["drb"] == pytest.approx(packet["candidate"]["drb"])


def test_bytes_and_file_objects_read_like_paths(shared_data):
    path = shared_data / ZTF_33
    data = path.read_bytes()
    from_path = read_alerts(path, cutouts=False)[0]
    from_bytes = read_alerts(data, name="kafka-message", cutouts=False)[0]
    with open(path, "rb") as fh:
        from_stream = next(iter_alerts(fh, cutouts=False))
    for a in (from_bytes, from_stream):
        assert (a.alert_id, a.flux, len(a.history)) == (from_path.alert_id, from_path.flux, len(from_path.history))
    assert from_path.cutout_science is None


# ----------------------------------------------------------------------------- LSST Avro / JSON


@pytest.mark.parametrize("version", [10, 11])
def test_lsst_avro_container_maps_dia_source(shared_data, version):
    path = shared_data / LSST_AVRO[version]
    packet = _avro_packet(path)
    (alert,) = read_alerts(path)
    dia = packet["diaSource"]
    assert alert.meta["format"] == f"lsst-avro-v{version}" and alert.survey == "lsst"
    assert alert.alert_id == str(packet["diaSourceId"])
    assert alert.flux == pytest.approx(dia["psfFlux"]) and alert.flux_err == pytest.approx(dia["psfFluxErr"])
    assert alert.band == dia["band"] and alert.mjd == dia["midpointMjdTai"]
    assert len(alert.history) == len(packet["prvDiaSources"]) == 2
    assert alert.history.n_detections == 2


@pytest.mark.parametrize("version", [10, 11])
def test_lsst_json_sample_agrees_with_its_avro_twin(shared_data, version):
    json_path = shared_data / LSST_AVRO[version].replace("fakeAlert.avro", "alert.json")
    doc = json.loads(json_path.read_text())
    (from_json,) = read_alerts(json_path)
    (from_avro,) = read_alerts(shared_data / LSST_AVRO[version])
    assert from_json.meta["format"] == "lsst-json"
    assert from_json.flux == doc["diaSource"]["psfFlux"]
    assert from_json.object_id == str(doc["diaObject"]["diaObjectId"])
    for key in ("alert_id", "mjd", "band", "flux", "flux_err", "ra", "dec"):
        assert getattr(from_json, key) == getattr(from_avro, key)
    np.testing.assert_array_equal(from_json.history.mjd, from_avro.history.mjd)


def test_schemaless_confluent_message_with_schema_file(shared_data):
    schema_path = shared_data / "alerts/lsst/schema/11/0/lsst.v11_0.alert.avsc"
    packet = _avro_packet(shared_data / LSST_AVRO[11])
    buf = io.BytesIO()
    buf.write(b"\x00" + (711).to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, fastavro.schema.load_schema(str(schema_path)), packet)
    (alert,) = read_alerts(buf.getvalue(), name="topic/offset-3", schema=schema_path)
    assert alert.meta["confluent_schema_id"] == 711
    assert alert.flux == pytest.approx(packet["diaSource"]["psfFlux"])
    with pytest.raises(InvalidAlertError, match="topic/offset-3"):
        read_alerts(buf.getvalue()[:40], name="topic/offset-3", schema=schema_path)


# ----------------------------------------------------------------------------- Parquet


@pytest.mark.parametrize("rel", [FINK_ZTF, FINK_DATATEST, RUBIN, ELASTICC, ELASTICC_SEED,
                                 "alerts/fink/agn_elasticc_alerts.parquet",
                                 "alerts/fink_broker/online/science/20200101/"
                                 "part-00000-e827d2ad-255a-42d5-8164-41fca8bed00e.c000.snappy.parquet"])
def test_parquet_alert_count_matches_row_count(shared_data, rel):
    path = shared_data / rel
    alerts = read_alerts(path, cutouts=False)
    assert len(alerts) == pq.ParquetFile(path).metadata.num_rows
    assert all(a.flux_err > 0 and np.isfinite(a.mjd) for a in alerts)


def test_fink_ztf_parquet_values_and_cutouts(shared_data):
    path = shared_data / FINK_ZTF
    df = pq.read_table(path, columns=["objectId", "candid", "candidate"]).to_pandas()
    alerts = read_alerts(path)
    assert len(alerts) == 51
    assert [a.object_id for a in alerts] == df["objectId"].tolist()
    for a, cand in zip(alerts, df["candidate"]):
        assert a.mag == pytest.approx(cand["magpsf"], abs=1e-6)
        assert (a.flux > 0) == (cand["isdiffpos"] in ("t", "1"))
        assert a.cutout_difference.shape == (63, 63) and a.cutout_difference.dtype == np.float32


def test_fink_classifier_outputs_stay_out_of_scores(shared_data):
    alerts = read_alerts(shared_data / FINK_DATATEST, cutouts=False)
    df = pq.read_table(shared_data / FINK_DATATEST, columns=["snn_snia_vs_nonia", "rf_snia_vs_nonia",
                                                             "cdsxmatch"]).to_pandas()
    for a, (_, row) in zip(alerts, df.iterrows()):
        assert set(a.scores) <= {"rb", "drb"}
        assert a.meta["fink_predictions"]["snn_snia_vs_nonia"] == pytest.approx(row["snn_snia_vs_nonia"],
                                                                                  nan_ok=True)
        assert "rf_snia_vs_nonia" in a.meta["fink_predictions"]
        assert a.meta["broker"]["cdsxmatch"] == row["cdsxmatch"]


def test_elasticc_truth_and_predictions_kept_apart(shared_data):
    alerts = read_alerts(shared_data / ELASTICC, cutouts=False)
    gentype = pq.read_table(shared_data / ELASTICC, columns=["GENTYPE"]).column(0).to_pylist()
    assert [a.meta["snana_truth"]["GENTYPE"] for a in alerts] == gentype
    for a in alerts:
        assert a.scores == {} and a.meta["format"] == "elasticc-parquet"
        assert not any(k.startswith(("snn_", "cats_", "rf_")) for k in a.meta["snana_truth"])
        assert "cats_broad_class" in a.meta["fink_predictions"]


def test_elasticc_history_keeps_detections_and_forced_photometry_apart(shared_data):
    path = shared_data / ELASTICC_SEED
    rows = pq.read_table(path, columns=["diaSource", "prvDiaSources", "prvDiaForcedSources"]).to_pylist()
    alerts = read_alerts(path, cutouts=False)
    for a, row in zip(alerts, rows):
        prv = row["prvDiaSources"] or []
        epochs = {(round(p["midPointTai"], 4), p["filterName"]) for p in prv + [row["diaSource"]]}
        forced_new = [f for f in row["prvDiaForcedSources"] or []
                      if (round(f["midPointTai"], 4), f["filterName"]) not in epochs]
        assert a.history.n_detections == len(prv)
        assert len(a.history) == len(prv) + len(forced_new)
        forced = a.history.select(~a.history.detected)
        assert np.all(np.isfinite(forced.flux))
        np.testing.assert_allclose(np.sort(forced.flux), np.sort([f["psFlux"] for f in forced_new]), rtol=1e-6)


def test_rubin_parquet_reliability_and_cutouts(shared_data):
    path = shared_data / RUBIN
    dia = pq.read_table(path, columns=["diaSource"]).column(0).to_pylist()
    alerts = read_alerts(path)
    for a, d in zip(alerts, dia):
        assert a.meta["format"] == "rubin-parquet"
        assert a.scores["reliability"] == pytest.approx(d["reliability"])
        assert a.flux == pytest.approx(d["psfFlux"]) and a.band == d["band"]
        assert a.cutout_science.ndim == 2 and a.cutout_science.dtype == np.float32


# ----------------------------------------------------------------------------- tables and round trips


def test_arrow_round_trip_keeps_alerts(shared_data):
    alerts = read_alerts(shared_data / ZTF_32) + read_alerts(shared_data / RUBIN)[:3]
    back = table_to_alerts(alerts_to_table(alerts))
    for a, b in zip(alerts, back):
        assert (a.alert_id, a.object_id, a.band, a.flux, a.scores) == (b.alert_id, b.object_id, b.band, b.flux,
                                                                        b.scores)
        np.testing.assert_array_equal(a.cutout_difference, b.cutout_difference)
        np.testing.assert_array_equal(a.history.detected, b.history.detected)
        np.testing.assert_array_equal(a.history.flux_err, b.history.flux_err)
    # the survey's context travels as JSON: ZTF's star-galaxy score of the nearest source, Rubin's diaObject
    assert back[0].meta["sgscore1"] == pytest.approx(0.990625, abs=1e-6) and back[0].meta["isdiffpos"] == "f"
    assert back[-1].meta.keys() == alerts[-1].meta.keys() and "diaObject" in back[-1].meta


def test_alert_table_meta_is_strict_json_and_old_tables_without_it_still_read(shared_data, tmp_path):
    from astroray.records import LightCurve

    a = read_alerts(shared_data / ZTF_32)[0]
    a.meta = {"x": np.float32(1.5), "nan": float("nan"), "arr": np.arange(3), "nested": {"b": np.bool_(True)},
              "tags": {"b", "a"}, "raw": [b"\x00", 1]}
    bare = Alert("id", "obj", "ztf", 1.0, 2.0, 3.0, "g", 1.0, 0.1, LightCurve("obj", [], [], [], [], []))
    table = alerts_to_table([a, bare])
    assert table.column("meta_json").to_pylist()[1] is None
    assert json.loads(table.column("meta_json")[0].as_py()) == {"x": 1.5, "nan": None, "arr": [0, 1, 2],
                                                                 "nested": {"b": True}, "tags": ["a", "b"],
                                                                 "raw": [1]}
    out = tmp_path / "old.parquet"
    pq.write_table(table.drop_columns(["meta_json"]), out)
    back = read_alerts(out)
    assert len(back) == 2 and back[0].meta == {}


def test_astroray_alert_parquet_is_read_back(shared_data, tmp_path):
    alerts = read_alerts(shared_data / ZTF_32)
    out = tmp_path / "alerts.parquet"
    pq.write_table(alerts_to_table(alerts), out)
    (back,) = read_alerts(out)
    assert back.object_id == "ZTF17aaacxxf" and len(back.history) == 28
    np.testing.assert_array_equal(back.cutout_science, alerts[0].cutout_science)


def test_alerts_from_table_and_records(shared_data):
    table = pq.read_table(shared_data / FINK_ZTF).slice(0, 5)
    from_table = alerts_from_table(table.to_pandas(), cutouts=False)
    from_records = alerts_from_records(table.to_pylist(), cutouts=False)
    assert [a.alert_id for a in from_table] == [a.alert_id for a in from_records] == \
        [str(c) for c in table.column("candid").to_pylist()]


# ----------------------------------------------------------------------------- bad input


def test_truncated_avro_names_file_and_problem(shared_data, tmp_path):
    data = (shared_data / ZTF_32).read_bytes()
    bad = tmp_path / "truncated.avro"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidAlertError, match=r"truncated\.avro.*truncated Avro data"):
        read_alerts(bad)


def test_avro_with_corrupt_sync_marker(shared_data):
    data = (shared_data / LSST_AVRO[11]).read_bytes()
    with pytest.raises(InvalidAlertError, match=r"flipped\.avro: corrupt"):
        read_alerts(data[:-16] + bytes(b ^ 0xFF for b in data[-16:]), name="flipped.avro")


def test_avro_with_garbage_header(shared_data):
    data = (shared_data / ZTF_33).read_bytes()
    with pytest.raises(InvalidAlertError, match="corrupt Avro container header"):
        read_alerts(data[:4] + b"\xff" * 32 + data[36:], name="hdr.avro")


def test_garbage_and_empty_bytes(tmp_path):
    with pytest.raises(InvalidAlertError, match="junk.bin: not an alert file"):
        read_alerts(b"\x89PNG\r\n\x1a\n" + bytes(100), name="junk.bin")
    empty = tmp_path / "empty.avro"
    empty.write_bytes(b"")
    with pytest.raises(InvalidAlertError, match="empty.avro: empty input"):
        read_alerts(empty)
    with pytest.raises(InvalidInputError, match="no such file"):
        read_alerts(tmp_path / "missing.avro")


def test_parquet_missing_required_column(shared_data, tmp_path):
    table = pq.read_table(shared_data / FINK_ZTF).drop_columns(["candidate"])
    bad = tmp_path / "no_candidate.parquet"
    pq.write_table(table, bad)
    with pytest.raises(InvalidAlertError, match=r"no_candidate\.parquet: ZTF alert table lacks .*candidate"):
        read_alerts(bad)
    other = tmp_path / "not_alerts.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), other)
    with pytest.raises(InvalidAlertError, match="not an alert table: missing required column 'candidate'"):
        read_alerts(other)


def test_truncated_parquet(shared_data):
    data = (shared_data / RUBIN).read_bytes()
    with pytest.raises(InvalidAlertError, match="cut.parquet: corrupt or truncated Parquet"):
        read_alerts(data[: len(data) // 3], name="cut.parquet")


def test_ztf_packet_missing_fields_and_broken_cutout(shared_data):
    packet = _avro_packet(shared_data / ZTF_33)
    no_mag = dict(packet, candidate={k: v for k, v in packet["candidate"].items() if k != "magpsf"})
    with pytest.raises(InvalidAlertError, match="ZTF17aaajnnn: candidate .* lacks magpsf"):
        alerts_from_records([no_mag], name="pkt")
    broken = dict(packet, cutoutScience={"fileName": "x", "stampData": b"\x1f\x8b" + bytes(40)})
    with pytest.raises(InvalidAlertError, match="cutoutScience is not a valid gzip stream"):
        alerts_from_records([broken], name="pkt")
    broken = dict(packet, cutoutScience={"fileName": "x", "stampData": b"SIMPLE  =" + bytes(40)})
    with pytest.raises(InvalidAlertError, match="cutoutScience is not a readable FITS image"):
        alerts_from_records([broken], name="pkt")


def test_json_that_is_not_an_alert():
    with pytest.raises(InvalidAlertError, match="doc.json: record is not an alert: missing field 'candidate'"):
        read_alerts(b'{"hello": 1}', name="doc.json")
    with pytest.raises(InvalidAlertError, match="doc.json: invalid JSON"):
        read_alerts(b'{"hello": ', name="doc.json")


# ----------------------------------------------------------------------------- ZTF schema 4 (forced photometry)


def _ztf4_schema(shared_data):
    parts = ("cutout", "candidate", "prv_candidate", "fp_hist", "alert")
    return fastavro.schema.load_schema_ordered([str(shared_data / f"alerts/ztf/schema/{p}.avsc") for p in parts])


def test_ztf_4_forced_photometry_joins_history(shared_data):
    packet = _avro_packet(shared_data / ZTF_33)
    cand = packet["candidate"]
    prv_jd = packet["prv_candidates"][0]["jd"]
    base = {"field": 1, "rcid": 2, "pid": 1, "rfid": 7, "programid": 1, "ranr": 0.0, "decnr": 0.0}
    fp_hists = [
        dict(base, fid=2, jd=prv_jd, forcediffimflux=150.0, forcediffimfluxunc=10.0, magzpsci=26.0),
        dict(base, fid=1, jd=prv_jd + 1, forcediffimflux=-99999.0, forcediffimfluxunc=-99999.0, magzpsci=26.0),
        dict(base, fid=2, jd=cand["jd"], forcediffimflux=900.0, forcediffimfluxunc=12.0, magzpsci=26.0),
    ]
    packet4 = dict(packet, schemavsn="4.02", fp_hists=fp_hists)
    packet4["candidate"] = {k: v for k, v in cand.items()}
    buf = io.BytesIO()
    fastavro.writer(buf, _ztf4_schema(shared_data), [packet4])
    (alert,) = read_alerts(buf.getvalue(), name="ztf4.avro")
    assert alert.meta["format"] == "ztf-avro-4.02"
    # 11 limits + 1 forced point: the flagged one (-99999) and the one at the alert's own epoch are dropped.
    assert len(alert.history) == 12 and alert.history.n_detections == 0
    forced = alert.history.select(np.isfinite(alert.history.flux))
    assert len(forced) == 1
    assert forced.flux[0] == pytest.approx(150.0 * 10 ** (-0.4 * (26.0 - 31.4)))
    assert forced.flux_err[0] == pytest.approx(10.0 * 10 ** (-0.4 * (26.0 - 31.4)))


def test_json_list_and_json_lines(shared_data):
    doc = json.loads((shared_data / "alerts/lsst/schema/10/0/sample_data/alert.json").read_text())
    second = dict(doc, diaSourceId=doc["diaSourceId"] + 1)
    as_list = read_alerts(json.dumps([doc, second]).encode(), name="list.json")
    as_lines = read_alerts((json.dumps(doc) + "\n" + json.dumps(second) + "\n").encode(), name="alerts.jsonl")
    assert [a.alert_id for a in as_list] == [a.alert_id for a in as_lines] == \
        [str(doc["diaSourceId"]), str(doc["diaSourceId"] + 1)]


@pytest.mark.parametrize("folder, expected", [
    ("alerts/fink/datatest", 124),  # README: 124 real ZTF alerts with Fink outputs
    ("alerts/fink_broker", 13),  # README: 13 raw real ZTF alerts
    ("alerts/fink/or4_lsst7.1", 50),  # README: 50 simulated Rubin alerts
    ("alerts/fink/hostless_detection", 25),  # README: 25 real Rubin LSSTCam alerts
])
def test_alert_counts_stated_in_data_readme(shared_data, folder, expected):
    files = sorted((shared_data / folder).rglob("*.parquet"))
    assert sum(len(read_alerts(f, cutouts=False)) for f in files) == expected
