"""Classic differencing: PSF matching, fitted scale/offset, variance and photometry against injected truth."""
from __future__ import annotations


import numpy as np
import pytest

from astroray.errors import InvalidInputError
from astroray.kernels.difference.classic import classic_difference, matching_covariances
from astroray.kernels.difference.common import psf_covariance


def gaussian_psf(sigma, size=25, q=1.0, dy=0.0, dx=0.0):
    yy, xx = np.indices((size, size), dtype=np.float64) - size // 2
    p = np.exp(-0.5 * (((xx - dx) / sigma) ** 2 + ((yy - dy) / (sigma * q)) ** 2))
    return p / p.sum()


def render(shape, ys, xs, fluxes, sigma, q=1.0):
    img = np.zeros(shape)
    h = 12
    for y, x, f in zip(ys, xs, fluxes):
        iy, ix = int(round(y)), int(round(x))
        img[iy - h:iy + h + 1, ix - h:ix + h + 1] += f * gaussian_psf(sigma, 2 * h + 1, q, y - iy, x - ix)
    return img


def pair(rng, shape=(384, 384), sigma_r=1.5, sigma_n=2.4, q_r=1.0, q_n=1.0, ratio=0.7, offset=3.0,
         n_stars=120, transients=()):
    ys = rng.uniform(20, shape[0] - 20, n_stars)
    xs = rng.uniform(20, shape[1] - 20, n_stars)
    f = np.exp(rng.uniform(np.log(3e3), np.log(1e5), n_stars))
    mr = render(shape, ys, xs, f, sigma_r, q_r)
    mn = render(shape, ys, xs, f * ratio, sigma_n, q_n)
    for (y, x, fl) in transients:
        mn += render(shape, [y], [x], [fl], sigma_n, q_n)
    vr, vn = 16.0 + mr, 49.0 + np.clip(mn, 0, None)
    R = mr + rng.normal(size=shape) * np.sqrt(vr)
    N = mn + offset + rng.normal(size=shape) * np.sqrt(vn)
    return dict(R=R.astype(np.float32), N=N.astype(np.float32), VR=vr.astype(np.float32),
                VN=vn.astype(np.float32), Pr=gaussian_psf(sigma_r, q=q_r), Pn=gaussian_psf(sigma_n, q=q_n),
                stars=(ys, xs))


def test_matching_covariances_add_up():
    pr, pn = gaussian_psf(2.0, 31, q=0.6), gaussian_psf(1.6, 31, q=1.4)
    for_r, for_n = matching_covariances(pr, pn)
    np.testing.assert_allclose(psf_covariance(pr) + for_r, psf_covariance(pn) + for_n, atol=1e-9)
    assert np.all(np.linalg.eigvalsh(for_r) >= -1e-12) and np.all(np.linalg.eigvalsh(for_n) >= -1e-12)
    assert np.trace(for_r) > 0 and np.trace(for_n) > 0  # each wider along a different axis


def test_scale_offset_and_transient_flux_recovered():
    rng = np.random.default_rng(11)
    trans = [(float(y), float(x), 2.0e4) for y in (60, 190, 320) for x in (60, 190, 320)]
    sim = pair(rng, transients=trans)
    res = classic_difference(sim["R"], sim["N"], sim["Pr"], sim["Pn"], variance_reference=sim["VR"],
                             variance_science=sim["VN"])
    assert res.convolved == "reference"
    assert res.scale == pytest.approx(0.7, rel=0.01)
    assert res.offset == pytest.approx(3.0, abs=0.3)
    ys, xs = np.array([(int(t[0]), int(t[1])) for t in trans]).T
    assert np.mean(res.flux[ys, xs] / 2.0e4 - 1) == pytest.approx(0.0, abs=0.02)
    assert np.all(res.score[ys, xs] > 10)
    # Off source the difference is noise with the propagated variance.
    yy, xx = np.indices(res.difference.shape)
    far = np.ones(res.difference.shape, bool)
    for y, x in zip(*sim["stars"]):
        far &= (yy - y) ** 2 + (xx - x) ** 2 > 12 ** 2
    for y, x in zip(ys, xs):
        far &= (yy - y) ** 2 + (xx - x) ** 2 > 12 ** 2
    far[:12], far[-12:], far[:, :12], far[:, -12:] = False, False, False, False
    pulls = res.difference[far] / np.sqrt(res.variance[far])
    assert abs(float(pulls.mean())) < 0.05
    assert abs(float(pulls.std()) - 1) < 0.05
    assert abs(float(res.score[far].std()) - 1) < 0.1


def test_sharper_science_is_convolved_instead():
    rng = np.random.default_rng(12)
    sim = pair(rng, sigma_r=2.4, sigma_n=1.5, ratio=1.2, offset=0.0)
    res = classic_difference(sim["R"], sim["N"], sim["Pr"], sim["Pn"], variance_reference=sim["VR"],
                             variance_science=sim["VN"], fit_offset=False)
    assert res.convolved == "science"
    assert res.scale == pytest.approx(1.2, rel=0.01)
    assert res.offset == 0.0
    assert psf_covariance(res.psf)[0, 0] == pytest.approx(2.4 ** 2, rel=0.02)


def test_given_flux_ratio_is_kept():
    rng = np.random.default_rng(13)
    sim = pair(rng, ratio=0.7)
    res = classic_difference(sim["R"], sim["N"], sim["Pr"], sim["Pn"], variance_reference=sim["VR"],
                             variance_science=sim["VN"], flux_ratio=0.75, score="pixel")
    assert res.scale == 0.75
    np.testing.assert_allclose(res.score, res.difference / np.sqrt(res.variance), rtol=1e-5, atol=1e-5)


def test_bad_inputs():
    R = np.zeros((64, 64), np.float32)
    V = np.ones((64, 64), np.float32)
    P = gaussian_psf(1.5, 15)
    with pytest.raises(InvalidInputError, match="does not match"):
        classic_difference(R, R[:, :60], P, P, variance_reference=V, variance_science=V)
    with pytest.raises(InvalidInputError, match="cannot be normalised"):
        classic_difference(R, R, -P, P, variance_reference=V, variance_science=V)
    with pytest.raises(InvalidInputError, match="no good pixels"):
        classic_difference(R, R, P, P, variance_reference=V * 0, variance_science=V)
    with pytest.raises(InvalidInputError, match="flux_ratio"):
        classic_difference(R, R, P, P, variance_reference=V, variance_science=V)  # blank: no scale to fit
