"""Real sky: astroray's difference of ZTF alert cutouts against ZTF's own difference cutout.

Every real ZTF alert under ``../shared/data/alerts/`` (Avro packets, Fink and
fink-broker Parquet; duplicates by alert id counted once) carries 63x63
science, template and difference cutouts.  astroray differences the science
and template cutouts with nothing but their pixels
(:func:`astroray.imaging.survey_pair.difference_cutouts`: flat background
and noise, each stamp's PSF from its own stars or, without one, through a
fitted matching kernel, the flux ratio from the static light outside the
centre; no candidate field is read) and its D is compared with ZTF's.

The flux ratio: ZTF's template cutout is the reference resampled onto the
science frame and scaled to its photometric zero point, so ``F_n / F_r = 1``
by the alert format's own convention (as reading ``MAGZP`` from a header is
for a file).  That is what the headline figures use (``--flux-ratio 1``).
Fitted from the stamps instead (the static light outside the centre), F
carries the error of a handful of faint stars, and the sign of a
variable star's few-percent change follows that error: the same alerts are
differenced a second time with the fitted F and reported as
``fitted_flux_ratio``.

* Pearson r over the pixels away from bright static sources: pixels more
  than ``--static-grow`` px from any pixel where the template, filtered with
  its PSF, exceeds ``--static-snr`` sigma;
* Pearson r over all pixels valid in both;
* the sign of the transient against ``isdiffpos`` (read only here, for
  scoring).  ``isdiffpos`` is the sign of the candidate ZTF found on its
  PSF-filtered difference, at the candidate's position, and the cutouts are
  centred on that position to the nearest pixel only (<= 0.71 px off).  The
  headline (``sign_right_fraction``) reads the same on D: the forced PSF
  flux where |flux / error| on D peaks within ``--detection-radius`` (1 px:
  the rounding's 0.71 px plus a few tenths for the two centroids' errors)
  of the stamp centre, whichever its sign.  Also reported: the forced PSF
  flux at the exact stamp centre (``..._stamp_centre``), and the net flux of
  D within two FWHM of D's PSF around the centre (``..._aperture``).  For a
  few-percent change of a bright star the PSF and aperture figures differ:
  any PSF mismatch leaves a core-and-ring residual of zero net flux that a
  PSF fit weighs by its core, while the aperture sums it away.
  ``detection_position_vs_ztf`` checks the geometry against ZTF's own
  sub-pixel position (``xpos``/``ypos``, read only for this check) and gives
  the sign of the forced flux at that position; ``sign_wrong`` lists every
  alert wrong by the headline or the stamp-centre figure, ``per_alert``
  every alert's signs, S/N and r.

ZTF stores a fading candidate's difference cutout as template minus science
(``isdiffpos = 'f'``: the candidate is positive in every cutout; the
benchmark checks it: ``ztf_cutout_centre_positive_fraction``), so its
cutout is multiplied by -1 there to be science minus template like D.

Alerts where astroray raises (no star in either stamp, ...) are listed with
the reason and count as r = 0 and a wrong sign in the "all alerts" figures.

    python benchmarks/bench_ztf_difference.py
"""
import argparse
import glob
import json
import time
from pathlib import Path

import numpy as np


def _alerts(root: Path):
    from astroray.io import read_alerts

    files = sorted(glob.glob(str(root / "alerts" / "ztf" / "**" / "*.avro"), recursive=True))
    files += [str(root / "alerts" / "fink" / "alerts.parquet")]
    files += sorted(glob.glob(str(root / "alerts" / "fink" / "datatest" / "*.parquet")))
    files += sorted(glob.glob(str(root / "alerts" / "fink_broker" / "**" / "*.parquet"), recursive=True))
    seen = {}
    for f in files:
        for a in read_alerts(f):
            if a.survey != "ztf" or a.alert_id in seen:
                continue
            cut = (a.cutout_science, a.cutout_reference, a.cutout_difference)
            if any(c is None for c in cut):
                continue
            seen[a.alert_id] = (a, f)
    return list(seen.values())


