"""FITS exposures: round trip, real frame, and every kind of bad file."""
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from astroray.errors import InvalidFITSError, InvalidInputError
from astroray.io.fits import exposure_to_bytes, read_exposure, read_image, write_exposure
from astroray.datasets import ImagePairConfig, simulate_pair
from astroray.records import Exposure, MaskBits


def _exposure(shape=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.1, 2.2]
    w.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    w.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    yy, xx = np.mgrid[-3:4, -3:4]
    psf = np.exp(-(xx**2 + yy**2) / 3.0)
    mask = np.zeros(shape, np.uint32)
    mask[3, 4] = MaskBits.SAT | MaskBits.BAD
    return Exposure(image=rng.normal(100, 5, shape), variance=np.full(shape, 25.0), mask=mask,
                    psf=psf / psf.sum(), header=w.to_header().tostring(),
                    meta={"exposure_id": "sim-1", "survey": "sim", "visit": 7, "ccd": 3, "band": "r",
                          "mjd": 60000.5, "exptime": 30.0, "gain": 1.5, "saturation": 60000.0,
                          "zero_point": 28.1, "sky_level": 100.0})


def test_round_trip_keeps_every_plane_and_the_wcs(tmp_path):
    exp = _exposure()
    path = write_exposure(exp, tmp_path / "e.fits")
    back = read_exposure(path)
    for plane in ("image", "variance", "mask", "psf"):
        np.testing.assert_array_equal(getattr(back, plane), getattr(exp, plane))
        assert getattr(back, plane).dtype == getattr(exp, plane).dtype
    for key in ("survey", "visit", "ccd", "band", "mjd", "exptime", "gain", "saturation", "zero_point", "sky_level"):
        assert back.meta[key] == exp.meta[key], key
    w_in = WCS(fits.Header.fromstring(exp.header))
    w_out = WCS(fits.Header.fromstring(back.header, sep="\n"))
    np.testing.assert_allclose(w_out.pixel_to_world_values(10, 20), w_in.pixel_to_world_values(10, 20), atol=1e-10)


def test_bytes_round_trip():
    exp = _exposure()
    back = read_exposure(exposure_to_bytes(exp), name="upload")
    np.testing.assert_array_equal(back.image, exp.image)


def test_real_sep_frame_reads_as_image(shared_data):
    img, header = read_image(shared_data / "images/sep/image.fits")
    assert img.shape == (256, 256) and img.dtype == np.float32
    assert np.isfinite(img).all()
    # a plain frame has no VARIANCE/PSF: read_exposure says so and points at read_image
    with pytest.raises(InvalidFITSError, match="read_image"):
        read_exposure(shared_data / "images/sep/image.fits")


def test_truncated_file_names_file_and_problem(tmp_path):
    path = write_exposure(_exposure(), tmp_path / "e.fits")
    data = path.read_bytes()
    bad = tmp_path / "truncated.fits"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidFITSError) as err:
        read_exposure(bad)
    assert "truncated.fits" in str(err.value)


def test_garbage_and_empty_bytes(tmp_path):
    bad = tmp_path / "garbage.fits"
    bad.write_bytes(b"\x00\x01 not a fits file" * 300)
    with pytest.raises(InvalidFITSError, match="garbage.fits: not a FITS file"):
        read_exposure(bad)
    with pytest.raises(InvalidInputError, match="not a FITS file"):
        read_exposure(b"", name="empty")
    with pytest.raises(InvalidFITSError, match="file not found"):
        read_exposure(tmp_path / "missing.fits")


def test_shape_mismatch_and_nan_only(tmp_path):
    exp = _exposure()
    hdul = fits.open(write_exposure(exp, tmp_path / "ok.fits"))
    hdul["VARIANCE"].data = np.ones((10, 10), np.float32)
    hdul.writeto(tmp_path / "mismatch.fits")
    with pytest.raises(InvalidFITSError, match="VARIANCE shape"):
        read_exposure(tmp_path / "mismatch.fits")
    hdul = fits.open(tmp_path / "ok.fits")
    hdul["IMAGE"].data = np.full(exp.shape, np.nan, np.float32)
    hdul.writeto(tmp_path / "nan.fits")
    with pytest.raises(InvalidFITSError, match="no finite pixels"):
        read_exposure(tmp_path / "nan.fits")
    hdul = fits.open(tmp_path / "ok.fits")
    hdul["IMAGE"].data = np.ones((3, 4, 5), np.float32)
    hdul.writeto(tmp_path / "cube.fits")
    with pytest.raises(InvalidFITSError, match="3-D"):
        read_exposure(tmp_path / "cube.fits")


def test_a_truncated_file_is_refused_with_one_stable_reason(tmp_path):
    from astroray.io.fits import read_exposure

    data = exposure_to_bytes(simulate_pair(ImagePairConfig(shape=(64, 64)), seed=1, index=0).science)
    for cut in (len(data) // 2, len(data) // 2 - (len(data) // 2) % 2880, len(data) - 1000, 5000):
        path = tmp_path / f"cut{cut}.fits"
        path.write_bytes(data[:cut])
        reasons = set()
        for _ in range(2):
            with pytest.raises(InvalidFITSError) as err:
                read_exposure(path)
            reasons.add(err.value.reason)
        assert len(reasons) == 1
        reason = reasons.pop()
        assert reason.startswith(f"truncated: {cut} bytes"), reason


def test_header_lies_are_refused_before_any_data_is_read():
    from astroray.io.fits import check_structure

    data = bytearray(exposure_to_bytes(simulate_pair(ImagePairConfig(shape=(64, 64)), seed=1, index=0).science))
    k = data.index(b"NAXIS1  =", 2880)  # the IMAGE HDU's first axis
    data[k:k + 80] = b"NAXIS1  =                   -5".ljust(80)
    with pytest.raises(InvalidFITSError, match="NAXIS1 = -5"):
        check_structure(bytes(data))
