"""The light-curve transformer: collate, masks, edge cases, partial light curves, a tiny fit, save/load."""
from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest
import torch

from astroray.datasets import CLASSES, simulate_lightcurves
from astroray.errors import ConfigError, InvalidInputError, InvalidLightCurveError
from astroray.lightcurves import ragged_from_table, truncate
from astroray.models.lc_transformer import (
    LightCurveEncoder,
    LightCurveModelConfig,
    LightCurveModule,
    LightCurveNet,
    RunningStandardScaler,
    balanced_class_weights,
    collate_lightcurves,
    encoder_inputs,
    lightcurve_rows,
    object_feature_names,
    pack_inputs,
    predict_rows,
    truncate_batch,
    unpack_inputs,
)
from astroray.models.registry import build_module
from astroray.records import LightCurve

TWO = ("SNIa", "RRLyrae")


@pytest.fixture(scope="module")
def sim():
    return simulate_lightcurves(48, seed=3).lightcurves


@pytest.fixture(scope="module")
def rows(sim):
    return lightcurve_rows(sim, CLASSES)


@pytest.fixture(scope="module")
def config():
    return LightCurveModelConfig(classes=CLASSES, d_model=16, ff_dim=32, embedding_dim=16, n_frequencies=8)


@pytest.fixture(scope="module")
def net(config):
    torch.manual_seed(0)
    return LightCurveNet(config).eval()


def _numpy_batch(table: pa.Table) -> dict:
    """What Ray Data hands ``collate``: one NumPy array per column, lists as object arrays of arrays."""
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _lc(oid, mjd, band, flux, err, det):
    return LightCurve(oid, np.asarray(mjd, float), band, np.asarray(flux, float), np.asarray(err, float), det)


# --------------------------------------------------------------------------- rows and collate


def test_rows_carry_label_ids_and_refuse_unknown_labels(sim):
    table = lightcurve_rows(sim[:5], CLASSES)
    assert table.column("label_id").to_pylist() == [CLASSES.index(lc.label) for lc in sim[:5]]
    unlabelled = _lc("u", [1.0], ["g"], [1.0], [0.1], [True])
    assert lightcurve_rows([unlabelled], CLASSES).column("label_id").to_pylist() == [-1]
    with pytest.raises(InvalidLightCurveError, match="not in the class vocabulary"):
        lightcurve_rows(sim[:5], ("SNIa", "SNII"))


def test_collate_shapes_masks_and_padding(rows, config):
    batch = collate_lightcurves(_numpy_batch(rows), config)
    n = rows.num_rows
    lengths = np.array([len(v) for v in rows.column("mjd").to_pylist()])
    width = batch["time"].shape[1]
    assert width == min(lengths.max(), config.max_length)
    for key in ("time", "flux", "flux_err", "band", "detected", "mask"):
        assert batch[key].shape == (n, width)
    assert batch["objects"].shape == (n, len(object_feature_names(config))) == (n, 1)
    assert torch.equal(batch["mask"].sum(dim=1), batch["lengths"])
    pad = ~batch["mask"]
    assert pad.any() and (batch["band"][pad] == len(config.bands)).all() and (batch["flux"][pad] == 0).all()
    assert torch.equal(batch["label"], torch.as_tensor(np.array(rows.column("label_id")), dtype=torch.int64))
    # the Arrow table and Ray's NumPy batch give the same tensors
    from_table = collate_lightcurves(rows, config)
    for key, value in batch.items():
        assert torch.equal(value, from_table[key]), key


