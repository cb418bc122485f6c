"""Differencer stage on Exposure records: both methods, masks, bad inputs, the map_batches body."""
from __future__ import annotations

import numpy as np
import pytest

from astroray.errors import ConfigError, DeviceUnavailableError, InvalidInputError
from astroray.config import config_from_dict
from astroray.imaging.difference import DifferenceConfig, Differencer, DifferenceResult
from astroray.kernels.backend import gpu_available
from astroray.records import Exposure, MaskBits


def gaussian_psf(sigma, size=25):
    yy, xx = np.indices((size, size), dtype=np.float64) - size // 2
    p = np.exp(-0.5 * (xx ** 2 + yy ** 2) / sigma ** 2)
    return p / p.sum()


def render(shape, ys, xs, fluxes, sigma):
    img = np.zeros(shape)
    yy, xx = np.indices(shape)
    for y, x, f in zip(ys, xs, fluxes):  # small images: a full-frame Gaussian per source is fine
        img += f * np.exp(-0.5 * ((yy - y) ** 2 + (xx - x) ** 2) / sigma ** 2) / (2 * np.pi * sigma ** 2)
    return img


def make_pair(seed=0, shape=(256, 256), ratio=1.25, transient=(128.0, 96.0, 4000.0)):
    rng = np.random.default_rng(seed)
    n = 50
    ys, xs = rng.uniform(15, shape[0] - 15, n), rng.uniform(15, shape[1] - 15, n)
    f = np.exp(rng.uniform(np.log(5e3), np.log(2e5), n))
    mr = render(shape, ys, xs, f, 1.5)
    mn = render(shape, ys, xs, f * ratio, 2.2) + render(shape, [transient[0]], [transient[1]], [transient[2]], 2.2)
    vr, vn = 25.0 + mr, 64.0 + mn
    R = mr + rng.normal(size=shape) * np.sqrt(vr)
    N = mn + rng.normal(size=shape) * np.sqrt(vn)
    zero = np.zeros(shape, np.uint32)
    ref = Exposure(R, vr, zero, gaussian_psf(1.5), meta={"exposure_id": "ref-1"})
    sci = Exposure(N, vn, zero.copy(), gaussian_psf(2.2), meta={"exposure_id": "sci-1"})
    return ref, sci


@pytest.mark.parametrize("method", ["zogy", "classic"])
def test_run_finds_the_transient(method):
    ref, sci = make_pair()
    res = Differencer(DifferenceConfig(method=method, device="cpu")).run(ref, sci)
    assert isinstance(res, DifferenceResult)
    assert res.method == method and res.device == "cpu"
    for name in ("difference", "score", "variance", "flux", "flux_err"):
        arr = getattr(res, name)
        assert isinstance(arr, np.ndarray) and arr.shape == (256, 256) and arr.dtype == np.float32, name
    assert res.flux_ratio == pytest.approx(1.25, rel=0.02)
    assert res.psf.sum() == pytest.approx(1.0, abs=1e-6)
    peak = np.unravel_index(np.argmax(res.score), res.score.shape)
    assert abs(peak[0] - 128) <= 1 and abs(peak[1] - 96) <= 1
    assert res.flux[128, 96] == pytest.approx(4000.0, rel=0.1)
    assert (res.score > 5).sum() < 200  # the transient's footprint, nothing else of note
    if method == "zogy":
        assert res.matched_filter is not None and res.zero_point > 0
        assert "flux_ratio_fit" in res.meta
    else:
        assert res.zero_point == 1.0


def test_masked_and_nan_pixels_are_flagged_and_scored_zero():
    ref, sci = make_pair()
    sci.image[10:14, 200:204] = np.nan
    ref.mask[50, 50] = MaskBits.SAT
    res = Differencer(DifferenceConfig(device="cpu", flux_ratio=1.25)).run(ref, sci)
    assert np.all(np.isfinite(res.score)) and np.all(np.isfinite(res.difference))
    assert np.all(res.mask[10:14, 200:204] & MaskBits.NO_DATA)
    assert res.mask[50, 50] & MaskBits.SAT
    assert np.all(res.score[10:14, 200:204] == 0) and res.score[50, 50] == 0


