"""Input checks shared by the evaluation modules: one place that turns bad arrays into clear errors.

Every public function of :mod:`astroray.eval` validates its inputs here and then
calls a private core that may assume clean arrays.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from astroray.errors import InvalidInputError

_PROBABILITY_SUM_ATOL = 1e-3  # float16/float32 softmax rows sum to 1 within this
_PROBABILITY_RANGE_ATOL = 1e-6


def _where(mask: np.ndarray, limit: int = 5) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return f"rows [{shown}{', ...' if rows.size > limit else ''}]"


def as_1d(values: Any, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """``values`` as a 1-D array; an error for other shapes and (unless allowed) for an empty one."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise InvalidInputError(f"{name} is empty: there is nothing to evaluate")
    return arr


def same_length(**arrays: np.ndarray) -> int:
    """The common length of ``arrays``; an error naming every length when they differ."""
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise InvalidInputError(f"inputs must have one row per example, but {listed}")
    return next(iter(lengths.values()))


def finite_scores(values: Any, name: str = "scores") -> np.ndarray:
    """Scores as a finite 1-D float64 array (NaN or inf is an error naming the rows)."""
    arr = as_1d(values, name)
    if arr.dtype.kind not in "biuf":
        raise InvalidInputError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InvalidInputError(
            f"{name} has {int(bad.sum())} NaN or infinite values at {_where(bad)}; "
            "drop those examples or give them a finite score first")
    return arr


def binary_labels(values: Any, name: str = "y_true") -> np.ndarray:
    """0/1 or boolean labels as a bool array (any other value is an error)."""
    arr = as_1d(values, name)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf":
        raise InvalidInputError(f"{name} must be 0/1 or boolean, got dtype {arr.dtype} "
                                "(encode the positive class as 1 first)")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        found = np.unique(arr[bad])[:5].tolist()
        raise InvalidInputError(f"{name} must hold only 0 and 1 (or booleans), found {found} at {_where(bad)}")
    return arr == 1


def require_both_classes(y: np.ndarray, name: str = "y_true", *, what: str = "this metric") -> None:
    """An error when the boolean labels ``y`` hold only one class."""
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        missing = "positive (1)" if n_pos == 0 else "negative (0)"
        raise InvalidInputError(
            f"{name} has no {missing} examples among {y.size}: {what} needs both classes")


def class_indices(values: Any, n_classes: int, name: str = "y_true") -> np.ndarray:
    """Integer class indices in ``[0, n_classes)`` as int64."""
    arr = as_1d(values, name)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InvalidInputError(f"{name} must hold integer class indices, got non-integer floats")
        arr = arr.astype(np.int64)
    elif arr.dtype == bool:
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise InvalidInputError(
            f"{name} must hold integer class indices 0..{n_classes - 1} (the columns of the probabilities), "
            f"got dtype {arr.dtype}; map class names to column indices first")
    bad = (arr < 0) | (arr >= n_classes)
    if bad.any():
        raise InvalidInputError(f"{name} has class indices outside 0..{n_classes - 1} at {_where(bad)}")
    return arr.astype(np.int64)