def test_collate_reads_equal_length_rows_given_as_2d_arrays(config):
    lcs = [_lc(f"o{i}", [1.0, 2.0, 3.0], ["g", "r", "g"], [5.0, 6.0, 7.0 + i], [1.0, 1.0, 1.0], [True] * 3)
           for i in range(4)]
    for lc in lcs:
        lc.label = "SNIa"
    table = lightcurve_rows(lcs, CLASSES)
    as_lists = _numpy_batch(table)
    as_2d = {k: (np.stack(v) if v.dtype == object else v) for k, v in as_lists.items()}
    assert as_2d["mjd"].ndim == 2
    a, b = collate_lightcurves(as_lists, config), collate_lightcurves(as_2d, config)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_pack_and_unpack_are_inverse(rows, config, net):
    batch = collate_lightcurves(rows, config)
    x = pack_inputs(batch)
    assert x.shape == (rows.num_rows, 1 + 6 * batch["time"].shape[1])
    back = unpack_inputs(x, len(config.bands), 1)
    for key in ("time", "flux", "flux_err", "band", "detected", "mask", "objects"):
        assert torch.equal(back[key].to(batch[key].dtype), batch[key]), key
    with torch.inference_mode():
        np.testing.assert_allclose(net(x).numpy(), torch.softmax(net.logits(encoder_inputs(batch)), -1).numpy(),
                                   rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- edge cases


def _edge_rows():
    lcs = {
        "empty": _lc("empty", [], [], [], [], []),
        "single": _lc("single", [60000.0], ["r"], [1500.0], [50.0], [True]),
        "all_nan": _lc("all_nan", [1.0, 2.0], ["g", "r"], [np.nan, np.nan], [np.nan, np.nan], [False, False]),
        "limits_only": _lc("limits_only", [1.0, 2.0], ["g", "r"], [np.nan, np.nan], [20.0, 30.0], [False, False]),
        "duplicated": _lc("duplicated", [5.0, 5.0, 6.0], ["g", "g", "g"], [10.0, 12.0, 11.0], [1.0, 2.0, 1.0],
                          [True, True, True]),
        "single_band": _lc("single_band", np.arange(20.0), ["i"] * 20, np.sin(np.arange(20.0)) * 5 + 100, [1.0] * 20,
                           [True] * 20),
    }
    return lcs


def test_edge_cases_give_finite_probabilities(config, net):
    lcs = _edge_rows()
    table = lightcurve_rows(list(lcs.values()), CLASSES)
    batch = collate_lightcurves(table, config)
    lengths = dict(zip(lcs, batch["lengths"].tolist()))
    assert lengths == {"empty": 0, "single": 1, "all_nan": 0, "limits_only": 2, "duplicated": 3, "single_band": 20}
    # upper limits are zero flux with their error, not detections
    row = list(lcs).index("limits_only")
    assert not batch["detected"][row].any() and (batch["flux"][row, :2] == 0).all()
    with torch.inference_mode():
        proba = net(pack_inputs(batch)).numpy()
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(predict_rows(net, table), proba, rtol=1e-4, atol=1e-6)


def test_a_batch_of_empty_light_curves_still_has_one_column(config, net):
    table = lightcurve_rows([_lc("a", [], [], [], [], []), _lc("b", [], [], [], [], [])], CLASSES)
    batch = collate_lightcurves(table, config)
    assert batch["time"].shape == (2, 1) and not batch["mask"].any()
    with torch.inference_mode():
        assert np.isfinite(net(pack_inputs(batch)).numpy()).all()
    assert predict_rows(net, table.slice(0, 0)).shape == (0, len(CLASSES))


def test_unsorted_rows_are_sorted_and_classified_like_sorted_ones(sim, config, net):
    table = lightcurve_rows(sim[:6], CLASSES)
    shuffled = {}
    rng = np.random.default_rng(0)
    cols = _numpy_batch(table)
    perms = [rng.permutation(len(m)) for m in cols["mjd"]]
    for name in ("mjd", "band", "flux", "flux_err", "detected"):
        shuffled[name] = np.array([v[p] for v, p in zip(cols[name], perms)], dtype=object)
    shuffled["object_id"] = cols["object_id"]
    assert any(np.any(np.diff(m) < 0) for m in shuffled["mjd"])
    a, b = collate_lightcurves(table, config), collate_lightcurves(shuffled, config, with_targets=False)
    for key in ("time", "flux", "band", "mask"):
        assert torch.equal(a[key], b[key]), key
    np.testing.assert_allclose(predict_rows(net, shuffled), predict_rows(net, table), rtol=1e-5, atol=1e-7)


def test_duplicates_can_be_merged(config):
    lc = _edge_rows()["duplicated"]
    merged = collate_lightcurves(lightcurve_rows([lc], CLASSES), config.with_updates(duplicates="merge"))
    assert merged["lengths"].tolist() == [2]
    w = np.array([1.0, 0.25])
    expected = (10.0 * w[0] + 12.0 * w[1]) / w.sum()
    assert merged["flux"][0, 0].item() * merged["scale"][0].item() == pytest.approx(expected, rel=1e-6)


def test_bad_rows_raise_clear_errors(config):
    good = lightcurve_rows([_lc("a", [1.0, 2.0], ["g", "r"], [1.0, 2.0], [0.1, 0.1], [True, True])], CLASSES)
    cols = _numpy_batch(good)
    with pytest.raises(InvalidLightCurveError, match="NaN or infinite MJD"):
        collate_lightcurves({**cols, "mjd": np.array([np.array([1.0, np.nan])], dtype=object)}, config)
    with pytest.raises(InvalidLightCurveError, match="lack column"):
        collate_lightcurves({k: v for k, v in cols.items() if k != "flux_err"}, config)
    with pytest.raises(InvalidLightCurveError, match="column flux has 1 values but mjd has 2"):
        collate_lightcurves({**cols, "flux": np.array([np.array([1.0])], dtype=object)}, config)
    with pytest.raises(InvalidLightCurveError, match="label_id must lie"):
        collate_lightcurves({**cols, "label_id": np.array([99])}, config)
    with pytest.raises(InvalidLightCurveError, match="dict of NumPy arrays"):
        collate_lightcurves([1, 2, 3], config)


# --------------------------------------------------------------------------- config


def test_config_is_validated():
    with pytest.raises(ConfigError, match="classes"):
        build_module("lc_transformer", {})
    with pytest.raises(ConfigError, match="truncate=false"):
        LightCurveModule({"classes": TWO, "period_column": "period"})
    with pytest.raises(ConfigError, match="class_weights has 3 entries"):
        LightCurveModule({"classes": TWO, "class_weights": [1.0, 1.0, 1.0]})
    with pytest.raises(ConfigError, match="unknown key"):
        LightCurveModule({"classes": TWO, "dmodel": 8})
    assert isinstance(build_module("lc_transformer", {"classes": TWO, "bands": "ztf"}), LightCurveModule)
    assert balanced_class_weights([0, 0, 0, 1, -1], 3) == pytest.approx((4 / 9, 4 / 3, 1.0))


def test_period_features_fold_the_light_curve():
    t = np.sort(np.random.default_rng(1).uniform(0, 300, 80))
    lc = _lc("rr", t, ["g"] * 80, 1000 + 200 * np.sin(2 * np.pi * t / 0.55), [5.0] * 80, [True] * 80)
    lc.label = "RRLyrae"
    cfg = LightCurveModelConfig(classes=TWO, truncate=False, period_column="period", context_columns=("power",),
                                d_model=16, ff_dim=16, embedding_dim=8)
    table = lightcurve_rows([lc, lc], TWO, extra={"period": [0.55, np.nan], "power": [0.9, 0.1]})
    batch = collate_lightcurves(table, cfg)
    assert object_feature_names(cfg) == ("log_scale", "log_period", "has_period", "power")
    np.testing.assert_allclose(batch["objects"][:, 1:].numpy(), [[np.log10(0.55), 1, 0.9], [0, 0, 0.1]], rtol=1e-6)
    net = LightCurveNet(cfg).eval()
    with torch.inference_mode():
        proba = net(pack_inputs(batch)).numpy()
    assert np.isfinite(proba).all() and not np.allclose(proba[0], proba[1])
    with pytest.raises(InvalidLightCurveError, match="reads column 'power'"):
        collate_lightcurves(table.drop_columns(["power"]), cfg)


def test_static_columns_survive_the_cuts(sim, config):
    cfg = config.with_updates(static_columns=("host_z",))
    z = np.linspace(0.1, 1.0, len(sim))
    z[3] = np.nan
    table = lightcurve_rows(sim, CLASSES, extra={"host_z": z})
    batch = collate_lightcurves(table, cfg)
    assert object_feature_names(cfg) == ("log_scale", "static:host_z")
    np.testing.assert_allclose(batch["objects"][:, 1].numpy(), np.nan_to_num(z), rtol=1e-6)
    cut = truncate_batch(batch, cfg, rng=1)  # a cut keeps what does not depend on the light curve's extent
    assert torch.equal(cut["objects"][:, 1], batch["objects"][:, 1])
    assert (cut["lengths"] <= batch["lengths"]).all() and not torch.equal(cut["lengths"], batch["lengths"])
    with pytest.raises(InvalidLightCurveError, match="reads column 'host_z'"):
        collate_lightcurves(table.drop_columns(["host_z"]), cfg)


# --------------------------------------------------------------------------- partial light curves


@pytest.mark.parametrize("groups", [(), ("stats", "shape")])
def test_cutting_a_collated_batch_equals_collating_cut_rows(rows, config, groups):
    config = config.with_updates(feature_groups=groups)
    batch = collate_lightcurves(rows, config)
    k = np.random.default_rng(2).integers(0, 40, rows.num_rows)
    cut_after = truncate_batch(batch, config, n_points=k)
    cut_rows = truncate(ragged_from_table(rows, config.tensor_config()), n_points=k)
    from astroray.lightcurves import ragged_rows

    cut_before = collate_lightcurves(ragged_rows(cut_rows, CLASSES), config)
    assert torch.equal(cut_after["lengths"], cut_before["lengths"])
    assert torch.equal(cut_after["label"], cut_before["label"])
    for key in ("band", "detected", "mask"):
        assert torch.equal(cut_after[key], cut_before[key]), key
    for key in ("time", "flux", "flux_err"):
        np.testing.assert_allclose(cut_after[key].numpy(), cut_before[key].numpy(), rtol=2e-6, atol=2e-5)
    # features see float32 times and fluxes that went through the tensors once more (slopes feel it a little)
    np.testing.assert_allclose(cut_after["objects"].numpy(), cut_before["objects"].numpy(), rtol=1e-4, atol=2e-3)
    assert cut_after["objects"].shape[1] == len(object_feature_names(config)) == (210 if groups else 1)
    # normalised again from the kept points: the brightest kept detection is 1
    det = cut_after["detected"] & cut_after["mask"]
    has = det.any(dim=1)
    peak = torch.where(det, cut_after["flux"].abs(), torch.zeros_like(cut_after["flux"])).amax(dim=1)
    np.testing.assert_allclose(peak[has].numpy(), 1.0, rtol=1e-6)


def test_random_cuts_keep_prefixes_with_a_detection(rows, config):
    batch = collate_lightcurves(rows, config)
    cut = truncate_batch(batch, config.with_updates(full_fraction=0.0), rng=5)
    assert (cut["lengths"] <= batch["lengths"]).all() and (cut["lengths"] < batch["lengths"]).any()
    n_det = batch["detected"].sum(dim=1)
    assert ((cut["detected"] & cut["mask"]).sum(dim=1)[n_det > 0] >= 1).all()
    # a kept point is the same measurement as before, at the same place in time order
    for i in range(rows.num_rows):
        n = int(cut["lengths"][i])
        mjd_before = batch["time"][i, :n].double() + batch["t0"][i]
        mjd_after = cut["time"][i, :n].double() + cut["t0"][i]
        np.testing.assert_allclose(mjd_after.numpy(), mjd_before.numpy(), atol=1e-3)


def test_a_row_does_not_depend_on_the_rest_of_the_batch(rows, net):
    alone = predict_rows(net, rows.slice(0, 1))
    together = predict_rows(net, rows)[:1]
    np.testing.assert_allclose(alone, together, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- training and saving


@pytest.fixture(scope="module")
def two_class_rows():
    lcs = simulate_lightcurves(400, seed=5).lightcurves
    keep = [lc for lc in lcs if lc.label in TWO][:48]
    return lightcurve_rows(keep, TWO)


def _fit(module, table, steps):
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    def loader(shuffle):
        return DataLoader(np.arange(table.num_rows), batch_size=16, shuffle=shuffle,
                          collate_fn=lambda ix: module.collate(_numpy_batch(table.take(np.asarray(ix)))))

    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         check_val_every_n_epoch=1)
    trainer.fit(module, loader(True), loader(False))
    return trainer


def _loss(module, batch):
    module.eval()
    with torch.no_grad():
        loss = float(torch.nn.functional.cross_entropy(module.net.logits(encoder_inputs(batch)), batch["label"]))
    module.train()
    return loss


def test_a_tiny_fit_lowers_the_loss_and_logs_val_metrics(two_class_rows, tmp_path):
    import pytorch_lightning as pl

    pl.seed_everything(0, verbose=False)
    cfg = {"classes": TWO, "bands": "lsst", "d_model": 16, "ff_dim": 32, "embedding_dim": 16, "n_frequencies": 8,
           "lr": 5e-3, "class_weights": balanced_class_weights(two_class_rows.column("label_id").to_numpy(), 2)}
    module = LightCurveModule(cfg)
    batch = module.collate(two_class_rows)
    before = _loss(module, batch)
    trainer = _fit(module, two_class_rows, steps=45)
    after = _loss(module, batch)
    assert after < 0.7 * before, (before, after)
    for key in ("val_loss", "val_macro_f1", "val_accuracy", "train_loss", "train_reconstruction"):
        assert key in trainer.callback_metrics and np.isfinite(float(trainer.callback_metrics[key])), key

    # Lightning checkpoint round trip
    path = tmp_path / "lc.ckpt"
    trainer.save_checkpoint(path)
    loaded = LightCurveModule.load_from_checkpoint(path)
    np.testing.assert_allclose(predict_rows(loaded, two_class_rows), predict_rows(module, two_class_rows), rtol=1e-6)

    # the served net pickles (MLflow's PyTorch flavour) with its temperature
    net = module.net
    net.set_temperature(2.0)
    clone = pickle.loads(pickle.dumps(net))
    assert clone.classes == TWO and float(clone.temperature) == 2.0
    x = pack_inputs(batch)
    with torch.inference_mode():
        np.testing.assert_allclose(clone.eval()(x).numpy(), net.eval()(x).numpy(), rtol=1e-6)
        soft = torch.softmax(net.logits(encoder_inputs(batch)) / 2.0, dim=-1).numpy()
    np.testing.assert_allclose(net(x).detach().numpy(), soft, rtol=1e-5)
    with pytest.raises(InvalidInputError, match="temperature"):
        net.set_temperature(0.0)


@pytest.mark.parametrize("options", [{"reconstruction_weight": 0.0}, {"mask_fraction": 0.0},
                                     {"mask_fraction": 1e-12},  # reconstruction on, no point hidden in the batch
                                     {}])
def test_every_parameter_reaches_the_training_loss(two_class_rows, options):
    # DDP (Ray Train's strategy) fails a step in which some parameter got no gradient: an RR Lyrae job without
    # reconstruction did, on the head it never used
    torch.manual_seed(0)
    module = LightCurveModule({"classes": TWO, "bands": "lsst", "d_model": 16, "ff_dim": 32, "embedding_dim": 16,
                               "n_frequencies": 8, **options}).train()
    assert (module.reconstruct is None) == ("reconstruction_weight" in options or options.get("mask_fraction") == 0)
    module.training_step(module.collate(two_class_rows), 0).backward()
    assert [n for n, p in module.named_parameters() if p.grad is None] == []


def test_a_checkpoint_holding_an_unused_reconstruction_head_still_loads(two_class_rows, tmp_path):
    import pytorch_lightning as pl

    cfg = {"classes": TWO, "bands": "lsst", "d_model": 16, "ff_dim": 32, "embedding_dim": 16, "n_frequencies": 8,
           "reconstruction_weight": 0.0}
    module = LightCurveModule(cfg)
    trainer = pl.Trainer(max_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.strategy.connect(module)
    path = tmp_path / "old.ckpt"
    trainer.save_checkpoint(path)
    old = torch.load(path, weights_only=False)  # as saved before the head became optional: the head was always there
    old["state_dict"]["reconstruct.weight"], old["state_dict"]["reconstruct.bias"] = torch.zeros(1, 16), torch.zeros(1)
    torch.save(old, path)
    loaded = LightCurveModule.load_from_checkpoint(path)
    assert loaded.reconstruct is None
    np.testing.assert_allclose(predict_rows(loaded, two_class_rows), predict_rows(module, two_class_rows), rtol=1e-6)


def test_running_standardisation_matches_the_moments_of_every_row_seen():
    rng = np.random.default_rng(1)
    scaler = RunningStandardScaler(3, min_std=1e-2, clip=8.0).train()
    x0 = torch.tensor([[1.0, 5.0, 0.0]])
    assert torch.equal(scaler(x0), x0)  # fewer than two rows seen: nothing to scale by
    seen = []
    for size in (1, 7, 2, 30):  # batches of any size, unlike batch norm
        batch = torch.from_numpy(rng.normal([3.0, -1.0, 0.0], [0.1, 20.0, 0.0], size=(size, 3)))
        seen.append(batch.numpy())
        scaler(batch, update=True)
    rows = np.concatenate(seen)
    np.testing.assert_allclose(scaler.mean.numpy(), rows.mean(axis=0), rtol=1e-12, atol=1e-12)
    std = np.maximum(rows.std(axis=0, ddof=1), 1e-2)  # the constant column gets the floor, not a division by 0
    probe = torch.tensor([[3.2, 10.0, 1.0], [2.9, -500.0, 0.0]], dtype=torch.float64)
    expected = np.clip((probe.numpy() - rows.mean(axis=0)) / std, -8.0, 8.0)
    np.testing.assert_allclose(scaler(probe).numpy(), expected, rtol=1e-10)
    before = scaler.count.clone()
    scaler(probe)  # no update unless asked
    assert torch.equal(scaler.count, before) and float(before) == len(rows)


def test_standardised_object_features_are_learned_in_training_and_saved_with_the_weights(two_class_rows, tmp_path):
    import pytorch_lightning as pl

    assert not any("object_scaler" in k for k in LightCurveNet(LightCurveModelConfig(classes=TWO)).state_dict())
    pl.seed_everything(0, verbose=False)
    module = LightCurveModule({"classes": TWO, "bands": "lsst", "d_model": 16, "ff_dim": 32, "embedding_dim": 16,
                               "n_frequencies": 8, "feature_groups": ("stats",), "standardize_objects": True})
    scaler = module.net.encoder.object_scaler
    batch = module.collate(two_class_rows)
    module.eval()
    with torch.no_grad():
        module.net.logits(encoder_inputs(batch))
    assert float(scaler.count) == 0  # inference never moves the statistics
    module.train()  # Lightning keeps the mode a module starts fit in
    trainer = _fit(module, two_class_rows, steps=6)
    assert float(scaler.count) >= 6 * 16 and torch.isfinite(scaler.mean).all()
    path = tmp_path / "std.ckpt"
    trainer.save_checkpoint(path)
    loaded = LightCurveModule.load_from_checkpoint(path)
    assert torch.equal(loaded.net.encoder.object_scaler.mean, scaler.mean)
    np.testing.assert_allclose(predict_rows(loaded, two_class_rows), predict_rows(module, two_class_rows), rtol=1e-6)


def test_feature_groups_reach_the_object_token(rows, config):
    cfg = config.with_updates(feature_groups=("stats", "shape"))
    batch = collate_lightcurves(rows, cfg)
    names = object_feature_names(cfg)
    assert names[0] == "log_scale" and names[1].startswith("feature:") and len(names) == batch["objects"].shape[1]
    assert torch.isfinite(batch["objects"]).all()
    # fluxes enter in units of the object's scale: the brightest detection has peak_flux 1, log1p(1) here
    col = names.index("feature:peak_flux_r")
    has_r = np.array([((lc.band == "r") & lc.detected).any() for lc in simulate_lightcurves(48, seed=3).lightcurves])
    peak_r = batch["objects"][:, col].numpy()
    assert np.all(peak_r[has_r] <= np.log1p(1.0) + 1e-6) and np.any(np.isclose(peak_r[has_r], np.log1p(1.0)))
    net = LightCurveNet(cfg).eval()
    with torch.inference_mode():
        proba = net(pack_inputs(batch)).numpy()
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(predict_rows(net, rows), proba, rtol=1e-4, atol=1e-6)


def test_encoder_gives_embeddings(rows, config):
    encoder = LightCurveEncoder(config).eval()
    batch = collate_lightcurves(rows, config)
    with torch.inference_mode():
        emb, points = encoder.encode(encoder_inputs(batch))
    assert emb.shape == (rows.num_rows, config.embedding_dim) and torch.isfinite(emb).all()
    assert points.shape == (*batch["time"].shape, config.d_model)
    assert (points[~batch["mask"]] == 0).all()
    with pytest.raises(InvalidInputError, match="object feature"):
        encoder(dict(encoder_inputs(batch), objects=batch["objects"].repeat(1, 2)))


# --------------------------------------------------------------------------- the classifier


def test_classifier_takes_every_input_form_and_answers_edge_cases(sim, config, net):
    from astroray.lightcurves import PreprocessConfig, ragged_from_lightcurves
    from astroray.models.lc_transformer import LightCurveClassifier

    clf = LightCurveClassifier.from_model(net, name="tiny", version=3)
    assert not clf.calibrated and clf.classes == tuple(CLASSES)
    records = clf.run(sim[:8])
    assert records.probabilities.shape == (8, len(CLASSES))
    np.testing.assert_allclose(records.probabilities.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(records.object_ids, [lc.object_id for lc in sim[:8]])
    table = lightcurve_rows(sim[:8], CLASSES)
    for same in (ragged_from_lightcurves(sim[:8], PreprocessConfig(bands="lsst")), table, _numpy_batch(table)):
        np.testing.assert_allclose(clf(same).probabilities, records.probabilities, rtol=1e-6, atol=1e-9)
    # a batch cleaned to another vocabulary keeps only its bands (g, r, i here): an answer, a different one
    ztf = clf(ragged_from_lightcurves(sim[:8], PreprocessConfig(bands="ztf")))
    assert ztf.probabilities.shape == (8, len(CLASSES)) and np.isfinite(ztf.probabilities).all()
    np.testing.assert_allclose(clf.run(sim[0]).probabilities, records.probabilities[:1], rtol=1e-4, atol=1e-6)

    lcs = _edge_rows()
    unsorted = _lc("unsorted", [3.0, 1.0, 2.0], ["g", "r", "g"], [30.0, 10.0, 20.0], [1.0] * 3, [True] * 3)
    in_order = _lc("in_order", [1.0, 2.0, 3.0], ["r", "g", "g"], [10.0, 20.0, 30.0], [1.0] * 3, [True] * 3)
    out = clf.run([*lcs.values(), unsorted, in_order])
    assert np.isfinite(out.probabilities).all()
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1.0, rtol=1e-9)
    assert dict(zip(out.object_ids, out.n_points.tolist())) == {
        "empty": 0, "single": 1, "all_nan": 0, "limits_only": 2, "duplicated": 3, "single_band": 20, "unsorted": 3,
        "in_order": 3}
    np.testing.assert_allclose(out.probabilities[-2], out.probabilities[-1], rtol=1e-5)
    # nothing observed: every empty light curve gets the same answer
    np.testing.assert_allclose(out.probabilities[0], out.probabilities[2], rtol=1e-6)

    result = out.to_table()
    assert result.column_names[:4] == ["object_id", "class", "probability", "p_SNIa"]
    assert result.column("model_version").to_pylist() == [3] * len(out)
    assert clf.run([]).to_table().num_rows == 0
    with pytest.raises(InvalidLightCurveError, match="mjd contains NaN"):
        clf.run([_lc("bad", [1.0, np.nan], ["g", "g"], [1.0, 2.0], [0.1, 0.1], [True, True])])
    with pytest.raises(InvalidLightCurveError, match="cannot make light curves"):
        clf.run(42)
    with pytest.raises(InvalidInputError, match="cannot be pickled"):
        pickle.dumps(clf)


@pytest.mark.filterwarnings("ignore:temperature scaling stopped")
def test_classifier_applies_the_calibration(sim, net):
    from astroray.eval import IsotonicCalibration, TemperatureScaling
    from astroray.models.lc_transformer import LightCurveClassifier

    rows = lightcurve_rows(sim, CLASSES)
    z = predict_rows(net, rows, logits=True)
    y = np.arange(len(sim)) % len(CLASSES)
    temp = TemperatureScaling().fit(z, y)
    got = LightCurveClassifier.from_model(net, calibrator=temp).run(rows)
    assert got.calibrated
    np.testing.assert_allclose(got.probabilities, temp.transform(z), rtol=1e-6)
    iso = IsotonicCalibration().fit(predict_rows(net, rows), y)
    np.testing.assert_allclose(LightCurveClassifier.from_model(net, calibrator=iso).run(rows).probabilities,
                               iso.transform(predict_rows(net, rows)), rtol=1e-3, atol=1e-4)


@pytest.mark.filterwarnings("ignore:temperature scaling stopped")
def test_classifier_loads_a_registered_model_by_alias(sim, net, astroray_home, monkeypatch):
    import mlflow

    from astroray.errors import ConfigError
    from astroray.eval import TemperatureScaling
    from astroray.models.lc_transformer import LightCurveClassifier
    from astroray.tracking import log_torch_model, register_champion, setup_mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    previous = mlflow.get_tracking_uri()
    try:
        rows = lightcurve_rows(sim[:6], CLASSES)
        z = predict_rows(net, rows, logits=True)
        temp = TemperatureScaling().fit(z, np.arange(6) % 3)
        setup_mlflow("lc-test")
        with mlflow.start_run():
            info = log_torch_model(mlflow, net, metadata={"calibration": temp.to_dict()})
        version = register_champion(info.model_uri, "astroray-lc-transformer")
        clf = LightCurveClassifier({})
        assert clf.version == version and clf.calibrated
        got = clf.run(rows)
        np.testing.assert_allclose(got.probabilities, temp.transform(z), rtol=1e-5)
        assert got.to_table().column("model_name").to_pylist() == ["astroray-lc-transformer"] * 6
        clone = pickle.loads(pickle.dumps(clf))  # rebuilt from its config, as Ray Data and Serve ship it
        np.testing.assert_allclose(clone.run(rows).probabilities, got.probabilities, rtol=1e-6)
        with pytest.raises(ConfigError, match="cannot load"):
            LightCurveClassifier({"model_uri": "models:/no-such-model@champion"})
    finally:
        mlflow.set_tracking_uri(previous)
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
