"""Entry point for `ray job submit`: labelled real/bogus training stamps from simulated pairs.

Simulates CCD pairs, runs each through the real image pipeline, matches every
detected candidate to the simulator's truth (real transient, variable star,
moving object, or the artifact type) with per-pixel masks, and writes the
stamps (science, reference, difference, S_corr) as Parquet partitioned by
split (OUT/split=train|val|test/), split by pair. Prints the class balance.

    python jobs/make_stamps.py --config configs/make_stamps.yaml --out .astroray/stamps
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/make_stamps.py --config configs/make_stamps.yaml --out /shared/stamps
"""
import argparse
import json
import sys

from astroray.config import load_config
from astroray.errors import AstrorayError


def main(argv=None) -> int:
    from astroray.ray.stamps import StampJobConfig, make_stamps

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="stamp job YAML (default: built-in defaults)")
    parser.add_argument("--out", required=True, help="output folder (shared storage on a cluster)")
    parser.add_argument("--n-pairs", type=int, default=None, help="number of simulated pairs (overrides the config)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        overrides = {"n_pairs": args.n_pairs} if args.n_pairs else {}
        cfg = load_config(args.config, StampJobConfig, **overrides)
        balance = make_stamps(cfg, args.out, progress=not args.no_progress)
    except AstrorayError as exc:
        print(f"make_stamps failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(balance, indent=2))
    return 0 if balance["n_candidates"] else 1


if __name__ == "__main__":
    sys.exit(main())
