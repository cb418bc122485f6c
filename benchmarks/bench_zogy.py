"""Time astroray's differencing and its peers on the same simulated pair, in one run.

Usage::

    python benchmarks/bench_zogy.py --size 4096 --device cpu
    python benchmarks/bench_zogy.py --size 4096 --device gpu --peers sfft --peer-warmup 1

Each method runs in its own child process (fresh memory accounting) on the
same pair, saved once to a temporary folder: a warm-up call (compilation, FFT
plans), then ``--repeat`` timed calls.  Printed and written to
``benchmarks/results/zogy_<device>.json`` (entries keyed by size, so the
2048 and 4096 runs live side by side):

* ``ms``: median wall time per pair (min and all repeats alongside);
* ``peak_mb``: peak resident memory above the loaded inputs (CPU), or the CuPy
  memory pool's peak (GPU);
* ``ratio``: the peer's time over astroray's (above 1: astroray is faster).

Methods:

* ``astroray_zogy``: the Differencer stage on Exposure records, host to host
  (flux ratio given; on the GPU this includes the copies of the inputs in and
  of every output back);
* ``astroray_zogy_fit``: the same, fitting F_n/F_r from matched stars;
* ``astroray_zogy_kernel``: the ZOGY kernel with the data already where it
  computes (on the GPU: device arrays, no copies);
* ``astroray_zogy_gpu_copies``: GPU only, inputs in pinned host memory, D and
  S_corr copied back to pinned host memory: the "including copies" figure;
* ``astroray_classic``: the classic difference;
* ``sfft``: Hu et al. (2022), Customized packet core (``GeneralSFFTSubtract.GSS``,
  kernel half-width 8, polynomial orders 2; NumPy back end on the CPU, CuPy on
  the GPU), compilation excluded;
* ``properimage``: ``properimage.operations.subtract`` (ZOGY, CPU only), with
  its Gaussian-fitted PSFs and without the flux-scale and shift optimisation
  (``beta=False, shift=False``), i.e. its quickest ZOGY.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------- the pair


def gaussian_stamp(sigma, size=25, dy=0.0, dx=0.0):
    yy, xx = np.indices((size, size), dtype=np.float64) - size // 2
    p = np.exp(-0.5 * ((xx - dx) ** 2 + (yy - dy) ** 2) / sigma ** 2)
    return p / p.sum()


def make_pair(size: int, seed: int = 0, *, sigma_r=1.5, sigma_n=2.1, sky_r=100.0, sky_n=150.0,
              flux_ratio=1.1, stars_per_mpix=250, n_transients=200, transient_snr=(10.0, 30.0)):
    """A background-subtracted pair on one grid: stars, transients, sky + source noise."""
    rng = np.random.default_rng(seed)
    n_stars = int(stars_per_mpix * size * size / 1e6)
    half = 12
    ys = rng.uniform(half, size - half - 1, n_stars)
    xs = rng.uniform(half, size - half - 1, n_stars)
    flux = 10 ** rng.uniform(3.0, 5.5, n_stars)
    ty = rng.uniform(half, size - half - 1, n_transients)
    tx = rng.uniform(half, size - half - 1, n_transients)
    # S/N against the science sky alone; the reference noise lowers it a little in D.
    tflux = rng.uniform(*transient_snr, n_transients) * math.sqrt(sky_n * 4 * math.pi * sigma_n ** 2)
    model_r = np.zeros((size, size), np.float64)
    model_n = np.zeros((size, size), np.float64)
    for y, x, f, img, s in [(y, x, f, model_r, sigma_r) for y, x, f in zip(ys, xs, flux)] + \
            [(y, x, f * flux_ratio, model_n, sigma_n) for y, x, f in zip(ys, xs, flux)] + \
            [(y, x, f, model_n, sigma_n) for y, x, f in zip(ty, tx, tflux)]:
        iy, ix = int(round(y)), int(round(x))
        img[iy - half:iy + half + 1, ix - half:ix + half + 1] += f * gaussian_stamp(s, 2 * half + 1, y - iy, x - ix)
    var_r = (sky_r + model_r).astype(np.float32)
    var_n = (sky_n + model_n).astype(np.float32)
    R = (model_r + rng.standard_normal((size, size)) * np.sqrt(var_r)).astype(np.float32)
    N = (model_n + rng.standard_normal((size, size)) * np.sqrt(var_n)).astype(np.float32)
    return dict(R=R, N=N, VR=var_r, VN=var_n, Pr=gaussian_stamp(sigma_r).astype(np.float32),
                Pn=gaussian_stamp(sigma_n).astype(np.float32), flux_ratio=flux_ratio,
                n_stars=n_stars, n_transients=n_transients,
                truth={"star_y": ys, "star_x": xs, "star_flux": flux, "y": ty, "x": tx, "flux": tflux})


def validate(size, seeds, device, *, snr=(4.0, 16.0)):
    """Statistics of S_corr, detections and photometry on simulated pairs with known truth."""
    from scipy import ndimage
    from scipy.stats import norm

    from astroray.imaging.difference import DifferenceConfig, Differencer

    diff = Differencer(DifferenceConfig(method="zogy", device=device))
    rows = []
    for seed in seeds:
        n_tr = max(50, size * size // 16000)
        pair = make_pair(size, seed, n_transients=n_tr, transient_snr=snr)
        truth = pair["truth"]
        ref, sci = _exposures(pair)
        res = diff.run(ref, sci)
        sc = res.score
        # Off-source: farther than 4 sigma_n + 6 px from every star and transient.
        near = np.zeros(sc.shape, bool)
        for ys, xs, r in ((truth["star_y"], truth["star_x"], 14), (truth["y"], truth["x"], 14)):
            iy, ix = np.round(ys).astype(int), np.round(xs).astype(int)
            near[np.clip(iy, 0, size - 1), np.clip(ix, 0, size - 1)] = True
        near = ndimage.binary_dilation(near, structure=np.ones((3, 3), bool), iterations=14)
        off = ~near
        off[:16], off[-16:], off[:, :16], off[:, -16:] = False, False, False, False
        s_off = sc[off].astype(np.float64)
        # False detections: connected regions above 5 sigma lying wholly off-source.
        labels, n_blobs = ndimage.label((sc > 5) & off)
        # Gaussian expectation: pixels above 5 sigma, and blobs from the Euler characteristic
        # density of a smooth 2-D Gaussian field, rho(u) = lambda u exp(-u^2/2) / (2 pi)^(3/2),
        # lambda = sqrt(var(dS/dx) var(dS/dy)) measured on the off-source field.
        gy, gx = np.gradient(sc.astype(np.float64))
        lam = math.sqrt(float(gx[off].var()) * float(gy[off].var()))
        area = int(off.sum())
        expected_blobs = area * lam * 5 * math.exp(-12.5) / (2 * math.pi) ** 1.5
        # Completeness and photometry of the injected transients (forced at the true positions).
        f, e = res.flux_at(truth["y"], truth["x"])
        snr_true = truth["flux"] / e
        iy, ix = np.round(truth["y"]).astype(int), np.round(truth["x"]).astype(int)
        found = np.array([sc[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3].max() >= 5 for y, x in zip(iy, ix)])
        # Blends of two transients are not what PSF photometry of one source is judged on.
        from scipy.spatial import cKDTree

        isolated = np.ones(f.shape, bool)
        for i, j in cKDTree(np.c_[truth["y"], truth["x"]]).query_pairs(10.0):
            isolated[[i, j]] = False
        bright = (snr_true >= 7) & isolated
        pulls = ((f - truth["flux"]) / e)[isolated]
        rows.append({
            "seed": seed,
            "score_off_mean": round(float(s_off.mean()), 4),
            "score_off_std": round(float(s_off.std()), 4),
            "off_pixels": area,
            "pixels_above_5": int((sc[off] > 5).sum()),
            "pixels_above_5_expected": round(area * norm.sf(5), 2),
            "pixels_above_4": int((sc[off] > 4).sum()),
            "pixels_above_4_expected": round(area * norm.sf(4), 1),
            "false_detections_5sigma": int(n_blobs),
            "false_detections_5sigma_expected": round(expected_blobs, 2),
            "transients_snr_ge_7": int(bright.sum()),
            "transients_blended_excluded": int((~isolated).sum()),
            "completeness_snr_ge_7": round(float(found[bright].mean()), 4),
            "flux_bias_mean": round(float(np.mean(f[bright] / truth["flux"][bright] - 1)), 5),
            "flux_bias_err": round(float(np.std(f[bright] / truth["flux"][bright]) / math.sqrt(bright.sum())), 5),
            "pull_mean": round(float(pulls.mean()), 4),
            "pull_std": round(float(pulls.std()), 4),
            "flux_ratio_fitted": round(res.flux_ratio, 5),
            "flux_ratio_true": pair["flux_ratio"],
        })
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def save_pair(pair: dict, folder: Path) -> None:
    for k, v in pair.items():
        if isinstance(v, np.ndarray):
            np.save(folder / f"{k}.npy", v)
    meta = {k: v for k, v in pair.items() if not isinstance(v, (np.ndarray, dict))}
    (folder / "meta.json").write_text(json.dumps(meta))


def load_pair(folder: Path) -> dict:
    pair = json.loads((folder / "meta.json").read_text())
    for f in folder.glob("*.npy"):
        pair[f.stem] = np.load(f)
    return pair


# --------------------------------------------------------------------------- methods


def _exposures(pair):
    from astroray.records import Exposure

    zero = np.zeros(pair["R"].shape, np.uint32)
    return (Exposure(pair["R"], pair["VR"], zero, pair["Pr"], meta={"exposure_id": "ref"}),
            Exposure(pair["N"], pair["VN"], zero, pair["Pn"], meta={"exposure_id": "sci"}))


def setup_astroray_zogy(pair, device, fit=False):
    from astroray.imaging.difference import DifferenceConfig, Differencer

    ref, sci = _exposures(pair)
    diff = Differencer(DifferenceConfig(method="zogy", device=device,
                                        flux_ratio=None if fit else pair["flux_ratio"]))
    return lambda: diff.run(ref, sci)


def setup_astroray_zogy_fit(pair, device):
    return setup_astroray_zogy(pair, device, fit=True)


def setup_astroray_classic(pair, device):
    from astroray.imaging.difference import DifferenceConfig, Differencer

    ref, sci = _exposures(pair)
    diff = Differencer(DifferenceConfig(method="classic", device=device))
    return lambda: diff.run(ref, sci)


def setup_astroray_zogy_kernel(pair, device):
    from astroray.kernels.backend import get_xp
    from astroray.kernels.difference.common import FourierBackend
    from astroray.kernels.difference.zogy import zogy

    xp = get_xp(device)
    R, N, VR, VN = (xp.asarray(pair[k]) for k in ("R", "N", "VR", "VN"))
    fb = FourierBackend(xp)
    return lambda: zogy(R, N, pair["Pr"], pair["Pn"], flux_ratio=pair["flux_ratio"], variance_reference=VR,
                        variance_science=VN, backend=fb)


def setup_astroray_zogy_gpu_copies(pair, device):
    from astroray.kernels.difference.gpu import HostDeviceZogy

    runner = HostDeviceZogy(pair["R"].shape, pair["Pr"], pair["Pn"])
    host = runner.host_inputs()
    for k in ("R", "N", "VR", "VN"):
        host[k][...] = pair[k]  # an I/O stage would read straight into these pinned buffers
    return lambda: runner.run(flux_ratio=pair["flux_ratio"])


def setup_sfft(pair, device):
    from sfft.sfftcore.SFFTConfigure import SingleSFFTConfigure
    from sfft.sfftcore.SFFTSubtract import GeneralSFFTSubtract

    backend = "Cupy" if device == "gpu" else "Numpy"
    threads = os.cpu_count() or 1
    # sfft's NumPy back end peaked at 18.4 GB of RSS on a 2048^2 pair (float64 design matrices);
    # it scales with the pixels.  Refuse up front rather than let the OOM killer pick a process.
    need_gb = 18.4 * pair["R"].size / 2048 ** 2
    have_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    if device == "cpu" and need_gb > 0.9 * have_gb:
        raise MemoryError(f"sfft (NumPy back end) would need about {need_gb:.0f} GB here "
                          f"(18.4 GB measured at 2048x2048); this machine has {have_gb:.0f} GB")
    # sfft convolves the sharper image (the reference here) and works in float64, x-major.
    I = np.ascontiguousarray(pair["R"].T, np.float64)
    J = np.ascontiguousarray(pair["N"].T, np.float64)
    cfg = SingleSFFTConfigure.SSC(NX=I.shape[0], NY=I.shape[1], KerHW=8, KerPolyOrder=2, BGPolyOrder=2,
                                  ConstPhotRatio=True, BACKEND_4SUBTRACT=backend,
                                  NUM_CPU_THREADS_4SUBTRACT=threads, VERBOSE_LEVEL=0)

    def run():
        return GeneralSFFTSubtract.GSS(PixA_I=I, PixA_J=J, PixA_mI=I, PixA_mJ=J, SFFTConfig=cfg,
                                       ContamMask_I=None, BACKEND_4SUBTRACT=backend,
                                       NUM_CPU_THREADS_4SUBTRACT=threads, VERBOSE_LEVEL=0)
    return run


def setup_properimage(pair, device):
    import logging

    from properimage import operations

    logging.getLogger("properimage").setLevel(logging.WARNING)
    R = pair["R"].astype(np.float64)
    N = pair["N"].astype(np.float64)
    return lambda: operations.subtract(R, N, align=False, beta=False, shift=False, iterative=False,
                                       fitted_psf=True)


METHODS = {
    "astroray_zogy": setup_astroray_zogy,
    "astroray_zogy_fit": setup_astroray_zogy_fit,
    "astroray_zogy_kernel": setup_astroray_zogy_kernel,
    "astroray_zogy_gpu_copies": setup_astroray_zogy_gpu_copies,
    "astroray_classic": setup_astroray_classic,
    "sfft": setup_sfft,
    "properimage": setup_properimage,
}


# --------------------------------------------------------------------------- timing in a child


def _rss_mb() -> float:
    # ru_maxrss: kilobytes on Linux, bytes on macOS.
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20


def _child(name, folder, device, repeat, warmup, queue):
    try:
        pair = load_pair(Path(folder))
        run = METHODS[name](pair, device)
        sync = _gpu_sync if device == "gpu" else (lambda: None)
        base = _rss_mb()  # inputs loaded and set up; what the runs add on top is their peak
        pool = _gpu_pool_reset() if device == "gpu" else None
        for _ in range(warmup):
            run()
            sync()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run()
            sync()
            times.append(1e3 * (time.perf_counter() - t0))
        peak = _gpu_pool_peak(pool) if device == "gpu" else _rss_mb() - base
        queue.put({"ms": float(np.median(times)), "ms_min": float(min(times)), "ms_all": [round(t, 2) for t in times],
                   "peak_mb": round(float(peak), 1), "peak_rss_mb": round(_rss_mb(), 1)})
    except Exception as exc:  # report, never hang the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]})


def _gpu_sync():
    import cupy

    cupy.cuda.Device().synchronize()


def _gpu_pool_reset():
    import cupy

    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    return pool


def _gpu_pool_peak(pool) -> float:
    return pool.total_bytes() / 2 ** 20


def time_method(name, folder, device, repeat, warmup, timeout):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, str(folder), device, repeat, warmup, queue))
    proc.start()
    t0 = time.monotonic()
    out = None
    while out is None:
        try:
            out = queue.get(timeout=2.0)
        except Exception:
            if not proc.is_alive():  # died without reporting: killed, most likely for memory
                code = proc.exitcode
                why = " (SIGKILL: out of memory?)" if code == -9 else ""
                out = {"error": f"child process died with exit code {code}{why}"}
            elif time.monotonic() - t0 > timeout:
                out = {"error": f"timed out after {timeout} s"}
    proc.join(timeout=10)
    if proc.is_alive():
        proc.terminate()
    return out


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per astroray method")
    ap.add_argument("--peer-repeat", type=int, default=1, help="timed calls per peer (they are slow)")
    ap.add_argument("--peer-warmup", type=int, default=0,
                    help="untimed calls per peer first (sfft's CuPy back end compiles its kernels in its first call)")
    ap.add_argument("--methods", default="astroray_zogy,astroray_zogy_fit,astroray_zogy_kernel,astroray_classic",
                    help="astroray methods, comma-separated")
    ap.add_argument("--peers", default="sfft,properimage", help="peers, comma-separated ('' for none)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per method")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/zogy_<device>.json)")
    ap.add_argument("--merge", action="store_true",
                    help="merge into the saved results of this size instead of replacing them")
    ap.add_argument("--validate", type=int, default=0, metavar="N",
                    help="instead of timing: N simulated pairs checked against their truth "
                         "(S_corr statistics, false 5-sigma detections, completeness, flux bias, pulls)")
    args = ap.parse_args(argv)
    if args.validate:
        rows = validate(args.size, range(args.seed, args.seed + args.validate), args.device)
        report = {"benchmark": "zogy_validation", "size": args.size, "device": args.device, "pairs": rows,
                  "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        print(json.dumps(report, indent=2))
        out = args.out or RESULTS / f"zogy_validation_{args.device}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        existing = json.loads(out.read_text()) if out.is_file() else {}
        existing[str(args.size)] = report
        out.write_text(json.dumps(existing, indent=2) + "\n")
        return 0

    methods = [m for m in args.methods.split(",") if m]
    if args.device == "gpu" and "astroray_zogy_gpu_copies" not in methods:
        methods.append("astroray_zogy_gpu_copies")
    peers = [p for p in args.peers.split(",") if p]
    if args.device == "gpu" and "properimage" in peers:
        peers.remove("properimage")  # CPU only
    unknown = [m for m in methods + peers if m not in METHODS]
    if unknown:
        ap.error(f"unknown methods {unknown}; known: {sorted(METHODS)}")

    t0 = time.perf_counter()
    pair = make_pair(args.size, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        save_pair(pair, Path(tmp))
        results = {}
        for name in methods + peers:
            is_peer = name in peers
            results[name] = time_method(name, tmp, args.device, args.peer_repeat if is_peer else args.repeat,
                                        args.peer_warmup if is_peer else 1, args.timeout)
            print(f"# {name}: {results[name].get('ms', results[name].get('error'))}", file=sys.stderr, flush=True)
    ours = results.get("astroray_zogy", {}).get("ms")
    for name in peers:
        if ours and "ms" in results[name]:
            results[name]["ratio"] = round(results[name]["ms"] / ours, 2)
    report = {
        "benchmark": "zogy",
        "size": args.size,
        "device": args.device,
        "pair": {"n_stars": pair["n_stars"], "n_transients": pair["n_transients"], "psf_sigma": [1.5, 2.1],
                 "dtype": "float32"},
        "ratio_is": "peer ms / astroray_zogy ms",
        "machine": _machine(args.device),
        "results": results,
        "wall_s": round(time.perf_counter() - t0, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(report, indent=2))
    out = args.out or RESULTS / f"zogy_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(out.read_text()) if out.is_file() else {}
    if args.merge and str(args.size) in existing:
        # Keep the methods this run did not time (e.g. slow peers timed earlier on the same pair).
        merged = {**existing[str(args.size)]["results"], **results}
        ours = merged.get("astroray_zogy", {}).get("ms")
        for name, r in merged.items():
            if not name.startswith("astroray") and ours and "ms" in r:
                r["ratio"] = round(r["ms"] / ours, 2)
        report["results"] = merged
    existing[str(args.size)] = report
    out.write_text(json.dumps(existing, indent=2) + "\n")
    return 0


def _machine(device):
    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    try:
        import scipy

        info.update(numpy=np.__version__, scipy=scipy.__version__)
    except Exception:
        pass
    if device == "gpu":
        try:
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(0)
            info.update(gpu=props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
                        cupy=cupy.__version__)
        except Exception as exc:
            info["gpu_error"] = str(exc)
    return info


if __name__ == "__main__":
    sys.exit(main())
