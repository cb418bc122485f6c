r"""Entry point for `ray job submit`: score a night of alerts -- real/bogus, class, rare event, anomaly.

--input DIR: alert files (ZTF and Rubin Avro, Fink/Rubin Parquet, JSON, astroray's alert Parquet), walked
recursively; files that hold no alerts (schemas, notes) are listed as skipped. Every alert is scored once
by the registered models (real/bogus on its cutouts, the light-curve classifier and the rare-event/anomaly
model on its history; see the config's scorer section, where a model set to null is skipped), their
aliases read once when the job starts so every actor scores with the same versions.

Writes under --out: predictions/ (Parquet, one row per alert keyed by alert_id), manifest.parquet (one row
per input with its status: ok | quarantined | skipped | failed, alerts read and scored), quarantine.parquet
(bad files with the reason, and repeated alert ids: the first is kept) and summary.json (counts, model
versions, alerts per second).

    python jobs/classify_alerts.py --input ../shared/data/alerts --out /tmp/night --config configs/classify_alerts.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json "{\"env_vars\": {\"ASTRORAY_HOME\": \"$PWD/.astroray\"}}" -- \
        python jobs/classify_alerts.py --input /data/night --out /data/night-scores --config configs/classify_alerts.yaml

A non-empty --out is refused unless --overwrite is given (which replaces only the job's own outputs there).
Inputs are read within ASTRORAY_MAX_FILE_MB / ASTRORAY_MAX_DECOMPRESSED_MB (or the config's read_limits).

Exit status: 0 when every alert file was scored, 1 when some were quarantined or failed, 2 on a bad config,
a model missing from the store, or a bad --input/--out.
"""
import argparse
import json
import sys

from astroray.config import load_config
from astroray.errors import AstrorayError


def main(argv=None) -> int:
    from astroray.ray.alerts_job import ClassifyAlertsConfig, classify_alerts

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="alert file or folder of alert files")
    parser.add_argument("--out", required=True, help="output folder (shared storage on a cluster); empty or "
                                                     "missing unless --overwrite")
    parser.add_argument("--config", default=None, help="job config YAML (default: built-in defaults)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store of the models (absolute); default "
                                                             "$ASTRORAY_HOME/mlflow.db")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the job's outputs of an earlier run in --out (predictions/, manifest.parquet, "
                             "quarantine.parquet, summary.json); other files there are left alone")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, ClassifyAlertsConfig)
        if args.tracking_uri:
            cfg = cfg.with_updates(scorer=cfg.scorer.with_updates(tracking_uri=args.tracking_uri))
        summary = classify_alerts(args.input, args.out, cfg, overwrite=args.overwrite, progress=not args.no_progress)
    except AstrorayError as exc:
        print(f"classify_alerts failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    bad = summary["files_quarantined"] + summary["files_failed"] + summary["files_lost"]
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
