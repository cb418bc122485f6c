"""Calibration: ECE by hand, reliability data against scikit-learn, calibrators that fix mis-calibrated scores."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy.special import expit, softmax
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import log_loss, roc_auc_score

from astroray.errors import InvalidInputError
from astroray.eval import (
    IsotonicCalibration,
    NotFittedError,
    TemperatureScaling,
    calibrator_from_dict,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_diagram,
    roc_auc,
)


def _binary_logits(seed, n=6000, overconfidence=3.0):
    """True log-odds z, labels drawn from sigmoid(z), and a model whose logits are ``overconfidence * z``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    y = rng.random(n) < expit(z)
    return z * overconfidence, y


def _multiclass_logits(seed, n=6000, k=6, overconfidence=2.5):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.2, (n, k))
    p = softmax(z, axis=1)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)  # one draw per row from p
    return z * overconfidence, y


# --------------------------------------------------------------------------- ECE


def test_binary_ece_by_hand():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.1, 0.3, 0.7, 0.8, 0.95])
    # bin (0, 0.5]: p 0.1, 0.3 -> mean 0.2, positives 1/2 -> |0.5 - 0.2| = 0.3, weight 2/5
    # bin (0.5, 1]: p 0.7, 0.8, 0.95 -> mean 0.81667, positives 2/3 -> 0.15, weight 3/5
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.4 * 0.3 + 0.6 * 0.15)
    d = reliability_diagram(y, p, n_bins=2)
    np.testing.assert_allclose(d.confidence, [0.2, 2.45 / 3])
    np.testing.assert_allclose(d.accuracy, [0.5, 2 / 3])
    np.testing.assert_array_equal(d.counts, [2, 3])
    assert d.kind == "binary"


def test_top_label_ece_by_hand_and_bin_edges():
    proba = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.35, 0.25]])
    y = np.array([0, 1, 1, 2])
    # confidences 0.9, 0.6, 0.7, 0.4; right: yes, no, yes, no
    # 2 bins: (0, 0.5] holds 0.4 (wrong): |0 - 0.4| * 1/4; (0.5, 1] holds 0.9, 0.6, 0.7 (2 of 3 right):
    # |2/3 - 0.7333| * 3/4
    expected = 0.25 * 0.4 + 0.75 * abs(2 / 3 - (0.9 + 0.6 + 0.7) / 3)
    assert expected_calibration_error(y, proba, n_bins=2) == pytest.approx(expected)
    assert reliability_diagram(y, proba, n_bins=2).kind == "top-label"
    # a confidence exactly on an edge belongs to the lower bin, (i/M, (i+1)/M]; 0 to the first
    d = reliability_diagram([0, 1, 1], [0.0, 0.5, 1.0], n_bins=2)
    np.testing.assert_array_equal(d.counts, [2, 1])


def test_reliability_matches_scikit_learn_calibration_curve():
    logits, y = _binary_logits(0, overconfidence=2.0)
    p = expit(logits)
    d = reliability_diagram(y, p, n_bins=10)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    filled = d.counts > 0
    np.testing.assert_allclose(d.accuracy[filled], prob_true)
    np.testing.assert_allclose(d.confidence[filled], prob_pred)
    json.dumps(d.to_dict(), allow_nan=False)


def test_nll_matches_scikit_learn():
    logits, y = _multiclass_logits(1, n=500)
    p = softmax(logits, axis=1)
    assert negative_log_likelihood(y, p) == pytest.approx(log_loss(y, p))
    lb, yb = _binary_logits(1, n=500)
    assert negative_log_likelihood(yb, expit(lb)) == pytest.approx(log_loss(yb, expit(lb)))


# --------------------------------------------------------------------------- temperature scaling


def test_temperature_scaling_binary_fixes_overconfidence_and_keeps_the_ranking():
    val_logits, val_y = _binary_logits(0)
    test_logits, test_y = _binary_logits(1)
    calib = TemperatureScaling().fit(val_logits, val_y)
    assert calib.temperature == pytest.approx(3.0, rel=0.1)  # the logits were made 3x too confident
    assert calib.nll_after < calib.nll_before
    before = expected_calibration_error(test_y, expit(test_logits))
    after = expected_calibration_error(test_y, calib.transform(test_logits))
    assert before > 0.08 and after < 0.03, (before, after)
    assert roc_auc(test_y, calib.transform(test_logits)) == roc_auc(test_y, test_logits)


def test_temperature_minimises_the_nll_on_a_grid():
    logits, y = _multiclass_logits(2, n=2000)
    calib = TemperatureScaling().fit(logits, y)
    grid = np.linspace(0.5, 6.0, 276)  # steps of 0.02
    nll = [log_loss(y, softmax(logits / t, axis=1), labels=range(6)) for t in grid]
    assert calib.temperature == pytest.approx(grid[int(np.argmin(nll))], abs=0.02)
    assert calib.nll_after <= min(nll) + 1e-9
    under = TemperatureScaling().fit(logits / 10.0, y)  # under-confident logits: T < 1 sharpens them
    assert under.temperature < 1.0


def test_temperature_scaling_multiclass_keeps_argmax_and_lowers_ece():
    val_logits, val_y = _multiclass_logits(3)
    test_logits, test_y = _multiclass_logits(4)
    calib = TemperatureScaling().fit(val_logits, val_y)
    raw = softmax(test_logits, axis=1)
    fixed = calib.transform(test_logits)
    np.testing.assert_array_equal(fixed.argmax(axis=1), raw.argmax(axis=1))
    np.testing.assert_allclose(fixed.sum(axis=1), 1.0)
    before, after = expected_calibration_error(test_y, raw), expected_calibration_error(test_y, fixed)
    assert before > 0.1 and after < 0.03, (before, after)


