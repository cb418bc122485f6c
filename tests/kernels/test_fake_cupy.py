"""The CuPy stand-in behaves like CuPy at the host boundary: no implicit copies, host operands refused."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from astroray.kernels import fake_cupy as fcp
from astroray.kernels.backend import array_module_of, is_device_array, to_numpy


@pytest.fixture
def dev():
    return fcp.asarray(np.arange(12, dtype=np.float32).reshape(3, 4))


def test_implicit_conversion_to_numpy_is_refused(dev):
    for convert in (np.asarray, np.array, lambda a: pd.DataFrame({"x": a[0]}), lambda a: np.float32(1) + np.ones(4) + a[0]):
        with pytest.raises(TypeError):
            convert(dev)


def test_explicit_ways_to_the_host(dev):
    assert isinstance(dev.get(), np.ndarray) and dev.get().shape == (3, 4)
    assert isinstance(to_numpy(dev), np.ndarray)
    assert isinstance(fcp.asnumpy(dev), np.ndarray)
    assert float(dev[1, 2]) == 6.0 and int(dev.sum()) == 66 and bool(dev.any())
    assert dev.tolist()[2][3] == 11.0 and dev[0, 1].item() == 1.0


def test_device_arithmetic_stays_on_the_device_and_host_operands_are_refused(dev):
    out = np.sqrt(dev * 2.0 + np.float32(1)) - dev.mean()
    assert is_device_array(out) and array_module_of(out) is fcp
    assert is_device_array(dev.sum()) and dev.sum().ndim == 0  # reductions give 0-d device arrays, as in CuPy
    for mixed in (lambda a: a + np.ones((3, 4)), lambda a: np.ones((3, 4)) * a, lambda a: fcp.where(np.ones((3, 4), bool), a, 0),
                  lambda a: a + [1, 2, 3, 4], lambda a: np.median(a) + np.ones(2)):
        with pytest.raises(TypeError):
            mixed(dev)


def test_numpy_functions_dispatch_to_the_device_or_fail_like_cupy(dev):
    assert is_device_array(np.median(dev)) and float(np.median(dev)) == 5.5
    assert is_device_array(np.where(dev > 5, dev, 0))
    with pytest.raises(TypeError):
        np.polyfit(dev[0], dev[1], 1)  # not in CuPy's namespace here: fails as it would on a GPU


def test_indexing_and_assignment(dev):
    assert is_device_array(dev[np.array([0, 2])])  # host index arrays are copied to the device, as CuPy does
    assert is_device_array(dev[fcp.asarray(np.array([True, False, True]))])
    dev[...] = np.zeros((3, 4), np.float32)  # a whole-array assignment from the host is allowed
    dev[0, :] = 1.0
    with pytest.raises(TypeError):
        dev[1] = np.ones(4, np.float32)  # a partial one is not (CuPy raises too)
    assert float(dev.sum()) == 4.0


def test_scipy_companions_and_fft_run_on_device_arrays():
    from astroray.kernels.backend import get_fft, get_ndimage

    img = fcp.asarray((np.arange(64).reshape(8, 8) % 5 == 0).astype(np.uint8))
    labels, n = get_ndimage(fcp).label(img)
    assert is_device_array(labels) and n > 0
    spec = get_fft(fcp).rfft2(fcp.asarray(np.ones((8, 8), np.float32)), s=(8, 8))
    assert is_device_array(spec) and abs(complex(spec[0, 0].item()) - 64) < 1e-4
