"""Anomaly ranking: detectors against a reference, rank combination, follow-up list and its PNG."""
from __future__ import annotations

import numpy as np
import pytest

from astroray.errors import InvalidInputError, NotFittedError
from astroray.eval import roc_auc
from astroray.models.anomaly import (
    DEFAULT_DETECTORS,
    DETECTORS,
    AnomalyConfig,
    AnomalyDetector,
    follow_up_list,
    plot_top_anomalies,
)
from astroray.records import LightCurve


def blobs(seed=0, n=150, n_features=20, dim=4):
    """Three known clusters (features and a low-dimensional 'embedding'), and a foreign cluster of each."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (3, n_features))
    labels = np.repeat(["a", "b", "c"], n // 3)
    x = centres[np.searchsorted(["a", "b", "c"], labels)] + rng.normal(0, 1, (labels.size, n_features))
    e_centres = rng.normal(0, 4, (3, dim))
    e = e_centres[np.searchsorted(["a", "b", "c"], labels)] + rng.normal(0, 0.5, (labels.size, dim))
    foreign_x = rng.normal(0, 1, (20, n_features)) + 12.0
    foreign_e = rng.normal(0, 0.5, (20, dim)) + 10.0
    return x, e, labels, foreign_x, foreign_e


def test_foreign_objects_rank_first_in_every_detector():
    x, e, labels, fx, fe = blobs()
    det = AnomalyDetector(AnomalyConfig(n_neighbors=5, n_estimators=50, detectors=DETECTORS)).fit(
        x, embeddings=e, labels=labels)
    res = det.run(np.vstack([x[:60], fx]), embeddings=np.vstack([e[:60], fe]))
    is_foreign = np.r_[np.zeros(60, bool), np.ones(20, bool)]
    assert set(res.scores) == set(DETECTORS)
    for name in DETECTORS:
        assert roc_auc(is_foreign, res.scores[name]) > 0.95, name
    assert roc_auc(is_foreign, res.combined) > 0.95
    assert np.all((res.combined >= 0) & (res.combined <= 1))
    # an object stranger than every reference object is at the top percentile of each detector
    assert np.all(res.combined[60:] > 0.95)


def test_new_objects_like_the_reference_get_middling_percentiles():
    x, e, labels, _, _ = blobs(seed=2, n=600)
    first, second = np.arange(0, 600, 2), np.arange(1, 600, 2)  # two draws of the same clusters
    det = AnomalyDetector(AnomalyConfig(n_neighbors=5, n_estimators=50, detectors=DETECTORS)).fit(
        x[first], embeddings=e[first], labels=labels[first])
    res = det.run(x[second], embeddings=e[second])
    # the reference's scores leave each object out, so objects like it spread over [0, 1]
    for name in DETECTORS:
        assert 0.35 < np.mean(res.percentiles[name]) < 0.65, name


def test_feature_knn_is_the_mean_distance_to_the_nearest_reference_objects_in_principal_components():
    """Checked against a brute-force computation: PCA by SVD of the standardised reference, all distances."""
    x, _, _, fx, _ = blobs(seed=5, n=90)
    cfg = AnomalyConfig(detectors=("feature_knn",), n_neighbors=4, lof_components=3)
    assert AnomalyConfig().detectors == DEFAULT_DETECTORS and "lof" not in DEFAULT_DETECTORS
    det = AnomalyDetector(cfg).fit(x)
    query = np.vstack([x[:5] + 0.3, fx[:5]])
    got = det.run(query).scores["feature_knn"]

    z_ref, z_query = det._standardize(x), det._standardize(query)
    mean = z_ref.mean(axis=0)
    basis = np.linalg.svd(z_ref - mean, full_matrices=False)[2][:3]  # principal axes (sign-free for distances)
    p_ref, p_query = (z_ref - mean) @ basis.T, (z_query - mean) @ basis.T
    d = np.linalg.norm(p_query[:, None] - p_ref[None], axis=-1)
    np.testing.assert_allclose(got, np.sort(d, axis=1)[:, :4].mean(axis=1), rtol=1e-9)
    # the reference's own scores leave the object itself out
    d_ref = np.linalg.norm(p_ref[:, None] - p_ref[None], axis=-1)
    np.fill_diagonal(d_ref, np.inf)
    np.testing.assert_allclose(det._reference["feature_knn"], np.sort(np.sort(d_ref, axis=1)[:, :4].mean(axis=1)),
                               rtol=1e-9)
    assert got[5:].min() > got[:5].max()  # the foreign cluster is farther than shifted reference objects


def test_missing_inputs_and_nan_rows():
    x, e, labels, _, _ = blobs(seed=3)
    with pytest.raises(NotFittedError):
        AnomalyDetector().run(x)
    with pytest.raises(InvalidInputError, match="need embeddings"):
        AnomalyDetector().fit(x, labels=labels)
    with pytest.raises(InvalidInputError, match="labels"):
        AnomalyDetector().fit(x, embeddings=e)
    det = AnomalyDetector(AnomalyConfig(detectors=("iforest", "lof"), n_estimators=50)).fit(x)
    with pytest.raises(InvalidInputError, match="columns"):
        det.run(x[:, :5])
    q = x[:5].copy()
    q[2] = np.nan  # a light curve with no features at all
    q[3, :4] = np.nan  # some missing features: scored (as the median there)
    res = det.run(q)
    assert np.isnan(res.combined[2]) and np.isfinite(np.delete(res.combined, 2)).all()
    assert res.order()[-1] == 2  # NaN ranks last
    with pytest.raises(ValueError, match="unknown detectors"):
        AnomalyConfig(weights={"nope": 1.0})


def test_follow_up_list_and_png(tmp_path):
    x, e, labels, fx, fe = blobs(seed=4)
    det = AnomalyDetector(AnomalyConfig(n_neighbors=5, n_estimators=50)).fit(x, embeddings=e, labels=labels)
    qx, qe = np.vstack([x[:10], fx[:3]]), np.vstack([e[:10], fe[:3]])
    res = det.run(qx, embeddings=qe)
    ids = [f"obj{i}" for i in range(13)]
    table = follow_up_list(res, ids, n=5, extra={"label": list(labels[:10]) + ["?"] * 3})
    assert list(table["rank"]) == [1, 2, 3, 4, 5]
    assert set(table["object_id"][:3]) == {"obj10", "obj11", "obj12"}
    assert np.all(np.diff(table["anomaly_score"].to_numpy()) <= 0)
    assert {"iforest_percentile", "knn_score", "label"} <= set(table.columns)
    rng = np.random.default_rng(0)
    lcs = [LightCurve(i, np.sort(rng.uniform(0, 50, 12)) + 60000, np.array(list("gr" * 6)),
                      rng.normal(100, 10, 12), np.full(12, 10.0), np.ones(12, bool)) for i in ids]
    path = plot_top_anomalies(lcs, res, tmp_path / "top.png", n=4)
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidInputError, match="light curves for"):
        plot_top_anomalies(lcs[:3], res, tmp_path / "bad.png")


@pytest.mark.parametrize("max_features", [1.0, 0.5, 7])
def test_isolation_paths_score_exactly_as_scikit_learn(max_features):
    """The tree-array scorer is scikit-learn's score_samples (Liu et al. 2008's formula), features subsampled or not."""
    from sklearn.ensemble import IsolationForest

    from astroray.models.anomaly import IsolationPaths, average_path_length

    rng = np.random.default_rng(3)
    x = rng.normal(size=(1500, 12))
    forest = IsolationForest(n_estimators=40, max_features=max_features, random_state=0).fit(x)
    test = np.r_[rng.normal(size=(100, 12)), 6 * rng.normal(size=(5, 12)), x[:1]]
    np.testing.assert_allclose(IsolationPaths(forest).score_samples(test), forest.score_samples(test), rtol=0,
                               atol=1e-12)
    # c(n): 0, 0, 1, and the harmonic-number form beyond
    np.testing.assert_allclose(average_path_length([0, 1, 2, 256]),
                               [0, 0, 1, 2 * (np.log(255) + np.euler_gamma) - 2 * 255 / 256])
