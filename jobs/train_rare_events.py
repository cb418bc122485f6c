"""Entry point for `ray job submit`: fit the rare-event + anomaly model (ProtoNet ensemble, prototypes, open-set
threshold, anomaly detectors), check it on held-out objects, log it to MLflow and register it.

Fits on simulated light curves by default (or labelled ones: `--data`), in this process: the ProtoNet's
training steps take milliseconds, so there is no Ray Train here and the job needs no workers. Logs the
params, test metrics (accuracy, none-of-these rate, the open-set and anomaly AUROC of one class held out of a
second fit), PNGs of the top anomalies and the model, and registers it as astroray-protonet with the alias
champion (what the alert scorer and Serve load).

    python jobs/train_rare_events.py --config configs/train_rare_events.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json "{\"env_vars\": {\"ASTRORAY_HOME\": \"$PWD/.astroray\"}}" -- \
        python jobs/train_rare_events.py --config configs/train_rare_events.yaml

Exit status 0 on success, 2 on a bad config or data.
"""
import sys

from astroray.ray.model_jobs import run_model_job


def main(argv=None) -> int:
    from astroray.ray.train_rare_events import TrainRareEventsConfig, train_rare_events

    return run_model_job(argv, doc=__doc__, name="train_rare_events", config_class=TrainRareEventsConfig,
                         run=train_rare_events, config_help="training YAML (default: built-in defaults)",
                         data_option=("--data", "data",
                                      "labelled light curves, a file or folder (overrides the config's data)"))


if __name__ == "__main__":
    sys.exit(main())
