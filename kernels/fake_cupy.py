"""A CuPy stand-in for tests: device arrays that compute with NumPy but refuse implicit host copies.

Most machines that build and test astroray have no GPU, so mistakes in the
glue between stages (a stray ``np.asarray`` on a device array, a host mask
mixed into device arithmetic, a pandas column built from a device array)
would only show on hardware.  This module behaves like CuPy *at the host
boundary*:

* its :class:`ndarray` holds a NumPy array, but ``np.asarray(a)`` (and so
  pandas, SciPy, ``np.median``-on-host...) raises :class:`TypeError`, as
  CuPy's ``__array__`` does; ``a.get()``, :func:`asnumpy`, ``a.item()``,
  ``a.tolist()``, ``float(a)``, ``int(a)`` and ``bool(a)`` are the explicit
  ways out, as in CuPy;
* NumPy ufuncs and functions called on its arrays dispatch to this module
  (CuPy's ``__array_ufunc__``/``__array_function__``), and any operation
  mixing a device array with a host (NumPy) array or a Python list raises
  :class:`TypeError`, as CuPy's do; :func:`asarray` and friends copy host
  data to the device explicitly;
* ``a[...] = host_array`` is accepted for a whole-array assignment only (as
  CuPy allows), and host arrays may index device arrays;
* only the slice of CuPy's namespace the project uses is here (see
  :data:`FUNCTIONS`): a NumPy function CuPy lacks fails here too, rather
  than passing on the CPU and failing on a GPU;
* ``scipy`` companions (``ndimage``, ``fft``) stand in for
  ``cupyx.scipy.ndimage`` and ``cupyx.scipy.fft``, and :func:`fuse` for
  :func:`cupy.fuse`.

Select it with ``ASTRORAY_DEVICE_ARRAYS=fake_cupy`` (see
:mod:`astroray.kernels.backend`): ``device="gpu"`` then runs on it, and
Numba CUDA kernels receive its NumPy buffers (run them under
``NUMBA_ENABLE_CUDASIM=1``).

What it cannot cover: real kernels and their speed, CUDA streams and
asynchrony (everything here is synchronous), device memory limits, CuPy
functions whose behaviour differs from NumPy's in detail (dtype promotion of
scalars, ``unique`` ordering flags, ...), cuFFT plan caches, pinned memory,
and libNVVM compilation of the Numba kernels.
"""
from __future__ import annotations

import builtins
import sys
import types

import numpy as np

__all__ = ["ndarray", "asarray", "asnumpy", "get_array_module", "fuse", "FUNCTIONS", "scipy"]

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed (fake_cupy, as CuPy). "
             "Please use `.get()` or `to_numpy()` to copy a device array to the host explicitly.")


