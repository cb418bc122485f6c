"""Rubin/LSST alert packets as :class:`~astroray.records.Alert`.

One mapping covers the Rubin schemas (lsst.v7 to v11: ``midpointMjdTai``,
``band``, ``psfFlux``, ``dec``) and the older DPDD names the ELAsTiCC challenge
used (``midPointTai``, ``filterName``, ``psFlux``, ``decl``).  Fluxes are
already difference-image PSF fluxes in nJy.

History: ``prvDiaSources`` are detections; ``prvDiaForcedSources`` are forced
photometry (``detected=False`` with a measured flux), kept only at epochs
without a detection, because Rubin also forces photometry where it detected;
``prvDiaNondetectionLimits`` are upper limits (flux NaN, ``flux_err`` =
``diaNoise``, the 1-sigma noise).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from astroray.errors import InvalidAlertError, InvalidInputError
from astroray.io._checks import check_photometry, check_points, number, sky_position
from astroray.records import Alert, LightCurve, normalize_band

__all__ = ["lsst_packet_to_alert"]

_CUTOUT_FIELDS = (("cutoutScience", "cutout_science"), ("cutoutTemplate", "cutout_reference"),
                  ("cutoutDifference", "cutout_difference"))

# Either spelling of each quantity: Rubin first, then the DPDD names of ELAsTiCC.
_MJD = ("midpointMjdTai", "midPointTai")
_BAND = ("band", "filterName")
_FLUX = ("psfFlux", "psFlux")
_FLUX_ERR = ("psfFluxErr", "psFluxErr")
_DEC = ("dec", "decl")

_SOURCE_META = ("diaSourceId", "diaObjectId", "ssObjectId", "visit", "detector", "ccdVisitId", "snr",
                "apFlux", "apFluxErr", "scienceFlux", "scienceFluxErr", "templateFlux", "templateFluxErr",
                "extendedness", "isDipole", "isNegative", "pixelFlags")

_SAME_EPOCH_DAYS = 1e-5  # ~1 s: forced and detected photometry of one visit share its midpoint


def _first(record: Mapping[str, Any], names) -> Any:
    for name in names:
        value = record.get(name)
        if value is not None:
            return value
    return None


def lsst_packet_to_alert(packet: Mapping[str, Any], *, source: str | None = None, cutouts: bool = True,
                         fmt: str = "lsst", extra: Mapping[str, Any] | None = None) -> Alert:
    """Map one Rubin/ELAsTiCC alert (a dict in their schema) to an :class:`Alert`.

    Parameters
    ----------
    packet : mapping
        ``diaSource`` and optionally ``alertId``/``diaSourceId``, ``prvDiaSources``,
        ``prvDiaForcedSources``, ``prvDiaNondetectionLimits``, ``diaObject`` and
        ``cutoutScience``/``cutoutTemplate``/``cutoutDifference`` (FITS bytes).
    source : str, optional
        The file the packet came from, for error messages.
    cutouts : bool, optional
        Decode the stamps present (default) or leave them ``None``.
    fmt : str, optional
        Recorded as ``meta['format']``.
    extra : mapping, optional
        Further per-file fields to keep in ``meta`` (already sorted by the caller).

    Raises
    ------
    InvalidAlertError
        A required field is missing or unusable: not a number, ``ra``/``dec``
        outside the sky or NaN, a flux that is not finite or an error that is
        not positive, or the same in the history.
    """
    dia = packet.get("diaSource")
    alert_id = _first(packet, ("alertId", "diaSourceId"))
    if not isinstance(dia, Mapping):
        raise InvalidAlertError(f"alert {alert_id or '?'} has no 'diaSource' record", source=source)
    if alert_id is None:
        alert_id = dia.get("diaSourceId")
    dia_object = packet.get("diaObject") if isinstance(packet.get("diaObject"), Mapping) else {}
    object_id = _first(dia, ("diaObjectId",)) or dia_object.get("diaObjectId") or dia.get("ssObjectId")
    where = f"{source}: alert {alert_id}" if source else f"alert {alert_id}"
    values = {"mjd": _first(dia, _MJD), "band": _first(dia, _BAND), "ra": dia.get("ra"), "dec": _first(dia, _DEC),
              "psfFlux": _first(dia, _FLUX), "psfFluxErr": _first(dia, _FLUX_ERR)}
    missing = [k for k, v in values.items() if v is None]
    if alert_id is None:
        missing.insert(0, "alertId/diaSourceId")
    if object_id is None:
        missing.append("diaObjectId")
    if missing:
        raise InvalidAlertError(f"diaSource lacks {', '.join(missing)}", source=where)
    if isinstance(object_id, float):  # a null-able integer column read as float
        object_id = str(int(number(object_id, "diaObjectId", source=where)))
    object_id = str(object_id)
    band = _band(values["band"], where)
    mjd = number(values["mjd"], "midpointMjdTai", source=where)
    ra, dec = sky_position(values["ra"], values["dec"], source=where)
    flux, flux_err = check_photometry(number(values["psfFlux"], "psfFlux", source=where, finite=False),
                                      number(values["psfFluxErr"], "psfFluxErr", source=where, finite=False),
                                      what="diaSource psf", source=where)
    scores = {"reliability": number(dia["reliability"], "reliability", source=where, finite=False)} \
        if dia.get("reliability") is not None else {}
    meta = {"format": fmt}
    meta.update({k: _plain(dia[k]) for k in _SOURCE_META if dia.get(k) is not None})
    for key in ("observation_reason", "target_name"):
        if packet.get(key) is not None:
            meta[key] = packet[key]
    if dia_object:
        meta["diaObject"] = {k: _plain(v) for k, v in dia_object.items() if v is not None and _is_scalar(v)}
    if extra:
        meta.update(extra)
    stamps = {}
    if cutouts:
        from astroray.io.cutouts import decode_cutout

        for field, attr in _CUTOUT_FIELDS:
            data = packet.get(field)
            if isinstance(data, Mapping):  # ZTF-like {fileName, stampData} wrapper
                data = data.get("stampData")
            if data is not None:
                stamps[attr] = decode_cutout(data, source=where, label=field)
    history = _history(object_id, mjd, band, packet, where)
    return Alert(alert_id=str(alert_id), object_id=object_id, survey="lsst", mjd=mjd, ra=ra, dec=dec, band=band,
                 flux=flux, flux_err=flux_err, history=history, scores=scores, meta=meta, **stamps)


def _band(value, where) -> str:
    try:
        return normalize_band(value)
    except InvalidInputError as exc:
        raise InvalidAlertError(exc.reason, source=where) from None


def _history(object_id: str, mjd_now: float, band_now: str, packet, where) -> LightCurve:
    rows: list[tuple[float, str, float, float, bool]] = []
    for name, detected in (("prvDiaSources", True), ("prvDiaForcedSources", False)):
        for i, rec in enumerate(packet.get(name) or []):
            mjd, band = _first(rec, _MJD), _first(rec, _BAND)
            flux, err = _first(rec, _FLUX), _first(rec, _FLUX_ERR)
            if mjd is None or band is None:
                raise InvalidAlertError(f"{name}[{i}] lacks midpointMjdTai or band", source=where)
            rows.append((number(mjd, f"{name}[{i}].midpointMjdTai", source=where), _band(band, f"{where} {name}[{i}]"),
                         np.nan if flux is None else number(flux, f"{name}[{i}].psfFlux", source=where, finite=False),
                         np.nan if err is None else number(err, f"{name}[{i}].psfFluxErr", source=where, finite=False),
                         detected))
    for i, rec in enumerate(packet.get("prvDiaNondetectionLimits") or []):
        mjd, band, noise = _first(rec, _MJD), _first(rec, _BAND), rec.get("diaNoise")
        if mjd is None or band is None:
            raise InvalidAlertError(f"prvDiaNondetectionLimits[{i}] lacks midpointMjdTai or band", source=where)
        rows.append((number(mjd, f"prvDiaNondetectionLimits[{i}].midpointMjdTai", source=where), _band(band, where),
                     np.nan, np.nan if noise is None else number(noise, f"prvDiaNondetectionLimits[{i}].diaNoise",
                                                                 source=where, finite=False), False))
    if not rows:
        return LightCurve(object_id, [], [], [], [], [], survey="lsst")
    mjd, band, flux, err, detected = (np.array(c) for c in zip(*rows))
    check_points(flux, err, detected, what="the history", source=where)
    keep = np.ones(len(mjd), dtype=bool)
    # Drop forced photometry at epochs that already have a detection (here or in the alert itself).
    det_mjd = np.append(mjd[detected], mjd_now)
    det_band = np.append(band[detected], band_now)
    forced = ~detected & np.isfinite(flux)
    for i in np.flatnonzero(forced):
        same = (det_band == band[i]) & (np.abs(det_mjd - mjd[i]) < _SAME_EPOCH_DAYS)
        keep[i] = not same.any()
    return LightCurve(object_id, mjd[keep], band[keep], flux[keep], err[keep], detected[keep], survey="lsst")


def _is_scalar(value) -> bool:
    return isinstance(value, (int, float, str, bool, np.generic))


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
