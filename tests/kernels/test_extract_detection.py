"""Detection, measurement and cleaning kernels (xp array code) against SEP."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

sep = pytest.importorskip("sep")

from astroray.kernels.extract import extract  # noqa: E402
from astroray.kernels.extract.detect import convolve_image, detect, matched_filter  # noqa: E402
from astroray.kernels.extract.measure import (  # noqa: E402
    analyse,
    lutz_chain_rank,
    segment_kth_largest,
    segment_max_first,
)
from astroray.kernels.extract.testing import star_field  # noqa: E402

KERNEL = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32)
SEP_FIELDS = ("npix", "tnpix", "xmin", "xmax", "ymin", "ymax", "x", "y", "x2", "y2", "xy", "errx2", "erry2",
              "errxy", "a", "b", "theta", "cxx", "cyy", "cxy", "cflux", "flux", "cpeak", "peak", "xcpeak", "ycpeak",
              "xpeak", "ypeak", "flag", "thresh")


@pytest.fixture(scope="module")
def field():
    image, _ = star_field((160, 200), 60, seed=7, sky=0.0, noise=4.0)
    return image


def _compare(ours, ref, rtol=2e-6, atol=1e-6):
    assert len(ours["x"]) == len(ref)
    for name in SEP_FIELDS:
        a = np.asarray(ours[name], dtype=np.float64)
        b = ref[name].astype(np.float64)
        if name == "theta":  # ill-conditioned for round objects: summation order shows at 1e-5 rad
            assert_allclose(a, b, atol=1e-4, err_msg=name)
        elif name in ("x2", "y2", "xy", "cxx", "cyy", "cxy", "a", "b"):
            assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)
        elif name.startswith("err"):
            assert_allclose(a, b, rtol=1e-4, atol=1e-12, err_msg=name)
        else:
            assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)


def test_convolution_is_seps_correlation_with_zero_edges():
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (7, 9)).astype(np.float32)
    k = np.arange(6, dtype=np.float32).reshape(2, 3) - 1.0  # asymmetric, even height
    ours = convolve_image(data, k)
    kn = k / np.abs(k).sum()
    ref = np.zeros_like(data)
    for y in range(7):
        for x in range(9):
            for i in range(2):
                for j in range(3):
                    yy, xx = y - 1 + i, x - 1 + j
                    if 0 <= yy < 7 and 0 <= xx < 9:
                        ref[y, x] += kn[i, j] * data[yy, xx]
    assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_matched_filter_matches_direct_sum():
    rng = np.random.default_rng(1)
    data = rng.normal(0, 1, (12, 10)).astype(np.float32)
    noise = rng.uniform(0.5, 2.0, data.shape).astype(np.float32)
    ours = matched_filter(data, noise ** 2, KERNEL)
    k = KERNEL / KERNEL.sum()
    ref = np.zeros_like(data)
    for y in range(12):
        for x in range(10):
            num = den = 0.0
            for i in range(3):
                for j in range(3):
                    yy, xx = y - 1 + i, x - 1 + j
                    if 0 <= yy < 12 and 0 <= xx < 10:
                        num += k[i, j] * data[yy, xx] / noise[yy, xx] ** 2
                        den += k[i, j] ** 2 / noise[yy, xx] ** 2
            ref[y, x] = num / np.sqrt(den)
    assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel", [KERNEL, None])
def test_detect_and_analyse_match_sep_without_deblending(field, kernel):
    det = detect(field, threshold=1.5, relative=True, error=4.0, kernel=kernel, min_area=5)
    ours = analyse(det.pixels, det.object_thresh, image_shape=field.shape)
    ref = sep.extract(field, 1.5, err=4.0, filter_kernel=kernel, deblend_cont=1.0, clean=False)
    _compare(ours, ref)  # same objects, same order


def test_error_map_and_matched_filter_match_sep(field):
    rng = np.random.default_rng(3)
    err = rng.uniform(3.0, 5.0, field.shape).astype(np.float32)
    err[:, :100] *= 1.5  # a step in the noise
    out = extract(field, threshold=1.5, error=err, filter_kernel=KERNEL, deblend_cont=1.0, clean=False)
    ref = sep.extract(field, 1.5, err=err, filter_kernel=KERNEL, deblend_cont=1.0, clean=False)
    assert len(out.columns["x"]) == len(ref)
    for name in ("npix", "x", "y", "flux", "errx2"):
        assert_allclose(out.columns[name], ref[name], rtol=1e-4, atol=1e-9, err_msg=name)


def test_cleaning_matches_sep(field):
    # A faint wing detection next to bright stars is what cleaning removes.
    out = extract(field, threshold=0.8, error=4.0, filter_kernel=KERNEL, deblend_cont=1.0, clean=True)
    ref = sep.extract(field, 0.8, err=4.0, filter_kernel=KERNEL, deblend_cont=1.0, clean=True)
    unclean = sep.extract(field, 0.8, err=4.0, filter_kernel=KERNEL, deblend_cont=1.0, clean=False)
    assert len(ref) < len(unclean)  # the case exercises cleaning
    assert_allclose(out.columns["x"], ref["x"], atol=1e-6)
    seg_counts = np.bincount(np.asarray(out.segmentation).ravel(), minlength=len(ref) + 1)[1:]
    assert_array_equal(seg_counts, ref["npix"])


def test_segment_reductions():
    obj = np.array([0, 0, 0, 1, 1, 2])
    vals = np.array([1.0, 3.0, 3.0, -2.0, -5.0, 0.5], dtype=np.float32)
    vmax, arg = segment_max_first(vals, obj, 3)
    assert_array_equal(vmax, [3.0, -2.0, 0.5])
    assert_array_equal(arg, [1, 3, 5])  # first of the tied maxima
    assert_array_equal(segment_kth_largest(vals, obj, 3, 2), [3.0, -5.0, 0.0])


def test_lutz_chain_rank_puts_left_extensions_first():
    # Rows: y=0: x=2..3; y=1: x=1..3 (starts left of the row above) -> chain (1,1), (2,0), (3,0), (2,1), (3,1)
    from astroray.kernels.extract.detect import PixelList

    x = np.array([2, 3, 1, 2, 3])
    y = np.array([0, 0, 1, 1, 1])
    z = np.zeros(5, dtype=np.float32)
    pl = PixelList(np.zeros(5, dtype=np.int64), x, y, z, z, z, z, 1, None, None).sorted()
    assert_array_equal(lutz_chain_rank(pl), [1, 2, 0, 3, 4])


def test_mthresh_heap_replays_seps_shallow_sift():
    from astroray.kernels.extract.clean import replay_mthresh_heap

    # Chain order of a real noise blob (see test below): SEP's heap ends at 0.64, while the
    # 5th largest value (leaving out the skipped 6th pixel) is 0.35.
    chain = np.array([0.04, 0.35, 0.70, 0.35, 0.33, 0.52, 0.08, 1.55, 1.32, 0.64, 0.22], dtype=np.float32)
    assert replay_mthresh_heap(chain, np.array([0]), np.array([11]), 5)[0] == np.float32(0.64)
    # Exactly min_area pixels: the heap is never sorted, the first pixel stays on top.
    assert replay_mthresh_heap(chain[:5], np.array([0]), np.array([5]), 5)[0] == np.float32(0.04)
    assert replay_mthresh_heap(chain[:4], np.array([0]), np.array([4]), 5)[0] == 0.0


@pytest.mark.parametrize("seed", [2, 3])
def test_cleaning_of_noise_blobs_matches_sep(seed):
    image, _ = star_field((256, 256), 150, seed=seed, sky=0.0, noise=4.0, flux_range=(100, 5e5))
    ref = sep.extract(image, 0.7, err=4.0, filter_kernel=KERNEL, deblend_cont=1.0)
    out = extract(image, threshold=0.7, error=4.0, filter_kernel=KERNEL, deblend_cont=1.0).columns
    assert len(out["x"]) == len(ref)
    assert_allclose(out["x"], ref["x"], atol=1e-6)
    assert_allclose(out["y"], ref["y"], atol=1e-6)


@pytest.mark.parametrize("filter_type", ["matched", "conv"])
def test_error_map_with_deblending_and_cleaning_matches_sep(filter_type):
    image, _ = star_field((256, 256), 150, seed=1, sky=0.0, noise=4.0, flux_range=(100, 5e5))
    err = np.broadcast_to((4.0 * (1 + 0.3 * np.sin(np.arange(256) / 20.0))).astype(np.float32), (256, 256)).copy()
    ref = sep.extract(image, 1.5, err=err, filter_kernel=KERNEL, filter_type=filter_type)
    out = extract(image, threshold=1.5, error=err, filter_kernel=KERNEL, filter_type=filter_type).columns
    assert len(out["x"]) == len(ref) and ((ref["flag"] & 1) != 0).sum() >= 5
    d = np.hypot(out["x"][None, :] - ref["x"][:, None], out["y"][None, :] - ref["y"][:, None])
    idx = d.argmin(axis=1)
    assert (d.min(axis=1) < 0.1).all()
    # SEP 1.4 gives each object the mean threshold of its pixels; children keep their parent's.
    assert_allclose(out["thresh"][idx], ref["thresh"], rtol=1e-6)


def test_masked_pixels_behave_as_in_sep(field):
    rng = np.random.default_rng(9)
    mask = rng.random(field.shape) < 0.01
    # Deblending off: split objects' faint pixels are shared at random (see test_extract_deblend).
    ref, seg = sep.extract(field, 1.5, err=4.0, filter_kernel=KERNEL, mask=mask, segmentation_map=True,
                           deblend_cont=1.0)
    data = np.where(mask, 0, field).astype(np.float32)  # the stage zeroes masked pixels before extraction
    out = extract(data, threshold=1.5, error=4.0, filter_kernel=KERNEL, mask=mask, deblend_cont=1.0)
    assert len(out.columns["x"]) == len(ref)
    assert_allclose(out.columns["npix"], ref["npix"])
    assert_allclose(out.columns["flux"], ref["flux"], rtol=1e-5)
    assert (np.asarray(out.segmentation) == seg).all()


# --------------------------------------------------------------------------- no objects (empty reductions)


def _cupy_like_bincount(numpy_bincount):
    """np.bincount that raises on an empty input, as cupy.bincount does (it takes int(max(x)) first)."""

    def strict(x, weights=None, minlength=0):
        if np.asarray(x).size == 0:
            raise ValueError("zero-size array to reduction operation maximum which has no identity")
        return numpy_bincount(x, weights=weights, minlength=minlength)

    return strict


def test_bincount_helper_matches_numpy_and_takes_empty_input():
    from astroray.kernels.backend import bincount

    x = np.array([3, 0, 3, 1], dtype=np.int64)
    w = np.array([0.5, 1.0, 2.0, 4.0])
    assert_array_equal(bincount(x), np.bincount(x))
    assert_array_equal(bincount(x, minlength=7), np.bincount(x, minlength=7))
    assert_array_equal(bincount(x, weights=w, minlength=2), np.bincount(x, weights=w, minlength=2))
    empty = np.zeros(0, dtype=np.int64)
    counts = bincount(empty, minlength=5)
    assert counts.dtype == np.int64 and counts.shape == (5,) and not counts.any()
    sums = bincount(empty, weights=np.zeros(0), minlength=5)  # float sums, as for non-empty input
    assert sums.dtype == np.float64 and sums.shape == (5,) and not sums.any()
    assert bincount(empty).shape == (0,)


def test_nothing_above_threshold_gives_an_empty_catalog_without_empty_bincounts(monkeypatch):
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 1, (48, 64)).astype(np.float32)
    full = extract(star_field((48, 64), 5, seed=3, sky=0.0, noise=1.0)[0], threshold=5.0, error=1.0)
    assert len(full.columns["x"]) > 0
    # CuPy's bincount raises on empty input: every reduction must go through the shared helper.
    monkeypatch.setattr(np, "bincount", _cupy_like_bincount(np.bincount))
    for photometry in (True, False):
        out = extract(noise, threshold=50.0, error=1.0, filter_kernel=KERNEL, photometry=photometry)
        ref = full.columns if photometry else {k: v for k, v in full.columns.items() if k in out.columns}
        assert list(out.columns) == list(ref)
        for name, col in out.columns.items():
            assert col.shape == (0,) and col.dtype == ref[name].dtype, name
        assert out.segmentation.shape == noise.shape and not out.segmentation.any()
    det = detect(noise, threshold=50.0, relative=True, error=1.0, kernel=KERNEL)
    assert det.pixels.n_objects == 0 and det.pixels.count.shape == (0,)
    meas = analyse(det.pixels, det.object_thresh, image_shape=noise.shape)  # n == 0 reductions
    assert all(v.shape == (0,) for v in meas.values())


@pytest.mark.gpu
def test_gpu_nothing_above_threshold_gives_an_empty_catalog():
    import cupy as cp

    noise = np.random.default_rng(3).normal(0, 1, (48, 64)).astype(np.float32)
    cpu = extract(noise, threshold=50.0, error=1.0, filter_kernel=KERNEL)
    gpu = extract(cp.asarray(noise), threshold=50.0, error=1.0, filter_kernel=KERNEL)
    assert list(gpu.columns) == list(cpu.columns)
    for name, col in gpu.columns.items():
        assert isinstance(col, cp.ndarray) and col.shape == (0,) and col.dtype == cpu.columns[name].dtype, name
    assert not bool(gpu.segmentation.any())
    det = detect(cp.asarray(noise), threshold=50.0, relative=True, error=1.0, kernel=KERNEL)
    meas = analyse(det.pixels, det.object_thresh, image_shape=noise.shape)
    assert det.pixels.n_objects == 0 and all(v.shape == (0,) for v in meas.values())
    from astroray.kernels.backend import bincount

    assert cp.asnumpy(bincount(cp.zeros(0, dtype=cp.int64), minlength=3)).tolist() == [0, 0, 0]
