"""ZOGY kernel: against the published formulas (float64, evaluated directly) and injected truth."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import convolve2d
from scipy.stats import norm

from astroray.errors import InvalidInputError
from astroray.kernels.difference.common import fit_flux_ratio, prepare_psf
from astroray.kernels.difference.zogy import zogy


# --------------------------------------------------------------------------- simulated pairs


def gaussian_psf(sigma, size=25, dy=0.0, dx=0.0, q=1.0):
    """Pixel-sampled elliptical Gaussian (axis ratio ``q``) centred at (dy, dx) from the stamp centre."""
    yy, xx = np.indices((size, size), dtype=np.float64) - size // 2
    p = np.exp(-0.5 * (((xx - dx) / sigma) ** 2 + ((yy - dy) / (sigma * q)) ** 2))
    return p / p.sum()


def render(shape, ys, xs, fluxes, sigma, q=1.0):
    """Point sources with a Gaussian PSF at sub-pixel positions (same sampling as gaussian_psf)."""
    img = np.zeros(shape)
    half = 12
    for y, x, f in zip(ys, xs, fluxes):
        iy, ix = int(round(y)), int(round(x))
        stamp = gaussian_psf(sigma, 2 * half + 1, y - iy, x - ix, q) * f
        y0, x0 = iy - half, ix - half
        ys0, xs0 = max(y0, 0), max(x0, 0)
        ys1, xs1 = min(y0 + 2 * half + 1, shape[0]), min(x0 + 2 * half + 1, shape[1])
        img[ys0:ys1, xs0:xs1] += stamp[ys0 - y0:ys1 - y0, xs0 - x0:xs1 - x0]
    return img


def simulate_pair(rng, shape=(256, 256), *, sigma_r=1.6, sigma_n=2.2, bkg_r=25.0, bkg_n=64.0,
                  n_stars=60, flux_ratio=1.3, star_flux=(2e3, 6e4), transients=()):
    """Reference and science with stars, Gaussian noise of background + source variance, transients.

    ``transients`` are ``(y, x, flux)`` in science counts.  Returns a dict
    with images, true variance maps and PSFs.
    """
    ys = rng.uniform(15, shape[0] - 15, n_stars)
    xs = rng.uniform(15, shape[1] - 15, n_stars)
    f = np.exp(rng.uniform(*np.log(star_flux), n_stars))
    model_r = render(shape, ys, xs, f, sigma_r)
    model_n = render(shape, ys, xs, f * flux_ratio, sigma_n)
    if len(transients):
        ty, tx, tf = (np.asarray(c, float) for c in zip(*transients))
        model_n += render(shape, ty, tx, tf, sigma_n)
    var_r = bkg_r + model_r
    var_n = bkg_n + np.clip(model_n, 0, None)
    R = model_r + rng.normal(size=shape) * np.sqrt(var_r)
    N = model_n + rng.normal(size=shape) * np.sqrt(var_n)
    return dict(R=R.astype(np.float32), N=N.astype(np.float32), VR=var_r.astype(np.float32),
                VN=var_n.astype(np.float32), Pr=gaussian_psf(sigma_r), Pn=gaussian_psf(sigma_n),
                stars=(ys, xs, f), ratio=flux_ratio, bkg_r=bkg_r, bkg_n=bkg_n)


# --------------------------------------------------------------------------- reference formulas


def zogy_reference(R, N, Pr, Pn, VR, VN, *, F_r, F_n, s_r, s_n, sx=0.0, sy=0.0):
    """Eqs. 12-15, 17, 25-28, 30-31, 41-43 of Zackay, Ofek & Gal-Yam (2016), float64, no shortcuts.

    Linear (not circular) convolution: every image is zero padded to twice its
    size; kernels are taken from the same grid; V(S) is a direct 2-D
    convolution of the variance images with the squared kernels.
    """
    H, W = R.shape
    G = (2 * H + Pr.shape[0], 2 * W + Pr.shape[1])

    def onto(stamp):
        big = np.zeros(G)
        h, w = stamp.shape
        for i in range(h):
            for j in range(w):
                big[(i - h // 2) % G[0], (j - w // 2) % G[1]] = stamp[i, j]
        return np.fft.fft2(big)

    def pad(img):
        big = np.zeros(G)
        big[:H, :W] = img
        return np.fft.fft2(big)

    Pr_h, Pn_h, R_h, N_h = onto(Pr), onto(Pn), pad(R.astype(np.float64)), pad(N.astype(np.float64))
    den2 = s_n ** 2 * F_r ** 2 * np.abs(Pr_h) ** 2 + s_r ** 2 * F_n ** 2 * np.abs(Pn_h) ** 2
    D_h = (F_r * Pr_h * N_h - F_n * Pn_h * R_h) / np.sqrt(den2)                     # eq. 13
    F_D = F_r * F_n / math.sqrt(s_n ** 2 * F_r ** 2 + s_r ** 2 * F_n ** 2)           # eq. 15
    PD_h = F_r * F_n * Pr_h * Pn_h / (F_D * np.sqrt(den2))                             # eq. 14
    S_h = F_D * D_h * np.conj(PD_h)                                                    # eq. 17
    kn_h = F_n * F_r ** 2 * np.conj(Pn_h) * np.abs(Pr_h) ** 2 / den2                   # eq. 26
    kr_h = F_r * F_n ** 2 * np.conj(Pr_h) * np.abs(Pn_h) ** 2 / den2                   # eq. 27
    back = lambda a: np.real(np.fft.ifft2(a))[:H, :W]  # noqa: E731
    D, S = back(D_h), back(S_h)
    S_N, S_R = back(kn_h * N_h), back(kr_h * R_h)
    r = 3 * max(Pr.shape[0], Pn.shape[0]) // 2
    idx = np.arange(-r, r + 1)
    kn = np.real(np.fft.ifft2(kn_h))[np.ix_(idx % G[0], idx % G[1])]
    kr = np.real(np.fft.ifft2(kr_h))[np.ix_(idx % G[0], idx % G[1])]
    V_S = convolve2d(VN, kn ** 2, mode="same") + convolve2d(VR, kr ** 2, mode="same")  # eq. 28
    gNy, gNx = np.gradient(S_N)
    gRy, gRx = np.gradient(S_R)
    V_ast = sx ** 2 * (gNx ** 2 + gRx ** 2) + sy ** 2 * (gNy ** 2 + gRy ** 2)           # eqs. 30-31
    S_corr = S / np.sqrt(V_S + V_ast)                                                  # eq. 25
    F_S = np.sum(F_n ** 2 * F_r ** 2 * np.abs(Pn_h) ** 2 * np.abs(Pr_h) ** 2 / den2) / (G[0] * G[1])  # eq. 42
    P_D = np.real(np.fft.ifft2(PD_h))
    return dict(D=D, S=S, S_corr=S_corr, F_D=F_D, F_S=F_S, flux=S / F_S, flux_err=np.sqrt(V_S) / F_S,
                P_D=P_D, S_N=S_N, S_R=S_R)


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("astrometric", [(0.0, 0.0), (0.3, 0.2)])
def test_matches_published_formulas(astrometric):
    rng = np.random.default_rng(3)
    sim = simulate_pair(rng, (72, 88), sigma_r=1.0, sigma_n=1.25, n_stars=6, star_flux=(2e3, 2e4),
                        flux_ratio=0.8, transients=[(30.0, 40.0, 3e3)])
    Pr, Pn = gaussian_psf(1.0, 15), gaussian_psf(1.25, 15)
    out = zogy(sim["R"], sim["N"], Pr, Pn, flux_ratio=0.8, sigma_reference=5.0, sigma_science=8.0,
               variance_reference=sim["VR"], variance_science=sim["VN"], sigma_astrometric=astrometric)
    ref = zogy_reference(sim["R"], sim["N"], Pr, Pn, sim["VR"], sim["VN"], F_r=1 / 0.8, F_n=1.0, s_r=5.0,
                         s_n=8.0, sx=astrometric[0], sy=astrometric[1])
    assert _rel(out.difference, ref["D"]) < 1e-4
    assert _rel(out.matched_filter, ref["S"]) < 1e-4
    assert _rel(out.score, ref["S_corr"]) < 1e-4
    assert _rel(out.flux, ref["flux"]) < 1e-4
    assert _rel(out.flux_err, ref["flux_err"]) < 1e-4
    assert out.zero_point == pytest.approx(ref["F_D"], rel=1e-12)
    assert out.flux_normalisation == pytest.approx(ref["F_S"], rel=1e-5)
    side = out.psf.shape[0]
    idx = np.arange(-(side // 2), side // 2 + 1)
    P_D_ref = ref["P_D"][np.ix_(idx % ref["P_D"].shape[0], idx % ref["P_D"].shape[1])]
    assert _rel(out.psf, P_D_ref) < 1e-4
    assert out.psf.sum() == pytest.approx(1.0, abs=1e-6)
    assert out.difference.dtype == np.float32 and out.score.dtype == np.float32


def test_background_only_variance_is_parseval_constant():
    rng = np.random.default_rng(4)
    R = rng.normal(0, 2.0, (96, 96)).astype(np.float32)
    N = rng.normal(0, 3.0, (96, 96)).astype(np.float32)
    Pr, Pn = gaussian_psf(1.1, 15), gaussian_psf(1.3, 15)
    out = zogy(R, N, Pr, Pn, sigma_reference=2.0, sigma_science=3.0, source_noise=False)
    ref = zogy_reference(R, N, Pr, Pn, np.full(R.shape, 4.0), np.full(R.shape, 9.0), F_r=1.0, F_n=1.0,
                         s_r=2.0, s_n=3.0)
    # Away from the edges, V(S) with constant variance maps equals F_S.
    assert _rel(out.score[20:-20, 20:-20], ref["S_corr"][20:-20, 20:-20]) < 1e-4
    assert out.score_variance == pytest.approx(ref["F_S"], rel=1e-5)


def _far_from(shape, ys, xs, radius):
    yy, xx = np.indices(shape)
    far = np.ones(shape, bool)
    for y, x in zip(ys, xs):
        far &= (yy - y) ** 2 + (xx - x) ** 2 > radius ** 2
    return far


def test_score_is_unit_normal_off_source_and_tails_are_gaussian():
    rng = np.random.default_rng(5)
    sim = simulate_pair(rng, (512, 512), n_stars=80, flux_ratio=1.3)
    out = zogy(sim["R"], sim["N"], sim["Pr"], sim["Pn"], flux_ratio=1.3,
               variance_reference=sim["VR"], variance_science=sim["VN"])
    sc = out.score
    off = _far_from(sc.shape, *sim["stars"][:2], 12)
    assert abs(float(sc[off].mean())) < 0.03
    assert abs(float(sc[off].std()) - 1) < 0.05
    # With the source-noise terms, the pixels on the stars are unit-width too.
    on = ~_far_from(sc.shape, *sim["stars"][:2], 4)
    assert abs(float(sc[on].std()) - 1) < 0.1
    # Tail fractions against the Gaussian expectation (pixels are correlated over a PSF: loose band).
    for t in (3.0, 4.0):
        expected = 2 * norm.sf(t) * sc.size
        seen = int((np.abs(sc) > t).sum())
        assert 0.6 * expected < seen < 1.5 * expected, (t, seen, expected)


def test_injected_transients_found_and_fluxes_unbiased():
    rng = np.random.default_rng(6)
    shape = (512, 512)
    bkg_n, sigma_n = 64.0, 2.2
    # Point-source S/N of the science image alone: f / sqrt(bkg * 4 pi sigma^2).
    noise_psf = math.sqrt(bkg_n * 4 * math.pi * sigma_n ** 2)
    grid = [(y, x) for y in range(24, 500, 36) for x in range(24, 500, 36)]
    fluxes = rng.uniform(6.0, 12.0, len(grid)) * noise_psf
    sub = rng.uniform(-0.5, 0.5, (len(grid), 2))
    trans = [(y + dy, x + dx, f) for (y, x), (dy, dx), f in zip(grid, sub, fluxes)]
    sim = simulate_pair(rng, shape, n_stars=40, transients=trans, bkg_n=bkg_n, sigma_n=sigma_n)
    out = zogy(sim["R"], sim["N"], sim["Pr"], sim["Pn"], flux_ratio=sim["ratio"],
               variance_reference=sim["VR"], variance_science=sim["VN"])
    iy = np.array([int(round(t[0])) for t in trans])
    ix = np.array([int(round(t[1])) for t in trans])
    # S/N from the error map, which follows from the true variance maps, not from the noise drawn.
    snr_true = fluxes / out.flux_err[iy, ix]
    found = np.array([out.score[y - 2:y + 3, x - 2:x + 3].max() >= 5.0 for y, x in zip(iy, ix)])
    bright = snr_true >= 7.0
    assert bright.sum() >= 60
    assert found[bright].mean() >= 0.95
    # ... and the score has no peaks above 5 away from the transients and the stars.
    far = _far_from(shape, iy, ix, 6) & _far_from(shape, *sim["stars"][:2], 8)
    assert int((out.score[far] > 5).sum()) == 0


def test_flux_photometry_unbiased_with_unit_pulls():
    rng = np.random.default_rng(7)
    grid = [(y, x) for y in range(20, 500, 30) for x in range(20, 500, 30)]  # 256 sources on pixel centres
    flux = rng.uniform(4e3, 8e3, len(grid))
    trans = [(float(y), float(x), f) for (y, x), f in zip(grid, flux)]
    sim = simulate_pair(rng, (512, 512), n_stars=30, transients=trans)
    out = zogy(sim["R"], sim["N"], sim["Pr"], sim["Pn"], flux_ratio=sim["ratio"],
               variance_reference=sim["VR"], variance_science=sim["VN"])
    ys, xs = np.array(grid).T
    meas, err = out.flux[ys, xs].astype(np.float64), out.flux_err[ys, xs].astype(np.float64)
    clean = _far_from((512, 512), *sim["stars"][:2], 10)[ys, xs]  # no star residual under the source
    bias = float(np.mean(meas[clean] / flux[clean] - 1))
    pulls = (meas[clean] - flux[clean]) / err[clean]
    assert abs(bias) < 0.01
    assert abs(float(pulls.mean())) < 3 / math.sqrt(clean.sum())
    assert 0.85 < float(pulls.std()) < 1.15


def test_flux_ratio_fit_recovers_truth_and_rejects_variables():
    rng = np.random.default_rng(8)
    sim = simulate_pair(rng, (384, 384), n_stars=80, flux_ratio=1.37, star_flux=(1e4, 2e5))
    # Three "variables": brighter in the science image only.
    ys, xs, f = sim["stars"]
    sim["N"] += render((384, 384), ys[:3], xs[:3], 2 * f[:3], 2.2).astype(np.float32)
    fit = fit_flux_ratio(sim["R"], sim["N"], variance_reference=sim["VR"], variance_science=sim["VN"],
                         good=np.ones((384, 384), bool), box=25)
    assert fit.ratio == pytest.approx(1.37, rel=0.01)
    assert abs(fit.ratio - 1.37) < 4 * fit.ratio_err + 1e-3
    assert fit.n_used <= fit.n_stars - 3


def test_psf_is_recentred_and_normalised():
    p = gaussian_psf(1.5, 21, dy=0.4, dx=-0.3) * 7.0
    q = prepare_psf(p)
    yy, xx = np.indices(q.shape)
    assert q.sum() == pytest.approx(1.0)
    assert (q * yy).sum() == pytest.approx(10.0, abs=1e-3)
    assert (q * xx).sum() == pytest.approx(10.0, abs=1e-3)


def test_no_wrap_around_from_opposite_edge():
    # A bright source at the left edge must leave nothing at the right edge.
    R = np.zeros((128, 128), np.float32)
    N = np.zeros((128, 128), np.float32)
    N += render((128, 128), [64.0], [1.0], [1e6], 2.5).astype(np.float32)
    out = zogy(R, N, gaussian_psf(1.5, 21), gaussian_psf(2.5, 21), sigma_reference=1.0, sigma_science=1.0,
               source_noise=False)
    assert np.abs(out.matched_filter[:, -20:]).max() < 1e-6 * np.abs(out.matched_filter).max()
    assert np.abs(out.difference[:, -20:]).max() < 1e-5 * np.abs(out.difference).max()


@pytest.mark.parametrize("case, match", [
    ("shape", "does not match"),
    ("nan", "NaN"),
    ("psf_zero", "cannot be normalised"),
    ("psf_even", "odd"),
    ("zero_sigma", "positive"),
    ("zero_variance", "zero everywhere"),
    ("ratio", "flux_ratio"),
])
def test_bad_inputs_raise(case, match):
    rng = np.random.default_rng(9)
    R = rng.normal(size=(64, 64)).astype(np.float32)
    N = rng.normal(size=(64, 64)).astype(np.float32)
    V = np.ones((64, 64), np.float32)
    P = gaussian_psf(1.5, 15)
    kw = dict(variance_reference=V, variance_science=V)
    args = [R, N, P, P]
    if case == "shape":
        args[1] = N[:60]
    elif case == "nan":
        args[0] = R.copy()
        args[0][3, 3] = np.nan
    elif case == "psf_zero":
        args[2] = np.zeros((15, 15))
    elif case == "psf_even":
        args[3] = np.ones((14, 14))
    elif case == "zero_sigma":
        kw["sigma_reference"] = 0.0
    elif case == "zero_variance":
        kw = dict(variance_reference=np.zeros((64, 64), np.float32), variance_science=V)
    elif case == "ratio":
        kw["flux_ratio"] = -1.0
    with pytest.raises(InvalidInputError, match=match):
        zogy(*args, **kw)


def test_tiles_with_one_psf_match_the_untiled_run():
    rng = np.random.default_rng(10)
    sim = simulate_pair(rng, (200, 232), n_stars=40)
    kw = dict(flux_ratio=sim["ratio"], variance_reference=sim["VR"], variance_science=sim["VN"],
              sigma_reference=5.0, sigma_science=8.0, sigma_astrometric=(0.1, 0.1))
    whole = zogy(sim["R"], sim["N"], sim["Pr"], sim["Pn"], **kw)
    grid_n = np.broadcast_to(sim["Pn"], (2, 3) + sim["Pn"].shape)
    tiled = zogy(sim["R"], sim["N"], sim["Pr"], grid_n, **kw)
    for name in ("matched_filter", "score", "flux", "flux_err"):
        assert _rel(getattr(tiled, name), getattr(whole, name)) < 1e-4, name
    # D's kernel has faint wings beyond the overlap when the reference is the sharper image.
    assert _rel(tiled.difference, whole.difference) < 1e-3
    assert tiled.meta["psf_grid"].shape[:2] == (2, 3)


def test_tiles_follow_a_spatially_varying_psf():
    rng = np.random.default_rng(11)
    shape = (256, 256)
    sig_n = np.array([[1.8, 2.2], [2.6, 3.0]])  # science seeing per quadrant
    ys = rng.uniform(20, 236, 120)
    xs = rng.uniform(20, 236, 120)
    keep = (np.abs(ys - 128) > 14) & (np.abs(xs - 128) > 14)  # stars wholly inside one quadrant
    ys, xs = ys[keep], xs[keep]
    f = np.exp(rng.uniform(np.log(2e4), np.log(2e5), ys.size))
    model_r = render(shape, ys, xs, f, 1.5)
    model_n = np.zeros(shape)
    for y, x, fl in zip(ys, xs, f):
        model_n += render(shape, [y], [x], [fl], sig_n[int(y >= 128), int(x >= 128)])
    vr, vn = 25.0 + model_r, 64.0 + model_n
    R = (model_r + rng.normal(size=shape) * np.sqrt(vr)).astype(np.float32)
    N = (model_n + rng.normal(size=shape) * np.sqrt(vn)).astype(np.float32)
    grid = np.stack([np.stack([gaussian_psf(s) for s in row]) for row in sig_n])
    kw = dict(flux_ratio=1.0, variance_reference=vr.astype(np.float32), variance_science=vn.astype(np.float32))
    tiled = zogy(R, N, gaussian_psf(1.5), grid, tile_overlap=40, **kw)
    single = zogy(R, N, gaussian_psf(1.5), gaussian_psf(2.4), **kw)
    assert abs(float(tiled.score.std()) - 1) < 0.05
    assert np.abs(tiled.score).max() < 6
    assert np.abs(single.score).max() > 10  # the wrong seeing leaves star residuals


def test_numba_and_numpy_fourier_arithmetic_agree():
    from astroray.kernels.difference.common import FourierBackend, embed_kernel

    rng = np.random.default_rng(12)
    sim = simulate_pair(rng, (160, 144), n_stars=20)
    kw = dict(flux_ratio=1.3, variance_reference=sim["VR"], variance_science=sim["VN"], difference_variance=True,
              sigma_astrometric=(0.1, 0.2))
    fast = zogy(sim["R"], sim["N"], sim["Pr"], sim["Pn"], backend=FourierBackend(np, cpu_kernels="numba"), **kw)
    twin = zogy(sim["R"], sim["N"], sim["Pr"], sim["Pn"], backend=FourierBackend(np, cpu_kernels="numpy"), **kw)
    for name in ("difference", "matched_filter", "score", "flux_err", "difference_variance"):
        assert _rel(getattr(fast, name), getattr(twin, name)) < 1e-5, name
    # The one-pass astrometric variance is numpy.gradient's, edges included.
    from astroray.kernels.difference import _cpu

    s_n, s_r = (rng.normal(size=(7, 5)).astype(np.float32) for _ in range(2))
    gyn, gxn = np.gradient(s_n.astype(np.float64))
    gyr, gxr = np.gradient(s_r.astype(np.float64))
    expected = 0.01 * (gxn ** 2 + gxr ** 2) + 0.04 * (gyn ** 2 + gyr ** 2)
    np.testing.assert_allclose(_cpu.astrometric_variance(s_n, s_r, np.float32(0.01), np.float32(0.04)), expected,
                               rtol=1e-5)
    # The pruned stamp transform equals the full transform of the embedded stamp.
    fb = FourierBackend(np)
    stamp = rng.normal(size=(9, 7))
    full = np.fft.rfft2(embed_kernel(stamp, (40, 36), np, np.float64))
    np.testing.assert_allclose(fb.rfft2_stamp(stamp, (40, 36), np.float64), full, atol=1e-12)


def test_host_device_runner_refuses_outputs_it_cannot_bring_back():
    """Checked before CuPy is imported, so CPU machines see the same error."""
    from astroray.kernels.difference.gpu import HostDeviceZogy

    with pytest.raises(ValueError, match="image-shaped"):
        HostDeviceZogy((64, 64), np.ones((5, 5)), np.ones((5, 5)), outputs=("score", "psf"))


# --------------------------------------------------------------------------- lost light: direct sum and FFTs


def _flagged_pair(source_noise=True):
    """A ZOGY run on a pair and the light lost where pixels are flagged in one image only.

    Flagged: a bad column of the science (with stars on it), a reference star
    core, cosmic rays in both, and pixels on the edges and corners, where the
    kernels run off the frame.
    """
    rng = np.random.default_rng(21)
    sim = simulate_pair(rng, (150, 170), n_stars=40)
    H, W = sim["R"].shape
    bad_r, bad_n = np.zeros((H, W), bool), np.zeros((H, W), bool)
    bad_n[:, 37] = True
    ys, xs, f = sim["stars"]
    k = int(np.argmax(f))
    cy, cx = int(round(ys[k])), int(round(xs[k]))
    bad_r[cy - 1:cy + 2, cx - 1:cx + 2] = True
    bad_r[rng.integers(0, H, 15), rng.integers(0, W, 15)] = True
    bad_n[rng.integers(0, H, 15), rng.integers(0, W, 15)] = True
    for y, x in ((0, 0), (H - 1, W - 1), (0, W - 1), (H - 1, 0), (0, 90), (75, W - 1)):
        (bad_r if (y + x) % 2 else bad_n)[y, x] = True
    bad = bad_r | bad_n
    R, N, VR, VN = (np.where(bad, np.float32(0), sim[k]) for k in ("R", "N", "VR", "VN"))
    c = sim["ratio"]
    z = zogy(R, N, sim["Pr"], sim["Pn"], flux_ratio=c, variance_reference=VR, variance_science=VN,
             source_noise=source_noise)
    lost_r = np.where(bad_r & ~bad_n, sim["N"] / np.float32(c), np.float32(0))
    lost_n = np.where(bad_n & ~bad_r, sim["R"], np.float32(0))
    kw = dict(flux_ratio=c, sigma_reference=z.meta["sigma_reference"], sigma_science=z.meta["sigma_science"],
              score_variance=z.score_variance, fft_shape=z.fft_shape)
    return sim, lost_r, lost_n, kw


@pytest.mark.parametrize("source_noise", [True, False])
def test_lost_light_direct_sum_equals_the_ffts(source_noise):
    """The direct sum over the flagged pixels is the FFTs' convolution, to their float32 round-off."""
    from astroray.kernels.difference.zogy import lost_light_score, lost_light_score_sparse

    sim, lost_r, lost_n, kw = _flagged_pair(source_noise)
    assert isinstance(kw["score_variance"], float) != source_noise
    delta, spread = lost_light_score(lost_r, lost_n, sim["Pr"], sim["Pn"], method="fft", **kw)
    d_delta, d_spread = lost_light_score(lost_r, lost_n, sim["Pr"], sim["Pn"], method="direct", **kw)
    assert np.abs(delta).max() > 20 and spread.max() > 20  # the star core leaves a large residual
    # float32 FFTs of the whole frame: round-off of ~1e-7 of the largest value, everywhere
    assert np.abs(d_delta - delta).max() <= 2e-6 * np.abs(delta).max()
    assert np.abs(d_spread - spread).max() <= 2e-6 * spread.max()
    # from the flagged pixels alone, with the blanking threshold applied on the way
    flagged = np.concatenate((np.flatnonzero(lost_r), np.flatnonzero(lost_n)))
    lost = np.concatenate((lost_r.ravel()[np.flatnonzero(lost_r)], lost_n.ravel()[np.flatnonzero(lost_n)]))
    from_reference = np.arange(flagged.size) < np.count_nonzero(lost_r)
    s_delta, s_spread, over = lost_light_score_sparse(lost_r.shape, flagged, lost, from_reference, sim["Pr"],
                                                      sim["Pn"], threshold=1.0, method="direct", **kw)
    np.testing.assert_array_equal(s_delta, d_delta)
    np.testing.assert_array_equal(s_spread, d_spread)
    total = spread + np.abs(delta)
    assert 100 < over.sum() < over.size // 4
    np.testing.assert_array_equal(over, total > 1.0)


