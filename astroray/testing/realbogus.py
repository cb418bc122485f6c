"""A real/bogus model in a scratch MLflow store, for tests and quick checks of the scoring path.

:func:`register_untrained_realbogus` logs a freshly initialised
:class:`~astroray.models.realbogus.RealBogusNet` (the real class, logged with
:func:`astroray.tracking.log_torch_model`) and
registers it with the alias ``champion``, as training does, in seconds.  Its scores are meaningless but well defined (in [0, 1],
NaN where the difference stamp has no finite pixel): what the pipeline,
``astroray score``, Serve and the demo are tested with.
"""
from __future__ import annotations

__all__ = ["register_untrained_realbogus"]


def register_untrained_realbogus(*, tracking_uri: str | None = None, name: str = "astroray-realbogus",
                                 config: dict | None = None, threshold: float = 0.5, seed: int = 0) -> int:
    """Log an untrained U-Net to ``tracking_uri`` and register it as ``name@champion``; returns the version."""
    import numpy as np
    import torch

    from astroray.models.realbogus import RealBogusNet
    from astroray.tracking import log_torch_model, register_champion, setup_mlflow

    torch.manual_seed(seed)
    net = RealBogusNet({"base_width": 4, "depth": 2, **(config or {})}).eval()
    size = net.config.stamp_size
    example = np.random.default_rng(seed).normal(size=(2, len(net.config.channels), size, size)).astype(np.float32)
    mlflow = setup_mlflow("astroray-realbogus-untrained", uri=tracking_uri)
    with mlflow.start_run(run_name="untrained") as run:
        info = log_torch_model(mlflow, net, input_example=example,
                               metadata={"threshold": threshold, "channels": list(net.config.channels),
                                         "stamp_size": size})
    return register_champion(info.model_uri, name, tags={"run_id": run.info.run_id}, uri=tracking_uri)
