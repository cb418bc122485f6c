"""Evaluation: matching detections to truth, grouped splits, metrics, calibration and plots (no Ray, no torch).

Models hand this package NumPy scores, logits and labels:

* truth matching by position: :func:`match_to_truth`, :func:`nearest_truth`
* leakage-safe splits by a group key (pair id, object id): :func:`split_groups`,
  :func:`assign_split` (stateless, for Ray Data batches), :func:`group_kfold`
* metrics: :func:`roc_auc`, :func:`roc_curve`, :func:`operating_point`,
  :func:`operating_point_at_fpr`, :func:`recall_by_subtype`, :func:`binary_report`,
  :func:`confusion_matrix`, :func:`per_class_metrics`, :func:`macro_f1`,
  :func:`classification_report`, :func:`metric_by_bin`, open-set and uncertainty AUROCs
* calibration: :func:`expected_calibration_error`, :func:`reliability_diagram`,
  :class:`TemperatureScaling`, :class:`IsotonicCalibration` (JSON round trip)
* PNG figures: :func:`plot_roc`, :func:`plot_confusion_matrix`, :func:`plot_reliability`,
  :func:`plot_metric_vs_covariate`, :func:`plot_stamp_gallery`, :func:`plot_score_histograms`,
  :func:`plot_lightcurves`

::

    from astroray.eval import binary_report, plot_roc, split_groups
    split = split_groups(pair_ids)
    report = binary_report(labels[test], scores[test], threshold=0.5, target_fpr=0.01, subtypes=kinds[test])
    plot_roc(labels[test], scores[test], "roc.png")
"""
from astroray.eval.calibration import (
    IsotonicCalibration,
    NotFittedError,
    ReliabilityDiagram,
    TemperatureScaling,
    calibrator_from_dict,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_diagram,
)
from astroray.eval.matching import match_to_truth, nearest_truth
from astroray.eval.metrics import (
    BinnedMetric,
    ConfusionMatrix,
    OperatingPoint,
    RocCurve,
    accuracy,
    auroc_vs_reference,
    binary_report,
    classification_report,
    confusion_matrix,
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
from astroray.eval.plots import (
    plot_confusion_matrix,
    plot_lightcurves,
    plot_metric_vs_covariate,
    plot_reliability,
    plot_roc,
    plot_score_histograms,
    plot_stamp_gallery,
)
from astroray.eval.splits import (
    DEFAULT_FRACTIONS,
    GroupFolds,
    GroupSplit,
    assign_split,
    group_kfold,
    split_groups,
    stable_unit_hash,
)

__all__ = [
    # matching
    "match_to_truth",
    "nearest_truth",
    # splits
    "DEFAULT_FRACTIONS",
    "GroupSplit",
    "GroupFolds",
    "assign_split",
    "split_groups",
    "group_kfold",
    "stable_unit_hash",
    # metrics
    "RocCurve",
    "OperatingPoint",
    "ConfusionMatrix",
    "BinnedMetric",
    "roc_auc",
    "roc_curve",
    "operating_point",
    "operating_point_at_fpr",
    "recall_by_subtype",
    "worst_scored",
    "binary_report",
    "confusion_matrix",
    "per_class_metrics",
    "macro_f1",
    "accuracy",
    "classification_report",
    "metric_by_bin",
    "open_set_auroc",
    "misclassification_auroc",
    "auroc_vs_reference",
    "max_probability_uncertainty",
    "predictive_entropy",
    # calibration
    "ReliabilityDiagram",
    "reliability_diagram",
    "expected_calibration_error",
    "negative_log_likelihood",
    "TemperatureScaling",
    "IsotonicCalibration",
    "calibrator_from_dict",
    "NotFittedError",
    # plots
    "plot_roc",
    "plot_confusion_matrix",
    "plot_reliability",
    "plot_metric_vs_covariate",
    "plot_stamp_gallery",
    "plot_score_histograms",
    "plot_lightcurves",
]
