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
import sys

from astroray.ray.model_jobs import run_model_job


def main(argv=None) -> int:
    from astroray.ray.train_realbogus import TuneRealBogusConfig, tune_realbogus

    return run_model_job(argv, doc=__doc__, name="tune_realbogus", config_class=TuneRealBogusConfig, run=tune_realbogus,
                         config_help="training YAML (default: built-in defaults)",
                         data_option=("--data", "data", "stamp folder (overrides the config's data)"))


if __name__ == "__main__":
    sys.exit(main())
