"""Satellite streaks on score images: synthetic lines of known geometry, and simulated pairs with their truth."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from astroray.errors import InvalidInputError
from astroray.imaging.streaks import StreakConfig, StreakFinder, find_streaks, streaks_contain


def score_image(shape=(1024, 1024), seed=0, lines=(), sources=()):
    """Unit-variance, PSF-smoothed noise (like S_corr) plus lines ``(x0, y0, angle_deg, length, snr)``."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    img = noise / noise.std()
    yy, xx = np.indices(shape)
    for x0, y0, angle, length, snr in lines:
        ux, uy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        along = (xx - x0) * ux + (yy - y0) * uy
        across = -(xx - x0) * uy + (yy - y0) * ux
        img += snr * np.exp(-0.5 * (across / 2.5) ** 2) * ((along >= 0) & (along <= length))
    for x, y, snr in sources:
        img += snr * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 2.5 ** 2)
    return img.astype(np.float32)


def test_a_faint_line_is_found_with_its_geometry_and_point_sources_are_not_on_it():
    # 4 sigma per pixel: its fragments would pass a 5-sigma detection here and there
    sources = [(100, 900, 30), (800, 150, 12), (500, 700, 8)]
    img = score_image(lines=[(150, 200, 30.0, 800, 4.0)], sources=sources)
    (streak,) = find_streaks(img)
    assert streak.angle == pytest.approx(30.0, abs=0.3)
    assert streak.length == pytest.approx(800, rel=0.03)
    assert min(math.hypot(streak.x0 - 150, streak.y0 - 200), math.hypot(streak.x1 - 150, streak.y1 - 200)) < 10
    t = np.linspace(20, 780, 12)
    on_line = streaks_contain([streak], 150 + t * math.cos(math.radians(30)), 200 + t * math.sin(math.radians(30)))
    assert on_line.all()
    assert not streaks_contain([streak], *zip(*[(x, y) for x, y, _ in sources])).any()


def test_noise_sources_and_short_trails_are_not_streaks():
    sources = [(x, y, 20) for x, y in np.random.default_rng(3).uniform(30, 990, (60, 2))]
    img = score_image(seed=1, sources=sources, lines=[(300, 300, 70.0, 60, 15.0)])  # an asteroid's 60 px trail
    assert find_streaks(img) == []
    assert find_streaks(score_image(seed=2)) == []
    assert find_streaks(3 * score_image(seed=5)) == []  # a failed subtraction: significant everywhere


def test_two_crossing_streaks_and_a_mask():
    img = score_image(seed=4, lines=[(50, 100, 10.0, 900, 8.0), (600, 50, 100.0, 900, 20.0)])
    streaks = StreakFinder(StreakConfig(min_length=300))(img)
    assert sorted(round(s.angle) for s in streaks) == [10, 100]
    yy, xx = np.indices(img.shape)
    ux, uy = math.cos(math.radians(100.0)), math.sin(math.radians(100.0))
    masked = np.abs(-(xx - 600) * uy + (yy - 50) * ux) <= 15  # the bright one's band: its pixels cannot vote
    (left,) = find_streaks(img, mask=masked)
    assert left.angle == pytest.approx(10.0, abs=0.5) and left.length == pytest.approx(900, rel=0.03)
    masked[:300] = False  # its first 250 px show again (over min_length): at most that stretch is found
    found = find_streaks(img, mask=masked)
    assert sum(abs(s.angle - 10.0) < 0.5 for s in found) == 1
    for s in found:
        if abs(s.angle - 10.0) >= 0.5:
            assert s.angle == pytest.approx(100.0, abs=5.0)  # a short stretch, cut obliquely by the mask
            assert max(s.y0, s.y1) < 300 + s.half_width + 8 and s.length < 300


def test_bad_input():
    with pytest.raises(InvalidInputError, match="2-D"):
        find_streaks(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError):
        StreakConfig(min_fill=0)


