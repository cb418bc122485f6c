"""Deblending: the CPU twin against SEP, the CUDA kernel (simulator) against the CPU twin."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

sep = pytest.importorskip("sep")

from astroray.kernels.extract import extract  # noqa: E402
from astroray.kernels.extract.testing import star_field  # noqa: E402

KERNEL = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32)


@pytest.fixture(scope="module")
def crowded():
    image, _ = star_field((256, 256), 260, seed=1, sky=0.0, noise=5.0)
    ours = extract(image, threshold=1.5, error=5.0, filter_kernel=KERNEL)
    ref = sep.extract(image, 1.5, err=5.0, filter_kernel=KERNEL)
    return image, ours.columns, ref


def _match(cols, ref):
    d = np.hypot(cols["x"][None, :] - ref["x"][:, None], cols["y"][None, :] - ref["y"][:, None])
    return d.argmin(axis=1), d.min(axis=1)


def test_every_sep_object_is_found(crowded):
    _, cols, ref = crowded
    merged = (ref["flag"] & 1) != 0
    assert merged.sum() >= 10  # the field really is blended
    idx, dist = _match(cols, ref)
    assert len(cols["x"]) == len(ref)
    assert (dist < 0.1).mean() >= 0.99
    assert_array_equal(cols["flag"][idx] & 1, ref["flag"] & 1)  # same objects split


def test_unsplit_objects_are_identical_and_split_ones_close(crowded):
    image, cols, ref = crowded
    idx, _ = _match(cols, ref)
    single = (ref["flag"] & 1) == 0
    for name in ("npix", "flux", "cflux", "peak", "x2", "y2"):
        assert_allclose(cols[name][idx][single], ref[name][single], rtol=1e-4, atol=1e-6, err_msg=name)
    # Split objects: barycentres are the seeds' (deterministic); fluxes within r = 5 px agree to 0.5%.
    f_ref, _, _ = sep.sum_circle(image, ref["x"], ref["y"], 5.0, err=5.0)
    assert_allclose(cols["flux_aper"][idx], f_ref, rtol=5e-3)
    # Isophotal fluxes of split objects depend on the random sharing of faint pixels.
    rel = np.abs(cols["flux"][idx] / ref["flux"] - 1)
    assert np.median(rel[~single]) < 0.02


def test_nthresh_one_or_full_contrast_means_no_deblending(crowded):
    image, _, _ = crowded
    a = extract(image, threshold=1.5, error=5.0, filter_kernel=KERNEL, deblend_nthresh=1).columns
    b = extract(image, threshold=1.5, error=5.0, filter_kernel=KERNEL, deblend_cont=1.0).columns
    ref = sep.extract(image, 1.5, err=5.0, filter_kernel=KERNEL, deblend_cont=1.0)
    assert len(a["x"]) == len(b["x"]) == len(ref)
    assert not (np.asarray(a["flag"]) & 1).any()


_SIMULATED = textwrap.dedent("""
    import json, os
    assert os.environ["NUMBA_ENABLE_CUDASIM"] == "1"
    import numpy as np
    from astroray.kernels.extract.testing import star_field
    from astroray.kernels.extract.detect import detect
    from astroray.kernels.extract.measure import segment_max_first
    from astroray.kernels.extract.deblend import seed_trees_cpu, seed_trees_cuda, seed_trees_split
    img, _ = star_field((40, 40), 14, seed=4, sky=0.0, noise=3.0, flux_range=(2e3, 2e4))
    k = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32)
    det = detect(img, threshold=1.5, relative=True, error=3.0, kernel=k, min_area=5)
    px = det.pixels
    peak, _ = segment_max_first(px.cvalue, px.obj, px.n_objects)
    opts = dict(nthresh=32, mincont=0.005, min_area=5)
    cpu = seed_trees_cpu(px, det.object_thresh, peak, **opts)
    sim = seed_trees_cuda(px, det.object_thresh, peak, **opts)
    # the split object by object: the first split object and every third unsplit one to the host, so split
    # objects are built on both sides
    split_objects = np.flatnonzero(np.asarray(cpu.nseeds) > 0)
    unsplit = np.flatnonzero(np.asarray(cpu.nseeds) == 0)
    host = np.union1d(split_objects[:1], unsplit[::3])
    split = seed_trees_split(px, det.object_thresh, peak, host_objects=host, **opts)
    out = {}
    for name, t in (("cpu", cpu), ("sim", sim), ("split", split)):
        nseeds = np.asarray(t.nseeds)
        levels = [int(t.seed_level[s + m]) for s, k in zip(px.start.tolist(), nseeds.tolist()) for m in range(k)]
        out.update({name + "_nseeds": nseeds.tolist(), name + "_seeds": np.asarray(t.seed_of_pixel).tolist(),
                    name + "_levels": levels})
    out["split_objects"] = int(split_objects.size)
    print(json.dumps(out))
