"""jobs/difference.py's outputs are exactly the current run's, alert ids stay unique, writes stay inside --out."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from astroray.errors import InvalidInputError
from astroray.io.outputs import OutputFolder

REPO = Path(__file__).resolve().parents[2]


def _job():
    import importlib.util

    spec = importlib.util.spec_from_file_location("difference_job", REPO / "jobs" / "difference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parts(out: Path) -> dict[str, set[str]]:
    return {folder: {p.name.split(".")[0] for p in (out / folder).iterdir() if not p.name.startswith(".")}
            for folder in ("alerts", "catalog", "difference")}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    from astroray.datasets import ImagePairConfig, write_images

    inputs = tmp_path_factory.mktemp("pairs")
    write_images(2, inputs, config=ImagePairConfig(shape=(192, 192)), seed=11)
    return inputs


def test_overwrite_is_documented_and_a_non_empty_out_is_refused(tmp_path, capsys):
    job = _job()
    helptext = subprocess.run([sys.executable, str(REPO / "jobs/difference.py"), "--help"], capture_output=True,
                              text=True, check=True).stdout
    assert "--overwrite" in helptext and "exactly this run's" in helptext
    assert "--overwrite" in (REPO / "README.md").read_text()
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.parquet").write_bytes(b"old")
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a_reference.fits").write_bytes(b"")
    (inputs / "a_science.fits").write_bytes(b"")
    assert job.main(["--input", str(inputs), "--out", str(out), "--no-progress"]) == 2  # before any Ray work
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out / "manifest.parquet").read_bytes() == b"old"


def test_rerun_after_a_pair_turned_bad_leaves_no_output_of_it(ray_session, pairs, tmp_path):
    import shutil

    job = _job()
    inputs = tmp_path / "in"
    shutil.copytree(pairs, inputs)
    out = tmp_path / "out"
    config = tmp_path / "job.yaml"
    config.write_text("num_actors: 1\n")
    assert job.main(["--input", str(inputs), "--out", str(out), "--config", str(config), "--no-progress"]) == 0
    first = pd.read_parquet(out / "manifest.parquet")
    assert sorted(first["status"]) == ["ok", "ok"]
    bad_pair = sorted(first["pair_id"])[1]
    assert all(bad_pair in names for names in _parts(out).values())
    sci = inputs / f"{bad_pair}_science.fits"
    data = bytearray(sci.read_bytes())  # the file went bad between the runs: a header lie that used to hang reads
    k = data.index(b"NAXIS1  =", 2880)
    data[k:k + 80] = b"NAXIS1  =                   -5".ljust(80)
    sci.write_bytes(bytes(data))
    (out / "alerts" / "unrelated.txt").write_text("not the job's")  # another tool's file: left alone
    assert job.main(["--input", str(inputs), "--out", str(out), "--config", str(config), "--overwrite",
                     "--no-progress"]) == 1
    manifest = pd.read_parquet(out / "manifest.parquet")
    ok = set(manifest.loc[manifest["status"] == "ok", "pair_id"])
    assert manifest.set_index("pair_id").loc[bad_pair, "status"] == "quarantined"
    assert "NAXIS1 = -5" in manifest.set_index("pair_id").loc[bad_pair, "reason"]
    for folder, names in _parts(out).items():  # what is on disk is exactly what the manifest says is ok
        assert names - {"unrelated"} == ok, folder
    assert (out / "alerts" / "unrelated.txt").exists()
    assert list(pd.read_parquet(out / "quarantine.parquet")["pair_id"]) == [bad_pair]
    assert not [p for p in out.rglob(".*.tmp")]


def test_a_pair_given_twice_writes_no_duplicate_alert_ids(ray_session, pairs, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in pairs.glob("*.fits"):
        os.symlink(f, inputs / f.name)
    first = sorted(p.name for p in pairs.glob("*_science.fits"))[0].removesuffix("_science.fits")
    # a third pair whose science file is a link to the first pair's, against the other reference
    os.symlink(inputs / f"{first}_science.fits", inputs / "zlinked_science.fits")
    other_ref = sorted(pairs.glob("*_reference.fits"))[1]
    os.symlink(other_ref, inputs / "zlinked_reference.fits")
    from astroray.ray.image_job import DifferenceJobConfig, pairs_in_folder, run_pairs

    out = tmp_path / "out"
    status = run_pairs(pairs_in_folder(inputs), out, DifferenceJobConfig(num_actors=1), progress=False)
    row = status.set_index("pair_id").loc["zlinked"]
    assert row["status"] == "quarantined" and f"same file as pair {first}'s" in row["reason"]
    alerts = pq.read_table(out / "alerts").column("alert_id").to_pylist()
    assert len(alerts) > 0 and len(alerts) == len(set(alerts))
    assert "zlinked" not in _parts(out)["alerts"]


def test_a_planted_link_is_never_written_through(ray_session, pairs, tmp_path):
    from astroray.ray.image_job import DifferenceJobConfig, pairs_in_folder, run_pairs

    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    (out / "alerts").mkdir(parents=True)
    pair = sorted(pairs_in_folder(pairs)["pair_id"])[0]
    # the old fixed temporary name, planted as a link to a file outside --out
    os.symlink(outside / "stolen.parquet", out / "alerts" / f".{pair}.parquet.tmp")
    status = run_pairs(pairs_in_folder(pairs), out, DifferenceJobConfig(num_actors=1), progress=False)
    assert set(status["status"]) == {"ok"}
    assert list(outside.iterdir()) == []
    assert (out / "alerts" / f"{pair}.parquet").is_file() and not (out / "alerts" / f"{pair}.parquet").is_symlink()
    # a link in place of a whole output folder is refused before any work
    out2 = tmp_path / "out2"
    out2.mkdir()
    os.symlink(outside, out2 / "catalog")
    with pytest.raises(InvalidInputError, match="catalog/ in the output folder is not a plain folder"):
        run_pairs(pairs_in_folder(pairs), out2, DifferenceJobConfig(num_actors=1), progress=False)
    assert list(outside.iterdir()) == []


def test_output_folder_writes_atomically_and_never_follows_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("keep")
    out = OutputFolder(tmp_path / "out")
    os.symlink(outside / "victim.txt", tmp_path / "out" / "part.txt")  # a link at the final name
    path = out.write(None, "part.txt", lambda fh: fh.write(b"new"))
    assert (outside / "victim.txt").read_text() == "keep"
    assert path.read_bytes() == b"new" and not path.is_symlink()

    def broken(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        out.write(None, "part.txt", broken)
    assert path.read_bytes() == b"new"  # the old file stays whole; the temporary is gone
    assert sorted(os.listdir(tmp_path / "out")) == ["part.txt"]
    for bad in ("../escape", "a/b", ".hidden", ""):
        with pytest.raises(InvalidInputError):
            out.write(None, bad, lambda fh: fh.write(b"x"))
    assert not (tmp_path / "escape").exists()
