"""Background stage: SExtractor's maps on the real SEP frame, masking, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from astroray.errors import InvalidInputError
from astroray.imaging.background import Background, BackgroundConfig, BackgroundResult

IMPLEMENTATIONS = ["sep", "array"]


@pytest.fixture(scope="module")
def sep_frame(shared_data):
    from astropy.io import fits

    d = shared_data / "images" / "sep"
    return (fits.getdata(d / "image.fits"), fits.getdata(d / "back.fits"), fits.getdata(d / "rms.fits"))


def _stage(impl, **kw):
    return Background(BackgroundConfig(box_size=kw.pop("box_size", 64), filter_size=kw.pop("filter_size", 3),
                                       implementation=impl, **kw))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_matches_sextractor_maps(sep_frame, impl):
    image, ref_back, ref_rms = sep_frame  # big-endian float32 straight from FITS
    result = _stage(impl).run(image)
    assert isinstance(result, BackgroundResult)
    assert result.background.dtype == np.float32 and result.background.shape == image.shape
    assert_allclose(result.background, ref_back, rtol=1e-5)
    assert_allclose(result.rms, ref_rms, rtol=1e-4)
    assert result.global_rms == pytest.approx(65.4617, rel=1e-4)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_masked_pixels_are_ignored(impl):
    # SEP's own case: four bright pixels, masked, leave a flat 0.1 sky.
    data = np.full((6, 6), 0.1)
    data[[1, 4, 1, 4], [1, 1, 4, 4]] = 1.0
    mask = np.zeros((6, 6), dtype=bool)
    stage = _stage(impl, box_size=3, filter_size=1)
    unmasked = stage.run(data)
    assert_allclose(stage.run(data, mask=mask).background, unmasked.background)
    mask[[1, 4, 1, 4], [1, 1, 4, 4]] = True
    masked = stage.run(data, mask=mask)
    assert masked.global_background == pytest.approx(0.1, rel=1e-6)
    assert_allclose(masked.background, 0.1, rtol=1e-6)
    assert not np.allclose(unmasked.background, 0.1)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_nan_pixels_are_masked(sep_frame, impl):
    image = np.array(sep_frame[0], dtype=np.float32)
    holes = np.zeros(image.shape, dtype=bool)
    holes[100:110, 30:200] = True
    with_nan = image.copy()
    with_nan[holes] = np.nan
    stage = _stage(impl)
    a = stage.run(with_nan)
    b = stage.run(image, mask=holes)
    assert np.isfinite(a.background).all() and np.isfinite(a.rms).all()
    assert_allclose(a.background, b.background)
    assert_allclose(a.rms, b.rms)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_dtypes_give_the_same_maps(sep_frame, impl):
    image = np.round(sep_frame[0])  # integral values, so int32 holds them exactly
    stage = _stage(impl)
    ref = stage.run(image.astype(np.float32))
    for dt in (np.float64, ">f8", np.int32, np.uint16):
        res = stage.run(image.astype(dt))
        assert res.background.dtype == np.float32
        assert_allclose(res.background, ref.background, rtol=1e-6)
        assert_allclose(res.rms, ref.rms, rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("bad, kw", [
    (np.zeros((4, 4, 4)), {}),
    (np.zeros(16), {}),
    (np.zeros((8, 8), dtype=complex), {}),
    (np.array([["a", "b"], ["c", "d"]]), {}),
    (np.full((8, 8), np.nan), {}),
    (np.zeros((8, 8)), {"mask": np.zeros((8, 7), dtype=bool)}),
])
def test_bad_input_raises(impl, bad, kw):
    with pytest.raises(InvalidInputError):
        _stage(impl, box_size=4, filter_size=1).run(bad, **kw)


def test_config_rejects_nonsense():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        BackgroundConfig(box_size=0)
    with pytest.raises(ValidationError):
        BackgroundConfig(bw=64)  # unknown key


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_fully_masked_image_raises(impl):
    with pytest.raises(InvalidInputError, match="masked"):
        _stage(impl, box_size=4, filter_size=1).run(np.ones((8, 8)), mask=np.ones((8, 8), dtype=bool))


@pytest.fixture
def gpu_host(monkeypatch):
    """Make the device probe report a GPU, so that device='auto' resolves to 'gpu' (as on a GPU host)."""
    import astroray.kernels.backend as backend

    monkeypatch.setattr(backend, "gpu_available", lambda: True)
    assert backend.resolve_device("auto") == "gpu"


def test_sep_resolves_to_the_cpu_on_a_gpu_host(gpu_host):
    from astroray.imaging.background import select_implementation

    assert select_implementation("auto", "sep") == ("cpu", "sep", np)
    assert select_implementation("cpu", "sep") == ("cpu", "sep", np)
    with pytest.raises(ValueError, match="CPU only"):
        select_implementation("gpu", "sep")  # asked for both: a contradiction
    with pytest.raises(ValueError):
        select_implementation("tpu", "sep")
    stage = Background(BackgroundConfig(device="auto", implementation="sep", box_size=16))
    assert (stage.device, stage.implementation) == ("cpu", "sep")
    result = stage.run(np.random.default_rng(0).normal(10.0, 1.0, (64, 64)))
    assert result.device == "cpu" and isinstance(result.background, np.ndarray)


def test_a_following_background_keeps_sep_on_the_cpu(gpu_host):
    from astroray.imaging.background import following, select_implementation

    assert select_implementation("gpu", "sep", follow=True) == ("cpu", "sep", np)
    assert following(BackgroundConfig(implementation="sep"), "gpu").device == "cpu"
    assert following(BackgroundConfig(implementation="sep"), "auto").device == "cpu"
    assert following(BackgroundConfig(implementation="array"), "auto").device == "gpu"
    assert following(BackgroundConfig(implementation="auto"), "gpu").device == "gpu"
    assert following(BackgroundConfig(implementation="auto", device="gpu"), "cpu").device == "cpu"
