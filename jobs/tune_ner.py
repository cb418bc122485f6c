"""Entry point for `ray job submit`: sweep the NER hyperparameters with Ray Tune (Optuna + ASHA), register the best.

Each trial trains the statistical tagger with a sampled point of the sweep's search space (keys
ner.<field> of astroray.text.NerConfig) and reports the weak dev set's names-F1 after every epoch;
each is its own MLflow run, nested under the sweep's; ASHA stops weak trials early. The best
configuration is then trained, scored on the kept evaluation sets and registered as astroray-ner
with the alias champion, as jobs/train_ner.py does.

    python jobs/tune_ner.py --config configs/tune_ner.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json "{\"env_vars\": {\"ASTRORAY_HOME\": \"$PWD/.astroray\"}}" -- \
        python jobs/tune_ner.py --config configs/tune_ner.yaml

Exit status 0 on success, 2 on a bad config or data.
"""
import argparse
import json
import sys

from astroray.config import load_config
from astroray.errors import AstrorayError


def main(argv=None) -> int:
    from astroray.ray.ner import TuneNerConfig, tune_ner_job

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="sweep YAML (default: built-in defaults)")
    parser.add_argument("--shared-data", default=None, help="shared data folder (overrides the config's)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (absolute); default $ASTRORAY_HOME")
    parser.add_argument("--no-register", action="store_true", help="log the model but do not move the champion")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("shared_data", args.shared_data), ("tracking_uri", args.tracking_uri)) if v}
    if args.no_register:
        overrides["register_model"] = False
    try:
        summary = tune_ner_job(load_config(args.config, TuneNerConfig, **overrides))
    except AstrorayError as exc:
        print(f"tune_ner failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
