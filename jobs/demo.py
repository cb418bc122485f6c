"""Entry point for `ray job submit`: the end-to-end demo on a simulated sky, every candidate scored real/bogus.

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json "{\"env_vars\": {\"ASTRORAY_HOME\": \"$PWD/.astroray\"}}" -- \
        python jobs/demo.py --config configs/demo.yaml

The real/bogus model is models:/astroray-realbogus@champion from the MLflow store; without one, a small
model is trained first (a minute or two on two cores) and registered. --no-realbogus skips the model.

Outputs and the MLflow run go to $ASTRORAY_HOME (without it, ~/.astroray on the node running
this entry point: Ray deletes its copy of the working dir after the job).

Exits non-zero when no pair could be processed or the config is invalid.
"""
import argparse
import sys

from astroray.config import load_config
from astroray.errors import AstrorayError
from astroray.ray.demo import DemoConfig, run_demo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="demo config YAML (default: built-in defaults)")
    parser.add_argument("--out", default=None, help="output folder (default: $ASTRORAY_HOME/demo)")
    parser.add_argument("--n-pairs", type=int, default=None, help="number of simulated pairs")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store, absolute (sqlite:////abs/path/mlflow.db or a server URL); default "
                             "$MLFLOW_TRACKING_URI, else $ASTRORAY_HOME/mlflow.db")
    parser.add_argument("--no-realbogus", action="store_true", help="no real/bogus scoring (realbogus: null)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("output_dir", args.out), ("n_pairs", args.n_pairs),
                                   ("tracking_uri", args.tracking_uri)) if v is not None}
    if args.no_realbogus:
        overrides["realbogus"] = None
    try:
        summary = run_demo(load_config(args.config, DemoConfig, **overrides), progress=False)
    except AstrorayError as exc:
        print(f"demo job failed: {exc}", file=sys.stderr)
        return 2
    return 0 if summary.n_ok > 0 and summary.n_failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
