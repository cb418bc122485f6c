"""astroray: time-domain astronomy on Ray.

Science code (``astroray.imaging``, ``astroray.io``, ``astroray.datasets``, ...)
imports no Ray; the thin adapters live in ``astroray.ray``.
"""
from astroray._version import __version__
from astroray.errors import AstrorayError, ConfigError, InvalidInputError

__all__ = ["__version__", "AstrorayError", "InvalidInputError", "ConfigError"]
