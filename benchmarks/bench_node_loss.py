"""A worker node lost mid-job: the batch jobs still account for every input exactly once.

Starts a real three-node Ray cluster on this machine (a head without CPUs and
two worker nodes, each its own ``ray start`` process group), runs a job as a
driver joined through ``RAY_ADDRESS``, SIGKILLs one worker node once some
outputs are written, and checks the outputs:

* ``--job difference`` (``jobs/difference.py`` on simulated pairs): every
  input pair in the manifest exactly once, its status ok (the pairs on the
  lost node are retried on the survivor), one catalogue and one alert file per
  ok pair, and no alert id twice;
* ``--job alerts`` (``jobs/classify_alerts.py`` on a night of real ZTF
  packets repeated with new ids, scored by models registered in a scratch
  store): every input file in the manifest exactly once and ok, every alert
  of the inputs in the predictions exactly once (no id lost, none twice).

    python benchmarks/bench_node_loss.py                          # both jobs
    python benchmarks/bench_node_loss.py --job alerts --n-files 24 --alerts-per-file 200
    python benchmarks/bench_node_loss.py --job difference --n-pairs 24 --size 1024

Writes benchmarks/results/node_loss.json.  Exit status 0 when nothing was lost or duplicated.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_and_kill(cluster, cmd: list[str], done, kill_after: int, report: dict) -> str:
    """Run ``cmd`` as a driver of ``cluster``; kill worker node 0 once ``done()`` reaches ``kill_after``."""
    t1 = time.time()
    job = subprocess.Popen(cmd, env=cluster.client_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, cwd=ROOT)
    killed_at = None
    while job.poll() is None:
        if killed_at is None and done() >= kill_after:
            report["outputs_done_when_killed"] = done()
            cluster.kill_worker(0)
            killed_at = time.time() - t1
        time.sleep(0.5)
    log = job.stdout.read()
    report["job_exit_status"] = job.returncode
    report["job_s"] = round(time.time() - t1, 1)
    report["killed_at_s"] = None if killed_at is None else round(killed_at, 1)
    report["nodes_alive_after"] = cluster.alive_nodes()
    return log


def difference_job(args, cluster, work: Path) -> tuple[dict, str]:
    import pandas as pd

    from astroray.datasets import write_simulated
    from astroray.datasets.writers import SIMULATORS, resolve_config

    inputs, out = work / "pairs", work / "out"
    config = resolve_config(None, SIMULATORS["images"]).with_updates(shape=(args.size, args.size))
    write_simulated("images", n=args.n_pairs, out_dir=inputs, seed=7, config=config)
    job_config = work / "job.yaml"
    # an actor per logical CPU of the two workers; restarts are on (a joined cluster can lose nodes)
    job_config.write_text(f"num_actors: {2 * args.cpus_per_worker}\n")
    report: dict = dict(job="difference", n_pairs=args.n_pairs, size=args.size)

    def done() -> int:
        return len(list((out / "catalog").glob("*.parquet"))) if (out / "catalog").is_dir() else 0

    log = _run_and_kill(cluster, [sys.executable, str(ROOT / "jobs/difference.py"), "--input", str(inputs),
                                  "--out", str(out), "--config", str(job_config), "--no-progress"],
                        done, args.kill_after, report)
    manifest = pd.read_parquet(out / "manifest.parquet")
    inputs_ids = sorted(p.name[: -len("_science.fits")] for p in inputs.glob("*_science.fits"))
    counts = manifest["pair_id"].value_counts()
    catalogs = sorted(p.stem for p in (out / "catalog").glob("*.parquet"))
    alert_ids = pd.concat([pd.read_parquet(p, columns=["alert_id"]) for p in (out / "alerts").glob("*.parquet")],
                          ignore_index=True)["alert_id"] if list((out / "alerts").glob("*.parquet")) else pd.Series()
    report.update(
        inputs=len(inputs_ids),
        in_manifest=int(manifest["pair_id"].nunique()),
        lost=sorted(set(inputs_ids) - set(manifest["pair_id"])),
        duplicated_in_manifest=sorted(counts[counts > 1].index.tolist()),
        status_counts=manifest["status"].value_counts().to_dict(),
        catalog_files=len(catalogs),
        catalog_files_not_ok=sorted(set(catalogs) - set(manifest.loc[manifest["status"] == "ok", "pair_id"])),
        alert_rows=int(len(alert_ids)),
        duplicated_alert_ids=int(alert_ids.duplicated().sum()),
    )
    report["passed"] = bool(report["killed_at_s"] is not None and not report["lost"]
                            and not report["duplicated_in_manifest"] and report["duplicated_alert_ids"] == 0
                            and report["status_counts"].get("ok", 0) == len(inputs_ids)
                            and not report["catalog_files_not_ok"])
    return report, log


def alerts_job(args, cluster, work: Path) -> tuple[dict, str]:
    import pandas as pd

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_alerts import _ztf_avro_night

    from astroray.io import read_alerts
    from astroray.testing.lightcurves import register_untrained_lc_transformer
    from astroray.testing.rare_events import register_small_rare_event_model
    from astroray.testing.realbogus import register_untrained_realbogus

    night, out = work / "night", work / "out"
    night.mkdir()
    n_alerts = _ztf_avro_night(night, args.n_files, args.alerts_per_file)
    store = f"sqlite:///{work / 'mlflow.db'}"
    register_untrained_realbogus(tracking_uri=store)
    register_untrained_lc_transformer(tracking_uri=store)
    register_small_rare_event_model(tracking_uri=store, survey="ztf", seed=0)
    job_config = work / "job.yaml"
    job_config.write_text(f"num_actors: {2 * args.cpus_per_worker}\nbatch_size: 256\n")
    report: dict = dict(job="alerts", n_files=args.n_files, alerts_per_file=args.alerts_per_file)

    def done() -> int:
        return len(list((out / "predictions").glob("*.parquet"))) if (out / "predictions").is_dir() else 0

    log = _run_and_kill(cluster, [sys.executable, str(ROOT / "jobs/classify_alerts.py"), "--input", str(night),
                                  "--out", str(out), "--config", str(job_config), "--tracking-uri", store,
                                  "--no-progress"], done, args.kill_after, report)
    manifest = pd.read_parquet(out / "manifest.parquet")
    files = sorted(str(p) for p in night.iterdir())
    counts = manifest["path"].value_counts()
    preds = pd.concat([pd.read_parquet(p, columns=["alert_id"]) for p in (out / "predictions").glob("*.parquet")],
                      ignore_index=True)["alert_id"]
    expected = {str(a.alert_id) for f in files for a in read_alerts(f, cutouts=False)}
    report.update(
        inputs=len(files), input_alerts=n_alerts,
        in_manifest=int(manifest["path"].nunique()),
        lost_files=sorted(set(files) - set(manifest["path"])),
        duplicated_in_manifest=sorted(counts[counts > 1].index.tolist()),
        status_counts=manifest["status"].value_counts().to_dict(),
        prediction_rows=int(len(preds)),
        lost_alerts=len(expected - set(preds)),
        duplicated_alert_ids=int(preds.duplicated().sum()),
    )
    report["passed"] = bool(report["killed_at_s"] is not None and not report["lost_files"]
                            and not report["duplicated_in_manifest"] and report["lost_alerts"] == 0
                            and report["duplicated_alert_ids"] == 0 and report["prediction_rows"] == n_alerts
                            and report["status_counts"].get("ok", 0) == len(files))
    return report, log


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", choices=["difference", "alerts", "both"], default="both")
    parser.add_argument("--n-pairs", type=int, default=12, help="difference: simulated pairs (default 12)")
    parser.add_argument("--size", type=int, default=512, help="difference: CCD side in pixels (default 512)")
    parser.add_argument("--n-files", type=int, default=16, help="alerts: Avro files in the night (default 16)")
    parser.add_argument("--alerts-per-file", type=int, default=200, help="alerts: per file (default 200)")
    parser.add_argument("--cpus-per-worker", type=int, default=2, help="logical CPUs of each worker node")
    parser.add_argument("--kill-after", type=int, default=2,
                        help="kill worker node 0 once this many outputs (pairs' catalogues, alert files' "
                             "predictions) are written (default 2)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/node_loss.json"))
    args = parser.parse_args(argv)

    from astroray.testing.cluster import LocalCluster

    jobs = {"difference": difference_job, "alerts": alerts_job}
    names = list(jobs) if args.job == "both" else [args.job]
    reports = {}
    for name in names:
        work = Path(tempfile.mkdtemp(prefix=f"node-loss-{name}-"))
        t0 = time.time()
        with LocalCluster(n_workers=2, cpus_per_worker=args.cpus_per_worker) as cluster:
            start_s = round(time.time() - t0, 1)
            report, log = jobs[name](args, cluster, work)
        report.update(nodes=3, cluster_start_s=start_s)
        reports[name] = report
        print(json.dumps(report, indent=2, default=str))
        if not report["passed"]:
            print(log[-4000:], file=sys.stderr)
    passed = all(r["passed"] for r in reports.values())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"passed": passed, **reports}, indent=2, default=str))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
