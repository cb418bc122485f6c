"""The typed errors astroray raises for users.

Every error a user can cause derives from :class:`AstrorayError`.  Bad data
(corrupt FITS, malformed alerts, wrong shapes, NaN-only images, ...) raises
:class:`InvalidInputError` or a subclass; its message names the input (file,
record id, HTTP body) and says what was wrong, so batch jobs can quarantine the
record with that message as the reason.
"""
from __future__ import annotations

__all__ = [
    "AstrorayError",
    "InvalidInputError",
    "InvalidFITSError",
    "InvalidAlertError",
    "InvalidLightCurveError",
    "InvalidTextError",
    "NotFittedError",
    "ConfigError",
    "DeviceUnavailableError",
]


class AstrorayError(Exception):
    """Base class of all astroray errors."""


class InvalidInputError(AstrorayError, ValueError):
    """Input data that astroray cannot use.

    Parameters
    ----------
    message : str
        What is wrong, in words a user can act on.
    source : str, optional
        The file, record id or request the bad input came from; prefixed to
        the message so it always says *where*.
    """

    def __init__(self, message: str, *, source: str | None = None):
        self.source = None if source is None else str(source)
        self.reason = message
        super().__init__(f"{self.source}: {message}" if self.source else message)

    def __reduce__(self):  # keep `source` across pickling (Ray ships errors between processes)
        return (_rebuild, (type(self), self.reason, self.source))


def _rebuild(cls, reason, source):
    return cls(reason, source=source)


class InvalidFITSError(InvalidInputError):
    """A FITS file that is truncated, corrupt or lacks the expected HDUs."""


class InvalidAlertError(InvalidInputError):
    """An alert packet (Avro, Parquet row, JSON) that is malformed or incomplete."""


class InvalidLightCurveError(InvalidInputError):
    """A light curve that is empty, has mismatched columns or unusable values."""


class InvalidTextError(InvalidInputError):
    """Text input astroray cannot read: empty, not UTF-8, not the expected format, or too large."""


class NotFittedError(AstrorayError, RuntimeError):
    """A fitted object (a calibrator, a detector) used before it was fitted or loaded."""


class ConfigError(AstrorayError, ValueError):
    """A configuration file or value that does not validate."""


class DeviceUnavailableError(AstrorayError, RuntimeError):
    """A GPU was asked for (``device="gpu"``) but none is usable here."""
