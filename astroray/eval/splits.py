"""Leakage-safe train/validation/test splits and K folds, grouped by a key.

Stamps cut from one CCD pair, or the partial light curves of one object, are
near-copies of each other: if they straddle train and test, test scores measure
memory.  Every row here is therefore assigned by its *group key* (pair id,
object id), and a group never crosses splits.

The assignment comes from a stable hash (BLAKE2b of ``salt`` and ``str(key)``),
not Python's per-process ``hash``, so the same key lands in the same split in
every run, process and machine:

* :func:`assign_split` -- stateless, per key: usable inside a Ray Data
  ``map_batches`` without seeing the whole data set; adding or removing other
  groups never moves a group.  Fractions hold only on average.
* :func:`split_groups` -- the whole data set at once; ``balanced=True`` or
  ``labels=`` (stratified) cut the hash order at the fractions exactly, per
  class when stratified.
* :func:`group_kfold` -- K grouped (optionally stratified) folds.

::

    split = split_groups(table["pair_id"], fractions={"train": 0.8, "val": 0.1, "test": 0.1})
    train_rows = split.indices("train")
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from astroray.errors import InvalidInputError
from astroray.eval._validate import group_keys, label_array, same_length

__all__ = ["DEFAULT_FRACTIONS", "GroupSplit", "GroupFolds", "assign_split", "split_groups", "group_kfold",
           "stable_unit_hash"]

DEFAULT_FRACTIONS: Mapping[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
"""The split names and fractions used when none are given."""

DEFAULT_SALT = "astroray"
_FRACTION_SUM_TOL = 1e-6


@dataclass(frozen=True)
class GroupSplit:
    """Which split each row belongs to.

    Attributes
    ----------
    assignment : ndarray of str, shape (n_rows,)
        The split name of each row.
    names : tuple of str
        The split names, in the order the fractions were given.
    """

    assignment: np.ndarray
    names: tuple[str, ...]

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of the rows in split ``name``."""
        self._check(name)
        return self.assignment == name

    def indices(self, name: str) -> np.ndarray:
        """Row indices of split ``name`` (ascending)."""
        return np.flatnonzero(self.mask(name))

    def summary(self, *, groups: Any = None, labels: Any = None) -> dict:
        """Rows (and groups, and rows per label, when given) per split: JSON-serialisable."""
        out: dict = {}
        keys = None if groups is None else group_keys(groups)
        labs = None if labels is None else label_array(labels, "labels")
        for name in self.names:
            sel = self.assignment == name
            entry: dict = {"rows": int(sel.sum())}
            if keys is not None:
                entry["groups"] = int(np.unique(keys[sel]).size)
            if labs is not None:
                values, counts = np.unique(labs[sel], return_counts=True)
                entry["rows_per_label"] = {str(v): int(c) for v, c in zip(values.tolist(), counts)}
            out[name] = entry
        return out

    def _check(self, name: str) -> None:
        if name not in self.names:
            raise InvalidInputError(f"no split named {name!r}; the splits are {list(self.names)}")


