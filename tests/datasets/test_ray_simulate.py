"""The Ray-scale path: ray.data.range(n).map_batches over the pure generators, to Parquet."""
from __future__ import annotations

import json

import pyarrow.parquet as pq

from astroray.datasets import simulate_documents
from astroray.datasets.lightcurves import simulate_lightcurve_table


def test_ray_generation_equals_local_generation(ray_session, tmp_path):
    from astroray.ray.simulate import write_simulated_parquet

    lc = write_simulated_parquet("lightcurves", 2500, tmp_path / "lc", seed=7, batch_size=1024)
    assert lc["rows"] == 2500
    got = pq.read_table(lc["path"]).to_pandas().sort_values("object_id").reset_index(drop=True)
    table, truth = simulate_lightcurve_table(2500, seed=7)
    want = table.to_pandas()
    assert list(got["object_id"]) == list(want["object_id"])
    assert all((a == b).all() for a, b in zip(got["flux"], want["flux"]))
    assert (got["truth_redshift"].to_numpy() == truth["redshift"].to_numpy()).all()

    text = write_simulated_parquet("text", 150, tmp_path / "text", seed=2, batch_size=64)
    docs = pq.read_table(text["path"]).to_pandas().sort_values("doc_id").reset_index(drop=True)
    local = simulate_documents(150, seed=2)
    assert list(docs["text"]) == [d.text for d in local]
    assert json.loads(docs["entities"][5]) == local[5].entities

    images = write_simulated_parquet("images", 2, tmp_path / "img", seed=1, config={"shape": [128, 128], "changes": {"cosmic_ray": 2000}})
    assert images["rows"] >= 40 and len(list((tmp_path / "img" / "fits").glob("*.fits"))) == 4
