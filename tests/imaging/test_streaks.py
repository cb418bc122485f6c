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
    masked = np.zeros(img.shape, bool)
    masked[300:, 400:620] = True  # most of the bright one lies under the mask: its pixels cannot vote
    (left,) = find_streaks(img, mask=masked)
    assert left.angle == pytest.approx(10.0, abs=0.5)


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
