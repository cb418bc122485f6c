"""Format detection on the shared files and on files built to mislead it."""
from __future__ import annotations

import pytest

from astroray.io.sniff import FileFormat, classify_columns, detect_format, sniff_container

CASES = [
    ("alerts/ztf/avro/2019_01_10_739260766315010006.avro", "alerts", "ztf-avro-3.2"),
    ("alerts/ztf/avro/472263571115115000.avro", "alerts", "ztf-avro-3.3"),
    ("alerts/lsst/schema/10/0/sample_data/fakeAlert.avro", "alerts", "lsst-avro-v10"),
    ("alerts/lsst/schema/11/0/sample_data/fakeAlert.avro", "alerts", "lsst-avro-v11"),
    ("alerts/lsst/schema/11/0/sample_data/alert.json", "alerts", "lsst-json"),
    ("alerts/lsst/schema/11/0/lsst.v11_0.diaSource.avsc", "schema", "avro-schema"),
    ("alerts/ztf/schema/candidate.avsc", "schema", "avro-schema"),
    ("alerts/fink/alerts.parquet", "alerts", "fink-parquet"),
    ("alerts/fink/hostless_detection/rubin_sample_data_10_0.parquet", "alerts", "rubin-parquet"),
    ("alerts/fink/elasticc_sample_seed0.parquet", "alerts", "elasticc-parquet"),
    ("lightcurves/rrlyrae/light-curves/1013184.csv", "lightcurves", "lc-csv"),
    ("lightcurves/bts_snia/light-curves/ZTF17aadlxmv.csv", "lightcurves", "lc-csv"),
    ("lightcurves/rrlyrae/periods.csv", "labels", "labels-csv"),
    ("lightcurves/bts_snia/bts.csv", "labels", "labels-csv"),
    ("lightcurves/rrlyrae/apj326724t2.txt", "labels", "cds-mrt"),
    ("lightcurves/rrlyrae/README.md", "documentation", "markdown"),
    ("lightcurves/alerce_lc_classifier/data_examples/2000_labels.csv", "labels", "labels-csv"),
    ("lightcurves/alerce_lc_classifier/data_examples/100_objects.csv", "metadata", "table-csv"),
    ("lightcurves/alerce_lc_classifier/data_examples/100_objects_features.csv", "features", "features-csv"),
    ("lightcurves/alerce_lc_classifier/data_examples/30_sne_detections_corr.csv", "lightcurves",
     "alerce-detections-csv"),
    ("lightcurves/alerce_lc_classifier/data_examples/30_sne_non_detections.csv", "lightcurves",
     "alerce-non-detections-csv"),
    ("lightcurves/alerce_lc_classifier/examples/data/non_detections_sample.parquet", "lightcurves",
     "alerce-non-detections-parquet"),
    ("lightcurves/alerce_lc_classifier/examples/data/features_sample.parquet", "features", "features-parquet"),
    ("lightcurves/alerce_lc_classifier/examples/data/object_info_sample.parquet", "metadata", "table-parquet"),
    ("lightcurves/alerce_lc_classifier/data_examples/elasticc_lc_chunk.parquet", "lightcurves", "snana-parquet"),
    ("lightcurves/alerce_lc_classifier/data_examples/elasticc_metadata_chunk.parquet", "metadata",
     "table-parquet"),
    ("lightcurves/supernnova/tests/raw/DES_Ia-0001_HEAD.FITS", "lightcurves", "snana-fits"),
    ("lightcurves/supernnova/tests/raw/DES_Ia-0001_PHOT.FITS", "lightcurves", "snana-fits-phot"),
    ("lightcurves/supernnova/tests/raw_csv/DES_PHOT.csv", "lightcurves", "snana-csv"),
    ("lightcurves/supernnova/tests/raw_csv/DES_HEAD.csv", "labels", "labels-csv"),
    ("lightcurves/elasticc/classId=113/part-0-0.parquet", "alerts", "elasticc-parquet"),
    ("labels/snmachine/snmachine/example_data/plasticc_train_metadata.csv", "labels", "labels-csv"),
    ("images/sep/image.fits", "image", "fits-image"),
]


@pytest.mark.parametrize("rel, kind, fmt", CASES, ids=[c[0].rsplit("/", 1)[-1] for c in CASES])
def test_shared_files_are_recognised(shared_data, rel, kind, fmt):
    found = detect_format(shared_data / rel)
    assert (found.kind, found.format) == (kind, fmt)


def test_content_wins_over_the_name(shared_data, tmp_path):
    disguised = tmp_path / "notes.txt"
    disguised.write_bytes((shared_data / "alerts/ztf/avro/472263571115115000.avro").read_bytes())
    assert detect_format(disguised) == FileFormat("alerts", "ztf-avro-3.3", "ztf.alert")
    fake = tmp_path / "alert.avro"
    fake.write_bytes(b"Obj\x01" + b"\xff" * 64)
    found = detect_format(fake)
    assert found.kind == "unknown" and "corrupt Avro header" in found.detail
    junk = tmp_path / "blob.bin"
    junk.write_bytes(bytes(range(256)))
    assert detect_format(junk).kind == "unknown"
    assert detect_format(tmp_path / "missing.csv").detail.startswith("cannot open")


def test_sniff_container_magic():
    assert sniff_container(b"Obj\x01rest") == "avro"
    assert sniff_container(b"PAR1....") == "parquet"
    assert sniff_container(b"SIMPLE  =                    T") == "fits"
    assert sniff_container(b"\x1f\x8b\x08") == "gzip"
    assert sniff_container(b"\n  [{\"a\": 1}]") == "json"
    assert sniff_container(b"time,mag") is None


def test_classify_columns_by_role():
    assert classify_columns(["time", "flux", "fluxerr", "band"])[:2] == ("lightcurves", "lc")
    assert classify_columns(["objectId", "classALeRCE"])[:2] == ("labels", "labels")
    assert classify_columns(["a", "b"])[:2] == ("metadata", "table")
    many = [f"feat{i}_{b}" for i in range(15) for b in "12"]
    assert classify_columns(["oid"] + many)[:2] == ("features", "features")


def test_gzipped_csv_and_fits_are_recognised(shared_data, tmp_path):
    import gzip

    import numpy as np
    from astropy.io import fits

    from astroray.io.lightcurves import read_lightcurve

    src = shared_data / "lightcurves/rrlyrae/light-curves/1013184.csv"
    packed = tmp_path / "1013184.csv.gz"
    packed.write_bytes(gzip.compress(src.read_bytes()))
    assert detect_format(packed).format == "lc-csv.gz"
    assert len(read_lightcurve(packed)) == len(read_lightcurve(src)) == 291
    fits.PrimaryHDU(np.zeros((8, 8), np.float32)).writeto(tmp_path / "im.fits.gz")
    assert detect_format(tmp_path / "im.fits.gz") == FileFormat("image", "fits-image", "8x8")
    (tmp_path / "other.gz").write_bytes(gzip.compress(bytes(range(256))))
    assert detect_format(tmp_path / "other.gz").kind == "unknown"