def _pearson(a, b):
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def _static_mask(ref, var_r, psf, snr, grow):
    from scipy import ndimage

    p = np.asarray(psf, np.float64)
    filt = ndimage.convolve(ref, p[::-1, ::-1], mode="constant")
    noise = np.sqrt(ndimage.convolve(var_r, (p * p)[::-1, ::-1], mode="constant"))
    bright = filt > snr * np.where(noise > 0, noise, np.inf)
    if grow > 0:
        yy, xx = np.mgrid[-grow:grow + 1, -grow:grow + 1]
        bright = ndimage.binary_dilation(bright, structure=(xx * xx + yy * yy) <= grow * grow)
    return bright


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--static-snr", type=float, default=10.0,
                        help="template PSF-filtered S/N of bright static light")
    parser.add_argument("--static-grow", type=int, default=3, help="px around bright static light left out")
    parser.add_argument("--limit", type=int, default=0, help="first N alerts only (0: all)")
    parser.add_argument("--flux-ratio", default="1",
                        help="F_n/F_r of the headline figures: a number (ZTF's gain-matched templates: 1) or 'fit'")
    parser.add_argument("--no-fitted", action="store_true",
                        help="skip the second pass with the flux ratio fitted from the stamps (half the time)")
    parser.add_argument("--detection-radius", type=float, default=1.0,
                        help="px around the stamp centre searched for the candidate's position (the cutout is "
                             "centred on it to the nearest pixel: <= 0.71 px, plus centroid error)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/ztf_difference.json)")
    args = parser.parse_args(argv)

    from astroray.errors import InvalidInputError
    from astroray.imaging.survey_pair import CutoutDifferenceConfig, difference_cutouts

    fixed = None if args.flux_ratio == "fit" else float(args.flux_ratio)
    config = CutoutDifferenceConfig(flux_ratio=fixed)
    config_fit = CutoutDifferenceConfig(flux_ratio=None)

    alerts = _alerts(Path(args.data))
    if args.limit:
        alerts = alerts[:args.limit]
    rows, rows_fit, failures, centre_positive = [], [], [], []
    t0 = time.perf_counter()
    for a, path in alerts:
        sci, ref, zd = (np.asarray(c, np.float64) for c in (a.cutout_science, a.cutout_reference, a.cutout_difference))
        if not (sci.shape == ref.shape == zd.shape):
            failures.append({"alert_id": a.alert_id,
                             "reason": f"cutout shapes differ {sci.shape} {ref.shape} {zd.shape}"})
            continue
        positive = str(a.meta.get("isdiffpos", "t")).lower() in ("t", "1", "true")
        ztf = zd * (1.0 if positive else -1.0)
        centre_positive.append(bool(np.nansum(zd[29:34, 29:34]) > 0))
        try:
            res = difference_cutouts(sci, ref, config=config, name=a.alert_id)
        except InvalidInputError as exc:
            failures.append({"alert_id": a.alert_id, "reason": exc.reason})
            continue
        rows.append(_score(a, res.difference, res, ztf, sci, ref, positive, path, args))
        if fixed is not None and not args.no_fitted:  # the same stamps with the flux ratio fitted from their light
            try:
                fitted = difference_cutouts(sci, ref, config=config_fit, name=a.alert_id)
                rows_fit.append(_score(a, fitted.difference, fitted, ztf, sci, ref, positive, path, args))
            except InvalidInputError:
                pass
    seconds = time.perf_counter() - t0
    n_fail = len(failures)
    result = {
        "benchmark": "ztf_difference", "n_alerts": len(alerts), "n_differenced": len(rows), "n_quarantined": n_fail,
        "static_snr": args.static_snr, "static_grow_px": args.static_grow,
        "flux_ratio": "fitted from the stamps" if fixed is None else fixed,
        "ztf_cutout_centre_positive_fraction": round(float(np.mean(centre_positive)), 4),
        "differenced": _stats(rows),
        "all_alerts_quarantined_as_zero_r_and_wrong_sign": _stats(rows, n_fail),
        "fitted_flux_ratio": {"differenced": _stats(rows_fit), "all_alerts": _stats(rows_fit, n_fail),
                              "median_abs_log_ratio": round(float(np.median(np.abs(np.log(
                                  [r["flux_ratio"] for r in rows_fit])))), 4) if rows_fit else None}
        if rows_fit else None,
        "targets": {"r_away_median": 0.96, "r_away_p10": 0.87, "r_all_median": 0.91, "sign_right_fraction": 0.98},
        "psf_sources": {k: int(v) for k, v in _count([(r["psf_science"].split(" (")[0] + " / " +
                                                       r["psf_reference"].split(" (")[0]) for r in rows]).items()},
        "failures": failures,
        "detection_position_vs_ztf": _positions(rows),
        "sign_wrong": [{k: r[k] for k in _SIGN_KEYS} for r in rows
                       if not (r["sign_right"] and r["sign_right_centre"])],
        "per_alert": [{k: (round(r[k], 4) if isinstance(r[k], float) else r[k]) for k in _PER_ALERT_KEYS}
                      for r in rows],
        "worst_r_away": sorted(rows, key=lambda r: np.nan_to_num(r["r_away"], nan=-2))[:8],
        "seconds": round(seconds, 1), "ms_per_alert": round(1e3 * seconds / max(len(alerts), 1), 1),
    }
    out = Path(args.out or Path(__file__).parent / "results" / "ztf_difference.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k not in ("worst_r_away", "per_alert")}, indent=2,
                     default=str))
    return result


