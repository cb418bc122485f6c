r"""Entry point for `ray job submit`: difference a folder of FITS exposure pairs, or a CSV of survey FITS pairs.

--input DIR: pairs are files named <id>_reference.fits and <id>_science.fits
(astroray exposures: IMAGE, VARIANCE, MASK, PSF HDUs, on one pixel grid).

--pairs FILE.csv: plain FITS images from any telescope (an image HDU with a
WCS; weight/variance/mask extensions or companion files used when there; no
PSF needed), one pair a row, with the header row "science,reference" and
optionally a "pair_id" column (default: the science file's name without its
FITS suffixes). Relative paths are taken from the CSV's folder. Each reference
is resampled onto its science frame's grid (WCS, refined by matching stars),
both PSFs are measured from their stars, then the pair is differenced like the
others. The config's "survey:" section says how (configs/difference_survey.yaml);
manifest.parquet then also holds each pair's survey_summary (JSON: PSF FWHM and
ellipticity, registration rms, flux ratio) and csv_row. A row that cannot be
differenced (missing or corrupt file, no WCS, WCSs that do not overlap, an
all-saturated frame, too few stars) is quarantined with the reason.

Both write alerts/ and catalog/ Parquet datasets, difference/ FITS,
manifest.parquet and quarantine.parquet.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/difference.py --input /data/visit123 --out /data/visit123-out --config configs/difference.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/difference.py --pairs /data/ztf/pairs.csv --out /data/ztf-out \
        --config configs/difference_survey.yaml

Outputs are exactly this run's: a non-empty --out is refused unless
--overwrite is given, which first removes the job's own outputs there
(alerts/, catalog/, difference/, manifest.parquet, quarantine.parquet; nothing
else), and a pair that does not end "ok" leaves no part file, so the folder
always matches manifest.parquet. A pair repeating another pair's science
exposure (the same file through a link, or the same exposure id) is
quarantined, so alert ids stay unique. Every write goes to a new unique
temporary inside --out (no symbolic link followed) and is renamed into place.
Inputs are read within the limits ASTRORAY_MAX_FILE_MB and
ASTRORAY_MAX_DECOMPRESSED_MB (or the config's read_limits).

Exit status: 0 when every pair was processed, 1 when some were quarantined,
2 on a bad config, input folder, pairs CSV or --out.
"""
import argparse
import sys
from pathlib import Path

from astroray.config import load_config
from astroray.errors import AstrorayError
from astroray.ray.image_job import DifferenceJobConfig, check_output_folder, pairs_from_csv, pairs_in_folder, run_pairs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="folder of <id>_reference.fits / <id>_science.fits pairs (astroray FITS)")
    source.add_argument("--pairs", metavar="FILE.csv",
                        help="CSV of plain survey FITS pairs: columns science, reference[, pair_id]; relative "
                             "paths from the CSV's folder")
    parser.add_argument("--out", required=True, help="output folder (shared storage on a cluster); must be empty "
                                                     "or missing unless --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the job's outputs of an earlier run in --out (alerts/, catalog/, difference/, "
                             "manifest.parquet, quarantine.parquet); other files there are left alone")
    parser.add_argument("--config", default=None, help="job config YAML (default: built-in defaults)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, DifferenceJobConfig)
        out = check_output_folder(args.out, overwrite=args.overwrite)
        manifest = pairs_from_csv(args.pairs) if args.pairs else pairs_in_folder(args.input)
        status = run_pairs(manifest, Path(out), cfg, progress=not args.no_progress, survey=bool(args.pairs))
    except AstrorayError as exc:
        print(f"difference job failed: {exc}", file=sys.stderr)
        return 2
    n_ok = int((status["status"] == "ok").sum())
    print(f"{n_ok}/{len(status)} pairs processed, {int(status['n_alerts'].fillna(0).sum())} alerts; "
          f"outputs in {args.out}")
    for row in status[status["status"] != "ok"].itertuples():
        print(f"{row.status} {row.pair_id}: {row.reason}")
    return 0 if n_ok == len(status) else 1


if __name__ == "__main__":
    sys.exit(main())