@dataclass(frozen=True)
class GroupFolds:
    """K grouped folds: iterate for ``(train_indices, test_indices)`` pairs.

    Attributes
    ----------
    fold : ndarray of int64, shape (n_rows,)
        The fold (0..n_folds-1) that holds each row as test data.
    n_folds : int
    """

    fold: np.ndarray
    n_folds: int

    def __len__(self) -> int:
        return self.n_folds

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for k in range(self.n_folds):
            yield self.split(k)

    def split(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Train and test row indices of fold ``k``."""
        if not 0 <= k < self.n_folds:
            raise InvalidInputError(f"fold {k} does not exist; folds are 0..{self.n_folds - 1}")
        test = self.fold == k
        return np.flatnonzero(~test), np.flatnonzero(test)


# --------------------------------------------------------------------------- hashing


def stable_unit_hash(keys: Any, *, salt: str = DEFAULT_SALT) -> np.ndarray:
    """A number in [0, 1) per key, the same in every process and on every machine.

    Parameters
    ----------
    keys : array-like, shape (n,)
        Group keys; compared by ``str(key)`` (so ``12`` and ``"12"`` are one key,
        but ``12.0`` is another).
    salt : str, keyword-only
        Changes every assignment at once (a fresh, independent split).

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    return _unit_hash(group_keys(keys, "keys"), _check_salt(salt))


def _check_salt(salt: Any) -> str:
    if not isinstance(salt, str):
        raise InvalidInputError(f"salt must be a string, got {type(salt).__name__}")
    return salt


def _unit_hash(keys: np.ndarray, salt: str) -> np.ndarray:
    uniq, inverse = np.unique(keys, return_inverse=True)
    prefix = salt.encode("utf-8") + b"\x00"
    # 53 bits of the digest: exactly representable in float64, so u < 1 always
    values = np.array([int.from_bytes(hashlib.blake2b(prefix + k.encode("utf-8"), digest_size=8).digest(), "big")
                       >> 11 for k in uniq.tolist()], dtype=np.float64) / float(1 << 53)
    return values[inverse.reshape(-1)]


# --------------------------------------------------------------------------- splits


def _check_fractions(fractions: Mapping[str, float] | None) -> tuple[tuple[str, ...], np.ndarray]:
    if fractions is None:
        fractions = DEFAULT_FRACTIONS
    if not isinstance(fractions, Mapping) or len(fractions) == 0:
        raise InvalidInputError("fractions must be a non-empty mapping of split name to fraction, "
                                "e.g. {'train': 0.8, 'val': 0.1, 'test': 0.1}")
    names = tuple(str(k) for k in fractions)
    if len(set(names)) != len(names):
        raise InvalidInputError(f"split names must be distinct, got {list(names)}")
    try:
        values = np.array([float(v) for v in fractions.values()])
    except (TypeError, ValueError):
        raise InvalidInputError(f"fractions must be numbers, got {dict(fractions)}") from None
    if not np.all(np.isfinite(values)) or np.any(values <= 0) or np.any(values > 1):
        raise InvalidInputError(f"each fraction must lie in (0, 1], got {dict(zip(names, values.tolist()))}; "
                                "leave a split out instead of giving it 0")
    if abs(values.sum() - 1.0) > _FRACTION_SUM_TOL:
        raise InvalidInputError(f"fractions must sum to 1, got {values.sum():.6g} from "
                                f"{dict(zip(names, values.tolist()))}")
    return names, values / values.sum()


def _cut(u: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Index of the split whose cumulative-fraction interval holds each ``u`` in [0, 1)."""
    edges = np.cumsum(fractions)[:-1]
    return np.searchsorted(edges, u, side="right")


def assign_split(keys: Any, *, fractions: Mapping[str, float] | None = None,
                 salt: str = DEFAULT_SALT) -> np.ndarray:
    """The split of each key from its hash alone (stateless, stable across runs and machines).

    Parameters
    ----------
    keys : array-like, shape (n,)
        Group keys (pair id, object id), one per row; compared by ``str(key)``.
    fractions : mapping of str to float, keyword-only
        Split name -> fraction, summing to 1; default :data:`DEFAULT_FRACTIONS`.
    salt : str, keyword-only
        A different salt gives an independent split.

    Returns
    -------
    ndarray of str, shape (n,)
        The split name per row.  Each group goes to split *i* with probability
        ``fractions[i]``, so small data sets deviate from the fractions (use
        :func:`split_groups` with ``balanced=True`` to cut them exactly).

    Raises
    ------
    InvalidInputError
        Empty or missing keys; fractions not in (0, 1] or not summing to 1.
    """
    names, values = _check_fractions(fractions)
    keys = group_keys(keys, "keys")
    return np.asarray(names)[_cut(_unit_hash(keys, _check_salt(salt)), values)]


def _group_labels(keys: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique keys, the row -> group index, and each group's stratum (its most common label)."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    lab_values, lab_index = np.unique(labels, return_inverse=True)
    counts = np.zeros((uniq.size, lab_values.size), np.int64)
    np.add.at(counts, (inverse.reshape(-1), lab_index.reshape(-1)), 1)
    # ties go to the first label in sorted order: deterministic
    return uniq, inverse.reshape(-1), counts.argmax(axis=1)


def _ranked_positions(u: np.ndarray, keys: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """Each group's (rank + 0.5) / n within its stratum, ranked by hash (ties by key)."""
    pos = np.empty(u.size, np.float64)
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        order = members[np.lexsort((keys[members], u[members]))]
        pos[order] = (np.arange(order.size) + 0.5) / order.size
    return pos


def split_groups(groups: Any, *, fractions: Mapping[str, float] | None = None, labels: Any = None,
                 balanced: bool = False, salt: str = DEFAULT_SALT) -> GroupSplit:
    """Split rows into named parts so that no group crosses parts.

    Parameters
    ----------
    groups : array-like, shape (n_rows,)
        The group key of each row (CCD pair id, object id); compared by ``str(key)``.
    fractions : mapping of str to float, keyword-only
        Split name -> fraction of the *groups*, summing to 1; default
        :data:`DEFAULT_FRACTIONS` (train 0.8, val 0.1, test 0.1).
    labels : array-like, shape (n_rows,), keyword-only
        Stratify by class: each group's stratum is its most common label (ties:
        the first in sorted order), and each stratum is cut at the fractions, so
        every class is spread over the splits as evenly as its number of groups
        allows.
    balanced : bool, keyword-only
        Without ``labels``: ``False`` (default) assigns each group from its hash
        alone, exactly as :func:`assign_split` (stable when data are added, the
        fractions hold on average); ``True`` orders all groups by hash and cuts
        the order at the fractions (each split within one group of its share).
    salt : str, keyword-only
        A different salt gives an independent split.

    Returns
    -------
    GroupSplit

    Raises
    ------
    InvalidInputError
        Empty input, missing keys or labels, lengths that differ, bad fractions,
        or a split that receives no group (too few groups for the fractions).

    Notes
    -----
    With ``balanced`` or ``labels`` a group's split depends on its hash *rank*
    among the groups given: the same data give the same split on every
    machine, but adding groups can move a few groups between splits.
    """
    names, values = _check_fractions(fractions)
    keys = group_keys(groups)
    salt = _check_salt(salt)
    if labels is not None:
        labs = label_array(labels, "labels")
        same_length(groups=keys, labels=labs)
        uniq, inverse, strata = _group_labels(keys, labs)
    else:
        uniq, inverse = np.unique(keys, return_inverse=True)
        inverse = inverse.reshape(-1)
        strata = np.zeros(uniq.size, np.int64)
    if uniq.size < len(names):
        raise InvalidInputError(f"{uniq.size} group(s) cannot fill {len(names)} splits {list(names)}: "
                                "give more groups or fewer splits")
    u = _unit_hash(uniq, salt)
    if labels is not None or balanced:
        u = _ranked_positions(u, uniq, strata)
    group_split = _cut(u, values)
    empty = [names[i] for i in range(len(names)) if not np.any(group_split == i)]
    if empty:
        hint = "" if (labels is not None or balanced) else " or pass balanced=True"
        raise InvalidInputError(
            f"split(s) {empty} received no group ({uniq.size} groups, fractions "
            f"{dict(zip(names, np.round(values, 4).tolist()))}): give more groups, larger fractions{hint}")
    return GroupSplit(assignment=np.asarray(names)[group_split[inverse]], names=names)


def group_kfold(groups: Any, *, n_folds: int = 5, labels: Any = None, salt: str = DEFAULT_SALT) -> GroupFolds:
    """K folds with whole groups in each; every group is test data in exactly one fold.

    Groups are ordered by their stable hash (within each class when ``labels``
    are given) and dealt to the folds in turn, so fold sizes (in groups) differ
    by at most one, per class and overall.

    Parameters
    ----------
    groups : array-like, shape (n_rows,)
        The group key of each row; compared by ``str(key)``.
    n_folds : int, keyword-only
        At least 2 and at most the number of groups.
    labels : array-like, shape (n_rows,), keyword-only
        Stratify by class (a group's class is its most common label).
    salt : str, keyword-only

    Returns
    -------
    GroupFolds

    Raises
    ------
    InvalidInputError
        Empty input, missing keys, lengths that differ, ``n_folds`` < 2 or more
        folds than groups.
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise InvalidInputError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    keys = group_keys(groups)
    salt = _check_salt(salt)
    if labels is not None:
        labs = label_array(labels, "labels")
        same_length(groups=keys, labels=labs)
        uniq, inverse, strata = _group_labels(keys, labs)
    else:
        uniq, inverse = np.unique(keys, return_inverse=True)
        inverse = inverse.reshape(-1)
        strata = np.zeros(uniq.size, np.int64)
    if uniq.size < n_folds:
        raise InvalidInputError(f"{n_folds} folds need at least {n_folds} groups, got {uniq.size}")
    u = _unit_hash(uniq, salt)
    fold_of_group = np.empty(uniq.size, np.int64)
    offset = 0
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        order = members[np.lexsort((uniq[members], u[members]))]
        # the round-robin continues across classes, so total fold sizes stay within one group too
        fold_of_group[order] = (np.arange(order.size) + offset) % n_folds
        offset = (offset + order.size) % n_folds
    return GroupFolds(fold=fold_of_group[inverse], n_folds=int(n_folds))

