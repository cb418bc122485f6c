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
import sys

from astroray.ray.model_jobs import run_model_job


def main(argv=None) -> int:
    from astroray.ray.ner import TrainNerConfig, train_ner_job

    return run_model_job(argv, doc=__doc__, name="train_ner", config_class=TrainNerConfig, run=train_ner_job,
                         config_help="training YAML (default: built-in defaults)",
                         data_option=("--shared-data", "shared_data", "shared data folder (overrides the config's)"))


if __name__ == "__main__":
    sys.exit(main())