def test_astrometric_term_lowers_the_score_on_stars_only():
    ref, sci = make_pair()
    plain = Differencer(DifferenceConfig(device="cpu", flux_ratio=1.25)).run(ref, sci)
    ast = Differencer(DifferenceConfig(device="cpu", flux_ratio=1.25, sigma_astrometric=(0.2, 0.2))).run(ref, sci)
    assert np.all(np.abs(ast.score) <= np.abs(plain.score) * (1 + 1e-4) + 1e-3)
    np.testing.assert_allclose(ast.difference, plain.difference)
    # The term is the squared gradient of the filtered images: large on the bright stars, small elsewhere.
    ratio = np.abs(ast.score) / np.maximum(np.abs(plain.score), 1e-3)
    assert np.median(ratio) > 0.95 and ratio.min() < 0.5


@pytest.mark.parametrize("case, match", [
    ("shape", "differ"),
    ("zero_variance", "zero everywhere"),
    ("psf", "cannot be normalised"),
    ("all_flagged", "no usable pixels"),
])
def test_bad_inputs_name_the_exposure(case, match):
    ref, sci = make_pair(shape=(128, 128), transient=(64.0, 64.0, 1e3))
    if case == "shape":
        sci = Exposure(sci.image[:120], sci.variance[:120], sci.mask[:120], sci.psf, meta=sci.meta)
    elif case == "zero_variance":
        sci.variance[:] = 0
    elif case == "psf":
        ref.psf[:] = 0
    elif case == "all_flagged":
        ref.mask[:] = MaskBits.BAD
    with pytest.raises(InvalidInputError, match=match) as info:
        Differencer(DifferenceConfig(device="cpu", flux_ratio=1.0)).run(ref, sci)
    assert info.value.source == "sci-1"


def test_config_rejects_typos_and_bad_values():
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict(DifferenceConfig, {"methd": "zogy"})
    with pytest.raises(ConfigError):
        config_from_dict(DifferenceConfig, {"method": "hotpants"})
    with pytest.raises(ConfigError):
        config_from_dict(DifferenceConfig, {"sigma_astrometric": [-0.1, 0.0]})


@pytest.mark.skipif(gpu_available(), reason="a GPU is present here")
def test_gpu_asked_without_one_fails_clearly():
    with pytest.raises(DeviceUnavailableError):
        Differencer(DifferenceConfig(device="gpu"))


def test_zero_variance_everywhere_is_a_typed_error_naming_the_exposure():
    ref, sci = make_pair(seed=1, shape=(128, 128), transient=(64.0, 64.0, 3e3))
    sci.variance[:] = 0
    with pytest.raises(InvalidInputError, match="zero everywhere"):
        Differencer(DifferenceConfig(device="cpu", flux_ratio=1.25)).run(ref, sci)


def test_psf_grid_runs_tile_by_tile_and_classic_refuses_it():
    ref, sci = make_pair(shape=(128, 128), transient=(64.0, 64.0, 3e3))
    grid = np.broadcast_to(sci.psf, (2, 2) + sci.psf.shape)
    cfg = DifferenceConfig(device="cpu", flux_ratio=1.25)
    tiled = Differencer(cfg).run(ref, sci, psf_science=grid)
    whole = Differencer(cfg).run(ref, sci)
    np.testing.assert_allclose(tiled.score, whole.score, atol=1e-3 * np.abs(whole.score).max())
    assert tiled.meta["psf_grid"].shape[:2] == (2, 2)
    sci.mask[40:43, 40:43] = MaskBits.SAT  # the blanked light's residual is predicted with the central stamps
    flagged = Differencer(cfg).run(ref, sci, psf_science=grid)
    assert np.all(flagged.score[40:43, 40:43] == 0) and flagged.score[64, 64] > 5
    # tiles smaller than the image plus the kernels: the prediction makes its own FFT grid
    ref, sci = make_pair(shape=(512, 512), transient=(300.0, 200.0, 3e3))
    sci.mask[100:103, 100:103] = MaskBits.SAT
    tiled = Differencer(cfg).run(ref, sci, psf_science=np.broadcast_to(sci.psf, (4, 4) + sci.psf.shape))
    assert tiled.score.shape == (512, 512) and tiled.score[300, 200] > 5 and np.all(tiled.score[100:103, 100:103] == 0)
    with pytest.raises(InvalidInputError, match="grid"):
        Differencer(cfg.with_updates(method="classic")).run(ref, sci, psf_science=grid)


