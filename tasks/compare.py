"""Compare a run's headline metrics with the previous comparable run, and flag regressions.

A number on its own says little; "0.031 lower than yesterday's run on the same data" says a lot. The previous
run is read from the run directories (primary: they are on disk, complete and survive without a server) or from
the Prefect API's versioned table artifact ``<flow>-<dataset slug>-metrics`` (an alternative when the run folders
were pruned or live on another machine).

The regression rule, per metric (``compare``):

- Fractions in [0, 1] (accuracy, balanced accuracy, F1, ROC AUC, sensitivity, and the p-value) use an
  **absolute** tolerance in fraction points: with ``tolerance=0.02`` a drop from 0.910 to 0.889 (2.1 points) is a
  regression, a drop to 0.891 is noise. For the p-value (lower is better) a *rise* beyond the tolerance counts.
- Rates (false positives per 24 h, false predictions per hour; lower is better) have no natural scale, so they use a
  **relative** tolerance: a rise of more than ``rate_tolerance`` times the previous value is a regression
  (default 0.25: 2.0 -> 2.6 FP/24 h is one, 2.0 -> 2.4 is not). A per-metric floor on the reference value (one
  false alarm a day) keeps 0 -> 0.1 FP/24 h from counting as an infinite relative rise.
- A metric missing, ``None`` or not finite on either side is shown but never flagged: a new metric or a skipped
  task (prediction not feasible) is not a regression.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

RATE_TOLERANCE = 0.25
_EPS = 1e-12  # so a drop of exactly the tolerance is not flagged through float rounding


@dataclass(frozen=True)
class HeadlineMetric:
    """One headline number: its dotted metrics.json name, which way is better, and how its tolerance works.

    Attributes:
        name: Dotted path into metrics.json (``test.accuracy`` is ``{"test": {"accuracy": ...}}``).
        higher_is_better: False for false-alarm rates and the p-value.
        kind: ``fraction`` (absolute tolerance in fraction points) or ``rate`` (relative tolerance).
        label: Short column label for ``vigil runs``.
        floor: For rates, the smallest reference value the relative tolerance is taken of (same unit as the metric).
    """

    name: str
    higher_is_better: bool
    kind: Literal["fraction", "rate"]
    label: str
    floor: float = 0.0


HEADLINE_METRICS: tuple[HeadlineMetric, ...] = (
    # defect-detection
    HeadlineMetric("test.accuracy", True, "fraction", "acc"),
    HeadlineMetric("test.balanced_accuracy", True, "fraction", "bacc"),
    HeadlineMetric("test.roc_auc", True, "fraction", "auc"),
    HeadlineMetric("test.f1", True, "fraction", "f1"),
    # seizure-prediction: detection
    HeadlineMetric("detection.event.sensitivity", True, "fraction", "det.sens"),
    HeadlineMetric("detection.event.f1", True, "fraction", "det.f1"),
    HeadlineMetric("detection.window.roc_auc", True, "fraction", "det.auc"),
    HeadlineMetric("detection.event.fp_per_24h", False, "rate", "fp/24h", floor=1.0),
    # seizure-prediction: prediction
    HeadlineMetric("prediction.sensitivity", True, "fraction", "pred.sens"),
    HeadlineMetric("prediction.roc_auc", True, "fraction", "pred.auc"),
    HeadlineMetric("prediction.fpr_per_h", False, "rate", "fp/h", floor=1.0 / 24.0),
    HeadlineMetric("prediction.p_value", False, "fraction", "p"),
)
METRICS_BY_NAME: dict[str, HeadlineMetric] = {m.name: m for m in HEADLINE_METRICS}
LOWER_IS_BETTER: frozenset[str] = frozenset(m.name for m in HEADLINE_METRICS if not m.higher_is_better)


def _lookup(metrics: Mapping[str, Any], dotted: str) -> Any:
    """``metrics[dotted]`` when the dict is flat, else the nested value; None when absent."""
    if dotted in metrics:
        return metrics[dotted]
    node: Any = metrics
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _number(value: Any) -> float | None:
    """A finite float, else None (booleans, strings like "n/a", NaN from a one-class ROC AUC)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def headline(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The headline numbers present in ``metrics``, keyed by dotted name, in ``HEADLINE_METRICS`` order.

    Accepts a nested metrics.json dict or a flat ``{"test.accuracy": 0.9}`` dict, so numbers read back from a
    Prefect table artifact compare the same way as numbers read from a run directory. Which way is better for
    each name is in ``METRICS_BY_NAME`` (``LOWER_IS_BETTER`` lists the rates and the p-value).
    """
    out: dict[str, float] = {}
    for metric in HEADLINE_METRICS:
        value = _number(_lookup(metrics, metric.name))
        if value is not None:
            out[metric.name] = value
    return out


@dataclass(frozen=True)
class ComparisonRow:
    """One metric in a comparison. ``delta`` is ``current - previous`` in the metric's own unit."""

    name: str
    previous: float | None
    current: float | None
    delta: float | None
    worse: bool
    higher_is_better: bool = True
    allowed: float | None = None  # the largest change in the bad direction that is still tolerated

    @property
    def better(self) -> bool:
        """Improved by more than the tolerance (the mirror image of ``worse``)."""
        if self.delta is None or self.allowed is None:
            return False
        gain = self.delta if self.higher_is_better else -self.delta
        return gain > self.allowed + _EPS

    def change(self) -> str:
        """Signed change, plus the relative change for rates (``+0.600 (+30%)``); ``n/a`` when not comparable."""
        if self.delta is None:
            return "n/a"
        text = f"{self.delta:+.3f}"
        metric = METRICS_BY_NAME.get(self.name)
        if metric is not None and metric.kind == "rate" and self.previous:
            text += f" ({self.delta / self.previous:+.0%})"
        return text


@dataclass(frozen=True)
class Comparison:
    """The per-metric comparison of a run with an earlier one, and whether any metric regressed."""

    rows: tuple[ComparisonRow, ...]
    tolerance: float
    rate_tolerance: float
    previous_label: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def regressions(self) -> list[ComparisonRow]:
        return [r for r in self.rows if r.worse]

    @property
    def regressed(self) -> bool:
        return any(r.worse for r in self.rows)

    def flag(self) -> str:
        """``REGRESSION: test.accuracy -0.031 vs <previous run>`` for artifact descriptions; empty when none."""
        if not self.regressed:
            return ""
        worst = ", ".join(f"{r.name} {r.change()}" for r in self.regressions)
        return f"REGRESSION: {worst} vs {self.previous_label or 'the previous run'}"

    def summary(self) -> str:
        """One sentence for the report: what was compared, with which rule, and the verdict."""
        rule = (
            f"a fraction falling by more than {self.tolerance:.3f} ({100 * self.tolerance:.1f} points) or a rate "
            f"rising by more than {self.rate_tolerance:.0%} counts as a regression"
        )
        verdict = self.flag() if self.regressed else "no regression"
        return f"Compared with {self.previous_label or 'the previous run'}; {rule}: {verdict}."

    def to_dict(self) -> dict[str, Any]:
        """The ``regression`` section of metrics.json (rows keep dotted names as values, not as nesting)."""
        return {
            "previous_run": self.previous_label,
            "regressed": self.regressed,
            "tolerance": self.tolerance,
            "rate_tolerance": self.rate_tolerance,
            "regressions": [r.name for r in self.regressions],
            "rows": [
                {"name": r.name, "previous": r.previous, "current": r.current, "delta": r.delta, "worse": r.worse}
                for r in self.rows
            ],
            **self.extra,
        }


def _allowed(metric: HeadlineMetric, previous: float, tolerance: float, rate_tolerance: float) -> float:
    if metric.kind == "rate":
        return rate_tolerance * max(abs(previous), metric.floor)
    return tolerance


def compare(
    current: Mapping[str, Any],
    previous: Mapping[str, Any],
    tolerance: float,
    *,
    rate_tolerance: float = RATE_TOLERANCE,
    previous_label: str | None = None,
) -> Comparison:
    """Compare the headline metrics of two runs (nested metrics.json dicts or flat dotted dicts).

    Args:
        current: This run's metrics.
        previous: The earlier run's metrics.
        tolerance: Absolute tolerance for fractions, in fraction points (0.02 = two points). See the module
            docstring for the full rule.
        rate_tolerance: Relative tolerance for per-time rates (0.25 = a 25 % rise).
        previous_label: How to name the earlier run in the flag and the report (its run folder's name);
            defaults to ``previous["run"]`` when the dict carries one (``previous_from_api`` sets it).

    Returns:
        One row per headline metric present on either side, in ``HEADLINE_METRICS`` order.

    Raises:
        ValueError: For a negative tolerance (it would flag every unchanged metric).
    """
    if tolerance < 0 or rate_tolerance < 0:
        raise ValueError(f"tolerances must be >= 0, got tolerance={tolerance}, rate_tolerance={rate_tolerance}")
    cur, prev = headline(current), headline(previous)
    rows = []
    for metric in HEADLINE_METRICS:
        c, p = cur.get(metric.name), prev.get(metric.name)
        if c is None and p is None:
            continue
        if c is None or p is None:
            rows.append(ComparisonRow(metric.name, p, c, None, False, metric.higher_is_better))
            continue
        delta = c - p
        allowed = _allowed(metric, p, tolerance, rate_tolerance)
        loss = -delta if metric.higher_is_better else delta
        rows.append(ComparisonRow(metric.name, p, c, delta, loss > allowed + _EPS, metric.higher_is_better, allowed))
    label = previous_label if previous_label is not None else previous.get("run")
    return Comparison(tuple(rows), tolerance, rate_tolerance, str(label) if label is not None else None)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def comparison_rows(c: Comparison) -> list[dict[str, str]]:
    """Rows ``metric | better when | previous | current | change | verdict`` for the HTML and markdown tables."""
    rows = []
    for r in c.rows:
        if r.delta is None:
            verdict = "new" if r.previous is None else "missing"
        else:
            verdict = "REGRESSION" if r.worse else "better" if r.better else "ok"
        rows.append(
            {
                "metric": r.name,
                "better when": "higher" if r.higher_is_better else "lower",
                "previous": _fmt(r.previous),
                "current": _fmt(r.current),
                "change": r.change(),
                "verdict": verdict,
            }
        )
    return rows


def comparison_markdown(c: Comparison) -> str:
    """A markdown block (sentence + GFM table) for the report artifact; renders in the Prefect UI."""
    rows = comparison_rows(c)
    lines = [c.summary(), ""]
    if rows:
        cols = list(rows[0])
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(row[col] for col in cols) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ the run-directory source


def run_stamp(run_dir: Path) -> str | None:
    """The ``YYYYmmddTHHMMSSZ`` prefix of a run folder's name, or None when the folder is not a run."""
    stamp = run_dir.name[:16]
    if len(run_dir.name) > 17 and run_dir.name[16] == "-" and stamp[8] == "T" and stamp.endswith("Z"):
        digits = stamp[:8] + stamp[9:15]
        if digits.isdigit():
            return stamp
    return None


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """metrics.json of a run, or None when it is missing or unreadable (a run still going, or killed)."""
    try:
        data = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def is_failed(metrics: Mapping[str, Any]) -> bool:
    """A run that stopped with an error (including one failed for a regression: it must not become the baseline)."""
    return "error" in metrics


def previous_run(runs_root: Path, flow: str, dataset: str, before: Path, *, profile: str | None = None) -> Path | None:
    """The newest run folder of ``flow`` on ``dataset`` that started before ``before`` and did not fail.

    Args:
        runs_root: ``$VIGIL_DATA/runs``.
        flow: Flow name, which is also the folder under ``runs_root`` (``defect-detection``).
        dataset: The ``dataset`` slug in metrics.json; other data sets are never comparable.
        before: The current run folder: it and every run that started at or after it are skipped. A folder
            without a timestamp prefix counts as "now", so every finished run qualifies.
        profile: When given, only runs of this profile: a ``quick`` run is not a regression of a ``full`` one.

    Returns:
        The folder, or None when there is nothing to compare with.
    """
    limit = run_stamp(before)
    best: tuple[str, str, Path] | None = None
    base = runs_root / flow
    if not base.is_dir():
        return None
    for candidate in base.iterdir():
        stamp = run_stamp(candidate)
        if stamp is None or not candidate.is_dir() or candidate.resolve() == before.resolve():
            continue
        if limit is not None and stamp >= limit:
            continue
        metrics = read_metrics(candidate)
        if metrics is None or is_failed(metrics) or metrics.get("dataset") != dataset:
            continue
        if profile is not None and metrics.get("profile") != profile:
            continue
        key = (stamp, candidate.name, candidate)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best else None


def regression_check(
    metrics: Mapping[str, Any],
    run_dir: Path,
    tolerance: float,
    *,
    rate_tolerance: float = RATE_TOLERANCE,
) -> Comparison | None:
    """Compare a finished run's metrics with the previous comparable run folder; None when there is none.

    The comparable run is the newest earlier, non-failed run of the same flow, data set and profile
    (``previous_run``). ``run_dir`` must be ``<runs root>/<flow>/<stamp>-<name>``. A failed run is not compared:
    its numbers are partial.
    """
    if is_failed(metrics):
        return None
    prev_dir = previous_run(
        run_dir.parent.parent,
        str(metrics.get("flow", run_dir.parent.name)),
        str(metrics.get("dataset", "")),
        run_dir,
        profile=metrics.get("profile"),
    )
    previous = read_metrics(prev_dir) if prev_dir else None
    if prev_dir is None or previous is None:
        return None
    return compare(metrics, previous, tolerance, rate_tolerance=rate_tolerance, previous_label=prev_dir.name)


# ----------------------------------------------------------------------------------------- the Prefect API source

# The EEG table artifact labels its rows for people; map them back to metrics.json names.
_EEG_TABLE_NAMES: dict[tuple[str, str], str] = {
    ("detection", "event sensitivity"): "detection.event.sensitivity",
    ("detection", "event F1"): "detection.event.f1",
    ("detection", "false positives / 24 h"): "detection.event.fp_per_24h",
    ("detection", "window ROC AUC"): "detection.window.roc_auc",
    ("prediction", "sensitivity"): "prediction.sensitivity",
    ("prediction", "false predictions / h"): "prediction.fpr_per_h",
    ("prediction", "window ROC AUC"): "prediction.roc_auc",
    ("prediction", "p-value vs random predictor"): "prediction.p_value",
}


def _parse_number(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return _number(value)


def _set_dotted(out: dict[str, Any], dotted: str, value: float) -> None:
    *parents, leaf = dotted.split(".")
    node = out
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def metrics_from_table(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Headline metrics (nested, metrics.json-shaped) from the rows of a ``*-metrics`` table artifact.

    Understands the defect table (``metric | model | baseline``: ``test.<metric>``), the EEG table
    (``task | metric | value`` with readable labels) and rows whose ``metric`` already is a dotted name. The
    tables hold formatted numbers (3-4 decimals), so API-sourced comparisons are good to about 0.0005.
    """
    out: dict[str, Any] = {}
    for row in rows:
        name = str(row.get("metric", ""))
        if name in METRICS_BY_NAME:
            dotted, raw = name, row.get("value", row.get("model"))
        elif "task" in row:
            dotted, raw = _EEG_TABLE_NAMES.get((str(row["task"]), name), ""), row.get("value")
        elif "model" in row:
            dotted, raw = f"test.{name}", row.get("model")
        else:
            continue
        value = _parse_number(raw)
        if dotted in METRICS_BY_NAME and value is not None:
            _set_dotted(out, dotted, value)
    return out


def table_rows(data: Any) -> list[dict[str, Any]]:
    """A table artifact's ``data`` (a JSON string of a list of rows, or of a dict of columns) as a list of rows."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError:
            return []
    if isinstance(data, dict):
        cols = list(data)
        return [dict(zip(cols, values, strict=False)) for values in zip(*data.values(), strict=False)]
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)]
    return []


async def previous_from_api(
    key: str, *, exclude_flow_run_id: UUID | str | None = None, limit: int = 10
) -> dict[str, Any] | None:
    """The newest non-failed version of the table artifact ``key``, as metrics.json-shaped headline numbers.

    The alternative source for ``compare`` when run folders were pruned or are on another machine. Versions
    whose description starts with ``FAILED`` (the report's failure line) are skipped, as is the current flow run
    when ``exclude_flow_run_id`` is given (call this before the current run publishes its table, or pass its id).

    Returns:
        ``{"run": <flow run name>, "flow_run_id": ..., "created": ..., "test": {...}}`` or None when no usable
        version exists. ``compare`` reads the numbers and uses ``run`` as the previous run's label.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, ArtifactFilterType
    from prefect.client.schemas.sorting import ArtifactSort

    exclude = str(exclude_flow_run_id) if exclude_flow_run_id is not None else None
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]), type=ArtifactFilterType(any_=["table"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=limit,
        )
        for artifact in artifacts:
            if exclude is not None and str(artifact.flow_run_id) == exclude:
                continue
            if (artifact.description or "").startswith("FAILED"):
                continue
            numbers = metrics_from_table(table_rows(artifact.data))
            if not headline(numbers):
                continue
            run = str(artifact.flow_run_id) if artifact.flow_run_id else None
            if artifact.flow_run_id is not None:
                flow_run = await client.read_flow_run(artifact.flow_run_id)
                run = flow_run.name
            created = artifact.created.isoformat() if artifact.created else None
            return {"run": run, "flow_run_id": str(artifact.flow_run_id), "created": created, **numbers}
    return None
