"""Alerts at scale: jobs/classify_alerts.py on Ray Data (every alert once, every input accounted for) and the
Serve route /alerts (real ZTF and Rubin packets in, every score out; malformed packets a 4xx; a new champion
picked up without a failed request).

One scratch MLflow store for the module with the three model kinds registered (see
tests/models/test_alert_scoring.py); inputs are copies of ../shared/data/alerts files in a scratch folder.
"""
from __future__ import annotations

import asyncio
import json
import shutil

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from astroray.errors import InvalidInputError

URL = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def store(alert_models, tmp_path_factory):
    """The session's alert models, in a store of this module's own (a test here registers new versions)."""
    home = tmp_path_factory.mktemp("alerts_home")
    shutil.copy(alert_models["home"] / "mlflow.db", home / "mlflow.db")  # artifacts stay where the runs put them
    return {"home": home, "uri": f"sqlite:///{home / 'mlflow.db'}"}


def _real_files(shared_data):
    a = shared_data / "alerts"
    return {"ztf1.avro": a / "ztf" / "avro" / "472263571115115000.avro",
            "ztf2.avro": a / "ztf" / "avro" / "2019_01_10_739260766315010006.avro",
            "fink_ztf.parquet": a / "fink" / "alerts.parquet",
            "rubin_or4.parquet": a / "fink" / "or4_lsst7.1" /
            "part-00000-96629e4a-60d4-442b-a338-687a16b8a35c-c000.snappy.parquet",
            "rubin_sample.avro": a / "lsst" / "schema" / "11" / "0" / "sample_data" / "fakeAlert.avro",
            "rubin_sample.json": a / "lsst" / "schema" / "11" / "0" / "sample_data" / "alert.json"}


@pytest.fixture(scope="module")
def night(tmp_path_factory, shared_data):
    """A night folder: real alert files, one repeated under another name, a schema, a corrupt file."""
    folder = tmp_path_factory.mktemp("night")
    for name, src in _real_files(shared_data).items():
        shutil.copy(src, folder / name)
    (folder / "sub").mkdir()
    shutil.copy(folder / "ztf1.avro", folder / "sub" / "ztf1_again.avro")  # the same alert twice
    shutil.copy(next((shared_data / "alerts" / "ztf" / "schema").rglob("*.avsc")), folder / "schema.avsc")
    (folder / "broken.avro").write_bytes(b"Obj\x01" + bytes(range(200)))
    return folder


def test_classify_alerts_scores_every_alert_once_and_accounts_for_every_input(ray_session, store, night, tmp_path):
    from astroray.io import read_alerts
    from astroray.ray.alerts_job import ClassifyAlertsConfig, classify_alerts, read_predictions

    out = tmp_path / "out"
    cfg = ClassifyAlertsConfig(scorer={"tracking_uri": store["uri"]}, num_actors=2, batch_size=64)
    summary = classify_alerts(night, out, cfg, progress=False)
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    by_name = {r["path"].rsplit("/", 1)[1]: r for r in manifest}
    assert set(by_name) == {*_real_files_names(), "ztf1_again.avro", "schema.avsc", "broken.avro"}
    assert by_name["broken.avro"]["status"] == "quarantined" and by_name["broken.avro"]["reason"]
    assert by_name["schema.avsc"]["status"] == "skipped"
    ok = [r for r in manifest if r["status"] == "ok"]
    assert len(ok) == 7
    for r in ok:  # the manifest agrees with the files themselves
        assert r["n_alerts"] == len(read_alerts(r["path"], cutouts=False))
    preds = read_predictions(out)
    ids = preds.column("alert_id").to_pylist()
    assert len(ids) == len(set(ids))  # every alert once
    quarantine = pq.read_table(out / "quarantine.parquet").to_pylist()
    dups = [q for q in quarantine if q["status"] == "duplicate"]
    # the repeated ZTF file, and the Rubin sample alert sent both as Avro and as JSON
    assert len(dups) == 2 and all("already scored" in d["reason"] for d in dups)
    assert sum(r["n_alerts"] for r in ok) == len(ids) + len(dups)
    assert summary["alerts_scored"] == len(ids) and summary["files_quarantined"] == 1
    assert summary["models"]["realbogus"]["pinned_uri"] == "models:/astroray-realbogus/1"
    assert json.loads((out / "summary.json").read_text())["alerts_scored"] == len(ids)
    # ZTF alerts with cutouts are scored by every model; the columns are typed
    rows = preds.to_pylist()
    ztf = [r for r in rows if r["survey"] == "ztf"]
    assert ztf and all(r["rb"] is not None and r["class"] is not None and r["anomaly_score"] is not None for r in ztf)
    assert all(r["realbogus_version"] == 1 for r in rows)
    # a second run into the same folder is refused without --overwrite, and replaces the outputs with it
    with pytest.raises(InvalidInputError, match="--overwrite"):
        classify_alerts(night, out, cfg, progress=False)
    again = classify_alerts(night, out, cfg, overwrite=True, progress=False)
    assert again["alerts_scored"] == len(ids) and read_predictions(out).num_rows == len(ids)


