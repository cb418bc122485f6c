"""MLflow: tracking URI, experiments, registry names and aliases.

The embedded default is a sqlite store and an artifact folder under
``$ASTRORAY_HOME`` (no server).  Set ``MLFLOW_TRACKING_URI`` (or a job config's
``tracking_uri``) to use a shared tracking server on a cluster; everything
else stays the same.  Under ``ray job submit`` the default home is
``~/.astroray`` on the node running the job's entry point, not Ray's temporary
copy of the working dir (see :func:`astroray.config.astroray_home`).
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from astroray.config import astroray_home
from astroray.errors import ConfigError

__all__ = ["tracking_uri", "artifact_location", "setup_mlflow", "check_tracking_uri", "REGISTERED_MODELS",
           "CHAMPION_ALIAS"]

CHAMPION_ALIAS = "champion"
REGISTERED_MODELS = {
    "real_bogus": "astroray-realbogus",
    "lc_transformer": "astroray-lc-transformer",
    "protonet": "astroray-protonet",
    "ner": "astroray-ner",
}


def check_tracking_uri(uri: str) -> str:
    """``uri`` if it names a store that outlives the process's folder: a server, or an absolute local path.

    Raises
    ------
    ConfigError
        A relative ``sqlite:`` or ``file:`` path (under ``ray job submit`` it
        would land in Ray's temporary copy of the working dir and vanish).
    """
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
        if not path.startswith("/") and path != ":memory:":
            raise ConfigError(f"tracking URI {uri!r} is relative: use an absolute path (sqlite:////abs/mlflow.db) "
                              "or a tracking server")
    elif parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme == "file" else uri
        if not Path(path).is_absolute():
            raise ConfigError(f"tracking URI {uri!r} is a relative folder: use an absolute path or a tracking server")
    return uri


def tracking_uri(explicit: str | None = None) -> str:
    """The store runs go to: ``explicit`` (a config's), else ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///$ASTRORAY_HOME/mlflow.db`` (absolute)."""
    if explicit:
        return check_tracking_uri(explicit)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return check_tracking_uri(env)
    return f"sqlite:///{astroray_home() / 'mlflow.db'}"


def artifact_location() -> str:
    """Artifact root for experiments created here (a folder under ``$ASTRORAY_HOME``)."""
    path = astroray_home() / "mlartifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def setup_mlflow(experiment: str, *, uri: str | None = None):
    """Point MLflow at the astroray store (``uri`` or :func:`tracking_uri`) and select ``experiment``.

    The experiment is created if needed, with its artifacts under
    ``$ASTRORAY_HOME/mlartifacts`` for a local store.  Returns the ``mlflow``
    module, ready for ``mlflow.start_run()``.
    """
    import logging

    import mlflow

    # alembic's migration chatter on the first use of a sqlite store is noise for users
    logging.getLogger("alembic").setLevel(logging.WARNING)
    target = tracking_uri(uri)
    mlflow.set_tracking_uri(target)
    if mlflow.get_experiment_by_name(experiment) is None:
        local = target.startswith(("sqlite:", "file:")) or "://" not in target
        mlflow.create_experiment(experiment,
                                 artifact_location=f"{artifact_location()}/{experiment}" if local else None)
    mlflow.set_experiment(experiment)
    return mlflow
