"""ZTF alert packets (schema 3.x) as :class:`~astroray.records.Alert`.

The same mapping serves the Avro packets IPAC distributes and the Parquet
tables of the Fink broker, which keep ZTF's layout (``candidate``,
``prv_candidates``, ``cutoutScience`` ...) one packet per row.

ZTF publishes PSF-fit difference magnitudes: ``magpsf`` is the magnitude of
``|flux|`` and ``isdiffpos`` its sign ('t'/'1' positive, 'f'/'0' negative,
i.e. the source faded with respect to the reference).

History: ``prv_candidates`` with a ``candid`` are detections, those without
are upper limits (``diffmaglim``); schema 4.x adds ``fp_hists``, forced
photometry (``forcediffimflux`` in DN on the ``magzpsci`` zero point), kept as
``detected=False`` points with a flux at epochs without a detection.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from astroray.errors import InvalidAlertError, InvalidInputError
from astroray.io._checks import check_photometry, check_points, number, sky_position
from astroray.records import Alert, LightCurve, mag_to_flux, normalize_band

__all__ = ["JD_TO_MJD", "ztf_packet_to_alert", "ztf_fields_read", "ztf_flux", "ztf_limit_flux_err",
           "is_positive_difference"]

JD_TO_MJD = 2400000.5
"""Subtract from a Julian date to get the modified Julian date."""

_CUTOUT_FIELDS = (("cutoutScience", "cutout_science"), ("cutoutTemplate", "cutout_reference"),
                  ("cutoutDifference", "cutout_difference"))

# Candidate fields worth carrying along (context for classifiers and for quality cuts).
_META_FIELDS = ("candid", "fid", "pid", "programid", "field", "rcid", "xpos", "ypos", "isdiffpos", "magpsf",
                "sigmapsf", "diffmaglim", "magap", "sigmagap", "magzpsci", "fwhm", "elong", "nbad", "classtar",
                "distnr", "magnr", "sigmagnr", "ssdistnr", "ssnamenr", "sgscore1", "distpsnr1", "ndethist",
                "ncovhist", "jdstarthist", "neargaia", "maggaia", "rbversion", "drbversion")



def ztf_fields_read(*, cutouts: bool = True) -> dict:
    """The packet fields :func:`ztf_packet_to_alert` reads, as a projection (field -> True or its fields).

    Decoding only these (:mod:`astroray.io._avro_projection`) gives the same
    alert as decoding the whole packet; keep it in step with the mapper below.
    """
    fields = {"objectId": True, "candid": True, "schemavsn": True,
              "candidate": dict.fromkeys(("jd", "fid", "ra", "dec", "magpsf", "sigmapsf", "isdiffpos", "rb", "drb",
                                          *_META_FIELDS), True),
              "prv_candidates": dict.fromkeys(("jd", "fid", "candid", "magpsf", "sigmapsf", "isdiffpos",
                                               "diffmaglim"), True),
              "fp_hists": dict.fromkeys(("jd", "fid", "forcediffimflux", "forcediffimfluxunc", "magzpsci"), True)}
    if cutouts:
        fields.update({name: {"stampData": True} for name, _ in _CUTOUT_FIELDS})
    return fields


_NEGATIVE = {"f", "false", "0", "-1", "-1.0", "0.0", "n"}


def is_positive_difference(isdiffpos: Any) -> bool:
    """True where ZTF's ``isdiffpos`` says the difference flux is positive.

    Accepts ZTF's 't'/'f'/'1'/'0' strings and ALeRCE's 1.0/-1.0 numbers; a
    missing value counts as positive.
    """
    if isdiffpos is None:
        return True
    if isinstance(isdiffpos, (bool, np.bool_)):
        return bool(isdiffpos)
    if isinstance(isdiffpos, (int, float, np.integer, np.floating)):
        return not (isdiffpos <= 0) if not math.isnan(isdiffpos) else True
    return str(isdiffpos).strip().lower() not in _NEGATIVE


def ztf_flux(magpsf, sigmapsf, isdiffpos) -> tuple[float, float]:
    """Signed difference flux and its error in nJy from ZTF's ``magpsf``, ``sigmapsf``, ``isdiffpos``."""
    flux, err = mag_to_flux(magpsf, sigmapsf)
    sign = 1.0 if is_positive_difference(isdiffpos) else -1.0
    return sign * float(flux), float(err)


def ztf_limit_flux_err(diffmaglim) -> float:
    """``flux_err`` of an upper limit: the 5-sigma limiting flux divided by 5 (nJy)."""
    if diffmaglim is None:
        return float("nan")
    return float(mag_to_flux(diffmaglim)) / 5.0


