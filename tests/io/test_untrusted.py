"""Untrusted input never hangs, balloons or lies: one test per case of issue 20, each with the typed error it gets."""
from __future__ import annotations

import copy
import io
import json
import os
import time

import numpy as np
import pytest

from astroray.errors import (
    InvalidAlertError,
    InvalidFITSError,
    InvalidInputError,
    InvalidLightCurveError,
)
from astroray.io import check_path, read_alerts, read_exposure, read_lightcurve
from astroray.io.check import check_file
from astroray.io.limits import ReadLimits, gunzip_bounded, parse_json, using_limits
from astroray.io.sniff import detect_format
from astroray.testing.fuzz import gzip_bomb

ZTF = "alerts/ztf/avro/472263571115115000.avro"


@pytest.fixture(scope="module")
def exposure():
    from astroray.datasets import ImagePairConfig, simulate_pair

    return simulate_pair(ImagePairConfig(shape=(64, 64)), seed=1, index=0).science


@pytest.fixture(scope="module")
def exposure_bytes(exposure):
    from astroray.io.fits import exposure_to_bytes

    return exposure_to_bytes(exposure)


def _with_plane(data: bytes, extname: str, values) -> bytes:
    from astropy.io import fits

    hdul = fits.open(io.BytesIO(data))
    hdul[extname].data = values
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def _card(data: bytes, key: bytes, value: bytes, after: int) -> bytes:
    buf = bytearray(data)
    k = buf.index(key.ljust(8) + b"=", after)
    buf[k:k + 80] = (key.ljust(8) + b"= " + value.rjust(20)).ljust(80)
    return bytes(buf)


# --------------------------------------------------------------------------- 1. nothing hangs or balloons


def test_negative_naxis_is_refused_by_every_fits_path(exposure_bytes, tmp_path):
    bad = _card(exposure_bytes, b"NAXIS1", b"-5", 2880)
    path = tmp_path / "neg.fits"
    path.write_bytes(bad)
    with pytest.raises(InvalidFITSError, match="NAXIS1 = -5"):
        read_exposure(path)
    fmt = detect_format(path)  # from the header cards, never through astropy
    assert fmt.kind == "unknown" and "NAXIS1 = -5" in fmt.detail
    result = check_file(path)
    assert "NAXIS1 = -5" in result.error


def test_gzip_bomb_fits_is_refused_at_the_limit_with_the_reason(exposure_bytes, tmp_path):
    path = tmp_path / "bomb.fits.gz"
    path.write_bytes(gzip_bomb(exposure_bytes[:2880 * 3], expand_mb=2048))  # ~2 MB that inflate to 2 GB
    assert path.stat().st_size < 3 * 2**20
    t0 = time.perf_counter()
    with using_limits(ReadLimits(max_decompressed_mb=32)):
        with pytest.raises(InvalidFITSError, match=r"expands past 32\.0 MB .* decompression bomb.*max_decompressed_mb"):
            read_exposure(path)
        assert "decompression bomb" in check_file(path).error
    assert time.perf_counter() - t0 < 10


def test_the_decompression_limit_is_configurable_from_the_environment(monkeypatch):
    data = gzip_bomb(b"x", expand_mb=48)
    monkeypatch.setenv("ASTRORAY_MAX_DECOMPRESSED_MB", "16")
    with pytest.raises(InvalidInputError, match="16.0 MB"):
        gunzip_bounded(data, name="env")
    monkeypatch.setenv("ASTRORAY_MAX_DECOMPRESSED_MB", "64")
    assert len(gunzip_bounded(data, name="env")) == 48 * 2**20 + 1
    monkeypatch.setenv("ASTRORAY_MAX_DECOMPRESSED_MB", "-3")
    from astroray.errors import ConfigError

    with pytest.raises(ConfigError, match="ASTRORAY_MAX_DECOMPRESSED_MB"):
        gunzip_bounded(data, name="env")


