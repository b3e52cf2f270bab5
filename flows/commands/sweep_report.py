"""What a sweep leaves: ``sweep.csv`` (one row per run) and ``sweep.html`` (mean ± sd per configuration, the best
on validation marked, a metric-vs-parameter plot), and the same summary as a Prefect table artifact.

The best is chosen by a validation score only (defect: ``selection.value``, the chosen candidate's validation
metric); a flow whose metrics carry no validation score (EEG today) gets no "best" mark rather than one chosen on
test.
"""

from __future__ import annotations

import html
import itertools
import json
import statistics
from pathlib import Path
from typing import Any

import pandas as pd

from flows.commands.compare_runs import flatten

#: The validation score a flow's sweep chooses by (a metrics.json key), or None when it has none.
SELECT_KEY = {"defect": "selection.value", "eeg": None}
#: Metrics summarised per configuration (the ones present in a flow's metrics.json are used).
SUMMARY_KEYS = (
    "selection.value",
    "test.accuracy",
    "test.balanced_accuracy",
    "test.roc_auc",
    "baseline.balanced_accuracy",
    "detection.window.balanced_accuracy",
    "detection.event.f1",
    "prediction.sensitivity",
    "prediction.fpr_per_h",
)


def sweep_rows(points: list[dict[str, Any]], seeds: list[int], run_dirs: list[str | None]) -> pd.DataFrame:
    """One row per run: the grid point's parameters, the seed, the status, the summary metrics, the run folder."""
    rows = []
    runs = itertools.product(range(len(points)), seeds)
    for (index, seed), run_dir in zip(runs, run_dirs, strict=True):
        metrics_path = Path(run_dir) / "metrics.json" if run_dir else None
        metrics = json.loads(metrics_path.read_text()) if metrics_path and metrics_path.is_file() else {}
        flat = flatten(metrics)
        status = "failed" if not metrics or "error" in metrics else "ok"
        row = {"config": index, **points[index], "seed": seed, "status": status, "run_dir": run_dir or ""}
        row |= {k: flat.get(k) for k in SUMMARY_KEYS if k in flat}
        rows.append(row)
    return pd.DataFrame(rows)


def summarise(rows: pd.DataFrame, params: list[str], select: str | None) -> tuple[pd.DataFrame, int | None]:
    """Mean ± sd over seeds per configuration (completed runs only), and the index of the best one by ``select``."""
    metrics = [k for k in SUMMARY_KEYS if k in rows]
    out = []
    for index, group in rows[rows["status"] == "ok"].groupby("config", sort=True):
        entry: dict[str, Any] = {"config": index, **{p: group[p].iloc[0] for p in params}, "n_seeds": len(group)}
        for key in metrics:
            values = [float(v) for v in group[key] if v is not None and v == v]
            entry[f"{key} mean"] = statistics.fmean(values) if values else None
            entry[f"{key} sd"] = statistics.stdev(values) if len(values) > 1 else None
        out.append(entry)
    summary = pd.DataFrame(out)
    best = None
    if select and not summary.empty and f"{select} mean" in summary and summary[f"{select} mean"].notna().any():
        best = int(summary.loc[summary[f"{select} mean"].idxmax(), "config"])
    return summary, best


def _plot(summary: pd.DataFrame, param: str, key: str) -> str:
    """A metric-vs-parameter plot (mean ± sd over seeds) as an inline PNG tag, or '' when nothing to draw."""
    from matplotlib.figure import Figure

    from tasks.report.common import img_tag
    from tasks.report.plots import fig_to_png

    if summary.empty or f"{key} mean" not in summary:
        return ""
    fig = Figure(figsize=(5, 3.2))
    ax = fig.subplots()
    x = [str(v) for v in summary[param]]
    ax.errorbar(x, summary[f"{key} mean"], yerr=summary[f"{key} sd"].fillna(0.0), fmt="o-", capsize=4)
    ax.set(xlabel=param, ylabel=key, title=f"{key} vs {param} (mean ± sd over seeds)")
    return img_tag(fig_to_png(fig), f"{key} vs {param}")


def _cell(entry: pd.Series, key: str) -> str:
    mean, sd = entry.get(f"{key} mean"), entry.get(f"{key} sd")
    if mean is None or mean != mean:
        return "-"
    return f"{mean:.4f}" + (f" ± {sd:.4f}" if sd is not None and sd == sd else "")


def summary_table(summary: pd.DataFrame, points: list[dict[str, Any]], best: int | None) -> list[dict[str, str]]:
    """Rows for sweep.html and the table artifact: parameters (as the grid wrote them), seeds, mean ± sd per
    metric, the best marked."""
    keys = [k for k in SUMMARY_KEYS if f"{k} mean" in summary]
    return [
        {"best on validation": "★" if best == int(e["config"]) else ""}
        | {p: json.dumps(v) for p, v in points[int(e["config"])].items()}
        | {"seeds": str(int(e["n_seeds"]))}
        | {k: _cell(e, k) for k in keys}
        for _, e in summary.iterrows()
    ]


def write_sweep(
    out: Path, flow: str, rows: pd.DataFrame, points: list[dict[str, Any]], select: str | None, command: str
) -> list[dict[str, str]]:
    """sweep.csv and sweep.html in ``out``; returns the summary rows (for the table artifact)."""
    from tasks.report.common import html_table

    params = list(points[0])
    rows.to_csv(out / "sweep.csv", index=False)
    summary, best = summarise(rows, params, select)
    table = summary_table(summary, points, best)
    why = (
        f"Best configuration chosen on validation by mean {select} over seeds (★)."
        if select
        else "This flow's metrics carry no validation score, so no configuration is marked best (never on test)."
    )
    failed = int((rows["status"] != "ok").sum())
    plot_key = select or next((k for k in SUMMARY_KEYS if f"{k} mean" in summary), None)
    body = [
        f"<h1>vigil sweep: {html.escape(flow)}</h1>",
        f"<p><code>{html.escape(command)}</code></p>",
        f"<p>{len(rows)} runs ({failed} failed), {len(summary)} configurations. {html.escape(why)}</p>",
        html_table(table),
        _plot(summary, params[0], plot_key) if plot_key else "",
        "<h2>Runs</h2>",
        html_table(rows.astype(str).to_dict("records")),
    ]
    page = "<!doctype html><meta charset='utf-8'><title>vigil sweep</title>" + "\n".join(body)
    (out / "sweep.html").write_text(page, encoding="utf-8")
    return table
