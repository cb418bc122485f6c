"""Evaluation figures as PNG files: what a person looks at beside the numbers (and MLflow logs as artifacts).

Every function draws on matplotlib's Agg canvas through
:class:`matplotlib.figure.Figure` (no pyplot state, no display, safe in worker
threads), writes one PNG to ``path`` (parent folders made) and returns the
path.  Inputs are validated as in :mod:`astroray.eval.metrics`; bad input
raises :class:`~astroray.errors.InvalidInputError`.

* :func:`plot_roc` -- ROC curves with the operating point at a target FPR, linear and log-FPR.
* :func:`plot_confusion_matrix` -- counts and row-normalised, class names on the axes.
* :func:`plot_reliability` -- reliability diagram, before/after calibration, ECE in the legend.
* :func:`plot_metric_vs_covariate` -- a :class:`~astroray.eval.metrics.BinnedMetric` with counts per bin.
* :func:`plot_stamp_gallery` -- rows of science/reference/difference[/score] stamps with labels and scores.
* :func:`plot_score_histograms` -- score distributions per class, with the threshold.
* :func:`plot_lightcurves` -- multi-band light curves, detections and upper limits (anomaly top lists).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from astroray.errors import InvalidInputError
from astroray.eval._validate import (
    as_1d,
    binary_labels,
    finite_scores,
    label_array,
    require_both_classes,
    same_length,
)
from astroray.eval.calibration import reliability_diagram
from astroray.eval.metrics import BinnedMetric, _roc, confusion_matrix, operating_point_at_fpr

__all__ = [
    "plot_roc",
    "plot_confusion_matrix",
    "plot_reliability",
    "plot_metric_vs_covariate",
    "plot_stamp_gallery",
    "plot_score_histograms",
    "plot_lightcurves",
]

_BAND_COLOURS = {"u": "#7b1fa2", "g": "#2e7d32", "r": "#c62828", "i": "#ef6c00", "z": "#5d4037", "y": "#212121"}
_DIVERGING_CHANNELS = ("diff", "score", "corr", "s_corr")
_DPI = 110


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise InvalidInputError(f"plots are written as PNG: give a path ending in .png, got {str(path)!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=_DPI)
    return out


def _named(values: Any, default_name: str) -> dict[str, Any]:
    """An array or a mapping of name -> array as a non-empty dict."""
    if isinstance(values, Mapping):
        if not values:
            raise InvalidInputError("the mapping of curves is empty: give at least one")
        return {str(k): v for k, v in values.items()}
    return {default_name: values}


# --------------------------------------------------------------------------- ROC


def plot_roc(y_true: Any, scores: Any, path: str | os.PathLike, *, target_fpr: float = 0.01,
             title: str = "ROC curve") -> Path:
    """ROC curves, full (linear) and zoomed on low false-positive rates (log), with the operating point marked.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
    scores : array-like of float, shape (n,), or mapping of str to such arrays
        One model's scores, or several models by name (drawn together).
    path : path-like
        PNG to write.
    target_fpr : float, keyword-only
        Marks :func:`~astroray.eval.metrics.operating_point_at_fpr` on each curve, with its FNR.
    title : str, keyword-only

    Returns
    -------
    Path
    """
    y = binary_labels(y_true, "y_true")
    require_both_classes(y, what="a ROC curve")
    curves = {}
    for name, s in _named(scores, "model").items():
        sc = finite_scores(s, f"scores[{name!r}]" if isinstance(scores, Mapping) else "scores")
        same_length(y_true=y, scores=sc)
        curves[name] = (_roc(y, sc), operating_point_at_fpr(y, sc, target_fpr=target_fpr))
    fig = _figure(12, 5.2)
    ax_lin, ax_log = fig.subplots(1, 2)
    n_neg = next(iter(curves.values()))[0].n_negative
    floor = 0.5 / n_neg  # the log axis starts below the smallest non-zero FPR
    for i, (name, (curve, op)) in enumerate(curves.items()):
        colour = f"C{i}"
        label = f"{name} (AUC {curve.auc:.4f})"
        ax_lin.plot(curve.fpr, curve.tpr, color=colour, lw=1.6, label=label)
        ax_log.plot(np.maximum(curve.fpr, floor), curve.tpr, color=colour, lw=1.6, drawstyle="steps-post")
        for ax in (ax_lin, ax_log):
            ax.plot(max(op.fpr, floor), op.recall, "o", color=colour, ms=7, mec="k")
        ax_log.annotate(f"FPR {100 * op.fpr:.2g}%: FNR {100 * op.fnr:.2g}%\nthreshold {op.threshold:.3g}",
                        (max(op.fpr, floor), op.recall), xytext=(8, -28 - 26 * i), textcoords="offset points",
                        fontsize=8, color=colour, arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.8})
    ax_lin.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1, label="chance")
    ax_lin.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-positive rate (negatives called positive)",
               ylabel="true-positive rate (positives kept)", title="full curve")
    ax_lin.legend(loc="lower right", fontsize=9)
    ax_log.axvline(target_fpr, ls="--", color="0.4", lw=1, label=f"target FPR {100 * target_fpr:.3g}%")
    ax_log.set_xscale("log")
    ax_log.set(xlim=(floor, 1), xlabel="false-positive rate (log scale)", ylabel="true-positive rate",
               title="low false-positive rates")
    ax_log.legend(loc="lower right", fontsize=9)
    for ax in (ax_lin, ax_log):
        ax.grid(alpha=0.3)
    first = next(iter(curves.values()))[0]
    fig.suptitle(f"{title} ({first.n_positive} positives, {first.n_negative} negatives)")
    return _save(fig, path)


# --------------------------------------------------------------------------- confusion matrix


def plot_confusion_matrix(y_true: Any, y_pred: Any, path: str | os.PathLike, *, labels: Sequence | None = None,
                          title: str = "Confusion matrix") -> Path:
    """Confusion matrix as counts and as row-normalised fractions, side by side, class names on the axes.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n,)
        Class labels (ints or strings).
    path : path-like
    labels : sequence, keyword-only
        Class order (as :func:`~astroray.eval.metrics.confusion_matrix`); these are the tick labels.
    title : str, keyword-only

    Returns
    -------
    Path
    """
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    k = len(matrix.labels)
    names = [str(x) for x in matrix.labels]
    side = max(4.5, 0.45 * k + 2.5)
    fig = _figure(2 * side + 1.5, side + 0.6)
    axes = fig.subplots(1, 2)
    fontsize = max(5, min(10, int(120 / max(k, 1))))
    panels = ((matrix.counts, "counts", "Blues", None), (matrix.normalized, "fraction of each true class", "Blues",
                                                          (0.0, 1.0)))
    for ax, (values, name, cmap, limits) in zip(axes, panels):
        shown = np.ma.masked_invalid(values.astype(np.float64))
        vmin, vmax = limits if limits else (0.0, max(float(values.max()), 1.0))
        image = ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.8, label=name)
        for r in range(k):
            for c in range(k):
                v = values[r, c]
                if not np.isfinite(v) or (name == "counts" and v == 0):
                    continue
                text = f"{int(v)}" if name == "counts" else f"{v:.2f}"
                ax.text(c, r, text, ha="center", va="center", fontsize=fontsize,
                        color="white" if (v - vmin) / (vmax - vmin) > 0.6 else "black")
        ax.set_xticks(range(k), names, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center",
                      fontsize=fontsize + 1)
        ax.set_yticks(range(k), names, fontsize=fontsize + 1)
        ax.set(xlabel="predicted class", ylabel="true class", title=name)
    fig.suptitle(f"{title} ({int(matrix.counts.sum())} examples)")
    return _save(fig, path)


# --------------------------------------------------------------------------- reliability


def plot_reliability(y_true: Any, probs: Any, path: str | os.PathLike, *, n_bins: int = 15,
                     title: str = "Reliability diagram") -> Path:
    """Reliability diagram: observed accuracy against confidence per bin, ECE in the legend, counts below.

    Parameters
    ----------
    y_true : array-like, shape (n,)
        0/1 for 1-D probabilities, class indices for 2-D ones.
    probs : array-like, shape (n,) or (n, k), or mapping of str to such arrays
        E.g. ``{"uncalibrated": p, "temperature scaled": p_t, "isotonic": p_i}``,
        all on one figure.
    path : path-like
    n_bins : int, keyword-only
    title : str, keyword-only

    Returns
    -------
    Path
    """
    diagrams = {name: reliability_diagram(y_true, p, n_bins=n_bins) for name, p in _named(probs, "model").items()}
    fig = _figure(7, 7.5)
    ax, ax_n = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    ax.plot([0, 1], [0, 1], ls=":", color="0.4", lw=1, label="perfect calibration")
    width = 1.0 / n_bins
    for i, (name, d) in enumerate(diagrams.items()):
        filled = d.counts > 0
        ax.plot(d.confidence[filled], d.accuracy[filled], "o-", color=f"C{i}", ms=5, lw=1.4,
                label=f"{name} (ECE {d.ece:.4f})")
        offset = (i - (len(diagrams) - 1) / 2) * width / (len(diagrams) + 1)
        ax_n.bar(d.edges[:-1] + width / 2 + offset, d.counts, width=width / (len(diagrams) + 1), color=f"C{i}")
    kind = next(iter(diagrams.values())).kind
    ylabel = "fraction of positives" if kind == "binary" else "accuracy of the top class"
    xlabel = "predicted P(positive)" if kind == "binary" else "confidence (top-class probability)"
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel=ylabel, title=f"{title} ({kind}, {n_bins} bins)")
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(alpha=0.3)
    ax_n.set_yscale("log")
    ax_n.set(xlabel=xlabel, ylabel="examples per bin")
    ax_n.grid(alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------- metric against covariate


def plot_metric_vs_covariate(binned: BinnedMetric | Mapping[str, BinnedMetric], path: str | os.PathLike, *,
                             xlabel: str, ylabel: str | None = None, title: str | None = None) -> Path:
    """A metric per covariate bin (points with the bin width), with the number of examples per bin below.

    Parameters
    ----------
    binned : BinnedMetric or mapping of str to BinnedMetric
        From :func:`~astroray.eval.metrics.metric_by_bin`; several (e.g. two
        models) are drawn together.
    path : path-like
    xlabel : str, keyword-only
        The covariate with its unit, e.g. ``"days since first detection [d]"``.
    ylabel : str, keyword-only
        Default the metric's name.
    title : str, keyword-only

    Returns
    -------
    Path
    """
    series = _named(binned, "model")
    for name, b in series.items():
        if not isinstance(b, BinnedMetric):
            raise InvalidInputError(f"{name!r} is a {type(b).__name__}, not a BinnedMetric from metric_by_bin")
    first = next(iter(series.values()))
    fig = _figure(8, 6.5)
    ax, ax_n = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    for i, (name, b) in enumerate(series.items()):
        half = 0.5 * np.diff(b.edges)
        ok = np.isfinite(b.values)
        ax.errorbar(b.centers[ok], b.values[ok], xerr=half[ok], fmt="o-", color=f"C{i}", ms=5, lw=1.3, capsize=0,
                    label=name if len(series) > 1 else None)
        ax_n.bar(b.centers, b.counts, width=np.diff(b.edges) / len(series), align="center", color=f"C{i}",
                 alpha=0.6)
    ax.set(ylabel=ylabel or first.metric.replace("_", " "),
           title=title or f"{first.metric.replace('_', ' ')} against {xlabel}")
    if len(series) > 1:
        ax.legend(fontsize=9)
    ax.grid(alpha=0.3)
    ax_n.set(xlabel=xlabel, ylabel="examples")
    ax_n.grid(alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------- stamps


def _stamp_array(stamps: Any) -> np.ndarray:
    arr = np.asarray(stamps)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise InvalidInputError(f"stamps must have shape (n, channels, height, width) or (n, height, width), "
                                f"got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0 or arr.shape[3] == 0:
        raise InvalidInputError(f"stamps is empty (shape {arr.shape}): nothing to draw")
    if arr.dtype.kind not in "biuf":
        raise InvalidInputError(f"stamps must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _default_channel_names(n: int) -> list[str]:
    known = ["science", "reference", "difference", "score (S_corr)"]
    return known[:n] if n <= len(known) else [f"channel {i}" for i in range(n)]


def plot_stamp_gallery(stamps: Any, path: str | os.PathLike, *, scores: Any = None, labels: Any = None,
                       indices: Any = None, channel_names: Sequence[str] | None = None, max_rows: int = 16,
                       title: str = "Candidate stamps") -> Path:
    """One row per candidate: its stamps side by side, the label and score above.

    Science and reference stamps use a percentile grey stretch; difference and
    score channels (names containing "diff", "score" or "corr") a symmetric
    red-blue stretch.  NaN pixels are drawn in yellow; an all-NaN stamp says so.

    Parameters
    ----------
    stamps : array-like, shape (n, channels, height, width) or (n, height, width)
    path : path-like
    scores : array-like of float, shape (n,), keyword-only
        Shown in the row titles (NaN shown as "nan").
    labels : array-like, shape (n,), keyword-only
        True labels or kinds, shown in the row titles.
    indices : array-like of int, keyword-only
        Rows to draw, in order (e.g. from :func:`~astroray.eval.metrics.worst_scored`);
        default the first ``max_rows``.
    channel_names : sequence of str, keyword-only
        Column titles; default science, reference, difference, score (S_corr).
    max_rows : int, keyword-only
    title : str, keyword-only

    Returns
    -------
    Path
    """
    arr = _stamp_array(stamps)
    n, n_ch = arr.shape[:2]
    if scores is not None:
        scores = as_1d(scores, "scores")
        if scores.dtype.kind not in "biuf":
            raise InvalidInputError(f"scores must be numeric, got dtype {scores.dtype}")
        scores = scores.astype(np.float64)
        same_length(stamps=arr, scores=scores)
    if labels is not None:
        labels = label_array(labels, "labels")
        same_length(stamps=arr, labels=labels)
    names = list(channel_names) if channel_names is not None else _default_channel_names(n_ch)
    if len(names) != n_ch:
        raise InvalidInputError(f"channel_names has {len(names)} names for {n_ch} channels")
    if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) or max_rows < 1:
        raise InvalidInputError(f"max_rows must be a positive integer, got {max_rows!r}")
    if indices is None:
        rows = np.arange(min(n, max_rows))
    else:
        rows = as_1d(indices, "indices")
        if rows.dtype.kind not in "iu":
            raise InvalidInputError(f"indices must be integers, got dtype {rows.dtype}")
        bad = (rows < 0) | (rows >= n)
        if bad.any():
            raise InvalidInputError(f"indices {rows[bad][:5].tolist()} are outside 0..{n - 1}")
        rows = rows[:max_rows]
    from matplotlib import colormaps

    grey, diverging = (colormaps[name].with_extremes(bad="yellow") for name in ("gray", "RdBu_r"))
    size = 1.9
    fig = _figure(max(size * n_ch + 0.4, 5.0), size * len(rows) + 0.9)  # wide enough for the title
    axes = fig.subplots(len(rows), n_ch, squeeze=False)
    for r, idx in enumerate(rows):
        parts = [f"#{int(idx)}"]
        if labels is not None:
            parts.append(str(labels[idx]))
        if scores is not None:
            parts.append(f"score {scores[idx]:.3f}")
        for c in range(n_ch):
            ax = axes[r, c]
            img = arr[idx, c]
            finite = img[np.isfinite(img)]
            ax.set_xticks([])
            ax.set_yticks([])
            if finite.size == 0:
                ax.set_facecolor("yellow")
                ax.text(0.5, 0.5, "no finite\npixels", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            elif any(key in names[c].lower() for key in _DIVERGING_CHANNELS):
                s = float(np.percentile(np.abs(finite), 99.5)) or 1.0
                ax.imshow(np.ma.masked_invalid(img), origin="lower", cmap=diverging, vmin=-s, vmax=s,
                          interpolation="nearest")
            else:
                lo, hi = np.percentile(finite, [1.0, 99.5])
                ax.imshow(np.ma.masked_invalid(img), origin="lower", cmap=grey, vmin=lo, vmax=max(hi, lo + 1e-6),
                          interpolation="nearest")
            if r == 0:
                ax.set_title(names[c], fontsize=9, fontweight="bold")
            if c == 0:
                ax.set_ylabel("\n".join([" ".join(parts[:2]), *parts[2:]]), fontsize=8)
    fig.suptitle(f"{title} ({len(rows)} of {n}; NaN pixels yellow)", fontsize=11)
    return _save(fig, path)


# --------------------------------------------------------------------------- score histograms


def plot_score_histograms(scores: Any, classes: Any, path: str | os.PathLike, *, threshold: float | None = None,
                          bins: int = 50, log_counts: bool = True, xlabel: str = "score",
                          title: str = "Scores per class") -> Path:
    """Histograms of the scores of each class on shared bins, with the decision threshold.

    Parameters
    ----------
    scores : array-like of float, shape (n,)
    classes : array-like, shape (n,)
        The class or sub-type of each example (``"real"``/``"bogus"``, artifact kinds, 0/1).
    path : path-like
    threshold : float, keyword-only
        Drawn as a vertical line.
    bins : int, keyword-only
    log_counts : bool, keyword-only
        A log count axis, so rare classes stay visible.
    xlabel, title : str, keyword-only

    Returns
    -------
    Path
    """
    s = finite_scores(scores, "scores")
    cls = label_array(classes, "classes")
    same_length(scores=s, classes=cls)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise InvalidInputError(f"bins must be a positive integer, got {bins!r}")
    lo, hi = float(s.min()), float(s.max())
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, int(bins) + 1)
    fig = _figure(8, 5)
    ax = fig.subplots()
    for i, c in enumerate(np.unique(cls).tolist()):
        sel = cls == c
        ax.hist(s[sel], bins=edges, histtype="step", lw=1.6, color=f"C{i % 10}", label=f"{c} ({int(sel.sum())})")
    if threshold is not None:
        ax.axvline(float(threshold), color="k", ls="--", lw=1.2, label=f"threshold {float(threshold):.3g}")
    if log_counts:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel="examples per bin", title=f"{title} ({s.size} examples)")
    ax.legend(fontsize=8, ncol=2 if np.unique(cls).size > 6 else 1)
    ax.grid(alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------- light curves


def plot_lightcurves(lightcurves: Sequence, path: str | os.PathLike, *, titles: Sequence[str] | None = None,
                     ncols: int = 3, max_panels: int = 12, title: str = "Light curves") -> Path:
    """Multi-band light curves, one panel each: flux against time, detections and upper limits.

    Detections are filled circles with 1-sigma error bars; non-detections with
    forced photometry (finite flux) are open circles; upper limits (NaN flux)
    are downward triangles at the 5-sigma limit ``5 * flux_err``.  Time is in
    days since the first detection (since the first point without detections).

    Parameters
    ----------
    lightcurves : sequence of astroray.records.LightCurve
        E.g. an anomaly top list, most anomalous first.
    path : path-like
    titles : sequence of str, keyword-only
        One per light curve (e.g. ``"#1 ZTF21abc anomaly 0.97"``); default the
        object id and label.
    ncols : int, keyword-only
    max_panels : int, keyword-only
        Light curves drawn at most (the first ones).
    title : str, keyword-only

    Returns
    -------
    Path
    """
    from astroray.records import LightCurve

    lcs = list(lightcurves)
    if not lcs:
        raise InvalidInputError("no light curves to plot")
    for i, lc in enumerate(lcs):
        if not isinstance(lc, LightCurve):
            raise InvalidInputError(f"lightcurves[{i}] is a {type(lc).__name__}, not an astroray.records.LightCurve")
    if titles is not None:
        titles = [str(t) for t in titles]
        if len(titles) != len(lcs):
            raise InvalidInputError(f"titles has {len(titles)} entries for {len(lcs)} light curves")
    for name, value in (("ncols", ncols), ("max_panels", max_panels)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    lcs = lcs[:max_panels]
    ncols = min(int(ncols), len(lcs))
    nrows = math.ceil(len(lcs) / ncols)
    fig = _figure(4.6 * ncols, 3.3 * nrows + 1.0)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    bands_seen: set[str] = set()
    for k, ax in enumerate(axes.ravel()):
        if k >= len(lcs):
            ax.set_visible(False)
            continue
        lc = lcs[k]
        ax.set_title(titles[k] if titles is not None else
                     (f"{lc.object_id}" + (f" ({lc.label})" if lc.label else "")), fontsize=9)
        ax.grid(alpha=0.3)
        if len(lc) == 0:
            ax.text(0.5, 0.5, "no points", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        t0 = float(lc.mjd[lc.detected].min()) if lc.detected.any() else float(lc.mjd.min())
        t = lc.mjd - t0
        for band in set(lc.band.tolist()):
            bands_seen.add(band)
            colour = _BAND_COLOURS.get(band, "0.3")
            sel = lc.band == band
            det = sel & lc.detected & np.isfinite(lc.flux)
            forced = sel & ~lc.detected & np.isfinite(lc.flux)
            limit = sel & ~lc.detected & ~np.isfinite(lc.flux) & np.isfinite(lc.flux_err)
            if det.any():
                ax.errorbar(t[det], lc.flux[det], yerr=np.nan_to_num(lc.flux_err[det]), fmt="o", ms=4,
                            color=colour, elinewidth=0.8)
            if forced.any():
                ax.errorbar(t[forced], lc.flux[forced], yerr=np.nan_to_num(lc.flux_err[forced]), fmt="o", ms=4,
                            mfc="none", color=colour, elinewidth=0.6, alpha=0.7)
            if limit.any():
                ax.plot(t[limit], 5.0 * lc.flux_err[limit], "v", ms=5, color=colour, alpha=0.6)
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.set_xlabel(f"days since first detection (MJD {t0:.2f})" if lc.detected.any()
                      else f"days since first point (MJD {t0:.2f})", fontsize=8)
        ax.set_ylabel("flux [nJy]", fontsize=8)
        ax.tick_params(labelsize=7)
    from matplotlib.lines import Line2D

    order = sorted(bands_seen, key=lambda b: ("ugrizy".find(b) % 10, b))
    handles = [Line2D([], [], ls="", marker="s", ms=8, color=_BAND_COLOURS.get(b, "0.3"), label=f"band {b}")
               for b in order]
    handles += [Line2D([], [], ls="", marker="o", color="k", label="detection (1-sigma error)"),
                Line2D([], [], ls="", marker="o", mfc="none", color="k", label="forced photometry, not detected"),
                Line2D([], [], ls="", marker="v", color="k", alpha=0.6, label="5-sigma upper limit")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)

