"""Physics and contract of the simulated image pairs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.wcs import WCS
from scipy.optimize import least_squares

from astroray.datasets import CHANGE_KINDS, TRUTH_COLUMNS, ChangeConfig, ImagePairConfig, simulate_pair
from astroray.errors import InvalidInputError
from astroray.records import MaskBits

NO_CHANGES = {k: 0.0 for k in ChangeConfig.model_fields}


def _wcs(exposure):
    return WCS(fits.Header.fromstring(exposure.header, sep="\n"))


def test_default_pair_contract():
    pair = simulate_pair(ImagePairConfig(shape=(512, 512)), seed=1, index=2)
    for exp, epoch in ((pair.reference, "reference"), (pair.science, "science")):
        assert exp.image.shape == exp.variance.shape == exp.mask.shape == (512, 512)
        assert exp.image.dtype == np.float32 and exp.mask.dtype == np.uint32
        assert exp.psf.shape[0] % 2 == 1 and abs(float(exp.psf.sum()) - 1.0) < 1e-5
        assert exp.meta["background_subtracted"] is False and exp.meta["epoch"] == epoch
        for key in exp.META_KEYS:
            assert exp.meta[key] is not None
        assert _wcs(exp).wcs.ctype[0] == "RA---TAN"
    truth = pair.truth
    assert tuple(truth.columns) == TRUTH_COLUMNS
    assert set(truth["kind"]) <= set(CHANGE_KINDS)
    assert truth["change_id"].is_unique
    assert (truth["real"] == truth["kind"].isin(
        ["transient_on_host", "transient_hostless", "variable_star", "moving_object"])).all()
    inside = truth.query("kind != 'satellite_streak'")
    assert inside["x"].between(-0.5, 511.5).all() and inside["y"].between(-0.5, 511.5).all()
    # ra/dec are the science WCS at (x, y)
    ra, dec = _wcs(pair.science).all_pix2world(truth["x"], truth["y"], 0)
    assert np.allclose(ra, truth["ra"], atol=1e-9) and np.allclose(dec, truth["dec"], atol=1e-9)
    # delta_flux is in science counts against the scaled reference
    assert np.allclose(truth["delta_flux"], truth["flux_science"] - truth["flux_scale"] * truth["flux_reference"])


def test_same_seed_same_bytes_and_index_changes_everything():
    cfg = ImagePairConfig(shape=(256, 256))
    a, b = simulate_pair(cfg, seed=7, index=3), simulate_pair(cfg, seed=7, index=3)
    for name in ("reference", "science"):
        for plane in ("image", "variance", "mask", "psf"):
            assert getattr(getattr(a, name), plane).tobytes() == getattr(getattr(b, name), plane).tobytes()
        assert getattr(a, name).header == getattr(b, name).header
    assert a.truth.to_csv() == b.truth.to_csv()
    c = simulate_pair(cfg, seed=7, index=4)
    assert a.science.image.tobytes() != c.science.image.tobytes()
    assert a.pair_id != c.pair_id


def test_background_noise_matches_stated_variance():
    cfg = ImagePairConfig(shape=(512, 512), star_density=0, galaxy_density=0, changes=NO_CHANGES)
    pair = simulate_pair(cfg, seed=0, index=0)
    for exp in (pair.reference, pair.science):
        expected = exp.meta["sky_level"] / exp.meta["gain"] + (exp.meta["read_noise"] / exp.meta["gain"]) ** 2
        assert abs(float(exp.variance.mean()) / expected - 1) < 0.01
        # the sky gradient is < 0.1 ADU over a 32-pixel box: per-box means remove it
        boxes = exp.image.reshape(16, 32, 16, 32)
        resid = boxes - boxes.mean(axis=(1, 3), keepdims=True)
        measured = float(resid.var()) * 1024 / 1023
        assert abs(measured / float(exp.variance.mean()) - 1) < 0.03
        assert abs(float(exp.image.mean()) / exp.meta["sky_level"] - 1) < 0.01


def _moffat(params, yy, xx):
    amp, x0, y0, alpha, beta, bg = params
    return amp * (1 + ((xx - x0) ** 2 + (yy - y0) ** 2) / alpha ** 2) ** (-beta) + bg


def _measured_fwhm(image, xs, ys, half=12):
    fwhms = []
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(float)
    for x, y in zip(xs, ys):
        ix, iy = int(round(x)), int(round(y))
        cut = image[iy - half:iy + half + 1, ix - half:ix + half + 1].astype(float)
        start = [cut.max() - np.median(cut), x - ix, y - iy, 4.0, 3.0, np.median(cut)]
        fit = least_squares(lambda p: (_moffat(p, yy, xx) - cut).ravel(), start,
                            bounds=([0, -2, -2, 0.5, 1.2, -np.inf], [np.inf, 2, 2, 30, 30, np.inf]))
        alpha, beta = fit.x[3], fit.x[4]
        fwhms.append(2 * alpha * math.sqrt(2 ** (1 / beta) - 1))
    return float(np.median(fwhms))


@pytest.mark.parametrize("psf_model", ["moffat", "gaussian"])
def test_psf_fwhm_matches_configured_seeing(psf_model):
    cfg = ImagePairConfig(
        shape=(384, 384), star_density=0, galaxy_density=0, misregistration=0.0,
        changes={**NO_CHANGES, "transient_hostless": 60.0}, snr_range=(150.0, 200.0),
        reference={"seeing": 0.8, "exptime": 120.0, "psf_model": psf_model, "mjd": 60000.0},
        science={"seeing": 1.2, "psf_model": psf_model, "mjd": 60030.0})
    pair = simulate_pair(cfg, seed=2, index=0)
    truth = pair.truth
    # keep isolated transients only
    xy = truth[["x", "y"]].to_numpy()
    dist = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1)) + np.eye(len(xy)) * 1e9
    ok = (dist.min(axis=1) > 30) & (xy.min(axis=1) > 14) & (xy.max(axis=1) < 384 - 14)
    assert ok.sum() >= 5
    fwhm_px = _measured_fwhm(pair.science.image, xy[ok, 0], xy[ok, 1])
    assert abs(fwhm_px * cfg.pixel_scale / cfg.science.seeing - 1) < 0.05
    # the stated PSF stamp has the same width
    stamp = pair.science.psf
    c = stamp.shape[0] // 2
    fwhm_stamp = _measured_fwhm(np.pad(stamp, 20), [c + 20], [c + 20])
    assert abs(fwhm_stamp * cfg.pixel_scale / cfg.science.seeing - 1) < 0.05


def _sky(exposure):
    h, w = exposure.shape
    m = exposure.meta
    gx = m["sky_gradient_x"] * (np.arange(w) / (w - 1) - 0.5)
    gy = m["sky_gradient_y"] * (np.arange(h) / (h - 1) - 0.5)
    return m["sky_level"] * (1 + gy[:, None] + gx[None, :])


def _aperture_flux(exposure, x, y, r):
    # the true sky from the meta: a local annulus would eat the PSF wings of bright sources
    image = np.ascontiguousarray(exposure.image - _sky(exposure), dtype=np.float64)
    err = np.sqrt(np.ascontiguousarray(exposure.variance, dtype=np.float64))
    flux, ferr, _ = sep.sum_circle(image, x, y, r, err=err)
    psf = exposure.psf.astype(np.float64)
    c = psf.shape[0] // 2
    ee, _, _ = sep.sum_circle(psf, [float(c)], [float(c)], r)
    return flux / ee[0], ferr / ee[0]


def _isolated(truth, distance, size):
    xy = truth[["x", "y"]].to_numpy()
    dist = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1)) + np.eye(len(xy)) * 1e9
    ok = (dist.min(axis=1) > distance) & (xy.min(axis=1) > distance) & (xy.max(axis=1) < size - distance)
    return truth[ok]


def test_injected_fluxes_recovered_by_aperture_photometry():
    cfg = ImagePairConfig(shape=(512, 512), star_density=0, galaxy_density=0,
                          changes={**NO_CHANGES, "transient_hostless": 80.0, "variable_star": 80.0},
                          snr_range=(10.0, 100.0))
    pair = simulate_pair(cfg, seed=5, index=1)
    truth = _isolated(pair.truth, 30.0, 512)
    assert len(truth) >= 20
    r = 2.0 * pair.science.meta["fwhm_px"]
    flux, err = _aperture_flux(pair.science, truth["x"].to_numpy(), truth["y"].to_numpy(), r)
    pull_sci = (flux - truth["flux_science"].to_numpy()) / err
    var = truth[truth["kind"] == "variable_star"]
    off = pair.meta["offset_x"], pair.meta["offset_y"]
    f_ref, e_ref = _aperture_flux(pair.reference, var["x"].to_numpy() - off[0], var["y"].to_numpy() - off[1],
                                  2.0 * pair.reference.meta["fwhm_px"])
    pull_ref = (f_ref - var["flux_reference"].to_numpy()) / e_ref
    for pull in (pull_sci, pull_ref):
        assert np.abs(pull).max() < 4.0
        assert abs(float(np.mean(pull))) < 3.0 / math.sqrt(len(pull)) + 0.15
        assert 0.6 < float(np.std(pull)) < 1.4


def test_snr_expected_is_the_psf_optimal_snr_on_the_difference():
    cfg = ImagePairConfig(shape=(512, 512), star_density=0, galaxy_density=0,
                          changes={**NO_CHANGES, "transient_hostless": 200.0})
    pair = simulate_pair(cfg, seed=9, index=0)
    expected = pair.truth["snr_expected"].to_numpy()
    # real changes span the configured S/N range, so completeness can be measured across it
    assert expected.min() >= 2.0 and expected.max() <= 120.0
    assert expected.min() < 5.0 and expected.max() > 50.0
    truth = _isolated(pair.truth, 45.0, 512)
    assert len(truth) >= 8
    s = pair.meta["flux_scale"]
    diff = pair.science.image.astype(float) - s * pair.reference.image.astype(float)
    var = pair.science.variance.astype(float) + s ** 2 * pair.reference.variance.astype(float)
    psf = pair.science.psf.astype(float)
    h = psf.shape[0] // 2
    est, sig = [], []
    for x, y in zip(truth["x"], truth["y"]):
        ix, iy = int(round(x)), int(round(y))
        d = diff[iy - h:iy + h + 1, ix - h:ix + h + 1]
        v = var[iy - h:iy + h + 1, ix - h:ix + h + 1]
        ring = d[np.hypot(*np.mgrid[-h:h + 1, -h:h + 1]) > h - 2]
        d = d - np.median(ring)
        p = psf
        info = (p ** 2 / v).sum()
        est.append((p * d / v).sum() / info)
        sig.append(1 / math.sqrt(info))
    est, sig = np.array(est), np.array(sig)
    # the stated S/N is the measured PSF-fit S/N up to noise (sub-pixel centring costs a little)
    measured = est / sig
    expected = truth["snr_expected"].to_numpy()
    assert np.abs(measured - expected).max() < 4.0 + 0.1 * expected.max()
    assert abs(float(np.median((measured - expected) / np.maximum(expected, 1)))) < 0.1


def test_misregistration_is_in_the_science_wcs():
    cfg = ImagePairConfig(shape=(256, 256), misregistration=0.3, changes=NO_CHANGES)
    pair = simulate_pair(cfg, seed=4, index=0)
    dx, dy = pair.meta["offset_x"], pair.meta["offset_y"]
    assert math.hypot(dx, dy) > 0.01
    x, y = np.array([10.0, 128.0, 240.0]), np.array([20.0, 128.0, 200.0])
    ra_r, dec_r = _wcs(pair.reference).all_pix2world(x, y, 0)
    ra_s, dec_s = _wcs(pair.science).all_pix2world(x + dx, y + dy, 0)
    pix = 0.2 / 3600
    assert np.all(np.abs((ra_r - ra_s) * np.cos(np.radians(dec_r))) < 1e-3 * pix)
    assert np.all(np.abs(dec_r - dec_s) < 1e-3 * pix)


def test_saturated_stars_bleed_and_are_flagged():
    cfg = ImagePairConfig(shape=(256, 256), star_density=3.0, star_mag_range=(12.0, 13.0), galaxy_density=0,
                          changes=NO_CHANGES)
    pair = simulate_pair(cfg, seed=0, index=0)
    sci = pair.science
    sat = (sci.mask & MaskBits.SAT) > 0
    assert sat.any() and float(sci.image.max()) <= cfg.saturation
    assert (pair.truth["kind"] == "saturated_residual").sum() >= 1
    ys, xs = np.nonzero(sat)
    # bleed trails run along columns: saturated regions are taller than wide
    assert np.ptp(ys) > np.ptp(xs) or len(set(xs)) < len(set(ys))


def test_a_coadded_reference_saturates_at_its_own_level():
    # the science epoch saturates at the pair's level; the reference (say 20 exposures summed) at its own, so
    # the same bright stars are whole there and no saturated-residual row claims them on its account alone
    stars = dict(shape=(256, 256), star_density=3.0, star_mag_range=(12.0, 13.0), galaxy_density=0,
                 changes=NO_CHANGES)
    cfg = ImagePairConfig(**stars, reference={"saturation": 1e9})
    pair = simulate_pair(cfg, seed=0, index=0)
    assert ((pair.science.mask & MaskBits.SAT) > 0).any()
    assert not ((pair.reference.mask & MaskBits.SAT) > 0).any()
    assert float(pair.reference.image.max()) > cfg.saturation
    assert pair.reference.meta["saturation"] == 1e9 and pair.science.meta["saturation"] == cfg.saturation
    # without the override both epochs clip at the pair's level, as before
    plain = simulate_pair(ImagePairConfig(**stars), seed=0, index=0)
    assert ((plain.reference.mask & MaskBits.SAT) > 0).any()
    assert float(plain.reference.image.max()) <= plain.reference.meta["saturation"] == 60000.0


def test_variable_star_brightness_range():
    changes = {**NO_CHANGES, "variable_star": 200.0}
    for mags in ((19.0, 22.5), (14.0, 15.0)):
        cfg = ImagePairConfig(shape=(256, 256), star_density=0, galaxy_density=0, changes=changes,
                              variable_star_mag_range=mags)
        pair = simulate_pair(cfg, seed=4, index=0)
        var = pair.truth[pair.truth["kind"] == "variable_star"]
        assert len(var) >= 5
        # reference counts = exptime * 10^(-0.4 (m - zero point)); fading stars may be brightened to stay positive
        ref = cfg.reference
        mag = ref.zero_point - 2.5 * np.log10(var["flux_reference"].to_numpy() / ref.exptime)
        assert mag.max() <= mags[1] + 1e-6 and np.median(mag) >= mags[0] - 1e-6
    with pytest.raises(ValueError, match="low < high"):
        ImagePairConfig(variable_star_mag_range=(22.0, 14.0))

def test_artifact_mask_switch():
    changes = {**NO_CHANGES, "cosmic_ray": 30.0, "hot_pixel": 30.0, "bad_column": 3.0}
    masked = simulate_pair(ImagePairConfig(shape=(256, 256), changes=changes), seed=3, index=0)
    assert (masked.science.mask & MaskBits.CR).any() and (masked.science.mask & MaskBits.BAD).any()
    assert masked.truth.query("kind in ['cosmic_ray', 'hot_pixel', 'bad_column']")["masked"].all()
    bare = simulate_pair(ImagePairConfig(shape=(256, 256), changes=changes, artifact_mask_fraction=0.0), seed=3,
                         index=0)
    assert not (bare.science.mask & (MaskBits.CR | MaskBits.BAD)).any()
    assert not bare.truth["masked"].any() and (bare.truth["real"] == False).all()  # noqa: E712
    hot = bare.truth[bare.truth["kind"] == "hot_pixel"]
    values = bare.science.image[hot["y"].astype(int), hot["x"].astype(int)]
    assert np.all(values > bare.science.meta["sky_level"] + 0.5 * hot["flux_science"].to_numpy())


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        ImagePairConfig(shape=(8, 8))
    with pytest.raises(ValueError):
        ImagePairConfig(snr_range=(10.0, 3.0))
    with pytest.raises(ValueError):
        ImagePairConfig(unknown_key=1)
    with pytest.raises(InvalidInputError):
        simulate_pair(ImagePairConfig(shape=(64, 64)), seed=-1)
    with pytest.raises(InvalidInputError):
        simulate_pair({"shape": (64, 64)})


def test_psf_varies_across_the_ccd_as_configured():
    cfg = ImagePairConfig(shape=(512, 512), star_density=0, galaxy_density=0, misregistration=0.0,
                          changes={**NO_CHANGES, "transient_hostless": 240.0}, snr_range=(150.0, 200.0),
                          science={"seeing": 1.0, "psf_variation": 0.3, "mjd": 60030.0})
    pair = simulate_pair(cfg, seed=1, index=0)
    truth = _isolated(pair.truth, 26.0, 512)
    assert len(truth) >= 8
    measured = np.array([_measured_fwhm(pair.science.image, [x], [y]) for x, y in zip(truth["x"], truth["y"])])
    u = (truth["x"].to_numpy() - 255.5) / 256
    v = (truth["y"].to_numpy() - 255.5) / 256
    expected = cfg.science.seeing / cfg.pixel_scale * (1 + 0.3 * 0.5 * (u + v))
    assert np.ptp(expected) > 1.0  # the sample spans the gradient
    assert abs(float(np.median(measured / expected)) - 1) < 0.05
    assert np.corrcoef(measured, expected)[0, 1] > 0.9


def test_galaxy_fluxes_and_source_table():
    cfg = ImagePairConfig(shape=(512, 512), star_density=0, galaxy_density=2.0, galaxy_mag_range=(19.0, 21.0),
                          galaxy_reff_range=(0.3, 0.8), changes=NO_CHANGES)
    pair = simulate_pair(cfg, seed=6, index=0)
    src = pair.sources
    assert (src["kind"] == "galaxy").all() and len(src) >= 5
    ra, dec = _wcs(pair.science).all_pix2world(src["x"], src["y"], 0)
    assert np.allclose(ra, src["ra"]) and np.allclose(dec, src["dec"])
    ref = pair.reference
    image = ref.image - _sky(ref)
    checked = 0
    for row in src.itertuples():
        half = int(4 * row.r_eff / cfg.pixel_scale + 3 * ref.meta["fwhm_px"]) + 3
        x, y = row.x - pair.meta["offset_x"], row.y - pair.meta["offset_y"]
        ix, iy = int(round(x)), int(round(y))
        if min(ix, iy) < half or max(ix, iy) > 511 - half:
            continue
        others = np.hypot(src["x"] - row.x, src["y"] - row.y)
        if np.sort(others)[1] < 2.5 * half:
            continue
        box = (slice(iy - half, iy + half + 1), slice(ix - half, ix + half + 1))
        flux = float(image[box].sum())
        err = math.sqrt(float(ref.variance[box].sum()))
        assert abs(flux - row.flux_reference) < 4 * err + 0.01 * row.flux_reference
        checked += 1
    assert checked >= 3


def test_partial_epoch_config_keeps_that_epochs_defaults():
    cfg = ImagePairConfig(reference={"seeing": 0.7})
    assert cfg.reference.seeing == 0.7 and cfg.reference.exptime == ImagePairConfig().reference.exptime
    assert cfg.science == ImagePairConfig().science


def test_variable_star_min_amplitude_floors_the_fractional_change():
    changes = {**NO_CHANGES, "variable_star": 300.0}
    cfg = ImagePairConfig(shape=(256, 256), star_density=0, galaxy_density=0, changes=changes,
                          variable_star_mag_range=(14.0, 16.0), variable_star_min_amplitude=0.1)
    var = simulate_pair(cfg, seed=2, index=0).truth.query("kind == 'variable_star'")
    scaled_ref = var["flux_scale"] * var["flux_reference"]
    frac = (var["delta_flux"].abs() / scaled_ref).to_numpy()
    assert len(var) >= 10 and frac.min() >= 0.1 - 1e-9
    assert (var["flux_science"] > 0).all()
    # without the floor, bright stars' S/N-drawn changes are mostly far below 10%
    plain = simulate_pair(cfg.model_copy(update={"variable_star_min_amplitude": 0.0}), seed=2, index=0)
    pv = plain.truth.query("kind == 'variable_star'")
    assert np.median(pv["delta_flux"].abs() / (pv["flux_scale"] * pv["flux_reference"])) < 0.05


def test_static_flux_scatter_moves_static_stars_only_in_the_science_epoch():
    base = dict(shape=(512, 512), star_density=40.0, star_mag_range=(18.5, 19.5), galaxy_density=0,
                changes=NO_CHANGES, misregistration=0.0)
    pairs = {s: simulate_pair(ImagePairConfig(**base, static_flux_scatter=s), seed=6, index=0) for s in (0.0, 0.05)}
    # the reference and every other random draw stay as they were
    assert np.array_equal(pairs[0.0].reference.image, pairs[0.05].reference.image)
    assert not np.array_equal(pairs[0.0].science.image, pairs[0.05].science.image)
    ref = pairs[0.0].reference
    srcs = sep.extract(ref.image - np.median(ref.image), 2000.0)  # bright stars only
    keep = (srcs["x"] > 20) & (srcs["x"] < 492) & (srcs["y"] > 20) & (srcs["y"] < 492)
    x, y = srcs["x"][keep], srcs["y"][keep]
    assert len(x) >= 50
    spread = {}
    for s, pair in pairs.items():
        f_ref, _ = _aperture_flux(pair.reference, x, y, 2.0 * pair.reference.meta["fwhm_px"])
        f_sci, _ = _aperture_flux(pair.science, x, y, 2.0 * pair.science.meta["fwhm_px"])
        r = f_sci / (pair.meta["flux_scale"] * f_ref)
        spread[s] = float(1.4826 * np.median(np.abs(r - np.median(r))))  # robust: blends stay out
    # photometric noise and blends give ~1.5%; 5% scatter added in quadrature gives ~5-7%
    assert spread[0.0] < 0.025 and 0.04 < spread[0.05] < 0.09


def test_seeing_range_draws_each_pairs_seeing_and_leaves_the_rest_unchanged():
    base = dict(shape=(256, 256), star_density=60.0, star_mag_range=(17.0, 19.0), galaxy_density=0,
                changes=NO_CHANGES, misregistration=0.0)
    ranged = ImagePairConfig(**base, science={**ImagePairConfig().science.model_dump(), "seeing_range": (0.8, 2.0)})
    pairs = [simulate_pair(ranged, seed=3, index=i) for i in range(6)]
    seeing = np.array([p.science.meta["seeing"] for p in pairs])
    assert ((seeing >= 0.8) & (seeing <= 2.0)).all() and np.ptp(seeing) > 0.3
    assert all(p.reference.meta["seeing"] == ImagePairConfig().reference.seeing for p in pairs)
    # a drawn pair is the pair made at that seeing: only the PSF width comes from the new stream
    fixed = ImagePairConfig(**base, science={**ImagePairConfig().science.model_dump(), "seeing": seeing[0]})
    same = simulate_pair(fixed, seed=3, index=0)
    assert np.array_equal(same.science.image, pairs[0].science.image)
    assert np.array_equal(same.reference.image, pairs[0].reference.image)
    # the stars' measured size follows the drawn seeing (sep's half-light radius, an independent measure)
    radius = []
    for p in pairs:
        img = p.science.image - np.median(p.science.image)
        src = sep.extract(img, 50.0)
        r, _ = sep.flux_radius(img, src["x"], src["y"], np.full(len(src), 10.0), 0.5, subpix=5)
        radius.append(np.median(r))
    assert np.corrcoef(seeing, radius)[0, 1] > 0.95
    with pytest.raises(ValueError, match="seeing_range"):
        ImagePairConfig(science={"seeing_range": (2.0, 1.0)})
