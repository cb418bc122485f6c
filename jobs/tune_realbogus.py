"""Entry point for `ray job submit`: sweep the real/bogus U-Net with Ray Tune (Optuna + ASHA), register the best.

Each trial fits the U-Net with the config's Ray Train workers and a sampled point of the sweep's
search space (its own MLflow run, nested under the sweep's); ASHA stops weak trials early. The best
trial's checkpoint is then evaluated like jobs/train_realbogus.py does and registered as
astroray-realbogus with the alias champion.

    python jobs/tune_realbogus.py --config configs/tune_realbogus.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json "{\"env_vars\": {\"ASTRORAY_HOME\": \"$PWD/.astroray\"}}" -- \
        python jobs/tune_realbogus.py --config configs/tune_realbogus.yaml

Exit status 0 on success, 2 on a bad config or data.
"""
import argparse
import json
import sys

from astroray.config import load_config
from astroray.errors import AstrorayError


def main(argv=None) -> int:
    from astroray.ray.train_realbogus import TuneRealBogusConfig, tune_realbogus

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
        summary = tune_realbogus(load_config(args.config, TuneRealBogusConfig, **overrides))
    except AstrorayError as exc:
        print(f"tune_realbogus failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
