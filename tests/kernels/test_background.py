"""Mesh background kernel (array code) against SEP on awkward shapes, masks and filters."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

sep = pytest.importorskip("sep")

from astroray.kernels.background import filter_meshes, mesh_background  # noqa: E402


def _field(shape, seed):
    rng = np.random.default_rng(seed)
    im = rng.normal(100.0, 5.0, shape) + np.linspace(0, 30, shape[1])[None, :] + np.linspace(0, 10, shape[0])[:, None]
    im[rng.integers(0, shape[0], 40), rng.integers(0, shape[1], 40)] += 5000.0  # "stars" the clipping must ignore
    return im.astype(np.float32)


@pytest.mark.parametrize("shape, box, filt", [
    ((300, 211), (32, 48), (3, 5)),   # partial last meshes in both axes
    ((100, 100), (100, 100), (1, 1)),  # one mesh
    ((64, 200), (64, 30), (3, 3)),     # one row of meshes (linear along x)
    ((257, 129), (50, 40), (5, 3)),    # even mesh count: global median averages two
    ((40, 300), (50, 37), (3, 3)),     # mesh taller than the image
    ((90, 7), (16, 16), (3, 3)),       # one column of meshes
])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_sep(shape, box, filt, masked):
    im = _field(shape, seed=sum(shape))
    mask = None
    if masked:
        mask = np.zeros(shape, dtype=bool)
        mask[10:60, 2:80] = True
    ours = mesh_background(im, mask, box_size=box, filter_size=filt)
    ref = sep.Background(im, mask=mask, bw=box[1], bh=box[0], fw=filt[1], fh=filt[0])
    assert_allclose(ours.background, ref.back(), rtol=2e-6)
    assert_allclose(ours.rms, ref.rms(), rtol=2e-6)
    assert ours.global_background == pytest.approx(ref.globalback, rel=1e-6)
    assert ours.global_rms == pytest.approx(ref.globalrms, rel=1e-6)


def test_bad_meshes_take_their_nearest_good_neighbours():
    im = _field((128, 128), seed=5)
    mask = np.zeros(im.shape, dtype=bool)
    mask[:64, :64] = True  # the top-left mesh of a 2x2 grid is fully masked
    ours = mesh_background(im, mask, box_size=(64, 64), filter_size=(1, 1))
    ref = sep.Background(im, mask=mask, bw=64, bh=64, fw=1, fh=1)
    assert_allclose(ours.background, ref.back(), rtol=2e-6)
    m = ours.mesh_background
    assert m[0, 0] == pytest.approx((m[0, 1] + m[1, 0]) / 2, rel=1e-6)  # two neighbours at distance 1


def test_filter_threshold_keeps_close_meshes():
    back = np.array([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    sigma = np.ones_like(back)
    filtered, _, gback, _ = filter_meshes(back, sigma, filter_size=(3, 3), filter_threshold=0.0)
    assert filtered[1, 1] == 1.0 and gback == 1.0
    kept, _, _, _ = filter_meshes(back, sigma, filter_size=(3, 3), filter_threshold=10.0)
    assert kept[1, 1] == 5.0


def test_flat_image_has_flat_maps():
    im = np.full((64, 96), 7.0, dtype=np.float32)
    ours = mesh_background(im, None, box_size=(16, 16), filter_size=(3, 3))
    assert_allclose(ours.background, 7.0, rtol=1e-6)
    assert_allclose(ours.rms, 0.0, atol=1e-6)
    assert ours.global_rms == 1.0  # SEP's fallback when no mesh has a positive sigma


@pytest.mark.gpu
def test_gpu_maps_match_numpy():
    import cupy as cp

    im = _field((300, 211), seed=2)
    mask = np.zeros(im.shape, dtype=bool)
    mask[10:60, 2:80] = True
    cpu = mesh_background(im, mask, box_size=(32, 48), filter_size=(3, 5))
    gpu = mesh_background(cp.asarray(im), cp.asarray(mask), box_size=(32, 48), filter_size=(3, 5))
    assert_allclose(cp.asnumpy(gpu.background), cpu.background, rtol=1e-6)
    assert_allclose(cp.asnumpy(gpu.rms), cpu.rms, rtol=1e-6)
    assert gpu.global_rms == pytest.approx(cpu.global_rms, rel=1e-6)


_SIMULATED = """
import json, os
assert os.environ["NUMBA_ENABLE_CUDASIM"] == "1"
import numpy as np
import astroray.kernels.background as kb
rng = np.random.default_rng(0)
im = (rng.normal(100, 5, (96, 80)) + np.linspace(0, 30, 80)[None, :]).astype(np.float32)
im[rng.integers(0, 96, 30), rng.integers(0, 80, 30)] += 5000
im[:20, :20] = 42.0  # a flat mesh: zero sigma
seen = {}
numba_loop = kb.histogram_mode_cpu
def keep(*args):
    seen["args"] = args
    return numba_loop(*args)
