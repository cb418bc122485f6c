"""Time astroray's source extraction and SEP on the same simulated star field, in one run.

Usage::

    python benchmarks/bench_extract.py --size 4096 --device cpu
    python benchmarks/bench_extract.py --size 4096 --device gpu

One simulated field (Gaussian stars, power-law fluxes, flat sky, Gaussian
noise; deblending on) is extracted by:

* ``sep``: ``sep.Background`` + ``sep.extract`` on one core (the peer);
* ``sep_catalog``: astroray's ``implementation="sep"`` stage, i.e. SEP plus
  every catalog column astroray adds (apertures, Kron, flux radius, windowed
  positions, isophotal errors);
* ``astroray``: astroray's own array implementation (``implementation="array"``)
  on the device asked for: NumPy on ``--device cpu`` (the GPU algorithm run
  on the CPU), CuPy on ``--device gpu``. On the GPU ``astroray`` starts from a
  device image and ends with the catalog on the host; ``astroray_from_host``
  adds the copy of the image to the device.

Each method gets a warm-up call (compilation) and ``--repeat`` timed calls;
``ms`` is the median. Printed as JSON and written to
``benchmarks/results/extract_<device>.json``:

* ``objects``: number of sources found;
* ``match_fraction``: share of SEP's objects with an astroray object within 0.1 px;
* ``flux_match_fraction``: share of matched objects whose aperture flux (r = 5 px)
  is within 0.5% of SEP's ``sum_circle`` at SEP's position; ``iso_flux_match_fraction``
  the same for the isophotal flux (deblended objects differ there by the random
  sharing of faint pixels, in SEP as in SExtractor);
* ``ratio``: SEP's time over astroray's (above 1: astroray is faster).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _timed(fn, repeat):
    fn()  # warm-up: Numba/CUDA compilation, FFT plans, memory pools
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), times, out


def _match(x, y, rx, ry, radius=0.1):
    from scipy.spatial import cKDTree

    if len(x) == 0:
        return np.zeros(len(rx), dtype=int), np.full(len(rx), np.inf)
    d, i = cKDTree(np.c_[x, y]).query(np.c_[rx, ry])
    return i, d


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--stars", type=int, default=None, help="default: one per 4000 pixels")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import sep

    from astroray.imaging.background import Background, BackgroundConfig
    from astroray.imaging.extraction import ExtractionConfig, SourceExtractor
    from astroray.kernels.extract.testing import star_field

    n_stars = args.stars or max(1, args.size * args.size // 4000)
    image, _ = star_field((args.size, args.size), n_stars, seed=args.seed, sky=100.0, noise=5.0)
    # SEP allocates and initialises its stack of active object pixels on every call: give it
    # the smallest power-of-two multiple of its default that this field needs, not the image size.
    sep.set_extract_pixstack(300000)
    while True:
        try:
            sep.extract(image - np.median(image), args.threshold, err=float(np.std(image)))
            break
        except Exception as exc:
            if "pixel buffer full" not in str(exc):
                raise
            sep.set_extract_pixstack(2 * sep.get_extract_pixstack())

    def run_sep():
        bkg = sep.Background(image, bw=64, bh=64, fw=3, fh=3)
        data = image - bkg.back()
        return sep.extract(data, args.threshold, err=bkg.globalrms), data, bkg.globalrms

    results = {}
    ms, times, (ref, ref_data, ref_rms) = _timed(run_sep, args.repeat)
    results["sep"] = {"ms": round(ms, 2), "times_ms": [round(t, 2) for t in times], "objects": int(len(ref))}

    def stage(impl, device):
        bkg = Background(BackgroundConfig(box_size=64, filter_size=3, device=device, implementation=impl))
        ext = SourceExtractor(ExtractionConfig(threshold=args.threshold, device=device, implementation=impl,
                                               filter_type="conv"))
        return bkg, ext

    bkg_sep, ext_sep = stage("sep", "cpu")
    ms, times, cat_sep = _timed(lambda: ext_sep.run(image, background=bkg_sep.run(image)).catalog, args.repeat)
    results["sep_catalog"] = {"ms": round(ms, 2), "times_ms": [round(t, 2) for t in times],
                              "objects": int(len(cat_sep))}

    bkg_arr, ext_arr = stage("array", args.device)
    if args.device == "gpu":
        import cupy as cp

        dev_image = cp.asarray(image)
        cp.cuda.Device().synchronize()
        ms, times, cat = _timed(lambda: ext_arr.run(dev_image, background=bkg_arr.run(dev_image)).catalog,
                                args.repeat)

        def from_host():
            d = cp.asarray(image)
            return ext_arr.run(d, background=bkg_arr.run(d)).catalog

        ms_h, times_h, _ = _timed(from_host, args.repeat)
        results["astroray_from_host"] = {"ms": round(ms_h, 2), "times_ms": [round(t, 2) for t in times_h]}
    else:
        ms, times, cat = _timed(lambda: ext_arr.run(image, background=bkg_arr.run(image)).catalog, args.repeat)
    results["astroray"] = {"ms": round(ms, 2), "times_ms": [round(t, 2) for t in times], "objects": int(len(cat))}

    idx, dist = _match(cat["x"].to_numpy(), cat["y"].to_numpy(), ref["x"], ref["y"])
    ok = dist < 0.1
    f_ref, _, _ = sep.sum_circle(ref_data, ref["x"], ref["y"], 5.0, err=ref_rms)
    f_ours = cat["flux_aper"].to_numpy()[idx]
    iso_ours = cat["flux"].to_numpy()[idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        aper_ok = np.abs(f_ours / f_ref - 1) < 5e-3
        iso_ok = np.abs(iso_ours / ref["flux"] - 1) < 5e-3
    merged = (ref["flag"] & 1) != 0
    summary = {
        "benchmark": "extract",
        "size": args.size,
        "device": args.device,
        "stars_simulated": n_stars,
        "deblending": True,
        "results": results,
        "match_fraction": round(float(ok.mean()), 5) if len(ref) else None,
        "flux_match_fraction": round(float((aper_ok & ok).sum() / max(ok.sum(), 1)), 5),
        "iso_flux_match_fraction": round(float((iso_ok & ok).sum() / max(ok.sum(), 1)), 5),
        "iso_flux_match_fraction_unsplit": round(float((iso_ok & ok & ~merged).sum() / max((ok & ~merged).sum(), 1)),
                                                 5),
        "sep_deblended_objects": int(merged.sum()),
        "ratio": round(results["sep"]["ms"] / results["astroray"]["ms"], 3),
        "ratio_vs_sep_catalog": round(results["sep_catalog"]["ms"] / results["astroray"]["ms"], 3),
        "sep_pixstack": int(sep.get_extract_pixstack()),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "numpy": np.__version__, "sep": sep.__version__},
    }
    if args.device == "gpu":
        import cupy as cp

        summary["machine"]["gpu"] = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
        summary["machine"]["cupy"] = cp.__version__
    out = args.out or RESULTS / f"extract_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = {}
    if out.exists():
        try:
            previous = json.loads(out.read_text())
        except json.JSONDecodeError:
            previous = {}
    by_size = previous.get("by_size", {}) if isinstance(previous, dict) else {}
    by_size[str(args.size)] = summary
    out.write_text(json.dumps({"by_size": by_size, "latest": summary}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
