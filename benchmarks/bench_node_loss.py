"""A worker node lost mid-job: the image job still accounts for every input exactly once.

Starts a real three-node Ray cluster on this machine (a head without CPUs and
two worker nodes, each its own ``ray start`` process group), runs
``jobs/difference.py`` on simulated pairs as a driver joined through
``RAY_ADDRESS``, SIGKILLs one worker node once some pairs are written, and
checks the outputs: every input pair in the manifest exactly once, its status
ok (the pairs on the lost node are retried on the survivor), one catalogue and
one alert file per ok pair, and no alert id twice.

    python benchmarks/bench_node_loss.py                      # 12 pairs of 512 px
    python benchmarks/bench_node_loss.py --n-pairs 24 --size 1024

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-pairs", type=int, default=12, help="simulated pairs (default 12)")
    parser.add_argument("--size", type=int, default=512, help="CCD side in pixels (default 512)")
    parser.add_argument("--cpus-per-worker", type=int, default=2, help="logical CPUs of each worker node")
    parser.add_argument("--kill-after", type=int, default=2,
                        help="kill worker node 0 once this many pairs have catalogue files (default 2)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/node_loss.json"))
    args = parser.parse_args(argv)

    import pandas as pd

    from astroray.datasets import write_simulated
    from astroray.datasets.writers import SIMULATORS, resolve_config
    from astroray.testing.cluster import LocalCluster

    work = Path(tempfile.mkdtemp(prefix="node-loss-"))
    inputs, out = work / "pairs", work / "out"
    config = resolve_config(None, SIMULATORS["images"]).with_updates(shape=(args.size, args.size))
    write_simulated("images", n=args.n_pairs, out_dir=inputs, seed=7, config=config)
    job_config = work / "job.yaml"
    # an actor per logical CPU of the two workers; restarts are on (a joined cluster can lose nodes)
    job_config.write_text(f"num_actors: {2 * args.cpus_per_worker}\n")

    report: dict = dict(n_pairs=args.n_pairs, size=args.size, nodes=3)
    t0 = time.time()
    with LocalCluster(n_workers=2, cpus_per_worker=args.cpus_per_worker) as cluster:
        report["cluster_start_s"] = round(time.time() - t0, 1)
        t1 = time.time()
        job = subprocess.Popen([sys.executable, str(ROOT / "jobs/difference.py"), "--input", str(inputs),
                                "--out", str(out), "--config", str(job_config), "--no-progress"],
                               env=cluster.client_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=ROOT)
        killed_at = None
        while job.poll() is None:
            done = len(list((out / "catalog").glob("*.parquet"))) if (out / "catalog").is_dir() else 0
            if killed_at is None and done >= args.kill_after:
                cluster.kill_worker(0)
                killed_at = time.time() - t1
                report["pairs_done_when_killed"] = done
            time.sleep(0.5)
        log = job.stdout.read()
        report["job_exit_status"] = job.returncode
        report["job_s"] = round(time.time() - t1, 1)
        report["killed_at_s"] = None if killed_at is None else round(killed_at, 1)
        report["nodes_alive_after"] = cluster.alive_nodes()

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
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))
    if not report["passed"]:
        print(log[-4000:], file=sys.stderr)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
