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