def test_pipeline_flags_detections_on_simulated_streaks_and_finds_none_without_them():
    from astroray.datasets import ImagePairConfig, simulate_pair
    from astroray.imaging.pipeline import ImagePipeline

    pipe = ImagePipeline()
    pair = simulate_pair(ImagePairConfig(shape=(768, 768), changes={"satellite_streak": 4.0}), seed=11, index=0)
    truth = pair.truth
    injected = truth[truth["kind"] == "satellite_streak"]
    assert len(injected) >= 2
    res = pipe.run(pair.reference, pair.science)
    found = sorted(round(s.angle) for s in res.streaks)
    # streaks too faint to lift their pixels over 2.5 sigma are not found; every one found is injected
    for angle in found:
        assert np.min(np.abs(((injected["angle"] % 180) - angle + 90) % 180 - 90)) < 1.5
    sigma_psf = pair.science.meta["fwhm_px"] / 2.3548
    peak_snr = injected["delta_flux"] / injected["length"] / (math.sqrt(2 * math.pi) * sigma_psf
                                                              * np.median(np.sqrt(pair.science.variance)))
    assert len(found) >= int((peak_snr > 2).sum()) >= 1
    cat = res.catalog
    assert cat["on_streak"].any() and not cat["on_streak"].all()
    real = truth[truth["real"].astype(bool) & ~truth["kind"].isin(["moving_object"])]
    clear = real[~streaks_contain(res.streaks, real["x"], real["y"], margin=30)]
    near = [np.hypot(cat["x"] - r.x, cat["y"] - r.y).idxmin() for r in clear.itertuples()]
    assert not cat.loc[near, "on_streak"].any()  # transients away from streaks keep on_streak False
    assert {a.meta["on_streak"] for a in res.alerts} == {True, False}

    for index in range(4):
        clean = simulate_pair(ImagePairConfig(shape=(512, 512), changes={"satellite_streak": 0.0}), seed=12,
                              index=index)
        assert pipe.run(clean.reference, clean.science).streaks == []


def test_a_transient_under_a_bright_streak_is_recovered_with_its_flux():
    """The streak's footprint swallows it in the first pass; the streak's modelled profile comes off and it shows."""
    from astroray.datasets import ImagePairConfig, simulate_pair
    from astroray.imaging.pipeline import ImagePipeline
    from astroray.records import Exposure

    # seed 28: one streak, 730 px long, about 20 sigma per pixel on its ridge
    pair = simulate_pair(ImagePairConfig(shape=(768, 768), changes={"satellite_streak": 1.5}), seed=28, index=0)
    (brightest,) = (row for _, row in pair.truth[pair.truth["kind"] == "satellite_streak"].iterrows())
    xc, yc = int(round(brightest["x"])), int(round(brightest["y"]))
    sci = pair.science
    sigma_bg = float(np.sqrt(np.median(sci.variance)))
    sigma_psf = sci.meta["fwhm_px"] / 2.3548
    flux = 40.0 * math.sqrt(4 * math.pi) * sigma_psf * sigma_bg  # S/N about 40 on the background alone
    psf = sci.psf / sci.psf.sum()
    h = psf.shape[0] // 2
    image, variance = sci.image.copy(), sci.variance.copy()
    image[yc - h:yc + h + 1, xc - h:xc + h + 1] += flux * psf
    variance[yc - h:yc + h + 1, xc - h:xc + h + 1] += flux * psf / sci.meta["gain"]
    sci = Exposure(image=image, variance=variance, mask=sci.mask, psf=sci.psf, header=sci.header, meta=sci.meta)

    res = ImagePipeline().run(pair.reference, sci)
    cat = res.catalog
    d = np.hypot(cat["x"] - xc, cat["y"] - yc)
    best = cat.loc[d.idxmin()]
    assert d.min() < 1.5 and best["under_streak"] and best["on_streak"]
    assert best["xmin"] <= best["x"] <= best["xmax"] and best["ymin"] <= best["y"] <= best["ymax"]  # frame pixels
    assert best["flux"] == pytest.approx(flux, rel=0.15)
    # the modelled streak leaves few candidates of its own along it
    assert int(cat["under_streak"].sum()) <= 2