def test_ztf_cutout_bomb_inside_an_avro_packet(shared_data):
    import fastavro

    with open(shared_data / ZTF, "rb") as fh:
        reader = fastavro.reader(fh)
        schema, packet = reader.writer_schema, next(reader)
    packet["cutoutDifference"]["stampData"] = gzip_bomb(b"SIMPLE  =", expand_mb=2048)
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [packet])
    with pytest.raises(InvalidAlertError, match=r"cutoutDifference expands past 16\.0 MB .*max_cutout_mb"):
        read_alerts(buf.getvalue(), name="bomb.avro")
    assert len(read_alerts(buf.getvalue(), name="bomb.avro", cutouts=False)) == 1  # light-curve work unaffected


def test_avro_schemas_that_crash_or_spin_fastavro_are_refused_first(tmp_path):
    from astroray.testing.fuzz import _raw_container, _zz

    recursive = _raw_container({"type": "record", "name": "A", "fields": [{"name": "candidate", "type": "A"}]},
                               _zz(1) + _zz(10) + bytes(10))
    with pytest.raises(InvalidAlertError, match="contains itself"):  # fastavro's reader segfaults on it
        read_alerts(recursive, name="recursive.avro")
    spin = _raw_container({"type": "record", "name": "B", "fields": [
        {"name": "candidate", "type": {"type": "array", "items": "null"}}]}, _zz(1) + _zz(12) + _zz(2**40) + bytes(6))
    with pytest.raises(InvalidAlertError, match="items take no bytes"):
        read_alerts(spin, name="spin.avro")


def test_io_check_skips_what_is_not_a_regular_file_and_reports_every_failure(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    os.mkfifo(root / "incoming.avro")  # nobody writes: opening it for reading would block for ever
    os.symlink("/dev/zero", root / "zero.fits")
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "deep.avsc").write_text('{"type": ' * 3000 + '"int"' + "}" * 3000)
    (root / "good.csv").write_text("time,mag,magerr,band\n1,15,0.1,g\n2,15.1,0.1,g\n")
    (root / "after.csv").write_text("time,mag,magerr,band\n1,inf,0.1,g\n")
    os.symlink("nowhere.fits", root / "dangling.fits")
    t0 = time.perf_counter()
    report = check_path(root)
    assert time.perf_counter() - t0 < 30
    assert dict(report.skipped) == {"incoming.avro": "a named pipe", "zero.fits": "a character device"}
    failed = {f.path: f.error for f in report.failures}
    assert set(failed) == {"deep.json", "deep.avsc", "after.csv", "dangling.fits"}  # the walk went on to the end
    assert "nested too deeply" in failed["deep.json"] and "nested" in failed["deep.avsc"]
    assert "infinite" in failed["after.csv"] and "cannot read" in failed["dangling.fits"]
    assert not any(e.startswith("unexpected") for e in failed.values())
    assert [f.path for f in report.files if f.ok] == ["good.csv"]
    assert "skipped (not regular files, never opened)" in report.to_text()
    assert report.to_dict()["skipped"] == [{"path": "incoming.avro", "reason": "a named pipe"},
                                           {"path": "zero.fits", "reason": "a character device"}]


def test_deep_json_is_a_typed_error():
    with pytest.raises(InvalidAlertError, match="nested too deeply"):
        read_alerts(b"[" * 100_000 + b"]" * 100_000, name="deep.json")
    with pytest.raises(InvalidInputError, match="nested more than 64 levels"):
        parse_json('{"a":' * 200 + "1" + "}" * 200, name="deep.json")


# --------------------------------------------------------------------------- 2. nothing wrong passes silently


def _lc_csv(tmp_path, row: str):
    path = tmp_path / "lc.csv"
    path.write_text(f"time,mag,magerr,band\n51000.1,17.0,0.01,g\n{row}\n51000.3,17.1,0.01,r\n")
    return path


