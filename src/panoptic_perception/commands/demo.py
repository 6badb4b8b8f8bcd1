"""`demo`: the main job end to end (what `make demo` runs)."""
from __future__ import annotations

import argparse

HELP = "run the node on the shipped model and a synthetic drive, print where outputs went"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/demo", help="output directory (default: out/demo)")


def run(args: argparse.Namespace) -> int:
    print(
        "demo: the node, the shipped model and the synthetic drive are not built yet "
        "(issues 3-8); nothing to run. Package, messages and environment are set up."
    )
    return 0