def test_crossing_bright_streaks_leave_no_candidates_of_their_own():
    """Where two streaks cross, neither profile holds: that patch is not searched again (found in review)."""
    from astroray.imaging.difference import DifferenceConfig
    from astroray.imaging.pipeline import ImagePipeline, ImagePipelineConfig
    from astroray.records import Exposure

    shape, sigma, sky = (512, 512), 2.0, 100.0
    rng = np.random.default_rng(0)
    yy, xx = np.indices(shape)
    light = np.zeros(shape)
    for x0, y0, angle in ((30, 60, 20.0), (270, 20, 95.0)):
        ux, uy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        along, across = (xx - x0) * ux + (yy - y0) * uy, -(xx - x0) * uy + (yy - y0) * ux
        light += 1500.0 * np.exp(-0.5 * (across / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma) * (
            (along >= 0) & (along <= 460))
    g = np.exp(-0.5 * ((np.indices((25, 25)) - 12) ** 2).sum(0) / sigma ** 2)
    psf = g / g.sum()
    meta = {"background_subtracted": True, "mjd": 60000.0, "band": "r"}
    zero = np.zeros(shape, np.uint32)
    ref = Exposure(rng.normal(size=shape) * math.sqrt(sky), np.full(shape, sky), zero, psf, meta=meta)
    sci = Exposure(light + rng.normal(size=shape) * np.sqrt(sky + light), sky + light, zero, psf, meta=meta)
    cfg = ImagePipelineConfig(difference=DifferenceConfig(flux_ratio=1.0, sigma_astrometric=(0.1, 0.1)))
    res = ImagePipeline(cfg).run(ref, sci)
    assert sorted(round(s.angle) for s in res.streaks) == [20, 95]
    assert not res.catalog["under_streak"].any()


# --------------------------------------------------------------------------- host kernels against their references


def _band_by_sampling(s, reach, H, W):
    """The band's pixels as streak_model first found them: every half pixel along and across, rounded, each
    pixel once, then tested (the reference for the row-by-row enumeration)."""
    ux, uy = (s.x1 - s.x0) / s.length, (s.y1 - s.y0) / s.length
    a, d = np.meshgrid(np.arange(-1.0, s.length + 1.5, 0.5), np.arange(-reach - 1.0, reach + 1.5, 0.5), indexing="ij")
    px = np.rint(s.x0 + a * ux - d * uy).astype(np.int64)
    py = np.rint(s.y0 + a * uy + d * ux).astype(np.int64)
    ok = (px >= 0) & (px < W) & (py >= 0) & (py < H)
    yy, xx = np.divmod(np.unique(py[ok] * W + px[ok]), W)
    along = (xx - s.x0) * ux + (yy - s.y0) * uy
    across = -(xx - s.x0) * uy + (yy - s.y0) * ux
    inside = (np.abs(across) <= reach) & (along >= 0) & (along <= s.length)
    return yy[inside], xx[inside]


def test_band_pixels_are_the_sampled_band():
    from astroray.imaging.streaks import Streak, _band_pixels

    rng = np.random.default_rng(7)
    H, W = 300, 250
    cases = [Streak(10.0, 20.0, 10.0, 280.0, 6.0, 1.0), Streak(-5.0, 40.5, 260.0, 40.5, 3.5, 1.0),  # vertical, level
             Streak(0.0, 0.0, 249.0, 299.0, 12.0, 1.0), Streak(120.3, 150.7, 121.1, 151.2, 2.0, 1.0)]  # corner, tiny
    for _ in range(20):
        x0, y0 = rng.uniform(-40, W + 40), rng.uniform(-40, H + 40)
        angle, length = rng.uniform(0, 2 * math.pi), rng.uniform(5, 400)
        cases.append(Streak(x0, y0, x0 + length * math.cos(angle), y0 + length * math.sin(angle),
                            rng.uniform(2, 20), 1.0))
    n = 0
    for s in cases:
        reach = s.half_width + 8.0
        ux, uy = (s.x1 - s.x0) / s.length, (s.y1 - s.y0) / s.length
        ys, xs = _band_pixels(s, ux, uy, reach, H, W)
        ey, ex = _band_by_sampling(s, reach, H, W)
        np.testing.assert_array_equal(ys, ey)
        np.testing.assert_array_equal(xs, ex)
        n += len(ys)
    assert n > 10000


def test_host_kernels_equal_their_numpy_references():
    from astroray.imaging import _streak_kernels
    from astroray.imaging.streaks import (_accumulate, _accumulate_numpy, _cell_medians, _cell_medians_sorted,
                                          _pooled_points, _top_cells)

    rng = np.random.default_rng(3)
    score = score_image((203, 190), seed=6, lines=[(10, 20, 35.0, 200, 5.0)])
    score[5, 5], score[6, 7], score[100, 100] = np.nan, np.inf, -np.inf
    mask = rng.random(score.shape) < 0.1
    for m in (None, mask):
        significant = np.abs(np.nan_to_num(score)) > 2.5
        if m is not None:
            significant &= ~m
        for b in (1, 4, 7):
            ey, ex = _pooled_points(significant, b, np)
            by, bx = _streak_kernels.pooled_blocks(score, m if m is not None else np.zeros((1, 1), bool),
                                                   m is not None, 2.5, b)
            np.testing.assert_array_equal((by + 0.5) * b - 0.5, ey)
            np.testing.assert_array_equal((bx + 0.5) * b - 0.5, ex)
    # Hough votes: the same float32 arithmetic, the same bins
    ys, xs = _pooled_points(np.abs(score) > 2.0, 4, np)
    thetas = np.deg2rad(np.arange(0.0, 180.0, 0.5))
    rho_max, step = math.hypot(*score.shape), 8
    n_rho = int(math.ceil(2 * rho_max / step)) + 1
    votes = _accumulate(xs, ys, np.cos(thetas), np.sin(thetas), rho_max, n_rho, step)
    np.testing.assert_array_equal(votes, _accumulate_numpy(xs, ys, np.cos(thetas), np.sin(thetas), rho_max, n_rho,
                                                           step))
    assert votes.sum() == len(xs) * len(thetas)
    # medians per cell, odd and even counts, empty cells, ties
    cell = rng.integers(0, 300, 5000)
    values = np.round(rng.normal(size=5000), 1)
    for fill in (0.0, 1.0):
        np.testing.assert_array_equal(_cell_medians(cell, values, 320, fill=fill),
                                      _cell_medians_sorted(cell, values, 320, fill=fill))
    # the best accumulator cells: most votes first, ties in index order, none under the floor
    acc = rng.integers(0, 40, 5000)
    for k in (1, 20, 5000):
        top = _top_cells(acc, 8, 200.0, k)
        order = np.lexsort((np.arange(acc.size), -acc))
        expected = order[acc[order] * 8 >= 200.0][:k]
        np.testing.assert_array_equal(top, expected)


def test_stopped_points_take_their_blocks_votes_off_the_accumulator():
    """A found streak's points stop voting: the accumulator is then that of the coarse blocks that still hold a
    voting point, as if cast afresh (the bookkeeping counts points per block instead of comparing id sets)."""
    from astroray.imaging import streaks as S

    img = score_image(seed=4, lines=[(50, 100, 10.0, 900, 8.0), (600, 50, 100.0, 900, 20.0)])
    cfg = StreakConfig()
    ys, xs = S._pooled_points(np.abs(img) > cfg.threshold, cfg.bin, np)
    votes = S._Votes(ys, xs, img.shape, cfg)
    rng = np.random.default_rng(1)
    keep = np.ones(len(xs), bool)
    coarse = S._coarse_ids(xs, ys, votes.vote, img.shape[1])
    ids = np.unique(coarse)
    for share in (0.3, 0.5, 0.9, 1.0):
        stopped = np.flatnonzero(keep & (rng.random(len(xs)) < share))
        keep[stopped] = False
        votes.stop(stopped)
        # each block votes where its first point lies, while any of its points still votes
        alive = votes.first[np.isin(ids, coarse[keep])]
        fresh = S._accumulate_numpy(xs[alive], ys[alive], votes.cos, votes.sin, votes.rho_max, votes.n_rho,
                                    votes.vote)
        np.testing.assert_array_equal(votes.acc, fresh)
    assert not votes.acc.any() and keep.sum() == 0
