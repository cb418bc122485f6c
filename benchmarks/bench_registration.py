"""Registration against the simulator's known transform, and what it costs the difference in completeness.

Each simulated pair renders its reference on its own pixel grid
(:class:`astroray.datasets.images.ReferenceGridConfig`: a shift from sub-pixel
to 50 px, a rotation up to 2 degrees, a scale up to 1%, and the matching
WCS; the science epoch and the truth are exactly those of the same pair on one
grid).  Reported per pair:

* the rms over the frame (every 8 px where the reference covers the science
  frame) of ``|T_fitted(p) - T_true(p)|`` (issue 18: <= 0.05 px), with the
  WCS as given and with the reference's WCS spoiled (pointing off by several
  pixels, rotated by 0.05 degree) so that the stars must do the work;
* the completeness of the injected real changes at expected S/N >= 7 within
  ``--radius`` px: the same pair on one grid with the true PSFs through
  :class:`astroray.imaging.pipeline.ImagePipeline`, against the full survey
  path (:func:`astroray.imaging.survey_pair.difference_pair`: registration,
  both PSFs estimated from the stars, the pipeline), both counted over the
  changes where the registered reference has data (issue 18: within 2
  points).  The matcher: a detection within ``--radius`` px of the change.

    python benchmarks/bench_registration.py --n-pairs 6 --size 1024
"""
import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

# (shift_x, shift_y) px, rotation deg, scale: sub-pixel to 50 px, up to 2 degrees, up to 1%
CASES = [((0.37, -0.21), 0.0, 1.0), ((4.6, 2.3), 0.5, 1.003), ((-21.3, 13.7), -1.2, 0.995),
         ((50.0, -3.0), 2.0, 1.01), ((-35.0, -35.0), -2.0, 0.99), ((12.5, 48.0), 1.5, 1.006)]


def _matched(catalog, truth, radius) -> np.ndarray:
    """For each truth row, whether a detection lies within ``radius`` px."""
    if len(truth) == 0:
        return np.zeros(0, bool)
    if catalog is None or len(catalog) == 0:
        return np.zeros(len(truth), bool)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(catalog[["x", "y"]].to_numpy()).query(truth[["x", "y"]].to_numpy())
    return dist <= radius


def _truth_rms(transform, pair, grid) -> tuple[float, float]:
    H, W = pair.science.shape
    yy, xx = np.mgrid[0:H:8, 0:W:8].astype(float)
    tx, ty = grid.to_reference(xx - pair.meta["offset_x"], yy - pair.meta["offset_y"], (H, W))
    fx, fy = transform(xx, yy)
    inside = (tx >= 0) & (tx <= W - 1) & (ty >= 0) & (ty <= H - 1)
    err = np.hypot(fx - tx, fy - ty)[inside]
    return float(math.sqrt((err ** 2).mean())), float(err.max())