""")


def test_cuda_kernel_matches_cpu_twin_under_the_simulator():
    # The simulator must be switched on before numba is imported: use a fresh interpreter.
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-c", _SIMULATED], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sum(out["cpu_nseeds"]) >= 2  # at least one object was split
    # the field must give the split run a split object on each side (the first on the host, the rest on the kernel)
    assert out["split_objects"] >= 2, "the test field has too few split objects: pick another seed"
    for twin in ("sim", "split"):
        for what in ("nseeds", "seeds", "levels"):
            assert out[f"{twin}_{what}"] == out[f"cpu_{what}"], (twin, what)


def test_host_share_gives_the_host_the_objects_that_would_hold_the_kernel_up():
    from astroray.kernels.extract.deblend import host_share

    many_small = np.full(4000, 20)
    assert host_share(many_small, slowdown=60).size == 0  # the kernel takes them all
    streaks = many_small.copy()
    streaks[[7, 99, 1234]] = [40_000, 30_000, 25_000]
    assert host_share(streaks, slowdown=60).tolist() == [7, 99, 1234]
    # the host's share stops where its sum would outlast the kernel's largest object left
    steps = np.array([1000, 900, 800, 100, 10])
    assert host_share(steps, slowdown=2).tolist() == [0]  # max(1000, 2 x 900) beats 2 x 1000 and max(1900, 1600)
    assert host_share(steps, slowdown=20).tolist() == [0, 1, 2]  # max(2700, 20 x 100) beats max(2800, 20 x 10)
    assert host_share([5], slowdown=60).tolist() == [0]  # a lone object: the host alone
    assert host_share(np.zeros(0, int)).size == 0


@pytest.mark.gpu
def test_gpu_pipeline_matches_numpy(crowded):
    import cupy as cp

    image, cols, _ = crowded
    out = extract(cp.asarray(image), threshold=1.5, error=5.0, filter_kernel=KERNEL)
    assert len(out.columns["x"]) == len(cols["x"])
    for name in ("x", "y", "flux", "npix", "flux_aper", "flux_auto", "xwin", "flag"):
        assert_allclose(cp.asnumpy(out.columns[name]), cols[name], rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.gpu
def test_gpu_data_with_the_cpu_deblending_backend(crowded):
    # extract(..., backend="cpu") on device data: the trees run on host copies, results come back.
    import cupy as cp

    image, cols, _ = crowded
    out = extract(cp.asarray(image), threshold=1.5, error=5.0, filter_kernel=KERNEL, backend="cpu")
    assert isinstance(out.columns["x"], cp.ndarray)
    assert len(out.columns["x"]) == len(cols["x"])
    for name in ("x", "y", "flux", "npix", "flag"):
        assert_allclose(cp.asnumpy(out.columns[name]), cols[name], rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.gpu
def test_gpu_deblending_is_deterministic_and_splits_as_the_cpu_twin(crowded):
    # The split test compares against each object's flux, summed in pixel order inside the
    # per-object kernel (an atomic float64 bincount's order varies from run to run).
    import cupy as cp

    from astroray.kernels.extract.deblend import seed_trees_cpu, seed_trees_cuda
    from astroray.kernels.extract.detect import detect
    from astroray.kernels.extract.measure import segment_max_first

    image, _, _ = crowded
    opts = dict(nthresh=32, mincont=0.005, min_area=5)
    det = detect(image, threshold=1.5, relative=True, error=5.0, kernel=KERNEL, min_area=5)
    px = det.pixels
    peak, _ = segment_max_first(px.cvalue, px.obj, px.n_objects)
    cpu = seed_trees_cpu(px, det.object_thresh, peak, **opts)
    gdet = detect(cp.asarray(image), threshold=1.5, relative=True, error=5.0, kernel=KERNEL, min_area=5)
    gpx = gdet.pixels
    gpeak, _ = segment_max_first(gpx.cvalue, gpx.obj, gpx.n_objects)
    runs = [seed_trees_cuda(gpx, gdet.object_thresh, gpeak, **opts) for _ in range(3)]
    for run in runs:
        assert_array_equal(cp.asnumpy(run.nseeds), cpu.nseeds)
        assert_array_equal(cp.asnumpy(run.seed_of_pixel), cpu.seed_of_pixel)
