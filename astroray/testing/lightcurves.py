"""A light-curve transformer in a scratch MLflow store, for tests and quick checks of the classification path.

:func:`register_untrained_lc_transformer` logs a freshly initialised
:class:`~astroray.models.lc_transformer.LightCurveNet` (the real class,
logged with :func:`astroray.tracking.log_torch_model` and the metadata
training logs) and registers it as ``astroray-lc-transformer@champion``, in
seconds.  Its probabilities are meaningless but well defined (they sum to 1
over the classes): what alert scoring and Serve are tested with.
"""
from __future__ import annotations

__all__ = ["register_untrained_lc_transformer"]


def register_untrained_lc_transformer(*, tracking_uri: str | None = None, name: str = "astroray-lc-transformer",
                                      classes: tuple[str, ...] = ("SNIa", "SNII", "AGN", "RRLyrae"),
                                      bands: str | tuple[str, ...] = "ztf", seed: int = 0) -> int:
    """Log an untrained transformer to ``tracking_uri`` and register it as ``name@champion``; returns the version."""
    import torch

    from astroray.models.lc_transformer import LightCurveNet
    from astroray.tracking import log_torch_model, register_champion, setup_mlflow

    torch.manual_seed(seed)
    net = LightCurveNet({"classes": classes, "bands": bands, "d_model": 8, "n_heads": 2, "n_layers": 1,
                         "ff_dim": 16, "embedding_dim": 8, "n_frequencies": 4, "max_length": 64}).eval()
    metadata = {"classes": list(classes), "bands": list(net.config.bands), "max_length": net.config.max_length,
                "temperature_scaling": None, "context_features": {}, "data_source": "untrained"}
    mlflow = setup_mlflow("astroray-lc-transformer-untrained", uri=tracking_uri)
    with mlflow.start_run(run_name="untrained") as run:
        info = log_torch_model(mlflow, net, metadata=metadata)
    return register_champion(info.model_uri, name, tags={"run_id": run.info.run_id}, uri=tracking_uri)
