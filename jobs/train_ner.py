"""Entry point for `ray job submit`: train the source-name NER pipeline, evaluate it, register it.

Builds the weakly labelled training text (simulated reports, WIESP 2022 names, GCN subjects labelled
by the rules), trains the statistical tagger behind the rules, scores it on the kept evaluation sets
(GCN subjects; ATel pages as raw HTML) beside the regex baseline, logs config, metrics, a displaCy page
and the model (MLflow's spaCy flavour), and registers it as astroray-ner with the alias champion.

    python jobs/train_ner.py --config configs/train_ner.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json "{\"env_vars\": {\"ASTRORAY_HOME\": \"$PWD/.astroray\"}}" -- \
        python jobs/train_ner.py --config configs/train_ner.yaml

Exit status 0 on success, 2 on a bad config or data.
"""
import argparse
import json
import sys

from astroray.config import load_config
from astroray.errors import AstrorayError


def main(argv=None) -> int:
    from astroray.ray.ner import TrainNerConfig, train_ner_job

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="training YAML (default: built-in defaults)")
    parser.add_argument("--shared-data", default=None, help="shared data folder (overrides the config's)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (absolute); default $ASTRORAY_HOME")
    parser.add_argument("--no-register", action="store_true", help="log the model but do not move the champion")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("shared_data", args.shared_data), ("tracking_uri", args.tracking_uri)) if v}
    if args.no_register:
        overrides["register_model"] = False
    try:
        summary = train_ner_job(load_config(args.config, TrainNerConfig, **overrides))
    except AstrorayError as exc:
        print(f"train_ner failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
