"""``jobs/difference.py --pairs FILE.csv``: plain survey FITS pairs on Ray Data, every row accounted for."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from astroray.errors import InvalidInputError
from astroray.ray.image_job import pairs_from_csv
from astroray.records import ALERT_SCHEMA, CATALOG_SCHEMA
from astroray.testing.survey_frames import write_survey_pair

REPO = Path(__file__).resolve().parents[2]


def _job():
    import importlib.util

    spec = importlib.util.spec_from_file_location("difference_job", REPO / "jobs" / "difference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_csv_rows_resolve_relative_paths_and_get_unique_ids(tmp_path):
    (tmp_path / "night").mkdir()
    csv = tmp_path / "night" / "pairs.csv"
    csv.write_text("science,reference,pair_id\n"
                   "a/sci.fits.fz,ref.fits,\n"
                   "b/sci.fits,/abs/ref.fits,\n"
                   "c.fits,ref.fits,sci\n")
    pairs = pairs_from_csv(csv)
    night = (tmp_path / "night").resolve()
    # the given id "sci" is kept; the others are named after their science files, made unique
    assert list(pairs["pair_id"]) == ["sci-2", "sci-3", "sci"]
    assert list(pairs["science_path"]) == [str(night / "a/sci.fits.fz"), str(night / "b/sci.fits"),
                                           str(night / "c.fits")]
    assert list(pairs["reference_path"]) == [str(night / "ref.fits"), "/abs/ref.fits", str(night / "ref.fits")]
    assert list(pairs["csv_row"]) == [1, 2, 3]


@pytest.mark.parametrize("text, says", [
    ("science,template\na.fits,b.fits\n", "missing column(s) reference"),
    ("science,reference,night\na.fits,b.fits,1\n", "unknown column(s) night"),
    ("science,reference\n", "lists no pairs"),
    ("science,reference,pair_id\na.fits,b.fits,x\nc.fits,d.fits,x\n", "pair_id 'x' is given to more than one row"),
    ("", "cannot read the pairs CSV"),
])
def test_bad_csv_is_refused_before_any_work(tmp_path, text, says, capsys):
    csv = tmp_path / "pairs.csv"
    csv.write_text(text)
    with pytest.raises(InvalidInputError) as exc:
        pairs_from_csv(csv)
    assert says in str(exc.value)
    assert _job().main(["--pairs", str(csv), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_csv_job_processes_the_good_row_and_quarantines_the_bad_one(ray_session, tmp_path, capsys):
    pair = write_survey_pair(tmp_path / "in", seed=5)
    nowcs = tmp_path / "in" / "nowcs.fits"
    fits.PrimaryHDU(fits.getdata(pair.science)).writeto(nowcs)
    csv = tmp_path / "in" / "pairs.csv"
    csv.write_text("science,reference,pair_id\n"
                   "sci.fits,ref.fits,good\n"
                   "nowcs.fits,ref.fits,\n")
    config = tmp_path / "job.yaml"
    config.write_text("num_actors: 1\nsurvey:\n  psf:\n    min_snr: 30\n")
    out = tmp_path / "out"
    rc = _job().main(["--pairs", str(csv), "--out", str(out), "--config", str(config), "--no-progress"])
    assert rc == 1  # one row quarantined
    printed = capsys.readouterr().out
    assert "1/2 pairs processed" in printed and "quarantined nowcs" in printed

    manifest = pd.read_parquet(out / "manifest.parquet").set_index("pair_id")
    assert sorted(manifest.index) == ["good", "nowcs"]
    assert manifest.loc["good", "status"] == "ok" and manifest.loc["good", "n_detections"] == 3
    assert manifest.loc["good", "csv_row"] == 1 and manifest.loc["nowcs", "csv_row"] == 2
    summary = json.loads(manifest.loc["good", "survey_summary"])
    assert summary["psf_science"]["fwhm_px"] == pytest.approx(3.4, rel=0.05)
    assert summary["registration"]["rms_px"] < 0.1
    assert manifest.loc["nowcs", "status"] == "quarantined"
    assert "no celestial WCS" in manifest.loc["nowcs", "reason"]

    quarantine = pd.read_parquet(out / "quarantine.parquet")
    assert list(quarantine["pair_id"]) == ["nowcs"]
    # the good row's parts (the image job's layout and schemas), nothing of the bad one
    for folder, suffix in (("alerts", ".parquet"), ("catalog", ".parquet"), ("difference", ".fits")):
        assert sorted(p.name for p in (out / folder).iterdir()) == [f"good{suffix}"]
    catalog = pq.read_table(out / "catalog" / "good.parquet")
    assert catalog.schema.equals(CATALOG_SCHEMA) and set(catalog.column("pair_id").to_pylist()) == {"good"}
    alerts = pq.read_table(out / "alerts" / "good.parquet")
    assert alerts.schema.equals(ALERT_SCHEMA) and alerts.num_rows == 3
    with fits.open(out / "difference" / "good.fits") as d:
        assert d[0].data.shape == (256, 256) and "CTYPE1" in d[0].header
