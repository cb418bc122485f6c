"""Using the real/bogus model: the image pipeline with a StampScorer, `astroray score stamps`, and Serve.

One scratch MLflow store for the module, holding an untrained U-Net registered as
astroray-realbogus@champion (the real class, logged and registered as training does): its
scores mean nothing, but every path from the registry to an ``rb`` is the real one.
"""
from __future__ import annotations

import base64
import io
import pickle

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from astroray.datasets import ImagePairConfig, simulate_pair

URL = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from astroray.testing.realbogus import register_untrained_realbogus

    home = tmp_path_factory.mktemp("rb_use")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASTRORAY_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # set_tracking_uri exports it: undone with the patch
        uri = f"sqlite:///{home / 'mlflow.db'}"
        yield {"home": home, "uri": uri, "version": register_untrained_realbogus(tracking_uri=uri)}


@pytest.fixture(scope="module")
def scorer(store):
    from astroray.models.scoring import StampScorer

    return StampScorer({"tracking_uri": store["uri"]})


@pytest.fixture(scope="module")
def pair_result(scorer):
    from astroray.imaging.pipeline import ImagePipeline, ImagePipelineConfig

    pair = simulate_pair(ImagePairConfig(shape=(256, 256)), seed=5, index=0)
    pipe = ImagePipeline(ImagePipelineConfig(device="cpu"), scorer=scorer)
    return pipe, pair, pipe.run(pair.reference, pair.science)


def test_the_pipeline_scores_every_candidate_with_a_registered_model(pair_result, scorer, store):
    from astroray.imaging.pipeline import catalog_to_table
    from astroray.records import CATALOG_SCHEMA, alerts_to_table, table_to_alerts

    pipe, pair, result = pair_result
    cat = result.catalog
    assert len(cat) > 0 and "score" in result.timings_ms
    rb = cat["rb"].to_numpy()
    assert np.all(np.isfinite(rb)) and np.all((rb >= 0) & (rb <= 1))
    # the scorer's scores of the alerts' own stamps, in catalog order
    stamps = {c: np.stack([getattr(a, f"cutout_{c}") for a in result.alerts])
              for c in ("science", "reference", "difference")}
    np.testing.assert_allclose(rb, scorer(stamps).scores, rtol=1e-6)
    alerts = table_to_alerts(alerts_to_table(result.alerts))  # through the alert schema and back
    assert [a.scores["rb"] for a in alerts] == pytest.approx(list(rb))
    assert alerts[0].meta["rb_model_name"] == "astroray-realbogus"
    assert alerts[0].meta["rb_model_version"] == store["version"]
    table = catalog_to_table(cat, pair_id="p")
    assert table.schema == CATALOG_SCHEMA and table["rb"].null_count == 0
    clone = pickle.loads(pickle.dumps(pipe))  # Ray ships stages so: rebuilt from the configs, scorer included
    assert clone.scorer is not None and clone.scorer.version == store["version"]


def test_a_model_reading_smaller_stamps_than_the_cutouts_is_a_config_error(scorer):
    from astroray.errors import ConfigError
    from astroray.imaging.pipeline import ImagePipeline, ImagePipelineConfig

    with pytest.raises(ConfigError, match="cutout_size"):
        ImagePipeline(ImagePipelineConfig(device="cpu", cutout_size=65), scorer=scorer)


def test_a_missing_model_fails_before_any_pair_with_what_to_do(store):
    from astroray.errors import ConfigError
    from astroray.models.scoring import StampScorerConfig
    from astroray.ray.image_job import pinned_scorer_config

    pinned = pinned_scorer_config(StampScorerConfig(tracking_uri=store["uri"]))
    assert pinned["model_uri"] == f"models:/astroray-realbogus/{store['version']}"
    with pytest.raises(ConfigError, match="realbogus: null"):
        pinned_scorer_config(StampScorerConfig(model_uri="models:/no-such-model@champion", tracking_uri=store["uri"]))


def _score(args, capsys):
    import json

    from astroray.cli import main

    code = main(["score", "stamps", "--no-progress", *args])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code != 2 else captured.err)


