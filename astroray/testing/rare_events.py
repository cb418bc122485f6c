"""A small, really fitted rare-event model in a scratch MLflow store, for tests of the alert-scoring path.

:func:`register_small_rare_event_model` fits
:func:`~astroray.models.rare_events.fit_rare_event_model` on a few hundred
simulated light curves (one encoder, a few epochs), logs it with
:func:`~astroray.models.rare_events.log_rare_event_model` and registers it as
``astroray-protonet@champion``, in seconds.  Its scores are real but rough:
what the alert scorer and Serve are tested with.
"""
from __future__ import annotations

__all__ = ["SMALL_RARE_EVENT_CONFIG", "register_small_rare_event_model"]

SMALL_RARE_EVENT_CONFIG = {"n_objects": 420, "members": 1, "epochs": 3, "episodes": 20, "hidden": (64,),
                           "embedding_dim": 16, "anomaly": {"n_estimators": 50, "lof_components": 5}}
"""The :class:`~astroray.models.rare_events.RareEventTrainConfig` options of the small fit (survey and seed aside)."""


def register_small_rare_event_model(*, tracking_uri: str, survey: str = "ztf", seed: int = 0,
                                    name: str = "astroray-protonet") -> int:
    """Fit a small rare-event model, log it to ``tracking_uri`` and register it as ``name@champion``; the version."""
    from astroray.datasets import LightCurveConfig, simulate_lightcurves
    from astroray.models.rare_events import (
        RareEventTrainConfig,
        fit_rare_event_model,
        log_rare_event_model,
    )
    from astroray.tracking import register_champion, setup_mlflow

    cfg = RareEventTrainConfig(**SMALL_RARE_EVENT_CONFIG, survey=survey, seed=seed)
    sim = simulate_lightcurves(cfg.n_objects, config=LightCurveConfig(survey=survey, nondetections=cfg.nondetections),
                               seed=seed)
    model = fit_rare_event_model(sim.lightcurves, config=cfg)
    mlflow = setup_mlflow("astroray-protonet-small", uri=tracking_uri)
    with mlflow.start_run(run_name="small") as run:
        info = log_rare_event_model(mlflow, model, metadata={"small": True})
    return register_champion(info.model_uri, name, tags={"run_id": run.info.run_id}, uri=tracking_uri)
