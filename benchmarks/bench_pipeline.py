"""Throughput of the whole image pipeline on Ray Data: simulated CCD pairs -> alerts.

Times `jobs/difference.py`'s path (astroray.ray.image_job.run_pairs) on N
simulated pairs and reports pairs/s, the extrapolated time for one LSST visit
(189 CCDs) at this scale-out, and the per-stage time inside one pair.

    python benchmarks/bench_pipeline.py --n-pairs 8 --size 2048 --actors 2 --device cpu
"""
import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd



def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-pairs", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048, help="CCD side in pixels (LSST: 4096)")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu")
    parser.add_argument("--gpus-per-actor", type=float, default=0.0)
    parser.add_argument("--method", choices=("zogy", "classic"), default="zogy")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/pipeline_<device>.json)")
    args = parser.parse_args(argv)

    import ray

    from astroray.datasets import write_images
    from astroray.ray.image_job import DifferenceJobConfig, pairs_in_folder, run_pairs

    work = Path(tempfile.mkdtemp(prefix="astroray-bench-"))
    write_images(args.n_pairs, work, config={"shape": (args.size, args.size)}, seed=1)
    manifest = pairs_in_folder(work)
    # merged into the defaults, so the pipeline's other difference settings (registration noise) stay
    cfg = DifferenceJobConfig().with_updates(num_actors=args.actors, num_gpus_per_actor=args.gpus_per_actor,
                                             write_difference=False,
                                             pipeline={"device": args.device, "difference": {"method": args.method}})
    ray.init(include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()
    status = run_pairs(manifest, work / "out", cfg, progress=False)
    wall = time.perf_counter() - t0
    ok = status[status["status"] == "ok"]
    result = {
        "benchmark": "pipeline", "device": args.device, "method": args.method, "size": args.size,
        "n_pairs": args.n_pairs, "actors": args.actors, "n_ok": len(ok),
        "wall_s": round(wall, 3), "pairs_per_s": round(args.n_pairs / wall, 3),
        "median_ms_per_pair_in_actor": round(float(ok["ms"].median()), 1) if len(ok) else None,
        "median_stage_ms": (pd.DataFrame([json.loads(v) for v in ok["stage_ms"]]).median().round(1).to_dict()
                            if len(ok) else {}),
        "lsst_visit_189_ccds_s_at_this_scale_out": round(189 * wall / args.n_pairs, 1),
        "alerts": int(status["n_alerts"].fillna(0).sum()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "note": "wall time includes actor start-up; 4096 px pairs are the LSST CCD size",
    }
    out = Path(args.out or Path(__file__).parent / "results" / f"pipeline_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