def test_score_stamps_on_a_real_ztf_alert_file(store, shared_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ASTRORAY_HOME", str(store["home"]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    source = shared_data / "alerts" / "ztf" / "avro" / "472263571115115000.avro"
    out = tmp_path / "rb.parquet"
    code, report = _score(["--input", str(source), "--out", str(out)], capsys)
    assert code == 0 and report["n_scored"] == 1 and report["n_quarantined"] == 0
    df = pd.read_parquet(out)
    assert df["id"].tolist() == ["472263571115115000"]
    assert 0 <= df["rb"].iloc[0] <= 1 and df["model_version"].iloc[0] == store["version"]
    assert df["model_name"].iloc[0] == "astroray-realbogus" and df["survey"].iloc[0] == "ztf"
    assert {"rb", "drb"} <= {k for k, _ in df["survey_scores"].iloc[0]}  # ZTF's own beside ours
    assert pd.read_parquet(tmp_path / "rb.quarantine.parquet").empty
    code, err = _score(["--input", str(source), "--out", str(out)], capsys)  # an existing output is refused
    assert code == 2 and "pass --overwrite" in err


def test_score_stamps_on_stamp_parquet_and_quarantine(pair_result, store, tmp_path, capsys, monkeypatch):
    import dataclasses

    from astroray.datasets.stamps import candidate_table
    from astroray.records import alerts_to_table

    monkeypatch.setenv("ASTRORAY_HOME", str(store["home"]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _, pair, result = pair_result
    n = len(result.catalog)
    stamps = {c: np.stack([getattr(a, f"cutout_{c}") for a in result.alerts]) for c in
              ("science", "reference", "difference")}
    stamps["score"] = np.zeros_like(stamps["science"])
    stamps["difference"][0] = np.nan  # nothing to judge: quarantined with the reason
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(candidate_table("p0", result.catalog, stamps, pair.truth, fwhm=3.0, size=63),
                   folder / "stamps.parquet")
    # an astroray alert file beside it: one alert without cutouts, the rest scored
    alerts = list(result.alerts)
    alerts[1] = dataclasses.replace(alerts[1], cutout_science=None)
    pq.write_table(alerts_to_table(alerts), folder / "alerts.parquet")
    (folder / "README.md").write_text("not data: skipped")
    out = tmp_path / "scores.parquet"
    code, report = _score(["--input", str(folder), "--out", str(out)], capsys)
    assert code == 1  # something was quarantined
    assert report["n_files"] == 2 and report["skipped"] == {"documentation": 1}
    assert report["n_scored"] == 2 * n - 2 and report["n_quarantined"] == 2
    assert report["reasons"] == {"no finite pixel in the difference cutout": 1, "no science cutout": 1}
    df = pd.read_parquet(out)
    from_stamps = df[df["source"].str.endswith("stamps.parquet")]
    assert len(from_stamps) == n - 1 and set(from_stamps["label"].dropna()) <= {0, 1}
    assert from_stamps["id"].iloc[0] == "p0-00001" and df["rb"].between(0, 1).all()
    # the same stamps score the same whichever file they came from
    by_alert = df[df["source"].str.endswith("alerts.parquet")].set_index("id")["rb"]
    by_stamp = from_stamps.set_index("id")["rb"]
    assert len(by_alert) == n - 1
    for i in range(2, n):
        assert by_stamp[f"p0-{i:05d}"] == pytest.approx(by_alert[alerts[i].alert_id], rel=1e-5)
    q = pd.read_parquet(tmp_path / "scores.quarantine.parquet")
    assert sorted(q["id"]) == sorted(["p0-00000", alerts[1].alert_id])


# --------------------------------------------------------------------------- Serve


@pytest.fixture(scope="module")
def serve_app(ray_session, store):
    from ray import serve

    from astroray.ray.serve.app import build_app
    from astroray.ray.serve.schemas import ServeAppConfig

    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    config = ServeAppConfig(max_request_mb=8.0, realbogus={"tracking_uri": store["uri"], "max_stamps": 8,
                                                           "reload_check_s": 0})
    serve.run(build_app(config), name="astroray", route_prefix="/")
    yield serve
    serve.delete("astroray")


def _npy(arr) -> str:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return base64.b64encode(buf.getvalue()).decode()


def test_realbogus_route_scores_npy_and_lists(serve_app, store):
    rng = np.random.default_rng(0)
    stamps = rng.normal(size=(3, 3, 63, 63)).astype(np.float32)
    stamps[2, 2] = np.nan  # no finite difference pixel: a null score, not real
    with httpx.Client(base_url=URL, timeout=60) as client:
        assert "realbogus" in client.get("/healthz").json()["deployments"]
        r = client.post("/realbogus", json={"stamps": _npy(stamps), "ids": ["a", "b", "c"]})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["ids"] == ["a", "b", "c"] and out["model_version"] == store["version"]
        assert all(0 <= s <= 1 for s in out["scores"][:2]) and out["scores"][2] is None and out["real"][2] is False
        # nested lists, one Rubin-sized (30 px) stamp with a null pixel: padded to the model's size, scored
        rubin = rng.normal(size=(3, 30, 30)).tolist()
        rubin[0][0][0] = None
        r = client.post("/realbogus", json={"stamps": rubin})
        assert r.status_code == 200, r.text
        assert r.json()["ids"] == ["0"] and 0 <= r.json()["scores"][0] <= 1
    # through the handle, as other deployments call it
    handle = serve_app.get_deployment_handle("realbogus", app_name="astroray")
    direct = handle.score.remote(stamps[:2]).result()
    assert direct["scores"] == pytest.approx(out["scores"][:2], rel=1e-5)


def test_realbogus_route_bad_input_is_4xx_with_a_message(serve_app):
    good = np.zeros((1, 3, 63, 63), np.float32)
    cases = [
        ({"stamps": "%%% not base64"}, 422, "not valid base64"),
        ({"stamps": _npy(np.zeros((1, 2, 63, 63), np.float32))}, 422, "(n, 3, S, S)"),
        ({"stamps": _npy(np.array([{"a": 1}], dtype=object))}, 422, "not numeric"),
        ({"stamps": base64.b64encode(b"\x93NUMPY\x01\x00" + b"x" * 20).decode()}, 422, "not a .npy"),
        ({"stamps": [[[1.0, 2.0], [3.0]]]}, 422, "unequal lengths"),
        ({"stamps": _npy(np.zeros((1, 3, 10, 10), np.float32))}, 422, "too small"),
        ({"stamps": _npy(good), "ids": ["a", "b"]}, 422, "2 ids for 1 stamps"),
        ({"stamps": _npy(good), "scale": 2}, 422, "unknown field 'scale'"),
        ({"stamps": _npy(np.zeros((9, 3, 15, 15), np.float32))}, 413, "max_stamps"),
        ({"stamps": _npy(np.zeros((1, 3, 300, 300), np.float32))}, 413, "max_stamp_px"),
    ]
    buf = io.BytesIO()
    np.save(buf, good)  # a header that promises more data than follows
    truncated = base64.b64encode(buf.getvalue()[:-100]).decode()
    cases.append(({"stamps": truncated}, 422, "bytes follow"))
    with httpx.Client(base_url=URL, timeout=60) as client:
        for body, status, words in cases:
            r = client.post("/realbogus", json=body)
            assert r.status_code == status and words in r.json()["detail"], (body.keys(), r.status_code, r.text)


def test_the_differencer_scores_in_process_and_the_alias_move_is_picked_up(serve_app, store):
    from astroray.io.fits import exposure_to_bytes
    from astroray.testing.realbogus import register_untrained_realbogus

    p = simulate_pair(ImagePairConfig(shape=(256, 256)), seed=5, index=0)
    body = {"reference": base64.b64encode(exposure_to_bytes(p.reference)).decode(),
            "science": base64.b64encode(exposure_to_bytes(p.science)).decode()}
    with httpx.Client(base_url=URL, timeout=60) as client:
        r = client.post("/difference", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["realbogus_model"] == {"name": "astroray-realbogus", "version": store["version"]}
        assert out["detections"] and all(0 <= d["rb"] <= 1 for d in out["detections"])
        # a new champion (reload_check_s: 0, so the next batch looks): scored by it without a redeploy
        new = register_untrained_realbogus(tracking_uri=store["uri"], seed=1)
        stamps = _npy(np.random.default_rng(1).normal(size=(1, 3, 63, 63)).astype(np.float32))
        r = client.post("/realbogus", json={"stamps": stamps})
        assert r.status_code == 200 and r.json()["model_version"] == new
