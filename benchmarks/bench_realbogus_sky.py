"""Real/bogus on the real sky: every real ZTF and Rubin alert in the shared data, scored by the champion U-Net.

    ASTRORAY_HOME=/work/data/rbhome python benchmarks/bench_realbogus_sky.py \\
        --alerts /work/shared/data/alerts --out benchmarks/results/realbogus_sky.json

The alerts (``/work/shared/data/alerts``, see its README): the ZTF Avro
packets (``ztf/avro``), Fink's real ZTF alerts (``fink/alerts.parquet``,
``fink/datatest``), the raw ZTF alerts of ``fink_broker/online`` and the real
Rubin LSSTCam alerts (``fink/hostless_detection``); simulated alerts
(ELAsTiCC, ``or4_lsst7.1``, the schema's fake samples) are left out.  Each is
read with :func:`astroray.io.read_alerts`, duplicates (one alert id in two
files) counted once.

Input: the alert's own cutouts, science, template (our "reference") and
difference, which is what the model reads (its config's ``channels``; an
alert has no S_corr).  A cutout that is not 63x63 (one ZTF alert at a CCD edge
is 63x62; Rubin's are 30x30) is placed centred on a 63x63 canvas of NaN: the
model treats NaN as missing pixels (its normalisation ignores them, and its
validity channel marks them), as it does for blanked pixels in training.
ZTF cuts the difference stamp of a negative candidate (``isdiffpos`` 'f')
from the inverted difference, where it is positive (checked: the centre of
every such cutout here is positive); the model reads differences as science
minus reference, as the pipeline makes them, so those stamps are negated.
The scores come from :class:`astroray.models.scoring.StampScorer`
(``--model-uri``, default ``models:/astroray-realbogus@champion``) with the
threshold logged with the model: the one at 1% false positives on the
simulated validation split, never tuned here.

Reported for ZTF with ZTF's deep real/bogus ``drb`` as the label (>= 0.5
real): the fraction of ``drb >= 0.5`` alerts scored real (issue 14's target
>= 95%), ROC AUC (>= 0.90), the same for ZTF's older ``rb`` (trained by ZTF
on its real detections) at cuts 0.5 and 0.65 as a reference point, and the
scores of the Rubin alerts beside their ``reliability``.  A PNG shows the
scores against ``drb`` and example stamps of agreements and disagreements.

Label-free domain statistics (``domain_statistics``: crowding, centre S/N
and the difference core's sharpness) of the real ZTF cutouts, and with
``--compare-stamps DIR ...`` of training stamp folders beside them: what the
simulator is matched to ZTF by, without reading ``drb``.
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

REAL_SETS = ("ztf/avro/*.avro", "fink/alerts.parquet", "fink/datatest/*.parquet",
             "fink_broker/online/*/*/*.parquet", "fink/hostless_detection/*.parquet")


def read_real_alerts(root: Path) -> tuple[list, dict]:
    from astroray.io import read_alerts

    alerts, seen, per_file = [], set(), {}
    for pattern in REAL_SETS:
        for path in sorted(root.glob(pattern)):
            got = read_alerts(path)
            new = [a for a in got if (a.survey, a.alert_id) not in seen]
            seen.update((a.survey, a.alert_id) for a in new)
            per_file[str(path.relative_to(root))] = {"read": len(got), "new": len(new)}
            alerts.extend(new)
    return alerts, per_file


def _on_canvas(cutout, size: int) -> np.ndarray:
    """A cutout centred on a ``size`` x ``size`` NaN canvas (cropped centred if larger); None -> all NaN."""
    canvas = np.full((size, size), np.nan, np.float32)
    if cutout is None:
        return canvas
    img = np.asarray(cutout, np.float32)
    h, w = img.shape
    ys, xs = max((h - size) // 2, 0), max((w - size) // 2, 0)
    img = img[ys:ys + size, xs:xs + size]
    h, w = img.shape
    oy, ox = (size - h) // 2, (size - w) // 2
    canvas[oy:oy + h, ox:ox + w] = img
    return canvas


def ztf_cutout_is_flipped(alert) -> bool:
    """True for a ZTF alert on a negative difference, whose difference stamp ZTF cut from the inverted image."""
    from astroray.models.scoring import difference_cutout_sign

    return difference_cutout_sign(alert) < 0


def alert_stamps(alerts, size: int = 63) -> dict:
    """Science, reference (template) and difference on ``size`` px canvases, the difference as science - reference
    (the pipeline's convention, which the model was trained on): ZTF's inverted negative stamps are turned back."""
    flip = np.array([-1.0 if ztf_cutout_is_flipped(a) else 1.0 for a in alerts], np.float32)
    return {"science": np.stack([_on_canvas(a.cutout_science, size) for a in alerts]),
            "reference": np.stack([_on_canvas(a.cutout_reference, size) for a in alerts]),
            "difference": np.stack([_on_canvas(a.cutout_difference, size) for a in alerts]) * flip[:, None, None]}


def domain_statistics(stamps: dict) -> dict:
    """Label-free statistics of stamps (channel -> ``(n, S, S)``) for comparing simulated and real cutouts.

    Per channel, in units of each stamp's robust scatter (1.4826 MAD about
    the median, as the model's normalisation): the median over stamps of the
    fraction of pixels above 5 sigma (crowding), and percentiles (10/50/90) of
    the centre 5x5's maximum.  For the difference, orientated so the centre
    is positive: the core's sharpness, the peak over the sum of the 3x3
    around it, where the centre reaches 8 sigma (about 0.20 for a 2 px FWHM
    Moffat, 0.28 for 1.4 px, 0.15 for 3.2 px).  No label is read.
    """
    from astroray.models.classical import _robust_sigma
    from astroray.models.realbogus import BLANK_LIMIT

    out = {}
    for name in ("science", "reference", "difference"):
        a = np.asarray(stamps[name], np.float32)
        c = a.shape[-1] // 2
        centre5, centre9 = (slice(c - 2, c + 3),) * 2, (slice(c - 4, c + 5),) * 2
        a = np.where(np.abs(a) < BLANK_LIMIT, a, np.nan)  # blanks (ZTF fills masked cutout pixels with -3.4e38)
        med, mad = _robust_sigma(a[:, ::3, ::3])  # from every third pixel, as the model's normalisation
        z = (a - med[:, None, None]) / mad[:, None, None]
        if name == "difference":
            z = z * np.where(np.nansum(z[(slice(None),) + centre5], axis=(1, 2)) < 0, -1.0, 1.0)[:, None, None]
        with np.errstate(invalid="ignore"):
            centre = np.nanmax(z[(slice(None),) + centre5].reshape(len(a), -1), axis=1)
            stats = {"fraction_above_5sigma": float(np.nanmedian(np.nanmean(z > 5, axis=(1, 2)))),
                     "centre_max_sigma_p10_50_90": np.round(np.nanpercentile(centre, [10, 50, 90]), 1).tolist()}
        if name == "difference":
            sharp = []
            for zi in z[centre >= 8]:
                core = zi[centre9]
                cy, cx = np.unravel_index(np.nanargmax(core), core.shape)
                box = core[max(cy - 1, 0):cy + 2, max(cx - 1, 0):cx + 2]
                if np.isfinite(box).all():
                    sharp.append(core[cy, cx] / np.clip(box, 0, None).sum())
            stats["core_sharpness_p10_50_90"] = (np.round(np.percentile(sharp, [10, 50, 90]), 3).tolist()
                                                 if sharp else None)
        out[name] = stats
    out["n"] = int(len(stamps["difference"]))
    return out


def training_stamps(folder: Path, *, split: str = "train", limit: int = 4000) -> dict:
    """Up to ``limit`` stamps of a ``jobs/make_stamps.py`` folder's split (files in order), channel -> array."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from astroray.datasets.stamps import stamp_arrays

    tables, n = [], 0
    for path in sorted((folder / f"split={split}").glob("*.parquet")):
        tables.append(pq.read_table(path, columns=["science", "reference", "difference", "stamp_size"]))
        n += tables[-1].num_rows
        if n >= limit:
            break
    if not tables:
        raise SystemExit(f"no stamps in {folder / f'split={split}'}: pass a folder made by jobs/make_stamps.py")
    return stamp_arrays(pa.concat_tables(tables).slice(0, limit), names=("science", "reference", "difference"))


def _rate_summary(scores, real, labels) -> dict:
    from astroray.eval import roc_auc

    labels = np.asarray(labels, bool)
    ok = np.isfinite(scores)
    out = {"n": len(labels), "n_drb_real": int(labels.sum()), "n_drb_bogus": int((~labels).sum()),
           "n_nan_scores": int((~ok).sum()),
           "fraction_drb_real_scored_real": float(real[labels].mean()) if labels.any() else None,
           "fraction_drb_bogus_scored_real": float(real[~labels].mean()) if (~labels).any() else None}
    if labels[ok].any() and (~labels[ok]).any():
        out["roc_auc_vs_drb"] = float(roc_auc(labels[ok], scores[ok]))
    return out


def plot(path: Path, scores, drb, stamps, threshold: float, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real = drb >= 0.5
    called = scores >= threshold
    groups = [("agree: real", real & called), ("agree: bogus", ~real & ~called),
              ("drb real, U-Net bogus", real & ~called), ("drb bogus, U-Net real", ~real & called)]
    n_ex = 3
    fig = plt.figure(figsize=(15, 4 + 1.3 * n_ex))
    grid = fig.add_gridspec(1 + n_ex, 12, height_ratios=[3] + [1] * n_ex, hspace=0.5, wspace=0.1)
    ax = fig.add_subplot(grid[0, :6])
    ax.scatter(drb[real], scores[real], s=12, c="tab:blue", label="drb >= 0.5")
    ax.scatter(drb[~real], scores[~real], s=12, c="tab:red", label="drb < 0.5")
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3f} (1% FPR, sim. val)")
    ax.axvline(0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("ZTF drb")
    ax.set_ylabel("U-Net real probability")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    ax2 = fig.add_subplot(grid[0, 7:])
    bins = np.linspace(0, 1, 21)
    ax2.hist(scores[real], bins=bins, alpha=0.6, label="drb >= 0.5", color="tab:blue")
    ax2.hist(scores[~real], bins=bins, alpha=0.6, label="drb < 0.5", color="tab:red")
    ax2.axvline(threshold, color="k", ls="--", lw=1)
    ax2.set_xlabel("U-Net real probability")
    ax2.set_yscale("log")
    ax2.legend(fontsize=7)
    for g, (name, sel) in enumerate(groups):
        idx = np.flatnonzero(sel)
        # the most confident agreements, the worst disagreements
        order = idx[np.argsort(-np.abs(scores[idx] - threshold))][:n_ex]
        for r in range(n_ex):
            for c, channel in enumerate(("science", "reference", "difference")):
                axs = fig.add_subplot(grid[1 + r, 3 * g + c])
                axs.set_xticks([])
                axs.set_yticks([])
                if r == 0 and c == 1:
                    axs.set_title(f"{name} ({len(idx)})", fontsize=8)
                if r >= len(order):
                    axs.axis("off")
                    continue
                img = stamps[channel][order[r]]
                finite = img[np.isfinite(img)]
                if finite.size:
                    lo, hi = np.percentile(finite, [1, 99.5])
                    if channel == "difference":
                        m = max(abs(lo), abs(hi))
                        axs.imshow(img, cmap="RdBu_r", vmin=-m, vmax=m, origin="lower")
                    else:
                        axs.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower")
                if c == 0:
                    axs.set_ylabel(f"{scores[order[r]]:.2f}/{drb[order[r]]:.2f}", fontsize=7)
    fig.text(0.01, 0.01, "example rows: science, template, difference; label: U-Net score / drb", fontsize=7)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", default="/work/shared/data/alerts")
    parser.add_argument("--model-uri", default="models:/astroray-realbogus@champion")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/realbogus_sky.json")
    parser.add_argument("--png", default=None, help="default: the JSON's path with .png")
    parser.add_argument("--compare-stamps", nargs="*", default=[], metavar="DIR",
                        help="stamp folders (jobs/make_stamps.py) whose train split's label-free statistics "
                             "(crowding, centre S/N, core sharpness) are reported beside the real ZTF cutouts'")
    args = parser.parse_args(argv)

    from astroray.models.scoring import StampScorer

    t0 = time.perf_counter()
    alerts, per_file = read_real_alerts(Path(args.alerts))
    scorer = StampScorer({"model_uri": args.model_uri, "tracking_uri": args.tracking_uri, "threads": args.threads})
    size = int(getattr(scorer.model.config, "stamp_size", 63))
    stamps = alert_stamps(alerts, size)
    result = scorer.run(stamps)
    scores, real = result.scores, result.real
    surveys = np.array([a.survey for a in alerts])
    drb = np.array([a.scores.get("drb", np.nan) for a in alerts], np.float64)
    rb = np.array([a.scores.get("rb", np.nan) for a in alerts], np.float64)
    shapes = {}
    for a in alerts:
        key = f"{a.survey}:{'x'.join(map(str, np.shape(a.cutout_difference)))}"
        shapes[key] = shapes.get(key, 0) + 1
    out = {"n_ztf_difference_stamps_negated": int(sum(ztf_cutout_is_flipped(a) for a in alerts)),
           "model": result.model, "threshold": result.threshold, "channels": list(scorer.channels),
           "n_alerts": len(alerts), "by_survey": {s: int((surveys == s).sum()) for s in np.unique(surveys)},
           "cutout_shapes": shapes, "files": per_file, "seconds": None}
    ztf = (surveys == "ztf") & np.isfinite(drb)
    out["ztf_vs_drb"] = _rate_summary(scores[ztf], real[ztf], drb[ztf] >= 0.5)
    out["ztf_without_drb"] = int(((surveys == "ztf") & ~np.isfinite(drb)).sum())
    from astroray.eval import roc_auc

    ok = ztf & np.isfinite(rb)
    out["ztf_rb_auc_vs_drb"] = float(roc_auc(drb[ok] >= 0.5, rb[ok]))
    # ZTF's older model, trained by ZTF on its real detections, at two cuts brokers use: how far two of its models agree
    out["ztf_rb_vs_drb"] = {f"rb>={cut}": _rate_summary(rb[ok], rb[ok] >= cut, drb[ok] >= 0.5) for cut in (0.5, 0.65)}
    lsst = surveys == "lsst"
    if lsst.any():
        rel = np.array([a.scores.get("reliability", np.nan) for a in alerts], np.float64)[lsst]
        out["lsst"] = {"n": int(lsst.sum()), "scored_real": int(real[lsst].sum()),
                       "n_nan_scores": int(np.isnan(scores[lsst]).sum()),
                       "median_score": float(np.nanmedian(scores[lsst])),
                       "reliability_median": float(np.nanmedian(rel)) if np.isfinite(rel).any() else None,
                       "spearman_vs_reliability": _spearman(scores[lsst], rel)}
    ztf_all = surveys == "ztf"  # label-free: every ZTF alert, with or without drb
    out["domain_statistics"] = {"ztf_alert_cutouts": domain_statistics({k: v[ztf_all] for k, v in stamps.items()})}
    for folder in args.compare_stamps:
        out["domain_statistics"][str(folder)] = domain_statistics(training_stamps(Path(folder)))
    out["per_alert"] = [{"survey": a.survey, "alert_id": a.alert_id, "object_id": a.object_id,
                         "score": None if not np.isfinite(s) else round(float(s), 5), "real": bool(r),
                         "drb": None if not np.isfinite(d) else float(d)}
                        for a, s, r, d in zip(alerts, scores, real, drb)]
    png = Path(args.png or Path(args.out).with_suffix(".png"))
    png.parent.mkdir(parents=True, exist_ok=True)
    sel = np.flatnonzero(ztf)
    plot(png, scores[sel], drb[sel], {k: v[sel] for k, v in stamps.items()}, result.threshold,
         f"{len(sel)} real ZTF alerts; {out['ztf_vs_drb']['fraction_drb_real_scored_real']:.1%} of drb>=0.5 scored "
         f"real, AUC {out['ztf_vs_drb'].get('roc_auc_vs_drb', float('nan')):.3f}")
    out["png"] = str(png)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["load_average"] = [round(v, 2) for v in os.getloadavg()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps({k: v for k, v in out.items() if k not in ("per_alert", "files")}, indent=1, default=str))
    return 0


def _spearman(a, b):
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return None
    ra = np.argsort(np.argsort(a[ok])).astype(float)
    rb = np.argsort(np.argsort(b[ok])).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


if __name__ == "__main__":
    raise SystemExit(main())
