"""The image pipeline scores every candidate with the scorer it is handed (any callable; it never imports torch);
without a scorer the ``rb`` column is NaN.  The pipeline with a real StampScorer around a registered U-Net is
tested in tests/ray/test_realbogus_use.py, beside the other users of that model store."""
from __future__ import annotations

import numpy as np
import pytest

from astroray.datasets import ImagePairConfig, simulate_pair
from astroray.imaging.pipeline import ImagePipeline, ImagePipelineConfig, catalog_to_table


@pytest.fixture(scope="module")
def pair():
    return simulate_pair(ImagePairConfig(shape=(256, 256)), seed=5, index=0)


def test_without_a_scorer_rb_is_nan_and_alerts_have_no_rb(pair):
    result = ImagePipeline(ImagePipelineConfig(device="cpu")).run(pair.reference, pair.science)
    assert len(result.catalog) > 0 and result.catalog["rb"].isna().all()
    assert all("rb" not in a.scores for a in result.alerts)
    assert catalog_to_table(result.catalog)["rb"].null_count == len(result.catalog)


def test_a_plain_callable_scores_and_a_wrong_answer_is_refused(pair):
    def brightness(stamps):  # any callable will do: the pipeline never imports torch
        return np.clip(np.nanmax(stamps["difference"], axis=(1, 2)) / 1000.0, 0, 1)

    result = ImagePipeline(ImagePipelineConfig(device="cpu"), scorer=brightness).run(pair.reference, pair.science)
    expected = brightness({"difference": np.stack([a.cutout_difference for a in result.alerts])})
    np.testing.assert_allclose(result.catalog["rb"], expected)
    with pytest.raises(ValueError, match="scores for"):
        ImagePipeline(ImagePipelineConfig(device="cpu"), scorer=lambda s: np.zeros(1)).run(pair.reference,
                                                                                            pair.science)
    with pytest.raises(TypeError, match="callable"):
        ImagePipeline(ImagePipelineConfig(device="cpu"), scorer="models:/astroray-realbogus@champion")


def test_imaging_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys, astroray.imaging.pipeline, astroray.records; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
