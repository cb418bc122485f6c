"""Galleries of simulated data: image pairs with truth marks, light curves per class, text spans.

Figures are drawn on matplotlib's Agg canvas through :class:`matplotlib.figure.Figure`,
so nothing here touches pyplot's global state or needs a display.
"""
from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from astroray.errors import InvalidInputError

__all__ = ["plot_pair_gallery", "plot_lightcurve_gallery", "spans_to_html", "LABEL_COLOURS"]

_KIND_STYLE = {  # kind -> (colour, marker)
    "transient_on_host": ("#00c853", "o"),
    "transient_hostless": ("#64dd17", "o"),
    "variable_star": ("#00b0ff", "o"),
    "moving_object": ("#18ffff", "o"),
    "cosmic_ray": ("#ff1744", "s"),
    "hot_pixel": ("#ff9100", "s"),
    "bad_column": ("#ffea00", "s"),
    "satellite_streak": ("#d500f9", "D"),
    "dipole": ("#f50057", "D"),
    "saturated_residual": ("#ffffff", "D"),
}
_BAND_COLOURS = {"u": "#7b1fa2", "g": "#2e7d32", "r": "#c62828", "i": "#ef6c00", "z": "#5d4037", "y": "#212121"}
LABEL_COLOURS = {"TRANSIENT": "#ffcc80", "EVENT": "#ef9a9a", "SOURCE": "#90caf9", "FACILITY": "#c5e1a5"}
"""Highlight colour of each entity label in :func:`spans_to_html`."""


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _stretch(image):
    finite = image[np.isfinite(image)]
    lo, hi = np.percentile(finite, [1.0, 99.5]) if finite.size else (0.0, 1.0)
    return lo, max(hi, lo + 1e-6)


def plot_pair_gallery(pairs: Sequence, path: str | os.PathLike, *, max_pairs: int = 4) -> Path:
    """Reference, science and a naive difference per pair, with the truth marked by kind.

    Parameters
    ----------
    pairs : sequence of ImagePair
    path : path-like
        PNG to write.
    max_pairs : int
        Rows drawn at most.

    Returns
    -------
    Path
        The PNG written.
    """
    pairs = list(pairs)[:max_pairs]
    if not pairs:
        raise InvalidInputError("no image pairs to plot")
    fig = _figure(15, 5 * len(pairs))
    axes = fig.subplots(len(pairs), 3, squeeze=False)
    for row, pair in zip(axes, pairs):
        ref, sci = pair.reference, pair.science
        scale = float(pair.meta.get("flux_scale", sci.meta.get("flux_scale", 1.0)))
        # a naive difference (no PSF matching): the sky levels removed, the reference scaled
        diff = (sci.image - sci.meta["sky_level"]) - scale * (ref.image - ref.meta["sky_level"])
        for ax, image, title in zip(row, (ref.image, sci.image, diff),
                                    ("reference", "science", "science - scaled reference")):
            lo, hi = _stretch(image)
            ax.imshow(image, origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(f"{pair.pair_id} {title}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        truth = pair.truth
        ax = row[2]
        for kind, (colour, marker) in _KIND_STYLE.items():
            sel = truth[truth["kind"] == kind]
            if len(sel):
                ax.scatter(sel["x"], sel["y"], s=90, facecolors="none", edgecolors=colour, marker=marker,
                           linewidths=1.2, label=f"{kind} ({len(sel)})")
        ax.legend(loc="upper right", fontsize=6, framealpha=0.6)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def plot_lightcurve_gallery(lightcurves: Sequence, path: str | os.PathLike, *, per_class: int = 3) -> Path:
    """A few light curves of each class: flux per band, non-detections as open markers.

    Parameters
    ----------
    lightcurves : sequence of LightCurve
        Must carry ``label``.
    path : path-like
        PNG to write.
    per_class : int

    Returns
    -------
    Path
    """
    by_class: dict[str, list] = {}
    for lc in lightcurves:
        if lc.label is None:
            continue
        chosen = by_class.setdefault(lc.label, [])
        if len(chosen) < per_class and lc.n_detections > 0:
            chosen.append(lc)
    if not by_class:
        raise InvalidInputError("no labelled light curves with detections to plot")
    classes = sorted(by_class)
    fig = _figure(4.2 * per_class, 2.6 * len(classes))
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    for row, label in zip(axes, classes):
        for col, ax in enumerate(row):
            if col >= len(by_class[label]):
                ax.axis("off")
                continue
            lc = by_class[label][col]
            t0 = lc.mjd.min() if len(lc) else 0.0
            for band in "ugrizy":
                sel = lc.band == band
                if not sel.any():
                    continue
                det = sel & lc.detected
                non = sel & ~lc.detected
                colour = _BAND_COLOURS[band]
                ax.errorbar(lc.mjd[det] - t0, lc.flux[det], lc.flux_err[det], fmt="o", ms=2.5, color=colour,
                            elinewidth=0.6, label=band)
                ylim = np.where(np.isfinite(lc.flux[non]), lc.flux[non], 5.0 * lc.flux_err[non])
                ax.scatter(lc.mjd[non] - t0, ylim, s=6, facecolors="none", edgecolors=colour, linewidths=0.5)
            ax.set_title(f"{label}  {lc.object_id}", fontsize=8)
            ax.tick_params(labelsize=6)
            if col == 0:
                ax.set_ylabel("flux [nJy]", fontsize=7)
            ax.legend(fontsize=5, ncol=6, loc="upper right")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def spans_to_html(documents: Sequence, path: str | os.PathLike | None = None) -> str:
    """Documents as HTML with every entity span highlighted by label (and its convention on hover).

    Parameters
    ----------
    documents : sequence of Document or dict
        With ``text`` and ``entities`` (``start``, ``end``, ``label``, ``convention``).
    path : path-like, optional
        Where to write the page.

    Returns
    -------
    str
        The HTML page.
    """
    legend = " ".join(f'<mark style="background:{c}">{html.escape(lab)}</mark>' for lab, c in LABEL_COLOURS.items())
    blocks = []
    for doc in documents:
        d = doc if isinstance(doc, dict) else doc.to_dict()
        text = d["text"]
        pieces, pos = [], 0
        for ent in sorted(d["entities"], key=lambda e: e["start"]):
            pieces.append(html.escape(text[pos:ent["start"]]))
            colour = LABEL_COLOURS.get(ent["label"], "#e0e0e0")
            pieces.append(f'<mark style="background:{colour}" title="{html.escape(ent["label"])} / '
                          f'{html.escape(str(ent.get("convention", "")))}">{html.escape(text[ent["start"]:ent["end"]])}'
                          f"</mark>")
            pos = ent["end"]
        pieces.append(html.escape(text[pos:]))
        body = "".join(pieces).replace("\n\n", "</p><p>", 1)
        blocks.append(f'<div class="doc"><div class="id">{html.escape(d["doc_id"])} ({html.escape(d["kind"])})</div>'
                      f"<p><b>{body}</p></div>".replace("</p><p>", "</b></p><p>", 1))
    page = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>astroray simulated text</title><style>"
            "body{font-family:sans-serif;max-width:60em;margin:2em auto}.doc{border-bottom:1px solid #ccc;"
            "padding:.5em 0}.id{color:#777;font-size:80%}mark{padding:0 .15em;border-radius:.2em}</style></head>"
            f"<body><h1>Simulated astronomy text</h1><p>{legend}</p>{''.join(blocks)}</body></html>")
    if path is not None:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    return page