def _spoil_wcs(exposure, dx, dy, dtheta_deg):
    """The exposure with its WCS pointing ``(dx, dy)`` px off and turned by ``dtheta_deg``."""
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS

    from astroray.records import Exposure

    hdr = fits.Header.fromstring(exposure.header, sep="\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = WCS(hdr)
    t = math.radians(dtheta_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    cd = w.pixel_scale_matrix @ rot
    w.wcs.crpix = [w.wcs.crpix[0] + dx, w.wcs.crpix[1] + dy]
    w.wcs.pc = cd / np.abs(w.wcs.cdelt)[:, None] * np.sign(w.wcs.cdelt)[:, None]
    hdr.update(w.to_header())
    return Exposure(image=exposure.image, variance=exposure.variance, mask=exposure.mask, psf=exposure.psf,
                    header=hdr.tostring(sep="\n").rstrip(), meta=dict(exposure.meta))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-pairs", type=int, default=len(CASES))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--radius", type=float, default=2.0, help="match radius in pixels")
    parser.add_argument("--config", default=str(Path(__file__).parents[1] / "configs" / "demo.yaml"),
                        help="demo config whose pipeline section both paths use")
    parser.add_argument("--no-completeness", action="store_true", help="registration accuracy only")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/registration.json)")
    args = parser.parse_args(argv)

    from astroray.config import load_config
    from astroray.datasets import ImagePairConfig, simulate_pair
    from astroray.datasets.images import ReferenceGridConfig
    from astroray.imaging.pipeline import ImagePipeline
    from astroray.imaging.registration import Registration
    from astroray.imaging.survey_pair import SurveyPairConfig, difference_pair
    from astroray.ray.demo import DemoConfig
    from astroray.records import MaskBits

    pipe_cfg = load_config(args.config, DemoConfig).pipeline
    one_grid_pipeline = ImagePipeline(pipe_cfg)
    survey_cfg = SurveyPairConfig(pipeline=pipe_cfg, estimate_psf="always")
    rows = []
    totals = {"one_grid": [0, 0], "survey": [0, 0]}
    for index in range(args.n_pairs):
        (sx, sy), rot, scale = CASES[index % len(CASES)]
        grid = ReferenceGridConfig(shift=(sx, sy), rotation=rot, scale=scale)
        sim = ImagePairConfig(shape=(args.size, args.size), reference_grid=grid)
        pair = simulate_pair(sim, seed=args.seed, index=index)
        t0 = time.perf_counter()
        reg = Registration().run(pair.reference, pair.science)
        reg_s = time.perf_counter() - t0
        rms, worst = _truth_rms(reg.transform, pair, grid)
        spoiled = _spoil_wcs(pair.reference, 6.0, -4.5, 0.05)
        reg_bad = Registration().run(spoiled, pair.science)
        rms_bad, worst_bad = _truth_rms(reg_bad.transform, pair, grid)
        row = {"pair": index, "shift": [sx, sy], "rotation_deg": rot, "scale": scale,
               "truth_rms_px": rms, "truth_max_px": worst, "fit_error_px": list(reg.fit_error),
               "star_rms_px": reg.rms, "n_matches": reg.n_matches, "method": reg.method,
               "spoiled_wcs_truth_rms_px": rms_bad, "spoiled_wcs_truth_max_px": worst_bad,
               "spoiled_wcs_method": reg_bad.method, "register_s": reg_s}
        if not args.no_completeness:
            one = simulate_pair(sim.with_updates(reference_grid=None), seed=args.seed, index=index)
            assert np.array_equal(one.science.image, pair.science.image)  # same science epoch, same truth
            res_one = one_grid_pipeline.run(one.reference, one.science)
            t0 = time.perf_counter()
            res = difference_pair(pair.science, pair.reference, config=survey_cfg)
            row["survey_s"] = time.perf_counter() - t0
            truth = pair.truth[pair.truth["real"].astype(bool) & (pair.truth["snr_expected"] >= 7)]
            ix = np.clip(np.rint(truth["x"].to_numpy()).astype(int), 0, args.size - 1)
            iy = np.clip(np.rint(truth["y"].to_numpy()).astype(int), 0, args.size - 1)
            covered = (res.reference.mask[iy, ix] & np.uint32(MaskBits.NO_DATA)) == 0
            truth = truth[covered]
            hit_one = _matched(res_one.catalog, truth, args.radius)
            hit_sur = _matched(res.pair.catalog, truth, args.radius)
            totals["one_grid"][0] += int(hit_one.sum())
            totals["survey"][0] += int(hit_sur.sum())
            totals["one_grid"][1] += len(truth)
            totals["survey"][1] += len(truth)
            row.update(n_truth_snr_ge_7_covered=len(truth), found_one_grid_true_psf=int(hit_one.sum()),
                       found_survey_path=int(hit_sur.sum()),
                       psf_fwhm_science=res.psf_science.fwhm, psf_fwhm_reference=res.psf_reference.fwhm,
                       true_fwhm_science=pair.science.meta["fwhm_px"],
                       true_fwhm_reference=pair.reference.meta["fwhm_px"],
                       detections_one_grid=len(res_one.catalog), detections_survey=len(res.pair.catalog),
                       psf_grid_used=res.psf_grid_used)
        rows.append(row)
        print(json.dumps(row))
    result = {"benchmark": "registration", "n_pairs": args.n_pairs, "size": args.size, "seed": args.seed,
              "targets": {"truth_rms_px": 0.05, "completeness_points": 2.0},
              "truth_rms_px_worst": max(r["truth_rms_px"] for r in rows),
              "truth_rms_px_median": float(np.median([r["truth_rms_px"] for r in rows])),
              "spoiled_wcs_truth_rms_px_worst": max(r["spoiled_wcs_truth_rms_px"] for r in rows),
              "rows": rows}
    if not args.no_completeness:
        c_one = totals["one_grid"][0] / max(totals["one_grid"][1], 1)
        c_sur = totals["survey"][0] / max(totals["survey"][1], 1)
        result.update(completeness_one_grid_true_psf=round(c_one, 4), completeness_survey_path=round(c_sur, 4),
                      completeness_difference_points=round(100 * (c_one - c_sur), 2),
                      n_truth_snr_ge_7_covered=totals["one_grid"][1])
    out = Path(args.out or Path(__file__).parent / "results" / "registration.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    return result


if __name__ == "__main__":
    main()
