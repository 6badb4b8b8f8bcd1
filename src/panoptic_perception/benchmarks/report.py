"""Append a benchmark's results to bench/RESULTS.md with machine, date and command."""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Dict, List, Sequence

from panoptic_perception.paths import SHARE_ROOT

RESULTS_PATH = SHARE_ROOT / "bench" / "RESULTS.md"


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
    try:
        import torch

        text += f", torch {torch.__version__}, {torch.get_num_threads()} threads"
        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


def markdown_table(rows: Sequence[Dict[str, object]]) -> str:
    if not rows:
        return "(no rows)\n"
    columns: List[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)

    def fmt(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def append_results(title: str, rows: Sequence[Dict[str, object]], notes: str = "",
                   path: Path = RESULTS_PATH, argv: Sequence[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "python -m panoptic_perception " + " ".join(shlex.quote(a) for a in argv)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = [f"\n## {title}\n", f"- date: {now}", f"- machine: {machine_description()}",
             f"- command: `{command}`"]
    if notes:
        block.append(f"- notes: {notes}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("# Benchmark results\n\nAppended by `python -m panoptic_perception bench ...`; "
                        "newest last. Medians unless stated.\n")
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(block) + "\n\n" + markdown_table(rows))
    return path
