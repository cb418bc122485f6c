"""Registration: the reference resampled onto the science grid against the simulator's known transform."""
from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits

from astroray.datasets import ChangeConfig, ImagePairConfig, simulate_pair
from astroray.datasets.images import ReferenceGridConfig
from astroray.errors import InvalidInputError
from astroray.imaging.registration import Registration, RegistrationConfig, match_asterisms
from astroray.io.survey import SurveyImage
from astroray.records import Exposure, MaskBits

QUIET = ChangeConfig(transient_on_host=0, transient_hostless=0, variable_star=0, moving_object=0, cosmic_ray=0,
                     cosmic_ray_reference=0, hot_pixel=0, bad_column=0, satellite_streak=0, dipole=0)


def _pair(grid: ReferenceGridConfig | None, size=384, seed=11, star_density=80.0, **kw):
    cfg = ImagePairConfig(shape=(size, size), star_density=star_density, galaxy_density=4.0, changes=QUIET,
                          reference_grid=grid, **kw)
    return simulate_pair(cfg, seed=seed)


def _truth_error(res, pair, grid) -> np.ndarray:
    """|T_fit - T_true| over the frame (pixels), where the truth lands on the reference."""
    H, W = pair.science.shape
    yy, xx = np.mgrid[0:H:8, 0:W:8].astype(float)
    tx, ty = grid.to_reference(xx - pair.meta["offset_x"], yy - pair.meta["offset_y"], (H, W))
    fx, fy = res.transform(xx, yy)
    inside = (tx >= 0) & (tx <= W - 1) & (ty >= 0) & (ty <= H - 1)
    return np.hypot(fx - tx, fy - ty)[inside]


def _with_header(exp: Exposure, **cards) -> Exposure:
    hdr = fits.Header.fromstring(exp.header, sep="\n")
    for key, value in cards.items():
        hdr[key] = value
    return Exposure(image=exp.image, variance=exp.variance, mask=exp.mask, psf=exp.psf,
                    header=hdr.tostring(sep="\n").rstrip(), meta=dict(exp.meta))


def test_registration_recovers_shift_rotation_and_scale():
    grid = ReferenceGridConfig(shift=(17.3, -9.6), rotation=1.4, scale=1.007)
    pair = _pair(grid)
    res = Registration().run(pair.reference, pair.science)
    err = _truth_error(res, pair, grid)
    assert math.sqrt((err ** 2).mean()) < 0.05 and err.max() < 0.15
    assert res.method == "asterism" and res.n_matches >= 15
    assert res.summary["rotation_deg"] == pytest.approx(1.4, abs=0.02)
    assert res.summary["scale"] == pytest.approx(1.007, abs=5e-4)
    # the fitted error estimate is of the size of the true error
    assert 0.2 < math.hypot(*res.fit_error) / math.sqrt((err ** 2).mean()) < 5
    ref = res.reference
    assert isinstance(ref, Exposure) and ref.shape == pair.science.shape
    assert ref.header == pair.science.header and ref.meta["registration"]["n_matches"] == res.n_matches
    assert ref.psf.shape == pair.reference.psf.shape and ref.psf.sum() == pytest.approx(1.0, abs=1e-5)
    # the part of the science frame the reference does not cover is NO_DATA, the rest has data
    nodata = (ref.mask & MaskBits.NO_DATA) != 0
    assert 0.02 < nodata.mean() < 0.2
    assert (ref.variance[~nodata] > 0).all() and (ref.variance[nodata] == 0).all()


def test_registration_corrects_a_wrong_wcs():
    grid = ReferenceGridConfig(shift=(4.0, 6.0), rotation=-0.8, scale=0.995)
    pair = _pair(grid, seed=12)
    hdr = fits.Header.fromstring(pair.reference.header, sep="\n")
    # the reference's pointing off by ~9 px and its WCS 0.3 deg from the truth
    bad = _with_header(pair.reference, CRPIX1=hdr["CRPIX1"] + 7.0, CRPIX2=hdr["CRPIX2"] - 5.5)
    res = Registration().run(bad, pair.science)
    err = _truth_error(res, pair, grid)
    assert math.sqrt((err ** 2).mean()) < 0.05
    assert res.method == "asterism"


def test_flux_is_conserved_through_a_scale_change():
    grid = ReferenceGridConfig(shift=(2.5, -3.5), rotation=0.5, scale=1.01)
    bright = dict(star_density=40.0, star_mag_range=(18.5, 20.5))  # all bright, none saturated
    pair = _pair(grid, seed=13, **bright)
    one_grid = _pair(None, seed=13, **bright).reference  # the same sky on the science grid
    src = pair.sources
    # bright, unsaturated, with no other source within 15 px, away from the edges
    from scipy.spatial import cKDTree

    near, _ = cKDTree(src[["x", "y"]].to_numpy()).query(src[["x", "y"]].to_numpy(), k=2)
    stars = src[(src["kind"] == "star") & (near[:, 1] > 15)]
    stars = stars[(stars["x"] > 40) & (stars["x"] < 344) & (stars["y"] > 40) & (stars["y"] < 344)]
    assert len(stars) >= 8

    def aperture(img):
        """Counts within 12 px over the median of the 15-22 px annulus (the sky there)."""
        yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
        out = []
        for x, y in zip(stars["x"], stars["y"]):
            r = np.hypot(xx - x, yy - y)
            sky = np.median(img[(r > 15) & (r < 22)])
            out.append(((img - sky) * (r < 12)).sum())
        return np.array(out)

    truth = aperture(one_grid.image)
    # without the Jacobian a science pixel gets the counts of one (smaller) reference pixel: 1 / 1.01^2 too few
    for conserve, expected in ((True, 1.0), (False, 1.01 ** -2)):
        reg = Registration(RegistrationConfig(conserve_flux=conserve)).run(pair.reference, pair.science).reference
        ratio = np.median(aperture(reg.image) / truth)
        assert ratio == pytest.approx(expected, abs=0.006)


