"""Grouped splits: no group crosses splits, assignments are stable across processes, fractions hold."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from astroray.errors import InvalidInputError
from astroray.eval import assign_split, group_kfold, split_groups, stable_unit_hash


def _groups(n_groups=300, per_group=4, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 2 * per_group, n_groups)
    return np.repeat(np.array([f"pair-{i:05d}" for i in range(n_groups)]), sizes)


def _assert_no_group_crosses(groups, assignment):
    for key in np.unique(groups):
        assert np.unique(assignment[groups == key]).size == 1, key


@pytest.mark.parametrize("kwargs", [{}, {"balanced": True}])
def test_no_group_crosses_splits_and_every_row_assigned(kwargs):
    groups = _groups()
    split = split_groups(groups, **kwargs)
    assert split.assignment.shape == groups.shape
    assert set(split.assignment) == {"train", "val", "test"}
    _assert_no_group_crosses(groups, split.assignment)
    masks = [split.mask(name) for name in split.names]
    np.testing.assert_array_equal(np.sum(masks, axis=0), 1)  # each row in exactly one split
    np.testing.assert_array_equal(split.indices("test"), np.flatnonzero(split.assignment == "test"))


def test_hash_of_a_key_follows_the_documented_recipe():
    # The documented recipe (BLAKE2b-64 of salt, NUL, key; top 53 bits): if it changes, every split changes.
    keys = ["ZTF18abcdefg", "pair-00042", "7"]
    expected = [(int.from_bytes(hashlib.blake2b(b"astroray\x00" + k.encode(), digest_size=8).digest(), "big") >> 11)
                / 2.0 ** 53 for k in keys]
    np.testing.assert_array_equal(stable_unit_hash(keys), expected)
    np.testing.assert_array_equal(stable_unit_hash([7]), stable_unit_hash(["7"]))  # compared by str(key)


def test_same_split_in_another_process_with_another_hash_seed():
    keys = [f"obj{i}" for i in range(200)]
    here = assign_split(keys, fractions={"a": 0.5, "b": 0.3, "c": 0.2}).tolist()
    code = ("import json, sys; from astroray.eval import assign_split; "
            "print(json.dumps(assign_split([f'obj{i}' for i in range(200)], "
            "fractions={'a': 0.5, 'b': 0.3, 'c': 0.2}).tolist()))")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout) == here


def test_hash_mode_is_stable_when_data_are_added_and_salt_changes_it():
    groups = _groups(200)
    before = split_groups(groups).assignment
    more = np.concatenate([groups, _groups(100, seed=3).astype(object) + "-new"]).astype(str)
    after = split_groups(more).assignment[: groups.size]
    np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(before, assign_split(groups))  # split_groups == the stateless per-key rule
    other = split_groups(groups, salt="another split").assignment
    assert np.mean(other != before) > 0.1


def test_hash_fractions_hold_on_average():
    keys = np.arange(20000)
    split = split_groups(keys, fractions={"train": 0.7, "val": 0.2, "test": 0.1})
    for name, frac in (("train", 0.7), ("val", 0.2), ("test", 0.1)):
        got = split.mask(name).mean()
        assert abs(got - frac) < 4 * np.sqrt(frac * (1 - frac) / keys.size), (name, got)


def test_balanced_cuts_groups_exactly():
    groups = _groups(101)
    split = split_groups(groups, balanced=True, fractions={"train": 0.6, "val": 0.25, "test": 0.15})
    per_split = split.summary(groups=groups)
    for name, frac in (("train", 0.6), ("val", 0.25), ("test", 0.15)):
        assert abs(per_split[name]["groups"] - frac * 101) <= 1, per_split


def test_stratified_splits_spread_every_class():
    rng = np.random.default_rng(1)
    n_objects = 600
    classes = rng.choice(["SN Ia", "SN II", "RR Lyrae", "AGN", "TDE"], size=n_objects, p=[0.4, 0.3, 0.2, 0.07, 0.03])
    repeats = rng.integers(1, 6, n_objects)  # several partial light curves per object
    groups = np.repeat(np.arange(n_objects), repeats)
    labels = np.repeat(classes, repeats)
    split = split_groups(groups, labels=labels)
    _assert_no_group_crosses(groups, split.assignment)
    for cls in np.unique(classes):
        members = np.flatnonzero(classes == cls)
        n_cls = members.size
        sel = np.isin(groups, members)
        for name, frac in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
            got = np.unique(groups[sel & split.mask(name)]).size
            assert abs(got - frac * n_cls) <= 1, (cls, name, got, frac * n_cls)
    summary = split.summary(groups=groups, labels=labels)
    json.dumps(summary)
    assert sum(v["rows"] for v in summary.values()) == groups.size


def test_stratum_of_a_mixed_group_is_its_most_common_label():
    # pairs holding several candidate kinds: each pair goes where its majority kind's cut puts it
    groups = np.array(["p1"] * 3 + ["p2"] * 3 + ["p3"] * 2 + ["p4"] * 2)
    labels = np.array(["real", "bogus", "bogus", "real", "real", "bogus", "bogus", "bogus", "real", "real"])
    split = split_groups(groups, labels=labels, fractions={"train": 0.5, "test": 0.5})
    _assert_no_group_crosses(groups, split.assignment)
    by_group = {g: split.assignment[groups == g][0] for g in np.unique(groups)}
    # strata: bogus = {p1, p3}, real = {p2, p4}; each stratum of 2 groups puts one in each split
    assert {by_group["p1"], by_group["p3"]} == {"train", "test"}
    assert {by_group["p2"], by_group["p4"]} == {"train", "test"}


def test_kfold_every_group_tested_once_with_balanced_folds():
    rng = np.random.default_rng(2)
    n_objects = 103
    classes = rng.choice(3, size=n_objects, p=[0.6, 0.3, 0.1])
    repeats = rng.integers(1, 4, n_objects)
    groups = np.repeat(np.arange(n_objects), repeats)
    labels = np.repeat(classes, repeats)
    folds = group_kfold(groups, n_folds=5, labels=labels)
    assert len(folds) == 5
    seen = np.zeros(groups.size, int)
    for train, test in folds:
        assert np.intersect1d(groups[train], groups[test]).size == 0
        assert train.size + test.size == groups.size
        seen[test] += 1
    np.testing.assert_array_equal(seen, 1)
    fold_of_object = np.array([folds.fold[groups == g][0] for g in range(n_objects)])
    assert np.ptp(np.bincount(fold_of_object, minlength=5)) <= 1
    for cls in range(3):
        assert np.ptp(np.bincount(fold_of_object[classes == cls], minlength=5)) <= 1
    unstratified = group_kfold(groups, n_folds=4)
    assert np.ptp(np.bincount([unstratified.fold[groups == g][0] for g in range(n_objects)], minlength=4)) <= 1
    np.testing.assert_array_equal(group_kfold(groups, n_folds=4).fold, unstratified.fold)  # deterministic


@pytest.mark.parametrize(("call", "match"), [
    (lambda: split_groups([]), "empty"),
    (lambda: split_groups(np.arange(50), fractions={"train": 0.8, "test": 0.1}), "sum to 1"),
    (lambda: split_groups(np.arange(50), fractions={"train": 1.2, "test": -0.2}), r"\(0, 1\]"),
    (lambda: split_groups(np.arange(50), fractions={"train": 1.0, "test": 0.0}), r"\(0, 1\]"),
    (lambda: split_groups(np.arange(50), fractions=[0.8, 0.2]), "mapping"),
    (lambda: split_groups(np.arange(50), fractions={"train": "most", "test": 0.2}), "numbers"),
    (lambda: split_groups(["a", "a"], fractions={"train": 0.5, "test": 0.5}), "cannot fill"),
    (lambda: split_groups(np.arange(10), fractions={"train": 0.98, "val": 0.01, "test": 0.01}), "no group"),
    (lambda: split_groups(np.array(["a", None, "b"], dtype=object)), "missing"),
    (lambda: split_groups(np.array([1.0, np.nan, 2.0])), "missing"),
    (lambda: split_groups(np.zeros((3, 2))), "1-D"),
    (lambda: split_groups(np.arange(30), labels=np.zeros(29)), "one row per example"),
    (lambda: split_groups(np.arange(30), salt=3), "salt"),
    (lambda: group_kfold(np.arange(30), n_folds=1), "n_folds"),
    (lambda: group_kfold(np.arange(3), n_folds=4), "at least 4 groups"),
    (lambda: split_groups(np.arange(30)).mask("holdout"), "no split named"),
])
def test_bad_input_raises_a_clear_error(call, match):
    with pytest.raises(InvalidInputError, match=match):
        call()
