"""The pipeline's detection on the score image: zeroing the masked pixels is SEP's masking, to the bit."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from astroray.datasets import ImagePairConfig, simulate_pair
from astroray.imaging.pipeline import ImagePipeline, ImagePipelineConfig
from astroray.records import MaskBits

_SEP_ONLY = {"x", "y", "flux", "flux_err", "snr", "ra", "dec"}  # replaced by the pipeline (peaks, PSF photometry)


@pytest.fixture(scope="module")
def differenced():
    changes = {"satellite_streak": 8.0, "transient_hostless": 40.0}
    pair = simulate_pair(ImagePairConfig(shape=(384, 384), changes=changes), seed=3, index=0)
    pipe = ImagePipeline(ImagePipelineConfig(device="cpu"))
    sci = pipe.subtract_background(pair.science)
    diff = pipe.differencer.run(pipe.subtract_background(pair.reference), sci)
    return pipe, diff, sci


def _same_objects(found, expected):
    found = found.sort_values(["sign", "y_iso", "x_iso"], ignore_index=True)
    expected = expected.sort_values(["sign", "y", "x"], ignore_index=True)
    assert len(found) == len(expected) >= 5
    np.testing.assert_array_equal(found["x_iso"].to_numpy(), expected["x"].to_numpy())
    np.testing.assert_array_equal(found["y_iso"].to_numpy(), expected["y"].to_numpy())
    for column in expected.columns.difference(sorted(_SEP_ONLY)):
        np.testing.assert_array_equal(found[column].to_numpy(), expected[column].to_numpy(), err_msg=column)


def test_detection_equals_sep_with_the_mask(differenced):
    pipe, diff, sci = differenced
    sci = dataclasses.replace(sci, mask=sci.mask.copy())
    # flag the brightest detection's core with a bit the differencing does not blank: only the mask hides it
    first = pipe._detect(diff, sci)
    top = first.iloc[0]
    y, x = int(top["ypeak"]), int(top["xpeak"])
    sci.mask[y - 1:y + 2, x - 1:x + 2] |= np.uint32(MaskBits.EDGE)
    assert np.abs(diff.score[y - 1:y + 2, x - 1:x + 2]).max() > 5
    found = pipe._detect(diff, sci)
    bad = sci.mask != 0
    expected = pd.concat([pipe.extractor.run(sign * diff.score, mask=bad).catalog.assign(sign=sign)
                          for sign in (1, -1)], ignore_index=True)
    _same_objects(found, expected)
    assert len(found) < len(first) or not np.allclose(found["npix"].sum(), first["npix"].sum())


def test_detection_within_a_region_equals_sep_with_the_region_masked(differenced):
    pipe, diff, sci = differenced
    origin, shape = (40, 60), (300, 310)
    window = (slice(origin[0], origin[0] + shape[0]), slice(origin[1], origin[1] + shape[1]))
    score = np.ascontiguousarray(diff.score[window])
    region = np.zeros(shape, bool)
    region[20:250, 30:280] = True
    found = pipe._detect(diff, sci, score=score, origin=origin, region=region)
    bad = (sci.mask[window] != 0) | ~region
    expected = pd.concat([pipe.extractor.run(sign * score, mask=bad).catalog.assign(sign=sign)
                          for sign in (1, -1)], ignore_index=True)
    expected = expected.assign(x=expected["x"] + origin[1], y=expected["y"] + origin[0],
                               **{c: expected[c] + origin[1] for c in ("xpeak", "xcpeak", "xmin", "xmax")},
                               **{c: expected[c] + origin[0] for c in ("ypeak", "ycpeak", "ymin", "ymax")})
    _same_objects(found, expected)
