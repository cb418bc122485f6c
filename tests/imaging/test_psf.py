"""PSF from the image's stars: the ePSF against the true PSF, shapes, grids, few stars, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from astroray.errors import InvalidInputError
from astroray.imaging.psf import PSFConfig, PSFEstimator, psf_shape, sample_epsf
from astroray.records import Exposure, MaskBits


def _gauss_pixels(dy, dx, sx, sy, theta):
    """Elliptical Gaussian integrated over pixels (5 x 5 sub-samples), unit total flux."""
    c, s = math.cos(theta), math.sin(theta)
    out = np.zeros(np.broadcast(dy, dx).shape)
    for oy in (np.arange(5) + 0.5) / 5 - 0.5:
        for ox in (np.arange(5) + 0.5) / 5 - 0.5:
            x, y = dx + ox, dy + oy
            u, v = c * x + s * y, -s * x + c * y
            out += np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return out / 25 / (2 * math.pi * sx * sy)


def _field(shape=(192, 192), n=40, sx=1.6, sy=1.6, theta=0.0, seed=0, sky=200.0, gain=2.0, flux=(2e4, 2e5),
           sx_slope=0.0):
    """A star field with known PSF (optionally widening along x) -> (Exposure, true stamp at the centre)."""
    rng = np.random.default_rng(seed)
    H, W = shape
    xs = rng.uniform(8, W - 9, n)
    ys = rng.uniform(8, H - 9, n)
    fl = np.exp(rng.uniform(np.log(flux[0]), np.log(flux[1]), n))
    model = np.full(shape, sky)
    yy, xx = np.mgrid[0:H, 0:W]
    for x, y, f in zip(xs, ys, fl):
        wx = sx * (1 + sx_slope * (x / (W - 1) - 0.5))
        wy = sy * (1 + sx_slope * (x / (W - 1) - 0.5))
        box = (slice(max(int(y) - 12, 0), int(y) + 13), slice(max(int(x) - 12, 0), int(x) + 13))
        model[box] += f * _gauss_pixels(yy[box] - y, xx[box] - x, wx, wy, theta)
    var = model / gain
    image = model + rng.normal(size=shape) * np.sqrt(var)
    r = 10
    off = np.arange(-r, r + 1)
    true = _gauss_pixels(off[:, None], off[None, :], sx, sy, theta)
    exp = Exposure(image=image, variance=var, mask=np.zeros(shape, np.uint32), psf=true / true.sum(),
                   meta={"exposure_id": "field", "saturation": 1e9, "gain": gain})
    return exp, true / true.sum()


def _compare(est: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """(median |difference| / peak, max |difference| / peak) on the overlap of two centred stamps."""
    n = min(est.shape[0], true.shape[0])
    a = est[(est.shape[0] - n) // 2:, (est.shape[1] - n) // 2:][:n, :n].astype(np.float64)
    b = true[(true.shape[0] - n) // 2:, (true.shape[1] - n) // 2:][:n, :n]
    a, b = a / a.sum(), b / b.sum()
    d = np.abs(a - b)
    return float(np.median(d) / b.max()), float(d.max() / b.max())


def test_empirical_psf_matches_the_true_one():
    exp, true = _field(seed=1)
    res = PSFEstimator(PSFConfig(grid=None, min_snr=20)).run(exp)
    assert res.meta["model"] == "empirical" and res.n_stars >= 12
    med, worst = _compare(res.psf, true)
    assert med < 0.005 and worst < 0.03
    true_fwhm = 2.3548 * 1.6
    assert res.fwhm == pytest.approx(true_fwhm * math.sqrt(1 + 1 / (12 * 1.6 ** 2)), rel=0.02)  # pixel-integrated
    assert res.ellipticity < 0.03
    assert res.psf.shape[0] % 2 == 1 and res.psf.sum() == pytest.approx(1.0, abs=1e-5)
    # the stage completed the exposure with its PSF
    assert isinstance(res.exposure, Exposure) and res.exposure.meta["psf_n_stars"] == res.n_stars
    np.testing.assert_array_equal(res.exposure.psf, res.psf)
    # the ePSF sampled at whole pixels is the stamp
    r = res.psf.shape[0] // 2
    off = np.arange(-r, r + 1, dtype=float)
    np.testing.assert_allclose(sample_epsf(res.epsf, res.oversampling, off[:, None], off[None, :]),
                               res.epsf[res.epsf.shape[0] // 2 + res.oversampling * off.astype(int)[:, None],
                                        res.epsf.shape[0] // 2 + res.oversampling * off.astype(int)[None, :]],
                               atol=1e-12)


def test_elliptical_psf_shape_and_angle():
    exp, true = _field(sx=2.0, sy=1.4, theta=math.radians(30), seed=2)
    res = PSFEstimator(PSFConfig(grid=None, min_snr=20)).run(exp)
    expected = psf_shape(true)
    assert res.ellipticity == pytest.approx(expected["ellipticity"], abs=0.03)
    assert res.theta == pytest.approx(30.0, abs=4.0)
    assert res.fwhm_major > res.fwhm_minor


def test_psf_shape_of_a_gaussian():
    sigma = 2.0
    off = np.arange(-20, 21) / 4.0  # 4 nodes per pixel
    g = np.exp(-0.5 * (off[:, None] ** 2 + off[None, :] ** 2) / sigma ** 2)
    shape = psf_shape(g, 4)
    assert shape["fwhm"] == pytest.approx(2.3548 * sigma, rel=0.01)
    assert shape["ellipticity"] < 0.01


def test_grid_follows_a_psf_that_widens_across_the_frame():
    exp, _ = _field(shape=(192, 384), n=70, sx_slope=0.4, seed=3)
    res = PSFEstimator(PSFConfig(grid=(1, 2), grid_min_stars=10, min_snr=20)).run(exp)
    assert res.grid.shape[:2] == (1, 2) and res.grid.shape[2:] == res.psf.shape
    # the PSF is 1.5x wider at the right edge than at the left; the tiles' centres see 1.22x
    assert res.grid_fwhm[0, 1] > 1.1 * res.grid_fwhm[0, 0]
    np.testing.assert_allclose(res.grid.sum(axis=(2, 3)), 1.0, atol=1e-5)
    auto = PSFEstimator(PSFConfig(grid="auto", grid_tile_size=192, min_snr=20)).run(exp)
    assert auto.grid.shape[:2] == (1, 2)
    assert PSFEstimator(PSFConfig(grid="auto", min_snr=20)).run(exp).grid is None  # one 1024 px tile: no grid


def test_few_stars_give_a_moffat_fit():
    exp, true = _field(n=4, seed=4, flux=(5e4, 2e5))
    res = PSFEstimator(PSFConfig(grid=None, min_stars=2, min_snr=20)).run(exp)
    assert res.meta["model"] == "moffat" and 2 <= res.n_stars <= 4
    med, _ = _compare(res.psf, true)
    assert med < 0.01
    assert res.fwhm == pytest.approx(psf_shape(true)["fwhm"], rel=0.05)


def test_saturated_and_flagged_stars_are_left_out():
    exp, _ = _field(seed=5)
    cfg = PSFConfig(grid=None, min_snr=20)
    bright = np.argsort(exp.image.ravel())[-1]
    y, x = np.unravel_index(bright, exp.shape)
    saturation = float(exp.image[y, x]) * 0.9
    exp2 = Exposure(image=exp.image, variance=exp.variance, mask=exp.mask, psf=exp.psf,
                    meta=dict(exp.meta, saturation=saturation))
    res = PSFEstimator(cfg).run(exp2)
    near = np.hypot(res.stars["x"] - x, res.stars["y"] - y) < 2
    assert near.any() and (res.stars.loc[near, "reason"] == "near saturation").all()
    mask = exp.mask.copy()
    mask[y, x] = MaskBits.CR
    res = PSFEstimator(cfg).run(exp, mask=mask)
    near = np.hypot(res.stars["x"] - x, res.stars["y"] - y) < 2
    assert (res.stars.loc[near, "reason"] == "flagged pixel in the core").all()


def test_array_input_and_background_handling():
    exp, true = _field(seed=6)
    res = PSFEstimator(PSFConfig(grid=None, min_snr=20)).run(exp.image, variance=exp.variance)
    assert res.exposure is None
    assert _compare(res.psf, true)[0] < 0.005


def test_too_few_stars_and_bad_input_raise():
    rng = np.random.default_rng(7)
    noise = rng.normal(100.0, 5.0, (96, 96))
    with pytest.raises(InvalidInputError, match="no sources found|no unflagged source"):
        PSFEstimator(PSFConfig(grid=None)).run(noise)
    exp, _ = _field(n=2, seed=8)
    with pytest.raises(InvalidInputError, match=r"need min_stars=3"):
        PSFEstimator(PSFConfig(grid=None, min_snr=20)).run(exp)
    with pytest.raises(InvalidInputError, match="every pixel is flagged"):
        PSFEstimator().run(exp, mask=np.full(exp.shape, MaskBits.SAT, np.uint32))
    with pytest.raises(InvalidInputError, match="2-D"):
        PSFEstimator().run(np.zeros(10))
    with pytest.raises(InvalidInputError, match="no finite pixels"):
        PSFEstimator().run(np.full((20, 20), np.nan))