def test_flagged_reference_pixels_carry_their_flags():
    grid = ReferenceGridConfig(shift=(10.0, 5.0), rotation=0.0, scale=1.0)
    pair = _pair(grid, seed=14)
    mask = pair.reference.mask.copy()
    mask[200:203, 150:153] |= np.uint32(MaskBits.BAD)
    ref = Exposure(image=pair.reference.image, variance=pair.reference.variance, mask=mask,
                   psf=pair.reference.psf, header=pair.reference.header, meta=pair.reference.meta)
    out = Registration().run(ref, pair.science).reference
    # reference pixel (x, y) sits at science (x - 10, y - 5) (plus the science's small misregistration)
    flagged = (out.mask & MaskBits.BAD) != 0
    assert flagged[195:198, 140:143].all()
    assert flagged.sum() >= 9 and flagged.sum() <= 7 * 7 + 20  # grown by the cubic footprint, no further
    survey = SurveyImage(image=ref.image, variance=ref.variance, mask=ref.mask, header=ref.header, meta=ref.meta)
    back = Registration().run(survey, pair.science).reference
    assert isinstance(back, SurveyImage) and back.psf is None


def test_match_asterisms_finds_a_similarity_among_strangers():
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 500, (40, 2))
    ang, scale, shift = math.radians(35.0), 1.2, np.array([40.0, -25.0])
    rot = scale * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    dst = src @ rot.T + shift + rng.normal(0, 0.05, src.shape)
    # each list has stars the other lacks, and the order is scrambled
    dst = np.vstack([dst[5:], rng.uniform(0, 600, (8, 2))])
    perm = rng.permutation(len(dst))
    mat, pairs = match_asterisms(src, dst[perm], radius=1.0)
    assert mat is not None
    np.testing.assert_allclose(mat[:, :2], rot, atol=2e-3)
    np.testing.assert_allclose(mat[:, 2], shift, atol=0.3)
    assert len(pairs) >= 30 and all(perm[j] == i - 5 for i, j in pairs)


def test_bad_input_raises_with_the_reason():
    pair = _pair(ReferenceGridConfig(shift=(3.0, 3.0)), seed=15)
    no_wcs = Exposure(image=pair.reference.image, variance=pair.reference.variance, mask=pair.reference.mask,
                      psf=pair.reference.psf, header="", meta=pair.reference.meta)
    with pytest.raises(InvalidInputError, match="no celestial WCS"):
        Registration().run(no_wcs, pair.science)
    hdr = fits.Header.fromstring(pair.reference.header, sep="\n")
    far = _with_header(pair.reference, CRVAL1=hdr["CRVAL1"] + 1.0)
    with pytest.raises(InvalidInputError, match="do not overlap"):
        Registration().run(far, pair.science)
    rng = np.random.default_rng(0)
    blank = [Exposure(image=rng.normal(100, 3, e.shape), variance=np.full(e.shape, 9.0),
                      mask=np.zeros(e.shape, np.uint32), psf=e.psf, header=e.header, meta=e.meta)
             for e in (pair.reference, pair.science)]
    with pytest.raises(InvalidInputError, match="stars matched"):
        Registration().run(*blank)
    res = Registration(RegistrationConfig(fallback="wcs")).run(*blank)
    assert res.method == "wcs" and math.isnan(res.rms) and res.reference.shape == pair.science.shape


def test_reference_grid_keeps_the_science_epoch_and_truth_and_its_wcs_says_where_the_stars_are():
    grid = ReferenceGridConfig(shift=(23.4, -11.7), rotation=1.5, scale=1.008)
    pair = _pair(grid, seed=16)
    one = _pair(None, seed=16)
    np.testing.assert_array_equal(pair.science.image, one.science.image)
    assert pair.truth.equals(one.truth) and pair.meta["reference_grid"]["rotation"] == 1.5
    assert pair.reference.meta["fwhm_px"] == pytest.approx(one.reference.meta["fwhm_px"] * 1.008)
    from astropy.wcs import WCS
    from scipy.spatial import cKDTree

    from astroray.imaging.extraction import ExtractionConfig, SourceExtractor

    cat = SourceExtractor(ExtractionConfig(threshold=10.0)).run(pair.reference.image, background="estimate").catalog
    stars = pair.sources[(pair.sources["kind"] == "star") & (pair.sources["mag"] < 22.5)]
    wcs = WCS(fits.Header.fromstring(pair.reference.header, sep="\n"))
    x, y = wcs.all_world2pix(stars["ra"], stars["dec"], 0)
    dist, idx = cKDTree(cat[["xwin", "ywin"]].to_numpy()).query(np.column_stack([x, y]))
    close = dist < 1.0
    assert close.sum() >= 10
    assert abs(np.median(cat["xwin"].to_numpy()[idx[close]] - x[close])) < 0.05
    assert abs(np.median(cat["ywin"].to_numpy()[idx[close]] - y[close])) < 0.05
