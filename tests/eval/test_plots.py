"""Every plot writes a PNG with real content; bad input gives a clear error instead of an empty figure."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread
from scipy.special import expit, softmax

from astroray.datasets import simulate_lightcurves
from astroray.errors import InvalidInputError
from astroray.eval import (
    TemperatureScaling,
    metric_by_bin,
    plot_confusion_matrix,
    plot_lightcurves,
    plot_metric_vs_covariate,
    plot_reliability,
    plot_roc,
    plot_score_histograms,
    plot_stamp_gallery,
    worst_scored,
)
from astroray.records import LightCurve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _pixels(path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return (imread(path)[..., :3] * 255).round().astype(np.uint8)


def _assert_drawn(path, *, colours=()):
    """More than a titled empty canvas (about 2% non-white pixels, 250 colours), and the given colours present."""
    rgb = _pixels(path)
    assert rgb.shape[0] > 300 and rgb.shape[1] > 300
    non_white = (rgb.min(axis=-1) < 242).mean()
    n_colours = np.unique(rgb.reshape(-1, 3), axis=0).shape[0]
    assert non_white > 0.04 and n_colours > 300, (non_white, n_colours)
    for hex_colour in colours:
        target = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
        assert np.any(np.all(np.abs(rgb.astype(int) - target) <= 3, axis=-1)), hex_colour


@pytest.fixture(scope="module")
def binary():
    rng = np.random.default_rng(0)
    y = rng.random(600) < 0.4
    z = rng.normal(0, 1, 600) + 3 * y
    return y, expit(2 * (z - 1.5)), z


def test_roc(tmp_path, binary):
    y, p, z = binary
    out = plot_roc(y, p, tmp_path / "roc.png", target_fpr=0.01)
    assert out == tmp_path / "roc.png"
    _assert_drawn(out, colours=["#1f77b4"])
    two = plot_roc(y, {"U-Net": p, "ensemble": expit(0.4 * z)}, tmp_path / "sub" / "roc2.png")
    _assert_drawn(two, colours=["#1f77b4", "#ff7f0e"])


def test_confusion_matrix(tmp_path):
    rng = np.random.default_rng(1)
    names = np.array(["SN Ia", "SN II", "SN Ibc", "SLSN", "TDE", "AGN"])
    y = rng.integers(0, 6, 400)
    pred = np.where(rng.random(400) < 0.7, y, rng.integers(0, 6, 400))
    out = plot_confusion_matrix(names[y], names[pred], tmp_path / "cm.png", labels=list(names))
    _assert_drawn(out, colours=["#08306b"])  # the darkest 'Blues' cell: the diagonal


def test_reliability_before_and_after(tmp_path):
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1.2, (800, 4))
    y = (rng.random(800)[:, None] > np.cumsum(softmax(z, axis=1), axis=1)).sum(axis=1)
    calib = TemperatureScaling().fit(3 * z, y)
    out = plot_reliability(y, {"uncalibrated": softmax(3 * z, axis=1), "temperature": calib.transform(3 * z)},
                           tmp_path / "reliability.png", n_bins=10)
    _assert_drawn(out, colours=["#1f77b4", "#ff7f0e"])
    binary = plot_reliability((rng.random(300) < 0.5), rng.random(300), tmp_path / "reliability_binary.png")
    _assert_drawn(binary)


def test_metric_vs_covariate(tmp_path):
    rng = np.random.default_rng(3)
    days = rng.uniform(0, 60, 500)
    y = rng.integers(0, 3, 500)
    pred = np.where(rng.random(500) < 0.3 + days / 100, y, (y + 1) % 3)
    binned = metric_by_bin(days, y, pred, metric="macro_f1", bins=8)
    out = plot_metric_vs_covariate(binned, tmp_path / "f1_vs_days.png", xlabel="days since first detection [d]")
    _assert_drawn(out, colours=["#1f77b4"])
    both = plot_metric_vs_covariate({"transformer": binned, "GBT": metric_by_bin(days, y, y, bins=8)},
                                    tmp_path / "both.png", xlabel="days since first detection [d]")
    _assert_drawn(both, colours=["#ff7f0e"])


def test_stamp_gallery_with_nan_pixels(tmp_path, binary):
    y, p, _ = binary
    rng = np.random.default_rng(4)
    stamps = rng.normal(0, 1, (12, 4, 31, 31)).astype(np.float32)
    yy, xx = np.mgrid[:31, :31]
    stamps += 25 * np.exp(-((xx - 15) ** 2 + (yy - 15) ** 2) / 6.0)
    stamps[2, :, 3:8, 3:6] = np.nan  # masked pixels
    stamps[5, 1] = np.nan  # a reference stamp with no data at all
    worst = worst_scored(y[:12], p[:12], n=6)
    out = plot_stamp_gallery(stamps, tmp_path / "gallery.png", scores=p[:12],
                             labels=np.where(y[:12], "real", "bogus"), indices=np.r_[worst, 2, 5])
    _assert_drawn(out, colours=["#ffff00"])  # NaN pixels drawn in yellow
    single = plot_stamp_gallery(stamps[:, 2], tmp_path / "diff_only.png", channel_names=["difference"], max_rows=3)
    _assert_drawn(single)


def test_score_histograms(tmp_path, binary):
    y, p, _ = binary
    kinds = np.where(y, "real", np.where(np.arange(y.size) % 2, "dipole", "cosmic_ray"))
    out = plot_score_histograms(p, kinds, tmp_path / "hist.png", threshold=0.5, xlabel="real/bogus score")
    _assert_drawn(out, colours=["#1f77b4", "#ff7f0e", "#2ca02c"])


def test_lightcurves_with_detections_forced_photometry_and_limits(tmp_path):
    lcs = simulate_lightcurves(4, seed=3).lightcurves
    lcs.append(LightCurve("limits-only", [59000.0, 59001.0, 59003.0], ["g", "r", "g"], [np.nan, np.nan, 900.0],
                          [200.0, 250.0, 300.0], [False, False, False]))
    lcs.append(LightCurve("empty", [], [], [], [], []))
    titles = [f"#{i + 1} {lc.object_id} anomaly {1 - 0.1 * i:.2f}" for i, lc in enumerate(lcs)]
    out = plot_lightcurves(lcs, tmp_path / "lightcurves.png", titles=titles, ncols=3)
    _assert_drawn(out, colours=["#c62828", "#2e7d32"])  # r and g band colours


@pytest.mark.parametrize(("call", "match"), [
    (lambda d: plot_roc([1, 1, 1], [0.1, 0.2, 0.3], d / "x.png"), "no negative"),
    (lambda d: plot_roc([0, 1], [0.1, np.nan], d / "x.png"), "NaN"),
    (lambda d: plot_roc([0, 1], {}, d / "x.png"), "empty"),
    (lambda d: plot_roc([0, 1], [0.1, 0.9], d / "x.pdf"), "PNG"),
    (lambda d: plot_confusion_matrix([], [], d / "x.png"), "empty"),
    (lambda d: plot_reliability([0, 1], [0.2], d / "x.png"), "one row per example"),
    (lambda d: plot_metric_vs_covariate([0.5, 0.7], d / "x.png", xlabel="days"), "BinnedMetric"),
    (lambda d: plot_stamp_gallery(np.zeros((0, 3, 8, 8)), d / "x.png"), "empty"),
    (lambda d: plot_stamp_gallery(np.zeros((2, 8)), d / "x.png"), "shape"),
    (lambda d: plot_stamp_gallery(np.zeros((2, 3, 8, 8)), d / "x.png", scores=[0.1]), "one row per example"),
    (lambda d: plot_stamp_gallery(np.zeros((2, 3, 8, 8)), d / "x.png", indices=[5]), "outside"),
    (lambda d: plot_stamp_gallery(np.zeros((2, 3, 8, 8)), d / "x.png", scores=["a", "b"]), "numeric"),
    (lambda d: plot_stamp_gallery(np.zeros((2, 3, 8, 8)), d / "x.png", channel_names=["a"]), "channel_names"),
    (lambda d: plot_score_histograms([0.1, np.nan], ["a", "b"], d / "x.png"), "NaN"),
    (lambda d: plot_lightcurves([], d / "x.png"), "no light curves"),
    (lambda d: plot_lightcurves([{"mjd": [1.0]}], d / "x.png"), "LightCurve"),
])
def test_bad_input_raises_a_clear_error(tmp_path, call, match):
    with pytest.raises(InvalidInputError, match=match):
        call(tmp_path)
    assert not (tmp_path / "x.png").exists()
