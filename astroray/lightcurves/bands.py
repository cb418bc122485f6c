"""Band vocabularies: a fixed, ordered list of bands with one integer index per band.

A model's band embedding and the per-band feature columns are laid out by the
vocabulary, so it is fixed per survey rather than read from the data:

=========  ====================  =====================
survey     vocabulary            index
=========  ====================  =====================
``lsst``   ``u g r i z y``       0 1 2 3 4 5
``ztf``    ``g r i``             0 1 2
=========  ====================  =====================

Any other ordered subset of ``ugrizy`` can be given instead.  Band names are
normalised with :func:`astroray.records.normalize_band` (``R`` and ZTF filter
id ``2`` become ``r``).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from astroray.errors import InvalidInputError
from astroray.records import normalize_band

__all__ = ["SURVEY_BANDS", "resolve_bands", "band_indices", "UNKNOWN_BAND"]

SURVEY_BANDS: dict[str, tuple[str, ...]] = {
    "lsst": ("u", "g", "r", "i", "z", "y"),
    "ztf": ("g", "r", "i"),
}
"""The band vocabulary of each survey, in wavelength order."""

UNKNOWN_BAND = -1
"""Index :func:`band_indices` gives a band that is not in the vocabulary."""


def resolve_bands(bands: str | Iterable[str]) -> tuple[str, ...]:
    """A validated band vocabulary from a survey name or a list of bands.

    Parameters
    ----------
    bands : str or iterable of str
        ``"lsst"``, ``"ztf"``, or band names (``["g", "r"]``; ``"gri"`` is
        read as three bands).

    Returns
    -------
    tuple of str
        Normalised one-letter band names, in the order given.

    Raises
    ------
    InvalidInputError
        Empty, repeated or unknown bands.
    """
    if isinstance(bands, str):
        key = bands.strip().lower()
        if key in SURVEY_BANDS:
            return SURVEY_BANDS[key]
        bands = list(bands.strip())
    out = tuple(normalize_band(b) for b in bands)
    if not out:
        raise InvalidInputError("the band vocabulary is empty; give a survey (lsst, ztf) or band names")
    if len(set(out)) != len(out):
        raise InvalidInputError(f"the band vocabulary repeats a band: {out}")
    return out


def band_indices(names: np.ndarray, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Index of each band name in ``vocabulary`` (:data:`UNKNOWN_BAND` where absent).

    Names are normalised first, so ``"R"`` maps to ``r``'s index; a name no
    survey uses (``"x"``) raises.

    Raises
    ------
    InvalidInputError
        A band name that :func:`~astroray.records.normalize_band` does not know.
    """
    names = np.asarray(names)
    if names.size == 0:
        return np.zeros(0, dtype=np.int16)
    uniq, inverse = np.unique(names.astype(str), return_inverse=True)
    lookup = {b: i for i, b in enumerate(vocabulary)}
    mapped = np.array([lookup.get(normalize_band(str(u)), UNKNOWN_BAND) for u in uniq], dtype=np.int16)
    return mapped[inverse.reshape(-1)]
