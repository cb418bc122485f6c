"""NER on the backbone: a tiny model trained, logged, registered and loaded by alias; a 2-trial sweep in MLflow;
``astroray ner`` over a folder with bad files; the Serve deployment through a handle and the ingress over HTTP."""
from __future__ import annotations

import json

import httpx
import pytest

GOOD = "GRB 221009A: Swift-XRT and Fermi-GBM observations of Swift J1727.8-1613 and SN 2023ixf"
URL = "http://127.0.0.1:8000/nertest"


@pytest.fixture(scope="module")
def registered(shared_data, tmp_path_factory):
    """One tiny NER model trained by the train job's code, logged and registered in a scratch store."""
    from astroray.ray.ner import TrainNerConfig, train_ner_job

    home = tmp_path_factory.mktemp("ner_home")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASTRORAY_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", uri)  # mlflow.set_tracking_uri exports it; restored after the module
        # no gazetteer: its ~10^4 phrase patterns cost seconds in every load (driver, actors, replicas)
        cfg = TrainNerConfig(shared_data=str(shared_data), use_gazetteer=False,
                             weak={"n_simulated": 40, "n_gcn_subjects": 40, "n_wiesp": 30, "wiesp_repeat": 1},
                             ner={"width": 16, "depth": 1, "embed_rows": 500, "epochs": 2, "batch_words": 1000})
        summary = train_ner_job(cfg)
        yield {"summary": summary, "uri": uri, "home": home}


def test_trained_model_is_logged_registered_and_loads_by_alias(registered):
    import mlflow

    from astroray.text.registry import NerFinder, load_ner_model

    s = registered["summary"]
    assert s["registered_version"] == 1 and s["atel_input"] == "raw_html"
    # the kept sets scored beside the regex baseline; the rules alone already pass the bar
    assert s["gcn_test_names_f1"] >= 0.98 and s["atel_names_f1"] >= 0.96
    assert s["atel_regex_over_raw_html_f1"] < 0.6
    run = mlflow.MlflowClient(tracking_uri=registered["uri"]).get_run(s["run_id"])
    for key in ("gcn_test_names_f1", "gcn_test_regex_names_f1", "atel_names_f1", "atel_regex_over_raw_html_f1",
                "overall_names_f1", "names_without_convention_pipeline_recall", "dev_names_f1"):
        assert key in run.data.metrics, key
    assert run.data.params["ner.width"] == "16" and run.data.params["weak.n_simulated"] == "40"

    nlp, info = load_ner_model("models:/astroray-ner@champion", tracking_uri=registered["uri"])
    assert info["version"] == 1 and "astroray_ner" in nlp.pipe_names  # the spaCy flavour, our components
    finder = NerFinder({"tracking_uri": registered["uri"], "fallback": "error"})
    assert finder.info["kind"] == "registered" and finder.version == 1
    rows = finder.run([GOOD, ""])
    names = {(r["text"], r["label"]) for r in rows}
    assert {("GRB 221009A", "EVENT"), ("Swift J1727.8-1613", "SOURCE"), ("SN 2023ixf", "EVENT")} <= names
    assert all(GOOD[r["start"]:r["end"]] == r["text"] for r in rows)
    assert finder.reload_if_moved() is False  # the alias has not moved


def test_unregistered_alias_falls_back_to_rules_or_fails(astroray_home, monkeypatch):
    from astroray.errors import ConfigError
    from astroray.text.registry import NerFinder

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    finder = NerFinder()  # empty home: no store, and none is created by asking
    assert finder.info["kind"] == "rules" and "not registered" in finder.info["model"]
    assert not (astroray_home / "mlflow.db").exists()
    assert {r["text"] for r in finder.run([GOOD])} >= {"GRB 221009A", "SN 2023ixf"}
    with pytest.raises(ConfigError, match="not registered"):
        NerFinder({"fallback": "error"})


def test_two_trial_sweep_lands_in_mlflow(ray_session, astroray_home, monkeypatch):
    import mlflow

    from astroray.ray.ner import _ner_trial
    from astroray.ray.tune import SweepConfig, run_sweep
    from astroray.text.training import simulated_examples

    uri = f"sqlite:///{astroray_home / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    docs = simulated_examples(48, seed=5)
    base = {"ner": {"width": 8, "depth": 1, "embed_rows": 200, "epochs": 2, "batch_words": 500},
            "gazetteer_dir": None}
    sweep = SweepConfig(metric="dev_names_f1", mode="max", num_samples=2, max_concurrent_trials=2, grace_period=1,
                        search_space={"ner.learning_rate": {"type": "loguniform", "low": 1e-3, "high": 1e-2},
                                      "ner.width": {"type": "choice", "values": [8, 16]}})
    result = run_sweep("ner", base, {"train": docs[:40], "dev": docs[40:]}, sweep, name="tune_ner_test",
                       experiment="astroray-ner-test", trainable=_ner_trial, max_t=3,
                       storage_path=str(astroray_home / "ray_results"))
    assert len(result.trials) == 2 and all(t["error"] is None for t in result.trials)
    assert set(result.best_config) == {"ner.learning_rate", "ner.width"}
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("astroray-ner-test")
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children), [r.info.status
                                                                                         for r in children]
    for r in children:
        assert "dev_names_f1" in r.data.metrics and "ner.learning_rate" in r.data.params
        assert len(client.get_metric_history(r.info.run_id, "dev_names_f1")) >= 2  # one per epoch, from epoch 0


