"""``vigil runs --compare RUN RUN``: what differs between two runs — their configs and their metrics.

A sweep or a rerun changes a few settings and moves a few numbers; reading two ``config.yaml`` and two
``metrics.json`` side by side by hand is where mistakes happen. A run is named by its folder or by its run name
(the newest run of that exact name in any flow).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from tasks.rundir import FLOW_NAMES, find_run_dir

#: metrics.json sections that differ between any two runs and say nothing about the model.
_VOLATILE = ("timing_s", "cached", "vigil_version", "regression", "run")


def resolve_run(root: Path, ref: str) -> Path:
    """A run folder from a path or a run name; ValueError naming what was looked for when neither exists."""
    path = Path(ref).expanduser()
    if (path / "metrics.json").is_file() or (path / "config.yaml").is_file():
        return path.resolve()
    found = [d for flow in FLOW_NAMES if (d := find_run_dir(root, flow, ref)) is not None]
    if not found:
        raise ValueError(f"{ref}: neither a run folder nor the name of a run under {root / 'runs'}")
    return max(found, key=lambda d: d.name)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": leaf}`` for nested mappings; lists stay leaves (a confusion matrix is one value)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def _read(path: Path, loader: Any) -> dict[str, Any]:
    return flatten(loader(path.read_text())) if path.is_file() else {}


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, a, b)`` for every key whose values differ (missing on one side counts), sorted by key."""
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def _delta(a: Any, b: Any) -> str:
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if not numeric or not all(math.isfinite(v) for v in (a, b)):
        return ""
    return f"{b - a:+.4f}"


def compare_runs(run_a: Path, run_b: Path) -> str:
    """The text ``vigil runs --compare`` prints: config differences, then metric differences with B - A."""
    config = differences(_read(run_a / "config.yaml", yaml.safe_load), _read(run_b / "config.yaml", yaml.safe_load))
    metrics = [
        row
        for row in differences(_read(run_a / "metrics.json", json.loads), _read(run_b / "metrics.json", json.loads))
        if row[0].split(".")[0] not in _VOLATILE and not row[0].endswith("seconds")
    ]
    lines = [f"A: {run_a}", f"B: {run_b}", "", f"config differences ({len(config)}):"]
    lines += [f"  {k}: {_cell(a)} -> {_cell(b)}" for k, a, b in config] or ["  none"]
    lines += ["", f"metric differences ({len(metrics)}; B - A):"]
    lines += [f"  {k}: {_cell(a)} -> {_cell(b)} {_delta(a, b)}".rstrip() for k, a, b in metrics] or ["  none"]
    return "\n".join(lines)
