"""The deblending trees of a difference's detections: the CPU twin, the CUDA kernel, and the two together.

    python benchmarks/bench_deblend.py --size 4096 --device gpu
    python benchmarks/bench_deblend.py --size 2048 --device cpu

One simulated pair (``simulate_pair``: stars, transients, streaks, cosmic rays) goes through the image
pipeline's background and difference stages on ``--device``; its score image is thresholded as the
pipeline's detection does (5 sigma absolute, at least 3 pixels, both signs, flagged pixels zeroed), and
the deblending trees (SExtractor's: 32 levels, mincont 0.005) of every object are built by:

* ``cpu``: the CPU twin (one core; on the GPU run, on host copies of the pixel lists);
* ``cuda``: the CUDA kernel alone, one thread per object (GPU only);
* ``split``: :func:`~astroray.kernels.extract.deblend.deblend_trees` on the GPU: the largest objects built
  on the host while the kernel builds the others' (GPU only);
* ``largest_cpu``, ``largest_cuda``: the largest object alone on each; their ratio is the slowdown of one
  CUDA thread against one core (``CUDA_THREAD_SLOWDOWN`` in ``kernels/extract/deblend.py``, which chooses
  the host's share).

Each is timed ``--repeat`` times after a warm-up (compilation); ``ms`` is the median.  Also reported: the
object sizes (count, largest, 99th percentile), the host's share, and whether the CUDA kernel's and the
split's seeds equal the CPU twin's.  JSON to ``benchmarks/results/deblend_<device>.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
OPTS = dict(nthresh=32, mincont=0.005, min_area=3)  # the pipeline's detection (ImagePipelineConfig.detection)


def _pixel_lists(size: int, seed: int, device: str):
    """The pipeline's detections on the score image of one simulated pair, per sign: (pixels, thresh, peak)."""
    from astroray.datasets import ImagePairConfig, simulate_pair
    from astroray.imaging.pipeline import ImagePipeline, ImagePipelineConfig
    from astroray.kernels.extract.detect import detect
    from astroray.kernels.extract.measure import segment_max_first

    pipeline = ImagePipeline(ImagePipelineConfig(device=device))
    xp = pipeline.xp
    pair = simulate_pair(ImagePairConfig(shape=(size, size)), seed=seed, index=0)
    ref, sci = pipeline.subtract_background(pair.reference), pipeline.subtract_background(pair.science)
    diff = pipeline.differencer.run(ref, sci)
    cfg = pipeline.config.detection
    bad = sci.mask != 0
    out = []
    for sign in (1, -1):
        data = xp.where(bad, xp.float32(0), (sign * diff.score).astype(xp.float32))
        det = detect(data, threshold=cfg.threshold, relative=False, mask=bad, kernel=None, min_area=cfg.min_area)
        px = det.pixels
        peak, _ = segment_max_first(px.cvalue, px.obj, px.n_objects)
        out.append((px, det.object_thresh, peak))
    return xp, out


def _timed(fn, repeat: int, sync) -> tuple[float, object]:
    result = fn()  # warm-up: compilation, memory pools
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        sync()
        times.append(1e3 * (time.perf_counter() - t0))
    return round(statistics.median(times), 2), result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="CCD side in pixels (LSST: 4096)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON (default benchmarks/results/deblend_<device>.json)")
    args = parser.parse_args(argv)

    from astroray.kernels.backend import device_synchronize, to_numpy
    from astroray.kernels.extract import deblend as db

    t0 = time.perf_counter()
    xp, signs = _pixel_lists(args.size, args.seed, args.device)

    def sync():
        device_synchronize(xp)

    report = {"benchmark": "deblend", "size": args.size, "device": args.device, "seed": args.seed, **OPTS,
              "cuda_thread_slowdown": db.CUDA_THREAD_SLOWDOWN, "signs": {}}
    for sign, (px, thresh, peak) in zip(("positive", "negative"), signs):
        counts = to_numpy(px.count)
        row = {"objects": int(px.n_objects), "pixels": int(counts.sum()),
               "largest": int(counts.max()) if counts.size else 0,
               "p99": float(np.percentile(counts, 99)) if counts.size else 0.0}
        if px.n_objects == 0:
            report["signs"][sign] = row
            continue
        largest = np.array([int(np.argmax(counts))])
        row["cpu_ms"], cpu = _timed(lambda: db.seed_trees_cpu(px, thresh, peak, **OPTS), args.repeat, sync)
        row["largest_cpu_ms"], _ = _timed(lambda: db.seed_trees_cpu(*_only(px, thresh, peak, largest), **OPTS),
                                          args.repeat, sync)
        if args.device == "gpu":
            row["cuda_ms"], cuda = _timed(lambda: db.seed_trees_cuda(px, thresh, peak, **OPTS), args.repeat, sync)
            host = db.host_share(counts)
            row["host_objects"], row["host_pixels"] = int(host.size), int(counts[host].sum())
            row["split_ms"], split = _timed(lambda: db.deblend_trees(px, thresh, peak, backend="cuda", **OPTS),
                                            args.repeat, sync)
            row["largest_cuda_ms"], _ = _timed(lambda: db.seed_trees_cuda(*_only(px, thresh, peak, largest), **OPTS),
                                               args.repeat, sync)
            row["measured_slowdown"] = round(row["largest_cuda_ms"] / max(row["largest_cpu_ms"], 1e-3), 1)
            row["cuda_equals_cpu"] = _equal(cuda, cpu, px)
            row["split_equals_cpu"] = _equal(split, cpu, px)
            row["speedup_split_vs_cuda"] = round(row["cuda_ms"] / row["split_ms"], 2)
        report["signs"][sign] = row
        print(sign, json.dumps(row), flush=True)
    report["machine"] = _machine(args.device)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    report["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(json.dumps(report, indent=2))
    out = args.out or RESULTS / f"deblend_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _only(px, thresh, peak, objects):
    """The pixel list of ``objects`` alone, with their thresholds and peaks."""
    from astroray.kernels.backend import array_module_of, to_numpy
    from astroray.kernels.extract.deblend import _objects_subset

    xp = array_module_of(px.x)
    sub, _ = _objects_subset(px, objects, to_numpy(px.start).astype(np.int64), to_numpy(px.count).astype(np.int64),
                             xp)
    sel = xp.asarray(objects)
    return sub, thresh[sel], peak[sel]


def _equal(a, b, px) -> bool:
    """Same seeds: counts per object, seed of every pixel, and the level of every seed."""
    from astroray.kernels.backend import to_numpy

    nseeds_a, nseeds_b = to_numpy(a.nseeds), to_numpy(b.nseeds)
    if not (np.array_equal(nseeds_a, nseeds_b) and np.array_equal(to_numpy(a.seed_of_pixel),
                                                                    to_numpy(b.seed_of_pixel))):
        return False
    starts = to_numpy(px.start).astype(np.int64)
    slots = np.concatenate([s + np.arange(k) for s, k in zip(starts, nseeds_a.astype(np.int64))] +
                           [np.zeros(0, np.int64)])
    return bool(np.array_equal(to_numpy(a.seed_level)[slots], to_numpy(b.seed_level)[slots]))


def _machine(device: str) -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "numpy": np.__version__}
    if device == "gpu":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        info.update(gpu=props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
                    cupy=cupy.__version__)
    return info


if __name__ == "__main__":
    raise SystemExit(main())