def test_lightcurve_csv_with_inf_magnitude_or_negative_error(tmp_path):
    with pytest.raises(InvalidLightCurveError, match="column mag has 1 infinite value"):
        read_lightcurve(_lc_csv(tmp_path, "51000.2,inf,0.01,g"))
    with pytest.raises(InvalidLightCurveError, match="column magerr has 1 negative or infinite"):
        read_lightcurve(_lc_csv(tmp_path, "51000.2,17.0,-0.01,g"))
    with pytest.raises(InvalidLightCurveError, match="infinite flux"):
        read_lightcurve(_lc_csv(tmp_path, "51000.2,-1000,0.01,g"))  # finite mag, infinite flux
    # the documented repair: a missing (empty or NaN) magnitude drops its row, counted
    lc = read_lightcurve(_lc_csv(tmp_path, "51000.2,NaN,0.01,g"))
    assert len(lc) == 2 and lc.meta["n_dropped"] == 1


def test_alerce_and_snana_tables_with_impossible_values(tmp_path):
    path = tmp_path / "det.csv"
    path.write_text("objectId,fid,mjd,magpsf,sigmapsf,isdiffpos\nZTF1,1,58000.1,19.0,0.1,t\nZTF1,2,58001.1,inf,0.1,t\n")
    with pytest.raises(InvalidLightCurveError, match="column magpsf has 1 infinite"):
        read_lightcurve(path)
    path.write_text("SNID,MJD,FLUXCAL,FLUXCALERR,FLT\n7,56000.1,10.0,-2.0,g\n7,-777,-777,-777,-\n")
    with pytest.raises(InvalidLightCurveError, match="column FLUXCALERR has 1 negative"):
        read_lightcurve(path)


@pytest.mark.parametrize("field, value, message", [
    ("ra", 999.0, r"ra = 999 deg is outside"), ("dec", -200.0, r"dec = -200 deg is outside -90\.\.90"),
    ("ra", float("nan"), "ra = nan is not a finite number"), ("dec", float("nan"), "dec = nan"),
    ("magpsf", float("inf"), "magpsf = inf is not a finite number"),
    ("sigmapsf", -0.1, "sigmapsf = -0.1: a magnitude error must be positive")])
def test_ztf_alert_with_impossible_candidate(shared_data, field, value, message):
    import fastavro

    with open(shared_data / ZTF, "rb") as fh:
        reader = fastavro.reader(fh)
        schema, packet = reader.writer_schema, next(reader)
    packet = copy.deepcopy(packet)
    packet["candidate"][field] = value
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [packet])
    with pytest.raises(InvalidAlertError, match=message):
        read_alerts(buf.getvalue(), name="bad.avro", cutouts=False)


def test_negative_ra_within_a_turn_is_wrapped_not_refused(shared_data):
    """ELAsTiCC writes ra = -0.01 for 359.99: a documented repair, not an error."""
    import fastavro

    from astroray.io.ztf import ztf_packet_to_alert

    with open(shared_data / ZTF, "rb") as fh:
        packet = next(fastavro.reader(fh))
    packet["candidate"]["ra"] = -0.25
    assert ztf_packet_to_alert(packet, cutouts=False).ra == pytest.approx(359.75)


def test_lsst_reader_gives_typed_errors_not_value_errors(shared_data):
    doc = json.loads((shared_data / "alerts/lsst/schema/11/0/sample_data/alert.json").read_text())
    for field, value, message in (("midpointMjdTai", "soon", "midpointMjdTai = 'soon' is not a number"),
                                  ("ra", 999.0, "ra = 999"), ("psfFlux", float("inf"), "diaSource psf flux is inf"),
                                  ("psfFluxErr", -1.0, "error is -1")):
        bad = copy.deepcopy(doc)
        bad["diaSource"][field] = value
        with pytest.raises(InvalidAlertError, match=message):
            read_alerts(json.dumps(bad).encode(), name="lsst.json")
    bad = copy.deepcopy(doc)
    bad["diaSource"]["diaObjectId"] = float("nan")
    if isinstance(bad.get("diaObject"), dict):
        bad["diaObject"].pop("diaObjectId", None)
    with pytest.raises(InvalidAlertError, match="diaObjectId = nan"):  # was: ValueError: cannot convert float NaN
        read_alerts(json.dumps(bad).encode(), name="lsst.json")


