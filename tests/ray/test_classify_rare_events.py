"""``astroray classify lightcurves --support DIR``: the rare-event model's prototypes built from a folder of
labelled light curves (one subfolder per class), its columns beside the transformer's, on Ray Data.

The models are the session's scratch store (``alert_models``: an untrained transformer, a small fitted rare-event
model); what is checked is the path (support folder -> prototypes -> actors -> columns), and that the Ray Data
rows equal the model's own answer in this process.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

SUPPORT_CLASSES = ("SLSN", "TDE")  # sorted folder names: the only classes once the support is built


def _simulate(n, seed, weights):
    from astroray.datasets import LightCurveConfig, simulate_lightcurves

    config = LightCurveConfig(survey="ztf", nondetections="upper_limit", class_weights=weights)
    return simulate_lightcurves(n, config=config, seed=seed).lightcurves


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    import pyarrow.parquet as pq

    from astroray.records import lightcurves_to_table

    root = tmp_path_factory.mktemp("rare")
    support = root / "support"
    for i, cls in enumerate(SUPPORT_CLASSES):
        (support / cls).mkdir(parents=True)
        lcs = _simulate(4, 50 + i, {cls: 1.0})
        for lc in lcs:  # the folder names the class, whatever the files say
            lc.label = None
        pq.write_table(lightcurves_to_table(lcs), support / cls / "known.parquet")
    (root / "in").mkdir()
    targets = _simulate(6, 60, {"TDE": 1.0, "SLSN": 1.0, "SNIa": 1.0})
    pq.write_table(lightcurves_to_table(targets), root / "in" / "night.parquet")
    return {"support": support, "input": root / "in", "targets": targets, "root": root}


def test_classify_with_a_support_folder_adds_rare_event_columns_over_its_classes(ray_session, alert_models, folders,
                                                                                 tmp_path, capsys):
    import pyarrow.parquet as pq

    from astroray.cli import main
    from astroray.models.rare_events import load_rare_event_model, read_support

    out = tmp_path / "rare.parquet"
    code = main(["classify", "lightcurves", "--input", str(folders["input"]), "--out", str(out),
                 "--tracking-uri", alert_models["uri"], "--support", str(folders["support"]), "--actors", "1"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["objects_classified"] == 6
    rare = summary["rare_events"]
    assert rare["classes"] == list(SUPPORT_CLASSES) and rare["support"]["per_class"] == {"TDE": 4, "SLSN": 4}
    assert rare["model"]["name"] == "astroray-protonet" and np.isfinite(rare["open_set_threshold"])

    table = pq.read_table(out).to_pandas().set_index("object_id")
    p = table[[f"rare_p_{c}" for c in SUPPORT_CLASSES]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-9)
    assert set(table["rare_class"]) <= set(SUPPORT_CLASSES)
    assert table["anomaly_score"].between(0, 1).all() and (table["rare_entropy"] >= 0).all()
    # the transformer's own columns are still there
    assert {"class", "probability", "model_version"} <= set(table.columns)

    # the same numbers as the model with that support, here
    model, _ = load_rare_event_model("models:/astroray-protonet@champion", tracking_uri=alert_models["uri"])
    local = model.with_support(*read_support(folders["support"])).run(folders["targets"])
    ids = [str(x) for x in local.object_ids]
    np.testing.assert_allclose(table.loc[ids, [f"rare_p_{c}" for c in SUPPORT_CLASSES]].to_numpy(),
                               local.probabilities, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(table.loc[ids, "anomaly_score"].to_numpy(), local.anomaly_score, rtol=1e-6)
    np.testing.assert_array_equal(table.loc[ids, "none_of_these"].to_numpy(), local.none_of_these)
    np.testing.assert_allclose(table.loc[ids, "rare_mutual_information"].to_numpy(), local.mutual_information,
                               rtol=1e-6, atol=1e-12)


def test_a_support_folder_that_cannot_make_prototypes_is_a_clear_error(folders, tmp_path):
    """Not a folder, nothing in it, or loose light curves without a label: errors that say what to do."""
    import pyarrow.parquet as pq

    from astroray.errors import InvalidInputError
    from astroray.models.rare_events import read_support
    from astroray.records import lightcurves_to_table

    with pytest.raises(InvalidInputError, match="not a folder"):
        read_support(folders["input"] / "night.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no light curves"):
        read_support(tmp_path / "empty")
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "README.md").write_text("# what these are\n")  # not light curves: passed over
    lcs = _simulate(2, 70, {"TDE": 1.0})
    for lc in lcs:
        lc.label = None
    pq.write_table(lightcurves_to_table(lcs), loose / "x.parquet")
    with pytest.raises(InvalidInputError, match="subfolder named after their class"):
        read_support(loose)
    # labelled loose files are a support of their own labels
    for lc in lcs:
        lc.label = "TDE"
    pq.write_table(lightcurves_to_table(lcs), loose / "x.parquet")
    got, labels = read_support(loose)
    assert labels == ["TDE", "TDE"] and [g.object_id for g in got] == [lc.object_id for lc in lcs]
