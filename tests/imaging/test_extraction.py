"""SourceExtractor: SExtractor's catalog on the real SEP frame, SEP on simulated fields, bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from astroray.errors import InvalidInputError
from astroray.imaging.background import Background, BackgroundConfig
from astroray.imaging.extraction import ExtractionConfig, ExtractionResult, SourceExtractor
from astroray.kernels.catalog import APER_HASMASKED, APER_TRUNC, CATALOG_FIELDS
from astroray.kernels.extract.testing import star_field
from astroray.records import CATALOG_COLUMNS

IMPLEMENTATIONS = ["sep", "array"]
REF_NAMES = ["number", "x", "y", "xwin", "ywin", "x2", "y2", "xy", "errx2", "erry2", "errxy", "a", "flux_aper",
             "fluxerr_aper", "kron_radius", "flux_auto", "fluxerr_auto", "fr10", "fr50", "fr60", "flags"]


@pytest.fixture(scope="module")
def sep_frame(shared_data):
    from astropy.io import fits

    d = shared_data / "images" / "sep"
    ref = pd.DataFrame(np.loadtxt(d / "image.cat"), columns=REF_NAMES)
    return fits.getdata(d / "image.fits"), ref.sort_values("y").reset_index(drop=True)


def _sextractor_config(impl, **kw):
    # As SEP's test_vs_sextractor: 1.5 x global RMS, deblending off, default 3x3 filter;
    # default.sex has PHOT_AUTOPARAMS 2.5, 0.0.
    opts = dict(threshold=1.5, deblend_cont=1.0, kron_min_radius=0.0, implementation=impl)
    return ExtractionConfig(**{**opts, **kw})


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def sextractor_run(request, sep_frame):
    image, ref = sep_frame
    impl = request.param
    bkg = Background(BackgroundConfig(box_size=64, filter_size=3, implementation=impl)).run(image)
    result = SourceExtractor(_sextractor_config(impl)).run(image, background=bkg)
    return result, ref, bkg


def test_finds_every_sextractor_object(sextractor_run):
    result, ref, _ = sextractor_run
    assert isinstance(result, ExtractionResult)
    cat = result.catalog.sort_values("y").reset_index(drop=True)
    assert len(cat) == len(ref) == 65
    assert_allclose(cat["x"], ref["x"] - 1.0, atol=1e-3)
    assert_allclose(cat["y"], ref["y"] - 1.0, atol=1e-3)


def test_moments_match_sextractor(sextractor_run):
    result, ref, _ = sextractor_run
    cat = result.catalog.sort_values("y").reset_index(drop=True)
    for name in ("x2", "y2", "xy"):
        assert_allclose(cat[name], ref[name], atol=1e-4, err_msg=name)
    assert_allclose(cat["errx2"], ref["errx2"], rtol=1e-4)
    assert_allclose(cat["erry2"], ref["erry2"], rtol=1e-4)
    assert_allclose(cat["errxy"], ref["errxy"], rtol=1e-3)
    assert_allclose(cat["a"], ref["a"], atol=1e-3)  # A_IMAGE is printed to 3 decimals


def test_photometry_matches_sextractor(sextractor_run):
    result, ref, bkg = sextractor_run
    cat = result.catalog.sort_values("y").reset_index(drop=True)
    assert result.threshold == pytest.approx(1.5 * bkg.global_rms, rel=1e-6)
    assert_allclose(cat["flux_aper"], ref["flux_aper"], rtol=2e-4)
    assert_allclose(cat["flux_aper_err"], ref["fluxerr_aper"], rtol=1e-5)
    assert ((cat["flag_aper"] & APER_TRUNC) != 0).sum() == 4  # aperture truncated at the edge, as in SEP's test
    # SExtractor 2.8.6 zeroes one tiny object's Kron radius (SEP's test notes the same object).
    odd = np.argmin(np.abs(ref["kron_radius"]))
    keep = np.arange(len(ref)) != odd
    assert ref["kron_radius"][odd] == 0.0
    assert_allclose(2.5 * cat["kron_radius"][keep], ref["kron_radius"][keep], atol=0.01)
    assert_allclose(cat["flux_auto"][keep], ref["flux_auto"][keep], rtol=5e-4)
    assert_allclose(cat["flux_auto_err"][keep], ref["fluxerr_auto"][keep], rtol=5e-4)
    assert_allclose(cat["flux_radius"][keep], ref["fr50"][keep], rtol=0.04, atol=0.01)
    assert_allclose(cat["xwin"][keep], ref["xwin"][keep] - 1.0, atol=2e-3)
    assert_allclose(cat["ywin"][keep], ref["ywin"][keep] - 1.0, atol=2e-3)


def test_catalog_record_columns(sextractor_run):
    result, _, bkg = sextractor_run
    cat = result.catalog
    for name in CATALOG_COLUMNS + CATALOG_FIELDS:
        assert name in cat.columns, name
    assert cat["ra"].isna().all() and cat["dec"].isna().all()  # no WCS given
    assert (cat["flux_err"] > 0).all()
    assert_allclose(cat["snr"], cat["flux"] / cat["flux_err"])
    seg = result.segmentation
    assert seg.shape == (256, 256)
    counts = np.bincount(np.asarray(seg).ravel(), minlength=len(cat) + 1)[1:]
    assert_allclose(counts, cat["npix"])
    # Isophotal error: constant noise over npix pixels.
    assert_allclose(cat["flux_err"], bkg.global_rms * np.sqrt(cat["npix"]), rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_ra_dec_from_wcs(sep_frame, impl):
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [128.0, 128.0]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    image, _ = sep_frame
    r = SourceExtractor(_sextractor_config(impl)).run(image, background="estimate", wcs=wcs)
    ra, dec = wcs.all_pix2world(r.catalog["x"], r.catalog["y"], 0)
    assert_allclose(r.catalog["ra"], ra)
    assert_allclose(r.catalog["dec"], dec)
    r2 = SourceExtractor(_sextractor_config(impl)).run(image, background="estimate", wcs=wcs.to_header_string())
    assert_allclose(r2.catalog["ra"], ra)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_nan_pixels_are_masked_not_propagated(impl):
    image, truth = star_field((128, 128), 12, seed=3, sky=0.0)
    cfg = ExtractionConfig(threshold=5.0, implementation=impl)
    ext = SourceExtractor(cfg)
    base = ext.run(image, error=5.0)
    i = int(np.argmax(base.catalog["flux"]))
    xc, yc = int(round(base.catalog["x"][i])), int(round(base.catalog["y"][i]))
    holes = np.zeros(image.shape, dtype=bool)
    holes[yc, xc + 1] = holes[yc + 2, xc] = True
    with_nan = image.copy()
    with_nan[holes] = np.nan
    a = ext.run(with_nan, error=5.0).catalog
    b = ext.run(image, error=5.0, mask=holes).catalog
    flux_cols = ["flux", "flux_err", "flux_aper", "flux_aper_err", "flux_auto", "x", "y", "x2", "a"]
    assert np.isfinite(a[flux_cols].to_numpy()).all()
    pd.testing.assert_frame_equal(a, b)
    j = int(np.argmin(np.hypot(a["x"] - xc, a["y"] - yc)))
    assert a["flux_aper"][j] < base.catalog["flux_aper"][i]  # the masked pixels' light is gone
    assert a["flag_aper"][j] & APER_HASMASKED


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_absolute_threshold_equals_relative_with_constant_error(sep_frame, impl):
    image, _ = sep_frame
    bkg = Background(BackgroundConfig(implementation=impl)).run(image)
    rel = SourceExtractor(_sextractor_config(impl)).run(image, background=bkg).catalog
    absolute = SourceExtractor(_sextractor_config(impl, threshold=1.5 * bkg.global_rms, threshold_type="absolute"))
    cat = absolute.run(image, background=bkg, error=bkg.global_rms).catalog
    assert_allclose(cat["x"], rel["x"])
    assert_allclose(cat["flux_aper_err"], rel["flux_aper_err"])
    # And an error map that is constant gives the same as the scalar.
    emap = np.full(image.shape, bkg.global_rms, dtype=np.float32)
    cat_map = absolute.run(image, background=bkg, error=emap).catalog
    assert_allclose(cat_map["x"], rel["x"])
    assert_allclose(cat_map["errx2"], rel["errx2"], rtol=1e-4)
    assert_allclose(cat_map["flux_err"], rel["flux_err"], rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_no_sources_gives_an_empty_catalog(impl):
    rng = np.random.default_rng(1)
    r = SourceExtractor(ExtractionConfig(threshold=50.0, implementation=impl)).run(rng.normal(0, 1, (64, 64)),
                                                                                    error=1.0)
    assert len(r.catalog) == 0
    assert set(CATALOG_COLUMNS) <= set(r.catalog.columns)
    assert int(np.asarray(r.segmentation).max()) == 0


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("bad, kw", [
    (np.zeros((4, 4, 4)), {}),
    (np.zeros(16), {}),
    (np.zeros((8, 8), dtype=complex), {}),
    (np.array([["a", "b"], ["c", "d"]]), {}),
    (np.full((8, 8), np.nan), {}),
    (np.ones((8, 8)), {"mask": np.zeros((8, 7), dtype=bool)}),
    (np.ones((8, 8)), {"error": np.ones((7, 8))}),
    (np.ones((8, 8)), {"error": 1.0, "variance": 1.0}),
    (np.ones((8, 8)), {"error": -1.0}),
    (np.ones((8, 8)), {"background": np.zeros((8, 9))}),
])
def test_bad_input_raises(impl, bad, kw):
    with pytest.raises(InvalidInputError):
        SourceExtractor(ExtractionConfig(implementation=impl)).run(bad, **kw)


def test_error_names_the_source():
    with pytest.raises(InvalidInputError, match="visit-42"):
        SourceExtractor().run(np.zeros(5), source="visit-42")


def test_array_path_matches_sep_path_on_a_blended_field():
    # The check at small scale: deblending on, >= 99% of SEP's objects within 0.1 px,
    # fluxes within 0.5% (aperture; isophotal for objects SEP did not split).
    image, _ = star_field((256, 256), 260, seed=11, sky=100.0, noise=5.0)
    cfg = dict(threshold=1.5, deblend_cont=0.005, filter_type="conv")
    ref = SourceExtractor(ExtractionConfig(implementation="sep", **cfg)).run(image, background="estimate").catalog
    ours = SourceExtractor(ExtractionConfig(implementation="array", **cfg)).run(image, background="estimate").catalog
    assert ((ref["flag"] & 1) != 0).sum() >= 10
    d = np.hypot(ours["x"].to_numpy()[None, :] - ref["x"].to_numpy()[:, None],
                 ours["y"].to_numpy()[None, :] - ref["y"].to_numpy()[:, None])
    idx, dist = d.argmin(axis=1), d.min(axis=1)
    assert (dist < 0.1).mean() >= 0.99
    ok = dist < 0.1
    assert_allclose(ours["flux_aper"].to_numpy()[idx][ok], ref["flux_aper"].to_numpy()[ok], rtol=5e-3)
    single = ok & ((ref["flag"] & 1) == 0).to_numpy()
    assert_allclose(ours["flux"].to_numpy()[idx][single], ref["flux"].to_numpy()[single], rtol=1e-4)


@pytest.mark.gpu
def test_gpu_stage_matches_the_sextractor_catalog_and_the_cpu_array_path(sep_frame):
    import cupy as cp

    image, ref = sep_frame
    bkg = Background(BackgroundConfig(device="gpu")).run(cp.asarray(np.asarray(image, dtype=np.float32)))
    assert isinstance(bkg.background, cp.ndarray)
    r = SourceExtractor(_sextractor_config("auto", device="gpu")).run(image, background=bkg)
    assert r.meta["implementation"] == "array" and r.device == "gpu"
    cat = r.catalog.sort_values("y").reset_index(drop=True)
    assert len(cat) == len(ref)
    assert_allclose(cat["x"], ref["x"] - 1.0, atol=1e-3)
    assert_allclose(cat["y"], ref["y"] - 1.0, atol=1e-3)
    assert_allclose(cat["x2"], ref["x2"], atol=1e-4)
    assert_allclose(cat["flux_aper"], ref["flux_aper"], rtol=2e-4)
    cpu_bkg = Background(BackgroundConfig(implementation="array")).run(image)
    cpu = SourceExtractor(_sextractor_config("array")).run(image, background=cpu_bkg).catalog
    cpu = cpu.sort_values("y").reset_index(drop=True)
    for name in ("x", "y", "flux", "flux_auto", "xwin", "flux_radius"):
        assert_allclose(cat[name], cpu[name], rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_variance_gain_and_custom_kernel(impl):
    image, _ = star_field((128, 128), 20, seed=5, sky=0.0)
    var = np.full(image.shape, 25.0, dtype=np.float32)
    cfg = ExtractionConfig(threshold=3.0, implementation=impl, gain=2.0,
                           filter_kernel=((0.0, 1.0, 0.0), (1.0, 2.0, 1.0), (0.0, 1.0, 0.0)))
    a = SourceExtractor(cfg).run(image, variance=var).catalog
    b = SourceExtractor(cfg).run(image, error=np.sqrt(var)).catalog
    pd.testing.assert_frame_equal(a, b)
    nogain = SourceExtractor(cfg.with_updates(gain=None)).run(image, error=5.0).catalog
    assert len(nogain) == len(a)
    bright = a["flux"] > 0
    assert (a["flux_err"][bright] > nogain["flux_err"][bright]).all()  # Poisson term added
    r = SourceExtractor(cfg).run(image, error=5.0)
    table = r.to_arrow()
    assert table.num_rows == len(r.catalog) and "flux_err" in table.column_names


def test_config_validation():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ExtractionConfig(threshold=0)
    with pytest.raises(ValidationError):
        ExtractionConfig(filter_kernel=((1.0, 2.0), (1.0,)))
    with pytest.raises(ValidationError):
        ExtractionConfig(deblend_cont=2.0)
    with pytest.raises(ValidationError):
        ExtractionConfig(minarea=5)  # SEP's spelling is not ours
    from astroray.errors import DeviceUnavailableError

    with pytest.raises((ValueError, DeviceUnavailableError)):  # SEP is CPU only; no GPU here either
        SourceExtractor(ExtractionConfig(implementation="sep", device="gpu"))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_run_exposure_uses_variance_mask_bits_and_wcs(impl):
    from astroray.datasets.images import ImagePairConfig, simulate_pair
    from astroray.records import MaskBits

    pair = simulate_pair(ImagePairConfig(shape=(256, 256)), seed=1)
    sci = pair.science
    ext = SourceExtractor(ExtractionConfig(threshold=5.0, implementation=impl))
    r = ext.run_exposure(sci)
    cat = r.catalog
    assert len(cat) >= 3 and np.isfinite(cat[["ra", "dec"]].to_numpy()).all()
    stars = pair.sources[pair.sources["kind"] == "star"]
    d = np.hypot(cat["x"].to_numpy()[:, None] - stars["x"].to_numpy()[None, :],
                 cat["y"].to_numpy()[:, None] - stars["y"].to_numpy()[None, :])
    near = d.min(axis=1) < 1.0
    assert near.sum() >= 2
    j = d.argmin(axis=1)[near]
    cosd = np.cos(np.radians(stars["dec"].to_numpy()[j]))
    sep_arcsec = 3600 * np.hypot((cat["ra"].to_numpy()[near] - stars["ra"].to_numpy()[j]) * cosd,
                                 cat["dec"].to_numpy()[near] - stars["dec"].to_numpy()[j])
    assert (sep_arcsec < 1.0).all()
    # DETECTED bits are not a reason to mask; BAD bits are.
    def with_mask(value):
        return type(sci)(image=sci.image, variance=sci.variance, mask=np.full(sci.shape, int(value)), psf=sci.psf,
                         header=sci.header, meta=sci.meta)

    pd.testing.assert_frame_equal(ext.run_exposure(with_mask(MaskBits.DETECTED)).catalog,
                                  ext.run_exposure(with_mask(0)).catalog)
    with pytest.raises(InvalidInputError, match="masked"):  # nothing left to measure
        ext.run_exposure(with_mask(MaskBits.BAD))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_fully_masked_image_raises(impl):
    ext = SourceExtractor(ExtractionConfig(implementation=impl))
    with pytest.raises(InvalidInputError, match="masked"):
        ext.run(np.ones((8, 8)), error=1.0, mask=np.ones((8, 8), dtype=bool))


def test_sep_stack_grows_when_a_crowded_frame_fills_it():
    import sep

    before = sep.get_extract_pixstack()
    try:
        sep.set_extract_pixstack(64)
        image, _ = star_field((96, 96), 30, seed=2, sky=0.0)
        r = SourceExtractor(ExtractionConfig(threshold=3.0, implementation="sep")).run(image, error=5.0)
        assert len(r.catalog) > 5 and sep.get_extract_pixstack() > 64
    finally:
        sep.set_extract_pixstack(before)


def test_stages_and_results_pickle(sep_frame):
    import pickle

    image, _ = sep_frame
    bkg_stage = pickle.loads(pickle.dumps(Background(BackgroundConfig(box_size=32))))
    ext = pickle.loads(pickle.dumps(SourceExtractor(_sextractor_config("array"))))
    assert bkg_stage.config.box_size == 32 and ext.implementation == "array"
    r = ext.run(image, background=bkg_stage.run(image))
    r2 = pickle.loads(pickle.dumps(r))
    pd.testing.assert_frame_equal(r.catalog, r2.catalog)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_vertical_streak_passes_seps_ellipse_checks(impl):
    # One pixel wide and vertical: theta is float32(pi/2), just above pi/2 in float64,
    # which SEP's aperture functions reject unless the stage keeps it in range.
    image = np.zeros((64, 64), dtype=np.float32)
    image[10:40, 30] = 50.0
    cfg = ExtractionConfig(threshold=5.0, threshold_type="absolute", filter_kernel=None, implementation=impl)
    cat = SourceExtractor(cfg).run(image).catalog
    assert len(cat) == 1
    assert cat["flux_auto"][0] == pytest.approx(1500.0)
    assert cat["x"][0] == pytest.approx(30.0) and cat["y"][0] == pytest.approx(24.5)


@pytest.fixture
def gpu_host(monkeypatch):
    """Make the device probe report a GPU, so that device='auto' resolves to 'gpu' (as on a GPU host)."""
    import astroray.kernels.backend as backend

    monkeypatch.setattr(backend, "gpu_available", lambda: True)
    assert backend.resolve_device("auto") == "gpu"


def test_sep_on_auto_runs_on_the_cpu_of_a_gpu_host_with_its_background(gpu_host):
    # device='auto' picks the GPU here; SEP (and the background it estimates) must stay on the CPU.
    image, _ = star_field((128, 128), 20, seed=3, sky=100.0)
    for bkg_impl in ("auto", "sep"):
        cfg = ExtractionConfig(threshold=3.0, device="auto", implementation="sep",
                               background=BackgroundConfig(implementation=bkg_impl, device="auto"))
        ext = SourceExtractor(cfg)
        assert (ext.device, ext.implementation) == ("cpu", "sep")
        r = ext.run(image, background="estimate")
        assert r.device == "cpu" and r.background.device == "cpu" and len(r.catalog) >= 10
        assert isinstance(r.background.background, np.ndarray)
        noise_only = ext.run(image - r.background.background)  # the noise from a background measured here
        assert len(noise_only.catalog) == len(r.catalog)


@pytest.mark.gpu
def test_gpu_extraction_with_a_sep_background_keeps_sep_on_the_cpu():
    import cupy as cp

    image, _ = star_field((128, 128), 20, seed=3, sky=100.0)
    opts = dict(threshold=3.0, implementation="array", background=BackgroundConfig(implementation="sep"))
    gpu = SourceExtractor(ExtractionConfig(device="gpu", **opts)).run(cp.asarray(image), background="estimate")
    cpu = SourceExtractor(ExtractionConfig(device="cpu", **opts)).run(image, background="estimate")
    assert gpu.device == "gpu" and gpu.background.device == "cpu"
    assert len(gpu.catalog) == len(cpu.catalog) >= 10
    assert_allclose(gpu.catalog["x"], cpu.catalog["x"], rtol=1e-6, atol=1e-6)
    # A device background for a host (SEP) extraction comes to the host.
    dev_bkg = Background(BackgroundConfig(device="gpu")).run(cp.asarray(image))
    r = SourceExtractor(ExtractionConfig(threshold=3.0, implementation="sep")).run(image, background=dev_bkg)
    assert len(r.catalog) == len(cpu.catalog)


@pytest.mark.gpu
def test_gpu_no_sources_gives_an_empty_catalog():
    import cupy as cp

    noise = np.random.default_rng(1).normal(0, 1, (64, 64))
    r = SourceExtractor(ExtractionConfig(threshold=50.0, implementation="array", device="gpu")).run(
        cp.asarray(noise), error=1.0)
    assert len(r.catalog) == 0 and set(CATALOG_COLUMNS) <= set(r.catalog.columns)
    assert int(cp.asnumpy(r.segmentation).max()) == 0
    cpu = SourceExtractor(ExtractionConfig(threshold=50.0, implementation="array")).run(noise, error=1.0)
    assert (r.catalog.dtypes == cpu.catalog.dtypes).all()
