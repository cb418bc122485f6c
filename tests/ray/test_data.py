"""Ray Data datasources on real files: every input comes out as a row, bad ones with the reason."""
import shutil

import numpy as np
import pytest

from astroray.io import read_alerts
from astroray.io.fits import write_exposure
from astroray.records import Exposure


def _exposure(i):
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[-3:4, -3:4]
    psf = np.exp(-(xx**2 + yy**2) / 3.0)
    return Exposure(image=rng.normal(0, 1, (32, 40)), variance=np.ones((32, 40)), mask=np.zeros((32, 40)),
                    psf=psf / psf.sum(), meta={"exposure_id": f"e{i}", "band": "g", "mjd": 60000.0 + i})


def test_fits_datasource_reads_folder_and_flags_bad_file(ray_session, tmp_path):
    from astroray.ray.data import read_fits_exposures

    for i in range(3):
        write_exposure(_exposure(i), tmp_path / f"e{i}.fits")
    (tmp_path / "broken.fits").write_bytes((tmp_path / "e0.fits").read_bytes()[:3000])
    rows = sorted(read_fits_exposures(str(tmp_path)).take_all(), key=lambda r: r["path"])
    assert len(rows) == 4
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and "broken.fits" in bad[0]["error"] and "truncated" in bad[0]["error"]
    good = [r for r in rows if not r["error"]]
    for r in good:
        i = int(r["exposure_id"][1:])
        np.testing.assert_array_equal(r["image"], _exposure(i).image)
        assert r["band"] == "g" and r["mjd"] == 60000.0 + i


def test_alert_datasource_matches_direct_reader(ray_session, shared_data, tmp_path):
    from astroray.ray.data import read_alert_files

    src = shared_data / "alerts/ztf/avro"
    for f in src.glob("*.avro"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "corrupt.avro").write_bytes(b"Obj\x01" + b"\x00garbage" * 50)
    rows = read_alert_files(str(tmp_path)).take_all()
    direct = [a for f in sorted(src.glob("*.avro")) for a in read_alerts(f)]
    good = [r for r in rows if r["error"] is None]
    assert sorted(r["alert_id"] for r in good) == sorted(a.alert_id for a in direct)
    bad = [r for r in rows if r["error"] is not None]
    assert len(bad) == 1 and "corrupt.avro" in bad[0]["error"]
    by_id = {a.alert_id: a for a in direct}
    for r in good:
        a = by_id[r["alert_id"]]
        assert r["flux"] == pytest.approx(a.flux) and len(r["hist_mjd"]) == len(a.history)
