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
  scoring), measured two ways: the forced PSF flux on D at the stamp centre
  (where ZTF centres its candidate), and the net flux of D within two FWHM of
  D's PSF around the centre.  For a few-percent change of a bright star the
  two differ: any PSF mismatch leaves a core-and-ring residual of zero net
  flux that a PSF fit weighs by its core, while the aperture sums it away.

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
        "worst_r_away": sorted(rows, key=lambda r: np.nan_to_num(r["r_away"], nan=-2))[:8],
        "seconds": round(seconds, 1), "ms_per_alert": round(1e3 * seconds / max(len(alerts), 1), 1),
    }
    out = Path(args.out or Path(__file__).parent / "results" / "ztf_difference.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "worst_r_away"}, indent=2, default=str))
    return result


def _score(a, diff, res, ztf, sci, ref, positive, path, args) -> dict:
    from astroray.imaging.psf import psf_shape

    D = np.asarray(diff.difference, np.float64)
    valid = np.isfinite(ztf) & np.isfinite(sci) & np.isfinite(ref) & (np.asarray(diff.mask) == 0) & np.isfinite(D)
    static = _static_mask(res.reference.image.astype(np.float64), res.reference.variance.astype(np.float64),
                          res.reference.psf, args.static_snr, args.static_grow)
    away = valid & ~static
    h, w = D.shape
    flux = float(diff.flux_at((h - 1) / 2, (w - 1) / 2)[0][0])
    yy, xx = np.mgrid[0:h, 0:w]
    aperture = (np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) <= 2.0 * psf_shape(diff.psf)["fwhm"]) & np.isfinite(D)
    net = float(D[aperture].sum())
    return {
        "alert_id": a.alert_id, "file": Path(path).name, "isdiffpos": "t" if positive else "f",
        "r_away": _pearson(D[away], ztf[away]) if away.sum() > 10 else float("nan"),
        "r_all": _pearson(D[valid], ztf[valid]), "n_away": int(away.sum()), "n_valid": int(valid.sum()),
        "sign_right": bool((flux > 0) == positive), "sign_right_aperture": bool((net > 0) == positive),
        "flux_ratio": float(diff.flux_ratio),
        "psf_science": res.psf_science_source, "psf_reference": res.psf_reference_source,
    }


def _stats(rows, n_quarantined: int = 0) -> dict:
    """Medians and 10th percentiles; quarantined alerts (if counted) as r = 0 and a wrong sign."""
    if not rows:
        return {}
    pad = np.zeros(n_quarantined)
    r_away = np.concatenate([np.nan_to_num([r["r_away"] for r in rows], nan=0.0), pad])
    r_all = np.concatenate([np.nan_to_num([r["r_all"] for r in rows], nan=0.0), pad])
    sign = np.concatenate([[r["sign_right"] for r in rows], pad.astype(bool)])
    sign_ap = np.concatenate([[r["sign_right_aperture"] for r in rows], pad.astype(bool)])
    return {"n": int(len(sign)), "r_away_median": round(float(np.median(r_away)), 4),
            "r_away_p10": round(float(np.percentile(r_away, 10)), 4),
            "r_all_median": round(float(np.median(r_all)), 4), "r_all_p10": round(float(np.percentile(r_all, 10)), 4),
            "sign_right_fraction": round(float(sign.mean()), 4), "n_sign_wrong": int((~sign).sum()),
            "sign_right_fraction_aperture": round(float(sign_ap.mean()), 4),
            "n_sign_wrong_aperture": int((~sign_ap).sum())}


def _count(items):
    out = {}
    for it in items:
        out[it] = out.get(it, 0) + 1
    return out


if __name__ == "__main__":
    main()
