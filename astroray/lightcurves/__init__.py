"""Light curves for models: cleaning, partial light curves, padded tensors, batched features.

* band vocabularies (``lsst``: ugrizy, ``ztf``: gri): :func:`resolve_bands`, :data:`SURVEY_BANDS`
* cleaned batches as flat arrays + offsets: :class:`RaggedLightCurves`, built by
  :func:`ragged_from_lightcurves`, :func:`ragged_from_table` (Arrow, no per-object objects),
  :func:`ragged_from_alerts` (each alert as it arrived), :func:`as_ragged`; rules in :class:`PreprocessConfig`
* partial light curves: :func:`truncate` (days, points, MJD), :func:`random_truncate` (seeded)
* padded arrays and masks for sequence models: :class:`LightCurveTensorizer` -> :class:`PaddedBatch`
  (``to_torch()`` imports torch only when called)
* features with Numba, parallel over objects: :class:`FeatureExtractor` -> :class:`FeatureTable`
* labelled rows for models (``label_id`` column): :func:`lightcurve_rows`, :func:`ragged_rows`
* labelled sets split by object (RR Lyrae, ELAsTiCC, simulated): :func:`rrlyrae_set`, :func:`elasticc_set`,
  :func:`simulated_set` -> :class:`LabelledLightCurves`

::

    from astroray.lightcurves import (FeatureConfig, FeatureExtractor, LightCurveTensorizer, TensorConfig,
                                      ragged_from_lightcurves, random_truncate)
    data = ragged_from_lightcurves(lcs, TensorConfig(bands="ztf"))
    batch = LightCurveTensorizer(TensorConfig(bands="ztf")).run(random_truncate(data, rng=0))
    features = FeatureExtractor(FeatureConfig(bands="ztf")).run(lcs).to_pandas()
"""
from astroray.lightcurves.bands import SURVEY_BANDS, band_indices, resolve_bands
from astroray.lightcurves.features import (
    LIGHT_CURVE_EQUIVALENTS,
    STAT_NAMES,
    FeatureConfig,
    FeatureExtractor,
    FeatureTable,
    PeriodogramConfig,
    extract_features,
    feature_names,
    multiband_periodogram,
)
from astroray.lightcurves.ragged import (
    PreprocessConfig,
    RaggedLightCurves,
    as_ragged,
    ragged_from_alerts,
    ragged_from_lightcurves,
    ragged_from_table,
)
from astroray.lightcurves.rows import (
    LABEL_ID_COLUMN,
    label_ids,
    lightcurve_rows,
    ragged_rows,
)
from astroray.lightcurves.tasks import (
    LabelledLightCurves,
    elasticc_set,
    rrlyrae_set,
    simulated_set,
)
from astroray.lightcurves.tensors import (
    LightCurveTensorizer,
    PaddedBatch,
    TensorConfig,
    object_scale,
    pad_lightcurves,
)
from astroray.lightcurves.truncation import origin_mjd, random_truncate, truncate

__all__ = [
    "SURVEY_BANDS",
    "resolve_bands",
    "band_indices",
    "PreprocessConfig",
    "RaggedLightCurves",
    "as_ragged",
    "ragged_from_lightcurves",
    "ragged_from_table",
    "ragged_from_alerts",
    "truncate",
    "random_truncate",
    "origin_mjd",
    "TensorConfig",
    "PaddedBatch",
    "LightCurveTensorizer",
    "pad_lightcurves",
    "object_scale",
    "PeriodogramConfig",
    "FeatureConfig",
    "FeatureExtractor",
    "FeatureTable",
    "extract_features",
    "feature_names",
    "multiband_periodogram",
    "STAT_NAMES",
    "LIGHT_CURVE_EQUIVALENTS",
    "LABEL_ID_COLUMN",
    "label_ids",
    "lightcurve_rows",
    "ragged_rows",
    "LabelledLightCurves",
    "rrlyrae_set",
    "elasticc_set",
    "simulated_set",
]
