"""One survey pair end to end (files in, D/S_corr/catalogue/alerts/PNG out) and the cutout path."""
from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits

from astroray.datasets import ChangeConfig, ImagePairConfig, simulate_pair
from astroray.datasets.images import ReferenceGridConfig
from astroray.errors import InvalidInputError
from astroray.imaging.survey_pair import (
    CutoutDifferenceConfig,
    SurveyPairConfig,
    _gauss_convolve,
    difference_cutouts,
    difference_files,
    fit_matching_kernel,
)
from astroray.io.survey import SurveyReadConfig

CHANGES = ChangeConfig(transient_on_host=0, transient_hostless=40, variable_star=0, moving_object=0, cosmic_ray=0,
                       cosmic_ray_reference=0, hot_pixel=0, bad_column=0, satellite_streak=0, dipole=0)


def _write_plain(exp, path):
    """An exposure as a telescope would write it: one image HDU, its WCS and the usual keywords."""
    hdr = fits.Header.fromstring(exp.header, sep="\n")
    hdr["SATURATE"] = exp.meta["saturation"]
    hdr["RDNOISE"] = exp.meta["read_noise"]
    fits.PrimaryHDU(exp.image, header=hdr).writeto(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    grid = ReferenceGridConfig(shift=(6.5, -4.25), rotation=0.7, scale=1.004)
    cfg = ImagePairConfig(shape=(384, 384), star_density=80.0, galaxy_density=4.0, changes=CHANGES,
                          snr_range=(15.0, 60.0), reference_grid=grid)
    pair = simulate_pair(cfg, seed=21)
    d = tmp_path_factory.mktemp("pair")
    return pair, _write_plain(pair.science, d / "sci.fits"), _write_plain(pair.reference, d / "ref.fits")


def test_difference_files_writes_everything_and_finds_the_transients(files, tmp_path):
    pair, sci, ref = files
    read = SurveyReadConfig(zero_point_convention="per_second")  # the simulator's MAGZERO is per second
    cfg = SurveyPairConfig(science=read, reference=read)
    summary = difference_files(sci, ref, tmp_path / "out", config=cfg)
    for key in ("difference", "score", "catalog", "alerts", "png", "summary"):
        assert (tmp_path / "out").joinpath(summary["paths"][key]).exists()
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["n_detections"] == summary["n_detections"] and summary["status"] == "ok"
    reg = summary["registration"]
    assert reg["method"] == "asterism" and reg["rotation_deg"] == pytest.approx(0.7, abs=0.03)
    assert reg["scale"] == pytest.approx(1.004, abs=1e-3)
    assert summary["psf_science"]["source"] == "estimated"
    assert summary["psf_science"]["fwhm_px"] == pytest.approx(pair.science.meta["fwhm_px"], rel=0.08)
    assert summary["psf_reference"]["fwhm_px"] == pytest.approx(pair.reference.meta["fwhm_px"] / 1.004, rel=0.08)
    assert summary["flux_ratio"] == pytest.approx(pair.meta["flux_scale"], rel=0.05)
    # the transients: found where the truth says, on the science grid
    import pandas as pd

    cat = pd.read_parquet(summary["paths"]["catalog"])
    truth = pair.truth[(pair.truth["kind"] == "transient_hostless") & (pair.truth["snr_expected"] >= 10)]
    assert len(truth) >= 3
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(cat[["x", "y"]].to_numpy()).query(truth[["x", "y"]].to_numpy())
    assert (dist < 2).mean() >= 0.8
    with fits.open(summary["paths"]["difference"]) as hdul:
        assert hdul[0].data.shape == pair.science.shape and "CTYPE1" in hdul[0].header


def test_bad_pairs_raise_before_anything_is_written(files, tmp_path):
    pair, sci, ref = files
    hdr = fits.getheader(ref)
    far = tmp_path / "far.fits"
    hdr["CRVAL1"] = hdr["CRVAL1"] + 2.0
    fits.PrimaryHDU(fits.getdata(ref), header=hdr).writeto(far)
    with pytest.raises(InvalidInputError, match="do not overlap"):
        difference_files(sci, far, tmp_path / "out1")
    assert not (tmp_path / "out1").exists()
    blank = tmp_path / "blank.fits"
    rng = np.random.default_rng(1)
    fits.PrimaryHDU(rng.normal(100, 5, (384, 384)).astype(np.float32), header=fits.getheader(sci)).writeto(blank)
    with pytest.raises(InvalidInputError, match="stars matched|no stars"):
        difference_files(blank, ref, tmp_path / "out2")
    nowcs = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(fits.getdata(sci)).writeto(nowcs)
    with pytest.raises(InvalidInputError, match="WCS"):
        difference_files(nowcs, ref, tmp_path / "out3")


def test_matching_kernel_recovers_a_known_blur_and_scale():
    rng = np.random.default_rng(5)
    h = w = 63
    ref = np.zeros((h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    for x, y, f in ((15, 20, 3e4), (45, 12, 2e4), (20, 48, 4e4), (50, 50, 1e4), (31, 31, 5e4)):
        ref += f / (2 * np.pi * 1.2 ** 2) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.2 ** 2))
    cov = np.array([[1.5, 0.2], [0.2, 1.0]])
    sci = 1.3 * _gauss_convolve(ref, cov)
    var_s, var_r = np.full((h, w), 25.0), np.full((h, w), 1.0)
    sci_n = sci + rng.normal(0, 5, (h, w))
    ref_n = ref + rng.normal(0, 1, (h, w))
    good = np.ones((h, w), bool)
    good[:3] = good[-3:] = good[:, :3] = good[:, -3:] = False
    k = fit_matching_kernel(sci_n, ref_n, variance_science=var_s, variance_reference=var_r, good=good)
    assert k.science_broader and k.flux_ratio == pytest.approx(1.3, rel=0.02)
    np.testing.assert_allclose(k.cov, cov, atol=0.1)


def test_matching_kernel_direction_is_read_from_the_candidates_light_too():
    """A lone variable star on an empty stamp: only its light tells which side is broader.

    Outside the centre there is only noise, where the delta kernel's larger
    noise model wins any chi^2; the direction is chosen over every pixel both
    fits used (the candidate's included, modelled as a point source).
    """
    h = w = 63
    yy, xx = np.mgrid[0:h, 0:w]
    good = np.ones((h, w), bool)
    good[:3] = good[-3:] = good[:, :3] = good[:, -3:] = False
    n = np.arange(21) - 10
    psf_ref = np.exp(-(n[:, None] ** 2 + n[None, :] ** 2) / (2 * 1.2 ** 2))
    psf_ref /= psf_ref.sum()
    cov = np.array([[1.5, 0.0], [0.0, 1.5]])
    star = 5e3 / (2 * np.pi * 1.2 ** 2) * np.exp(-((xx - 31) ** 2 + (yy - 31) ** 2) / (2 * 1.2 ** 2))
    sci = _gauss_convolve(1.05 * star, cov)  # 5% brighter, in broader seeing
    for seed in range(5):
        rng = np.random.default_rng(seed)
        k = fit_matching_kernel(sci + rng.normal(0, 10, (h, w)), star + rng.normal(0, 2, (h, w)),
                                variance_science=np.full((h, w), 100.0), variance_reference=np.full((h, w), 4.0),
                                good=good, centre=(31.0, 31.0), psf_science=_gauss_convolve(psf_ref, cov),
                                psf_reference=psf_ref, flux_ratio=1.0)
        assert k.science_broader, seed
        np.testing.assert_allclose(k.cov, cov, atol=0.3)


def test_difference_cutouts_sign_and_flux_ratio():
    cfg = ImagePairConfig(shape=(64, 64), star_density=150.0, galaxy_density=2.0, misregistration=0.0,
                          changes=ChangeConfig(transient_on_host=0, transient_hostless=0, variable_star=0,
                                               moving_object=0, cosmic_ray=0, cosmic_ray_reference=0, hot_pixel=0,
                                               bad_column=0, satellite_streak=0, dipole=0))
    pair = simulate_pair(cfg, seed=3)
    sci, ref = pair.science.image[:63, :63].astype(float), pair.reference.image[:63, :63].astype(float)
    yy, xx = np.mgrid[0:63, 0:63]
    psf_sigma = pair.science.meta["fwhm_px"] / 2.3548
    for sign in (1.0, -1.0):
        # a change at the centre: a new source, or a source that faded (present in the reference only)
        bump = 3e4 / (2 * np.pi * psf_sigma ** 2) * np.exp(-((xx - 31) ** 2 + (yy - 31) ** 2) / (2 * psf_sigma ** 2))
        s = sci + bump if sign > 0 else sci
        r = ref if sign > 0 else ref + bump / pair.meta["flux_scale"]
        res = difference_cutouts(s, r, config=CutoutDifferenceConfig())
        flux = res.difference.flux_at(31, 31)[0][0]
        assert np.sign(flux) == sign
        # from a 63 px stamp's few stars, through a Gaussian kernel between Moffat PSFs: good to ~20%
        # (127 px stamps: ~5%), which is why alerts from gain-matched templates pass flux_ratio=1
        assert res.flux_ratio == pytest.approx(pair.meta["flux_scale"], rel=0.25)
    with pytest.raises(InvalidInputError, match="one shape"):
        difference_cutouts(sci, ref[:, :40])
    rng = np.random.default_rng(2)
    with pytest.raises(InvalidInputError, match="no usable star"):
        difference_cutouts(rng.normal(0, 5, (63, 63)), rng.normal(0, 1, (63, 63)))
