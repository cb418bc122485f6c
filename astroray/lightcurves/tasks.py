"""Labelled light-curve sets for training and checking classifiers, each split by object.

Three sets, the "Checked by" data of the light-curve classification issue:

* :func:`rrlyrae_set` -- SDSS Stripe 82 RR Lyrae (``lightcurves/rrlyrae`` of
  the shared data): type ``ab`` or ``c`` from ``periods.csv``.  The
  catalogue period is kept in ``reference`` (to count the periods recovered)
  and is never an input; the ``period`` input is found from each light curve
  by the multi-band Lomb-Scargle periodogram with harmonic re-scoring
  (:data:`RRLYRAE_PERIODOGRAM`: the physical RR Lyrae range 0.2-1.2 d).
* :func:`elasticc_set` -- simulated ELAsTiCC alerts of SNe Ia (folder
  ``classId=111``) and SNe II (``classId=113``): the label comes from the
  folder; one row per alert, its history up to and including that alert
  (what a broker knew when it arrived).  The SNANA truth and the Fink
  predictions the files carry are dropped from the alerts before anything
  else looks at them.
* :func:`simulated_set` -- the simulator's 14 classes
  (:func:`astroray.datasets.simulate_lightcurves`), one row per object.

Each returns a :class:`LabelledLightCurves`: cleaned light curves, class
vocabulary and ids, and a split by object (:func:`astroray.eval.split_groups`,
stratified by class, stable hash) so that no object has rows in two parts.
Nothing here imports Ray or torch.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from astroray.errors import InvalidInputError
from astroray.lightcurves.features import (
    FeatureConfig,
    FeatureExtractor,
    PeriodogramConfig,
)
from astroray.lightcurves.ragged import (
    PreprocessConfig,
    RaggedLightCurves,
    ragged_from_alerts,
    ragged_from_lightcurves,
)
from astroray.lightcurves.rows import label_ids, ragged_rows

__all__ = [
    "ELASTICC_CLASSES",
    "ELASTICC_CLASS_FOLDERS",
    "ELASTICC_HOST_COLUMNS",
    "RRLYRAE_CLASSES",
    "RRLYRAE_CONTEXT",
    "RRLYRAE_EXTRA",
    "RRLYRAE_PERIODOGRAM",
    "TASK_FRACTIONS",
    "LabelledLightCurves",
    "elasticc_set",
    "rrlyrae_features",
    "rrlyrae_set",
    "simulated_set",
]

TASK_FRACTIONS: Mapping[str, float] = {"train": 0.7, "val": 0.15, "test": 0.15}
"""Default split of the objects (stratified by class)."""

RRLYRAE_CLASSES = ("ab", "c")
RRLYRAE_PERIODOGRAM = PeriodogramConfig(min_period=0.2, max_period=1.2, oversampling=5.0,
                                        max_n_frequencies=1_000_000, n_harmonics=4)
"""The period search of :func:`rrlyrae_set`: RR Lyrae pulsate with 0.2-1.2 d periods; 4 harmonics pick the
true peak over the daily aliases of a nightly cadence (see :mod:`astroray.lightcurves.features`)."""
RRLYRAE_EXTRA = ("period", "period_power", "fourier_r21_g", "fourier_r21_r", "fourier_r31_g", "fourier_r31_r",
                 "fourier_phi21_g", "fourier_phi21_r")
"""The per-star numbers :func:`rrlyrae_set` finds from each light curve (``period`` and ``fourier`` groups, in
magnitudes, with :data:`RRLYRAE_PERIODOGRAM`)."""
RRLYRAE_CONTEXT = ("period_power", "fourier_r21_g", "fourier_r21_r", "fourier_phi21_g", "fourier_phi21_r")
"""Of those, what the transformer's object token gets beside the period (its ``context_columns``)."""

ELASTICC_CLASSES = ("SNIa", "SNII")
ELASTICC_CLASS_FOLDERS = {"classId=111": "SNIa", "classId=113": "SNII"}
"""ELAsTiCC taxonomy folders and the class each holds (111: SN Ia, 113: the SN II family)."""

_ALERT_META_KEPT = ("format",)  # everything else in an ELAsTiCC alert's meta is truth, predictions or host context

