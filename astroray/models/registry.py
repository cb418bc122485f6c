"""Model kinds by name: what the training backbone builds in each worker, and what each is registered as.

A kind names its LightningModule (``module:Class``, imported where it is
built, so only the worker that trains a model imports it) and its MLflow
registry name.  Configs refer to kinds by name (``model: realbogus``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from astroray.errors import ConfigError

__all__ = ["ModelKind", "MODEL_KINDS", "model_kind", "build_module", "module_class"]


@dataclass(frozen=True)
class ModelKind:
    name: str
    module: str
    """``package.module:LightningModuleClass``"""
    registered_name: str
    """The MLflow registry name its chosen version is registered under."""


MODEL_KINDS = {
    "realbogus": ModelKind("realbogus", "astroray.models.lightning_modules:RealBogusModule", "astroray-realbogus"),
    "lc_transformer": ModelKind("lc_transformer", "astroray.models.lightning_modules:LightCurveModule",
                                "astroray-lc-transformer"),
    "protonet": ModelKind("protonet", "astroray.models.lightning_modules:ProtoNetModule", "astroray-protonet"),
}


def model_kind(name: str) -> ModelKind:
    try:
        return MODEL_KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown model kind {name!r}; known: {', '.join(sorted(MODEL_KINDS))}") from None


def module_class(name: str):
    """The LightningModule class of model kind ``name``."""
    path, _, cls = model_kind(name).module.partition(":")
    return getattr(importlib.import_module(path), cls)


def build_module(name: str, config: dict | None = None):
    """A new LightningModule of kind ``name`` from its config dict."""
    return module_class(name)(config or {})
