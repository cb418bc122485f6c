"""Simulated sky with truth: image pairs, multi-band light curves and astronomy text.

Every generator is a seeded, pure function of ``(config, seed, index)``, so
Ray Data can generate any slice of a large data set anywhere
(:mod:`astroray.ray.simulate`).
"""
from astroray.datasets.images import (
    CHANGE_KINDS,
    REAL_KINDS,
    TRUTH_COLUMNS,
    ChangeConfig,
    EpochConfig,
    ImagePair,
    ImagePairConfig,
    simulate_pair,
)
from astroray.datasets.lightcurves import (
    CLASSES,
    OBSERVED_CLASS_WEIGHTS,
    LightCurveConfig,
    LightCurveSet,
    simulate_lightcurve_table,
    simulate_lightcurves,
)
from astroray.datasets.text import Document, TextConfig, load_gazetteer, simulate_documents

__all__ = [
    "Document",
    "TextConfig",
    "load_gazetteer",
    "simulate_documents",
    "CLASSES",
    "OBSERVED_CLASS_WEIGHTS",
    "LightCurveConfig",
    "LightCurveSet",
    "simulate_lightcurve_table",
    "simulate_lightcurves",
    "CHANGE_KINDS",
    "REAL_KINDS",
    "TRUTH_COLUMNS",
    "ChangeConfig",
    "EpochConfig",
    "ImagePair",
    "ImagePairConfig",
    "simulate_pair",
]