_SIGN_KEYS = ("alert_id", "file", "isdiffpos", "sign_right", "sign_right_centre", "sign_right_aperture",
              "centre_flux", "centre_flux_err", "centre_snr", "detection_offset_px", "detection_flux",
              "detection_snr", "aperture_net_flux", "ztf_subpixel_offset", "flux_at_ztf_position",
              "ztf_change_over_static", "ztf_centre_5x5_sum", "r_away", "r_all", "psf_science",
              "psf_reference", "flux_ratio")


_PER_ALERT_KEYS = ("alert_id", "isdiffpos", "sign_right", "sign_right_centre", "sign_right_aperture", "centre_snr",
                   "detection_snr", "r_away", "r_all", "ztf_change_over_static")


def _change_over_static(meta) -> float | None:
    """``10**(-0.4 (magpsf - magnr))`` where ZTF's nearest reference source is within 1.5 px (else None)."""
    try:
        mag, magnr, dist = float(meta["magpsf"]), float(meta["magnr"]), float(meta["distnr"])
    except (KeyError, TypeError, ValueError):
        return None
    return float(10 ** (-0.4 * (mag - magnr))) if 0 <= dist <= 1.5 and magnr > 0 else None


def _score(a, diff, res, ztf, sci, ref, positive, path, args) -> dict:
    from astroray.imaging.psf import psf_shape

    D = np.asarray(diff.difference, np.float64)
    valid = np.isfinite(ztf) & np.isfinite(sci) & np.isfinite(ref) & (np.asarray(diff.mask) == 0) & np.isfinite(D)
    static = _static_mask(res.reference.image.astype(np.float64), res.reference.variance.astype(np.float64),
                          res.reference.psf, args.static_snr, args.static_grow)
    away = valid & ~static
    h, w = D.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    f_c, e_c = diff.flux_at(cy, cx)
    flux, flux_err = float(f_c[0]), float(e_c[0])
    det_y, det_x, det_flux, det_err = _detection(diff, cy, cx, args.detection_radius)
    yy, xx = np.mgrid[0:h, 0:w]
    aperture = (np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) <= 2.0 * psf_shape(diff.psf)["fwhm"]) & np.isfinite(D)
    net = float(D[aperture].sum())
    iy, ix = (h - 1) // 2, (w - 1) // 2
    # ZTF's own candidate position within the centre pixel (xpos/ypos; scoring diagnostics only, like isdiffpos)
    xpos, ypos = a.meta.get("xpos"), a.meta.get("ypos")
    sub = None if xpos is None or ypos is None else (float(ypos) - round(float(ypos)), float(xpos) - round(float(xpos)))
    at_ztf = float(diff.flux_at(cy + sub[0], cx + sub[1])[0][0]) if sub is not None else None
    return {
        "alert_id": a.alert_id, "file": Path(path).name, "isdiffpos": "t" if positive else "f",
        "r_away": _pearson(D[away], ztf[away]) if away.sum() > 10 else float("nan"),
        "r_all": _pearson(D[valid], ztf[valid]), "n_away": int(away.sum()), "n_valid": int(valid.sum()),
        "sign_right": bool((det_flux > 0) == positive), "sign_right_centre": bool((flux > 0) == positive),
        "sign_right_aperture": bool((net > 0) == positive),
        "centre_flux": flux, "centre_flux_err": flux_err, "centre_snr": flux / flux_err if flux_err > 0 else None,
        "detection_offset_px": [round(det_y - cy, 2), round(det_x - cx, 2)], "detection_flux": det_flux,
        "detection_snr": det_flux / det_err if det_err > 0 else None, "aperture_net_flux": net,
        # ZTF's difference flux over the reference source's under it (a star's fractional change), if one is near
        "ztf_change_over_static": _change_over_static(a.meta),
        "ztf_subpixel_offset": None if sub is None else [round(sub[0], 2), round(sub[1], 2)],
        "flux_at_ztf_position": at_ztf,
        "sign_right_at_ztf_position": None if at_ztf is None else bool((at_ztf > 0) == positive),
        "ztf_centre_5x5_sum": float(np.nansum(ztf[iy - 2:iy + 3, ix - 2:ix + 3])),
        "flux_ratio": float(diff.flux_ratio),
        "psf_science": res.psf_science_source, "psf_reference": res.psf_reference_source,
    }


