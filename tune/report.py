"""The sweep's table: one row per variant, mean ± std over seeds of each final metric, as Markdown and
CSV, plus one plot per metric against the swept knob. (The MLflow-backed tables with confidence
intervals live in ``ablations/``.)"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

METRICS = {  # column -> key of the trial's final report
    "D": "encoder/eval/disentanglement", "C": "encoder/eval/completeness", "I": "encoder/eval/informativeness_test",
    "SAP": "encoder/eval/sap", "MIG": "encoder/eval/mig", "Smoothness": "encoder/eval/smoothness",
    "Top-1": "encoder/eval/probe_top1",
}


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else float("nan")
    return mean, std


def aggregate(rows: list[dict], order: list[str]) -> list[dict]:
    """rows: {"variant", "status", metric keys...} per trial -> one dict per variant (in ``order``)."""
    table = []
    for variant in order:
        done = [r for r in rows if r["variant"] == variant and r["status"] == "ok"]
        entry = {"variant": variant, "n": len(done), "failed": sum(r["variant"] == variant and r["status"] != "ok"
                                                                   for r in rows)}
        for column, key in METRICS.items():
            values = [r[key] for r in done if key in r and r[key] is not None and not math.isnan(r[key])]
            entry[column] = _mean_std(values) if values else None
        table.append(entry)
    return table


def _cell(value: tuple[float, float] | None) -> str:
    if value is None:
        return "–"
    mean, std = value
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def to_markdown(table: list[dict], knob: str) -> str:
    columns = [c for c in METRICS if any(row[c] is not None for row in table)]
    lines = [f"| {knob} | n | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for row in table:
        n = f"{row['n']}" + (f" ({row['failed']} failed)" if row["failed"] else "")
        lines.append(f"| {row['variant']} | {n} | " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["variant", "n", "failed"] + [f"{c}_{s}" for c in METRICS for s in ("mean", "std")])
    for row in table:
        values = [x for c in METRICS for x in (row[c] if row[c] is not None else (None, None))]
        writer.writerow([row["variant"], row["n"], row["failed"], *values])
    return out.getvalue()


def plot(table: list[dict], knob: str, path: Path) -> Path:
    """One panel per metric: mean with std error bars against the variants."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in METRICS if any(row[c] is not None for row in table)]
    fig, axes = plt.subplots(1, max(len(columns), 1), figsize=(3.2 * max(len(columns), 1), 3), squeeze=False)
    for ax, column in zip(axes[0], columns, strict=False):
        xs = [i for i, row in enumerate(table) if row[column] is not None]
        means = [table[i][column][0] for i in xs]
        stds = [0.0 if math.isnan(table[i][column][1]) else table[i][column][1] for i in xs]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3)
        ax.set_xticks(range(len(table)), [row["variant"] for row in table], rotation=45, ha="right", fontsize=7)
        ax.set_title(column)
    fig.suptitle(knob)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
