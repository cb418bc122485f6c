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
           "CHAMPION_ALIAS", "flatten_params", "log_figure_files", "log_torch_model", "register_champion",
           "alias_version", "moved_alias", "parse_model_uri", "load_logged_model", "load_torch_model", "epoch_metrics_callback"]

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


# --------------------------------------------------------------------------- runs, models, registry


def flatten_params(params: dict, prefix: str = "") -> dict[str, str]:
    """Nested config dicts as MLflow params: ``{"model.base_width": "8", ...}`` (values as strings, <= 500 chars)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, prefix=f"{name}."))
        else:
            out[name] = str(value)[:500]
    return out


def log_figure_files(mlflow, paths, *, folder: str = "plots") -> None:
    """Log PNG files (or any files) as artifacts of the active run under ``folder``."""
    for path in paths:
        if path is not None and Path(path).is_file():
            mlflow.log_artifact(str(path), artifact_path=folder)


def log_torch_model(mlflow, model, *, name: str = "model", input_example=None, metadata: dict | None = None,
                    pip_requirements: list[str] | None = None):
    """Log a torch ``nn.Module`` with MLflow's PyTorch flavour (pickled module, signature from the example).

    The module's class must be importable where it is loaded (astroray's
    models are).  ``pip_requirements`` default to this environment's torch
    and numpy: MLflow would otherwise infer them by loading the model in a
    subprocess (about a minute on a busy 2-core machine).  Returns MLflow's ``ModelInfo``.
    """
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    if pip_requirements is None:
        pip_requirements = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]

    signature = None
    if input_example is not None:
        model.eval()
        with torch.inference_mode():
            output = model(torch.as_tensor(input_example)).numpy()
        signature = infer_signature(np.asarray(input_example), output)
    return mlflow.pytorch.log_model(model, name=name, signature=signature, input_example=input_example,
                                    serialization_format="pickle", metadata=metadata or {},
                                    pip_requirements=pip_requirements)


def register_champion(model_uri: str, name: str, *, alias: str = CHAMPION_ALIAS, tags: dict | None = None,
                      uri: str | None = None) -> int:
    """Register ``model_uri`` (``runs:/...`` or ``models:/m-...``) as a new version of ``name`` and point ``alias`` at it.

    Returns the version number.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(uri))
    version = mlflow.register_model(model_uri, name, tags=tags or None)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, alias, version.version)
    return int(version.version)


def alias_version(name: str, *, alias: str = CHAMPION_ALIAS, uri: str | None = None) -> int | None:
    """The version ``alias`` points at, or None when the model or the alias does not exist."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=tracking_uri(uri))
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def moved_alias(model_uri: str, loaded_version: int | None, *, uri: str | None = None) -> int | None:
    """The version ``model_uri``'s alias points at now, when that is not ``loaded_version``; else None.

    None also for URIs that name no alias (``models:/NAME/VERSION``, ``runs:/...``: nothing can move) and for
    an alias that no longer exists (keep serving what is loaded)."""
    if not model_uri.startswith("models:/"):
        return None
    name, alias = parse_model_uri(model_uri)
    if alias is None:
        return None
    current = alias_version(name, alias=alias, uri=uri)
    return None if current is None or current == loaded_version else current


def parse_model_uri(model_uri: str) -> tuple[str, str | None]:
    """``(name, alias or None)`` of ``models:/NAME@ALIAS`` (or ``models:/NAME/VERSION`` -> (NAME, None))."""
    if not model_uri.startswith("models:/"):
        raise ConfigError(f"model URI {model_uri!r} is not a registry URI (models:/NAME@ALIAS or models:/NAME/VERSION)")
    rest = model_uri[len("models:/"):]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, alias
    return rest.split("/", 1)[0], None


def load_logged_model(model_uri: str, load, *, uri: str | None = None):
    """Resolve ``model_uri`` in the store and load it with ``load(resolved_uri)`` (an MLflow flavour's loader).

    An alias is resolved once and the version read is pinned, whatever the
    alias does next.  Returns ``(model, info)``; ``info`` holds ``uri``,
    ``name``, ``version``, ``run_id``, ``resolved`` and the logged ``metadata``.

    Raises
    ------
    ConfigError
        No such model, version or alias in the store (the message names the store).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    target = tracking_uri(uri)
    mlflow.set_tracking_uri(target)
    client = mlflow.MlflowClient(tracking_uri=target)
    info: dict = {"uri": model_uri, "name": None, "version": None, "run_id": None, "metadata": {}}
    resolved = model_uri
    try:
        if model_uri.startswith("models:/"):
            name, alias = parse_model_uri(model_uri)
            mv = (client.get_model_version_by_alias(name, alias) if alias
                  else client.get_model_version(name, model_uri.rsplit("/", 1)[1]))
            info.update(name=name, version=int(mv.version), run_id=mv.run_id)
            resolved = f"models:/{name}/{mv.version}"
        info["metadata"] = dict(mlflow.models.get_model_info(resolved).metadata or {})
        model = load(resolved)
    except MlflowException as exc:
        raise ConfigError(f"cannot load {model_uri} from {target}: {exc.message}") from None
    info["resolved"] = resolved
    return model, info


def load_torch_model(model_uri: str, *, device: str = "cpu", uri: str | None = None):
    """Load a logged torch model (``models:/NAME@champion``, ``runs:/...``) onto ``device``, in eval mode.

    Returns ``(model, info)`` as :func:`load_logged_model`.
    """
    import mlflow

    model, info = load_logged_model(model_uri, lambda resolved: mlflow.pytorch.load_model(resolved, map_location=device),
                                    uri=uri)
    model.eval()
    return model, info


def epoch_metrics_callback(run_id: str, *, uri: str | None = None):
    """A Lightning callback that logs every epoch's metrics to MLflow run ``run_id`` (from global rank 0 only)."""
    import pytorch_lightning as pl

    target = tracking_uri(uri)

    class EpochMetricsToMLflow(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.global_rank != 0:
                return
            import math

            import mlflow

            metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                       if getattr(v, "numel", lambda: 1)() == 1 and math.isfinite(float(v))}
            if metrics:
                mlflow.MlflowClient(tracking_uri=target).log_batch(
                    run_id, metrics=[mlflow.entities.Metric(k, v, int(__import__("time").time() * 1000),
                                                            trainer.current_epoch) for k, v in metrics.items()])

    return EpochMetricsToMLflow()
