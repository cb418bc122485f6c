"""Labelled light curves as Arrow rows: the table a light-curve model trains on (Parquet, Ray Data).

One row per light curve, the columns of :data:`~astroray.records.LIGHTCURVE_SCHEMA`
(``object_id, survey, label, mjd, band, flux, flux_err, detected``; null flux
marks an upper limit) plus

* ``label_id`` (int32): the index of ``label`` in the class vocabulary, ``-1``
  for an unlabelled row (``label`` None);
* ``alert_id`` (string) for rows that are alert histories;
* any extra per-row numbers (``extra=``, float64), e.g. a period found from the
  light curve itself.

A label outside the vocabulary raises: a class vocabulary is fixed per model,
and silently mapping an unknown class to "unlabelled" would shrink the
training set without anyone noticing.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from astroray.errors import InvalidLightCurveError
from astroray.lightcurves.ragged import RaggedLightCurves
from astroray.records import LIGHTCURVE_SCHEMA, LightCurve, lightcurves_to_table

__all__ = ["LABEL_ID_COLUMN", "UNLABELLED", "label_ids", "lightcurve_rows", "ragged_rows"]

LABEL_ID_COLUMN = "label_id"
"""The integer class column a model's ``collate`` reads."""

UNLABELLED = -1
"""``label_id`` of a row without a label."""


def label_ids(labels: Sequence, classes: Sequence[str]) -> np.ndarray:
    """Index of each label in ``classes`` (:data:`UNLABELLED` for None), int32.

    Raises
    ------
    InvalidLightCurveError
        A label that is not in ``classes``, or an empty or repeated vocabulary.
    """
    classes = _check_classes(classes)
    lookup = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(labels), dtype=np.int32)
    for i, lab in enumerate(labels):
        if lab is None:
            out[i] = UNLABELLED
            continue
        key = str(lab)
        if key not in lookup:
            raise InvalidLightCurveError(f"label {key!r} of row {i} is not in the class vocabulary "
                                         f"{list(classes)}; add it to classes or drop the row")
        out[i] = lookup[key]
    return out


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    out = tuple(str(c) for c in classes)
    if not out:
        raise InvalidLightCurveError("the class vocabulary is empty")
    if len(set(out)) != len(out):
        raise InvalidLightCurveError(f"the class vocabulary repeats a class: {list(out)}")
    return out


def _with_columns(table: pa.Table, ids: np.ndarray, extra: Mapping[str, Sequence[float]] | None,
                  alert_ids: np.ndarray | None) -> pa.Table:
    table = table.append_column(LABEL_ID_COLUMN, pa.array(ids, pa.int32()))
    if alert_ids is not None:
        table = table.append_column("alert_id", pa.array([str(a) for a in alert_ids], pa.string()))
    for name, values in (extra or {}).items():
        if name in table.column_names:
            raise InvalidLightCurveError(f"extra column {name!r} clashes with a light-curve column")
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (table.num_rows,):
            raise InvalidLightCurveError(f"extra column {name!r} has shape {arr.shape}, expected "
                                         f"({table.num_rows},): one value per row")
        table = table.append_column(name, pa.array(arr, pa.float64()))
    return table


def lightcurve_rows(lightcurves: Iterable[LightCurve], classes: Sequence[str], *,
                    extra: Mapping[str, Sequence[float]] | None = None) -> pa.Table:
    """Rows for a light-curve model from :class:`~astroray.records.LightCurve` records.

    Parameters
    ----------
    lightcurves : iterable of LightCurve
        Their ``label`` is looked up in ``classes``.
    classes : sequence of str
        The class vocabulary; ``label_id`` is the index in it.
    extra : mapping of str to array (n,), optional
        Extra float64 columns, one value per light curve.

    Returns
    -------
    pyarrow.Table
        :data:`~astroray.records.LIGHTCURVE_SCHEMA` columns, ``label_id`` and the extras.

    Raises
    ------
    InvalidLightCurveError
        An item is not a LightCurve, a label is not in ``classes``, or an extra
        column has the wrong length.
    """
    lcs = list(lightcurves)
    for i, lc in enumerate(lcs):
        if not isinstance(lc, LightCurve):
            raise InvalidLightCurveError(f"item {i} is a {type(lc).__name__}, not a LightCurve")
    table = lightcurves_to_table(lcs)
    return _with_columns(table, label_ids([lc.label for lc in lcs], classes), extra, None)


def ragged_rows(data: RaggedLightCurves, classes: Sequence[str], *, survey: str = "",
                extra: Mapping[str, Sequence[float]] | None = None) -> pa.Table:
    """Rows for a light-curve model from a cleaned :class:`RaggedLightCurves` batch (no per-object objects).

    Band indices become the vocabulary's names; rows built per alert get an
    ``alert_id`` column.  Labels come from ``data.labels`` (None: unlabelled).

    Raises
    ------
    InvalidLightCurveError
        A label is not in ``classes``, or an extra column has the wrong length.
    """
    if not isinstance(data, RaggedLightCurves):
        raise InvalidLightCurveError(f"ragged_rows takes a RaggedLightCurves, got {type(data).__name__}")
    n = len(data)
    offsets = pa.array(data.offsets.astype(np.int32))
    names = np.asarray(data.bands, dtype=object)[data.band] if data.n_points else np.zeros(0, dtype=object)
    labels = data.labels if data.labels is not None else np.full(n, None, dtype=object)
    cols = {
        "object_id": pa.array([str(x) for x in data.object_ids], pa.string()),
        "survey": pa.array([survey] * n, pa.string()),
        "label": pa.array([None if x is None else str(x) for x in labels], pa.string()),
        "mjd": pa.ListArray.from_arrays(offsets, pa.array(data.mjd, pa.float64())),
        "band": pa.ListArray.from_arrays(offsets, pa.array(names, pa.string())),
        "flux": pa.ListArray.from_arrays(offsets, pa.array(data.flux, pa.float64(), from_pandas=True)),
        "flux_err": pa.ListArray.from_arrays(offsets, pa.array(data.flux_err, pa.float64())),
        "detected": pa.ListArray.from_arrays(offsets, pa.array(data.detected, pa.bool_())),
    }
    table = pa.table(cols, schema=LIGHTCURVE_SCHEMA)
    return _with_columns(table, label_ids(list(labels), classes), extra, data.alert_ids)