def test_temperature_round_trip_through_json():
    logits, y = _multiclass_logits(5, n=800)
    calib = TemperatureScaling().fit(logits, y)
    saved = json.loads(json.dumps(calib.to_dict(), allow_nan=False))
    for loaded in (TemperatureScaling.from_dict(saved), calibrator_from_dict(saved)):
        assert isinstance(loaded, TemperatureScaling)
        np.testing.assert_array_equal(loaded.transform(logits), calib.transform(logits))


def test_temperature_warns_at_the_bound_on_separable_data():
    logits = np.r_[-np.linspace(1, 5, 20), np.linspace(1, 5, 20)]
    y = np.r_[np.zeros(20), np.ones(20)]
    with pytest.warns(UserWarning, match="bound"):
        calib = TemperatureScaling(bounds=(0.1, 10.0)).fit(logits, y)
    assert calib.temperature == pytest.approx(0.1)


# --------------------------------------------------------------------------- isotonic


def test_isotonic_binary_lowers_held_out_ece_and_matches_scikit_learn():
    rng = np.random.default_rng(8)

    def scores(n):  # a badly mis-calibrated, non-linear score: P(real) = s**3
        s = rng.random(n)
        return s, rng.random(n) < s ** 3

    val_s, val_y = scores(6000)
    test_s, test_y = scores(6000)
    calib = IsotonicCalibration().fit(val_s, val_y)
    ref = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(val_s, val_y.astype(float))
    np.testing.assert_allclose(calib.transform(test_s), ref.predict(test_s))
    before = expected_calibration_error(test_y, test_s)
    after = expected_calibration_error(test_y, calib.transform(test_s))
    assert before > 0.15 and after < 0.03, (before, after)
    order = np.argsort(test_s)
    assert np.all(np.diff(calib.transform(test_s)[order]) >= 0)  # never reverses an order
    assert roc_auc_score(test_y, calib.transform(test_s)) == pytest.approx(roc_auc_score(test_y, test_s), abs=0.01)
    assert calib.transform(np.array([-5.0, 5.0])).tolist() == [calib.y_thresholds[0][0], calib.y_thresholds[0][-1]]


def test_isotonic_multiclass_renormalises_and_round_trips():
    val_logits, val_y = _multiclass_logits(9)
    test_logits, test_y = _multiclass_logits(10)
    calib = IsotonicCalibration().fit(softmax(val_logits, axis=1), val_y)
    fixed = calib.transform(softmax(test_logits, axis=1))
    np.testing.assert_allclose(fixed.sum(axis=1), 1.0)
    before = expected_calibration_error(test_y, softmax(test_logits, axis=1))
    after = expected_calibration_error(test_y, fixed)
    assert after < before / 3, (before, after)
    saved = json.loads(json.dumps(calib.to_dict(), allow_nan=False))
    loaded = calibrator_from_dict(saved)
    assert isinstance(loaded, IsotonicCalibration)
    np.testing.assert_array_equal(loaded.transform(softmax(test_logits, axis=1)), fixed)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: expected_calibration_error([], []), InvalidInputError, "empty"),
    (lambda: expected_calibration_error([0, 1], [0.2, np.nan]), InvalidInputError, "NaN"),
    (lambda: expected_calibration_error([0, 1], [0.2, 3.0]), InvalidInputError, "logits"),
    (lambda: expected_calibration_error([0, 1], [0.2]), InvalidInputError, "one row per example"),
    (lambda: expected_calibration_error([0, 1], [[0.2, 0.3], [0.5, 0.5]]), InvalidInputError, "sum to 1"),
    (lambda: expected_calibration_error([0, 3], [[0.5, 0.5], [0.5, 0.5]]), InvalidInputError, "outside 0..1"),
    (lambda: expected_calibration_error([0, 1], [0.2, 0.4], n_bins=0), InvalidInputError, "n_bins"),
    (lambda: TemperatureScaling().fit([0.1, 0.2, 0.3], [1, 1, 1]), InvalidInputError, "no negative"),
    (lambda: TemperatureScaling().fit([[0.1, 0.2]] * 3, [1, 1, 1]), InvalidInputError, "only class 1"),
    (lambda: TemperatureScaling().fit([0.1, np.nan], [0, 1]), InvalidInputError, "NaN"),
    (lambda: TemperatureScaling().fit([], []), InvalidInputError, "empty"),
    (lambda: TemperatureScaling().fit([0.1, 0.2], [0, 1, 1]), InvalidInputError, "one row per example"),
    (lambda: TemperatureScaling(bounds=(2.0, 1.0)), InvalidInputError, "low < high"),
    (lambda: TemperatureScaling().transform([0.1]), NotFittedError, "not fitted"),
    (lambda: TemperatureScaling().fit([0.1, 2.0], [0, 1]).transform([[0.1, 0.2]]), InvalidInputError,
     "fitted on 1-D"),
    (lambda: IsotonicCalibration().fit([0.1, 0.2], [0, 0]), InvalidInputError, "no positive"),
    (lambda: IsotonicCalibration().fit(np.eye(3)[[0, 1, 1]], [0, 1, 1]), InvalidInputError, r"classes \[2\]"),
    (lambda: IsotonicCalibration().to_dict(), NotFittedError, "not fitted"),
    (lambda: calibrator_from_dict({"method": "platt"}), InvalidInputError, "unknown calibrator"),
    (lambda: TemperatureScaling.from_dict({"method": "temperature"}), InvalidInputError, "malformed"),
    (lambda: TemperatureScaling.from_dict({"method": "isotonic"}), InvalidInputError, "not a saved temperature"),
])
def test_bad_input_raises_a_clear_error(call, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=match):
            call()
