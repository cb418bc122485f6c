"""Entry point for `ray job submit`: train the real/bogus U-Net on Ray Train, evaluate it, register it.

Reads labelled stamps (jobs/make_stamps.py; made first when the data folder is empty), fits the U-Net
with Ray Train workers (CPU or GPU, see the config's train section), picks the threshold at 1% false
positives on validation, scores the test pairs beside the classical detectors, logs metrics, PNGs and
the model to MLflow, and registers it as astroray-realbogus with the alias champion.

    python jobs/train_realbogus.py --config configs/train_realbogus.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json "{\"env_vars\": {\"ASTRORAY_HOME\": \"$PWD/.astroray\"}}" -- \
        python jobs/train_realbogus.py --config configs/train_realbogus.yaml

Exit status 0 on success, 2 on a bad config or data.
"""
import argparse
import json
import sys

from astroray.config import load_config
from astroray.errors import AstrorayError


def main(argv=None) -> int:
    from astroray.ray.train_realbogus import TrainRealBogusConfig, train_realbogus

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="training YAML (default: built-in defaults)")
    parser.add_argument("--data", default=None, help="stamp folder (overrides the config's data)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (absolute); default $ASTRORAY_HOME")
    parser.add_argument("--no-register", action="store_true", help="log the model but do not move the champion")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("data", args.data), ("tracking_uri", args.tracking_uri)) if v}
    if args.no_register:
        overrides["register_model"] = False
    try:
        summary = train_realbogus(load_config(args.config, TrainRealBogusConfig, **overrides))
    except AstrorayError as exc:
        print(f"train_realbogus failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
