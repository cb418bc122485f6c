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
import sys

from astroray.ray.model_jobs import run_model_job


def main(argv=None) -> int:
    from astroray.ray.train_lightcurves import TrainLightCurvesConfig, train_lightcurves

    return run_model_job(argv, doc=__doc__, name="train_lightcurves", config_class=TrainLightCurvesConfig, run=train_lightcurves,
                         config_help="training YAML (default: built-in defaults)",
                         data_option=("--data", "data", "folder of labelled rows (overrides the config's data)"))


if __name__ == "__main__":
    sys.exit(main())
