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
import sys

from astroray.ray.model_jobs import run_model_job


def main(argv=None) -> int:
    from astroray.ray.ner import TuneNerConfig, tune_ner_job

    return run_model_job(argv, doc=__doc__, name="tune_ner", config_class=TuneNerConfig, run=tune_ner_job,
                         config_help="sweep YAML (default: built-in defaults)",
                         data_option=("--shared-data", "shared_data", "shared data folder (overrides the config's)"))


if __name__ == "__main__":
    sys.exit(main())