def ztf_packet_to_alert(packet: Mapping[str, Any], *, source: str | None = None, cutouts: bool = True,
                        fmt: str = "ztf", extra: Mapping[str, Any] | None = None) -> Alert:
    """Map one ZTF packet (a dict in ZTF's schema) to an :class:`Alert`.

    Parameters
    ----------
    packet : mapping
        ``objectId``, ``candidate`` and optionally ``candid``, ``prv_candidates``,
        ``cutoutScience``/``cutoutTemplate``/``cutoutDifference`` and ``schemavsn``.
    source : str, optional
        The file the packet came from, for error messages.
    cutouts : bool, optional
        Decode the three stamps (default) or leave them ``None``.
    fmt : str, optional
        Recorded as ``meta['format']``.
    extra : mapping, optional
        Further per-file fields to keep in ``meta`` (already sorted by the caller).

    Raises
    ------
    InvalidAlertError
        A required field is missing or unusable: not a number, ``ra`` outside
        0..360 or ``dec`` outside -90..90 (or NaN), ``magpsf`` not finite,
        ``sigmapsf`` not positive, or the same in the history.
    """
    candidate = packet.get("candidate")
    object_id = packet.get("objectId")
    if not isinstance(candidate, Mapping):
        raise InvalidAlertError(f"alert {object_id or '?'} has no 'candidate' record", source=source)
    if not object_id:
        raise InvalidAlertError("ZTF alert has no 'objectId'", source=source)
    where = f"{source}: {object_id}" if source else str(object_id)
    candid = packet.get("candid") or candidate.get("candid")
    jd, fid, ra, dec = (candidate.get(k) for k in ("jd", "fid", "ra", "dec"))
    missing = [k for k, v in (("jd", jd), ("fid", fid), ("ra", ra), ("dec", dec), ("magpsf", candidate.get("magpsf")),
                              ("sigmapsf", candidate.get("sigmapsf"))) if v is None]
    if missing:
        raise InvalidAlertError(f"candidate {candid} lacks {', '.join(missing)}", source=where)
    try:
        band = normalize_band(fid)
    except InvalidInputError as exc:
        raise InvalidAlertError(exc.reason, source=where) from None
    ra, dec = sky_position(ra, dec, source=where)
    jd = number(jd, "jd", source=where)
    magpsf, sigmapsf = _magnitude(candidate["magpsf"], candidate["sigmapsf"], "candidate", where)
    flux, flux_err = check_photometry(*ztf_flux(magpsf, sigmapsf, candidate.get("isdiffpos")),
                                      what=f"candidate {candid} (magpsf {magpsf:g})", source=where)
    scores = {k: number(candidate[k], k, source=where, finite=False) for k in ("rb", "drb")
              if candidate.get(k) is not None}
    meta = {"format": fmt, "schemavsn": packet.get("schemavsn")}
    meta.update({k: _plain(candidate[k]) for k in _META_FIELDS if candidate.get(k) is not None})
    if extra:
        meta.update(extra)
    stamps = {}
    for field, attr in _CUTOUT_FIELDS:
        stamp = packet.get(field)
        if cutouts and stamp is not None:
            data = stamp.get("stampData") if isinstance(stamp, Mapping) else stamp
            if data is not None:
                from astroray.io.cutouts import decode_cutout

                stamps[attr] = decode_cutout(data, source=where, label=field)
    return Alert(
        alert_id=str(candid), object_id=str(object_id), survey="ztf", mjd=jd - JD_TO_MJD,
        ra=ra, dec=dec, band=band, flux=flux, flux_err=flux_err,
        history=ztf_history(str(object_id), packet.get("prv_candidates") or [], source=where,
                            fp_hists=packet.get("fp_hists") or [], current=(jd, band)),
        scores=scores, meta=meta, **stamps)


def _magnitude(mag, sig, what: str, where) -> tuple[float, float]:
    """A PSF magnitude and its error, checked: a finite magnitude, a finite positive error."""
    mag = number(mag, f"{what} magpsf", source=where)
    sig = number(sig, f"{what} sigmapsf", source=where)
    if not sig > 0:
        raise InvalidAlertError(f"{what} sigmapsf = {sig:g}: a magnitude error must be positive", source=where)
    return mag, sig


