"""check_path on the shared folders (zero failures, every file accounted for) and on a broken copy."""
from __future__ import annotations

import os
import shutil

import pyarrow.parquet as pq
import pytest

from astroray.errors import InvalidInputError
from astroray.io.check import check_path


def _walk_count(root) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


@pytest.fixture(scope="module")
def alerts_report(shared_data):
    return check_path(shared_data / "alerts")


@pytest.fixture(scope="module")
def lightcurves_report(shared_data):
    return check_path(shared_data / "lightcurves", cutouts=False)


def test_alerts_folder_reads_every_file(shared_data, alerts_report):
    report = alerts_report
    assert report.ok, report.to_text()
    assert report.n_files == _walk_count(shared_data / "alerts")
    assert sum(report.counts_by_kind().values()) + len(report.failures) == report.n_files
    # Every alert: Parquet rows (from the footers) plus the 2 ZTF and 2 LSST Avro packets and 2 JSON samples.
    parquet_rows = sum(pq.ParquetFile(os.path.join(d, f)).metadata.num_rows
                       for d, _, files in os.walk(shared_data / "alerts") for f in files if f.endswith(".parquet"))
    n_alerts = sum(r["records"] for r in report.by_format() if r["kind"] == "alerts")
    assert n_alerts == parquet_rows + 6
    n_avsc = sum(f.endswith(".avsc") for _, _, files in os.walk(shared_data / "alerts") for f in files)
    assert report.counts_by_kind()["schema"] == n_avsc


def test_lightcurves_folder_reads_every_file(shared_data, lightcurves_report):
    report = lightcurves_report
    assert report.ok, report.to_text()
    assert report.n_files == _walk_count(shared_data / "lightcurves")
    assert sum(report.counts_by_kind().values()) == report.n_files
    lc_csv = next(r for r in report.by_format() if r["format"] == "lc-csv")
    n_csv = sum(len(os.listdir(shared_data / f"lightcurves/{s}/light-curves")) for s in ("rrlyrae", "bts_snia"))
    assert lc_csv["files"] == lc_csv["objects"] == n_csv == 289 + 1373
    kinds = report.counts_by_kind()
    assert kinds["labels"] >= 5 and kinds["features"] == 2 and kinds["documentation"] == 2
    # The cut-short SNANA PHOT file is read, with a note saying what was skipped.
    notes = [n for f in report.files for n in f.notes]
    assert any("89 of 200" in n for n in notes)
    text = report.to_text()
    assert "OK" in text and "lc-csv" in text and "labels-csv" in text


def test_broken_copy_reports_each_failure(shared_data, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    shutil.copy(shared_data / "alerts/ztf/avro/472263571115115000.avro", root / "good.avro")
    data = (shared_data / "alerts/ztf/avro/2019_01_10_739260766315010006.avro").read_bytes()
    (root / "truncated.avro").write_bytes(data[: len(data) // 2])
    pq.write_table(pq.read_table(shared_data / "alerts/fink/alerts.parquet").drop_columns(["candidate"]),
                   root / "no_candidate.parquet")
    (root / "empty.csv").write_text("")
    (root / "garbage.avro").write_bytes(b"\x00\x01\x02" * 50)
    (root / "notes.bin").write_bytes(bytes(range(256)))
    (root / "README.md").write_text("# test data\n")
    report = check_path(root)
    assert not report.ok
    assert report.n_files == 7
    failed = {f.path: f.error for f in report.failures}
    assert set(failed) == {"truncated.avro", "no_candidate.parquet", "empty.csv", "garbage.avro"}
    assert "truncated Avro" in failed["truncated.avro"]
    assert "lacks required column(s) candidate" in failed["no_candidate.parquet"]
    assert sum(report.counts_by_kind().values()) + len(report.failures) == report.n_files
    assert report.counts_by_kind() == {"alerts": 1, "unknown": 1, "documentation": 1}
    text = report.to_text()
    assert "FAILED (4 file(s))" in text and "truncated.avro" in text
    assert report.to_dict()["n_files"] == 7


def test_missing_path_raises(tmp_path):
    with pytest.raises(InvalidInputError, match="no such file or folder"):
        check_path(tmp_path / "nope")


def test_exposures_and_images_are_parsed(shared_data, tmp_path):
    import numpy as np

    from astroray.io.sniff import detect_format
    from astroray.io.fits import write_exposure
    from astroray.records import Exposure

    psf = np.zeros((5, 5), np.float32)
    psf[2, 2] = 1.0
    shape = (32, 32)
    exposure = Exposure(np.ones(shape, np.float32), np.ones(shape, np.float32), np.zeros(shape, np.uint32), psf,
                        meta={"exposure_id": "e1", "band": "r"})
    write_exposure(exposure, tmp_path / "e1.fits")
    data = (tmp_path / "e1.fits").read_bytes()
    (tmp_path / "cut.fits").write_bytes(data[: len(data) - 2880])
    shutil.copy(shared_data / "images/sep/image.fits", tmp_path / "frame.fits")
    assert detect_format(tmp_path / "e1.fits").format == "exposure-fits"
    report = check_path(tmp_path)
    assert report.n_files == 3
    assert [f.path for f in report.failures] == ["cut.fits"]
    assert "truncated" in report.failures[0].error
    assert {(r["format"], r["files"]) for r in report.by_format()} == {("exposure-fits", 1), ("fits-image", 1)}