def test_lost_light_auto_takes_the_ffts_when_most_pixels_are_flagged():
    from astroray.kernels.difference.zogy import lost_light_score_sparse

    sim, lost_r, _, kw = _flagged_pair()
    everything = np.arange(lost_r.size)
    lost = sim["R"].ravel().astype(np.float32)
    args = (lost_r.shape, everything, lost, everything % 2 == 0, sim["Pr"], sim["Pn"])
    auto = lost_light_score_sparse(*args, threshold=1.0, **kw)
    fft = lost_light_score_sparse(*args, threshold=1.0, method="fft", **kw)
    for a, b in zip(auto, fft):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InvalidInputError, match="one length"):
        lost_light_score_sparse(lost_r.shape, everything, lost[:5], everything % 2 == 0, sim["Pr"], sim["Pn"], **kw)
    with pytest.raises(InvalidInputError, match="must lie in"):
        lost_light_score_sparse(lost_r.shape, everything + 1, lost, everything % 2 == 0, sim["Pr"], sim["Pn"], **kw)


def test_star_peak_kernel_matches_the_array_expressions():
    """The host's one-pass peak finder for the flux-ratio stars against the array expressions it replaces."""
    from astroray.kernels.difference import _cpu
    from astroray.kernels.difference.common import _star_peaks_array

    rng = np.random.default_rng(5)
    sim = simulate_pair(rng, (120, 96), n_stars=50)
    R, N, VR, VN = (sim[k].copy() for k in ("R", "N", "VR", "VN"))
    VR[10, 10] = np.nan  # NaN S/N is never a peak, nor beside one
    VN[20:22, 30] = 0.0  # clipped at 1e-30: huge S/N
    R[50, 40:43] = R.max()  # a flat top: no pixel exceeds its neighbour
    VR[50, 40:43] = VR[50, 41]
    good = rng.random(R.shape) > 0.05
    for min_snr in (5.0, 20.0, 7.3):
        ys, xs = _cpu.star_peaks(R, N, VR, VN, good, min_snr)
        ey, ex = _star_peaks_array(R, N, VR, VN, good, min_snr, np)
        assert len(ey) > 10
        np.testing.assert_array_equal(ys, ey)
        np.testing.assert_array_equal(xs, ex)
