"""Light-curve readers on the shared real files, checked against pandas/pyarrow/astropy reads."""
from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from astroray.errors import InvalidLightCurveError
from astroray.io.alerts import read_alerts
from astroray.io.lightcurves import (
    IncompleteFileWarning,
    attach_labels,
    lightcurves_from_alerts,
    read_labels,
    read_lightcurve,
    read_lightcurves,
)
from astroray.records import lightcurves_to_table, table_to_lightcurves

LC = "lightcurves"
ALERCE = f"{LC}/alerce_lc_classifier/data_examples"
SNANA = f"{LC}/supernnova/tests"
FLUXCAL_TO_NJY = 10 ** (0.4 * (31.4 - 27.5))


def test_rrlyrae_csv_magnitudes_round_trip(shared_data):
    path = shared_data / f"{LC}/rrlyrae/light-curves/1013184.csv"
    df = pd.read_csv(path).sort_values("time", kind="stable")
    lc = read_lightcurve(path)
    assert lc.object_id == "1013184" and len(lc) == len(df) == 291
    assert set(lc.band) == set(df["band"]) == set("ugriz")
    np.testing.assert_allclose(lc.mjd, df["time"])
    np.testing.assert_allclose(lc.mag, df["mag"], rtol=1e-12)
    np.testing.assert_allclose(lc.mag_err, df["magerr"], rtol=1e-9)
    assert lc.detected.all() and lc.meta["flux_kind"] == "total"


def test_bts_csv_band_R_becomes_r(shared_data):
    path = shared_data / f"{LC}/bts_snia/light-curves/ZTF17aadlxmv.csv"
    counts = pd.read_csv(path)["band"].value_counts().to_dict()
    lc = read_lightcurve(path)
    assert counts == {"R": 9, "g": 8}
    assert {b: int((lc.band == b).sum()) for b in ("r", "g")} == {"r": 9, "g": 8}


def test_rrlyrae_folder_with_period_labels(shared_data):
    folder = shared_data / f"{LC}/rrlyrae/light-curves"
    n_files = len([f for f in os.listdir(folder) if f.endswith(".csv")])
    lcs = read_lightcurves(folder)
    assert len(lcs) == n_files == 289
    periods = pd.read_csv(shared_data / f"{LC}/rrlyrae/periods.csv")
    attach_labels(lcs, read_labels(shared_data / f"{LC}/rrlyrae/periods.csv"))
    labels = pd.Series([lc.label for lc in lcs]).value_counts().to_dict()
    assert labels == periods["Type"].value_counts().to_dict()


def test_cds_table_labels_agree_with_csv(shared_data):
    from_cds = read_labels(shared_data / f"{LC}/rrlyrae/apj326724t2.txt")
    from_csv = read_labels(shared_data / f"{LC}/rrlyrae/periods.csv")
    assert from_cds == from_csv and len(from_cds) == 289


def test_alerce_detections_and_non_detections_merge(shared_data):
    det_path, nondet_path = shared_data / f"{ALERCE}/30_sne_detections_corr.csv", \
        shared_data / f"{ALERCE}/30_sne_non_detections.csv"
    det = pd.read_csv(det_path, usecols=["objectId", "mjd", "fid", "magpsf", "isdiffpos"])
    nondet = pd.read_csv(nondet_path, usecols=["objectId", "jd", "fid", "diffmaglim"])
    lcs = {lc.object_id: lc for lc in read_lightcurves([det_path, nondet_path])}
    assert len(lcs) == det["objectId"].nunique() == 30
    n_repeated = 0
    for oid, group in det.groupby("objectId", sort=False):
        lc = lcs[oid]
        # ZTF can detect one epoch twice (overlapping fields); the merged light curve keeps it once.
        unique = group.drop_duplicates(["mjd", "fid"])
        n_repeated += len(group) - len(unique)
        group = unique
        assert lc.n_detections == len(group)
        limits = nondet[nondet["objectId"] == oid].drop_duplicates(["jd", "fid"])
        # A limit at the epoch and band of a detection (another field's quadrant) yields to the detection.
        det_epochs = set(zip(np.round(group["mjd"] * 86400).astype(int), group["fid"]))
        lim_epochs = zip(np.round((limits["jd"] - 2400000.5) * 86400).astype(int), limits["fid"])
        assert (~lc.detected).sum() == sum(e not in det_epochs for e in lim_epochs)
        np.testing.assert_allclose(np.sort(np.abs(lc.detections().flux)),
                                   np.sort(10 ** (-0.4 * (group["magpsf"].to_numpy() - 31.4))), rtol=1e-9)
    assert n_repeated == len(det) - len(det.drop_duplicates(["objectId", "mjd", "fid"])) == 22
    lc = lcs["ZTF18ablhqle"]
    lim = lc.select(~lc.detected)
    assert np.isnan(lim.flux).all()
    row = nondet[nondet["objectId"] == "ZTF18ablhqle"].sort_values("jd").iloc[0]
    assert lim.mjd[0] == pytest.approx(row["jd"] - 2400000.5)
    assert lim.flux_err[0] == pytest.approx(10 ** (-0.4 * (row["diffmaglim"] - 31.4)) / 5)
    labels = read_labels(shared_data / f"{ALERCE}/30_sne_labels.csv")
    attach_labels(lcs.values(), labels)
    counts = pd.Series([lc.label for lc in lcs.values()]).value_counts().to_dict()
    assert counts == {"SNIa": 19, "SNIbc": 8, "SLSN": 2, "SNII": 1}  # the data README's numbers


