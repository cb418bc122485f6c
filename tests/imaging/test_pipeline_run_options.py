"""``ImagePipeline.run``'s per-pair options reach the differencer: PSF stamps or grids, and the flux ratio."""
from __future__ import annotations

import numpy as np
import pytest

from astroray.datasets import ImagePairConfig, simulate_pair
from astroray.imaging.pipeline import ImagePipeline, ImagePipelineConfig


@pytest.fixture(scope="module")
def pair():
    return simulate_pair(ImagePairConfig(shape=(128, 128)), seed=4)


def test_psf_grids_and_flux_ratio_pass_through(pair):
    pipe = ImagePipeline(ImagePipelineConfig(device="cpu", streaks=None))
    plain = pipe.run(pair.reference, pair.science)
    # each image's own stamp on a 2 x 2 grid: tile by tile, the same difference
    grids = {k: np.broadcast_to(e.psf, (2, 2) + e.psf.shape).copy()
             for k, e in (("psf_reference", pair.reference), ("psf_science", pair.science))}
    tiled = pipe.run(pair.reference, pair.science, **grids)
    assert np.corrcoef(plain.difference.score.ravel(), tiled.difference.score.ravel())[0, 1] > 0.999
    assert len(tiled.catalog) == len(plain.catalog)
    # a broader reference PSF given for this pair changes the difference
    wide = np.pad(pair.reference.psf, 2)
    wide = 0.5 * wide + 0.5 * np.roll(np.roll(wide, 1, 0), 1, 1)
    other = pipe.run(pair.reference, pair.science, psf_reference=wide / wide.sum())
    assert not np.allclose(other.difference.score, plain.difference.score)
    # the flux ratio given for this pair is the one used, not the fitted one
    given = 1.2 * plain.difference.flux_ratio
    scaled = pipe.run(pair.reference, pair.science, flux_ratio=given)
    assert scaled.difference.flux_ratio == pytest.approx(given)
