"""Sky background and noise: SExtractor's mesh background as a stage.

The image is cut into ``box_size`` meshes; each mesh gets a sigma-clipped mode
estimate of the sky and its RMS, the mesh grid is median filtered over
``filter_size`` meshes, and a bicubic spline through the grid gives the full
resolution background and RMS maps (Bertin & Arnouts 1996; SEP's ``back.c``).

Two implementations share one interface, chosen by the config:

* ``implementation="sep"`` wraps :class:`sep.Background` (CPU only);
* ``implementation="array"`` is astroray's own array code in
  :mod:`astroray.kernels.background`, written against ``xp`` so it runs with
  NumPy on the CPU and CuPy on the GPU.

``implementation="auto"`` (the default) uses SEP on the CPU and the array
code on the GPU.

Example
-------
>>> bkg = Background(BackgroundConfig(box_size=64, filter_size=3))
>>> result = bkg.run(image)                        # doctest: +SKIP
>>> subtracted = image - result.background         # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import field_validator

from astroray.config import AstrorayConfig, Device
from astroray.errors import InvalidInputError
from astroray.kernels import background as _kernels
from astroray.kernels.backend import array_module_of, get_xp, resolve_device, to_numpy
from astroray.stage import Stage

__all__ = ["BackgroundConfig", "BackgroundResult", "Background", "select_implementation", "following"]

Implementation = Literal["auto", "sep", "array"]


class BackgroundConfig(AstrorayConfig):
    """Options of :class:`Background`.

    Attributes
    ----------
    box_size : int or (int, int)
        Mesh size in pixels, one value or ``(height, width)`` (SExtractor's
        ``BACK_SIZE``; SEP's ``bh, bw``).
    filter_size : int or (int, int)
        Median filter size in meshes, one value or ``(height, width)``
        (``BACK_FILTERSIZE``; SEP's ``fh, fw``).
    filter_threshold : float
        Only meshes whose background differs from the filtered value by more
        than this are replaced (SEP's ``fthresh``).
    mask_threshold : float
        Mask values above this mark a pixel as masked (SEP's ``maskthresh``).
    device : {"cpu", "gpu", "auto"} or None
        Where the array work runs; None follows the pipeline's device
        (``"auto"`` for a stage on its own).
    implementation : {"auto", "sep", "array"}
        ``"sep"`` (CPU only) or astroray's ``"array"`` code; ``"auto"`` picks
        SEP on the CPU and the array code on the GPU.
    """

    box_size: int | tuple[int, int] = 64
    filter_size: int | tuple[int, int] = 3
    filter_threshold: float = 0.0
    mask_threshold: float = 0.0
    device: Device | None = None
    implementation: Implementation = "auto"

    @field_validator("box_size", "filter_size")
    @classmethod
    def _positive(cls, value):
        sizes = (value, value) if isinstance(value, int) else tuple(value)
        if any(int(v) < 1 for v in sizes):
            raise ValueError(f"sizes must be >= 1, got {value!r}")
        return value

    @property
    def box_hw(self) -> tuple[int, int]:
        """``(height, width)`` of a mesh."""
        b = self.box_size
        return (b, b) if isinstance(b, int) else (int(b[0]), int(b[1]))

    @property
    def filter_hw(self) -> tuple[int, int]:
        """``(height, width)`` of the median filter, in meshes."""
        f = self.filter_size
        return (f, f) if isinstance(f, int) else (int(f[0]), int(f[1]))


@dataclass
class BackgroundResult:
    """What :meth:`Background.run` returns.

    Attributes
    ----------
    background, rms : array (H, W) float32
        Background and background-RMS maps, on the device the stage ran on
        (NumPy for the CPU, CuPy for the GPU).
    global_background, global_rms : float
        Median of the (filtered) mesh backgrounds and RMS values, as SEP's
        ``globalback`` and ``globalrms``.
    device : str
        ``"cpu"`` or ``"gpu"``.
    """

    background: Any
    rms: Any
    global_background: float
    global_rms: float
    device: str = "cpu"

    def subtract_from(self, image):
        """``image - background`` as float32 (on the background's device)."""
        xp = array_module_of(self.background)
        return xp.asarray(image, dtype=xp.float32) - self.background

    def to_numpy(self) -> "BackgroundResult":
        """A copy whose maps are NumPy arrays."""
        return BackgroundResult(to_numpy(self.background), to_numpy(self.rms), self.global_background,
                                self.global_rms, "cpu")


# --------------------------------------------------------------------------- input checks (shared)


def as_image(image, *, name: str = "image", source: str | None = None, xp=None):
    """Validate a 2-D image and return it native-endian, C-contiguous, float.

    float64 input stays float64; every other real dtype becomes float32.
    NaN/inf are kept (callers mask them).

    Raises
    ------
    InvalidInputError
        Not 2-D, empty, a dtype that cannot be cast to float, or no finite pixel.
    """
    if xp is None:
        xp = array_module_of(image)
    try:
        arr = xp.asarray(image)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} cannot be read as an array: {exc}", source=source) from None
    if arr.ndim != 2:
        raise InvalidInputError(f"{name} must be 2-D, got shape {tuple(arr.shape)}", source=source)
    if arr.size == 0:
        raise InvalidInputError(f"{name} is empty (shape {tuple(arr.shape)})", source=source)
    kind = np.dtype(arr.dtype).kind
    if kind not in "biuf":
        raise InvalidInputError(f"{name} has dtype {arr.dtype}, which cannot be cast to float", source=source)
    dtype = xp.float64 if np.dtype(arr.dtype) == np.float64 else xp.float32
    arr = xp.ascontiguousarray(arr.astype(np.dtype(dtype).newbyteorder("="), copy=False))
    if not bool(xp.isfinite(arr).any()):
        raise InvalidInputError(f"{name} has no finite pixels (all NaN/inf)", source=source)
    return arr


def as_mask(mask, shape, *, threshold: float = 0.0, name: str = "mask", source: str | None = None, xp=np):
    """A boolean mask (True = masked) from a bool or numeric array; ``None`` stays ``None``.

    Numeric masks (e.g. :class:`astroray.records.MaskBits` flags) mask pixels
    whose value exceeds ``threshold``.

    Raises
    ------
    InvalidInputError
        Shape differs from ``shape`` or the dtype is not boolean/numeric.
    """
    if mask is None:
        return None
    m = xp.asarray(mask)
    if tuple(m.shape) != tuple(shape):
        raise InvalidInputError(f"{name} shape {tuple(m.shape)} does not match image shape {tuple(shape)}",
                                source=source)
    kind = np.dtype(m.dtype).kind
    if kind == "b":
        return m
    if kind not in "iuf":
        raise InvalidInputError(f"{name} has dtype {m.dtype}; expected bool or numeric flags", source=source)
    return m > threshold


# --------------------------------------------------------------------------- implementations


def _sep_background(data: np.ndarray, mask: np.ndarray | None, cfg: BackgroundConfig,
                    device: str = "cpu") -> BackgroundResult:
    import sep

    bh, bw = cfg.box_hw
    fh, fw = cfg.filter_hw
    bkg = sep.Background(data, mask=mask, maskthresh=0.0, bw=bw, bh=bh, fw=fw, fh=fh,
                         fthresh=cfg.filter_threshold)
    return BackgroundResult(bkg.back(dtype=np.float32), bkg.rms(dtype=np.float32), float(bkg.globalback),
                            float(bkg.globalrms), "cpu")


def _array_background(data, mask, cfg: BackgroundConfig, device: str) -> BackgroundResult:
    maps = _kernels.mesh_background(data, mask, box_size=cfg.box_hw, filter_size=cfg.filter_hw,
                                    filter_threshold=cfg.filter_threshold)
    return BackgroundResult(maps.background, maps.rms, maps.global_background, maps.global_rms, device)


_CORES = {"sep": _sep_background, "array": _array_background}  # implementation -> core(data, mask, cfg, device)


def _resolve(device: str | None, implementation: str, follow: bool) -> tuple[str, str]:
    """``(device, implementation)``, the rule of :func:`select_implementation`."""
    device = "auto" if device is None else device
    if implementation == "sep":
        if device == "gpu" and not follow:
            raise ValueError("implementation='sep' runs on the CPU only; use device='cpu' or implementation='array'")
        if device not in ("cpu", "gpu", "auto"):
            resolve_device(device)  # the usual error for an unknown name
        return "cpu", "sep"
    device = resolve_device(device)
    if implementation == "auto":
        return device, ("sep" if device == "cpu" else "array")
    return device, implementation


def select_implementation(device: str | None, implementation: str, *, follow: bool = False):
    """``(device, implementation, xp)`` for a stage: SEP on the CPU, our array code on the GPU (or when asked).

    The one rule for where SEP runs: on the CPU only.  ``device=None`` is ``"auto"``. ``implementation='sep'``
    resolves to the CPU for ``device='auto'`` (whatever the host has), and for
    ``device='gpu'`` too when ``follow`` is true: a stage that follows another
    stage's device (the background an extraction estimates) keeps SEP on the CPU.

    Raises ``ValueError`` for ``implementation='sep'`` with ``device='gpu'`` (unless ``follow``).
    """
    device, impl = _resolve(device, implementation, follow)
    return device, impl, (get_xp(device) if impl == "array" else np)


def following(config: BackgroundConfig, device: str) -> BackgroundConfig:
    """``config`` run on another stage's ``device`` (SEP stays on the CPU; see :func:`select_implementation`)."""
    return config.model_copy(update={"device": _resolve(device, config.implementation, follow=True)[0]})


class Background(Stage[BackgroundConfig]):
    """SExtractor's mesh background as a configure-once stage.

    Parameters
    ----------
    config : BackgroundConfig, optional
        Options; defaults to ``BackgroundConfig()``.

    Examples
    --------
    >>> stage = Background(BackgroundConfig(box_size=64, filter_size=3))
    >>> b = stage.run(image, mask=bad_pixels)      # doctest: +SKIP
    >>> b.global_rms                               # doctest: +SKIP
    """

    config_class = BackgroundConfig

    def setup(self) -> None:
        self.device, self.implementation, self.xp = select_implementation(self.config.device,
                                                                          self.config.implementation)
        self._core = _CORES[self.implementation]

    def run(self, image, *, mask=None, source: str | None = None) -> BackgroundResult:
        """Measure the background and RMS maps of ``image``.

        Parameters
        ----------
        image : array (H, W)
            Image (NumPy or CuPy; any real dtype).
        mask : array (H, W) of bool or int, optional
            True / nonzero (above ``mask_threshold``) marks pixels to ignore.
            NaN and inf pixels are always ignored.
        source : str, optional
            Name of the input, used in error messages.

        Returns
        -------
        BackgroundResult

        Raises
        ------
        InvalidInputError
            Bad image or mask (see :func:`as_image`, :func:`as_mask`).
        """
        xp = self.xp
        if xp is np:  # SEP and NumPy take host arrays
            image = to_numpy(image)
            mask = None if mask is None else to_numpy(mask)
        data = as_image(image, source=source, xp=xp)
        m = as_mask(mask, data.shape, threshold=self.config.mask_threshold, source=source, xp=xp)
        bad = ~xp.isfinite(data)
        if bool(bad.any()):
            m = bad if m is None else (m | bad)
        if m is not None and bool(m.all()):
            raise InvalidInputError("every pixel is masked or NaN/inf: no background to measure", source=source)
        if bool(bad.any()):
            data = xp.where(bad, 0, data).astype(data.dtype)  # SEP reads masked pixels anyway
        return self._core(data, m, self.config, self.device)