kb.histogram_mode_cpu = keep
kb.mesh_background(im, None, box_size=(16, 16), filter_size=(3, 3))
b1, s1 = kb._histogram_mode(*seen["args"])  # vectorised reference
b2, s2 = kb.histogram_mode_cuda(*seen["args"])  # CUDA kernel, simulated
b3, s3 = numba_loop(*seen["args"])  # its Numba CPU twin
print(json.dumps({"n": int(b1.size), "dback": float(np.abs(b1 - b2).max()), "dsig": float(np.abs(s1 - s2).max()),
                  "dback_cpu": float(np.abs(b1 - b3).max()), "dsig_cpu": float(np.abs(s1 - s3).max())}))
"""


def test_mesh_mode_loops_match_the_vectorised_reference_under_the_simulator():
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-c", _SIMULATED], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n"] == 30
    assert out["dback"] == 0.0 and out["dsig"] == 0.0
    assert out["dback_cpu"] == 0.0 and out["dsig_cpu"] == 0.0


def _fully_masked_cases(shape):
    everything = np.ones(shape, dtype=bool)
    mostly = everything.copy()
    mostly[::16, ::16] = False  # a few unmasked pixels per mesh: every mesh still bad
    return {"all": everything, "mostly": mostly}


def test_all_meshes_bad_gives_sep_fallback_maps_without_empty_bincount(monkeypatch):
    # No mesh is good: the histogram is built from no pixel at all (an empty bincount,
    # which CuPy refuses); the maps fall back to 0 and 1 as SEP's.
    im = _field((64, 80), seed=5)
    numpy_bincount = np.bincount

    def cupy_like_bincount(x, weights=None, minlength=0):
        if np.asarray(x).size == 0:
            raise ValueError("cupy.bincount takes int(max(x)) first: no empty input")
        return numpy_bincount(x, weights=weights, minlength=minlength)

    monkeypatch.setattr(np, "bincount", cupy_like_bincount)
    for name, mask in _fully_masked_cases(im.shape).items():
        ours = mesh_background(im, mask, box_size=(16, 16), filter_size=(3, 3))
        assert_allclose(ours.background, 0.0, err_msg=name)
        assert_allclose(ours.rms, 1.0, err_msg=name)
        assert (ours.global_background, ours.global_rms) == (0.0, 1.0)


@pytest.mark.gpu
def test_gpu_all_meshes_bad_matches_numpy():
    import cupy as cp

    im = _field((64, 80), seed=5)
    for name, mask in _fully_masked_cases(im.shape).items():
        cpu = mesh_background(im, mask, box_size=(16, 16))
        gpu = mesh_background(cp.asarray(im), cp.asarray(mask), box_size=(16, 16))
        assert_allclose(cp.asnumpy(gpu.background), cpu.background, err_msg=name)
        assert_allclose(cp.asnumpy(gpu.rms), cpu.rms, err_msg=name)


def test_numba_stream_for_host_arrays_is_the_default_stream():
    from astroray.kernels.backend import numba_stream_for

    assert numba_stream_for(np.zeros(3)) == 0


@pytest.mark.gpu
def test_gpu_kernels_run_on_cupys_current_stream():
    # A non-blocking stream does not wait for the default stream: a Numba launch on
    # stream 0 could still be running when CuPy reads its output on this one.
    import cupy as cp

    from astroray.kernels.backend import numba_stream_for

    im = _field((300, 211), seed=2)
    cpu = mesh_background(im, None, box_size=(32, 48), filter_size=(3, 5))
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        s = numba_stream_for(cp.zeros(1))
        assert s != 0 and int(s) == stream.ptr
        gpu = mesh_background(cp.asarray(im), None, box_size=(32, 48), filter_size=(3, 5))
        back = cp.asnumpy(gpu.background)
    assert_allclose(back, cpu.background, rtol=1e-6)