def _detection(diff, cy, cx, radius, step=0.05):
    """(y, x, flux, flux_err) where |forced PSF flux / error| on D peaks within ``radius`` px of (cy, cx).

    ZTF's ``isdiffpos`` is the sign of the candidate found on its difference
    image, at the candidate's position; the cutouts are centred on that
    position to the nearest pixel only.  So the sign is read at the
    strongest response near the centre, whichever its sign.
    """
    g = np.arange(-radius, radius + step / 2, step)
    dy, dx = (a.ravel() for a in np.meshgrid(g, g, indexing="ij"))
    keep = np.hypot(dy, dx) <= radius + 1e-9
    ys, xs = cy + dy[keep], cx + dx[keep]
    f, e = diff.flux_at(ys, xs)
    snr = np.abs(f) / np.where(e > 0, e, np.inf)
    k = int(np.argmax(snr))
    return float(ys[k]), float(xs[k]), float(f[k]), float(e[k])


def _positions(rows, min_snr: float = 10.0) -> dict:
    """Does the detection position follow ZTF's own sub-pixel candidate position (a check of the geometry)?

    Over alerts with a detection of |S/N| >= ``min_snr`` and the right sign:
    the median distance of astroray's detection position from ZTF's
    ``(ypos, xpos)`` within the centre pixel (as is, and with the stamp's y
    axis flipped), and from the stamp centre.
    """
    use = [r for r in rows if r["ztf_subpixel_offset"] is not None and r["sign_right"]
           and r["detection_snr"] is not None and abs(r["detection_snr"]) >= min_snr]
    if not use:
        return {}
    det = np.array([r["detection_offset_px"] for r in use], np.float64)
    ztf = np.array([r["ztf_subpixel_offset"] for r in use], np.float64)
    flip = ztf * [-1.0, 1.0]
    med = lambda d: round(float(np.median(np.hypot(*d.T))), 3)
    right_at = [r["sign_right_at_ztf_position"] for r in rows if r["sign_right_at_ztf_position"] is not None]
    return {"n": len(use), "min_abs_snr": min_snr, "median_px_from_ztf_position": med(det - ztf),
            "median_px_from_ztf_position_y_flipped": med(det - flip), "median_px_from_stamp_centre": med(det),
            "median_px_ztf_position_from_stamp_centre": med(ztf),
            "sign_right_fraction_at_ztf_position": round(float(np.mean(right_at)), 4) if right_at else None,
            "n_sign_wrong_at_ztf_position": int(len(right_at) - np.sum(right_at))}


def _stats(rows, n_quarantined: int = 0) -> dict:
    """Medians and 10th percentiles; quarantined alerts (if counted) as r = 0 and a wrong sign."""
    if not rows:
        return {}
    pad = np.zeros(n_quarantined)
    r_away = np.concatenate([np.nan_to_num([r["r_away"] for r in rows], nan=0.0), pad])
    r_all = np.concatenate([np.nan_to_num([r["r_all"] for r in rows], nan=0.0), pad])
    sign = np.concatenate([[r["sign_right"] for r in rows], pad.astype(bool)])
    sign_ap = np.concatenate([[r["sign_right_aperture"] for r in rows], pad.astype(bool)])
    sign_c = np.concatenate([[r["sign_right_centre"] for r in rows], pad.astype(bool)])
    return {"n": len(sign), "r_away_median": round(float(np.median(r_away)), 4),
            "r_away_p10": round(float(np.percentile(r_away, 10)), 4),
            "r_all_median": round(float(np.median(r_all)), 4), "r_all_p10": round(float(np.percentile(r_all, 10)), 4),
            "sign_right_fraction": round(float(sign.mean()), 4), "n_sign_wrong": int((~sign).sum()),
            "sign_right_fraction_stamp_centre": round(float(sign_c.mean()), 4),
            "n_sign_wrong_stamp_centre": int((~sign_c).sum()),
            "sign_right_fraction_aperture": round(float(sign_ap.mean()), 4),
            "n_sign_wrong_aperture": int((~sign_ap).sum())}


def _count(items):
    out = {}
    for it in items:
        out[it] = out.get(it, 0) + 1
    return out


if __name__ == "__main__":
    main()
