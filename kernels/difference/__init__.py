"""Image differencing kernels: ZOGY (proper image subtraction) and classic (scaled, PSF-matched)."""
from astroray.kernels.difference.common import FourierBackend, fit_flux_ratio, prepare_psf  # noqa: F401

__all__ = ["FourierBackend", "fit_flux_ratio", "prepare_psf"]
