"""The image pipeline stage without Ray: truth recovery, bad input, regressions."""
import numpy as np
import pytest

from astroray.datasets import ImagePairConfig, simulate_pair
from astroray.errors import InvalidInputError
from astroray.imaging.pipeline import ImagePipeline, ImagePipelineConfig, catalog_to_table
from astroray.eval import match_to_truth
from astroray.records import Exposure


@pytest.fixture(scope="module")
def pipeline():
    return ImagePipeline(ImagePipelineConfig())


def test_vertical_streak_pair_runs(pipeline):
    """seed 7 / index 0 has an object whose float32 theta rounds above pi/2 (SEP rejected it)."""
    pair = simulate_pair(ImagePairConfig(shape=(1024, 1024)), seed=7, index=0)
    result = pipeline.run(pair.reference, pair.science)
    assert len(result.catalog) == len(result.alerts) > 0
    real = pair.truth[pair.truth["real"] & (pair.truth["snr_expected"] >= 10)]
    assert match_to_truth(result.catalog, real, radius=2.0).mean() >= 0.95
    table = catalog_to_table(result.catalog, pair_id="p")
    assert table.num_rows == len(result.catalog) and table.column("pair_id").to_pylist()[0] == "p"


def test_alert_fluxes_are_in_njy_and_match_truth(pipeline):
    pair = simulate_pair(ImagePairConfig(shape=(1024, 1024)), seed=11, index=0)
    result = pipeline.run(pair.reference, pair.science)
    truth = pair.truth[(pair.truth["kind"] == "transient_hostless") & (pair.truth["snr_expected"] >= 20)]
    assert len(truth) >= 2
    xy = np.array([[a.meta["x"], a.meta["y"]] for a in result.alerts])
    for t in truth.itertuples():
        i = int(np.argmin(np.hypot(xy[:, 0] - t.x, xy[:, 1] - t.y)))
        assert np.hypot(*(xy[i] - (t.x, t.y))) < 1.5
        # PSF photometry on D: unbiased within a few sigma of the S/N >= 20 error
        assert abs(result.alerts[i].flux / t.delta_flux_njy - 1) < 0.2


def test_mismatched_pair_is_invalid_input(pipeline):
    pair = simulate_pair(ImagePairConfig(shape=(256, 256)), seed=1, index=0)
    small = Exposure(image=pair.science.image[:128, :128], variance=pair.science.variance[:128, :128],
                     mask=pair.science.mask[:128, :128], psf=pair.science.psf, meta=dict(pair.science.meta))
    with pytest.raises(InvalidInputError, match="differs from science shape"):
        pipeline.run(pair.reference, small)


@pytest.mark.parametrize("implementation", ["sep", "array"])
def test_detection_only_extraction_keeps_the_catalog(implementation):
    """photometry=False drops the aperture/Kron columns and nothing else."""
    from astroray.imaging.extraction import ExtractionConfig, SourceExtractor

    rng = np.random.default_rng(5)
    img = rng.normal(0, 1, (200, 200)).astype(np.float32)
    yy, xx = np.mgrid[:200, :200]
    for x0, y0 in ((50, 60), (120, 140), (160, 30)):
        img += 40 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 4.0)
    img[100:103, 10:190] += 30  # a streak-like artefact
    common = dict(threshold=5.0, threshold_type="absolute", filter_kernel=None, deblend_cont=1.0,
                  implementation=implementation)
    full = SourceExtractor(ExtractionConfig(**common)).run(img).catalog
    bare = SourceExtractor(ExtractionConfig(photometry=False, **common)).run(img).catalog
    assert len(full) == len(bare) == 4
    for col in ("x", "y", "flux", "a", "b", "theta", "npix"):
        np.testing.assert_allclose(bare[col].to_numpy(), full[col].to_numpy(), rtol=1e-6)
    assert "flux_auto" in full and "flux_auto" not in bare


def test_score_peak_positions_find_sub_pixel_maxima_of_either_sign():
    from astroray.imaging.pipeline import score_peak_positions

    yy, xx = np.mgrid[:64, :64]
    truth = [(20.3, 30.8, 1), (45.6, 12.2, -1)]
    score = sum(s * 40 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0 ** 2)) for y, x, s in truth)
    score[0, 63] = 50.0  # a peak on the edge stays on its pixel
    x, y, peak = score_peak_positions(score, [31, 12, 63], [20, 46, 0], [1, -1, 1])
    np.testing.assert_allclose(x[:2], [30.8, 12.2], atol=0.05)
    np.testing.assert_allclose(y[:2], [20.3, 45.6], atol=0.05)
    assert (x[2], y[2]) == (63, 0)
    # |score| at the pixel nearest each vertex
    np.testing.assert_allclose(peak, [abs(score[20, 31]), abs(score[46, 12]), 50.0])