@pytest.mark.parametrize("plane, values, message", [
    ("VARIANCE", np.full((64, 64), np.nan, np.float32), "VARIANCE has no positive finite value"),
    ("VARIANCE", -np.ones((64, 64), np.float32), "VARIANCE has 4096 negative value"),
    ("PSF", np.zeros((45, 45), np.float32), "PSF sums to 0"),
    ("PSF", np.full((45, 45), np.nan, np.float32), "PSF has 2025 NaN or inf"),
])
def test_exposure_with_unusable_variance_or_psf(exposure_bytes, plane, values, message):
    with pytest.raises(InvalidFITSError, match=message):
        read_exposure(_with_plane(exposure_bytes, plane, values), name="e.fits")


def test_exposure_of_one_pixel_is_refused(exposure):
    from astroray.io.fits import exposure_to_bytes
    from astroray.records import Exposure

    tiny = Exposure(exposure.image[:1, :1], exposure.variance[:1, :1], exposure.mask[:1, :1], exposure.psf,
                    meta=dict(exposure.meta))
    with pytest.raises(InvalidFITSError, match="IMAGE is 1x1 pixels: an exposure needs at least 2"):
        read_exposure(exposure_to_bytes(tiny), name="tiny.fits")


@pytest.mark.parametrize("value, message", [(b"16", "are not an HDU: its BITPIX or NAXISn understates"),
                                            (b"32", "IMAGE has BITPIX = 32 .integers. without BSCALE")])
def test_integer_bitpix_on_float32_data(exposure_bytes, value, message):
    with pytest.raises(InvalidFITSError, match=message):
        read_exposure(_card(exposure_bytes, b"BITPIX", value, 2880), name="lie.fits")


def test_io_check_fails_what_it_used_to_pass(tmp_path):
    (tmp_path / "one.fits").write_bytes(b"S")
    (tmp_path / "text.avro").write_text("hello\n")
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbftime,mag,magerr,band\n1,15,0.1,g\n2,15.2,0.1,r\n")
    report = check_path(tmp_path)
    failed = {f.path: f.error for f in report.failures}
    assert set(failed) == {"one.fits", "text.avro"}
    assert "named .fits but the content is not FITS (1 bytes" in failed["one.fits"]
    assert "named .avro but the content is not AVRO" in failed["text.avro"]
    bom = next(f for f in report.files if f.path == "bom.csv")
    assert (bom.kind, bom.format, bom.n_points) == ("lightcurves", "lc-csv", 2)  # not "metadata"
    for special in ("/dev/zero", _fifo(tmp_path)):
        with pytest.raises(InvalidInputError, match="not a regular file or a folder"):
            check_path(special)


def test_io_check_cli_exit_status_on_special_paths(tmp_path):
    from astroray.cli import main

    assert main(["io", "check", "/dev/zero", "--no-progress"]) == 2
    assert main(["io", "check", _fifo(tmp_path), "--no-progress"]) == 2
    (tmp_path / "one.fits").write_bytes(b"S")
    assert main(["io", "check", str(tmp_path / "one.fits"), "--no-progress"]) == 1


def _fifo(tmp_path) -> str:
    path = tmp_path / "pipe"
    if not path.exists():
        os.mkfifo(path)
    return str(path)


def test_readers_refuse_pipes_and_devices_without_blocking(tmp_path):
    fifo = _fifo(tmp_path)
    with pytest.raises(InvalidFITSError, match="named pipe"):
        read_exposure(fifo)
    with pytest.raises(InvalidInputError, match="named pipe"):
        read_alerts(fifo)
    with pytest.raises(InvalidInputError, match="character device"):
        read_lightcurve("/dev/zero")


def test_files_above_the_size_limit_are_refused_before_reading(exposure_bytes, tmp_path):
    path = tmp_path / "e.fits"
    path.write_bytes(exposure_bytes)
    with using_limits(ReadLimits(max_file_mb=0.01)):
        with pytest.raises(InvalidFITSError, match="above the limit of 10.2 kB|above the limit of"):
            read_exposure(path)
    assert read_exposure(path).shape == (64, 64)