def test_forced_photometry_at_subpixel_positions_is_unbiased():
    rng = np.random.default_rng(21)
    shape = (384, 384)
    pos = np.array([(y, x) for y in range(24, 370, 26) for x in range(24, 370, 26)], float)
    pos += rng.uniform(-0.5, 0.5, pos.shape)
    flux = rng.uniform(3e3, 6e3, len(pos))
    mr = np.zeros(shape)
    mn = render(shape, pos[:, 0], pos[:, 1], flux, 2.2)
    vr, vn = 25.0 + mr, 64.0 + mn
    R = mr + rng.normal(size=shape) * np.sqrt(vr)
    N = mn + rng.normal(size=shape) * np.sqrt(vn)
    zero = np.zeros(shape, np.uint32)
    ref = Exposure(R, vr, zero, gaussian_psf(1.5))
    sci = Exposure(N, vn, zero, gaussian_psf(2.2))
    res = Differencer(DifferenceConfig(device="cpu", flux_ratio=1.0)).run(ref, sci)
    f, e = res.flux_at(pos[:, 0], pos[:, 1])
    assert abs(float(np.mean(f / flux - 1))) < 0.01
    pulls = (f - flux) / e
    assert abs(float(pulls.mean())) < 3 / np.sqrt(len(pulls))
    assert 0.85 < float(pulls.std()) < 1.15
    # The nearest pixel alone is biased low by the sub-pixel offsets.
    near = res.flux[np.round(pos[:, 0]).astype(int), np.round(pos[:, 1]).astype(int)]
    assert np.mean(near / flux - 1) < np.mean(f / flux - 1)


def _unblanked(**kw):
    """A Differencer that blanks flagged pixels but never their neighbourhood."""
    return Differencer(DifferenceConfig(device="cpu", flux_ratio=1.25, mask_residual=1e9, mask_grow=0, **kw))


def test_residual_of_a_flagged_star_core_is_predicted_and_blanked_but_a_flagged_sky_pixel_is_not():
    ref, sci = make_pair()
    # Flag the core of a bright star in the reference only (its light is still in the science) and a sky pixel.
    ys, xs = np.unravel_index(np.argsort(ref.image, axis=None)[-1], ref.image.shape)
    clean = _unblanked().run(ref, sci)
    ref.mask[ys - 1:ys + 2, xs - 1:xs + 2] = MaskBits.SAT
    sky = (5, 250) if ref.image[5, 250] < 3 * np.sqrt(ref.variance[5, 250]) else (250, 5)
    sci.mask[sky] = MaskBits.CR
    holed = _unblanked().run(ref, sci)
    blanked = Differencer(DifferenceConfig(device="cpu", flux_ratio=1.25)).run(ref, sci)
    residual = np.abs(holed.score - clean.score)
    residual[holed.mask != 0] = 0
    assert residual.max() > 5  # the hole leaves residuals around the core ...
    blank = blanked.score == 0
    assert not np.any((residual > 1.5) & ~blank)  # ... which the predicted blank covers
    # and not much more: the 2-FWHM box that blanking used to cut around the core was 529 px
    assert blank.sum() < 1.3 * (residual > 1).sum() < 529
    assert blanked.mask[ys, xs] & MaskBits.SAT and blanked.mask[sky] & MaskBits.CR
    y, x = sky
    around = blanked.score[max(y - 3, 0):y + 4, max(x - 3, 0):x + 4]
    assert (around != 0).sum() == around.size - 1  # only the flagged sky pixel itself


