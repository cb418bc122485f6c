"""``astroray serve``: run a Serve config file on a local Ray (or the cluster at ``$RAY_ADDRESS``).

What ``serve run configs/serve.yaml`` does, started through
:func:`astroray.ray.runtime.ensure_ray` (token authentication with an
ephemeral token, no notice, no token file), waiting until every application
answers before it says so.
"""
from __future__ import annotations

import time
from pathlib import Path

import yaml

from astroray.errors import ConfigError

__all__ = ["load_serve_config", "deploy_config"]


def load_serve_config(path: str | Path):
    """A Serve deploy config (``ServeDeploySchema``) from YAML; errors name the file."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Serve config not found: {path}")
    try:
        return ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"invalid Serve config {path}: {exc}") from None


def deploy_config(config, *, timeout_s: float = 300.0) -> list[str]:
    """Start Serve with the config's HTTP options, deploy its applications, wait until they run.

    Returns the applications' base URLs.

    Raises
    ------
    ConfigError
        An application failed to deploy (the message is Serve's reason).
    """
    from ray import serve
    from ray.serve._private import api as serve_api  # what `serve run` uses; Ray is pinned (2.60.x)

    from astroray.ray.runtime import ensure_ray

    ensure_ray(namespace="serve", log_to_driver=True)
    client = serve_api.serve_start(http_options=config.http_options.model_dump(),
                                   proxy_location=config.proxy_location)
    client.deploy_apps(config, _blocking=False)
    names = [app.name for app in config.applications]
    deadline = time.time() + timeout_s
    while True:
        apps = serve.status().applications
        states = {name: apps[name].status if name in apps else "NOT_STARTED" for name in names}
        failed = [name for name, st in states.items() if st in ("DEPLOY_FAILED", "UNHEALTHY")]
        if failed:
            raise ConfigError(f"application {failed[0]!r} failed to deploy: {apps[failed[0]].message}")
        if all(st == "RUNNING" for st in states.values()):
            break
        if time.time() > deadline:
            raise ConfigError(f"applications not running after {timeout_s:g} s: {states}")
        time.sleep(1.0)
    host, port = config.http_options.host, config.http_options.port
    return [f"http://{host}:{port}{app.route_prefix or '/'}" for app in config.applications]
