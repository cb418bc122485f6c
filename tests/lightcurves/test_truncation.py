"""Partial light curves keep exactly the points at or before the cut."""
from __future__ import annotations

import numpy as np
import pytest

from astroray.datasets import simulate_lightcurves
from astroray.errors import InvalidInputError
from astroray.lightcurves import origin_mjd, ragged_from_lightcurves, random_truncate, truncate
from astroray.records import LightCurve


@pytest.fixture(scope="module")
def data():
    return ragged_from_lightcurves(simulate_lightcurves(150, seed=7).lightcurves)


def _rows(d):
    return [d.lightcurve(i) for i in range(len(d))]


def test_days_since_first_detection(data):
    cut = truncate(data, days=20.0)
    origin = origin_mjd(data)
    for full, part, t0 in zip(_rows(data), _rows(cut), origin):
        before = full.mjd <= t0 + 20.0
        np.testing.assert_array_equal(part.mjd, full.mjd[before])
        np.testing.assert_array_equal(part.flux, full.flux[before])
        assert part.mjd.max(initial=-np.inf) <= t0 + 20.0
    # non-detections before the first detection stay (they are before the cut)
    pre = [(p.mjd < t0).sum() for p, t0 in zip(_rows(cut), origin)]
    assert sum(pre) > 0
    # origin = first point is a different, earlier cut
    first = truncate(data, days=20.0, origin="first_point")
    assert first.n_points < cut.n_points


def test_points_and_until_mjd_and_per_row_values(data):
    k = np.arange(len(data)) % 7
    cut = truncate(data, n_points=k)
    np.testing.assert_array_equal(cut.lengths, np.minimum(k, data.lengths))
    for full, part in zip(_rows(data), _rows(cut)):
        np.testing.assert_array_equal(part.mjd, full.mjd[:len(part)])
    until = data.first_mjd() + 100.0
    cut = truncate(data, until_mjd=until)
    assert all((p.mjd <= u).all() for p, u in zip(_rows(cut), until))
    assert all(((f.mjd <= u).sum() == len(p)) for f, p, u in zip(_rows(data), _rows(cut), until))
    both = truncate(data, n_points=3, days=0.0)
    assert np.all(both.lengths <= 3)


def test_single_lightcurve_record():
    lc = LightCurve("x", [1.0, 2.0, 3.0, 4.0], list("gggr"), [1.0, 5.0, 6.0, 7.0], [1.0] * 4,
                    [False, True, True, True])
    out = truncate(lc, days=1.0)
    assert isinstance(out, LightCurve)
    np.testing.assert_array_equal(out.mjd, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(truncate(lc, n_points=2).flux, [1.0, 5.0])


def test_bad_cuts_raise(data):
    with pytest.raises(InvalidInputError, match="at least one"):
        truncate(data)
    with pytest.raises(InvalidInputError, match="days must be >= 0"):
        truncate(data, days=-1.0)
    with pytest.raises(InvalidInputError, match="one value per light curve"):
        truncate(data, n_points=[1, 2])
    with pytest.raises(InvalidInputError, match="whole numbers"):
        truncate(data, n_points=1.5)
    with pytest.raises(InvalidInputError, match="origin"):
        truncate(data, days=1.0, origin="peak")


@pytest.mark.parametrize("mode", ["points", "days"])
def test_random_truncation_is_seeded_prefix_and_keeps_detections(data, mode):
    a = random_truncate(data, rng=3, mode=mode, min_detections=2)
    b = random_truncate(data, rng=np.random.default_rng(3), mode=mode, min_detections=2)
    np.testing.assert_array_equal(a.mjd, b.mjd)
    c = random_truncate(data, rng=4, mode=mode, min_detections=2)
    assert not np.array_equal(a.lengths, c.lengths)
    full_rows, cut_rows = _rows(data), _rows(a)
    for full, part in zip(full_rows, cut_rows):
        np.testing.assert_array_equal(part.mjd, full.mjd[:len(part)])  # a prefix in time
        assert part.n_detections >= min(2, full.n_detections)
        if full.n_detections < 2:
            assert len(part) == len(full)
    assert (a.lengths < data.lengths).mean() > 0.5
    whole = random_truncate(data, rng=3, mode=mode, full_fraction=1.0)
    np.testing.assert_array_equal(whole.lengths, data.lengths)


def test_random_truncation_points_are_uniform_over_epochs():
    lc = LightCurve("x", np.arange(10.0), ["g"] * 10, np.ones(10), np.ones(10), [True] * 10)
    data = ragged_from_lightcurves([lc] * 4000)
    lengths = random_truncate(data, rng=0, min_detections=1).lengths
    counts = np.bincount(lengths, minlength=11)[1:]
    assert counts.min() > 300 and counts.max() < 500  # 400 expected for each of 1..10
    with pytest.raises(InvalidInputError, match="min_detections"):
        random_truncate(data, min_detections=-1)
