"""PQ results as text tables (what `eval` prints) and as plain data (what `--json` writes)."""
from __future__ import annotations

import math
from typing import Any, Dict, List

from panoptic_perception.eval.pq import PQResult, PQSummary


def _num(value: float) -> Any:
    # JSON has no nan: absent values become null
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(value, 6)


def result_to_dict(result: PQResult) -> Dict[str, Any]:
    def summary(s: PQSummary) -> Dict[str, Any]:
        return {"pq": _num(s.pq), "sq": _num(s.sq), "rq": _num(s.rq), "n": s.n}

    return {
        "num_images": result.num_images,
        "All": summary(result.all),
        "Things": summary(result.things),
        "Stuff": summary(result.stuff),
        "miou": _num(result.miou),
        "per_class": [
            {"id": c.id, "name": c.name, "isthing": int(c.is_thing), "pq": _num(c.pq), "sq": _num(c.sq),
             "rq": _num(c.rq), "tp": c.tp, "fp": c.fp, "fn": c.fn, "iou": _num(c.iou)}
            for c in result.per_class
        ],
        "units": "percent",
    }


def _table(header: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
              for i in range(len(header))]

    def line(cells: List[str]) -> str:
        # first column (names) left-aligned, numbers right-aligned
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(cells, widths)))

    first = line(header)
    return "\n".join([first, "-" * len(first)] + [line(r) for r in rows])


def _f(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def format_summary(result: PQResult) -> str:
    rows = [[name, _f(s.pq), _f(s.sq), _f(s.rq), str(s.n)]
            for name, s in (("All", result.all), ("Things", result.things), ("Stuff", result.stuff))]
    return (_table(["", "PQ", "SQ", "RQ", "N"], rows)
            + f"\nmIoU {_f(result.miou)}  ({result.num_images} images)")


def format_per_class(result: PQResult) -> str:
    rows = []
    for c in result.per_class:
        present = c.tp + c.fp + c.fn > 0
        rows.append([f"{c.id} {c.name}", "thing" if c.is_thing else "stuff",
                     _f(c.pq) if present else "-", _f(c.sq) if present else "-", _f(c.rq) if present else "-",
                     str(c.tp), str(c.fp), str(c.fn), _f(c.iou)])
    return _table(["class", "kind", "PQ", "SQ", "RQ", "TP", "FP", "FN", "IoU"], rows)


def format_report(result: PQResult) -> str:
    return format_summary(result) + "\n\n" + format_per_class(result)
