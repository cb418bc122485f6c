"""Survey FITS readers: layouts, noise and mask planes, header keywords, compression, and bad input."""
from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from astroray.errors import InvalidFITSError, InvalidInputError
from astroray.io.survey import (
    SurveyImage,
    SurveyReadConfig,
    SurveyReader,
    find_companions,
    map_mask_bits,
    read_survey_image,
)
from astroray.records import MaskBits

SHAPE = (80, 96)
GAIN, SKY, RDNOISE = 2.0, 400.0, 4.0


def _wcs_header(shape=SHAPE, crval=(150.0, 2.0), scale=1.0 / 3600) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crpix = [0.5 * (shape[1] + 1), 0.5 * (shape[0] + 1)]
    w.wcs.cd = np.array([[-scale, 0.0], [0.0, scale]])
    w.wcs.crval = list(crval)
    return w.to_header()


def _scene(seed=0, shape=SHAPE):
    """(counts with sky and noise, expected variance, star-only model)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    stars = np.zeros(shape)
    for x, y, f in ((20.3, 30.6, 5e4), (70.1, 50.2, 2e4), (45.7, 15.4, 8e3)):
        stars += f / (2 * np.pi * 1.5 ** 2) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5 ** 2))
    model = SKY + stars
    var = model / GAIN + (RDNOISE / GAIN) ** 2
    return (model + rng.normal(size=shape) * np.sqrt(var)).astype(np.float32), var, stars


def _plain_header(**cards) -> fits.Header:
    h = _wcs_header()
    base = {"GAIN": GAIN, "SATURATE": 30000.0, "RDNOISE": RDNOISE, "EXPTIME": 30.0, "MAGZP": 26.0,
            "FILTER": "ZTF_r", "MJD-OBS": 59000.25}
    base.update(cards)
    for k, v in base.items():
        if v is not None:
            h[k] = v
    return h


def _bytes(hdul: fits.HDUList) -> bytes:
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def test_plain_single_hdu_reads_header_keywords_and_estimates_variance():
    img, var, _ = _scene()
    img[5, 7] = np.nan
    img[60:62, 10:12] = 40000.0  # above SATURATE
    si = read_survey_image(_bytes(fits.HDUList([fits.PrimaryHDU(img, header=_plain_header())])))
    m = si.meta
    assert m["gain"] == GAIN and m["saturation"] == 30000.0 and m["read_noise"] == RDNOISE
    assert m["exptime"] == 30.0 and m["mjd"] == pytest.approx(59000.25) and m["band"] == "r"
    # MAGZP is the magnitude of one count in the image; astroray's zero point is one count per second
    assert m["zero_point"] == pytest.approx(26.0 - 2.5 * np.log10(30.0))
    assert m["zero_point_header"] == 26.0
    assert si.mask[5, 7] & MaskBits.NO_DATA and si.variance[5, 7] == 0 and si.image[5, 7] == 0
    assert (si.mask[60:62, 10:12] & MaskBits.SAT).all()
    assert "estimated" in m["variance_source"] and "gain" in m["variance_source"]
    good = si.mask == 0
    ratio = si.variance[good] / var[good]
    assert abs(np.median(ratio) - 1) < 0.06  # sky mesh RMS^2 plus the stars' Poisson term
    # near the bright star the Poisson term dominates: still the right variance
    assert 0.8 < si.variance[30, 20] / var[30, 20] < 1.25
    assert si.wcs() is not None and si.shape == SHAPE


@pytest.mark.parametrize("kind,extname", [("variance", "VARIANCE"), ("inverse_variance", "IVAR"),
                                          ("weight", "WEIGHT"), ("sigma", "ERR")])
def test_multi_extension_noise_planes_by_name(kind, extname):
    img, var, _ = _scene(1)
    plane = {"variance": var, "inverse_variance": 1 / var, "weight": 1 / var, "sigma": np.sqrt(var)}[kind]
    hdul = fits.HDUList([fits.PrimaryHDU(header=fits.Header({"EXPTIME": 10.0})),
                         fits.ImageHDU(img, header=_wcs_header(), name="SCI"),
                         fits.ImageHDU(plane.astype(np.float32), name=extname)])
    si = read_survey_image(_bytes(hdul))
    assert si.meta["hdu"] == "SCI" and si.meta["exptime"] == 10.0
    np.testing.assert_allclose(si.variance, var, rtol=1e-5)
    assert extname in si.meta["variance_source"]


def test_image_hdu_by_index_and_by_name_and_missing_name_lists_hdus():
    img, var, _ = _scene(2)
    other = np.zeros((10, 10), np.float32)
    hdul = fits.HDUList([fits.PrimaryHDU(other), fits.ImageHDU(img, header=_wcs_header(), name="CCD7")])
    data = _bytes(hdul)
    by_index = read_survey_image(data, config=SurveyReadConfig(image_hdu=1))
    by_name = read_survey_image(data, config=SurveyReadConfig(image_hdu="ccd7"))
    np.testing.assert_array_equal(by_index.image, img)
    np.testing.assert_array_equal(by_name.image, img)
    with pytest.raises(InvalidFITSError, match="no HDU 'CCD9'.*1:CCD7"):
        read_survey_image(data, config=SurveyReadConfig(image_hdu="CCD9"))


def test_tile_compressed_and_gzipped(tmp_path):
    img, var, _ = _scene(3)
    hdr = _plain_header()
    comp = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(img, header=hdr, quantize_level=-0.01)])
    fz = tmp_path / "frame.fits.fz"
    comp.writeto(fz)
    si = read_survey_image(fz)
    assert np.abs(si.image - img).max() <= 0.011  # quantised to 0.01 counts
    assert si.meta["gain"] == GAIN and si.wcs() is not None
    assert "ZCMPTYPE" not in si.header
    gz = tmp_path / "frame.fits.gz"
    gz.write_bytes(gzip.compress(_bytes(fits.HDUList([fits.PrimaryHDU(img, header=hdr)]))))
    np.testing.assert_array_equal(read_survey_image(gz).image, img)
    # gzip by content, whatever the name
    odd = tmp_path / "frame.dat"
    odd.write_bytes(gz.read_bytes())
    np.testing.assert_array_equal(read_survey_image(odd).image, img)


def test_ztf_sciimg_with_mskimg_companion(tmp_path):
    img, var, _ = _scene(4)
    sci = tmp_path / "ztf_20200101123456_000123_zr_c04_o_q3_sciimg.fits"
    msk = tmp_path / "ztf_20200101123456_000123_zr_c04_o_q3_mskimg.fits"
    raw = np.zeros(SHAPE, np.int16)
    raw[1, 1] = 1 << 8  # saturated
    raw[2, 2] = 1 << 1  # source detected: not bad
    raw[3, 3] = 1 << 10  # NaN
    raw[4, 4] = (1 << 2) | (1 << 9)  # low responsivity and dead
    raw[5, 5] = 1 << 6  # spillage
    fits.PrimaryHDU(img, header=_plain_header(ORIGIN="Zwicky Transient Facility")).writeto(sci)
    fits.PrimaryHDU(raw).writeto(msk)
    assert find_companions(sci) == {"mask": msk}
    si = read_survey_image(sci)
    assert si.meta["survey"] == "ztf" and si.meta["mask_convention"] == "ztf"
    assert si.meta["mask_source"] == str(msk)
    assert si.mask[1, 1] == MaskBits.SAT
    assert si.mask[2, 2] == MaskBits.DETECTED
    assert si.mask[3, 3] & MaskBits.NO_DATA
    assert si.mask[4, 4] == MaskBits.BAD
    assert si.mask[5, 5] == MaskBits.SAT
    assert si.meta["exposure_id"] == sci.name[: -len(".fits")]
    # without companion discovery the mask is empty
    assert not read_survey_image(sci, config=SurveyReadConfig(companions=False)).mask[1, 1]


def test_lsst_image_mask_variance_with_mask_plane_cards():
    img, var, _ = _scene(5)
    raw = np.zeros(SHAPE, np.int32)
    mhdr = fits.Header()
    # deliberately not the default afw bit positions: the cards must be read
    for name, bit in {"BAD": 3, "SAT": 0, "CR": 5, "EDGE": 1, "DETECTED": 2, "NO_DATA": 7, "INTRP": 4}.items():
        mhdr[f"HIERARCH MP_{name}"] = bit  # LSST writes its plane cards as HIERARCH
    raw[0, 0] = 1 << 0
    raw[1, 1] = 1 << 5
    raw[2, 2] = 1 << 3
    raw[3, 3] = 1 << 2
    raw[4, 4] = 1 << 7
    hdul = fits.HDUList([fits.PrimaryHDU(header=fits.Header({"EXPTIME": 30.0, "FLUXMAG0": 1e11, "BAND": "i"})),
                         fits.ImageHDU(img, header=_wcs_header(), name="IMAGE"),
                         fits.ImageHDU(raw, header=mhdr, name="MASK"),
                         fits.ImageHDU(var.astype(np.float32), name="VARIANCE")])
    si = read_survey_image(_bytes(hdul))
    assert si.meta["layout"] == "lsst" and si.meta["mask_convention"] == "lsst"
    assert si.mask[0, 0] == MaskBits.SAT and si.mask[1, 1] == MaskBits.CR and si.mask[2, 2] == MaskBits.BAD
    assert si.mask[3, 3] == MaskBits.DETECTED and si.mask[4, 4] & MaskBits.NO_DATA
    np.testing.assert_allclose(si.variance, var, rtol=1e-6)
    assert si.meta["band"] == "i"
    assert si.meta["zero_point"] == pytest.approx(2.5 * 11 - 2.5 * np.log10(30.0))


def test_astroray_layout_round_trip_keeps_psf_and_per_second_zero_point(tmp_path):
    from astroray.datasets import ImagePairConfig, simulate_pair
    from astroray.io.fits import write_exposure

    exp = simulate_pair(ImagePairConfig(shape=(64, 64)), seed=2).science
    path = write_exposure(exp, tmp_path / "exp.fits")
    si = read_survey_image(path)
    assert si.meta["layout"] == "astroray" and si.meta["mask_convention"] == "astroray"
    np.testing.assert_array_equal(si.image, exp.image)
    np.testing.assert_array_equal(si.variance, exp.variance)
    np.testing.assert_array_equal(si.mask & ~np.uint32(MaskBits.NO_DATA), exp.mask)
    assert si.meta["zero_point"] == pytest.approx(exp.meta["zero_point"])  # already per second
    back = si.to_exposure()
    np.testing.assert_array_equal(back.psf, exp.psf)


def test_config_overrides_win_over_the_header():
    img, var, _ = _scene(6)
    data = _bytes(fits.HDUList([fits.PrimaryHDU(img, header=_plain_header())]))
    cfg = SurveyReadConfig(gain=5.0, saturation=1000.0, zero_point=25.0, zero_point_convention="per_second",
                           band="g", exposure_id="x1", survey="mine")
    si = read_survey_image(data, config=cfg)
    assert si.meta["gain"] == 5.0 and si.meta["saturation"] == 1000.0 and si.meta["zero_point"] == 25.0
    assert si.meta["band"] == "g" and si.meta["exposure_id"] == "x1" and si.meta["survey"] == "mine"
    assert (si.mask[30, 20] & MaskBits.SAT)  # the bright star's core is above the lowered level


def test_relative_weight_is_scaled_to_the_sky_noise():
    img, var, _ = _scene(7)
    hdul = fits.HDUList([fits.PrimaryHDU(img, header=_plain_header()),
                         fits.ImageHDU((1e-3 / var).astype(np.float32), name="WEIGHT")])
    si = read_survey_image(_bytes(hdul), config=SurveyReadConfig(weight_kind="relative"))
    assert abs(np.median(si.variance / var) - 1) < 0.06
    assert "relative" in si.meta["variance_source"]


def test_map_mask_bits_conventions():
    raw = np.array([[0, 1, 2], [256, 4096, 1 << 14]])
    np.testing.assert_array_equal(map_mask_bits(raw, "nonzero"), [[0, 1, 1], [1, 1, 1]])
    ztf = map_mask_bits(raw, "ztf")
    assert ztf[0, 1] == MaskBits.BAD and ztf[0, 2] == MaskBits.DETECTED and ztf[1, 0] == MaskBits.SAT
    assert ztf[1, 1] == MaskBits.BAD and ztf[1, 2] == MaskBits.BAD  # reserved bits count as bad
    lsst = map_mask_bits(np.array([[1 << 8, 1 << 6]]), "lsst")
    assert lsst[0, 0] == MaskBits.NO_DATA and lsst[0, 1] == 0  # DETECTED_NEGATIVE is no defect


# --------------------------------------------------------------------------- bad input


def test_no_wcs_is_refused_unless_told():
    img, _, _ = _scene(8)
    data = _bytes(fits.HDUList([fits.PrimaryHDU(img, header=fits.Header({"GAIN": 2.0}))]))
    with pytest.raises(InvalidFITSError, match="no celestial WCS"):
        read_survey_image(data)
    assert read_survey_image(data, config=SurveyReadConfig(require_wcs=False)).shape == SHAPE


def test_all_saturated_frame_is_refused():
    img = np.full(SHAPE, 65535.0, np.float32)
    data = _bytes(fits.HDUList([fits.PrimaryHDU(img, header=_plain_header(SATURATE=60000.0))]))
    with pytest.raises(InvalidFITSError, match=r"usable \(100\.0% saturated"):
        read_survey_image(data)


def test_truncated_corrupt_and_wrong_shapes(tmp_path):
    img, _, _ = _scene(9)
    good = _bytes(fits.HDUList([fits.PrimaryHDU(img, header=_plain_header())]))
    with pytest.raises(InvalidFITSError, match="truncated"):
        read_survey_image(good[: len(good) // 2 + 7])
    with pytest.raises(InvalidFITSError, match="gzip"):
        read_survey_image(gzip.compress(good)[:200])
    with pytest.raises(InvalidFITSError, match="not a FITS file"):
        read_survey_image(b"hello" * 1000)
    with pytest.raises(InvalidFITSError, match="file not found"):
        read_survey_image(tmp_path / "missing.fits")
    with pytest.raises(InvalidFITSError, match="mask shape"):
        read_survey_image(good, mask=np.zeros((3, 3), np.int16))
    with pytest.raises(InvalidFITSError, match="estimate_variance=False"):
        read_survey_image(good, config=SurveyReadConfig(estimate_variance=False))


def test_survey_image_needs_a_psf_to_become_an_exposure():
    img, _, _ = _scene(10)
    si = SurveyReader().run(_bytes(fits.HDUList([fits.PrimaryHDU(img, header=_plain_header())])))
    assert isinstance(si, SurveyImage) and si.psf is None
    with pytest.raises(InvalidInputError, match="no PSF"):
        si.to_exposure()
    psf = np.zeros((5, 5), np.float32)
    psf[2, 2] = 1
    exp = si.to_exposure(psf)
    assert exp.psf.shape == (5, 5) and exp.meta["gain"] == GAIN
