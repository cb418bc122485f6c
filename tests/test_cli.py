"""The `astroray` command: help everywhere, io check on the shared data, clear errors."""
import subprocess
import sys

import pytest

from astroray.cli import build_parser, main


def _subcommands(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _subcommands(sub, prefix + (name,))


@pytest.mark.parametrize("command", [c for c in _subcommands(build_parser())], ids=" ".join)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: astroray " + " ".join(command)) and len(out) > 120


def test_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "astroray.cli", "version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("astroray ")
    assert "CUDA GPU usable" in proc.stdout


@pytest.mark.parametrize("folder", ["alerts", "lightcurves"])
def test_io_check_accounts_for_every_shared_file(shared_data, folder, capsys):
    import json
    import os

    assert main(["io", "check", str(shared_data / folder), "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    n_files = sum(len(files) for _, _, files in os.walk(shared_data / folder))
    assert report["n_files"] == n_files
    assert report["failures"] == []


def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys):
    cfg = tmp_path / "demo.yaml"
    cfg.write_text("n_pairs: 2\nsimulaton: {}\n")
    assert main(["demo", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "demo.yaml" in err and "simulaton" in err and "unknown key" in err


def test_simulate_images_with_a_size(tmp_path, capsys):
    from astroray.io import read_exposure

    assert main(["simulate", "images", "--n", "1", "--size", "96", "--out", str(tmp_path / "sim")]) == 0
    (ref,) = sorted((tmp_path / "sim").glob("*_reference.fits"))
    assert read_exposure(ref).shape == (96, 96)
    capsys.readouterr()
    assert main(["simulate", "lightcurves", "--n", "1", "--size", "96", "--out", str(tmp_path / "lc")]) == 2
    assert "--size applies to images" in capsys.readouterr().err
