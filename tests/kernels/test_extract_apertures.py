"""Aperture kernels (xp array code) against SEP's C implementation."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

sep = pytest.importorskip("sep")

from astroray.kernels.extract import aperture as ap  # noqa: E402


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (90, 110)).astype(np.float32)
    data[30:50, 40:70] += 20.0
    n = 40
    x = rng.uniform(-3, 113, n)  # some apertures run off the image
    y = rng.uniform(-3, 93, n)
    err = np.abs(rng.normal(1, 0.1, data.shape)).astype(np.float32)
    mask = rng.random(data.shape) < 0.02
    a = rng.uniform(1, 4, n)
    b = a * rng.uniform(0.3, 1, n)
    theta = rng.uniform(-np.pi / 2, np.pi / 2, n)
    return data, x, y, err, mask, a, b, theta


@pytest.mark.parametrize("subpix", [0, 1, 5])
@pytest.mark.parametrize("r", [0.3, 2.5, 5.0, 11.3])
def test_sum_circle_matches_sep(scene, subpix, r):
    data, x, y, err, mask, *_ = scene
    f, e, fl = ap.sum_circle(data, x, y, r, error=err, mask=mask, gain=2.0, subpix=subpix)
    f2, e2, fl2 = sep.sum_circle(data, x, y, r, err=err, mask=mask, gain=2.0, subpix=subpix)
    assert_allclose(f, f2, rtol=1e-10, atol=1e-9)
    assert_allclose(e, e2, rtol=1e-10)
    assert_array_equal(fl, fl2)


def test_exact_circle_overlap_is_area():
    # A whole circle well inside the image: the weights sum to pi r^2 exactly.
    ones = np.ones((40, 40))
    for r in (0.4, 1.0, 3.7, 9.2):
        f, _, _ = ap.sum_circle(ones, np.array([19.3]), np.array([20.6]), r, subpix=0)
        assert f[0] == pytest.approx(np.pi * r * r, rel=1e-12)


def test_exact_ellipse_overlap_is_area():
    ones = np.ones((60, 60))
    f, _, _ = ap.sum_ellipse(ones, np.array([30.2]), np.array([29.7]), np.array([3.0]), np.array([1.2]),
                             np.array([0.7]), 2.5, subpix=0)
    assert f[0] == pytest.approx(np.pi * 3.0 * 1.2 * 2.5 ** 2, rel=1e-12)


@pytest.mark.parametrize("subpix", [0, 1, 5])
def test_sum_ellipse_matches_sep(scene, subpix):
    data, x, y, err, mask, a, b, theta = scene
    f, e, fl = ap.sum_ellipse(data, x, y, a, b, theta, 2.5, error=1.3, mask=mask, subpix=subpix)
    f2, e2, fl2 = sep.sum_ellipse(data, x, y, a, b, theta, 2.5, err=1.3, mask=mask, subpix=subpix)
    assert_allclose(f, f2, rtol=1e-10, atol=1e-9)
    assert_allclose(e, e2, rtol=1e-10)
    assert_array_equal(fl, fl2)


def test_kron_flux_radius_winpos_match_sep(scene):
    data, x, y, err, mask, a, b, theta = scene
    cxx, cyy, cxy = ap.ellipse_coeffs(a, b, theta)
    kr, kf = ap.kron_radius(data, x, y, cxx, cyy, cxy, 6.0, mask=mask)
    kr2, kf2 = sep.kron_radius(data, x, y, a, b, theta, 6.0, mask=mask)
    assert_allclose(kr, kr2, rtol=1e-10)
    assert_array_equal(kf, kf2)
    fr, ff = ap.flux_radius(data, x, y, 6 * a, 0.5, mask=mask)
    fr2, ff2 = sep.flux_radius(data, x, y, 6 * a, 0.5, mask=mask)
    assert_allclose(fr, fr2, rtol=1e-10)
    assert_array_equal(ff, ff2)
    xs, ys = np.array([50.3, 55.0, 20.0]), np.array([38.2, 42.0, 20.0])
    sig = np.array([2.0, 1.0, 0.1])  # the last one is raised to SEP's minimum sigma
    xw, yw, wf = ap.winpos(data, xs, ys, sig, mask=mask)
    xw2, yw2, wf2 = sep.winpos(data, xs, ys, sig, mask=mask)
    assert_allclose(xw, xw2, atol=1e-4)
    assert_allclose(yw, yw2, atol=1e-4)
    assert_array_equal(wf, wf2)


def test_ellipse_representations_round_trip(scene):
    *_, a, b, theta = scene
    cxx, cyy, cxy = ap.ellipse_coeffs(a, b, theta)
    c2 = sep.ellipse_coeffs(a, b, theta)
    assert_allclose(cxx, c2[0])
    assert_allclose(cyy, c2[1])
    assert_allclose(cxy, c2[2])
    a2, b2, t2 = ap.ellipse_axes(cxx, cyy, cxy)
    assert_allclose(a2, a, rtol=1e-10)
    assert_allclose(b2, b, rtol=1e-10)
    assert_allclose(t2, theta, atol=1e-10)
    assert np.isnan(ap.ellipse_axes(np.array([1.0]), np.array([-1.0]), np.array([0.0]))[0][0])


_SIMULATED_WINPOS = """
import json, os
assert os.environ["NUMBA_ENABLE_CUDASIM"] == "1"
import numpy as np
from astroray.kernels.extract import aperture as ap
rng = np.random.default_rng(0)
data = rng.normal(0, 1, (60, 70)).astype(np.float32)
yy, xx = np.indices(data.shape)
for cx, cy in ((20.3, 30.7), (50.2, 10.1), (1.0, 58.5)):
    data += 300 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5 ** 2))
mask = rng.random(data.shape) < 0.03
x = np.array([20.0, 50.6, 1.4, 35.0]); y = np.array([31.0, 10.5, 58.0, 35.0]); sig = np.array([1.3, 1.2, 1.0, 0.2])
out = {}
for name, m in (("plain", None), ("masked", mask)):
    a = ap.winpos(data, x, y, sig, mask=m)
    b = ap.winpos_cuda(data, x, y, sig, mask=m)
    out[name] = {"dx": float(np.abs(a[0] - b[0]).max()), "dy": float(np.abs(a[1] - b[1]).max()),
                 "flags_equal": bool((a[2] == b[2]).all()), "flags": a[2].tolist()}
print(json.dumps(out))
"""


def test_cuda_winpos_matches_the_array_twin_under_the_simulator():
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-c", _SIMULATED_WINPOS], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for case in out.values():
        assert case["dx"] < 1e-9 and case["dy"] < 1e-9 and case["flags_equal"]
    assert any(f & ap.APER_TRUNC for f in out["plain"]["flags"])  # an aperture ran off the image
    assert any(f & ap.APER_HASMASKED for f in out["masked"]["flags"])