class ndarray:  # noqa: N801 (CuPy's name)
    """A device array: NumPy underneath, no implicit way to the host."""

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, host: np.ndarray):
        self._a = host

    # ---- the host boundary
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def get(self, stream=None, order="C", out=None) -> np.ndarray:
        """An explicit copy to the host (CuPy's ``ndarray.get``)."""
        return np.array(self._a, order=order, copy=True)

    def item(self):
        return self._a.item()

    def tolist(self):
        return self._a.tolist()

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return self._a.__index__()

    def __bool__(self):
        return builtins.bool(self._a)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(v) for v in self._a)

    def __repr__(self):
        return f"fake_cupy.{self._a!r}"

    # ---- NumPy protocol: dispatch to this module, refuse host operands
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        for operand in inputs:  # CuPy's ufuncs take device arrays and scalars, nothing array-like from the host
            if not (isinstance(operand, (ndarray, int, float, complex, np.generic))
                    or (isinstance(operand, np.ndarray) and operand.ndim == 0)):
                raise TypeError(f"numpy.{ufunc.__name__}: unsupported operand {type(operand).__name__} among "
                                "device arrays (fake_cupy, as CuPy): copy it to the device first with xp.asarray")
        _reject_host(kwargs, f"numpy.{ufunc.__name__}")
        out = kwargs.get("out")
        result = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        if out is not None:
            return out[0] if isinstance(out, tuple) and len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        ours = _MODULE_FUNCTIONS.get(func.__name__)
        if ours is None:
            return NotImplemented  # NumPy then raises TypeError, as for a CuPy array
        return ours(*args, **kwargs)

    # ---- attributes
    @property
    def shape(self):
        return self._a.shape

    @property
    def dtype(self):
        return self._a.dtype

    @property
    def ndim(self):
        return self._a.ndim

    @property
    def size(self):
        return self._a.size

    @property
    def nbytes(self):
        return self._a.nbytes

    @property
    def itemsize(self):
        return self._a.itemsize

    @property
    def strides(self):
        return self._a.strides

    @property
    def T(self):  # noqa: N802
        return _wrap(self._a.T)

    @property
    def real(self):
        return _wrap(self._a.real)

    @property
    def imag(self):
        return _wrap(self._a.imag)

    @property
    def flags(self):
        return self._a.flags

    # ---- indexing
    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray) and value.ndim > 0 and not _whole(key):
            raise TypeError("fake_cupy (as CuPy): a host array can be assigned to a whole device array only "
                            "(a[...] = host); copy it to the device first with xp.asarray")
        if isinstance(value, (list, tuple)):
            _reject_host(value, "ndarray.__setitem__")
        self._a[_index(key)] = _unwrap(value)

    # ---- methods CuPy's ndarray has (computed on the host array, results on the device)
    def _method(name):  # noqa: N805 (a class-body helper)
        def method(self, *args, **kwargs):
            _reject_host((args, kwargs), f"ndarray.{name}")
            return _wrap(getattr(self._a, name)(*_unwrap(args), **_unwrap(kwargs)))

        method.__name__ = name
        return method

    for _name in ("astype", "ravel", "reshape", "sum", "any", "all", "max", "min", "mean", "var", "std", "prod",
                  "copy", "view", "transpose", "swapaxes", "flatten", "squeeze", "argmax", "argmin", "argsort",
                  "nonzero", "fill", "clip", "round", "cumsum", "cumprod", "dot", "conj", "conjugate", "repeat",
                  "take", "diagonal", "trace", "sort"):
        locals()[_name] = _method(_name)
    del _name, _method

    # ---- operators (through the ufuncs, so host operands are refused)
    def __add__(self, o): return np.add(self, o)  # noqa: E704
    def __radd__(self, o): return np.add(o, self)  # noqa: E704
    def __sub__(self, o): return np.subtract(self, o)  # noqa: E704
    def __rsub__(self, o): return np.subtract(o, self)  # noqa: E704
    def __mul__(self, o): return np.multiply(self, o)  # noqa: E704
    def __rmul__(self, o): return np.multiply(o, self)  # noqa: E704
    def __truediv__(self, o): return np.true_divide(self, o)  # noqa: E704
    def __rtruediv__(self, o): return np.true_divide(o, self)  # noqa: E704
    def __floordiv__(self, o): return np.floor_divide(self, o)  # noqa: E704
    def __rfloordiv__(self, o): return np.floor_divide(o, self)  # noqa: E704
    def __mod__(self, o): return np.remainder(self, o)  # noqa: E704
    def __rmod__(self, o): return np.remainder(o, self)  # noqa: E704
    def __divmod__(self, o): return np.divmod(self, o)  # noqa: E704
    def __pow__(self, o): return np.power(self, o)  # noqa: E704
    def __rpow__(self, o): return np.power(o, self)  # noqa: E704
    def __matmul__(self, o): return np.matmul(self, o)  # noqa: E704
    def __rmatmul__(self, o): return np.matmul(o, self)  # noqa: E704
    def __and__(self, o): return np.bitwise_and(self, o)  # noqa: E704
    def __rand__(self, o): return np.bitwise_and(o, self)  # noqa: E704
    def __or__(self, o): return np.bitwise_or(self, o)  # noqa: E704
    def __ror__(self, o): return np.bitwise_or(o, self)  # noqa: E704
    def __xor__(self, o): return np.bitwise_xor(self, o)  # noqa: E704
    def __rxor__(self, o): return np.bitwise_xor(o, self)  # noqa: E704
    def __lshift__(self, o): return np.left_shift(self, o)  # noqa: E704
    def __rshift__(self, o): return np.right_shift(self, o)  # noqa: E704
    def __lt__(self, o): return np.less(self, o)  # noqa: E704
    def __le__(self, o): return np.less_equal(self, o)  # noqa: E704
    def __gt__(self, o): return np.greater(self, o)  # noqa: E704
    def __ge__(self, o): return np.greater_equal(self, o)  # noqa: E704
    def __eq__(self, o): return np.equal(self, o)  # noqa: E704
    def __ne__(self, o): return np.not_equal(self, o)  # noqa: E704
    def __neg__(self): return np.negative(self)  # noqa: E704
    def __pos__(self): return np.positive(self)  # noqa: E704
    def __abs__(self): return np.absolute(self)  # noqa: E704
    def __invert__(self): return np.invert(self)  # noqa: E704

    def _inplace(ufunc):  # noqa: N805
        def op(self, o):
            _reject_host(o, f"numpy.{ufunc.__name__}")
            ufunc(self._a, _unwrap(o), out=self._a)
            return self

        return op

    __iadd__ = _inplace(np.add)
    __isub__ = _inplace(np.subtract)
    __imul__ = _inplace(np.multiply)
    __itruediv__ = _inplace(np.true_divide)
    __ifloordiv__ = _inplace(np.floor_divide)
    __iand__ = _inplace(np.bitwise_and)
    __ior__ = _inplace(np.bitwise_or)
    __ixor__ = _inplace(np.bitwise_xor)
    __ilshift__ = _inplace(np.left_shift)
    __irshift__ = _inplace(np.right_shift)
    del _inplace

    __hash__ = None


