"""Build the fuzz corpus (corrupted variants of every format astroray reads) and read it under limits.

Counts per outcome (accepted, refused, untyped, hang, memory, died) for each reader and for `io check`,
silent acceptances of the cases that must be refused, and the slowest reads; JSON to stdout and to
benchmarks/results/fuzz_corpus.json (every variant's result in it too).

    python benchmarks/fuzz_corpus.py --shared ../shared/data
    python benchmarks/fuzz_corpus.py --shared ../shared/data --timeout-s 10 --memory-mb 512
"""
import argparse
import sys
import tempfile
from pathlib import Path

from astroray.testing.fuzz import main as fuzz_main

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                        help="the shared real-data folder")
    parser.add_argument("--out", default=None, help="corpus folder (default: a temporary folder, removed after)")
    parser.add_argument("--timeout-s", type=float, default=20.0, help="deadline of each read")
    parser.add_argument("--memory-mb", type=int, default=768, help="address space a reader may add")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    shared = args.shared if Path(args.shared, "README.md").is_file() else None
    with tempfile.TemporaryDirectory(prefix="astroray-fuzz-") as tmp:
        out = args.out or tmp
        forwarded = ["--out", out, "--seed", str(args.seed), "--timeout-s", str(args.timeout_s),
                     "--memory-mb", str(args.memory_mb), "--report", str(RESULTS / "fuzz_corpus.json")]
        if shared:
            forwarded += ["--shared", shared]
        return fuzz_main(forwarded)


if __name__ == "__main__":
    sys.exit(main())
