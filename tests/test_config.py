"""Configs: frozen, unknown keys rejected, errors name the key and the file."""
import pytest
from pydantic import Field

from astroray.config import AstrorayConfig, load_config
from astroray.errors import ConfigError


class Inner(AstrorayConfig):
    box_size: int = Field(default=64, gt=0)


class Outer(AstrorayConfig):
    n: int = 3
    inner: Inner = Field(default_factory=Inner)


def test_defaults_and_overrides(tmp_path):
    assert load_config(None, Outer) == Outer()
    path = tmp_path / "c.yaml"
    path.write_text("n: 5\ninner:\n  box_size: 32\n")
    cfg = load_config(path, Outer, inner={"box_size": 16})
    assert cfg.n == 5 and cfg.inner.box_size == 16


def test_frozen():
    with pytest.raises(Exception):
        Outer().n = 4


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("n: 5\ninner:\n  box_sise: 32\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, Outer)
    msg = str(err.value)
    assert "bad.yaml" in msg and "inner.box_sise" in msg and "unknown key" in msg


def test_bad_value_names_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("inner:\n  box_size: -1\n")
    with pytest.raises(ConfigError, match=r"inner\.box_size.*greater than 0"):
        load_config(path, Outer)


def test_missing_file_and_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", Outer)
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path, Outer)
    path.write_text("n: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path, Outer)


SHIPPED = {
    "demo.yaml": "astroray.ray.demo:DemoConfig",
    "difference.yaml": "astroray.ray.image_job:DifferenceJobConfig",
    "difference_survey.yaml": "astroray.ray.image_job:DifferenceJobConfig",
    "make_stamps.yaml": "astroray.ray.stamps:StampJobConfig",
    "make_stamps_ztf.yaml": "astroray.ray.stamps:StampJobConfig",
    "train_realbogus.yaml": "astroray.ray.train_realbogus:TrainRealBogusConfig",
    "tune_realbogus.yaml": "astroray.ray.train_realbogus:TuneRealBogusConfig",
    "train_ner.yaml": "astroray.ray.ner:TrainNerConfig",
    "tune_ner.yaml": "astroray.ray.ner:TuneNerConfig",
    "train_lightcurves.yaml": "astroray.ray.train_lightcurves:TrainLightCurvesConfig",
    "train_lightcurves_rrlyrae.yaml": "astroray.ray.train_lightcurves:TrainLightCurvesConfig",
    "tune_lightcurves.yaml": "astroray.ray.train_lightcurves:TuneLightCurvesConfig",
    "classify_alerts.yaml": "astroray.ray.alerts_job:ClassifyAlertsConfig",
    "train_rare_events.yaml": "astroray.ray.train_rare_events:TrainRareEventsConfig",
}
"""Each shipped job config and the model that validates it (serve.yaml is checked through Serve's args)."""


def test_shipped_configs_validate():
    """Every YAML in configs/ loads into its model (a typo there must fail here, not in a job)."""
    import importlib
    from pathlib import Path

    import yaml

    from astroray.ray.serve.schemas import ServeAppConfig

    root = Path(__file__).resolve().parents[1] / "configs"
    found = {p.name for p in root.glob("*.yaml")}
    assert found - {"serve.yaml"} <= set(SHIPPED), f"configs without a validating model here: {found - set(SHIPPED)}"
    for name, target in SHIPPED.items():
        module, cls = target.split(":")
        cfg = load_config(root / name, getattr(importlib.import_module(module), cls))
        if hasattr(cfg, "scorer"):  # the alert scorer's model sections validate when the scorer is built
            for section in ("realbogus", "classifier", "rare_events"):
                cfg.scorer.section(section)
    serve_cfg = yaml.safe_load((root / "serve.yaml").read_text())
    for app in serve_cfg["applications"]:
        args = ServeAppConfig.model_validate(app["args"])
        if args.alerts is not None:
            for section in ("realbogus", "classifier", "rare_events"):
                args.alerts.scorer.section(section)


def test_results_outlive_a_ray_job_working_dir_copy(tmp_path, monkeypatch):
    """In Ray's temporary copy of --working-dir, the default home is ~/.astroray, not the copy."""
    from astroray.config import astroray_home

    copy = tmp_path / "session_x" / "runtime_resources" / "working_dir_files" / "_ray_pkg_abc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.delenv("ASTRORAY_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert astroray_home() == (copy / ".astroray").resolve()  # not a job: the current folder
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    assert astroray_home() == (tmp_path / "user" / ".astroray").resolve()
    monkeypatch.setenv("ASTRORAY_HOME", str(tmp_path / "mine"))
    assert astroray_home() == (tmp_path / "mine").resolve()


def test_relative_tracking_stores_are_refused():
    from astroray.errors import ConfigError
    from astroray.tracking import tracking_uri

    assert tracking_uri("sqlite:////abs/mlflow.db") == "sqlite:////abs/mlflow.db"
    assert tracking_uri("http://mlflow.example:5000") == "http://mlflow.example:5000"
    for bad in ("sqlite:///mlflow.db", "mlruns", "file:mlruns"):
        with pytest.raises(ConfigError, match="relative"):
            tracking_uri(bad)
