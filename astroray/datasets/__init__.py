"""Simulated sky with truth: image pairs, multi-band light curves and astronomy text.

Every generator is a seeded, pure function of ``(config, seed, index)``, so
Ray Data can generate any slice of a large data set anywhere
(:mod:`astroray.ray.simulate`)::

    from astroray.datasets import ImagePairConfig, simulate_pair
    pair = simulate_pair(ImagePairConfig(shape=(1024, 1024)), seed=0, index=0)
    pair.reference, pair.science      # Exposure records (counts, sky included)
    pair.truth                        # one row per injected change (real and bogus)
    pair.sources                      # the static stars and galaxies

    from astroray.datasets import LightCurveConfig, simulate_lightcurves
    out = simulate_lightcurves(10_000, config=LightCurveConfig(survey="ztf"), seed=0)
    out.lightcurves, out.truth        # LightCurve records with labels, truth per object

    from astroray.datasets import simulate_documents
    docs = simulate_documents(100, seed=0)   # ATel/abstract-like text with entity spans

``write_simulated(kind, n=..., out_dir=...)`` writes any of them to disk (the
``astroray simulate`` command); ``plot_pair_gallery``,
``plot_lightcurve_gallery`` and ``spans_to_html`` draw galleries.
"""
from astroray.datasets.images import (
    CHANGE_KINDS,
    REAL_KINDS,
    SOURCE_COLUMNS,
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
from astroray.datasets.plots import plot_lightcurve_gallery, plot_pair_gallery, spans_to_html
from astroray.datasets.text import Document, TextConfig, load_gazetteer, simulate_documents
from astroray.datasets.writers import SIMULATORS, write_images, write_lightcurves, write_simulated, write_text

__all__ = [
    "SIMULATORS",
    "plot_lightcurve_gallery",
    "plot_pair_gallery",
    "spans_to_html",
    "write_images",
    "write_lightcurves",
    "write_simulated",
    "write_text",
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
    "SOURCE_COLUMNS",
    "TRUTH_COLUMNS",
    "ChangeConfig",
    "EpochConfig",
    "ImagePair",
    "ImagePairConfig",
    "simulate_pair",
]