def test_cli_over_a_folder_with_bad_files_accounts_for_every_input(registered, ray_session, tmp_path, monkeypatch):
    from astroray.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    src = tmp_path / "in"
    (src / "gcn").mkdir(parents=True)
    (src / "report.txt").write_text(GOOD + "\n")
    (src / "gcn" / "c.json").write_text(json.dumps({"subject": "EP240315a: Einstein Probe detection",
                                                    "body": "AT 2024abc and PSR J0437-4715 were seen."}))
    (src / "latin1.txt").write_bytes("Observations of \xe9ta Carinae".encode("latin-1"))
    (src / "nobody.html").write_text("<html><body><p>no telegram here</p></body></html>")
    (src / "empty.txt").write_text("")
    out = tmp_path / "out" / "names.jsonl"
    assert main(["ner", "--input", str(src), "--out", str(out), "--workers", "1"]) == 1  # some were quarantined
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {"GRB 221009A", "SN 2023ixf", "EP240315a", "AT 2024abc", "PSR J0437-4715"} <= {r["text"] for r in rows}
    for r in rows:
        assert set(r) == {"file", "doc_id", "text", "label", "start", "end", "normalised", "source"}
    manifest = {json.loads(line)["path"].split("/in/")[1]: json.loads(line)
                for line in out.with_name("names.manifest.jsonl").read_text().splitlines()}
    assert set(manifest) == {"report.txt", "gcn/c.json", "latin1.txt", "nobody.html", "empty.txt"}
    assert {k for k, v in manifest.items() if v["status"] == "ok"} == {"report.txt", "gcn/c.json"}
    assert "not valid utf-8" in manifest["latin1.txt"]["reason"]
    assert "no ATel telegram" in manifest["nobody.html"]["reason"] and "empty" in manifest["empty.txt"]["reason"]
    assert all("astroray-ner/1" in v["model"] for v in manifest.values())  # the champion, resolved once
    quarantine = out.with_name("names.quarantine.jsonl").read_text().splitlines()
    assert len(quarantine) == 3


@pytest.fixture(scope="module")
def ner_app(registered, ray_session):
    from ray import serve

    from astroray.ray.serve.app import build_app
    from astroray.ray.serve.schemas import ServeAppConfig

    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    args = ServeAppConfig(max_request_mb=1.0, ner={"tracking_uri": registered["uri"], "fallback": "error",
                                                   "max_text_chars": 200_000, "max_texts": 8})
    serve.run(build_app(args), name="astroray-ner-test", route_prefix="/nertest")
    yield serve.get_deployment_handle("ner", app_name="astroray-ner-test")
    serve.delete("astroray-ner-test")


def test_serve_deployment_through_a_handle(ner_app):
    from astroray.ray.serve.http import UserError

    out = ner_app.find.remote([GOOD, "", "nothing to see here"]).result()
    assert "astroray-ner/1" in out["model"]
    first, empty, none = out["results"]
    assert ("GRB 221009A", "EVENT") in {(e["text"], e["label"]) for e in first}
    assert empty == [] and none == []
    assert ner_app.find.remote([]).result()["results"] == []
    bad = ner_app.find.remote(["x" * 200_001]).result()
    assert isinstance(bad, UserError) and bad.status == 413 and "max_text_chars" in bad.message
    bad = ner_app.find.remote([GOOD, 3]).result()
    assert isinstance(bad, UserError) and bad.status == 422
    # concurrent requests are batched into one pipe, and each gets its own names back
    many = [ner_app.find.remote([f"Swift J1727.8-1613 seen on day {i}"]) for i in range(12)]
    assert all(r.result()["results"][0][0]["text"] == "Swift J1727.8-1613" for r in many)


def test_serve_http_routes_and_user_errors(ner_app):
    with httpx.Client(base_url=URL, timeout=60) as client:
        r = client.post("/ner", json={"texts": [GOOD, ""], "ids": ["a", "b"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert [x["id"] for x in body["results"]] == ["a", "b"] and body["results"][1]["entities"] == []
        assert any(e["normalised"] == "SN 2023ixf" for e in body["results"][0]["entities"])
        r = client.post("/ner/html", json={"text": GOOD + " <script>alert(1)</script>"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "GRB 221009A" in r.text and "EVENT" in r.text and "<script>alert" not in r.text
        r = client.post("/ner", content=b'{"texts": ["\xff\xfe bad"]}', headers={"content-type": "application/json"})
        assert r.status_code == 422 and "malformed request" in r.json()["detail"]
        r = client.post("/ner", json={"texts": ["a"] * 9})
        assert r.status_code == 413 and "max_texts" in r.json()["detail"]
        r = client.post("/ner", json={"texts": ["a"], "ids": []})
        assert r.status_code == 422 and "one id per text" in r.json()["detail"]
        r = client.post("/ner", content=b"x" * (2 * 2**20), headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = client.post("/ner", json={"text": GOOD})
        assert r.status_code == 422 and "'texts' is required" in r.json()["detail"]
