"""Shared fixtures: the shared real data, one Ray per test session, a scratch ASTRORAY_HOME."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("ASTRORAY_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$ASTRORAY_SHARED_DATA``).

    Skips where it is missing, except under ``CI=true``, where a missing folder
    is a failure: a wrong path must never pass silently.
    """
    path = _shared_data_dir()
    if not (path / "README.md").is_file():
        msg = f"shared data not found at {path} (set ASTRORAY_SHARED_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (start-up costs ~10 s)."""
    from astroray.ray.runtime import ensure_ray

    ray = ensure_ray(num_cpus=4, runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore"}})
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    except Exception:
        pass
    ray.shutdown()


@pytest.fixture(scope="session")
def alert_files(shared_data) -> list[Path]:
    """Every alert file under the shared data (ZTF and Rubin Avro, Fink/Rubin Parquet, Rubin JSON samples; the
    schema folders' other files left out)."""
    root = shared_data / "alerts"
    files = sorted(p for p in root.rglob("*") if p.suffix in (".avro", ".parquet", ".json") and p.is_file())
    return [p for p in files if "schema" not in p.parts or "sample_data" in p.parts]


@pytest.fixture(scope="session")
def alert_models(tmp_path_factory):
    """A scratch MLflow store with the three alert models registered as training registers them (an untrained
    U-Net and transformer, a small fitted rare-event model), made once for every test that scores alerts:
    ``{"home": folder, "uri": sqlite URI}``."""
    from astroray.testing.lightcurves import register_untrained_lc_transformer
    from astroray.testing.rare_events import register_small_rare_event_model
    from astroray.testing.realbogus import register_untrained_realbogus

    home = tmp_path_factory.mktemp("alert_models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASTRORAY_HOME", str(home))  # the artifacts' folder
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # set_tracking_uri exports it: undone with the patch
        uri = f"sqlite:///{home / 'mlflow.db'}"
        register_untrained_realbogus(tracking_uri=uri)
        register_untrained_lc_transformer(tracking_uri=uri)
        register_small_rare_event_model(tracking_uri=uri, survey="ztf", seed=0)
    return {"home": home, "uri": uri}


@pytest.fixture
def astroray_home(tmp_path, monkeypatch) -> Path:
    """A fresh ``ASTRORAY_HOME`` for one test."""
    home = tmp_path / "astroray_home"
    monkeypatch.setenv("ASTRORAY_HOME", str(home))
    return home


def pytest_collection_modifyitems(config, items):
    from astroray.kernels.backend import gpu_available

    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU with CuPy (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
