"""The source catalog's columns, their dtypes and the flag bits: defined once, imported everywhere.

The extraction kernels (:mod:`astroray.kernels.extract`), the SEP-backed and
array-backed extraction stage (:mod:`astroray.imaging.extraction`), the
image pipeline's Catalog record (:data:`astroray.records.CATALOG_SCHEMA`) and
the CUDA kernels all name, type and flag catalog rows from here.  The module
imports nothing heavy, so records and readers can use it freely.

Column names and flag values are SEP's (and SExtractor's): 0-based pixel
coordinates, ``flux`` is the isophotal flux.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "SEP_FIELDS", "NOISE_FIELDS", "PHOTOMETRY_FIELDS", "SKY_FIELDS", "CATALOG_FIELDS", "INT_FIELDS",
    "KERNEL_FLOAT32_FIELDS", "SCORE_FIELDS", "catalog_dtype",
    "OBJ_MERGED", "OBJ_TRUNC", "OBJ_DOVERFLOW", "OBJ_SINGU",
    "APER_TRUNC", "APER_HASMASKED", "APER_ALLMASKED", "APER_NONPOSITIVE",
]

SEP_FIELDS = ("thresh", "npix", "tnpix", "xmin", "xmax", "ymin", "ymax", "x", "y", "x2", "y2", "xy",
              "errx2", "erry2", "errxy", "a", "b", "theta", "cxx", "cyy", "cxy", "cflux", "flux",
              "cpeak", "peak", "xcpeak", "ycpeak", "xpeak", "ypeak", "flag")
"""The fields of :func:`sep.extract`, in its order."""

NOISE_FIELDS = ("flux_err", "snr")
"""Isophotal flux error (``sqrt`` of the summed variance, plus the Poisson term with a gain) and ``flux / flux_err``."""

PHOTOMETRY_FIELDS = ("flux_aper", "flux_aper_err", "flag_aper", "kron_radius", "flux_auto", "flux_auto_err",
                     "flag_auto", "flux_radius", "xwin", "ywin", "flag_win")
"""Circular aperture, Kron (FLUX_AUTO), flux radius and windowed positions (left out with ``photometry=False``)."""

SKY_FIELDS = ("ra", "dec")
"""Degrees from the WCS, NaN without one."""

CATALOG_FIELDS = SEP_FIELDS + NOISE_FIELDS + PHOTOMETRY_FIELDS + SKY_FIELDS
"""Every column of an extraction catalog, in order."""

SCORE_FIELDS = ("rb",)
"""Columns the image pipeline's scorers add: ``rb``, the real/bogus model's real probability (NaN without a model,
or where the difference stamp has no finite pixel).  Not extraction columns: only pipeline catalogs carry them."""

INT_FIELDS = frozenset({"npix", "tnpix", "xmin", "xmax", "ymin", "ymax", "xcpeak", "ycpeak", "xpeak", "ypeak",
                        "flag", "flag_aper", "flag_auto", "flag_win"})
"""Integer columns (int64 in catalogs); every other column is float64."""

KERNEL_FLOAT32_FIELDS = frozenset({"thresh", "a", "b", "theta", "cxx", "cyy", "cxy", "cflux", "flux", "cpeak",
                                   "peak"})
"""Columns the kernels compute in float32, as SEP does (catalogs widen them to float64)."""


def catalog_dtype(name: str) -> np.dtype:
    """The dtype of catalog column ``name``: int64 for counts, pixel indices and flags, else float64."""
    return np.dtype(np.int64) if name in INT_FIELDS else np.dtype(np.float64)


# Flag bits (SEP's values). Plain ints: Numba kernels read them as compile-time constants.
OBJ_MERGED = 0x0001
"""The object was deblended from a blend."""
OBJ_TRUNC = 0x0002
"""The object touches the image edge."""
OBJ_DOVERFLOW = 0x0004
"""Deblending overflowed."""
OBJ_SINGU = 0x0008
"""Singular moments (``x2 y2 - xy^2 ~ 0``); 1/12 was added."""
APER_TRUNC = 0x0010
"""The aperture runs off the image."""
APER_HASMASKED = 0x0020
"""The aperture holds masked pixels."""
APER_ALLMASKED = 0x0040
"""Every aperture pixel is masked."""
APER_NONPOSITIVE = 0x0080
"""Non-positive flux or radius."""
