"""Writers behind `astroray simulate` and the galleries."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from astroray.datasets import ImagePairConfig, simulate_lightcurves, simulate_pair, write_simulated
from astroray.errors import ConfigError, InvalidInputError
from astroray.io.fits import read_exposure
from astroray.records import table_to_lightcurves


def test_write_images_round_trips_through_fits(tmp_path):
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("shape: [128, 160]\nstar_density: 10\n")
    summary = write_simulated("images", n=2, out_dir=tmp_path / "img", seed=3, config=str(cfg), plot=True)
    assert summary["files"] == 4 and (tmp_path / "img" / "gallery.png").stat().st_size > 10_000
    truth = pd.read_parquet(summary["truth"])
    assert truth["pair_id"].nunique() == 2 and len(truth) == summary["n_changes"]
    pair = simulate_pair(ImagePairConfig(shape=(128, 160), star_density=10), seed=3, index=1)
    back = read_exposure(tmp_path / "img" / f"{pair.pair_id}_science.fits")
    assert np.array_equal(back.image, pair.science.image) and np.array_equal(back.mask, pair.science.mask)
    assert np.array_equal(back.psf, pair.science.psf)
    assert back.meta["zero_point"] == pair.science.meta["zero_point"]


def test_write_lightcurves_and_text(tmp_path):
    summary = write_simulated("lightcurves", n=300, out_dir=tmp_path / "lc", seed=1, plot=True)
    table = pq.read_table(summary["lightcurves"])
    assert table.num_rows == 300 and sum(summary["classes"].values()) == 300
    lcs = table_to_lightcurves(table)
    direct = simulate_lightcurves(300, seed=1).lightcurves
    assert all(np.array_equal(a.flux, b.flux) and a.label == b.label for a, b in zip(lcs, direct))
    assert (tmp_path / "lc" / "gallery.png").is_file()
    text = write_simulated("text", n=20, out_dir=tmp_path / "text", seed=1, plot=True)
    lines = (tmp_path / "text" / "documents.jsonl").read_text().splitlines()
    assert len(lines) == 20
    doc = json.loads(lines[0])
    assert all(doc["text"][e["start"]:e["end"]] == e["text"] for e in doc["entities"])
    page = (tmp_path / "text" / "documents.html").read_text()
    assert page.count("<mark") >= sum(text["entities"].values())


def test_bad_kind_or_config(tmp_path):
    with pytest.raises(InvalidInputError):
        write_simulated("spectra", n=1, out_dir=tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("shape: [128, 128]\nsky_brightnes: 21\n")
    with pytest.raises(ConfigError, match="sky_brightnes"):
        write_simulated("images", n=1, out_dir=tmp_path, config=str(bad))
