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
import sys

from astroray.ray.model_jobs import run_model_job


def main(argv=None) -> int:
    from astroray.ray.train_realbogus import TrainRealBogusConfig, train_realbogus

    return run_model_job(argv, doc=__doc__, name="train_realbogus", config_class=TrainRealBogusConfig, run=train_realbogus,
                         config_help="training YAML (default: built-in defaults)",
                         data_option=("--data", "data", "stamp folder (overrides the config's data)"))


if __name__ == "__main__":
    sys.exit(main())
