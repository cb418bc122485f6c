"""What the image pipeline finds of the simulated truth: completeness, positions, streaks, leftovers.

Runs :class:`astroray.imaging.pipeline.ImagePipeline` in-process (no Ray) on N
simulated CCD pairs with the demo's pipeline config and matches detections to
the injected changes. Reports, as JSON:

* completeness of injected real changes at expected S/N >= 7 (and of all),
  within ``--radius`` px, with the misses per kind;
* the median position error of the matched ones;
* detections flagged ``on_streak`` and ``under_streak``, and streaks found
  against streaks injected;
* detections more than 3 px from any injected change (real or bogus) and not
  on a streak: what no injected cause explains (dipole lobes are a few px
  from their dipole's centre, so they count here).

    python benchmarks/bench_recovery.py --n-pairs 16 --size 1024 --seed 42
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-pairs", type=int, default=16)
    parser.add_argument("--size", type=int, default=1024, help="CCD side in pixels")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--radius", type=float, default=2.0, help="match radius in pixels")
    parser.add_argument("--config", default=str(Path(__file__).parents[1] / "configs" / "demo.yaml"),
                        help="demo config whose pipeline section is used")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/recovery.json)")
    args = parser.parse_args(argv)

    from scipy.spatial import cKDTree

    from astroray.config import load_config
    from astroray.datasets import ImagePairConfig, simulate_pair
    from astroray.imaging.pipeline import ImagePipeline
    from astroray.eval import match_to_truth
    from astroray.ray.demo import DemoConfig

    pipeline = ImagePipeline(load_config(args.config, DemoConfig).pipeline)
    sim = ImagePairConfig(shape=(args.size, args.size))
    n_bright = n_bright_found = n_real = n_real_found = 0
    n_det = n_on = n_under = n_unexplained = n_streaks = n_streaks_injected = 0
    errors, misses, seconds = [], [], []
    for index in range(args.n_pairs):
        pair = simulate_pair(sim, seed=args.seed, index=index)
        t0 = time.perf_counter()
        res = pipeline.run(pair.reference, pair.science)
        seconds.append(time.perf_counter() - t0)
        cat, truth = res.catalog, pair.truth
        real = truth[truth["real"].astype(bool)]
        bright = real[real["snr_expected"] >= 7]
        hit = match_to_truth(cat, bright, radius=args.radius)
        n_bright += len(bright)
        n_bright_found += int(hit.sum())
        misses += list(bright.loc[~hit, "kind"])
        n_real += len(real)
        n_real_found += int(match_to_truth(cat, real, radius=args.radius).sum())
        n_streaks += len(getattr(res, "streaks", []))
        n_streaks_injected += int((truth["kind"] == "satellite_streak").sum())
        if cat.empty:
            continue
        n_det += len(cat)
        on_streak = cat["on_streak"].to_numpy(bool) if "on_streak" in cat else np.zeros(len(cat), bool)
        n_on += int(on_streak.sum())
        n_under += int(cat["under_streak"].sum()) if "under_streak" in cat else 0
        if len(truth):
            dist, _ = cKDTree(truth[["x", "y"]].to_numpy()).query(cat[["x", "y"]].to_numpy())
            n_unexplained += int(((dist > 3) & ~on_streak).sum())
        if len(bright):
            dist, _ = cKDTree(cat[["x", "y"]].to_numpy()).query(bright[["x", "y"]].to_numpy())
            errors += list(dist[dist <= args.radius])
    result = {
        "benchmark": "recovery", "n_pairs": args.n_pairs, "size": args.size, "seed": args.seed,
        "injected_real_snr_ge_7": n_bright, "recovered_snr_ge_7": n_bright_found,
        "completeness_snr_ge_7": round(n_bright_found / max(n_bright, 1), 4),
        "misses_snr_ge_7_by_kind": pd.Series(misses, dtype=object).value_counts().to_dict(),
        "injected_real": n_real, "recovered_real": n_real_found,
        "median_position_error_px": round(float(np.median(errors)), 3) if errors else None,
        "detections": n_det, "on_streak": n_on, "under_streak": n_under,
        "unexplained_not_on_streak": n_unexplained,
        "streaks_found": n_streaks, "streaks_injected": n_streaks_injected,
        "median_s_per_pair": round(float(np.median(seconds)), 3),
    }
    out = Path(args.out or Path(__file__).parent / "results" / "recovery.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