def test_a_flagged_pixel_beside_a_transient_on_a_host_does_not_hide_it():
    # A cosmic ray flagged in the science 3 px from the transient, on a host bright in both images.
    ref, sci = make_pair(transient=(128.0, 96.0, 1500.0))
    host = render(ref.shape, [129.0], [98.0], [4e4], 4.0)
    ref = Exposure(ref.image + host, ref.variance + host, ref.mask, ref.psf)
    sci = Exposure(sci.image + 1.25 * host, sci.variance + 1.25 * host, sci.mask, sci.psf)
    sci.mask[131, 97] = MaskBits.CR
    res = Differencer(DifferenceConfig(device="cpu", flux_ratio=1.25)).run(ref, sci)
    assert res.score[127:130, 95:98].max() > 5
    # where both images are flagged the light is unknown: its neighbourhood goes
    ref.mask[131, 97] = MaskBits.SAT
    res = Differencer(DifferenceConfig(device="cpu", flux_ratio=1.25)).run(ref, sci)
    assert np.all(res.score[127:130, 95:98] == 0)


def test_flux_ratio_from_psf_fits_matches_box_sums_on_clean_stars():
    from astroray.kernels.difference.common import fit_flux_ratio

    ref, sci = make_pair(seed=3)
    kw = dict(variance_reference=ref.variance, variance_science=sci.variance, good=np.ones(ref.shape, bool), box=25)
    box = fit_flux_ratio(ref.image, sci.image, **kw)
    psf = fit_flux_ratio(ref.image, sci.image, psf_reference=ref.psf, psf_science=sci.psf, **kw)
    assert psf.ratio == pytest.approx(1.25, rel=0.01)
    assert psf.ratio == pytest.approx(box.ratio, rel=0.01)


def test_flux_ratio_falls_back_to_zero_points_on_a_sparse_field():
    """A 128 px cutout has too few stars to fit F_n/F_r; the calibration in the meta gives it."""
    from astroray.datasets import ImagePairConfig, simulate_pair
    from astroray.imaging.background import Background
    from astroray.imaging.difference import Differencer, photometric_flux_ratio
    from astroray.records import Exposure

    pair = simulate_pair(ImagePairConfig(shape=(128, 128)), seed=3, index=0)
    expected = pair.truth["flux_scale"].iloc[0] if len(pair.truth) else pair.meta["flux_scale"]
    assert photometric_flux_ratio(pair.reference, pair.science) == pytest.approx(expected, rel=1e-6)

    def sub(e):
        b = Background().run(e.image)
        return Exposure(image=e.image - b.background, variance=e.variance, mask=e.mask, psf=e.psf, meta=e.meta)

    res = Differencer().run(sub(pair.reference), sub(pair.science))
    assert res.flux_ratio == pytest.approx(expected, rel=1e-6)
    assert res.meta["flux_ratio_fit"]["source"] == "zero_points"
    no_cal = Exposure(image=pair.science.image, variance=pair.science.variance, mask=pair.science.mask,
                      psf=pair.science.psf, meta={"exposure_id": "nocal"})
    with pytest.raises(InvalidInputError, match="zero_point and exptime"):
        Differencer().run(sub(pair.reference), sub(no_cal))


def _flagged(seed=0):
    """A pair with a bad column in the science, saturated star cores (in one image and in both), cosmic rays,
    NaN and zero-variance pixels, and a flag outside ``bad_bits``."""
    ref, sci = make_pair(seed=seed)
    rng = np.random.default_rng(seed)
    order = np.argsort(ref.image, axis=None)[::-1]
    ys, xs = np.unravel_index(order, ref.image.shape)
    sci.mask[:, 200] |= np.uint32(MaskBits.BAD)
    ref.mask[ys[0] - 1:ys[0] + 2, xs[0] - 1:xs[0] + 2] |= np.uint32(MaskBits.SAT)
    far = [(y, x) for y, x in zip(ys[1:200], xs[1:200]) if max(abs(y - ys[0]), abs(x - xs[0])) > 10][0]
    ref.mask[far] |= np.uint32(MaskBits.SAT)
    sci.mask[far] |= np.uint32(MaskBits.SAT)
    sci.mask[rng.integers(0, 256, 20), rng.integers(0, 256, 20)] |= np.uint32(MaskBits.CR)
    ref.mask[rng.integers(0, 256, 20), rng.integers(0, 256, 20)] |= np.uint32(MaskBits.CR)
    sci.mask[3, :] |= np.uint32(MaskBits.EDGE)  # not a bad bit: kept
    ref.image[7, 9] = np.nan
    sci.variance[100, 3] = 0.0
    return ref, sci


