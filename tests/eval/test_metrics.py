"""Metrics against scikit-learn and against answers worked out by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu
from sklearn import metrics as skm

from astroray.errors import InvalidInputError
from astroray.eval import (
    accuracy,
    auroc_vs_reference,
    binary_report,
    classification_report,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    max_probability_uncertainty,
    metric_by_bin,
    misclassification_auroc,
    open_set_auroc,
    operating_point,
    operating_point_at_fpr,
    per_class_metrics,
    predictive_entropy,
    recall_by_subtype,
    roc_auc,
    roc_curve,
    worst_scored,
)


def _binary(seed, n=2000, separation=1.5, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    s = rng.normal(0, 1, n) + separation * y
    if ties:
        s = np.round(s, 1)  # many tied scores
    return y.astype(int), s


# --------------------------------------------------------------------------- binary


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_matches_scikit_learn(seed, ties):
    y, s = _binary(seed, ties=ties)
    assert roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    curve = roc_curve(y, s)
    fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(curve.fpr, fpr)
    np.testing.assert_allclose(curve.tpr, tpr)
    np.testing.assert_array_equal(curve.thresholds, thr)
    assert curve.n_positive == y.sum() and curve.n_negative == (1 - y).sum()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-5, 5)), min_size=2, max_size=40))
def test_auc_is_the_mann_whitney_probability(pairs):
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], float)
    if y.all() or not y.any():
        with pytest.raises(InvalidInputError, match="needs both classes"):
            roc_auc(y, s)
        return
    u = mannwhitneyu(s[y], s[~y]).statistic  # ties count half
    assert roc_auc(y, s) == pytest.approx(u / (y.sum() * (~y).sum()), abs=1e-12)


def test_operating_point_at_fpr_known_answer():
    negatives = np.arange(100.0)  # 100 negatives scored 0..99
    positives = np.array([99.5, 98.5, 50.5, 10.5])
    y = np.r_[np.zeros(100), np.ones(4)]
    s = np.r_[negatives, positives]
    op = operating_point_at_fpr(y, s, target_fpr=0.01)  # at most one false positive
    assert (op.threshold, op.fp, op.tp, op.fn, op.tn) == (98.5, 1, 2, 2, 99)
    assert op.fpr == pytest.approx(0.01) and op.fnr == pytest.approx(0.5) and op.target_fpr == 0.01
    assert op.precision == pytest.approx(2 / 3)
    strict = operating_point_at_fpr(y, s, target_fpr=0.0)
    assert (strict.threshold, strict.fp, strict.tp) == (99.5, 0, 1) and strict.fnr == pytest.approx(0.75)
    loose = operating_point_at_fpr(y, s, target_fpr=0.5)
    assert loose.fpr <= 0.5 and loose.tp == 3  # threshold 50 -> 50 negatives (fpr 0.5) and 3 positives


def test_operating_point_never_exceeds_target_with_ties_and_can_call_nothing_positive():
    y = np.array([0, 0, 0, 1, 1, 0])
    s = np.array([0.9, 0.9, 0.2, 0.5, 0.3, 0.1])  # the top score is a tie of two negatives
    op = operating_point_at_fpr(y, s, target_fpr=0.2)  # 1 FP of 4 would be 0.25: not allowed
    assert op.fp == 0 and op.tp == 0 and op.fnr == 1.0 and op.threshold > 0.9
    for seed in range(3):
        y2, s2 = _binary(seed, ties=True)
        for target in (0.001, 0.01, 0.05):
            assert operating_point_at_fpr(y2, s2, target_fpr=target).fpr <= target


def test_operating_point_matches_scikit_learn_counts():
    y, s = _binary(4)
    op = operating_point(y, s, threshold=0.7)
    pred = s >= 0.7
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert (op.tp, op.fp, op.tn, op.fn) == (tp, fp, tn, fn)
    assert op.precision == pytest.approx(skm.precision_score(y, pred))
    assert op.recall == pytest.approx(skm.recall_score(y, pred))
    json.dumps(op.to_dict(), allow_nan=False)
    no_positives = operating_point(np.zeros(5), np.arange(5.0), threshold=10.0)
    assert np.isnan(no_positives.recall) and np.isnan(no_positives.precision) and no_positives.fpr == 0.0
    assert no_positives.to_dict()["recall"] is None


def test_recall_by_subtype_known_answer():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.2, 0.8, 0.1, 0.7, 0.3, 0.4, 0.6])
    kinds = np.array(["transient", "transient", "variable", "cosmic_ray", "cosmic_ray", "dipole", "dipole", "dipole"])
    out = recall_by_subtype(y, s, kinds, threshold=0.5)
    assert out["transient"] == {"n": 2, "n_correct": 1, "recall": 0.5, "positive": True}
    assert out["variable"]["recall"] == 1.0
    assert out["cosmic_ray"] == {"n": 2, "n_correct": 1, "recall": 0.5, "positive": False}
    assert out["dipole"]["recall"] == pytest.approx(2 / 3)


def test_worst_scored_orders_by_how_wrong():
    y = np.array([1, 1, 0, 0, 1, 0])
    s = np.array([0.9, 0.05, 0.95, 0.1, 0.5, 0.6])
    # score ranks 0..5 / 5: #1 0, #3 .2, #4 .4, #5 .6, #0 .8, #2 1; wrongness: positives 1 - rank, negatives rank
    # -> #1 1.0, #2 1.0, #4 0.6, #5 0.6, #0 0.2, #3 0.2 (ties kept in index order)
    assert worst_scored(y, s, n=3).tolist() == [1, 2, 4]
    all_six = worst_scored(y, s, n=6).tolist()
    assert all_six[:4] == [1, 2, 4, 5] and set(all_six[4:]) == {0, 3}
    assert worst_scored(y, s, n=2, among="positive").tolist() == [1, 4]
    assert worst_scored(y, s, n=10, among="negative").tolist() == [2, 5, 3]
    # any monotone rescaling of the scores gives the same list
    assert worst_scored(y, np.log(s / (1 - s)), n=6).tolist() == worst_scored(y, s, n=6).tolist()


def test_binary_report_is_strict_json_and_consistent():
    y, s = _binary(5, separation=2.5)
    p = 1 / (1 + np.exp(-(s - 1)))
    kinds = np.where(y == 1, "real", np.where(np.arange(y.size) % 2, "dipole", "cosmic_ray"))
    report = binary_report(y, p, threshold=0.5, target_fpr=0.01, subtypes=kinds)
    text = json.dumps(report, allow_nan=False)
    back = json.loads(text)
    assert back["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert back["at_target_fpr"]["fpr"] <= 0.01
    assert back["at_threshold"]["tp"] == int(np.sum((p >= 0.5) & (y == 1)))
    assert back["ece"] == pytest.approx(expected_calibration_error(y, p))
    assert set(back["recall_by_subtype"]) == {"real", "dipole", "cosmic_ray"}
    assert binary_report(y, s)["ece"] is None  # scores outside [0, 1] are not probabilities


# --------------------------------------------------------------------------- multi-class


def _multiclass(seed, n=1500, k=5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n))
    return y, pred


@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_metrics_match_scikit_learn(seed):
    y, pred = _multiclass(seed)
    names = np.array(["AGN", "RR Lyrae", "SN II", "SN Ia", "TDE"])
    yt, yp = names[y], names[pred]
    cm = confusion_matrix(yt, yp)
    assert cm.labels == sorted(names.tolist())
    np.testing.assert_array_equal(cm.counts, skm.confusion_matrix(yt, yp, labels=cm.labels))
    np.testing.assert_allclose(cm.normalized, skm.confusion_matrix(yt, yp, labels=cm.labels, normalize="true"))
    order = ["SN Ia", "SN II", "TDE", "AGN", "RR Lyrae"]
    np.testing.assert_array_equal(confusion_matrix(yt, yp, labels=order).counts,
                                  skm.confusion_matrix(yt, yp, labels=order))
    p, r, f, support = skm.precision_recall_fscore_support(yt, yp, labels=order)
    per = per_class_metrics(yt, yp, labels=order)
    assert list(per) == order
    for i, name in enumerate(order):
        assert per[name]["precision"] == pytest.approx(p[i])
        assert per[name]["recall"] == pytest.approx(r[i])
        assert per[name]["f1"] == pytest.approx(f[i])
        assert per[name]["support"] == support[i]
    assert macro_f1(yt, yp) == pytest.approx(skm.f1_score(yt, yp, average="macro"))
    assert accuracy(yt, yp) == pytest.approx(skm.accuracy_score(yt, yp))


def test_classes_missing_from_truth_or_predictions():
    y = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 3, 1, 0, 0])  # class 3 predicted but absent; class 2 present but never predicted
    per = per_class_metrics(y, pred, labels=[0, 1, 2, 3, 4])
    assert np.isnan(per["3"]["recall"]) and per["3"]["precision"] == 0.0 and per["3"]["f1"] == 0.0
    assert np.isnan(per["2"]["precision"]) and per["2"]["recall"] == 0.0 and per["2"]["f1"] == 0.0
    assert np.isnan(per["4"]["f1"]) and per["4"]["support"] == 0  # neither present nor predicted
    # the mean leaves out class 4 (undefined) and matches scikit-learn with its default labels
    assert macro_f1(y, pred, labels=[0, 1, 2, 3, 4]) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    cm = confusion_matrix(y, pred, labels=[0, 1, 2, 3, 4])
    assert np.isnan(cm.normalized[3]).all() and np.isnan(cm.normalized[4]).all()
    assert cm.to_dict()["normalized"][4] == [None] * 5


def test_classification_report_with_probabilities():
    rng = np.random.default_rng(3)
    n, k = 3000, 4
    logits = rng.normal(0, 1.5, (n, k))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in proba])
    names = ["SN Ia", "SN II", "SLSN", "TDE"]
    report = classification_report(y, proba=proba, labels=names)
    back = json.loads(json.dumps(report, allow_nan=False))
    pred = proba.argmax(axis=1)
    assert back["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert back["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert back["confusion_matrix"]["counts"] == skm.confusion_matrix(y, pred).tolist()
    assert back["labels"] == names and list(back["per_class"]) == names
    assert back["nll"] == pytest.approx(skm.log_loss(y, proba))
    assert back["macro_roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert back["ece"] == pytest.approx(expected_calibration_error(y, proba))
    assert back["ece"] < 0.05  # labels were drawn from these probabilities: calibrated by construction
    # string labels in y_true are mapped through labels
    by_name = classification_report(np.array(names)[y], proba=proba, labels=names)
    assert by_name["accuracy"] == report["accuracy"]
    only_pred = classification_report(np.array(names)[y], np.array(names)[pred])
    assert only_pred["macro_f1"] == pytest.approx(report["macro_f1"]) and "ece" not in only_pred


# --------------------------------------------------------------------------- binned


def test_metric_by_bin_known_answer():
    days = np.array([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, np.nan, 20.0])
    y = np.array([1, 1, 0, 0, 1, 0, 1, 1, 0, 0])
    pred = np.array([1, 0, 0, 0, 1, 1, 1, 1, 0, 0])
    binned = metric_by_bin(days, y, pred, metric="accuracy", bins=[0, 2, 4, 6, 8])
    np.testing.assert_array_equal(binned.counts, [2, 2, 2, 2])
    np.testing.assert_allclose(binned.values, [0.5, 1.0, 0.5, 1.0])
    assert binned.n_outside == 2
    np.testing.assert_allclose(binned.centers, [1, 3, 5, 7])
    json.dumps(binned.to_dict(), allow_nan=False)
    # ROC AUC is undefined in a bin with one class: NaN there, counted anyway
    scores = np.array([0.9, 0.8, 0.2, 0.3, 0.6, 0.4, 0.7, 0.65, 0.1, 0.0])
    auc = metric_by_bin(days, y, scores, metric="roc_auc", bins=[0, 4, 8])
    assert auc.values[0] == pytest.approx(1.0) and auc.values[1] == pytest.approx(skm.roc_auc_score(
        y[4:8], scores[4:8]))
    last = metric_by_bin(days, y, scores, metric="roc_auc", bins=[0, 4, 6, 8])  # days 6-8: positives only
    assert np.isfinite(last.values[:2]).all() and np.isnan(last.values[2]) and last.counts[2] == 2
    assert last.to_dict()["values"][2] is None
    sparse = metric_by_bin(days, y, pred, bins=[0, 4, 8], min_count=5)
    assert np.isnan(sparse.values).all()


def test_metric_by_bin_equal_width_and_callable():
    rng = np.random.default_rng(0)
    n_det = rng.integers(1, 30, 500)
    y = rng.integers(0, 3, 500)
    pred = np.where(rng.random(500) < n_det / 30, y, (y + 1) % 3)  # more detections, more often right
    binned = metric_by_bin(n_det, y, pred, metric="macro_f1", bins=5)
    assert binned.counts.sum() == 500 and binned.edges[0] == n_det.min() and binned.edges[-1] == n_det.max()
    assert binned.values[-1] > binned.values[0]
    custom = metric_by_bin(n_det, y, pred, metric=lambda t, p: float(np.mean(t != p)), bins=5)
    acc = metric_by_bin(n_det, y, pred, metric="accuracy", bins=5)
    np.testing.assert_allclose(custom.values, 1 - acc.values)


# --------------------------------------------------------------------------- open set and uncertainty


def test_open_set_and_misclassification_auroc():
    rng = np.random.default_rng(6)
    unknown = rng.random(400) < 0.2
    score = rng.normal(0, 1, 400) + 2 * unknown
    assert open_set_auroc(score, unknown) == pytest.approx(skm.roc_auc_score(unknown, score))
    assert open_set_auroc(np.r_[0.0, 0.1, 0.9], [False, False, True]) == 1.0
    correct = rng.random(400) < 0.8
    uncertainty = rng.normal(0, 1, 400) + 1.0 * ~correct
    assert misclassification_auroc(uncertainty, correct) == pytest.approx(skm.roc_auc_score(~correct, uncertainty))
    with pytest.raises(InvalidInputError, match="is_unknown has no positive"):
        open_set_auroc(score, np.zeros(400, bool))
    with pytest.raises(InvalidInputError, match="is_correct"):
        misclassification_auroc(uncertainty, np.ones(400, bool))


def test_auroc_vs_reference():
    rng = np.random.default_rng(7)
    labels = np.array(["Ia"] * 200 + ["91T"] * 30 + ["Ia-pec"] * 10 + ["Iax"] * 2)
    score = rng.normal(0, 1, labels.size) + np.select([labels == "91T", labels == "Ia-pec"], [1.5, 0.5], 0.0)
    out = auroc_vs_reference(score, labels, reference="Ia", min_count=3)
    ref = labels == "Ia"
    for cls in ("91T", "Ia-pec"):
        keep = ref | (labels == cls)
        assert out["per_class"][cls]["auroc"] == pytest.approx(skm.roc_auc_score(labels[keep] == cls, score[keep]))
    assert out["per_class"]["Iax"] == {"auroc": None, "n": 2}
    assert out["n_classes"] == 2 and out["n_reference"] == 200
    assert out["mean_auroc"] == pytest.approx((out["per_class"]["91T"]["auroc"] + out["per_class"]["Ia-pec"]["auroc"])
                                              / 2)
    json.dumps(out, allow_nan=False)
    with pytest.raises(InvalidInputError, match="reference"):
        auroc_vs_reference(score, labels, reference="II")


def test_uncertainty_scores():
    proba = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(max_probability_uncertainty(proba), [0.0, 2 / 3, 0.5])
    np.testing.assert_allclose(predictive_entropy(proba), [0.0, np.log(3), np.log(2)])
    np.testing.assert_allclose(predictive_entropy(proba, normalize=True), [0.0, 1.0, np.log(2) / np.log(3)])


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("call", "match"), [
    (lambda: roc_auc([], []), "empty"),
    (lambda: roc_auc([0, 1, 1], [0.1, np.nan, 0.3]), "NaN"),
    (lambda: roc_auc([0, 1, 1], [0.1, np.inf, 0.3]), "infinite"),
    (lambda: roc_auc([0, 1, 1], [0.1, 0.3]), "one row per example"),
    (lambda: roc_auc([1, 1, 1], [0.1, 0.2, 0.3]), "no negative"),
    (lambda: roc_auc([0, 0, 0], [0.1, 0.2, 0.3]), "no positive"),
    (lambda: roc_auc([0, 2, 1], [0.1, 0.2, 0.3]), "only 0 and 1"),
    (lambda: roc_auc(["real", "bogus"], [0.1, 0.2]), "0/1 or boolean"),
    (lambda: roc_auc([[0, 1]], [[0.1, 0.2]]), "1-D"),
    (lambda: roc_curve([1, 1], [0.1, 0.2]), "no negative"),
    (lambda: operating_point_at_fpr([0, 1], [0.1, 0.2], target_fpr=1.5), "target_fpr"),
    (lambda: operating_point_at_fpr([1, 1], [0.1, 0.2]), "no negative"),
    (lambda: operating_point([0, 1], [0.1, 0.2], threshold=np.nan), "threshold"),
    (lambda: binary_report([1, 1], [0.1, 0.2]), "no negative"),
    (lambda: confusion_matrix([], []), "empty"),
    (lambda: confusion_matrix([0, 1], [0]), "one row per example"),
    (lambda: confusion_matrix([0, 1, 5], [0, 1, 1], labels=[0, 1]), r"not in labels"),
    (lambda: confusion_matrix(["a", "b"], [0, 1]), "different kinds"),
    (lambda: classification_report([0, 1]), "y_pred"),
    (lambda: classification_report([0, 1], proba=[[0.5, 0.6], [0.2, 0.8]]), "sum to 1"),
    (lambda: classification_report([0, 1], proba=[[2.0, -1.0], [0.2, 0.8]]), r"\[0, 1\]"),
    (lambda: classification_report([0, 2], proba=[[0.5, 0.5], [0.2, 0.8]]), "outside 0..1"),
    (lambda: classification_report(["a", "c"], proba=[[0.5, 0.5], [0.2, 0.8]], labels=["a", "b"]), "not in labels"),
    (lambda: classification_report([0, 1], proba=[[0.5, 0.5], [0.2, 0.8]], labels=["a"]), "columns"),
    (lambda: metric_by_bin([1.0, 2.0], [0, 1], [0, 1], metric="f2"), "unknown metric"),
    (lambda: metric_by_bin([1.0, 2.0], [0, 1], [0.1, np.nan], metric="roc_auc"), "NaN"),
    (lambda: metric_by_bin([1.0, 2.0], [0, 1], [0, 1], bins=[2, 1]), "increasing"),
    (lambda: metric_by_bin([np.nan, np.nan], [0, 1], [0, 1]), "no finite"),
    (lambda: metric_by_bin([1.0, 2.0], ["real", "bogus"], [0.1, 0.2], metric="roc_auc"), "0/1 or boolean"),
    (lambda: metric_by_bin([1.0, 2.0, 3.0], [1, 1, 1], [0.1, 0.2, 0.3], metric="roc_auc"), "every bin"),
    (lambda: worst_scored([0, 1], [0.1, 0.2], n=0), "positive integer"),
    (lambda: max_probability_uncertainty([0.1, 0.9]), "2-D"),
])
def test_bad_input_raises_a_clear_error(call, match):
    with pytest.raises(InvalidInputError, match=match):
        call()