def test_alerce_parquet_signs_follow_isdiffpos(shared_data):
    path = shared_data / f"{LC}/alerce_lc_classifier/examples/data/detections_sample.parquet"
    df = pq.read_table(path, columns=["oid", "mjd", "isdiffpos"]).to_pandas().reset_index()
    lcs = {lc.object_id: lc for lc in read_lightcurves(path)}
    assert len(lcs) == df["oid"].nunique()
    n_negative = sum(int((lc.flux < 0).sum()) for lc in lcs.values())
    assert n_negative == int((df["isdiffpos"] < 0).sum()) > 0


def test_snana_fits_pair_matches_csv_export(shared_data):
    head = shared_data / f"{SNANA}/raw/DES_Ia-0001_HEAD.FITS"
    with pytest.warns(IncompleteFileWarning, match="89 of 200"):
        lcs = {lc.object_id: lc for lc in read_lightcurves(head)}
    with fits.open(head) as h, fits.open(str(head).replace("HEAD", "PHOT")) as p:
        n_phot = len(p[1].data)
        inside = int((h[1].data["PTROBS_MAX"] <= n_phot).sum())
    assert len(lcs) == inside == 111
    csv = pd.read_csv(shared_data / f"{SNANA}/raw_csv/DES_PHOT.csv")
    csv = csv[csv["MJD"] > 0]  # SNANA's MJD=-777 rows mark season ends, not epochs
    for snid, group in csv.groupby("SNID"):
        lc = lcs[str(snid)]
        group = group.sort_values("MJD", kind="stable")
        assert len(lc) == len(group)
        np.testing.assert_allclose(lc.mjd, group["MJD"], rtol=1e-9)
        np.testing.assert_allclose(lc.flux / FLUXCAL_TO_NJY, group["FLUXCAL"], rtol=1e-5)
        assert list(lc.band) == list(group["FLT"])
        assert lc.label == "101"


def test_snana_csv_detections_by_snr(shared_data):
    lcs = read_lightcurves(shared_data / f"{SNANA}/raw_csv/DES_PHOT.csv")
    csv = pd.read_csv(shared_data / f"{SNANA}/raw_csv/DES_PHOT.csv")
    csv = csv[csv["MJD"] > 0]
    assert sorted(lc.object_id for lc in lcs) == sorted(str(s) for s in csv["SNID"].unique())
    n_det = int((csv["FLUXCAL"].abs() / csv["FLUXCALERR"] >= 5).sum())
    assert sum(lc.n_detections for lc in lcs) == n_det
    assert all(lc.meta["detected_from"] == "snr>=5" for lc in lcs)


def test_elasticc_alert_parquet_as_labelled_light_curves(shared_data):
    path = shared_data / f"{LC}/elasticc/classId=111/part-0-0.parquet"
    table = pq.read_table(path, columns=["diaSource", "prvDiaSources"])
    objects = pc.struct_field(table.column("diaSource"), "diaObjectId").unique().to_pylist()
    lcs = read_lightcurves(path)
    assert len(lcs) == len(objects)
    assert {lc.label for lc in lcs} == {"111"}
    # Detections: every distinct (epoch, band) of the alerts' own diaSources and previous diaSources.
    epochs: dict[str, set] = {}
    for row in table.to_pylist():
        oid = str(row["diaSource"]["diaObjectId"])
        for s in [row["diaSource"]] + (row["prvDiaSources"] or []):
            epochs.setdefault(oid, set()).add((round(s["midPointTai"] * 86400), s["filterName"].lower()))
    for lc in lcs:
        assert lc.n_detections == len(epochs[lc.object_id])


def test_lightcurves_from_ztf_alert(shared_data):
    alerts = read_alerts(shared_data / "alerts/ztf/avro/2019_01_10_739260766315010006.avro", cutouts=False)
    (lc,) = lightcurves_from_alerts(alerts)
    assert lc.object_id == "ZTF17aaacxxf" and len(lc) == 29 and lc.n_detections == 23
    assert lc.mjd[-1] == alerts[0].mjd and lc.flux[-1] == alerts[0].flux