def ztf_history(object_id: str, prv_candidates, *, source: str | None = None, fp_hists=(),
                current: tuple[float, int | str] | None = None) -> LightCurve:
    """Previous detections (``candid`` set), upper limits (``candid`` null) and forced photometry as one light curve.

    ``current`` is the alert's own (jd, fid or band): forced photometry at that
    epoch, or at a previous detection's, repeats a detection and is dropped.
    """
    lc = _prv_history(object_id, prv_candidates, source)
    forced = _forced_points(fp_hists, source)
    if not forced:
        return lc
    taken = {(_epoch(j), f) for j, f, det in zip(lc.mjd + JD_TO_MJD, lc.band, lc.detected) if det}
    if current is not None:
        taken.add((_epoch(current[0]), normalize_band(current[1])))
    forced = [p for p in forced if (_epoch(p[0]), p[1]) not in taken]
    if not forced:
        return lc
    jd, band, flux, err = (np.array(c) for c in zip(*forced))
    return LightCurve(object_id, np.r_[lc.mjd, jd - JD_TO_MJD], np.r_[lc.band, band], np.r_[lc.flux, flux],
                      np.r_[lc.flux_err, err], np.r_[lc.detected, np.zeros(len(jd), bool)], survey="ztf")


def _epoch(jd: float) -> int:
    return int(round(jd * 86400.0))  # to the second: one exposure


_FP_MISSING = -99999.0  # ZTF's flag value for failed forced photometry


def _forced_points(fp_hists, source) -> list[tuple[float, str, float, float]]:
    out = []
    for i, fp in enumerate(fp_hists):
        flux, unc, zp = fp.get("forcediffimflux"), fp.get("forcediffimfluxunc"), fp.get("magzpsci")
        if fp.get("jd") is None or fp.get("fid") is None:
            raise InvalidAlertError(f"fp_hists[{i}] lacks jd or fid", source=source)
        if flux is None or unc is None or zp is None or flux == _FP_MISSING or unc == _FP_MISSING:
            continue
        flux, unc, zp = (number(v, f"fp_hists[{i}].{k}", source=source, finite=False)
                         for v, k in ((flux, "forcediffimflux"), (unc, "forcediffimfluxunc"), (zp, "magzpsci")))
        if math.isnan(flux) or math.isnan(unc) or math.isnan(zp):
            continue  # not measured
        if math.isinf(flux) or math.isinf(zp) or not 0 < unc < math.inf:
            raise InvalidAlertError(f"fp_hists[{i}]: forced photometry {flux:g} +- {unc:g} at zero point {zp:g} "
                                    "is not usable (infinite, or an error that is not positive)", source=source)
        scale = 10.0 ** (-0.4 * (zp - 31.4))  # DN at zero point zp to nJy
        try:
            band = normalize_band(fp["fid"])
        except InvalidInputError as exc:
            raise InvalidAlertError(f"fp_hists[{i}]: {exc.reason}", source=source) from None
        out.append((number(fp["jd"], f"fp_hists[{i}].jd", source=source), band, flux * scale, unc * scale))
    return out


def _prv_history(object_id: str, prv_candidates, source) -> LightCurve:
    n = len(prv_candidates)
    jd, mag, sig, lim = np.empty(n), np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    band = np.empty(n, dtype=object)
    detected = np.zeros(n, dtype=bool)
    negative = np.zeros(n, dtype=bool)
    for i, p in enumerate(prv_candidates):
        if p.get("jd") is None or p.get("fid") is None:
            raise InvalidAlertError(f"prv_candidates[{i}] lacks jd or fid", source=source)
        jd[i] = number(p["jd"], f"prv_candidates[{i}].jd", source=source)
        try:
            band[i] = normalize_band(p["fid"])
        except InvalidInputError as exc:
            raise InvalidAlertError(f"prv_candidates[{i}]: {exc.reason}", source=source) from None
        if p.get("candid") is not None and p.get("magpsf") is not None and p.get("sigmapsf") is not None:
            mag[i], sig[i] = _magnitude(p["magpsf"], p["sigmapsf"], f"prv_candidates[{i}]", source)
            detected[i] = True
            negative[i] = not is_positive_difference(p.get("isdiffpos"))
        elif p.get("diffmaglim") is not None:
            lim[i] = number(p["diffmaglim"], f"prv_candidates[{i}].diffmaglim", source=source)
    # One vectorised conversion: detections from magpsf (signed), limits from diffmaglim.
    flux, err = mag_to_flux(mag, sig)
    flux = np.where(negative, -flux, flux)
    err = np.where(detected, err, mag_to_flux(lim) / 5.0)
    flux = np.where(detected, flux, np.nan)
    check_points(flux, err, detected, what="prv_candidates", source=source)
    return LightCurve(object_id, jd - JD_TO_MJD, band.astype(str), flux, err, detected, survey="ztf")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
