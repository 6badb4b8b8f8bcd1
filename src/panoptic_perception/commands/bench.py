"""`bench SUITE`: measure speed; results go to bench/RESULTS.md with machine, date, command."""
from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
from pathlib import Path

from panoptic_perception import benchmarks

HELP = "benchmark a part of the system (pipeline, synth, projection, eval, model ...)"
_NOT_SUITES = {"timing", "report"}


def _suites() -> dict:
    return {m.name: m.name for m in pkgutil.iter_modules(benchmarks.__path__)
            if not m.name.startswith("_") and m.name not in _NOT_SUITES}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="suite", metavar="SUITE")
    sub.required = True
    for name in _suites():
        module = importlib.import_module(f"{benchmarks.__name__}.{name}")
        suite = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(suite)
        suite.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
        suite.add_argument("--no-record", action="store_true",
                           help="print only; do not append to bench/RESULTS.md")
        suite.set_defaults(_suite=module)


def run(args: argparse.Namespace) -> int:
    from panoptic_perception.benchmarks.report import append_results, markdown_table
    from panoptic_perception.commands._outputs import check_writable

    check_writable(args.json, "--json")
    result = args._suite.run(args)
    rows = result.get("rows", [])
    if rows:
        print(markdown_table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
    if not args.no_record and result.get("record", True):
        path = append_results(result.get("title", args.suite), rows, result.get("notes", ""))
        print(f"bench: results appended to {path}")
    return 0