ELASTICC_HOST_COLUMNS = ("hostgal_zphot", "hostgal_zphot_err", "hostgal_snsep", "mwebv")
"""Measurements an LSST alert carries in its ``diaObject`` (no truth, no spectroscopy): the host galaxy's
photometric redshift and its error, the host separation (arcsec) and the Milky Way E(B-V)."""
_HOST_ALLOWED = frozenset({*ELASTICC_HOST_COLUMNS, "hostgal_ellipticity", "hostgal_sqradius",
                           *(f"hostgal_mag_{b}" for b in "ugrizY"), *(f"hostgal_magerr_{b}" for b in "ugrizY")})


@dataclass
class LabelledLightCurves:
    """Light curves with labels, model inputs found from them, and a split by object.

    Attributes
    ----------
    name : str
    data : RaggedLightCurves
        Cleaned light curves, ``labels`` set; one row per object (or per alert).
    classes : tuple of str
        The class vocabulary; ``label_ids`` index it.
    label_ids : ndarray (n,) int32
    split : ndarray (n,) of str
        The part (``train``, ``val``, ``test``) of each row; rows of one object share it.
    extra : dict of str to ndarray (n,)
        Per-row model inputs computed from the row's own light curve (e.g. ``period``).
    reference : dict of str to ndarray (n,)
        Per-row catalogue values for evaluation only (e.g. ``catalogue_period``); never model inputs.
    survey : str
    """

    name: str
    data: RaggedLightCurves
    classes: tuple[str, ...]
    label_ids: np.ndarray
    split: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    survey: str = ""

    def __len__(self) -> int:
        return len(self.data)

    @property
    def object_ids(self) -> np.ndarray:
        return self.data.object_ids

    @property
    def n_detections(self) -> np.ndarray:
        """Detections per row."""
        return np.bincount(self.data.row_index()[self.data.detected], minlength=len(self.data)).astype(np.int64)

    def take(self, rows: Sequence[int] | np.ndarray) -> LabelledLightCurves:
        """The given rows (a copy)."""
        rows = np.asarray(rows, dtype=np.int64)
        return LabelledLightCurves(name=self.name, data=self.data.take(rows), classes=self.classes,
                                   label_ids=self.label_ids[rows], split=self.split[rows],
                                   extra={k: v[rows] for k, v in self.extra.items()},
                                   reference={k: v[rows] for k, v in self.reference.items()}, survey=self.survey)

    def part(self, name: str) -> LabelledLightCurves:
        """The rows of split ``name``."""
        if name not in set(self.split.tolist()):
            raise InvalidInputError(f"no rows in split {name!r}; the splits are {sorted(set(self.split.tolist()))}")
        return self.take(np.flatnonzero(self.split == name))

    def rows(self, split: str | None = None) -> pa.Table:
        """Model rows (:func:`~astroray.lightcurves.rows.ragged_rows`: light-curve columns, ``label_id``, extras)."""
        part = self if split is None else self.part(split)
        return ragged_rows(part.data, self.classes, survey=self.survey, extra=part.extra)

    def summary(self) -> dict:
        """Rows and objects per split and class (JSON-serialisable)."""
        out = {}
        for name in sorted(set(self.split.tolist())):
            sel = self.split == name
            per_class = {c: int(np.sum(self.label_ids[sel] == i)) for i, c in enumerate(self.classes)}
            out[name] = {"rows": int(sel.sum()), "objects": int(np.unique(self.object_ids[sel].astype(str)).size),
                         "rows_per_class": per_class}
        return out


def _split(object_ids: np.ndarray, labels: np.ndarray, fractions, salt: str) -> np.ndarray:
    from astroray.eval import split_groups

    return split_groups(object_ids.astype(str), labels=labels.astype(str), fractions=dict(fractions or TASK_FRACTIONS),
                        salt=salt).assignment


