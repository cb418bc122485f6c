"""Array backend (re-exported from :mod:`astroray.kernels.backend`)."""
from astroray.kernels.backend import (  # noqa: F401
    array_module_of,
    get_ndimage,
    get_xp,
    gpu_available,
    has_cupy,
    resolve_device,
    to_numpy,
)

__all__ = ["has_cupy", "gpu_available", "resolve_device", "get_xp", "get_ndimage", "array_module_of", "to_numpy"]
