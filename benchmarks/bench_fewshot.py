"""Rare events from five examples, unknown classes and predictive uncertainty: the ProtoNet checks.

::

    python benchmarks/bench_fewshot.py                        # both tasks, defaults
    python benchmarks/bench_fewshot.py --tasks bts --n-supports 20
    python benchmarks/bench_fewshot.py --tasks simulated --holdout SLSN TDE

Tasks
-----
``bts`` -- ZTF Bright Transient Survey SNe Ia (``../shared/data/lightcurves/bts_snia``):
each spectroscopic subtype against normal SN Ia from K = 5 labelled examples
of each class.  The encoder never sees a BTS light curve: it is trained
episodically on **simulated ZTF light curves** of the simulator's classes
(:mod:`astroray.datasets.lightcurves`; no subtypes there), detections only (BTS
photometry has detections only).  For each of ``--n-supports`` random
supports (5 of the subtype, 5 normal Ia), the prototype of each class is the
mean of its 5 embeddings, the score is the subtype's probability, and the
ROC AUC is taken over every other BTS object of the two classes.  Beside it,
on the same supports: gradient-boosted trees on simple features (peak,
rise/decline, colour, duration, the extractor's statistics; scikit-learn's
HistGradientBoostingClassifier with leaves of >= 2 objects), and nearest
prototypes in the standardised feature space (no learned encoder).  Inputs:
light curve and, with ``--redshift`` (default on), the catalogue redshift
(absolute peak magnitude, rest-frame times); the catalogue's peak magnitude,
absolute magnitude, rise and fade columns are never inputs.

``simulated`` -- the simulator's LSST classes with one class (``--holdout``)
left out of training entirely.  An ensemble of ``--members`` ProtoNets is
trained on the other classes' training objects; prototypes are their
training objects' means.  On the test objects: the open-set AUROC of the
ProtoNet's "none of these" score (held-out class against the known ones);
the anomaly score (prototype, k-NN, Isolation Forest and k-NN on the
features combined by rank; :mod:`astroray.models.anomaly`) ROC AUC of the
held-out class against the known ones; and, among known test objects, how
well the predictive entropy and mutual information of the ensemble separate
misclassified from correct objects (AUROC), with the ECE of the
probabilities before and after temperature scaling on the validation
objects.  Writes the ranked follow-up list (CSV) and a PNG of the top light
curves.

Every figure is in the JSON written to ``benchmarks/results/``.
``OMP_WAIT_POLICY=PASSIVE`` and one torch thread: on a shared, busy CPU
OpenMP's spinning threads slow small steps by an order of magnitude.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BTS_REFERENCE = "SN Ia"
BASELINE_FIGURES = {"SN Ia-91T": 0.64, "SN Ia-pec": 0.58}  # the gradient-boosted baseline


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _shown(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _summary(values) -> dict:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)) if v.size > 1 else 0.0, 4),
            "min": round(float(v.min()), 4), "max": round(float(v.max()), 4), "n": int(v.size)}


# --------------------------------------------------------------------------- encoders


def protonet_config(bands: str, *, detections_only: bool, redshift: bool, hidden, embedding_dim: int, seed: int):
    from astroray.lightcurves import FeatureConfig
    from astroray.models.protonet import ProtoNetConfig

    context = ("log_peak_flux", "abs_peak_mag") if redshift else ("log_peak_flux",)
    return ProtoNetConfig(features=FeatureConfig(bands=bands, groups=("stats", "shape"),
                                                 detections_only=detections_only),
                          context=context, rest_frame=redshift, hidden=tuple(hidden), embedding_dim=embedding_dim,
                          n_way=5, k_shot=5, n_query=10, seed=seed)


def train_members(matrix, labels, config, *, members: int, epochs: int, episodes: int, val=None, seed: int = 0):
    from astroray.models.protonet import train_protonet

    out = []
    for m in range(members):
        t = time.time()
        module = train_protonet(matrix.values, labels, config, max_epochs=epochs, episodes_per_epoch=episodes,
                                val_features=None if val is None else val[0].values,
                                val_labels=None if val is None else val[1], seed=seed + m)
        last = module.history[-1] if module.history else {}
        print(f"  member {m}: {time.time() - t:.1f} s, last epoch {last}", flush=True)
        out.append(module)
    return out


# --------------------------------------------------------------------------- BTS


def load_bts(root: Path):
    import pandas as pd

    from astroray.io import read_lightcurves

    catalogue = pd.read_csv(root / "bts.csv").set_index("ZTFID")
    lcs = read_lightcurves(root / "light-curves")
    keep = []
    for lc in lcs:
        if lc.object_id not in catalogue.index:
            continue
        row = catalogue.loc[lc.object_id]
        lc.label = str(row["type"]).strip()
        z = pd.to_numeric(row["redshift"], errors="coerce")
        lc.meta = dict(lc.meta or {}, redshift=float(z) if np.isfinite(z) else float("nan"))
        keep.append(lc)
    return keep


def simulated_training_set(n: int, *, survey: str, seed: int, classes=None):
    from astroray.datasets import CLASSES, LightCurveConfig, simulate_lightcurves

    weights = {c: 1.0 for c in (classes or CLASSES)}
    sim = simulate_lightcurves(n, config=LightCurveConfig(survey=survey, class_weights=weights), seed=seed)
    return sim.lightcurves, sim.truth


def physical_subclasses(truth, splits: dict) -> np.ndarray:
    """Simulated labels refined by the simulator's truth: class ``c`` split into ``splits[c] = (m, s)`` bins of
    absolute peak magnitude (quantiles) times ``s`` bins of early decline rate, e.g. ``SNIa|M1|s0``.

    Episodes then ask the encoder to tell bright from faint and slow from fast decliners *within* a class --
    the axes along which SN Ia subtypes differ -- which whole-class training teaches it to ignore.
    """
    from astroray.datasets.lightcurves import distance_modulus

    labels = truth["label"].astype(str).to_numpy().astype(object)
    z = truth["redshift"].to_numpy(np.float64)
    absmag = truth["peak_mag"].to_numpy(np.float64) - distance_modulus(np.maximum(z, 1e-4))
    decline = truth["decline_rate"].to_numpy(np.float64)
    out = labels.copy()
    for cls, (m_bins, s_bins) in splits.items():
        sel = labels == cls
        if not sel.any():
            continue
        m_edges = np.quantile(absmag[sel], np.linspace(0, 1, m_bins + 1)[1:-1])
        s_edges = np.quantile(decline[sel], np.linspace(0, 1, s_bins + 1)[1:-1])
        m_idx = np.searchsorted(m_edges, absmag[sel])
        s_idx = np.searchsorted(s_edges, decline[sel])
        out[sel] = [f"{cls}|M{a}|s{b}" for a, b in zip(m_idx, s_idx)]
    return out


def _gbt_scores(x_train, y_train, x_test, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier

    # columns without two distinct finite values in the support carry nothing (and break the binning)
    cols = [j for j in range(x_train.shape[1]) if np.unique(x_train[np.isfinite(x_train[:, j]), j]).size >= 2]
    model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, min_samples_leaf=2, max_leaf_nodes=4,
                                           random_state=seed).fit(x_train[:, cols], y_train)
    return model.predict_proba(x_test[:, cols])[:, 1]


def _nearest_mean_scores(z_train, y_train, z_test):
    p1, p0 = z_train[y_train == 1].mean(axis=0), z_train[y_train == 0].mean(axis=0)
    d1 = ((z_test - p1) ** 2).sum(axis=1)
    d0 = ((z_test - p0) ** 2).sum(axis=1)
    return d0 - d1  # the monotone score of softmax(-d) for the subtype


def _all_label_cv(values, labels, usable, subtypes, *, seed: int, names: list, best_inputs: dict, folds: int = 5,
                  repeats: int = 3) -> dict:
    """A diagnostic, not a method: each subtype against normal SNe Ia from *all* the ProtoNet's inputs with every
    label known (stratified ``folds``-fold cross-validation, ``repeats`` shuffles): a random forest and a
    logistic regression, their out-of-fold ROC AUC; and a logistic regression on the two best single inputs
    (``best_inputs``, picked with every label: optimistic).  Roughly what the inputs carry, to set K = 5 against."""
    import warnings as _warnings

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from astroray.eval import roc_auc

    models = {
        "random_forest": lambda: make_pipeline(SimpleImputer(), RandomForestClassifier(
            500, min_samples_leaf=3, class_weight="balanced_subsample", n_jobs=2, random_state=seed)),
        "logistic_regression": lambda: make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(
            C=0.1, class_weight="balanced", max_iter=5000)),
    }
    out = {}
    for sub in subtypes:
        sel = usable & np.isin(labels, [sub, BTS_REFERENCE])
        y = (labels[sel] == sub).astype(int)
        if y.sum() < folds:
            continue
        x_all = np.where(np.isfinite(values[sel]), values[sel], np.nan)
        best = list(best_inputs.get(sub, []))
        runs = [(name, make, x_all[:, ~np.isnan(x_all).all(axis=0)]) for name, make in models.items()]
        if best:
            runs.append(("logistic_regression_two_best_inputs", models["logistic_regression"],
                         x_all[:, [names.index(n) for n in best]]))
        out[sub] = {"n_subtype": int(y.sum()), "n_reference": int((y == 0).sum()), "two_best_inputs": best}
        for name, make, x in runs:
            aucs = []
            for rep in range(repeats):
                with _warnings.catch_warnings():
                    _warnings.simplefilter("ignore")
                    p = cross_val_predict(make(), x, y, method="predict_proba",
                                          cv=StratifiedKFold(folds, shuffle=True, random_state=seed + rep))[:, 1]
                aucs.append(roc_auc(y, p))
            out[sub][name] = _summary(aucs)
        print(f"  {sub}, every label known ({folds}-fold CV): " + ", ".join(
            f"{m} {v['mean']}" for m, v in out[sub].items() if isinstance(v, dict)), flush=True)
    return out


def run_bts(args, out: dict, folder: Path) -> None:
    from astroray.eval import roc_auc
    from astroray.lightcurves import FeatureConfig, FeatureExtractor
    from astroray.models.protonet import (
        FewShotConfig,
        LightCurveFeaturizer,
        ProtoNetClassifier,
    )

    t0 = time.time()
    root = Path(args.data) / "lightcurves" / "bts_snia"
    lcs = load_bts(root)
    labels = np.array([lc.label for lc in lcs], dtype=object)
    print(f"BTS: {len(lcs)} light curves, {time.time() - t0:.1f} s; classes "
          f"{ {c: int((labels == c).sum()) for c in sorted(set(labels))} }", flush=True)
    config = protonet_config("ztf", detections_only=True, redshift=args.redshift, hidden=args.hidden,
                             embedding_dim=args.embedding_dim, seed=args.seed)
    featurizer = LightCurveFeaturizer(config)
    bts = featurizer.run(lcs)
    t = time.time()
    sim, truth = simulated_training_set(args.n_sim_bts, survey="ztf", seed=args.seed + 11,
                                        classes=args.sim_classes)
    sim_matrix = featurizer.run(sim)
    splits = {c: (args.split_bins[0], args.split_bins[1]) for c in args.split_classes}
    sim_labels = physical_subclasses(truth, splits)
    vocabulary = sorted(set(sim_labels.tolist()))
    sim_y = np.array([vocabulary.index(c) for c in sim_labels])
    # BTS-like: at least 3 detections and a peak brighter than --sim-peak-mag (BTS follows m < 18.5-19 objects)
    peak_mag = 31.4 - 2.5 * sim_matrix.values[:, sim_matrix.names.index("log_peak_flux")]
    has = (sim_matrix.n_points >= 3) & (peak_mag < args.sim_peak_mag)
    sim_matrix, sim_y = sim_matrix.take(np.flatnonzero(has)), sim_y[has]
    print(f"simulated ZTF training set: {len(sim_y)} objects in {len(set(sim_y.tolist()))} (sub)classes, "
          f"{time.time() - t:.1f} s", flush=True)
    t = time.time()
    members = train_members(sim_matrix, sim_y, config, members=args.members_bts, epochs=args.epochs,
                            episodes=args.episodes, seed=args.seed)
    train_s = time.time() - t
    clf = ProtoNetClassifier(members, FewShotConfig(k_shot=args.k))
    clf_wide = ProtoNetClassifier(members, FewShotConfig())
    # simple features for the baselines: the extractor's statistics and shape, as given (no redshift)
    simple = FeatureExtractor(FeatureConfig(bands="ztf", groups=("stats", "shape"), detections_only=True)).run(lcs)
    simple_x = simple.values
    # the no-encoder baseline: the ProtoNet's own standardised inputs
    enc = members[0].encoder
    import torch

    with torch.no_grad():
        standardized = enc.standardize(torch.from_numpy(bts.values.astype(np.float32))).numpy()
    usable = bts.n_points >= 1
    rng = np.random.default_rng(args.seed)
    per_subtype = {}
    subtypes = [c for c in sorted(set(labels)) if c != BTS_REFERENCE]
    ref_rows = np.flatnonzero((labels == BTS_REFERENCE) & usable)
    for sub in subtypes:
        rows = np.flatnonzero((labels == sub) & usable)
        if rows.size < args.k + 1:
            per_subtype[sub] = {"n": int(rows.size), "skipped": f"fewer than K+1 = {args.k + 1} objects"}
            continue
        aucs = {"protonet": [], "gbt_simple_features": [], "nearest_mean_features": [],
                f"protonet_{args.k_reference}_normal": []}
        for rep in range(args.n_supports):
            s_sub = rng.choice(rows, args.k, replace=False)
            s_ref_all = rng.choice(ref_rows, args.k_reference, replace=False)
            s_ref = s_ref_all[:args.k]
            support = np.concatenate([s_sub, s_ref])
            # the same test objects for both supports: none of the larger normal support
            test = np.setdiff1d(np.concatenate([rows, ref_rows]), np.concatenate([s_sub, s_ref_all]))
            y_test = (labels[test] == sub).astype(int)
            clf.fit_support(bts.take(support), labels[support])
            res = clf.run(bts.take(test))
            aucs["protonet"].append(roc_auc(y_test, res.probabilities[:, clf.classes.index(sub)]))
            # normal SNe Ia are common: a prototype from many of them, the subtype still from K
            wide = np.concatenate([s_sub, s_ref_all])
            clf_wide.fit_support(bts.take(wide), labels[wide])
            res = clf_wide.run(bts.take(test))
            aucs[f"protonet_{args.k_reference}_normal"].append(
                roc_auc(y_test, res.probabilities[:, clf_wide.classes.index(sub)]))
            y_support = (labels[support] == sub).astype(int)
            aucs["gbt_simple_features"].append(roc_auc(y_test, _gbt_scores(simple_x[support], y_support,
                                                                            simple_x[test], args.seed + rep)))
            aucs["nearest_mean_features"].append(roc_auc(y_test, _nearest_mean_scores(
                standardized[support], y_support, standardized[test])))
        per_subtype[sub] = {"n": int(rows.size), "n_test": int(rows.size - args.k),
                            "n_reference_test": int(ref_rows.size - args.k),
                            **{name: _summary(v) for name, v in aucs.items()}}
        print(f"  {sub}: n_test {rows.size - args.k}: " + ", ".join(
            f"{k} {per_subtype[sub][k]['mean']}+-{per_subtype[sub][k]['std']}" for k in aucs), flush=True)
    # a diagnostic, not a method: how far does any single input go with *every* label known?
    ceiling = {}
    for sub in subtypes:
        sel = usable & np.isin(labels, [sub, BTS_REFERENCE])
        if (labels[sel] == sub).sum() < 3:
            continue
        best = []
        for j, name in enumerate(bts.names):
            col = bts.values[sel, j]
            ok = np.isfinite(col)
            y_col = labels[sel][ok] == sub
            if ok.mean() < 0.8 or y_col.sum() < 3 or y_col.all():
                continue
            auc = roc_auc(y_col, col[ok])
            best.append((max(auc, 1 - auc), name))
        best.sort(reverse=True)
        ceiling[sub] = [{"feature": n, "auroc_either_sign": round(a, 4)} for a, n in best[:5]]
    supervised = _all_label_cv(bts.values, labels, usable, subtypes, seed=args.seed, names=list(bts.names),
                               best_inputs={sub: [b["feature"] for b in v[:2]] for sub, v in ceiling.items()})
    counted = [s for s, v in per_subtype.items() if v.get("n_test", 0) >= 3]
    mean_over = {name: (round(float(np.mean([per_subtype[s][name]["mean"] for s in counted])), 4) if counted else None)
                 for name in ("protonet", "gbt_simple_features", "nearest_mean_features",
                              f"protonet_{args.k_reference}_normal")}
    out["bts"] = {
        "k_shot": args.k, "k_reference_variant": args.k_reference, "n_supports": args.n_supports, "redshift_input": bool(args.redshift),
        "encoder": {"trained_on": f"{len(sim_y)} simulated ZTF light curves, {len(set(sim_y.tolist()))} (sub)classes "
                                  "(no SN Ia subtypes), detections only", "sim_classes": args.sim_classes,
                    "split_classes": args.split_classes, "split_bins": args.split_bins,
                    "sim_peak_mag": args.sim_peak_mag, "members": args.members_bts,
                    "epochs": args.epochs, "episodes_per_epoch": args.episodes, "train_s": round(train_s, 1),
                    "hidden": list(args.hidden), "embedding_dim": args.embedding_dim},
        "per_subtype": per_subtype, "subtypes_with_3_test_objects": counted, "mean_auroc": mean_over,
        "diagnostic_best_single_inputs_all_labels": ceiling,
        "diagnostic_all_inputs_all_labels_cv": supervised,
        "targets": {"mean_auroc": 0.85, "SN Ia-91T": 0.75}, "issue_baseline": BASELINE_FIGURES,
        "seconds": round(time.time() - t0, 1),
    }


# --------------------------------------------------------------------------- simulated


def run_simulated(args, out: dict, folder: Path) -> None:
    for holdout in args.holdout:
        out.setdefault("simulated", {})[holdout] = _simulated_one(args, holdout, folder)


def _simulated_one(args, holdout: str, folder: Path) -> dict:
    from astroray.datasets import CLASSES, LightCurveConfig, simulate_lightcurves
    from astroray.eval import (
        expected_calibration_error,
        misclassification_auroc,
        open_set_auroc,
        plot_score_histograms,
        roc_auc,
        split_groups,
    )
    from astroray.models.anomaly import (
        AnomalyConfig,
        AnomalyDetector,
        follow_up_list,
        plot_top_anomalies,
    )
    from astroray.models.protonet import (
        FewShotConfig,
        LightCurveFeaturizer,
        ProtoNetClassifier,
    )
    from astroray.models.uncertainty import UncertaintyConfig, UncertaintyEstimator

    t0 = time.time()
    if holdout not in CLASSES:
        raise SystemExit(f"--holdout {holdout!r} is not a simulator class; known: {', '.join(CLASSES)}")
    sim = simulate_lightcurves(args.n_sim, config=LightCurveConfig(survey="lsst"), seed=args.seed + 23)
    lcs = sim.lightcurves
    labels = np.array([lc.label for lc in lcs], dtype=object)
    ids = np.array([lc.object_id for lc in lcs])
    split = split_groups(ids, labels=labels.astype(str), fractions={"train": 0.6, "val": 0.2, "test": 0.2},
                         salt=f"fewshot-{holdout}").assignment
    config = protonet_config("lsst", detections_only=False, redshift=args.sim_redshift, hidden=args.hidden,
                             embedding_dim=args.embedding_dim, seed=args.seed)
    featurizer = LightCurveFeaturizer(config)
    matrix = featurizer.run(lcs)
    usable = matrix.n_points >= 1
    known = labels != holdout
    known_classes = [c for c in CLASSES if c != holdout]
    y = np.array([known_classes.index(c) if c in known_classes else -1 for c in labels])
    train = np.flatnonzero((split == "train") & known & usable)
    val = np.flatnonzero((split == "val") & known & usable)
    test = np.flatnonzero((split == "test") & usable)  # the held-out class's test objects included
    print(f"simulated, held out {holdout}: train {train.size}, val {val.size}, test {test.size} "
          f"({int((~known[test]).sum())} of {holdout}); {time.time() - t0:.1f} s", flush=True)
    t = time.time()
    members = train_members(matrix.take(train), y[train], config, members=args.members, epochs=args.epochs,
                            episodes=args.episodes, val=(matrix.take(val), y[val]), seed=args.seed)
    train_s = time.time() - t
    clf = ProtoNetClassifier(members, FewShotConfig())
    clf.fit_support(matrix.take(train), labels[train])
    class_order = list(clf.classes)
    res_val = clf.run(matrix.take(val))
    clf.calibrate_open_set(matrix.take(val))
    res = clf.run(matrix.take(test))
    is_unknown = ~known[test]
    open_set = open_set_auroc(res.open_set_score, is_unknown)
    # anomaly ranking against the training objects of the known classes
    emb_train = clf.embed(matrix.take(train))
    detector = AnomalyDetector(AnomalyConfig(seed=args.seed)).fit(matrix.values[train], embeddings=emb_train,
                                                                 labels=labels[train])
    anomaly = detector.run(matrix.values[test], embeddings=res.embeddings)
    anomaly_auc = {"combined": roc_auc(is_unknown, anomaly.combined)}
    for name, s in anomaly.scores.items():
        anomaly_auc[name] = roc_auc(is_unknown, s)
    for left_out in anomaly.percentiles:  # what each detector adds to the rank combination
        rest = [anomaly.percentiles[d] for d in anomaly.percentiles if d != left_out]
        anomaly_auc[f"combined_without_{left_out}"] = roc_auc(is_unknown, np.mean(rest, axis=0))
    # uncertainty among the known test objects
    kt = ~is_unknown
    y_val = np.array([class_order.index(c) for c in labels[val]])
    y_test_known = np.array([class_order.index(c) for c in labels[test][kt]])
    member_p_val = _member_probabilities(clf, matrix.take(val))
    member_p_test = _member_probabilities(clf, matrix.take(test))
    est = UncertaintyEstimator(UncertaintyConfig()).fit(member_p_val, y_val)
    unc = est.run(member_p_test)
    pred = unc.probabilities[kt].argmax(axis=1)
    correct = pred == y_test_known
    raw_p = member_p_test.mean(axis=0)[kt]
    uncertainty = {
        "accuracy_known": round(float(correct.mean()), 4),
        "misclassification_auroc": {
            "entropy": misclassification_auroc(unc.entropy[kt], correct),
            "mutual_information": misclassification_auroc(unc.mutual_information[kt], correct),
            "expected_entropy": misclassification_auroc(unc.expected_entropy[kt], correct),
            "one_minus_max_probability": misclassification_auroc(1 - unc.probabilities[kt].max(axis=1), correct)},
        "ece_before": expected_calibration_error(y_test_known, raw_p),
        "ece_after_temperature": expected_calibration_error(y_test_known, unc.probabilities[kt]),
        "temperature": est.calibrator.temperature if est.calibrator is not None else None,
        "ood_flag_rate": {"known": round(float(unc.ood[kt].mean()), 4),
                          "held_out": round(float(unc.ood[~kt].mean()), 4)},
        "ood_flag_auroc_mutual_information": roc_auc(is_unknown, unc.mutual_information),
        "open_set_none_of_these_rate": {"known": round(float(res.none_of_these[kt].mean()), 4),
                                        "held_out": round(float(res.none_of_these[~kt].mean()), 4)},
    }
    # follow-up list and figures
    tag = holdout.lower()
    table = follow_up_list(anomaly, ids[test], n=100, extra={"label": labels[test],
                                                             "predicted": res.predicted})
    list_path = folder / f"fewshot_anomalies_{tag}.csv"
    table.to_csv(list_path, index=False)
    png = plot_top_anomalies([lcs[i] for i in test], anomaly, folder / f"fewshot_top_anomalies_{tag}.png", n=12,
                             labels=labels[test], title=f"Top anomalies (held-out class: {holdout})")
    hist = plot_score_histograms(anomaly.combined, np.where(is_unknown, f"{holdout} (held out)", "known classes"),
                                 folder / f"fewshot_anomaly_hist_{tag}.png")
    top100 = table["label"].to_numpy()
    result = {
        "held_out": holdout, "n_train": int(train.size), "n_val": int(val.size), "n_test": int(test.size),
        "n_test_held_out": int(is_unknown.sum()), "members": args.members, "train_s": round(train_s, 1),
        "open_set_auroc": open_set, "anomaly_auroc": anomaly_auc,
        "held_out_in_top_100": int(np.sum(top100 == holdout)),
        "held_out_fraction_of_test": round(float(is_unknown.mean()), 4),
        "uncertainty": uncertainty, "val_accuracy_known": round(float(np.mean(
            res_val.predicted == labels[val])), 4),
        "targets": {"anomaly_auroc": 0.90, "open_set_auroc": 0.90, "misclassification_auroc": 0.80},
        "files": [_shown(list_path), _shown(png), _shown(hist)], "seconds": round(time.time() - t0, 1),
    }
    print(f"  {holdout}: open-set {open_set:.3f}, anomaly {anomaly_auc['combined']:.3f} "
          f"({ {k: round(v, 3) for k, v in anomaly_auc.items()} }), misclassification "
          f"{ {k: round(v, 3) for k, v in uncertainty['misclassification_auroc'].items()} }, "
          f"acc {uncertainty['accuracy_known']}", flush=True)
    return result


def _member_probabilities(clf, matrix) -> np.ndarray:
    """Each ensemble member's probabilities over the support classes, (members, n, k)."""
    import torch

    from astroray.models.protonet import squared_distances

    emb = clf.embed(matrix)
    out = []
    for m, enc in enumerate(clf.encoders):
        d = squared_distances(torch.from_numpy(emb[m]), clf._protos[m]).numpy()
        z = -d * float(enc.log_inv_temperature.detach().exp())
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        out.append(p / p.sum(axis=1, keepdims=True))
    return np.stack(out)


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["bts", "simulated"], choices=["bts", "simulated"])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--k", type=int, default=5, help="labelled examples per class (BTS)")
    parser.add_argument("--n-supports", type=int, default=20, help="random supports per subtype (BTS)")
    parser.add_argument("--k-reference", type=int, default=100,
                        help="BTS variant: normal SNe Ia in the support (the subtype keeps K)")
    parser.add_argument("--n-sim-bts", type=int, default=6000, help="simulated ZTF objects the BTS encoder learns on")
    parser.add_argument("--redshift", action=argparse.BooleanOptionalAction, default=True,
                        help="give the encoder the catalogue redshift (absolute peak magnitude, rest-frame times)")
    parser.add_argument("--members-bts", type=int, default=3)
    parser.add_argument("--sim-classes", nargs="+", default=None, help="simulator classes the BTS encoder learns on")
    parser.add_argument("--split-classes", nargs="*", default=["SNIa", "SNIbc", "SNII"],
                        help="classes split into physical subclasses for the BTS encoder")
    parser.add_argument("--split-bins", type=int, nargs=2, default=[3, 3], metavar=("M_BINS", "DECLINE_BINS"))
    parser.add_argument("--sim-peak-mag", type=float, default=19.5, help="brightest-point cut of the BTS training set")
    parser.add_argument("--n-sim", type=int, default=6000, help="simulated LSST objects (simulated task)")
    parser.add_argument("--holdout", nargs="+", default=["SLSN"])
    parser.add_argument("--members", type=int, default=5, help="ensemble members (simulated task)")
    parser.add_argument("--sim-redshift", action=argparse.BooleanOptionalAction, default=True,
                        help="simulated task: give the encoder each object's host redshift (meta, as a broker has)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--episodes", type=int, default=100, help="episodes per epoch")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--embedding-dim", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/fewshot_<tasks>_<time>.json)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_path = Path(args.out) if args.out else RESULTS / f"fewshot_{'-'.join(args.tasks)}_{stamp}.json"
    folder = out_path.parent
    out: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "args": vars(args),
                 "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_before": _load()}}
    t0 = time.time()
    if "bts" in args.tasks:
        run_bts(args, out, folder)
    if "simulated" in args.tasks:
        run_simulated(args, out, folder)
    out["machine"]["load_after"] = _load()
    out["seconds"] = round(time.time() - t0, 1)
    from astroray.eval._validate import jsonable

    out_path.write_text(json.dumps(jsonable(out), indent=2))
    print(f"wrote {_shown(out_path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
