"""``astroray difference SCI REF --out DIR``: one plain-FITS pair end to end, and each bad input refused whole."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from scipy.spatial import cKDTree

from astroray.cli import main
from astroray.records import ALERT_SCHEMA, CATALOG_SCHEMA
from astroray.testing.survey_frames import write_survey_pair

PRODUCTS = ("difference.fits", "score.fits", "catalog.parquet", "alerts.parquet", "overview.png", "summary.json")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return write_survey_pair(tmp_path_factory.mktemp("pair"), seed=3)


def test_help_explains_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["difference", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for needle in ("examples:", "astroray difference sci.fits ref.fits --out diff/", "--overwrite", "--config",
                   "WCS", "score.fits", "exit status 2"):
        assert needle in text


def test_one_pair_end_to_end(pair, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["difference", str(pair.science), str(pair.reference), "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert "registration" in report and "detections      3" in report
    for name in PRODUCTS:
        assert (out / name).is_file(), name
    assert (out / "overview.png").stat().st_size > 10_000

    summary = json.loads((out / "summary.json").read_text())
    assert summary["psf_science"]["fwhm_px"] == pytest.approx(3.4, rel=0.05)
    assert summary["psf_reference"]["fwhm_px"] == pytest.approx(2.6, rel=0.05)
    assert summary["psf_science"]["ellipticity"] < 0.05 and summary["psf_reference"]["ellipticity"] < 0.05
    reg = summary["registration"]
    assert reg["rms_px"] < 0.1 and reg["rotation_deg"] == pytest.approx(pair.rotation_deg, abs=0.02)
    assert (reg["shift_x"], reg["shift_y"]) == pytest.approx(pair.shift, abs=0.05)
    assert summary["flux_ratio"] == pytest.approx(1.0, rel=0.03)  # one zero point in both frames

    catalog = pq.read_table(out / "catalog.parquet")
    alerts = pq.read_table(out / "alerts.parquet")
    assert catalog.schema.equals(CATALOG_SCHEMA) and alerts.schema.equals(ALERT_SCHEMA)
    cat = catalog.to_pandas()
    assert len(cat) == summary["n_detections"] == 3 and alerts.num_rows == summary["n_alerts"]
    # the three transients, found where they are on the science grid, brightening; nothing on the static stars
    dist, _ = cKDTree(cat[["x", "y"]].to_numpy()).query(pair.transients)
    assert (dist < 1.0).all() and (cat["flux"] > 0).all()
    assert np.isfinite(cat["ra"]).all()

    with fits.open(out / "difference.fits") as d, fits.open(out / "score.fits") as s, \
            fits.open(pair.science) as sci:
        assert d[0].data.shape == s[0].data.shape == sci[0].data.shape
        for key in ("CTYPE1", "CRVAL1", "CRPIX1", "CRPIX2"):
            assert d[0].header[key] == s[0].header[key] == sci[0].header[key]
        assert np.nanmax(s[0].data) > 5


def test_rerun_needs_overwrite_and_then_leaves_one_runs_files(pair, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "score.fits").write_bytes(b"an earlier run's")
    (out / "notes.txt").write_text("the user's")
    assert main(["difference", str(pair.science), str(pair.reference), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "score.fits"]

    config = tmp_path / "pair.yaml"  # a pair config: no S_corr, no PNG this time
    config.write_text("write_score: false\nwrite_png: false\n")
    assert main(["difference", str(pair.science), str(pair.reference), "--out", str(out), "--overwrite",
                 "--config", str(config)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["alerts.parquet", "catalog.parquet", "difference.fits", "notes.txt", "summary.json"]
    assert (out / "notes.txt").read_text() == "the user's"


def _bad_inputs(pair, folder):
    """name -> (science, reference, extra CLI args, what the error says)."""
    sci, ref = str(pair.science), str(pair.reference)
    header = fits.getheader(pair.reference)
    data = fits.getdata(pair.reference)
    nowcs = folder / "nowcs.fits"
    fits.PrimaryHDU(fits.getdata(pair.science)).writeto(nowcs)
    far = folder / "far.fits"
    moved = header.copy()
    moved["CRVAL1"] += 2.0
    fits.PrimaryHDU(data, header=moved).writeto(far)
    saturated = folder / "saturated.fits"
    fits.PrimaryHDU(np.full(data.shape, 70000.0, np.float32), header=header).writeto(saturated)
    starless = folder / "starless.fits"  # the reference's grid and sky, no star in it
    rng = np.random.default_rng(1)
    fits.PrimaryHDU(rng.normal(400.0, 4.0, data.shape).astype(np.float32), header=header).writeto(starless)
    one_grid = folder / "one_grid.yaml"  # no registration, so the PSF is what fails
    one_grid.write_text("registration: null\n")
    raw = pair.science.read_bytes()
    cut = folder / "cut.fits"
    cut.write_bytes(raw[: len(raw) // 2])
    junk = folder / "junk.fits"
    junk.write_bytes(b"SIMPLE? no. " * 500)
    return {
        "no WCS": (str(nowcs), ref, [], "no celestial WCS"),
        "WCSs that do not overlap": (sci, str(far), [], "do not overlap"),
        "all saturated": (str(saturated), ref, [], "100.0% saturated"),
        "too few stars to register": (sci, str(starless), [], "stars matched"),
        "too few stars for a PSF": (str(starless), ref, ["--config", str(one_grid)], "no stars to measure a PSF"),
        "truncated file": (str(cut), ref, [], "truncated"),
        "not FITS": (sci, str(junk), [], "not a FITS file"),
        "missing file": (str(folder / "nothere.fits"), ref, [], "not found"),
    }


def test_each_bad_input_is_one_line_exit_2_and_nothing_written(pair, tmp_path, capsys):
    for name, (sci, ref, extra, says) in _bad_inputs(pair, tmp_path).items():
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        assert main(["difference", sci, ref, "--out", str(out), *extra]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("astroray difference: error:"), (name, err)
        assert says in err, (name, err)
        assert not out.exists(), name


def test_difference_pair_hands_the_scorer_to_the_pipeline(pair):
    from astroray.imaging.survey_pair import SurveyPairConfig, difference_pair

    seen = []

    def scorer(stamps):  # a stand-in model: the brightest difference pixel's share of the stamp's light
        seen.append(sorted(stamps))
        d = np.abs(stamps["difference"]).reshape(len(stamps["difference"]), -1)
        return np.nanmax(d, axis=1) / np.nansum(d, axis=1)  # stamps are NaN beyond the frame's edge

    res = difference_pair(pair.science, pair.reference, config=SurveyPairConfig(write_png=False), scorer=scorer)
    assert seen and "difference" in seen[0]
    rb = res.pair.catalog["rb"].to_numpy()
    assert len(rb) == 3 and np.isfinite(rb).all() and (rb > 0).all()
    assert [a.scores["rb"] for a in res.pair.alerts] == pytest.approx(list(rb))
