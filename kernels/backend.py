"""Array backend: NumPy on the CPU, CuPy on the GPU, chosen by device name.

CuPy is imported lazily so every module imports on CPU-only machines; device
specific branches belong here and nowhere else.
"""
from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import numpy as np

from astroray.errors import DeviceUnavailableError

__all__ = ["has_cupy", "gpu_available", "resolve_device", "get_xp", "get_ndimage", "array_module_of", "to_numpy",
           "bincount", "numba_stream_for"]


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
    """Whether CuPy imports *and* sees at least one CUDA device."""
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


def get_xp(device: str) -> ModuleType:
    """The array module for ``device``: :mod:`numpy` or :mod:`cupy`."""
    if resolve_device(device) == "gpu":
        import cupy

        return cupy
    return np


def get_ndimage(xp: ModuleType) -> ModuleType:
    """``scipy.ndimage`` or ``cupyx.scipy.ndimage``, matching the array module ``xp``."""
    if xp is np:
        from scipy import ndimage

        return ndimage
    from cupyx.scipy import ndimage

    return ndimage


def array_module_of(arr: Any) -> ModuleType:
    """The array module an array belongs to (NumPy for anything not on the GPU)."""
    if type(arr).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def to_numpy(arr: Any) -> np.ndarray:
    """Bring an array to host memory (no copy for NumPy input)."""
    if type(arr).__module__.startswith("cupy"):
        return arr.get()
    return np.asarray(arr)


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
    (NumPy arrays, the CUDA simulator): 0, the default stream.
    """
    if type(arr).__module__.startswith("cupy"):
        import cupy
        from numba import cuda

        ptr = cupy.cuda.get_current_stream().ptr
        return cuda.external_stream(ptr) if ptr else 0
    return 0
