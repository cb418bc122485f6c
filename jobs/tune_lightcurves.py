"""Entry point for `ray job submit`: sweep the light-curve transformer with Ray Tune (Optuna + ASHA), register the best.

Each trial fits the transformer with the config's Ray Train workers and a sampled point of the sweep's
search space (its own MLflow run, nested under the sweep's); ASHA stops weak trials early. The best
trial's checkpoint is then calibrated and evaluated as jobs/train_lightcurves.py does and registered as
astroray-lc-transformer with the alias champion.

    python jobs/tune_lightcurves.py --config configs/tune_lightcurves.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json "{\"env_vars\": {\"ASTRORAY_HOME\": \"$PWD/.astroray\"}}" -- \
        python jobs/tune_lightcurves.py --config configs/tune_lightcurves.yaml

Exit status 0 on success, 2 on a bad config or data.
"""
import sys

from astroray.ray.model_jobs import run_model_job


def main(argv=None) -> int:
    from astroray.ray.train_lightcurves import TuneLightCurvesConfig, tune_lightcurves

    return run_model_job(argv, doc=__doc__, name="tune_lightcurves", config_class=TuneLightCurvesConfig, run=tune_lightcurves,
                         config_help="sweep YAML (default: built-in defaults)",
                         data_option=("--data", "data", "folder of labelled rows (overrides the config's data)"))


if __name__ == "__main__":
    sys.exit(main())
