"""`ray job submit` for real: a local head, jobs/demo.py with --working-dir, outputs checked, head stopped."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = 8277


@pytest.fixture
def ray_head(tmp_path):
    """A separate Ray head (its own ports and temp dir) started with this venv first on PATH."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    # a user's shell: mlflow.set_tracking_uri() in earlier tests of this session exports
    # MLFLOW_TRACKING_URI, which the head (and so the job) would inherit and obey over ASTRORAY_HOME
    env.pop("MLFLOW_TRACKING_URI", None)
    temp_dir = Path("/tmp") / f"ray-jobtest-{os.getpid()}"
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--port=6399",
           f"--dashboard-port={DASHBOARD}", "--dashboard-host=127.0.0.1", "--num-cpus=2",
           "--object-store-memory=500000000", f"--temp-dir={temp_dir}", "--include-dashboard=true",
           "--disable-usage-stats",
           # every port of its own: the test session's Ray already holds the defaults on this machine
           "--dashboard-agent-listen-port=52399", "--dashboard-agent-grpc-port=52398", "--metrics-export-port=52397",
           "--runtime-env-agent-port=52396", "--node-manager-port=52395", "--object-manager-port=52394",
           "--ray-client-server-port=10099", "--min-worker-port=20000", "--max-worker-port=20999"]
    head = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{DASHBOARD}/api/version", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if head.poll() is not None:
            pytest.fail(f"ray head exited early: {head.stdout.read().decode()[-2000:]}")
        time.sleep(1)
    else:
        os.killpg(head.pid, signal.SIGTERM)
        pytest.fail("ray head did not come up within 120 s")
    yield env
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)


@pytest.mark.slow
def test_demo_runs_under_ray_job_submit(ray_head, tmp_path):
    """The README's command: outputs and the MLflow run land in the user's $ASTRORAY_HOME, not Ray's temp copy."""
    import json

    home = tmp_path / "home"
    config = tmp_path / "demo.yaml"
    config.write_text("n_pairs: 2\nn_corrupt: 1\nnum_actors: 1\ntrack: true\n"
                      "realbogus: null\n"  # the fast path: no model to train in a scratch home (test_demo scores)
                      "simulation:\n  shape: [1024, 1024]\n")
    submit = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address",
              f"http://127.0.0.1:{DASHBOARD}", "--working-dir", str(REPO),
              "--runtime-env-json", json.dumps({"env_vars": {"ASTRORAY_HOME": str(home)}}),
              "--", "python", "jobs/demo.py", "--config", str(config)]
    deadline = time.time() + 120
    while True:  # the dashboard answers before its job agent has registered
        proc = subprocess.run(submit, env=ray_head, capture_output=True, text=True, timeout=480)
        if "No available agent" not in proc.stderr + proc.stdout or time.time() > deadline:
            break
        time.sleep(3)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "succeeded" in proc.stdout.lower()
    out = home / "demo"
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert sorted(manifest["status"]) == ["ok", "ok", "quarantined"]
    assert len(list((out / "alerts").glob("*.parquet"))) == 2
    assert (out / "overview.png").stat().st_size > 10_000
    # the run is in the user's store, with its metrics and the overview artifact
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("astroray-demo").experiment_id])
    assert len(runs) == 1 and runs[0].data.metrics["recovered_fraction_snr7"] > 0.5
    assert [a.path for a in client.list_artifacts(runs[0].info.run_id)] == ["overview.png"]
