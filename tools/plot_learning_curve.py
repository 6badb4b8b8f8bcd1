#!/usr/bin/env python3
"""Learning curves of training runs side by side: loss and held-out PQ against the iteration.

    python tools/plot_learning_curve.py --run "ImageNet init=runs/light_imagenet" \
        --run "random init=runs/light_scratch" --out docs/learning_curve.png

Reads each run's log.csv (training losses, every log_every iterations) and eval.csv (PQ on the
validation frames, every eval_every iterations), as `train` writes them.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402 - after the backend choice


def _read_csv(path: Path) -> List[Dict[str, float]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]


def _run_arg(text: str) -> Tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"--run takes LABEL=RUN_DIR, got {text!r}")
    return label, Path(path)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=_run_arg, action="append", required=True, help="LABEL=RUN_DIR (repeat)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--title", default="Light model on the synthetic world: random vs ImageNet backbone")
    args = parser.parse_args(argv)

    fig, (ax_loss, ax_pq) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for label, run in args.run:
        log, evals = _read_csv(run / "log.csv"), _read_csv(run / "eval.csv")
        if not log:
            print(f"error: {run / 'log.csv'} is missing or empty", file=sys.stderr)
            return 2
        line, = ax_loss.plot([r["iteration"] for r in log], [r["loss"] for r in log], label=label, lw=1.2)
        if evals:
            its = [r["iteration"] for r in evals]
            ax_pq.plot(its, [r["val_pq"] for r in evals], "o-", color=line.get_color(), label=f"{label}: PQ")
            ax_pq.plot(its, [r["val_pq_things"] for r in evals], "s--", color=line.get_color(), alpha=0.7,
                       label=f"{label}: PQ things")
    ax_loss.set(xlabel="iteration (batch 4)", ylabel="training loss (sum of terms)", title="loss")
    ax_pq.set(xlabel="iteration (batch 4)", ylabel="PQ on validation drives (%)", title="panoptic quality")
    for ax in (ax_loss, ax_pq):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(args.title, fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