def test_host_input_pass_equals_the_array_expressions():
    ref, sci = _flagged()
    fast = Differencer(DifferenceConfig(device="cpu", cpu_kernels="numba"))._prepare(ref, sci)
    twin = Differencer(DifferenceConfig(device="cpu", cpu_kernels="numpy"))._prepare(ref, sci)
    for key in ("R", "N", "VR", "VN", "mask", "bad", "good"):
        assert fast[key].dtype == twin[key].dtype, key
        np.testing.assert_array_equal(fast[key], twin[key], err_msg=key)
    for a, b in zip(fast["bads"], twin["bads"]):
        np.testing.assert_array_equal(a, b)
    assert fast["fwhm"] == twin["fwhm"] and fast["raw"].keys() == twin["raw"].keys()
    assert fast["mask"][7, 9] & MaskBits.NO_DATA and fast["mask"][100, 3] & MaskBits.NO_DATA
    # nothing flagged: the planes as given, no copies, on both paths
    clean_ref, clean_sci = make_pair(seed=1)
    for kernels in ("numba", "numpy"):
        out = Differencer(DifferenceConfig(device="cpu", cpu_kernels=kernels))._prepare(clean_ref, clean_sci)
        assert out["raw"] is None and out["R"] is clean_ref.image
    # and the same errors
    for kernels in ("numba", "numpy"):
        ref, sci = make_pair()
        ref.mask[:] = MaskBits.BAD
        with pytest.raises(InvalidInputError, match="reference has no usable pixels"):
            Differencer(DifferenceConfig(device="cpu", cpu_kernels=kernels))._prepare(ref, sci)
        ref, sci = make_pair()
        sci.variance[:] = 0
        with pytest.raises(InvalidInputError, match="science variance is zero everywhere"):
            Differencer(DifferenceConfig(device="cpu", cpu_kernels=kernels))._prepare(ref, sci)


def test_host_blanking_equals_the_fft_and_box_filter_path():
    """The host's blank (direct lost-light sum, seeds grown one by one) is the array path's (four FFTs, a
    maximum filter over the seeds' box): the same pixels, on a pair flagged in every way."""
    from astroray.kernels.difference.common import FourierBackend

    ref, sci = _flagged(seed=2)
    fast = Differencer(DifferenceConfig(device="cpu", flux_ratio=1.25))
    twin = Differencer(DifferenceConfig(device="cpu", flux_ratio=1.25, cpu_kernels="numpy"))
    a, b = fast.run(ref, sci), twin.run(ref, sci)
    assert 300 < (a.score == 0).sum() < 0.1 * a.score.size
    np.testing.assert_array_equal(a.score == 0, b.score == 0)
    np.testing.assert_allclose(a.score, b.score, atol=1e-4)
    # the seeds (flagged in both images) grown where they border light, seed by seed or by the filter
    inp = fast._prepare(ref, sci)
    seeds = inp["bads"][0] & inp["bads"][1]
    seeds[[0, 255, 128], [0, 255, 254]] = True  # and on the edges
    assert seeds.sum() >= 4
    for radius in (1, 5):
        np.testing.assert_array_equal(fast._grown_around(seeds, inp, radius), fast._grown_box(seeds, inp, radius))
    assert fast._grown_around(seeds, inp, 5).sum() > 0
    assert isinstance(fast.fft, FourierBackend)
