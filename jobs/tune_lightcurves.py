"""Entry point for `ray job submit`: sweep the light-curve transformer with Ray Tune (Optuna + ASHA), register the best.

Each trial fits the transformer with the config's Ray Train workers and a sampled point of the sweep's
search space (its own MLflow run, nested under the sweep's); ASHA stops weak trials early. The best
trial's checkpoint is then calibrated and evaluated as jobs/train_lightcurves.py does and registered as
astroray-lc-transformer with the alias champion.

    python jobs/tune_lightcurves.py --config configs/tune_lightcurves.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json "{\"env_vars\": {\"ASTRORAY_HOME\": \"$PWD/.astroray\"}}" -- \
        python jobs/tune_lightcurves.py --config configs/tune_lightcurves.yaml

Exit status 0 on success, 2 on a bad config or data.
"""
import argparse
import json
import sys

from astroray.config import load_config
from astroray.errors import AstrorayError


def main(argv=None) -> int:
    from astroray.ray.train_lightcurves import TuneLightCurvesConfig, tune_lightcurves

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="sweep YAML (default: built-in defaults)")
    parser.add_argument("--data", default=None, help="folder of labelled rows (overrides the config's data)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (absolute); default $ASTRORAY_HOME")
    parser.add_argument("--no-register", action="store_true", help="log the model but do not move the champion")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("data", args.data), ("tracking_uri", args.tracking_uri)) if v}
    if args.no_register:
        overrides["register_model"] = False
    try:
        summary = tune_lightcurves(load_config(args.config, TuneLightCurvesConfig, **overrides))
    except AstrorayError as exc:
        print(f"tune_lightcurves failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
