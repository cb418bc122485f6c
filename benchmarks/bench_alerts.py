"""Alerts per second of ``jobs/classify_alerts.py`` (real/bogus + light-curve class + rare event/anomaly), and the
LSST projection: how many cores a night and a visit need.

A night is made from real packets: the ZTF Avro alerts of ``../shared/data/alerts/ztf/avro`` (``--format
ztf-avro``: Avro containers as ZTF distributes them, three gzipped FITS cutouts each) or the ZTF alerts of
Fink's tables (``--format fink-parquet``, 175 distinct alerts), repeated with new alert ids into
``--files`` files of ``--alerts-per-file`` alerts.  Then, in one run:

1. **in process, one core**: read + score the same alerts with one
   :class:`~astroray.models.alert_scoring.AlertScorer` (one torch thread), timed per part (read, real/bogus,
   classifier, rare events): the cost per alert of each;
2. **the job** on a local Ray of ``--cpus`` CPUs (one actor per CPU): end-to-end alerts/s (actor start and
   model loading included) and steady-state alerts/s (alerts over the actors' summed busy time, times the
   actors).

The projection uses the steady-state rate per core: a night of 10 million alerts in 10 hours (278 alerts/s on
average) and the peak of 40,000 alerts from one visit due within 60 s (667 alerts/s).

    python benchmarks/bench_alerts.py --config MY.yaml            # the models of MY.yaml's scorer section
    python benchmarks/bench_alerts.py --n-alerts 20000 --cpus 2 --format fink-parquet

``--config``: a ``configs/classify_alerts.yaml``-style file (the models and their stores; default: the champions
of ``$ASTRORAY_HOME``).  Writes ``benchmarks/results/alerts_<format>.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "alerts"
NIGHT_ALERTS = 10_000_000
NIGHT_HOURS = 10.0
VISIT_ALERTS = 40_000
VISIT_DEADLINE_S = 60.0


def _ztf_avro_night(folder: Path, n_files: int, per_file: int) -> int:
    """ZTF Avro containers of the real packets with new candids (ZTF's own schema, as distributed)."""
    import fastavro

    packets, schema = [], None
    for path in sorted((SHARED / "ztf" / "avro").glob("*.avro")):
        with open(path, "rb") as fh:
            reader = fastavro.reader(fh)
            schema = schema or reader.writer_schema
            packets += list(reader)
    n = 0
    for f in range(n_files):
        records = []
        for i in range(per_file):
            rec = dict(packets[(f * per_file + i) % len(packets)])
            candid = 9_000_000_000_000_000 + n
            rec["candid"] = candid
            rec["candidate"] = {**rec["candidate"], "candid": candid}
            rec["objectId"] = f"ZTF99bench{n:08d}"
            records.append(rec)
            n += 1
        with open(folder / f"night_{f:05d}.avro", "wb") as out:
            fastavro.writer(out, schema, records, codec="null")
    return n


def _fink_night(folder: Path, n_files: int, per_file: int) -> int:
    """Fink's ZTF alert tables with new candids (the real rows, repeated)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parts = [SHARED / "fink" / "alerts.parquet", *sorted((SHARED / "fink" / "datatest").glob("*.parquet"))]
    tables = [pq.read_table(p) for p in parts]
    common = set.intersection(*(set(t.column_names) for t in tables))
    base = pa.concat_tables([t.select([c for c in tables[0].column_names if c in common]) for t in tables],
                            promote_options="permissive")
    n = 0
    for f in range(n_files):
        idx = pa.array([(f * per_file + i) % base.num_rows for i in range(per_file)])
        t = base.take(idx)
        candids = pa.array([9_000_000_000_000_000 + n + i for i in range(per_file)], pa.int64())
        if "candid" in t.column_names:
            t = t.set_column(t.column_names.index("candid"), "candid", candids.cast(t.schema.field("candid").type))
        cand = t.column("candidate").combine_chunks()
        fields = [cand.field(i) for i in range(cand.type.num_fields)]
        names = [cand.type.field(i).name for i in range(cand.type.num_fields)]
        fields[names.index("candid")] = candids.cast(cand.type.field("candid").type)
        t = t.set_column(t.column_names.index("candidate"), "candidate", pa.StructArray.from_arrays(fields, names))
        t = t.set_column(t.column_names.index("objectId"), "objectId",
                         pc.binary_join_element_wise(pa.array(["ZTF99bench"] * per_file), pa.array(
                             [f"{n + i:08d}" for i in range(per_file)]), ""))
        pq.write_table(t, folder / f"night_{f:05d}.parquet")
        n += per_file
    return n


def _in_process(files: list[Path], scorer_config: dict, batch_size: int) -> dict:
    """Read and score every file in this process on one core; per-part seconds per alert."""
    import torch

    from astroray.io import read_alerts
    from astroray.models.alert_scoring import AlertScorer

    torch.set_num_threads(1)
    scorer = AlertScorer({**scorer_config, "threads": 1})
    scorer.run(read_alerts(files[0])[:batch_size])  # warm: first passes allocate
    parts = {"read": 0.0}
    n = 0
    t0 = time.perf_counter()
    for path in files:
        t = time.perf_counter()
        alerts = read_alerts(path)
        parts["read"] += time.perf_counter() - t
        for i in range(0, len(alerts), batch_size):
            res = scorer.run(alerts[i:i + batch_size])
            for k, ms in res.timings_ms.items():
                parts[k] = parts.get(k, 0.0) + ms / 1e3
        n += len(alerts)
    wall = time.perf_counter() - t0
    return {"alerts": n, "seconds": round(wall, 3), "alerts_per_second_one_core": round(n / wall, 1),
            "ms_per_alert": {k: round(v / n * 1e3, 4) for k, v in parts.items()},
            "models": scorer.models()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="classify_alerts config YAML (the models; default champions)")
    parser.add_argument("--format", choices=["ztf-avro", "fink-parquet"], default="ztf-avro")
    parser.add_argument("--n-alerts", type=int, default=20_000, help="alerts in the night (default 20,000)")
    parser.add_argument("--alerts-per-file", type=int, default=500)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (one actor each; default 2)")
    parser.add_argument("--in-process-files", type=int, default=4, help="files scored in process (default 4)")
    parser.add_argument("--out", default=None, help="result JSON (default benchmarks/results/alerts_<format>.json)")
    args = parser.parse_args(argv)

    import pyarrow.parquet as pq

    from astroray.config import load_config
    from astroray.ray.alerts_job import ClassifyAlertsConfig, classify_alerts, pinned_alert_scorer
    from astroray.ray.runtime import ensure_ray

    cfg = load_config(args.config, ClassifyAlertsConfig)
    work = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    night = work / "night"
    night.mkdir()
    n_files = max(1, math.ceil(args.n_alerts / args.alerts_per_file))
    make = _ztf_avro_night if args.format == "ztf-avro" else _fink_night
    n_alerts = make(night, n_files, args.alerts_per_file)
    files = sorted(night.iterdir())
    size_mb = sum(p.stat().st_size for p in files) / 2**20
    print(f"night: {n_alerts} alerts in {len(files)} {args.format} files ({size_mb:.0f} MB) under {night}")

    scorer_config, models = pinned_alert_scorer(cfg.scorer)
    report: dict = {"benchmark": "alerts", "format": args.format, "n_alerts": n_alerts, "n_files": len(files),
                    "input_mb": round(size_mb, 1), "models": models,
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "platform": platform.platform(), "load_avg_start": os.getloadavg()}}
    one = _in_process(files[:args.in_process_files], scorer_config.model_dump(mode="json"), cfg.batch_size)
    report["in_process_one_core"] = one
    print(f"one core, in process: {one['alerts_per_second_one_core']:.0f} alerts/s; ms per alert "
          f"{one['ms_per_alert']}")

    ensure_ray(num_cpus=args.cpus)
    job_cfg = cfg.with_updates(num_actors=args.cpus, cpus_per_actor=1.0)
    out = work / "out"
    summary = classify_alerts(night, out, job_cfg, progress=True)
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    busy_s = sum(r["ms"] for r in manifest if r["status"] == "ok") / 1e3
    steady = summary["alerts_scored"] / busy_s * args.cpus if busy_s > 0 else float("nan")
    per_core = steady / args.cpus
    report["job"] = {"cpus": args.cpus, "actors": args.cpus, **{k: summary[k] for k in
                     ("files_ok", "files_quarantined", "files_failed", "alerts_read", "alerts_scored",
                      "alerts_duplicate", "seconds", "alerts_per_second")},
                     "actor_busy_seconds": round(busy_s, 3),
                     "steady_alerts_per_second": round(steady, 1),
                     "steady_alerts_per_second_per_core": round(per_core, 1)}
    report["target"] = {"alerts_per_second_on_2_cores": 1000}
    report["lsst_projection"] = {
        "night_alerts": NIGHT_ALERTS, "night_hours": NIGHT_HOURS,
        "night_mean_alerts_per_second": round(NIGHT_ALERTS / (NIGHT_HOURS * 3600), 1),
        "cores_for_night_mean": math.ceil(NIGHT_ALERTS / (NIGHT_HOURS * 3600) / per_core),
        "visit_alerts": VISIT_ALERTS, "visit_deadline_s": VISIT_DEADLINE_S,
        "cores_for_visit_peak": math.ceil(VISIT_ALERTS / VISIT_DEADLINE_S / per_core),
        "basis": "steady-state alerts/s per core of this run (actor busy time), reading included"}
    report["machine"]["load_avg_end"] = os.getloadavg()
    print(json.dumps({k: report[k] for k in ("job", "lsst_projection")}, indent=2))
    dest = Path(args.out or ROOT / "benchmarks" / "results" / f"alerts_{args.format}.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {dest}")
    shutil.rmtree(work, ignore_errors=True)
    ok = summary["alerts_scored"] == n_alerts and summary["files_ok"] == len(files)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