def _folder(path, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise InvalidInputError(f"{what} folder not found: {p}")
    return p


def rrlyrae_features(period: PeriodogramConfig = RRLYRAE_PERIODOGRAM) -> FeatureConfig:
    """How :func:`rrlyrae_set` finds :data:`RRLYRAE_EXTRA` from a light curve: the multi-band periodogram on
    magnitudes (``period``) and the Fourier decomposition at the period found (what a trained model logs as its
    recipe, so a classifier recomputes them the same way)."""
    return FeatureConfig(bands="ugriz", domain="mag", groups=("period", "fourier"), period=period)


def rrlyrae_set(root: str | os.PathLike, *, fractions: Mapping[str, float] | None = None, salt: str = "rrlyrae",
                period: PeriodogramConfig = RRLYRAE_PERIODOGRAM, n_threads: int | None = None
                ) -> LabelledLightCurves:
    """The Stripe 82 RR Lyrae, ab against c, with periods found from the light curves.

    Parameters
    ----------
    root : path
        The ``rrlyrae`` folder (``light-curves/*.csv`` and ``periods.csv``).
    fractions : mapping, optional
        Split of the stars (default :data:`TASK_FRACTIONS`), stratified by type.
    salt : str
        Of the split's hash.
    period : PeriodogramConfig
        The period search (default :data:`RRLYRAE_PERIODOGRAM`).
    n_threads : int, optional
        Numba threads for the periodogram.

    Returns
    -------
    LabelledLightCurves
        ``extra``: :data:`RRLYRAE_EXTRA` -- ``period`` (days), ``period_power`` (the harmonic fit's R^2) and the
        g and r Fourier amplitude ratios and phase differences at that period (``fourier_r21_g`` ...: the
        saw-tooth of ab stars against the near-sine of c; :mod:`astroray.lightcurves.features`);
        ``reference``: ``catalogue_period``.
        Bands ``ugriz``.

    Raises
    ------
    InvalidInputError
        A folder or file is missing, or a star has no catalogue type.
    """
    import pandas as pd

    from astroray.io import read_lightcurves

    root = _folder(root, "RR Lyrae")
    catalogue_path = root / "periods.csv"
    if not catalogue_path.is_file():
        raise InvalidInputError(f"no periods.csv in {root}: it holds each star's type (ab or c)")
    catalogue = pd.read_csv(catalogue_path, dtype={"Num": str}).set_index("Num")
    lcs = read_lightcurves(_folder(root / "light-curves", "RR Lyrae light-curve"))
    missing = [lc.object_id for lc in lcs if lc.object_id not in catalogue.index]
    if missing:
        raise InvalidInputError(f"{len(missing)} star(s) lack a type in periods.csv, e.g. {missing[:3]}",
                                source=str(catalogue_path))
    for lc in lcs:
        lc.label = str(catalogue.loc[lc.object_id, "Type"]).strip()
    preprocess = PreprocessConfig(bands="ugriz")
    data = ragged_from_lightcurves(lcs, preprocess)
    features = FeatureExtractor(rrlyrae_features(period)).run(data, n_threads=n_threads)
    ids = label_ids(list(data.labels), RRLYRAE_CLASSES)
    labels = np.asarray(data.labels, dtype=object)
    return LabelledLightCurves(
        name="rrlyrae", data=data, classes=RRLYRAE_CLASSES, label_ids=ids,
        split=_split(data.object_ids, labels, fractions, salt),
        extra={name: features.column(name) for name in RRLYRAE_EXTRA},
        reference={"catalogue_period": catalogue.loc[data.object_ids.astype(str), "Per"].to_numpy(np.float64)},
        survey="sdss")


def elasticc_set(root: str | os.PathLike, *, per: str = "alert", fractions: Mapping[str, float] | None = None,
                 salt: str = "elasticc", preprocess: PreprocessConfig | None = None,
                 host_columns: Sequence[str] = ()) -> LabelledLightCurves:
    """ELAsTiCC SNe Ia against SNe II, each alert as it arrived (or each object whole).

    Parameters
    ----------
    root : path
        The ``elasticc`` folder with ``classId=111`` and ``classId=113`` (Parquet alerts).
    per : {"alert", "object"}
        One row per alert (its history plus itself) or per object (all its alerts merged).
    fractions : mapping, optional
        Split of the *objects* (default :data:`TASK_FRACTIONS`), stratified by class.
    salt : str
    preprocess : PreprocessConfig, optional
        Default: LSST bands, forced photometry kept, upper limits as zero flux.
    host_columns : sequence of str
        ``diaObject`` measurements to keep as ``extra`` columns (e.g. :data:`ELASTICC_HOST_COLUMNS`; only host
        photometry, photometric redshift, separation and ``mwebv`` are allowed, never ``hostgal_zspec``,
        ``z_final`` or the SNANA truth).  Missing values (ELAsTiCC's -9 / -99 / -999) become NaN.

    Returns
    -------
    LabelledLightCurves
        ``data.alert_ids`` says which alert each row is (``per="alert"``).

    Raises
    ------
    InvalidInputError
        A class folder is missing or empty, one object appears in both classes, or a host column is not allowed.
    """
    from astroray.io import read_alerts

    root = _folder(root, "ELAsTiCC")
    host_columns = tuple(host_columns)
    refused = sorted(set(host_columns) - _HOST_ALLOWED)
    if refused:
        raise InvalidInputError(f"host column(s) {refused} are not alert measurements this set hands to a model; "
                                f"allowed: {sorted(_HOST_ALLOWED)}")
    preprocess = preprocess or PreprocessConfig(bands="lsst", upper_limits="zero_flux")
    alerts, labels, host_of_alert, host_of_object = [], [], {}, {}
    for folder, label in ELASTICC_CLASS_FOLDERS.items():
        files = sorted(_folder(root / folder, f"ELAsTiCC {label}").glob("*.parquet"))
        if not files:
            raise InvalidInputError(f"no Parquet alert files in {root / folder}")
        for path in files:
            for alert in read_alerts(path, cutouts=False):
                if host_columns:
                    obj = alert.meta.get("diaObject") or {}
                    values = [_measured(obj.get(c)) for c in host_columns]
                    host_of_alert[str(alert.alert_id)] = values
                    host_of_object.setdefault(str(alert.object_id), values)
                # SNANA truth (GENTYPE, PEAKMJD, ...), Fink predictions and host context stay out of reach
                alert.meta = {k: v for k, v in alert.meta.items() if k in _ALERT_META_KEPT}
                alert.scores = {}
                alerts.append(alert)
                labels.append(label)
    objects = {}
    for alert, label in zip(alerts, labels):
        if objects.setdefault(alert.object_id, label) != label:
            raise InvalidInputError(f"object {alert.object_id} has alerts in both classes", source=str(root))
    data = ragged_from_alerts(alerts, preprocess, per=per)  # type: ignore[arg-type]
    data.labels = np.array([objects[str(o)] for o in data.object_ids], dtype=object)
    extra = {}
    if host_columns:
        if data.alert_ids is not None:
            rows = [host_of_alert[str(k)] for k in data.alert_ids]
        else:
            rows = [host_of_object[str(k)] for k in data.object_ids]
        values = np.array(rows, dtype=np.float64).reshape(len(data), len(host_columns))
        extra = {name: values[:, j] for j, name in enumerate(host_columns)}
    return LabelledLightCurves(name="elasticc", data=data, classes=ELASTICC_CLASSES,
                               label_ids=label_ids(list(data.labels), ELASTICC_CLASSES),
                               split=_split(data.object_ids, data.labels, fractions, salt), extra=extra,
                               survey="lsst")


def _measured(value) -> float:
    """A diaObject number, NaN where ELAsTiCC marks it missing (-9, -99, -999) or it is absent."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return x if np.isfinite(x) and x > -9 else float("nan")


def simulated_set(n: int, *, seed: int = 0, config=None, fractions: Mapping[str, float] | None = None,
                  salt: str = "simulated", preprocess: PreprocessConfig | None = None) -> LabelledLightCurves:
    """``n`` simulated objects of the 14 classes, one row each, held-out objects in ``val`` and ``test``.

    Parameters
    ----------
    n : int
    seed : int
    config : astroray.datasets.LightCurveConfig, optional
        Survey, cadence, class weights (default: LSST, uniform classes).
    fractions, salt
        The split (default :data:`TASK_FRACTIONS`), stratified by class.
    preprocess : PreprocessConfig, optional
        Default: the survey's bands, upper limits as zero flux.
    """
    from astroray.datasets import CLASSES, LightCurveConfig, simulate_lightcurves

    config = config or LightCurveConfig()
    preprocess = preprocess or PreprocessConfig(bands=config.survey, upper_limits="zero_flux")
    sim = simulate_lightcurves(n, config=config, seed=seed)
    data = ragged_from_lightcurves(sim.lightcurves, preprocess)
    labels = np.asarray(data.labels, dtype=object)
    return LabelledLightCurves(name="simulated", data=data, classes=tuple(CLASSES),
                               label_ids=label_ids(list(labels), CLASSES),
                               split=_split(data.object_ids, labels, fractions, salt), survey=config.survey)
