"""Throughput of the simulators on one core: light curves/s, image pairs/s (4k and 1k), documents/s.

Usage::

    python benchmarks/bench_simulate.py                 # defaults: 20,480 light curves, 3 4k pairs
    python benchmarks/bench_simulate.py --size 2048 --pairs 5 --lightcurves 50000

Pinned to one thread (BLAS/OpenMP/Numba) so the figures are per core.  A
warm-up call (Numba compilation, imports) precedes every timing.  Printed as
JSON and written to ``benchmarks/results/simulate.json``:

* ``lightcurves``: objects/s as :class:`~astroray.records.LightCurve` records
  and straight to Arrow, per survey (LSST ugrizy one year, ZTF gri one year);
* ``images``: seconds per pair and pairs/s at ``--size`` and at 1024 (default
  scene: stars, Sersic galaxies, all change kinds);
* ``text``: documents/s;
* ``peer``: GalSim (if installed) drawing the same star-only pair -- both
  epochs of Moffat stars (pixel-integrated), sky and CCD noise -- next to
  astroray's star-only pair; ``ratio`` is GalSim's time over astroray's.

``--device`` takes only ``cpu``: the simulators are CPU code (they feed GPU
stages but do not run on the GPU).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def bench_lightcurves(n, repeat):
    from astroray.datasets import LightCurveConfig, simulate_lightcurve_table, simulate_lightcurves

    out = {}
    for survey in ("lsst", "ztf"):
        cfg = LightCurveConfig(survey=survey)
        simulate_lightcurves(1024, config=cfg, seed=99)  # warm-up
        best_obj, med_obj = _best(lambda: simulate_lightcurves(n, config=cfg, seed=1), repeat)
        best_tab, med_tab = _best(lambda: simulate_lightcurve_table(n, config=cfg, seed=1), repeat)
        points = int(simulate_lightcurve_table(1024, config=cfg, seed=1)[1]["n_points"].mean())
        out[survey] = {"n": n, "points_per_object": points,
                       "records_per_s": round(n / med_obj), "records_per_s_best": round(n / best_obj),
                       "arrow_per_s": round(n / med_tab), "arrow_per_s_best": round(n / best_tab)}
    return out


def bench_images(size, pairs):
    from astroray.datasets import ImagePairConfig, simulate_pair

    out = {}
    for side, n in ((size, pairs), (1024, max(pairs, 5))):
        cfg = ImagePairConfig(shape=(side, side))
        simulate_pair(ImagePairConfig(shape=(256, 256)), seed=0, index=0)  # warm-up
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            pair = simulate_pair(cfg, seed=0, index=i)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        out[str(side)] = {"pairs": n, "seconds_per_pair": round(med, 3), "seconds_min": round(min(times), 3),
                          "pairs_per_s": round(1.0 / med, 3), "n_stars": pair.meta["n_stars"],
                          "n_galaxies": pair.meta["n_galaxies"], "n_changes": int(len(pair.truth))}
    return out


def bench_text(n, repeat):
    from astroray.datasets import simulate_documents

    simulate_documents(50, seed=9)
    best, med = _best(lambda: simulate_documents(n, seed=1), repeat)
    return {"n": n, "documents_per_s": round(n / med), "documents_per_s_best": round(n / best)}


def _star_only_config(side):
    from astroray.datasets import ChangeConfig, ImagePairConfig

    return ImagePairConfig(shape=(side, side), galaxy_density=0.0,
                           changes={k: 0.0 for k in ChangeConfig.model_fields})


def bench_peer(side, repeat):
    """GalSim draws the star-only pair astroray draws: same count, magnitudes, PSFs, sky and noise."""
    try:
        import galsim
    except ImportError:
        return {"galsim": "not installed"}
    from astroray.datasets import simulate_pair

    cfg = _star_only_config(side)
    simulate_pair(_star_only_config(256), seed=0, index=0)
    ours = []
    for i in range(repeat):
        t0 = time.perf_counter()
        pair = simulate_pair(cfg, seed=0, index=i)
        ours.append(time.perf_counter() - t0)
    n_stars = pair.meta["n_stars"]
    rng = np.random.default_rng(0)
    lo, hi = cfg.star_mag_range
    a, b = 10 ** (cfg.star_lf_slope * lo), 10 ** (cfg.star_lf_slope * hi)
    mags = np.log10(a + rng.random(n_stars) * (b - a)) / cfg.star_lf_slope
    xs, ys = rng.uniform(0, side - 1, n_stars), rng.uniform(0, side - 1, n_stars)

    def galsim_pair():
        for epoch in (cfg.reference, cfg.science):
            image = galsim.ImageF(side, side, scale=cfg.pixel_scale)
            sky = epoch.exptime * 10 ** (-0.4 * (epoch.sky_brightness - epoch.zero_point)) * cfg.pixel_scale ** 2
            image.fill(sky)
            psf = galsim.Moffat(beta=epoch.moffat_beta, fwhm=epoch.seeing)
            flux = epoch.exptime * 10 ** (-0.4 * (mags - epoch.zero_point))
            for x, y, f in zip(xs, ys, flux):
                stamp = psf.withFlux(float(f)).drawImage(scale=cfg.pixel_scale, center=galsim.PositionD(x + 1, y + 1))
                overlap = stamp.bounds & image.bounds
                if overlap.isDefined():
                    image[overlap] += stamp[overlap]
            image.addNoise(galsim.CCDNoise(galsim.BaseDeviate(1), gain=cfg.gain, read_noise=cfg.read_noise))

    theirs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        galsim_pair()
        theirs.append(time.perf_counter() - t0)
    med_ours, med_theirs = statistics.median(ours), statistics.median(theirs)
    return {"scene": f"{side}x{side} star-only pair, {n_stars} stars, both epochs, sky + CCD noise",
            "galsim_version": galsim.__version__, "astroray_seconds": round(med_ours, 3),
            "galsim_seconds": round(med_theirs, 3), "ratio": round(med_theirs / med_ours, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu"], default="cpu", help="the simulators run on the CPU")
    parser.add_argument("--size", type=int, default=4096, help="side of the large image pairs (default 4096)")
    parser.add_argument("--pairs", type=int, default=3, help="large pairs timed (default 3)")
    parser.add_argument("--lightcurves", type=int, default=20480, help="light curves per timing (default 20480)")
    parser.add_argument("--documents", type=int, default=5000, help="documents per timing (default 5000)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the throughput timings (default 3)")
    parser.add_argument("--peer-size", type=int, default=2048, help="side of the GalSim comparison (0: skip)")
    parser.add_argument("--out", default=str(RESULTS / "simulate.json"), help="JSON file to write")
    args = parser.parse_args(argv)

    result = {
        "benchmark": "simulate",
        "device": args.device,
        "threads": 1,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version()},
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "lightcurves": bench_lightcurves(args.lightcurves, args.repeat),
        "images": bench_images(args.size, args.pairs),
        "text": bench_text(args.documents, args.repeat),
    }
    if args.peer_size:
        result["peer"] = bench_peer(args.peer_size, max(1, min(args.repeat, 2)))
    print(json.dumps(result, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
