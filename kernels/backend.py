"""Array backend: NumPy on the CPU, CuPy on the GPU, chosen by device name.

CuPy is imported lazily so every module imports on CPU-only machines; device
specific branches belong here and nowhere else.

The device array library is CuPy, or -- with ``ASTRORAY_DEVICE_ARRAYS=fake_cupy``
in the environment -- :mod:`astroray.kernels.fake_cupy`, a CuPy stand-in whose
arrays compute with NumPy but refuse implicit copies to the host.  Tests run
``device="gpu"`` code on it (and the Numba CUDA kernels under
``NUMBA_ENABLE_CUDASIM=1``), so a stray host copy fails in CI, not on hardware.
"""
from __future__ import annotations

import functools
import os
from types import ModuleType
from typing import Any

import numpy as np

from astroray.errors import DeviceUnavailableError

__all__ = ["has_cupy", "gpu_available", "resolve_device", "get_xp", "get_ndimage", "get_fft", "array_module_of",
           "is_device_array", "to_numpy", "fuse", "bincount", "numba_stream_for", "launch", "CUDA_THREADS",
           "DEVICE_ARRAYS_ENV", "device_library", "device_synchronize"]

DEVICE_ARRAYS_ENV = "ASTRORAY_DEVICE_ARRAYS"
"""Environment variable naming the device array library: ``cupy`` (default) or ``fake_cupy`` (tests)."""

CUDA_THREADS = 64
"""Threads per block of the per-object Numba CUDA kernels."""


@functools.cache
def device_library() -> str:
    """``"cupy"`` or ``"fake_cupy"``, from ``$ASTRORAY_DEVICE_ARRAYS`` (read once per process)."""
    name = os.environ.get(DEVICE_ARRAYS_ENV, "cupy").strip() or "cupy"
    if name not in ("cupy", "fake_cupy"):
        raise ValueError(f"{DEVICE_ARRAYS_ENV} must be 'cupy' or 'fake_cupy', got {name!r}")
    return name


def _fake():
    from astroray.kernels import fake_cupy

    return fake_cupy


@functools.cache
def has_cupy() -> bool:
    """Whether CuPy imports here (it need not see a GPU)."""
    try:
        import cupy  # noqa: F401
    except Exception:  # ImportError, or a CUDA library missing at import
        return False
    return True


@functools.cache
def gpu_available() -> bool:
    """Whether a device is usable: CuPy imports *and* sees a CUDA device (or the CuPy stand-in is selected)."""
    if device_library() == "fake_cupy":
        return True
    if not has_cupy():
        return False
    import cupy

    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def resolve_device(device: str) -> str:
    """Turn ``"cpu" | "gpu" | "auto"`` into ``"cpu"`` or ``"gpu"``.

    Raises
    ------
    DeviceUnavailableError
        ``device="gpu"`` where no GPU is usable.
    ValueError
        Unknown device name.
    """
    if device == "cpu":
        return "cpu"
    if device == "gpu":
        if not gpu_available():
            raise DeviceUnavailableError(
                "device='gpu' was asked for but no CUDA GPU is usable here "
                "(install the 'gpu' extra: pip install 'astroray[gpu]', or use device='auto' or 'cpu')"
            )
        return "gpu"
    if device == "auto":
        return "gpu" if gpu_available() else "cpu"
    raise ValueError(f"device must be 'cpu', 'gpu' or 'auto', got {device!r}")


def _device_xp() -> ModuleType:
    if device_library() == "fake_cupy":
        return _fake()
    import cupy

    return cupy


def get_xp(device: str) -> ModuleType:
    """The array module for ``device``: :mod:`numpy`, or the device library (:mod:`cupy`)."""
    if resolve_device(device) == "gpu":
        return _device_xp()
    return np


def get_ndimage(xp: ModuleType) -> ModuleType:
    """``scipy.ndimage`` or ``cupyx.scipy.ndimage``, matching the array module ``xp``."""
    if xp is np:
        from scipy import ndimage

        return ndimage
    if xp.__name__.endswith("fake_cupy"):
        return xp.scipy.ndimage
    from cupyx.scipy import ndimage

    return ndimage


