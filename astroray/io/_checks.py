"""Value checks shared by the alert and light-curve readers: numbers, sky positions, photometry.

A reader that finds an impossible value raises its typed error naming the
field and the value, instead of passing it on (``ra = 999``) or turning it
into a plausible-looking one (``magpsf = inf`` becoming flux 0 with error 0).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from astroray.errors import InvalidAlertError, InvalidInputError

__all__ = ["number", "sky_position", "check_photometry", "check_points"]


def number(value: Any, field: str, *, source: str | None, error: type[InvalidInputError] = InvalidAlertError,
           finite: bool = True) -> float:
    """``value`` as a float; a non-number (or, with ``finite``, NaN/inf) raises ``error`` naming ``field``."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (bytes, str)) and not value.strip():
        raise error(f"{field} = {value!r} is not a number", source=source)
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise error(f"{field} = {value!r} is not a number", source=source) from None
    if finite and not math.isfinite(out):
        raise error(f"{field} = {out} is not a finite number", source=source)
    return out


def sky_position(ra: Any, dec: Any, *, source: str | None,
                 error: type[InvalidInputError] = InvalidAlertError) -> tuple[float, float]:
    """(ra, dec) in degrees, checked: both finite, -180 <= ra <= 360, -90 <= dec <= 90.

    A negative ``ra`` (the -180..180 convention, or a simulation such as
    ELAsTiCC writing -0.01 for 359.99) is wrapped into 0..360; anything else
    outside those ranges is refused.
    """
    ra_f = number(ra, "ra", source=source, error=error)
    dec_f = number(dec, "dec", source=source, error=error)
    if not -180.0 <= ra_f <= 360.0:
        raise error(f"ra = {ra_f:g} deg is outside 0..360 (or -180..180)", source=source)
    if not -90.0 <= dec_f <= 90.0:
        raise error(f"dec = {dec_f:g} deg is outside -90..90", source=source)
    return (ra_f + 360.0 if ra_f < 0 else ra_f), dec_f


def check_photometry(flux: float, flux_err: float, *, what: str, source: str | None,
                     error: type[InvalidInputError] = InvalidAlertError) -> tuple[float, float]:
    """A measured flux must be finite and its error finite and positive."""
    if not math.isfinite(flux):
        raise error(f"{what} flux is {flux}, not a finite number", source=source)
    if not (math.isfinite(flux_err) and flux_err > 0):
        raise error(f"{what} flux error is {flux_err:g}: an error must be finite and positive", source=source)
    return flux, flux_err


def check_points(flux: np.ndarray, flux_err: np.ndarray, detected: np.ndarray, *, what: str, source: str | None,
                 error: type[InvalidInputError] = InvalidAlertError) -> None:
    """Light-curve points: no infinite flux, no negative or infinite error, every detection with a finite flux.

    NaN stays allowed where it means 'not measured' (an upper limit's flux).
    """
    flux = np.asarray(flux, np.float64)
    err = np.asarray(flux_err, np.float64)
    problems = []
    n = int(np.count_nonzero(np.isinf(flux)))
    if n:
        problems.append(f"{n} infinite flux value(s)")
    n = int(np.count_nonzero(np.isinf(err) | (err < 0)))
    if n:
        problems.append(f"{n} negative or infinite error(s)")
    n = int(np.count_nonzero(np.asarray(detected, bool) & ~np.isfinite(flux)))
    if n:
        problems.append(f"{n} detection(s) without a finite flux")
    if problems:
        raise error(f"{what} has {', '.join(problems)}", source=source)
