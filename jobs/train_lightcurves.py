"""Entry point for `ray job submit`: train the light-curve transformer on Ray Train, calibrate it, register it.

Reads labelled light curves split by object (a folder of Parquet rows; made first when empty, from the
simulator's 14 classes by default or a shared labelled set: see the config's dataset section), fits the
transformer with Ray Train workers (CPU or GPU, see the config's train section), fits a temperature on
validation, scores the held-out objects (accuracy, macro-F1, ECE before and after calibration, partial
light curves), logs metrics, PNGs and the model to MLflow, and registers it as astroray-lc-transformer
with the alias champion.

    python jobs/train_lightcurves.py --config configs/train_lightcurves.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json "{\"env_vars\": {\"ASTRORAY_HOME\": \"$PWD/.astroray\"}}" -- \
        python jobs/train_lightcurves.py --config configs/train_lightcurves.yaml

Exit status 0 on success, 2 on a bad config or data.
"""
import argparse
import json
import sys

from astroray.config import load_config
from astroray.errors import AstrorayError


def main(argv=None) -> int:
    from astroray.ray.train_lightcurves import TrainLightCurvesConfig, train_lightcurves

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="training YAML (default: built-in defaults)")
    parser.add_argument("--data", default=None, help="folder of labelled rows (overrides the config's data)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (absolute); default $ASTRORAY_HOME")
    parser.add_argument("--no-register", action="store_true", help="log the model but do not move the champion")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("data", args.data), ("tracking_uri", args.tracking_uri)) if v}
    if args.no_register:
        overrides["register_model"] = False
    try:
        summary = train_lightcurves(load_config(args.config, TrainLightCurvesConfig, **overrides))
    except AstrorayError as exc:
        print(f"train_lightcurves failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
