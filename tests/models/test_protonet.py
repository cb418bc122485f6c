"""ProtoNet: few-shot support edge cases (K = 1, K too large, one band, NaNs), open set, training, uncertainty."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from astroray.errors import InvalidInputError, InvalidLightCurveError, NotFittedError
from astroray.lightcurves import FeatureConfig, ragged_from_lightcurves, ragged_rows
from astroray.models.protonet import (
    FewShotConfig,
    LightCurveFeaturizer,
    ProtoNetClassifier,
    ProtoNetConfig,
    ProtoNetModule,
    episode_loss,
    input_names,
    train_protonet,
)
from astroray.models.uncertainty import (
    UncertaintyConfig,
    UncertaintyEstimator,
    ensemble_uncertainty,
)
from astroray.records import LightCurve

CONFIG = ProtoNetConfig(features=FeatureConfig(bands="ugriz", groups=("stats", "shape")), hidden=(32,),
                        embedding_dim=8, n_way=3, k_shot=3, n_query=4, dropout=0.0)
KNOWN = ("fast", "slow", "red")


def make_lc(kind: str, i: int, *, seed: int = 0, bands=("g", "r")) -> LightCurve:
    """A hand-made light curve: bumps of three shapes/colours, or a foreign periodic star."""
    rng = np.random.default_rng([seed, i, len(kind)])
    t = np.sort(rng.uniform(0, 100, 40))
    band = np.array([bands[j % len(bands)] for j in range(t.size)])
    amp = 1000.0 * rng.uniform(0.8, 1.2)
    if kind == "fast":
        f = amp * np.exp(-0.5 * ((t - 50) / 5) ** 2)
    elif kind == "slow":
        f = amp * np.exp(-0.5 * ((t - 50) / 30) ** 2)
    elif kind == "red":
        f = amp * np.exp(-0.5 * ((t - 50) / 10) ** 2) * np.where(band == "r", 1.0, 0.2)
    elif kind == "periodic":
        f = amp * (1.0 + 0.5 * np.sin(2 * np.pi * t / 0.7))
    else:
        raise AssertionError(kind)
    err = np.full(t.size, 20.0)
    flux = f + err * rng.standard_normal(t.size)
    return LightCurve(f"{kind}{i}", t + 60000.0, band, flux, err, flux / err > 5, label=kind)


def lightcurves(kinds, n, seed=0):
    return [make_lc(k, i, seed=seed) for k in kinds for i in range(n)]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny steps: one thread (several spin against each other on a busy 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def trained(one_torch_thread):
    """A small ProtoNet trained on the three known kinds (about a second)."""
    lcs = lightcurves(KNOWN, 20)
    matrix = LightCurveFeaturizer(CONFIG).run(lcs)
    y = np.array([KNOWN.index(lc.label) for lc in lcs])
    torch.manual_seed(0)
    return train_protonet(matrix.values, y, CONFIG, max_epochs=4, episodes_per_epoch=25, seed=0)


def test_featurizer_names_and_context():
    m = LightCurveFeaturizer(CONFIG).run(lightcurves(KNOWN, 2))
    assert m.values.shape == (6, len(input_names(CONFIG)))
    assert m.names[-1] == "log_peak_flux"
    # fluxes are in units of the brightest detection: the brightest point's peak feature is 1 (log1p -> log 2)
    j = m.names.index("peak_flux_r")
    assert np.allclose(np.nanmax(m.values[:, [j, m.names.index("peak_flux_g")]], axis=1), np.log(2.0))


def test_k_equals_one(trained):
    clf = ProtoNetClassifier(trained, FewShotConfig(k_shot=1)).fit_support(lightcurves(KNOWN, 3, seed=1))
    res = clf.run(lightcurves(KNOWN, 4, seed=2))
    assert res.probabilities.shape == (12, 3)
    assert np.allclose(res.probabilities.sum(axis=1), 1.0)
    assert np.all(np.isfinite(res.open_set_score))
    # K = 1 has no spread to learn a threshold from: "none of these" is never set until calibrated
    assert clf.open_set_threshold == float("inf") and not res.none_of_these.any()
    threshold = clf.calibrate_open_set(lightcurves(KNOWN, 4, seed=3))
    assert np.isfinite(threshold)


def test_k_larger_than_support_raises_clearly(trained):
    support = lightcurves(("fast", "slow"), 3) + lightcurves(("red",), 2)
    clf = ProtoNetClassifier(trained, FewShotConfig(k_shot=3))
    with pytest.raises(InvalidInputError, match=r"class 'red' has 2 support light curve\(s\) but k_shot=3"):
        clf.fit_support(support)
    # k_shot=None: all there are (3, 3 and 2)
    clf = ProtoNetClassifier(trained, FewShotConfig(k_shot=None)).fit_support(support)
    assert clf.classes == KNOWN


def test_k_uses_the_first_k_of_each_class(trained):
    support = lightcurves(KNOWN, 5, seed=4)
    a = ProtoNetClassifier(trained, FewShotConfig(k_shot=2)).fit_support(support)
    b = ProtoNetClassifier(trained, FewShotConfig()).fit_support(
        [lc for lc in support if int(lc.object_id[-1]) < 2])
    query = lightcurves(KNOWN, 2, seed=5)
    assert np.allclose(a.run(query).probabilities, b.run(query).probabilities)


def test_support_of_one_band_only(trained):
    support = [make_lc(k, i, seed=6, bands=("g",)) for k in KNOWN for i in range(3)]
    clf = ProtoNetClassifier(trained).fit_support(support)
    res = clf.run(lightcurves(KNOWN, 3, seed=7) + [make_lc("slow", 9, seed=8, bands=("g",))])
    assert np.all(np.isfinite(res.probabilities)) and np.all(np.isfinite(res.open_set_score))


def test_nans_dropped_empty_rows_scored_nan(trained):
    clf = ProtoNetClassifier(trained).fit_support(lightcurves(KNOWN, 3, seed=9))
    good = make_lc("fast", 0, seed=10)
    holes = make_lc("slow", 1, seed=10)
    holes.flux[::3] = np.nan  # upper limits: dropped by the default cleaning
    holes.detected[::3] = False
    holes.flux_err[1::5] = np.nan  # unusable errors: dropped
    empty = make_lc("red", 2, seed=10)
    empty.flux_err[:] = np.nan  # nothing usable left
    res = clf.run([good, holes, empty])
    assert np.all(np.isfinite(res.probabilities[:2])) and np.isfinite(res.open_set_score[:2]).all()
    assert np.all(np.isnan(res.probabilities[2])) and np.isnan(res.open_set_score[2])
    assert res.predicted[2] is None and not res.none_of_these[2]
    # a support light curve with nothing usable is refused, by name
    with pytest.raises(InvalidInputError, match="red2"):
        ProtoNetClassifier(trained).fit_support(lightcurves(KNOWN, 2, seed=11) + [empty])
    # a NaN time is a broken light curve, not a missing value
    broken = make_lc("fast", 3, seed=12)
    broken.mjd[4] = np.nan
    with pytest.raises(InvalidLightCurveError, match="MJD"):
        clf.run([broken])


def test_support_errors(trained):
    with pytest.raises(NotFittedError):
        ProtoNetClassifier(trained).run(lightcurves(KNOWN, 1))
    with pytest.raises(InvalidInputError, match="labels has 2 entries"):
        ProtoNetClassifier(trained).fit_support(lightcurves(KNOWN, 1), ["fast", "slow"])
    unlabelled = lightcurves(KNOWN, 1)
    for lc in unlabelled:
        lc.label = None
    with pytest.raises(InvalidInputError, match=r"3 support light curve\(s\) have no label"):
        ProtoNetClassifier(trained).fit_support(unlabelled)
    with pytest.raises(NotFittedError, match="scaler"):
        ProtoNetClassifier(ProtoNetModule(CONFIG))


def test_open_set_ranks_a_foreign_class_first(trained):
    from astroray.eval import open_set_auroc

    clf = ProtoNetClassifier(trained, FewShotConfig(k_shot=5)).fit_support(lightcurves(KNOWN, 5, seed=13))
    known = lightcurves(KNOWN, 6, seed=14)
    foreign = lightcurves(("periodic",), 6, seed=15)
    res = clf.run(known + foreign)
    is_unknown = np.r_[np.zeros(len(known), bool), np.ones(len(foreign), bool)]
    assert open_set_auroc(res.open_set_score, is_unknown) >= 0.95
    # and the known ones are classified
    assert np.mean(res.predicted[:len(known)] == np.array([lc.label for lc in known])) >= 0.8


def test_module_collates_rows_and_trains_a_step():
    from astroray.models.registry import build_module

    module = build_module("protonet", CONFIG.model_dump(mode="json"))
    assert isinstance(module, ProtoNetModule)
    lcs = lightcurves(KNOWN, 4)
    table = ragged_rows(ragged_from_lightcurves(lcs, CONFIG.features), KNOWN)
    batch = module.collate({name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names})
    assert batch["x"].shape == (12, len(input_names(CONFIG))) and batch["label"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    loss = module._step(batch, train=True)[0]  # the training step's loss (no Trainer attached to log it)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in module.encoder.mlp.parameters())
    assert bool(module.encoder.fitted)  # the first batch set the scaler


def test_episode_needs_two_classes():
    enc = ProtoNetModule(CONFIG).encoder
    z = torch.zeros(6, enc.n_inputs)
    loss, acc = episode_loss(enc, z, np.zeros(6, np.int64), n_way=3, k_shot=2, n_query=2, n_episodes=1,
                             rng=np.random.default_rng(0))
    assert loss is None and acc is None


def test_config_validation():
    with pytest.raises(ValueError, match="both feature_center and feature_scale"):
        ProtoNetConfig(feature_center=(0.0,) * len(input_names(ProtoNetConfig())))
    with pytest.raises(ValueError, match="entries"):
        ProtoNetConfig(feature_center=(0.0,), feature_scale=(1.0,))
    with pytest.raises(InvalidInputError, match="two classes"):
        train_protonet(np.zeros((4, len(input_names(CONFIG)))), np.zeros(4), CONFIG)


def test_ensemble_uncertainty_and_ood_flag():
    agree = np.tile([[0.7, 0.2, 0.1]], (3, 4, 1))
    u = ensemble_uncertainty(agree)
    assert np.allclose(u.mutual_information, 0.0, atol=1e-12)
    assert np.allclose(u.entropy, -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)))
    disagree = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    d = ensemble_uncertainty(disagree)
    assert np.isclose(d.mutual_information[0], np.log(2)) and np.isclose(d.expected_entropy[0], 0.0)
    with pytest.raises(InvalidInputError, match="sum to 1"):
        ensemble_uncertainty(np.array([[[0.5, 0.2]]]))
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 2, (200, 3))
    p = np.exp(shared) / np.exp(shared).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in p])  # labels drawn from the probabilities: calibrated
    logits = shared + rng.normal(0, 0.1, (4, 200, 3))  # members agree up to noise
    est = UncertaintyEstimator(UncertaintyConfig(ood_quantile=0.9)).fit(logits, labels, logits=True)
    assert est.calibrator.temperature > 0
    strange = rng.normal(0, 5, (4, 50, 3))  # members disagree wildly
    out = est.run(np.concatenate([logits, strange], axis=1), logits=True)
    assert out.ood[200:].mean() > 0.6 and out.ood[:200].mean() < 0.2
    assert np.allclose(out.probabilities.sum(axis=1), 1.0)
