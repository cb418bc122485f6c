"""Light-curve features per second, astroray next to the light-curve package, and RR Lyrae periods.

Usage::

    python benchmarks/bench_lightcurves.py                    # 2,000 simulated LSST light curves
    python benchmarks/bench_lightcurves.py --n 5000 --survey ztf --repeat 5
    python benchmarks/bench_lightcurves.py --rrlyrae          # + periods of the 289 Stripe 82 RR Lyrae

Printed as JSON and written to ``benchmarks/results/lightcurves_<survey>.json``.

What is timed (a warm-up call, Numba compilation included, precedes every timing)
--------------------------------------------------------------------------------
Both sides get the same cleaned light curves, already in memory as arrays:
astroray a :class:`~astroray.lightcurves.RaggedLightCurves` batch, light-curve
a list of ``(t, m, sigma, band)`` tuples (preparing either is not timed).

* ``stats``: the per-band statistics that both compute
  (:data:`~astroray.lightcurves.LIGHT_CURVE_EQUIVALENTS`, 26 per band) for
  every band of the vocabulary: light-curve's ``Extractor`` of those features
  in multi-band mode (``bands=``), ``many(..., fill_value=nan)``; astroray's
  ``groups=("stats",)``, which also computes ``stetson_j`` (27 per band; the
  comparison counts only the 26 shared ones, so it is tilted against astroray).
* ``period``: the multi-band Lomb-Scargle periodogram on one fixed grid of
  ``--n-freq`` frequencies (1/``max_period`` .. 1/``min_period`` cycles/day):
  light-curve's ``Periodogram(freqs=..., fast=False, bands=...)`` and
  astroray's ``groups=("period",)`` with ``normalization="psd"``,
  ``band_weights="chi2"`` (the same spectrum; astroray's grid is pinned to
  the same one by ``max_n_frequencies``, which only light curves with a
  baseline over ``n_freq / (5 (f_max - f_min))`` days reach -- the others are
  left out of both sides).  light-curve's default ``fast=True`` (an
  approximate FFT method on its own grid) is timed too, for information.
* ``one_core``: ``numba.set_num_threads(1)`` and ``many(n_jobs=1)``;
  ``all_cores``: Numba's default threads and ``n_jobs=-1``.
  ``ratio`` = astroray light curves/s over light-curve's (>= 1: astroray at
  least as fast), from median times; ``ratio_best`` from the best of
  ``--repeat``.  The two sides run alternately, so load from other processes
  falls on both (on a shared 2-core machine, ``ratio_best`` is the steadier).

Also: ``tensors`` (light curves/s through
:class:`~astroray.lightcurves.LightCurveTensorizer`), ``all_features`` (every
astroray feature), and with ``--rrlyrae`` the fraction of catalogue periods
found within 1% (plain peak and 4-harmonic re-scoring).  The transformer's
inference figure (light curves/s on 2 cores) is ``bench_lightcurves_models.py --tasks speed``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
os.environ.setdefault("RUST_BACKTRACE", "0")  # light-curve's fast periodogram panics on some inputs (caught below)


def _time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def _time_pair(fn_a, fn_b, repeat):
    """Median and best seconds of two functions, run alternately so that load from others hits both alike."""
    a, b = [], []
    for _ in range(repeat):
        for fn, times in ((fn_a, a), (fn_b, b)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return (statistics.median(a), min(a)), (statistics.median(b), min(b))


def _compare(n, n_features, ours_times, theirs_times):
    ours, theirs = _rates(n, n_features, *ours_times), _rates(n, n_features, *theirs_times)
    return ours, theirs, {"ratio": round(ours["lightcurves_per_s"] / theirs["lightcurves_per_s"], 3),
                          "ratio_best": round(ours["lightcurves_per_s_best"] / theirs["lightcurves_per_s_best"], 3)}


def _rates(n, n_features, med, best):
    return {"seconds": round(med, 4), "lightcurves_per_s": round(n / med, 1),
            "lightcurves_per_s_best": round(n / best, 1), "features_per_s": round(n * n_features / med)}


def _lc_inputs(data, bands):
    out = []
    names = np.asarray(bands)
    for i in range(len(data)):
        a, b = data.offsets[i], data.offsets[i + 1]
        out.append((data.mjd[a:b], data.flux[a:b], data.flux_err[a:b], names[data.band[a:b]]))
    return out


def bench_stats(data, bands, repeat):
    import light_curve as lc
    import numba

    from astroray.lightcurves import LIGHT_CURVE_EQUIVALENTS, FeatureConfig, FeatureExtractor

    feats, seen = [], set()
    for cls, kwargs, _ in LIGHT_CURVE_EQUIVALENTS.values():
        key = (cls, tuple(sorted(kwargs.items())))
        if key not in seen:
            seen.add(key)
            feats.append(getattr(lc, cls)(**kwargs, bands=list(bands)))
    reference = lc.Extractor(*feats)
    inputs = _lc_inputs(data, bands)
    extractor = FeatureExtractor(FeatureConfig(bands=bands, groups=("stats",)))
    n, n_shared = len(data), len(LIGHT_CURVE_EQUIVALENTS) * len(bands)
    out = {"n_lightcurves": n, "features_shared": n_shared, "light_curve_outputs": len(reference.names),
           "astroray_outputs": len(extractor.names)}
    default_threads = numba.get_num_threads()
    for label, threads, jobs in (("one_core", 1, 1), ("all_cores", default_threads, -1)):
        reference.many(inputs[:50], fill_value=np.nan, n_jobs=jobs)
        extractor.run(data.take(np.arange(min(50, n))), n_threads=threads)
        ours, theirs, ratio = _compare(n, n_shared, *_time_pair(
            lambda threads=threads: extractor.run(data, n_threads=threads),
            lambda jobs=jobs: reference.many(inputs, fill_value=np.nan, n_jobs=jobs), repeat))
        out[label] = {"threads": threads, "astroray": ours, "light_curve": theirs, **ratio}
    return out


def bench_period(data, bands, repeat, n_freq, min_period, max_period):
    import light_curve as lc
    import numba

    from astroray.lightcurves import FeatureConfig, FeatureExtractor, PeriodogramConfig

    f_lo, f_hi = 1.0 / max_period, 1.0 / min_period
    # only light curves whose own grid would be finer than the pinned one, so both sides use the same grid
    baseline = np.array([np.ptp(data.mjd[data.offsets[i]:data.offsets[i + 1]]) if data.lengths[i] else 0.0
                         for i in range(len(data))])
    # light-curve needs >= 2 points in every band it is told about: give it the bands that have them
    counts = np.stack([np.bincount(data.row_index()[data.band == b], minlength=len(data))
                       for b in range(len(bands))], axis=1)
    keep_rows = np.flatnonzero((baseline > n_freq / (5.0 * (f_hi - f_lo))) & (counts >= 2).all(axis=1))
    sub = data.take(keep_rows)
    freq = np.linspace(f_lo, f_hi, n_freq)
    config = FeatureConfig(bands=bands, groups=("period",), period=PeriodogramConfig(
        min_period=min_period, max_period=max_period, max_n_frequencies=n_freq, normalization="psd",
        band_weights="chi2"))
    extractor = FeatureExtractor(config)
    reference = lc.Periodogram(freqs=2 * np.pi * freq, fast=False, peaks=1, bands=list(bands))
    fast = lc.Periodogram(peaks=1, bands=list(bands))
    inputs = _lc_inputs(sub, bands)
    n = len(sub)
    # light-curve's fast mode panics ("step should be positive finite") on a few light curves: time it without them
    fast_inputs = []
    for item in inputs:
        try:
            fast(*item)
            fast_inputs.append(item)
        except BaseException:  # noqa: BLE001 - a Rust panic is a BaseException
            pass
    # the same answer first: the best periods agree
    ours = extractor.run(sub).column("period")
    theirs = reference.many(inputs, n_jobs=-1)[:, 0]
    out = {"n_lightcurves": n, "n_frequencies": n_freq, "period_range_days": [min_period, max_period],
           "points_per_lightcurve": float(sub.lengths.mean()),
           "periods_equal_fraction": float(np.mean(np.isclose(ours, theirs, rtol=1e-9))),
           "light_curve_fast_panicked_on": n - len(fast_inputs)}
    default_threads = numba.get_num_threads()
    for label, threads, jobs in (("one_core", 1, 1), ("all_cores", default_threads, -1)):
        ours, theirs, ratio = _compare(n, 2, *_time_pair(
            lambda threads=threads: extractor.run(sub, n_threads=threads),
            lambda jobs=jobs: reference.many(inputs, n_jobs=jobs), repeat))
        fast.many(fast_inputs[:20], n_jobs=jobs)
        fast_med, fast_best = _time(lambda jobs=jobs: fast.many(fast_inputs, n_jobs=jobs), repeat)
        out[label] = {"threads": threads, "astroray": ours, "light_curve_direct": theirs,
                      "light_curve_fast_own_grid": _rates(len(fast_inputs), 2, fast_med, fast_best), **ratio}
    return out


def bench_all_features_and_tensors(data, bands, repeat):
    import numba

    from astroray.lightcurves import FeatureConfig, FeatureExtractor, LightCurveTensorizer, TensorConfig

    n = len(data)
    extractor = FeatureExtractor(FeatureConfig(bands=bands))
    tensorizer = LightCurveTensorizer(TensorConfig(bands=bands))
    tensorizer.run(data)
    out = {"n_lightcurves": n, "n_features": len(extractor.names)}
    for label, threads in (("one_core", 1), ("all_cores", numba.get_num_threads())):
        med, best = _time(lambda threads=threads: extractor.run(data, n_threads=threads), repeat)
        out[f"all_features_{label}"] = _rates(n, len(extractor.names), med, best)
    med, best = _time(lambda: tensorizer.run(data), repeat)
    out["tensors"] = {"seconds": round(med, 4), "lightcurves_per_s": round(n / med, 1),
                      "points_per_lightcurve": float(data.lengths.mean())}
    return out


def bench_rrlyrae(shared_data: Path):
    import pandas as pd

    from astroray.io import read_lightcurves
    from astroray.lightcurves import FeatureConfig, FeatureExtractor, PeriodogramConfig

    root = shared_data / "lightcurves" / "rrlyrae"
    lcs = read_lightcurves(root / "light-curves")
    catalogue = pd.read_csv(root / "periods.csv", dtype={"Num": str}).set_index("Num")
    grid = dict(min_period=0.2, max_period=1.2, oversampling=5.0, max_n_frequencies=1_000_000)
    out = {"n_stars": len(lcs), "grid": grid, "domain": "mag"}
    for label, k in (("plain_peak", 1), ("harmonics_4", 4)):
        config = FeatureConfig(domain="mag", groups=("period",), period=PeriodogramConfig(n_harmonics=k, **grid))
        t0 = time.perf_counter()
        table = FeatureExtractor(config).run(lcs)
        seconds = time.perf_counter() - t0
        truth = catalogue.loc[table.object_ids.astype(str)]
        ok = np.abs(table.column("period") - truth["Per"].to_numpy()) / truth["Per"].to_numpy() < 0.01
        kind = truth["Type"].to_numpy()
        out[label] = {"within_1_percent": round(float(ok.mean()), 4),
                      "ab": round(float(ok[kind == "ab"].mean()), 4), "c": round(float(ok[kind == "c"].mean()), 4),
                      "seconds": round(seconds, 2)}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="simulated light curves")
    parser.add_argument("--survey", choices=("lsst", "ztf"), default="lsst")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--n-freq", type=int, default=4096, help="frequencies of the pinned periodogram grid")
    parser.add_argument("--min-period", type=float, default=0.1)
    parser.add_argument("--max-period", type=float, default=100.0)
    parser.add_argument("--rrlyrae", action="store_true", help="periods of the 289 Stripe 82 RR Lyrae")
    parser.add_argument("--shared-data", type=Path,
                        default=Path(os.environ.get("ASTRORAY_SHARED_DATA",
                                                    Path(__file__).resolve().parents[2] / "shared" / "data")))
    parser.add_argument("--device", choices=("cpu",), default="cpu",
                        help="the feature code is CPU (Numba); the transformer's figures are "
                             "bench_lightcurves_models.py's")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import light_curve
    import numba

    from astroray.datasets import LightCurveConfig, simulate_lightcurves
    from astroray.lightcurves import SURVEY_BANDS, PreprocessConfig, ragged_from_lightcurves

    bands = SURVEY_BANDS[args.survey]
    records = simulate_lightcurves(args.n, config=LightCurveConfig(survey=args.survey), seed=2024).lightcurves
    data = ragged_from_lightcurves(records, PreprocessConfig(bands=bands))
    summary = {
        "benchmark": "lightcurves",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "numba_threads": numba.get_num_threads()},
        "versions": {"light_curve": light_curve.__version__, "numba": numba.__version__, "numpy": np.__version__},
        "input": {"survey": args.survey, "n_lightcurves": args.n, "points_per_lightcurve": float(data.lengths.mean()),
                  "bands": list(bands), "seed": 2024},
        "stats": bench_stats(data, bands, args.repeat),
        "period": bench_period(data, bands, args.repeat, args.n_freq, args.min_period, args.max_period),
        "astroray_only": bench_all_features_and_tensors(data, bands, args.repeat),
    }
    if args.rrlyrae:
        summary["rrlyrae_periods"] = bench_rrlyrae(args.shared_data)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"lightcurves_{args.survey}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