def test_lightcurves_from_repeating_alerts_keep_each_epoch_once(shared_data):
    alerts = read_alerts(shared_data / "alerts/fink/elasticc_sample_seed0.parquet", cutouts=False)
    lcs = lightcurves_from_alerts(alerts)
    assert len(lcs) == len({a.object_id for a in alerts})
    for lc in lcs:
        keys = list(zip(np.round(lc.mjd * 86400).astype(int), lc.band))
        assert len(keys) == len(set(keys))


def test_arrow_and_parquet_round_trip(shared_data, tmp_path):
    lcs = read_lightcurves([shared_data / f"{ALERCE}/30_sne_detections_corr.csv",
                            shared_data / f"{ALERCE}/30_sne_non_detections.csv"])
    back = table_to_lightcurves(lightcurves_to_table(lcs))
    out = tmp_path / "lcs.parquet"
    pq.write_table(lightcurves_to_table(lcs), out)
    again = read_lightcurves(out)
    for a, b, c in zip(lcs, back, again):
        assert a.object_id == b.object_id == c.object_id
        for attr in ("mjd", "flux", "flux_err", "detected", "band"):
            np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
            np.testing.assert_array_equal(getattr(a, attr), getattr(c, attr))


def test_bytes_source_and_object_selection(shared_data):
    data = (shared_data / f"{ALERCE}/30_sne_detections_corr.csv").read_bytes()
    lc = read_lightcurve(data, name="upload.csv", object_id="ZTF18ablhqle")
    assert lc.object_id == "ZTF18ablhqle" and lc.n_detections == 35
    with pytest.raises(InvalidLightCurveError, match="upload.csv: file holds 30 objects"):
        read_lightcurve(data, name="upload.csv")
    with pytest.raises(InvalidLightCurveError, match="no object 'nope'"):
        read_lightcurve(data, name="upload.csv", object_id="nope")


# ----------------------------------------------------------------------------- bad input


def test_empty_and_header_only_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InvalidLightCurveError, match=r"empty\.csv: empty file"):
        read_lightcurve(empty)
    header = tmp_path / "header.csv"
    header.write_text("time,mag,magerr,band\n")
    with pytest.raises(InvalidLightCurveError, match=r"header\.csv: no data rows"):
        read_lightcurve(header)


def test_missing_column_is_named(shared_data, tmp_path):
    df = pd.read_csv(shared_data / f"{LC}/rrlyrae/light-curves/1013184.csv")
    bad = tmp_path / "no_err.csv"
    df.drop(columns=["magerr"]).assign(flux=1.0).to_csv(bad, index=False)
    with pytest.raises(InvalidLightCurveError, match=r"no_err\.csv: missing column\(s\) magerr"):
        read_lightcurve(bad)


def test_non_numeric_and_unknown_band(shared_data, tmp_path):
    df = pd.read_csv(shared_data / f"{LC}/bts_snia/light-curves/ZTF17aadlxmv.csv")
    text = tmp_path / "text_mag.csv"
    df.assign(mag=["bright"] * len(df)).to_csv(text, index=False)
    with pytest.raises(InvalidLightCurveError, match=r"text_mag\.csv: column mag is not numeric"):
        read_lightcurve(text)
    band = tmp_path / "band_q.csv"
    df.assign(band="q").to_csv(band, index=False)
    with pytest.raises(InvalidLightCurveError, match=r"band_q\.csv: unknown band 'q'"):
        read_lightcurve(band)


def test_label_table_is_not_a_light_curve(shared_data):
    with pytest.raises(InvalidLightCurveError, match="not a light-curve file: detected labels/labels-csv"):
        read_lightcurve(shared_data / f"{LC}/bts_snia/bts.csv")


def test_alerce_table_without_id_column(shared_data, tmp_path):
    df = pd.read_csv(shared_data / f"{ALERCE}/30_sne_non_detections.csv").drop(columns=["objectId"])
    bad = tmp_path / "anon_non_det.csv"
    df.assign(oid_missing=1).to_csv(bad, index=False)
    with pytest.raises(InvalidLightCurveError):
        read_lightcurve(bad)


def test_in_memory_non_detections_and_truncated_parquet(shared_data):
    csv = (shared_data / f"{ALERCE}/30_sne_non_detections.csv").read_bytes()
    lcs = read_lightcurves(csv, name="limits.csv")
    assert len(lcs) == 30 and all(lc.n_detections == 0 for lc in lcs)
    assert sum(len(lc) for lc in lcs) == len(pd.read_csv(io.BytesIO(csv)).drop_duplicates(["objectId", "jd", "fid"]))
    parquet = (shared_data / f"{LC}/alerce_lc_classifier/examples/data/non_detections_sample.parquet").read_bytes()
    with pytest.raises(InvalidLightCurveError, match="cut.parquet: corrupt Parquet"):
        read_lightcurves(parquet[: len(parquet) // 2], name="cut.parquet")