# --------------------------------------------------------------------------- wrapping


def _wrap(value):
    """NumPy results become device arrays (scalars become 0-d arrays, as CuPy's reductions return)."""
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _unwrap(value):
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, tuple):
        return tuple(_unwrap(v) for v in value)
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _reject_host(value, where: str) -> None:
    """Raise as CuPy does where a host array (or a list standing in for one) meets device arrays."""
    if isinstance(value, np.ndarray) and value.ndim > 0:
        raise TypeError(f"{where}: unsupported host array (numpy.ndarray of shape {value.shape}) among device "
                        "arrays (fake_cupy, as CuPy): copy it to the device first with xp.asarray")
    if isinstance(value, (tuple, list)):
        for v in value:
            _reject_host(v, where)
    elif isinstance(value, dict):
        for v in value.values():
            _reject_host(v, where)


def _index(key):
    """Device index arrays to NumPy; host index arrays pass (CuPy copies them to the device)."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    return _unwrap(key)


def _whole(key) -> bool:
    return key is Ellipsis or key == slice(None) or (isinstance(key, tuple) and builtins.all(
        k is Ellipsis or k == slice(None) for k in key))


def _device_function(name: str, func, *, host_ok: bool = False):
    def function(*args, **kwargs):
        if not host_ok:
            _reject_host((args, kwargs), f"fake_cupy.{name}")
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    function.__name__ = name
    function.__qualname__ = name
    function.__doc__ = f"``numpy.{name}`` on device arrays."
    return function


# --------------------------------------------------------------------------- the namespace

FUNCTIONS = (
    "abs", "absolute", "all", "any", "arange", "arccos", "arcsin", "arctan", "arctan2", "argmax", "argmin",
    "argsort", "around", "atleast_1d", "bincount", "broadcast_to", "ceil", "clip", "concatenate", "conj", "cos",
    "count_nonzero", "cumsum", "diff", "divide", "empty", "empty_like", "exp", "expm1", "eye", "floor", "fmod",
    "full", "full_like", "gradient", "hypot", "isfinite", "isinf", "isnan", "ix_", "lexsort", "linspace", "log",
    "log10", "log1p", "logical_and", "logical_not", "logical_or", "max", "maximum", "mean", "median", "meshgrid",
    "min", "minimum", "nan_to_num", "nanmax", "nanmedian", "nanmin", "nonzero", "ones", "ones_like", "outer",
    "pad", "percentile", "power", "ravel", "repeat", "reshape", "rint", "roll", "round", "searchsorted", "sign",
    "sin", "sort", "sqrt", "square", "stack", "std", "sum", "take", "take_along_axis", "tile", "trunc", "unique",
    "var", "where", "zeros", "zeros_like", "flatnonzero", "argwhere", "cumprod", "prod", "copy", "isclose",
    "allclose", "array_equal", "dot", "einsum", "vstack", "hstack", "tan", "tanh", "floor_divide", "mod",
    "bitwise_and", "bitwise_or", "left_shift", "right_shift", "count_nonzero", "add", "subtract", "multiply",
    "less", "greater", "less_equal", "greater_equal", "equal", "not_equal", "negative", "interp", "histogram",
    "shape", "ndim", "size",
)
"""The NumPy functions this stand-in offers: the ones astroray's device code calls (all exist in CuPy)."""