def get_fft(xp: ModuleType) -> ModuleType:
    """``scipy.fft`` or ``cupyx.scipy.fft`` (cuFFT), matching the array module ``xp``."""
    if xp is np:
        import scipy.fft

        return scipy.fft
    if xp.__name__.endswith("fake_cupy"):
        return xp.scipy.fft
    import cupyx.scipy.fft

    return cupyx.scipy.fft


def is_device_array(arr: Any) -> bool:
    """Whether ``arr`` lives on the device (a CuPy or stand-in array)."""
    module = type(arr).__module__
    return module.startswith("cupy") or module.endswith("fake_cupy")


def array_module_of(arr: Any) -> ModuleType:
    """The array module an array belongs to (NumPy for anything not on the device)."""
    module = type(arr).__module__
    if module.startswith("cupy"):
        import cupy

        return cupy
    if module.endswith("fake_cupy"):
        return _fake()
    return np


def to_numpy(arr: Any) -> np.ndarray:
    """Bring an array to host memory, explicitly (no copy for NumPy input)."""
    if is_device_array(arr):
        return arr.get()
    return np.asarray(arr)


def device_synchronize(xp: ModuleType) -> None:
    """Wait for the device's queued work (CuPy's current stream); nothing to wait for elsewhere."""
    if xp is not np and xp.__name__ == "cupy":
        xp.cuda.get_current_stream().synchronize()


def fuse(xp: ModuleType, fn):
    """``fn`` compiled into one GPU kernel (:func:`cupy.fuse`) for CuPy; unchanged otherwise."""
    if xp is np:
        return fn
    return xp.fuse(fn)


def bincount(x, weights=None, minlength=0):
    """``xp.bincount`` of ``x``'s array module, also for an empty ``x``.

    CuPy raises on an empty input (it takes ``int(max(x))`` first) where NumPy
    returns ``minlength`` zeros; here both return zeros: int64 counts, or
    float64 sums with ``weights``.
    """
    xp = array_module_of(x)
    minlength = int(minlength)
    if int(x.shape[0]) == 0:
        return xp.zeros(minlength, dtype=xp.int64 if weights is None else xp.float64)
    if minlength > 0:
        return xp.bincount(x, weights=weights, minlength=minlength)
    return xp.bincount(x, weights=weights)


def numba_stream_for(arr: Any):
    """The stream for a Numba CUDA launch that works on ``arr``: ``kernel[grid, block, stream](...)``.

    CuPy arrays: CuPy's current stream (as a Numba external stream), so the
    kernel is ordered with the CuPy work before and after it. Anything else
    (NumPy or stand-in arrays, the CUDA simulator): 0, the default stream.
    """
    if type(arr).__module__.startswith("cupy"):
        import cupy
        from numba import cuda

        ptr = cupy.cuda.get_current_stream().ptr
        return cuda.external_stream(ptr) if ptr else 0
    return 0


def _kernel_argument(arg: Any):
    """What a Numba CUDA kernel receives for ``arg``: CuPy arrays as they are (CUDA array interface),
    stand-in arrays as their NumPy buffers (written in place; the CUDA simulator runs on those)."""
    if type(arg).__module__.endswith("fake_cupy"):
        return arg._a
    return arg


def launch(kernel, n: int, *args, threads: int = CUDA_THREADS) -> None:
    """Run a Numba CUDA ``kernel`` with one thread per item (``n`` items) on the stream of its arrays.

    The stream is CuPy's current one for the first device array among
    ``args`` (see :func:`numba_stream_for`), so the launch is ordered with the
    CuPy work around it.  Nothing runs for ``n == 0``.
    """
    n = int(n)
    if n <= 0:
        return
    first = next((a for a in args if is_device_array(a)), None)
    stream = numba_stream_for(first) if first is not None else 0
    kernel[(n + threads - 1) // threads, threads, stream](*(_kernel_argument(a) for a in args))
