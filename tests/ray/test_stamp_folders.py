"""Real/bogus training data from several stamp folders pooled (Rubin-like and ZTF-like sets side by side), and what
a fit reports of its epochs."""
from __future__ import annotations

import pytest

from astroray.errors import InvalidInputError
from astroray.ray.train_realbogus import TrainRealBogusConfig, _ensure_stamps, stamp_files


def _folder(root, name, splits=("train", "val", "test"), per=2):
    for split in splits:
        (root / name / f"split={split}").mkdir(parents=True)
        for k in range(per):
            (root / name / f"split={split}" / f"{name}-{k}.parquet").write_bytes(b"")
    return root / name


def test_stamp_files_pool_several_folders_split_by_split(tmp_path):
    rubin, ztf = _folder(tmp_path, "rubin"), _folder(tmp_path, "ztf", per=3)
    assert [p.name for p in stamp_files(rubin, "val")] == ["rubin-0.parquet", "rubin-1.parquet"]
    pooled = stamp_files([rubin, str(ztf)], "test")
    assert [p.parent.parent.name for p in pooled] == ["rubin"] * 2 + ["ztf"] * 3
    assert all(p.parent.name == "split=test" for p in pooled)


def test_a_list_of_folders_is_used_as_is_and_each_must_hold_stamps(tmp_path):
    rubin, ztf = _folder(tmp_path, "rubin"), _folder(tmp_path, "ztf")
    cfg = TrainRealBogusConfig(data=[str(rubin), str(ztf)])
    assert _ensure_stamps(cfg, progress=False) == [rubin, ztf]
    empty = tmp_path / "not-made"
    with pytest.raises(InvalidInputError, match="not-made"):
        _ensure_stamps(TrainRealBogusConfig(data=[str(rubin), str(empty)]), progress=False)
    _folder(tmp_path, "no-test", splits=("train", "val"))
    with pytest.raises(InvalidInputError, match="no test stamps"):
        _ensure_stamps(TrainRealBogusConfig(data=[str(rubin), str(tmp_path / "no-test")]), progress=False)


def test_fit_result_counts_epochs_run_not_checkpoints_kept():
    from astroray.ray.train import FitResult

    # 4 epochs run, 2 checkpoints kept: Ray Train's history holds only the kept ones
    kept = FitResult(checkpoint_path="x", metrics={"epoch": 3, "val_auc": 0.99},
                     history=[{"epoch": 2, "val_auc": 0.98}, {"epoch": 3, "val_auc": 0.99}])
    assert kept.epochs == 4 and len(kept.history) == 2
    assert FitResult(checkpoint_path="x", metrics={}, history=[{}, {}]).epochs == 2  # no epoch reported
    assert FitResult(checkpoint_path="x", metrics={"epoch": float("nan")}).epochs == 0
