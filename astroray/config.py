"""Typed configuration: one pydantic model per stage, job and app.

Configs are frozen and reject unknown keys, so a typo in a YAML file fails at
load time with the key and the file named instead of being silently ignored::

    from astroray.config import load_config
    from astroray.pipelines.demo import DemoConfig
    cfg = load_config("configs/demo.yaml", DemoConfig)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from astroray.errors import ConfigError

__all__ = ["AstrorayConfig", "Device", "load_config", "config_from_dict", "astroray_home", "in_ray_job_working_dir"]

Device = Literal["cpu", "gpu", "auto"]
"""Where array work runs: ``"auto"`` picks the GPU when CuPy sees one."""

C = TypeVar("C", bound="AstrorayConfig")


class AstrorayConfig(BaseModel):
    """Base of every astroray config: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def with_updates(self: C, **changes: Any) -> C:
        """A validated copy with ``changes`` applied (nested dicts merged)."""
        merged = _deep_merge(self.model_dump(), changes)
        return config_from_dict(type(self), merged)


def _deep_merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"invalid config in {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check its spelling and nesting)")
        else:
            lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def config_from_dict(model: type[C], data: dict | None, *, source: str = "<dict>") -> C:
    """Validate ``data`` as ``model``; errors name each bad key and ``source``."""
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_config(path: str | os.PathLike | None, model: type[C], **overrides: Any) -> C:
    """Load a YAML file into ``model``.

    Parameters
    ----------
    path : path-like or None
        YAML file; ``None`` gives the model's defaults.
    model : type
        The :class:`AstrorayConfig` subclass to validate against.
    **overrides
        Values applied on top of the file (nested dicts merged).

    Raises
    ------
    ConfigError
        The file is missing, is not YAML mapping, or a key fails validation;
        the message names the file and the key.
    """
    data: dict = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {source}")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded
    if overrides:
        data = _deep_merge(data, overrides)
    return config_from_dict(model, data, source=source)


def in_ray_job_working_dir() -> bool:
    """Whether this process is a ``ray job submit`` entry point running in Ray's copy of ``--working-dir``.

    That copy is deleted when the job ends: nothing meant to outlive the job may be written there.
    """
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ and "runtime_resources" in Path.cwd().parts


def astroray_home() -> Path:
    """Folder for the MLflow store, artifacts and outputs, made if missing (an absolute path).

    ``$ASTRORAY_HOME`` when set; else ``./.astroray``, except in a
    ``ray job submit`` entry point running in Ray's temporary copy of the
    working dir, where ``~/.astroray`` (on the node that runs the entry point)
    keeps the results after the job.  Pass ``ASTRORAY_HOME`` in the job's
    runtime env (``--runtime-env-json '{"env_vars": {"ASTRORAY_HOME": "/abs/path"}}'``)
    to choose the place.
    """
    env = os.environ.get("ASTRORAY_HOME")
    if env:
        home = Path(env)
    elif in_ray_job_working_dir():
        home = Path.home() / ".astroray"
    else:
        home = Path(".astroray")
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home