def finite_matrix(values: Any, name: str) -> np.ndarray:
    """A finite 2-D float64 array with at least one row and two columns."""
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise InvalidInputError(f"{name} must be 2-D (examples, classes), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InvalidInputError(f"{name} is empty: there is nothing to evaluate")
    if arr.shape[1] < 2:
        raise InvalidInputError(f"{name} needs at least 2 class columns, got {arr.shape[1]}")
    if arr.dtype.kind not in "biuf":
        raise InvalidInputError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InvalidInputError(f"{name} has NaN or infinite values in {int(bad.sum())} rows at {_where(bad)}")
    return arr


def probabilities(values: Any, name: str = "probs") -> np.ndarray:
    """Probabilities: 1-D P(positive) in [0, 1], or 2-D rows in [0, 1] that sum to 1."""
    arr = np.asarray(values)
    if arr.ndim == 1:
        arr = finite_scores(arr, name)
    elif arr.ndim == 2:
        arr = finite_matrix(arr, name)
    else:
        raise InvalidInputError(f"{name} must be 1-D (P(positive)) or 2-D (examples, classes), got shape {arr.shape}")
    bad = (arr < -_PROBABILITY_RANGE_ATOL) | (arr > 1 + _PROBABILITY_RANGE_ATOL)
    if bad.any():
        rows = bad if arr.ndim == 1 else bad.any(axis=1)
        raise InvalidInputError(f"{name} must lie in [0, 1] (probabilities, not logits); "
                                f"{int(rows.sum())} rows outside at {_where(rows)}")
    if arr.ndim == 2:
        off = np.abs(arr.sum(axis=1) - 1.0) > _PROBABILITY_SUM_ATOL
        if off.any():
            raise InvalidInputError(f"each row of {name} must sum to 1; {int(off.sum())} rows do not, at "
                                    f"{_where(off)} (apply a softmax to logits first)")
    return np.clip(arr, 0.0, 1.0)


def group_keys(values: Any, name: str = "groups") -> np.ndarray:
    """Group keys as a 1-D array of ``str`` (missing keys, None or NaN, are an error)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D (one key per row), got shape {arr.shape}")
    if arr.size == 0:
        raise InvalidInputError(f"{name} is empty: there is nothing to split")
    if arr.dtype.kind in "biu":
        uniq, inverse = np.unique(arr, return_inverse=True)
        return np.array([str(int(u)) for u in uniq])[inverse]
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            raise InvalidInputError(f"{name} has missing (NaN) keys at {_where(bad)}: every row needs a group key")
        uniq, inverse = np.unique(arr, return_inverse=True)
        return np.array([str(u.item()) for u in uniq])[inverse]
    if arr.dtype.kind in "US":
        return arr.astype(str)
    missing = np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in arr], bool)
    if missing.any():
        raise InvalidInputError(f"{name} has missing (None/NaN) keys at {_where(missing)}: "
                                "every row needs a group key")
    return np.array([str(v) for v in arr])


def label_array(values: Any, name: str) -> np.ndarray:
    """Class labels (ints, strings or bools) as a 1-D array; missing labels are an error."""
    arr = as_1d(values, name)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            raise InvalidInputError(f"{name} has NaN labels at {_where(bad)}")
        if np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
    elif arr.dtype.kind == "O":
        missing = np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in arr], bool)
        if missing.any():
            raise InvalidInputError(f"{name} has missing (None/NaN) labels at {_where(missing)}")
        kinds = {type(v) for v in arr}
        arr = arr.astype(str) if len(kinds) > 1 else np.array(arr.tolist())
    return arr


def encode_labels(arrays: Mapping[str, np.ndarray], labels: Sequence | None) -> tuple[list, list[np.ndarray]]:
    """Class labels to indices into ``labels`` (by default the sorted union of the values seen)."""
    if labels is None:
        seen = np.unique(np.concatenate([np.unique(a) for a in arrays.values()]))
        labels = seen.tolist()
    else:
        labels = list(np.asarray(labels).tolist()) if not isinstance(labels, list) else list(labels)
        if len(labels) == 0:
            raise InvalidInputError("labels is empty: give the class labels in the order to report them")
        if len(set(labels)) != len(labels):
            raise InvalidInputError(f"labels has duplicates: {labels}")
    lookup = {lab: i for i, lab in enumerate(labels)}
    out = []
    for name, arr in arrays.items():
        uniq, inverse = np.unique(arr, return_inverse=True)
        unknown = [u for u in uniq.tolist() if u not in lookup]
        if unknown:
            raise InvalidInputError(f"{name} has labels not in labels={labels}: {unknown[:5]}")
        out.append(np.array([lookup[u] for u in uniq.tolist()], np.int64)[inverse.reshape(-1)])
    return labels, out


def jsonable(value: Any) -> Any:
    """``value`` with NumPy types as Python ones and NaN/inf as None: safe for strict JSON."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