_CONVERSIONS = ("asarray", "array", "ascontiguousarray", "asanyarray")

_MODULE_FUNCTIONS: dict = {name: _device_function(name, getattr(np, name)) for name in FUNCTIONS}
_MODULE_FUNCTIONS.update({name: _device_function(name, getattr(np, name), host_ok=True) for name in _CONVERSIONS})
globals().update(_MODULE_FUNCTIONS)
asarray = _MODULE_FUNCTIONS["asarray"]  # named for readers (and linters); the others come from FUNCTIONS

for _dtype in ("bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
               "float32", "float64", "complex64", "complex128", "intp", "dtype", "integer", "floating",
               "complexfloating", "number", "generic"):
    globals()[_dtype] = getattr(np, _dtype)
del _dtype
nan, inf, pi, e, newaxis = np.nan, np.inf, np.pi, np.e, np.newaxis


def asnumpy(a, stream=None, order="C", out=None) -> np.ndarray:
    """An explicit copy to the host (``cupy.asnumpy``); host input passes through."""
    return a.get() if isinstance(a, ndarray) else np.asarray(a, order=order)


def get_array_module(*arrays):
    return sys.modules[__name__] if builtins.any(isinstance(a, ndarray) for a in arrays) else np


def fuse(fn=None, **kwargs):
    """``cupy.fuse`` compiles ``fn`` into one kernel; here it runs as it is."""
    return fn if fn is not None else (lambda f: f)


# ``cupy.fft.config`` holds cuFFT's plan cache; the stand-in has nothing to cache.
class _PlanCache:
    def get_size(self):
        return 0

    def set_size(self, size):
        pass


fft = types.SimpleNamespace(
    config=types.SimpleNamespace(get_plan_cache=lambda: _PlanCache()),
    **{name: _device_function(name, getattr(np.fft, name)) for name in
       ("rfft", "irfft", "rfft2", "irfft2", "fft", "ifft", "fft2", "ifft2", "rfftn", "irfftn", "fftfreq",
        "rfftfreq", "fftshift", "ifftshift")})


def _scipy_namespace():
    import scipy.fft
    import scipy.ndimage

    ndimage = types.SimpleNamespace(**{
        name: _device_function(name, getattr(scipy.ndimage, name)) for name in
        ("label", "maximum_filter", "minimum_filter", "median_filter", "uniform_filter", "gaussian_filter",
         "binary_dilation", "binary_erosion", "map_coordinates", "convolve", "correlate", "shift", "zoom",
         "center_of_mass", "sum_labels", "find_objects")})
    sfft = types.SimpleNamespace(**{
        name: _device_function(name, getattr(scipy.fft, name)) for name in
        ("rfft", "irfft", "rfft2", "irfft2", "fft", "ifft", "fft2", "ifft2", "rfftn", "irfftn", "next_fast_len")})
    return types.SimpleNamespace(ndimage=ndimage, fft=sfft)


class _LazyScipy:
    """``cupyx.scipy`` stand-in, built on first use (SciPy's import is not free)."""

    _ns = None

    def __getattr__(self, name):
        if _LazyScipy._ns is None:
            _LazyScipy._ns = _scipy_namespace()
        return getattr(_LazyScipy._ns, name)


scipy = _LazyScipy()
