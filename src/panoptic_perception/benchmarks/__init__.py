"""Benchmark suites for `python -m panoptic_perception bench SUITE`.

Each module here is one suite: HELP (one line), add_arguments(parser), and
run(args) -> dict whose "rows" (list of dicts) become a table in bench/RESULTS.md.
Timing helpers live in `timing.py`.
"""
