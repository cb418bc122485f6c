"""MLflow: tracking URI, experiments, registry names and aliases.

The embedded default is a sqlite store and an artifact folder under
``$ASTRORAY_HOME`` (no server).  Set ``MLFLOW_TRACKING_URI`` to use a shared
tracking server on a cluster; everything else stays the same.
"""
from __future__ import annotations

import os


from astroray.config import astroray_home

__all__ = ["tracking_uri", "artifact_location", "setup_mlflow", "REGISTERED_MODELS", "CHAMPION_ALIAS"]

CHAMPION_ALIAS = "champion"
REGISTERED_MODELS = {
    "real_bogus": "astroray-unet",
    "lc_transformer": "astroray-lc-transformer",
    "protonet": "astroray-protonet",
    "ner": "astroray-ner",
}


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///$ASTRORAY_HOME/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{astroray_home() / 'mlflow.db'}"


def artifact_location() -> str:
    """Artifact root for experiments created here (a folder under ``$ASTRORAY_HOME``)."""
    path = astroray_home() / "mlartifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def setup_mlflow(experiment: str):
    """Point MLflow at the astroray store and select (creating if needed) ``experiment``.

    Returns the ``mlflow`` module, ready for ``mlflow.start_run()``.
    """
    import logging

    import mlflow

    # alembic's migration chatter on the first use of a sqlite store is noise for users
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri())
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=f"{artifact_location()}/{experiment}")
    mlflow.set_experiment(experiment)
    return mlflow


