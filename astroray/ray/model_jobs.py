"""The command line shared by the model jobs (``jobs/train_*.py``, ``jobs/tune_*.py``).

Each job is a config class and a function of that config returning a summary;
:func:`run_model_job` gives them one interface: ``--config`` (YAML, else the
defaults), one data-folder override, ``--tracking-uri``, ``--no-register``;
the summary printed as JSON; exit 0, or 2 with one line on a bad config or data.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from astroray.config import load_config
from astroray.errors import AstrorayError

__all__ = ["run_model_job"]


def run_model_job(argv: list[str] | None, *, doc: str, name: str, config_class, run: Callable[..., dict],
                  config_help: str = "training YAML (default: built-in defaults)",
                  data_option: tuple[str, str, str] = ("--data", "data", "data folder (overrides the config's data)"),
                  ) -> int:
    """Parse ``argv``, load ``config_class`` with the overrides, call ``run(config)`` and print its summary.

    ``data_option`` is ``(flag, config field, help)`` of the job's data override.
    """
    flag, field, data_help = data_option
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help=config_help)
    parser.add_argument(flag, dest="data_override", default=None, help=data_help)
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (absolute); default $ASTRORAY_HOME")
    parser.add_argument("--no-register", action="store_true", help="log the model but do not move the champion")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in ((field, args.data_override), ("tracking_uri", args.tracking_uri)) if v}
    if args.no_register:
        overrides["register_model"] = False
    try:
        summary = run(load_config(args.config, config_class, **overrides))
    except AstrorayError as exc:
        print(f"{name} failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0
