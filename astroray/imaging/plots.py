"""Plots people look at instead of reading numbers: the difference-imaging overview."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["plot_pair_overview"]


def _limits(img, lo=1.0, hi=99.5):
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        return 0.0, 1.0
    return tuple(np.percentile(finite, [lo, hi]))


def plot_pair_overview(science: np.ndarray, reference: np.ndarray, difference: np.ndarray, path, *,
                       catalog: pd.DataFrame | None = None, truth: pd.DataFrame | None = None,
                       title: str = "") -> Path:
    """Reference, science and difference side by side with detections and truth marked.

    Detections are circles (green: positive change, magenta: negative, orange:
    on a satellite streak); truth is marked with a cross (yellow: real change,
    red: bogus) when given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 6.4), constrained_layout=True)
    panels = (("reference", reference), ("science", science), ("difference", difference))
    for ax, (name, img) in zip(axes, panels):
        lo, hi = _limits(img) if name != "difference" else (-1, 1)
        if name == "difference":
            s = np.nanpercentile(np.abs(img[np.isfinite(img)]), 99) if np.isfinite(img).any() else 1.0
            lo, hi = -s, s
        ax.imshow(img, origin="lower", cmap="gray" if name != "difference" else "RdBu_r", vmin=lo, vmax=hi,
                  interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel("x [px]")
    axes[0].set_ylabel("y [px]")
    ax = axes[2]
    if truth is not None and len(truth):
        real = truth["real"].astype(bool).to_numpy()
        ax.scatter(truth["x"][real], truth["y"][real], marker="x", s=40, c="gold", label="injected real")
        ax.scatter(truth["x"][~real], truth["y"][~real], marker="x", s=40, c="red", label="injected bogus")
    if catalog is not None and len(catalog):
        pos = catalog["sign"].to_numpy() > 0 if "sign" in catalog else np.ones(len(catalog), bool)
        streak = (catalog["on_streak"].fillna(False).to_numpy(bool) if "on_streak" in catalog
                  else np.zeros(len(pos), bool))
        for mask, colour, label in ((pos & ~streak, "lime", "detected (+)"),
                                    (~pos & ~streak, "magenta", "detected (-)"),
                                    (streak, "orange", "on a satellite streak")):
            if mask.any():
                ax.scatter(catalog["x"][mask], catalog["y"][mask], s=160, facecolors="none", edgecolors=colour,
                           linewidths=1.2, label=label)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
