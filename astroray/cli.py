"""The ``astroray`` command.

Every subcommand has ``--help``.  Errors users can fix (bad config, bad input,
no GPU) print one line saying what to do and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap

from astroray._version import __version__
from astroray.errors import AstrorayError, ConfigError

__all__ = ["main", "build_parser"]


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _add(sub, name, help_, description, epilog=""):
    return sub.add_parser(name, help=help_, description=textwrap.dedent(description).strip(),
                          epilog=textwrap.dedent(epilog).strip() or None, formatter_class=_formatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astroray",
        description="astroray: time-domain astronomy on Ray -- image differencing, source extraction, "
                    "alerts and light curves, from a laptop to a GPU cluster.",
        epilog="Run 'astroray COMMAND --help' for each command's options. Outputs and the MLflow store go to "
               "$ASTRORAY_HOME (default ./.astroray).",
        formatter_class=_formatter)
    parser.add_argument("--version", action="version", version=f"astroray {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _add(sub, "demo", "run the end-to-end demo on a simulated sky", """
        Simulate CCD image pairs with injected transients and artifacts, run them through the Ray Data
        image pipeline (background, difference, detection, 63x63 cutouts, score) and write alerts and a
        catalog as Parquet, a manifest of every input, a quarantine table and an overview PNG.
        Starts a local Ray unless run under 'ray job submit'.""", """
        examples:
          astroray demo
          astroray demo --config configs/demo.yaml --n-pairs 8 --size 2048
          astroray demo --out /tmp/demo --no-track""")
    p.add_argument("--config", metavar="YAML", help="demo config (default: built-in defaults, as configs/demo.yaml)")
    p.add_argument("--n-pairs", type=int, metavar="N", help="number of simulated image pairs")
    p.add_argument("--size", type=int, metavar="PX", help="side of each simulated CCD in pixels")
    p.add_argument("--out", metavar="DIR", help="output folder (default: $ASTRORAY_HOME/demo)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-track", action="store_true", help="do not log the run to MLflow")
    p.add_argument("--no-realbogus", action="store_true",
                   help="no real/bogus scoring (default: the champion, trained first when there is none)")
    p.set_defaults(func=_cmd_demo)

    io = _add(sub, "io", "inspect and convert data files", "Inspect survey data files.")
    io_sub = io.add_subparsers(dest="io_command", metavar="IO_COMMAND", required=True)
    p = _add(io_sub, "check", "parse every file under PATH and count what is there", """
        Walk PATH, detect each file's format (ZTF/LSST Avro alerts, Fink/Rubin Parquet alerts, light-curve
        CSV/Parquet, FITS exposures, label/feature/metadata tables, schemas, docs), parse it, and print
        per-format counts. Every file is accounted for. Exit status 0 when every data file parsed,
        1 when some failed (listed with the reason).""", """
        examples:
          astroray io check ../shared/data/alerts
          astroray io check ../shared/data/lightcurves --json""")
    p.add_argument("path", help="a file or folder")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--max-file-mb", type=float, metavar="MB",
                   help="refuse larger files unread (default $ASTRORAY_MAX_FILE_MB or 1024)")
    p.add_argument("--max-decompressed-mb", type=float, metavar="MB",
                   help="refuse compressed content expanding beyond this (default $ASTRORAY_MAX_DECOMPRESSED_MB or 512)")
    p.set_defaults(func=_cmd_io_check)

    p = _add(sub, "serve", "serve the HTTP API (a Ray Serve config) until interrupted", """
        Start Ray (or join $RAY_ADDRESS) and deploy the Serve applications of a config file: the FastAPI
        ingress with /difference and its deployments. Waits until every application runs, prints the URLs,
        and serves until Ctrl-C. The OpenAPI description is at /docs (it works offline).""", """
        examples:
          astroray serve                              # configs/serve.yaml
          astroray serve --config my-serve.yaml""")
    p.add_argument("--config", metavar="YAML", default="configs/serve.yaml",
                   help="Serve config (default: configs/serve.yaml)")
    p.set_defaults(func=_cmd_serve)

    p = _add(sub, "version", "print versions and the compute found here", """
        Print the versions of astroray and its main dependencies, and whether a CUDA GPU is usable.""")
    p.set_defaults(func=_cmd_version)

    _add_simulate(sub)
    _add_classify(sub)
    _add_score(sub)
    _add_ner(sub)
    _add_difference(sub)
    return parser


def _add_simulate(sub) -> None:
    p = _add(sub, "simulate", "write simulated image pairs, light curves or text with truth", """
        Generate the embedded-default data with truth: CCD image pairs (FITS + truth Parquet), multi-band
        light curves of 14 classes (Parquet + truth) or ATel/abstract-like text with entity spans (JSONL).
        Generation is a pure function of (config, seed, index): the same seed gives the same bytes.""", """
        examples:
          astroray simulate images --n 2 --out sim/images --plot
          astroray simulate images --n 189 --size 1024 --out sim/visit    # a visit's worth of small CCDs
          astroray simulate lightcurves --n 10000 --out sim/lc --plot
          astroray simulate text --n 100 --out sim/text --plot""")
    p.add_argument("kind", choices=("images", "lightcurves", "text"), help="what to simulate")
    p.add_argument("--n", type=int, required=True, metavar="N", help="how many pairs / light curves / documents")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--config", metavar="YAML", help="simulator config for that kind")
    p.add_argument("--size", type=int, metavar="PX",
                   help="images: side of each CCD in pixels (overrides the config's shape; default: the config's, "
                        "1024 without one; an LSST CCD is 4096)")
    p.add_argument("--plot", action="store_true", help="also write a PNG (or HTML for text) gallery")
    p.set_defaults(func=_cmd_simulate)


def _add_difference(sub) -> None:
    p = _add(sub, "difference", "difference one science frame against a reference (plain FITS with a WCS)", """
        Difference one pair of FITS images from any telescope: each an image HDU with a celestial WCS
        (single- or multi-extension, tile-compressed or gzipped; a weight, variance or mask extension or
        companion file is used when there, ZTF sciimg + mskimg and LSST IMAGE/MASK/VARIANCE are recognised).
        The reference is resampled onto the science frame's pixel grid from the two WCSs and refined by
        matching stars (a fitted affine); each frame's PSF is measured from its own isolated stars; ZOGY
        differences them, candidates are detected on S_corr and measured on D.

        Writes to DIR: difference.fits (D) and score.fits (S_corr), both with the science frame's WCS;
        catalog.parquet and alerts.parquet (the schemas of jobs/difference.py's outputs); overview.png
        (science, registered reference, D and S_corr with the detections circled); summary.json (each
        PSF's FWHM and ellipticity, the registration's rms, the flux ratio, the number of detections).

        Bad input -- a file that is not FITS or is cut short, no WCS, WCSs that do not overlap, an
        all-saturated frame, too few stars for a PSF or a registration -- stops with a one-line reason
        and exit status 2, and nothing is written.""", """
        examples:
          astroray difference sci.fits ref.fits --out diff/
          astroray difference ztf_sciimg.fits ztf_refimg.fits --out diff/ --overwrite
          astroray difference new.fits.fz template.fits --out diff/ --config configs/difference_survey.yaml
          astroray difference sci.fits ref.fits --out diff/ --json    # the summary as JSON""")
    p.add_argument("science", help="the new frame (FITS with a WCS)")
    p.add_argument("reference", help="the template / reference frame (any pointing and seeing)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder; must be missing or empty unless --overwrite")
    p.add_argument("--config", metavar="YAML",
                   help="how each file is read, the registration, the PSFs and the pipeline: a survey pair "
                        "config, or a job config with survey: and pipeline: sections, as "
                        "configs/difference_survey.yaml (default: built-in defaults)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace this command's files in a non-empty --out (difference.fits, score.fits, "
                        "catalog.parquet, alerts.parquet, overview.png, summary.json); nothing else is touched")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of the short report")
    p.set_defaults(func=_cmd_difference)


def _cmd_difference(args) -> int:
    from pathlib import Path

    from astroray.imaging.survey_pair import difference_files
    from astroray.ray.image_job import load_survey_pair_config

    cfg = load_survey_pair_config(args.config)  # a pair config, or the job's with survey: and pipeline:
    summary = difference_files(args.science, args.reference, args.out, config=cfg, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0

    def psf(part):
        if part.get("source") != "estimated":
            return "given in the file"
        return (f"FWHM {part['fwhm_px']:.2f} px, ellipticity {part['ellipticity']:.3f} "
                f"({part['n_stars']} stars, {part['model']})")

    reg = summary["registration"]
    fit = summary.get("flux_ratio_fit") or {}
    lines = [f"astroray difference: {args.science} - {args.reference} -> {args.out}",
             f"  science PSF     {psf(summary['psf_science'])}",
             f"  reference PSF   {psf(summary['psf_reference'])} (on the science grid)"]
    if reg is not None:
        lines.append(f"  registration    {reg['method']}, {reg['n_matches']} stars matched, rms "
                     f"{reg['rms_px']:.3f} px; shift ({reg.get('shift_x', float('nan')):.2f}, "
                     f"{reg.get('shift_y', float('nan')):.2f}) px, rotation "
                     f"{reg.get('rotation_deg', float('nan')):.3f} deg, scale {reg.get('scale', float('nan')):.4f}")
    how = f" (fitted to {fit['n_stars']} stars)" if isinstance(fit, dict) and fit.get("n_stars") else ""
    lines += [f"  flux ratio      {summary['flux_ratio']:.4f}{how}",
              (f"  detections      {summary['n_detections']}, alerts {summary['n_alerts']}, "
               f"satellite streaks {summary['n_streaks']}"),
              f"  wrote           {', '.join(sorted(Path(p).name for p in summary['paths'].values()))}",
              f"  took            {summary['timings_ms']['total'] / 1e3:.1f} s"]
    print("\n".join(lines))
    return 0


def _add_ner(sub) -> None:
    p = _add(sub, "ner", "find source, event and facility names in ATel, GCN and abstract files", """
        Read every file under PATH (ATel HTML pages and RSS, GCN circulars as JSON or text, JSON Lines of
        abstracts, plain text; the reader is chosen by suffix and contents) and find the names in it with
        Ray Data, one model per worker. Writes FILE (JSON Lines: file, doc_id, text, label (the type:
        SOURCE, EVENT or FACILITY), start and end (character offsets in the document's text), normalised,
        source (the rule or the model)), and beside it <stem>.manifest.jsonl (every input with its status)
        and <stem>.quarantine.jsonl (the files that could not be read, with the reason).

        Model: --model, else models:/astroray-ner@champion when it is registered in the MLflow store,
        else the rules pipeline (naming conventions, facilities, optional gazetteer) built here; the
        summary says which. Exit status 0 when every file was read, 1 when some were quarantined.""", """
        examples:
          astroray ner --input ../shared/data/text/atel --out names.jsonl
          astroray ner --input circulars/ --out names.jsonl --model models:/astroray-ner/3
          astroray ner --input abstracts.jsonl --out names.jsonl --model rules --gazetteer gazetteer/""")
    p.add_argument("--input", required=True, metavar="PATH", help="a file or a folder (walked recursively)")
    p.add_argument("--out", required=True, metavar="FILE", help="JSON Lines of names")
    p.add_argument("--model", metavar="URI",
                   help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN/model, a saved pipeline folder or "
                        "'rules' (default: the champion if registered, else the rules)")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow store (default $MLFLOW_TRACKING_URI or "
                                                         "$ASTRORAY_HOME/mlflow.db)")
    p.add_argument("--gazetteer", metavar="DIR", help="gazetteer folder for the rules pipeline")
    p.add_argument("--format", default="auto",
                   choices=("auto", "atel_html", "atel_rss", "gcn_json", "gcn_text", "jsonl", "text"),
                   help="reader for every file (default: by suffix and contents)")
    p.add_argument("--workers", type=int, metavar="N", help="Ray Data actors (default: one per CPU)")
    p.set_defaults(func=_cmd_ner)


def _cmd_ner(args) -> int:
    from astroray.ray.ner import find_names_in_files

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    summary = find_names_in_files(args.input, args.out, model_uri=args.model, tracking_uri=args.tracking_uri,
                                  gazetteer_dir=args.gazetteer, format=args.format, concurrency=args.workers)
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary["quarantined"] == 0 and summary["failed"] == 0 else 1


def _add_score(sub) -> None:
    score = _add(sub, "score", "score candidates with a registered model", "Score candidates with a model.")
    score_sub = score.add_subparsers(dest="score_command", metavar="SCORE_COMMAND", required=True)
    p = _add(score_sub, "stamps", "real/bogus scores of the candidates in alert files or stamp Parquet", """
        Score every candidate with the real/bogus model (default models:/astroray-realbogus@champion from
        $ASTRORAY_HOME/mlflow.db): alert files 'astroray io' reads (ZTF/Rubin Avro, Fink/Rubin Parquet, JSON,
        astroray alerts) or the stamp Parquet of jobs/make_stamps.py, a file or a folder. Cutouts of other sizes
        are centre-cropped or padded. Writes OUT (Parquet: id, rb, real, threshold, model name and version, the
        survey's own scores) and OUT's .quarantine.parquet (what could not be scored, and why). Exit status 0
        when every record was scored, 1 when some were quarantined.""", """
        examples:
          astroray score stamps --input ../shared/data/alerts --out rb.parquet
          astroray score stamps --input .astroray/stamps/split=test --out test.parquet \\
              --model models:/astroray-realbogus/3""")
    p.add_argument("--input", required=True, metavar="PATH", help="an alert or stamp file, or a folder of them")
    p.add_argument("--out", required=True, metavar="FILE", help="the scores' Parquet file")
    p.add_argument("--model", metavar="URI", help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN/model "
                                                  "(default models:/astroray-realbogus@champion)")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow store (default $MLFLOW_TRACKING_URI, else "
                                                         "$ASTRORAY_HOME/mlflow.db)")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu", help="where the model runs (default cpu)")
    p.add_argument("--batch-size", type=int, default=512, metavar="N", help="stamps per forward pass (default 512)")
    p.add_argument("--quarantine", metavar="FILE", help="default: OUT with .quarantine.parquet")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_score)


def _cmd_score(args) -> int:
    from astroray.config import config_from_dict
    from astroray.models.scoring import StampScorerConfig
    from astroray.ray.score import score_stamps

    options = {"device": args.device, "batch_size": args.batch_size, "tracking_uri": args.tracking_uri}
    if args.model:
        options["model_uri"] = args.model
    config = config_from_dict(StampScorerConfig, options, source="astroray score stamps")
    report = score_stamps(args.input, args.out, config=config, quarantine=args.quarantine, overwrite=args.overwrite,
                          progress=not args.no_progress)
    print(json.dumps(report.to_dict(), indent=2, default=str))
    return 0 if report.n_quarantined == 0 else 1


def _add_classify(sub) -> None:
    classify = _add(sub, "classify", "classify light curves or alerts with registered models",
                    "Classify light curves, or score alerts.")
    classify_sub = classify.add_subparsers(dest="classify_command", metavar="CLASSIFY_COMMAND", required=True)
    p = _add(classify_sub, "lightcurves", "calibrated class probabilities of every light curve under PATH", """
        Classify every object in light-curve files with the light-curve transformer (default
        models:/astroray-lc-transformer@champion from $ASTRORAY_HOME/mlflow.db), many files at once with Ray
        Data: light-curve CSV/Parquet tables (one object per file, ALeRCE, SNANA), alert files (an object's
        alerts make its light curve) and astroray light-curve Parquet, a file or a folder. Writes OUT (.parquet
        or .csv: one row per object with path, object_id, class, probability, p_<CLASS> per class, n_points,
        calibrated, model name and version), OUT's .quarantine.parquet (bad files and objects, and why) and
        OUT's .manifest.parquet (every input file with its status: ok, partial, quarantined, skipped or
        failed). The alias is resolved once: every object is classified by the same version. With
        --rare-events or --support, the rare-event model (astroray-protonet) adds its own columns: rare-event
        class probabilities (over the --support folder's classes, when given), "none of these", an anomaly
        score and its uncertainty. Exit status 0 when no input was quarantined or failed, 1 otherwise.""", """
        examples:
          astroray classify lightcurves --input ../shared/data/lightcurves/rrlyrae --out rrlyrae.parquet
          astroray classify lightcurves --input alerts/ --out classes.csv --model models:/astroray-lc-transformer/3
          astroray classify lightcurves --input night/ --out rare.parquet --support known_91T_and_Iapec/""")
    p.add_argument("--input", required=True, metavar="PATH", help="a light-curve or alert file, or a folder of them")
    p.add_argument("--out", required=True, metavar="FILE", help="the predictions (.parquet or .csv)")
    p.add_argument("--model", metavar="URI", help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN/model "
                                                  "(default models:/astroray-lc-transformer@champion)")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow store (default $MLFLOW_TRACKING_URI, else "
                                                         "$ASTRORAY_HOME/mlflow.db)")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu", help="where the model runs (default cpu)")
    p.add_argument("--batch-size", type=int, default=1024, metavar="N", help="light curves per forward pass")
    p.add_argument("--files-per-batch", type=int, default=32, metavar="N", help="files per Ray Data batch")
    p.add_argument("--actors", type=int, metavar="N", help="classifier actors (default: one per free CPU)")
    p.add_argument("--num-gpus-per-actor", type=float, default=0.0, metavar="F", help="GPU share of each actor")
    p.add_argument("--rare-events", nargs="?", const="models:/astroray-protonet@champion", metavar="URI",
                   help="also score with a rare-event model (default models:/astroray-protonet@champion): adds "
                        "rare_class, rare_p_<CLASS>, open_set_score, none_of_these (far from every class), "
                        "anomaly_score (0-1 percentile), rare_entropy and rare_mutual_information (uncertainty)")
    p.add_argument("--support", metavar="DIR",
                   help="K labelled light curves of each class to look for, one subfolder per class "
                        "(DIR/<class>/...): the rare-event columns are over these classes, which the model need "
                        "never have seen (implies --rare-events)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=_cmd_classify)
    p = _add(classify_sub, "alerts", "real/bogus, class, rare-event and anomaly scores of every alert under PATH", """
        Score every alert in alert files (ZTF and Rubin Avro, Fink/Rubin Parquet, JSON), many files at once
        with Ray Data, with the registered models (default the champions of $ASTRORAY_HOME/mlflow.db:
        astroray-realbogus on the cutouts, astroray-lc-transformer and astroray-protonet on the history).
        Writes under OUT: predictions/ (Parquet, one row per alert keyed by alert_id), manifest.parquet (every
        input with its status), quarantine.parquet (bad files, repeated alert ids) and summary.json. The same
        as jobs/classify_alerts.py (whose --config sets every option). Exit status 0 when every alert file was
        scored, 1 otherwise.""", """
        examples:
          astroray classify alerts --input ../shared/data/alerts --out night-scores
          astroray classify alerts --input night/ --out scores --no-rare-events --overwrite""")
    p.add_argument("--input", required=True, metavar="PATH", help="an alert file, or a folder of them")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (empty or missing unless --overwrite)")
    p.add_argument("--config", metavar="FILE", help="a classify_alerts YAML (configs/classify_alerts.yaml)")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow store of the models (default $MLFLOW_TRACKING_URI, "
                                                         "else $ASTRORAY_HOME/mlflow.db)")
    for part, what in (("realbogus", "real/bogus"), ("classifier", "light-curve class"),
                       ("rare-events", "rare-event and anomaly")):
        p.add_argument(f"--no-{part}", action="store_true", help=f"skip the {what} scores")
    p.add_argument("--overwrite", action="store_true", help="replace the job's earlier outputs in OUT")
    p.set_defaults(func=_cmd_classify_alerts)


def _cmd_classify_alerts(args) -> int:
    from astroray.config import load_config
    from astroray.ray.alerts_job import ClassifyAlertsConfig, classify_alerts

    cfg = load_config(args.config, ClassifyAlertsConfig)
    scorer = {}
    if args.tracking_uri:
        scorer["tracking_uri"] = args.tracking_uri
    for part in ("realbogus", "classifier", "rare_events"):
        if getattr(args, f"no_{part}"):
            scorer[part] = None
    if scorer:
        cfg = cfg.with_updates(scorer=cfg.scorer.with_updates(**scorer))
    summary = classify_alerts(args.input, args.out, cfg, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary["files_quarantined"] + summary["files_failed"] + summary["files_lost"] == 0 else 1


def _cmd_classify(args) -> int:
    from astroray.config import config_from_dict
    from astroray.ray.classify import ClassifyLightCurvesConfig, classify_lightcurves

    options = {"device": args.device, "batch_size": args.batch_size, "tracking_uri": args.tracking_uri,
               "files_per_batch": args.files_per_batch, "actors": args.actors,
               "num_gpus_per_actor": args.num_gpus_per_actor, "rare_events_uri": args.rare_events,
               "support": args.support}
    if args.model:
        options["model_uri"] = args.model
    config = config_from_dict(ClassifyLightCurvesConfig, options, source="astroray classify lightcurves")
    summary = classify_lightcurves(args.input, args.out, config, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary["files_quarantined"] + summary["files_failed"] + summary["files_partial"] == 0 else 1


def _cmd_demo(args) -> int:
    from astroray.config import load_config
    from astroray.ray.demo import DemoConfig, run_demo

    overrides = {}
    if args.n_pairs is not None:
        overrides["n_pairs"] = args.n_pairs
    if args.size is not None:
        overrides["simulation"] = {"shape": [args.size, args.size]}
    if args.out:
        overrides["output_dir"] = args.out
    if args.no_track:
        overrides["track"] = False
    if args.no_realbogus:
        overrides["realbogus"] = None
    cfg = load_config(args.config, DemoConfig, **overrides)
    summary = run_demo(cfg, progress=not args.no_progress)
    return 0 if summary.n_ok > 0 and summary.n_failed == 0 else 1


def _cmd_io_check(args) -> int:
    from astroray.io.check import check_path

    from astroray.io.limits import ReadLimits

    limits = ReadLimits.from_env()
    changes = {k: v for k, v in (("max_file_mb", args.max_file_mb),
                                 ("max_decompressed_mb", args.max_decompressed_mb)) if v is not None}
    if changes:
        limits = limits.with_updates(**changes)
    report = check_path(args.path, progress=not args.no_progress, limits=limits)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report.to_text())
    return 0 if report.ok else 1


def _cmd_serve(args) -> int:
    import time

    from astroray.ray.serve.run import deploy_config, load_serve_config

    config = load_serve_config(args.config)
    urls = deploy_config(config)
    for url in urls:
        print(f"serving {url} (OpenAPI: {url.rstrip('/')}/docs); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        from ray import serve

        serve.shutdown()
    return 0


def _cmd_version(args) -> int:
    from importlib.metadata import PackageNotFoundError, version

    from astroray.kernels.backend import gpu_available, has_cupy

    print(f"astroray {__version__}")
    for pkg in ("ray", "numpy", "scipy", "astropy", "sep", "numba", "torch", "pytorch-lightning", "spacy",
                "mlflow", "optuna", "pyarrow", "fastavro", "cupy-cuda12x"):
        try:
            print(f"  {pkg:<18} {version(pkg)}")
        except PackageNotFoundError:
            print(f"  {pkg:<18} (not installed)")
    print(f"  cupy importable   {has_cupy()}")
    print(f"  CUDA GPU usable   {gpu_available()}")
    return 0


def _cmd_simulate(args) -> int:
    from astroray.datasets import write_simulated
    from astroray.datasets.writers import SIMULATORS, resolve_config

    config = args.config
    if args.size is not None:
        if args.kind != "images":
            raise ConfigError(f"--size applies to images, not {args.kind}")
        if args.size < 16:
            raise ConfigError(f"--size must be at least 16 pixels, got {args.size}")
        config = resolve_config(config, SIMULATORS["images"]).with_updates(shape=(args.size, args.size))
    summary = write_simulated(args.kind, n=args.n, out_dir=args.out, seed=args.seed, config=config,
                              plot=args.plot)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except AstrorayError as exc:
        print(f"astroray {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
