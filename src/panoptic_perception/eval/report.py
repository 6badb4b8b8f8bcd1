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


# -- fusion comparison (Table 1 of the Inria report: heuristic fusions vs its conv panoptic head, per class) --------

def comparison_to_dict(results: Dict[str, PQResult]) -> Dict[str, Any]:
    """{"modes": [...], "results": {mode: result_to_dict}}: every number of every fusion mode."""
    return {"modes": list(results), "results": {mode: result_to_dict(r) for mode, r in results.items()},
            "units": "percent"}


def _best(values: List[float]) -> List[bool]:
    """Which values are the best (ties below the printed precision mark every winner; no mark when all tie)."""
    present = [round(v, 2) for v in values if not math.isnan(v)]
    if len(set(present)) < 2:
        return [False] * len(values)
    return [not math.isnan(v) and round(v, 2) == max(present) for v in values]


def _comparison_rows(results: Dict[str, PQResult], mark) -> tuple:
    modes = list(results)
    first = results[modes[0]]
    summary_header = ["fusion", "PQ", "SQ", "RQ", "PQ things", "PQ stuff", "mIoU"]
    summary = []
    for mode, r in results.items():
        summary.append([mode] + [_f(v) for v in (r.all.pq, r.all.sq, r.all.rq, r.things.pq, r.stuff.pq, r.miou)])

    class_header = ["class", "kind", "GT"] + [f"PQ {m}" for m in modes] + [f"IoU {m}" for m in modes]
    rows = []
    # things first (what the fusions differ on), then stuff; classes absent from GT and predictions are left out
    for want_thing in (True, False):
        for index, c in enumerate(first.per_class):
            if c.is_thing != want_thing:
                continue
            per_mode = [r.per_class[index] for r in results.values()]
            if all(p.tp + p.fp + p.fn == 0 for p in per_mode):
                continue
            gt_segments = c.tp + c.fn
            pqs = [p.pq if p.tp + p.fp + p.fn > 0 else float("nan") for p in per_mode]
            ious = [p.iou for p in per_mode]
            cells = [mark(_f(v), b) for v, b in zip(pqs, _best(pqs))]
            cells += [mark(_f(v), b) for v, b in zip(ious, _best(ious))]
            rows.append([c.name, "thing" if c.is_thing else "stuff", str(gt_segments)] + cells)
    return summary_header, summary, class_header, rows


def format_comparison(results: Dict[str, PQResult]) -> str:
    """Text tables: summary per fusion mode, then per-class PQ and IoU side by side (* = best)."""
    summary_header, summary, class_header, rows = _comparison_rows(
        results, lambda text, best: text + ("*" if best else " "))
    images = next(iter(results.values())).num_images
    return (_table(summary_header, summary) + f"\n({images} images, same frames for every fusion)\n\n"
            + _table(class_header, rows)
            + "\n* best of the fusions for that class (ties marked on all, none when all tie); "
            "GT = ground-truth segments")


def _markdown_table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_comparison_markdown(results: Dict[str, PQResult]) -> str:
    """The same tables in markdown (best per class in bold), for reports and the model card."""
    summary_header, summary, class_header, rows = _comparison_rows(
        results, lambda text, best: f"**{text}**" if best else text)
    images = next(iter(results.values())).num_images
    return (_markdown_table(summary_header, summary) + "\n\n"
            + _markdown_table(class_header, rows)
            + f"\n\nPQ, SQ, RQ, IoU in percent on {images} images; GT = ground-truth segments of the class; "
            "bold = best fusion for the class (none when all tie).\n")