def _real_files_names():
    return ["ztf1.avro", "ztf2.avro", "fink_ztf.parquet", "rubin_or4.parquet", "rubin_sample.avro",
            "rubin_sample.json"]


def test_classify_alerts_job_refuses_a_missing_model_before_reading(store, night, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("classify_alerts_job",
                                                  Path(__file__).parents[2] / "jobs" / "classify_alerts.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    empty_store = f"sqlite:///{tmp_path / 'empty.db'}"
    code = job.main(["--input", str(night), "--out", str(tmp_path / "o"), "--tracking-uri", empty_store,
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "scorer.realbogus" in err and "jobs/train_realbogus.py" in err
    assert not (tmp_path / "o" / "manifest.parquet").exists()


# --------------------------------------------------------------------------- Serve


@pytest.fixture(scope="module")
def serve_app(ray_session, store):
    from ray import serve

    from astroray.ray.serve.app import build_app
    from astroray.ray.serve.schemas import ServeAppConfig

    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    config = ServeAppConfig(max_request_mb=8, alerts={"scorer": {"tracking_uri": store["uri"]}, "reload_check_s": 0,
                                                      "max_alerts": 1000},
                            classifier={"tracking_uri": store["uri"], "rare_events": {}},
                            deployments={"ingress": {"num_cpus": 0.1}, "differencer": {"num_cpus": 0.1},
                                         "alerts": {"num_cpus": 0.5}, "classifier": {"num_cpus": 0.25}})
    serve.run(build_app(config), name="astroray", route_prefix="/")
    yield serve
    serve.delete("astroray")


def test_alerts_route_scores_every_real_ztf_and_rubin_alert(serve_app, alert_files):
    from astroray.io import read_alerts

    files = alert_files
    assert len(files) >= 15
    surveys, n_alerts = set(), 0
    with httpx.Client(base_url=URL, timeout=120) as client:
        assert "alerts" in client.get("/healthz").json()["deployments"]
        for path in files:
            name = path.name
            body = path.read_bytes()
            kind = "application/json" if name.endswith(".json") else "application/octet-stream"
            r = client.post("/alerts", content=body, headers={"content-type": kind})
            assert r.status_code == 200, (name, r.text[:300])
            out = r.json()
            expected = [str(a.alert_id) for a in read_alerts(path, cutouts=False)]
            assert out["n_alerts"] == len(expected) and [a["alert_id"] for a in out["alerts"]] == expected, name
            assert set(out["models"]) == {"realbogus", "classifier", "rare_events"}
            surveys |= {a["survey"] for a in out["alerts"]}
            n_alerts += out["n_alerts"]
            for a in out["alerts"]:
                assert a["class"] is None or abs(sum(a["class_probabilities"].values()) - 1) < 1e-5
                assert (a["rb"] is None) == (a["notes"] is not None and "rb:" in a["notes"])
        assert surveys == {"ztf", "lsst"} and n_alerts > 900
        openapi = client.get("/openapi.json").json()
        content = openapi["paths"]["/alerts"]["post"]["requestBody"]["content"]
        assert {"application/avro", "application/json"} <= set(content)
        assert "AlertsResponse" in openapi["components"]["schemas"]


def test_alerts_route_answers_malformed_packets_with_4xx_and_a_message(serve_app, shared_data):
    sample = (_real_files(shared_data)["rubin_sample.json"]).read_text()
    with httpx.Client(base_url=URL, timeout=60) as client:
        cases = {
            "garbage": (b"\x00\x01 not an alert", 422),
            "empty": (b"", 422),
            "json that is no alert": (b'{"hello": "world"}', 422),
            "truncated avro": (_real_files(shared_data)["ztf1.avro"].read_bytes()[:3000], 422),
            "too many alerts": (("[" + ",".join([sample] * 1001) + "]").encode(), 413),
        }
        for label, (body, status) in cases.items():
            r = client.post("/alerts", content=body, headers={"content-type": "application/json"})
            assert r.status_code == status, (label, r.status_code, r.text[:300])
            assert r.json()["detail"], label
        r = client.post("/alerts", content=b"x" * (9 * 2**20))
        assert r.status_code == 413 and "max_request_mb" in r.json()["detail"]


def test_a_new_champion_is_picked_up_by_the_next_request(serve_app, store, shared_data):
    from astroray.testing.realbogus import register_untrained_realbogus

    body = _real_files(shared_data)["ztf1.avro"].read_bytes()
    with httpx.Client(base_url=URL, timeout=60) as client:
        before = client.post("/alerts", content=body).json()["alerts"][0]
        version = register_untrained_realbogus(tracking_uri=store["uri"], seed=7)
        after = client.post("/alerts", content=body).json()["alerts"][0]
    assert after["realbogus_version"] == version == before["realbogus_version"] + 1
    assert np.isfinite(after["rb"])


def test_the_whole_graph_fits_a_small_machine_and_classify_answers(serve_app, shared_data):
    """With fractional CPUs per replica the ingress, differencer, alerts and classifier share the test Ray."""
    from astroray.io import read_lightcurves

    lcs = read_lightcurves(shared_data / "lightcurves" / "rrlyrae" / "light-curves")[:3]
    body = {"lightcurves": [{"object_id": lc.object_id, "mjd": lc.mjd.tolist(), "band": lc.band.tolist(),
                             "flux": [v if np.isfinite(v) else None for v in lc.flux.tolist()],
                             "flux_err": lc.flux_err.tolist()} for lc in lcs]}
    with httpx.Client(base_url=URL, timeout=60) as client:
        assert set(client.get("/healthz").json()["deployments"]) >= {"differencer", "classifier", "alerts"}
        r = client.post("/classify", json=body)
        assert r.status_code == 200, r.text[:300]
        out = r.json()
        assert [p["object_id"] for p in out["predictions"]] == [lc.object_id for lc in lcs]
        assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in out["predictions"])
        # the rare-event model's view beside it (the classifier section's store, its champion)
        rare_classes = out["rare_events_model"]["classes"]
        assert out["rare_events_model"]["name"] == "astroray-protonet" and len(rare_classes) >= 2
        for p in out["predictions"]:
            rare = p["rare_events"]
            assert set(rare["probabilities"]) == set(rare_classes)
            if rare["predicted_class"] is not None:
                assert abs(sum(rare["probabilities"].values()) - 1) < 1e-5 and 0 <= rare["anomaly_score"] <= 1
                assert rare["entropy"] >= 0 and rare["mutual_information"] >= -1e-9
        r = client.post("/classify", json={"lightcurves": [{"mjd": [1.0, 2.0], "band": ["g"], "flux": [1.0, 2.0],
                                                            "flux_err": [0.1, 0.1]}]})
        assert r.status_code == 422 and "unequal" in r.json()["detail"]


def test_the_ingress_refuses_past_its_in_flight_limit_before_reading_a_body():
    """Admission at the door: the (limit + 1)-th concurrent request of a route is a 503 with a message, the
    count is given back when a request ends however it ends, and other routes are not limited by it."""
    from fastapi import HTTPException

    from astroray.ray.serve.http import InFlightLimiter

    async def scenario():
        admit = InFlightLimiter({"alerts": 2})
        async with admit("/alerts"), admit("/alerts"):
            with pytest.raises(HTTPException) as refused:
                async with admit("/alerts"):
                    pass
            assert refused.value.status_code == 503 and "max_in_flight" in refused.value.detail
            async with admit("/difference"):  # no limit set for it
                pass
        with pytest.raises(ValueError):
            async with admit("/alerts"):
                raise ValueError("a request that fails")
        assert admit.in_flight == {"alerts": 0, "difference": 0}
        async with admit("/alerts"), admit("/alerts"):
            pass

    asyncio.run(scenario())


def test_a_request_past_the_limit_waits_for_a_slot_within_max_wait_newest_first():
    """With ``max_wait_ms`` a request past the limit takes a slot given back (the newest waiter first), at most
    ``limit`` wait, and one that waits longer than ``max_wait_ms`` (or finds the waiting line full) is a 503; a
    waiter cancelled (its client gone) leaves no slot behind."""
    from fastapi import HTTPException

    from astroray.ray.serve.http import InFlightLimiter

    async def scenario():
        admit = InFlightLimiter({"alerts": 1}, max_wait_ms=200)
        order, release = [], asyncio.Event()

        async def request(tag, hold=None):
            try:
                async with admit("/alerts"):
                    order.append(tag)
                    if hold is not None:
                        await hold.wait()
            except HTTPException as exc:
                order.append((tag, exc.status_code))

        first = asyncio.create_task(request("first", release))
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(request("second"))
        await asyncio.sleep(0.01)
        await request("third")  # the waiting line (1 = the limit) is full: 503 at once
        assert order == ["first", ("third", 503)]
        release.set()
        await asyncio.gather(first, waiter)
        assert order[2:] == ["second"] and admit.in_flight["alerts"] == 0

        # a waiter whose slot does not come back within max_wait_ms gets a 503 naming the wait
        release.clear()
        holder = asyncio.create_task(request("holder", release))
        await asyncio.sleep(0.01)
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(HTTPException) as late:
            async with admit("/alerts"):
                pass
        waited = asyncio.get_running_loop().time() - t0
        assert late.value.status_code == 503 and "max_wait_ms" in late.value.detail and 0.15 < waited < 1.0
        # a cancelled waiter leaves the line; the slot goes back to the count
        gone = asyncio.create_task(request("gone"))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        release.set()
        await holder
        assert admit.in_flight["alerts"] == 0 and not admit._waiters["alerts"]
        async with admit("/alerts"):
            assert admit.in_flight["alerts"] == 1

        # a waiter cancelled just after a slot was handed to it gives the slot back
        release.clear()
        holder = asyncio.create_task(request("holder", release))
        await asyncio.sleep(0.01)
        handed = asyncio.create_task(request("handed"))
        await asyncio.sleep(0.01)
        release.set()
        while admit._waiters["alerts"]:  # the holder leaves and hands its slot over
            await asyncio.sleep(0)
        handed.cancel()
        await asyncio.gather(holder, handed, return_exceptions=True)
        assert handed.cancelled() and admit.in_flight["alerts"] == 0

        # two waiters on a limit of two: the newest takes the first slot given back
        admit, order[:] = InFlightLimiter({"alerts": 2}, max_wait_ms=500), []  # `request` uses the new one
        held = {tag: asyncio.Event() for tag in ("h0", "h1", "older", "newer")}
        tasks = []
        for tag, event in held.items():
            tasks.append(asyncio.create_task(request(tag, event)))
            await asyncio.sleep(0.01)
        held["h0"].set()
        await asyncio.sleep(0.01)
        assert order == ["h0", "h1", "newer"]
        for event in held.values():
            event.set()
        await asyncio.gather(*tasks)
        assert order[3:] == ["older"] and admit.in_flight["alerts"] == 0

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="max_wait_ms"):
        InFlightLimiter({"alerts": 1}, max_wait_ms=-1)


