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
