"""``vigil runs``: recent runs with their headline metrics, newest first.

The Prefect API knows every run's state, the run folders know their metrics; the index merges both, and falls back
to the folders alone when no API answers, so the command works on a laptop with no server running.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

from flows.commands.gc import _is_active
from tasks.compare import METRICS_BY_NAME, headline, is_failed, metrics_from_table, read_metrics, table_rows
from tasks.rundir import FLOW_NAMES, runs_by_flow

log = logging.getLogger("vigil")


#: Status of a run folder without metrics.json that nothing has written to for ACTIVE_RUN_S: its process died
#: (killed, out of memory, machine restarted) before the report; ``--name`` with its name resumes it.
CRASHED = "crashed?"


def _dir_rows(data_root: Path, now: float | None = None) -> list[dict[str, Any]]:
    """One row per run folder (newest first), from its metrics.json.

    A folder without one is still running if something under it was written in the last ``ACTIVE_RUN_S`` seconds
    (the rule ``vigil gc`` uses to spare it, ``flows.commands.gc.ACTIVE_RUN_S``), else ``crashed?``.
    """
    now = time.time() if now is None else now
    rows = []
    for flow, runs in runs_by_flow(data_root / "runs").items():
        for run in runs:
            metrics = read_metrics(run.path)
            if metrics is None:
                status = "running?" if _is_active(run, now) else CRASHED
            else:
                status = "FAILED" if is_failed(metrics) else "ok"
            rows.append(
                {
                    "run": run.path.name[17:],
                    "flow": (metrics or {}).get("flow", flow),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run.started)),
                    "dataset": (metrics or {}).get("dataset", ""),
                    "profile": (metrics or {}).get("profile", ""),
                    "status": status,
                    "headline": headline(metrics or {}),
                    "path": str(run.path),
                    "source": "dir",
                    "_stamp": run.stamp,
                }
            )
    rows.sort(key=lambda r: (r["_stamp"], r["run"]), reverse=True)
    return rows


async def _api_rows(limit: int) -> list[dict[str, Any]]:
    """Recent flow runs of vigil's flows with the numbers of their table artifacts, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
        FlowFilter,
        FlowFilterName,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    rows: list[dict[str, Any]] = []
    async with get_client() as client:
        exc = await client.api_healthcheck()
        if exc is not None:
            raise ConnectionError(f"Prefect API unreachable: {exc}")
        for flow in FLOW_NAMES:
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])), sort=FlowRunSort.START_TIME_DESC, limit=limit
            )
            if not runs:
                continue
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[r.id for r in runs]),
                    type=ArtifactFilterType(any_=["table"]),
                )
            )
            tables = {a.flow_run_id: a for a in artifacts if a.key and a.key.endswith("-metrics")}
            for r in runs:
                table = tables.get(r.id)
                started = r.start_time or r.expected_start_time
                failed_desc = bool(table and (table.description or "").startswith("FAILED"))
                dataset = table.key[len(flow) + 1 : -len("-metrics")] if table and table.key else ""
                rows.append(
                    {
                        "run": r.name,
                        "flow": flow,
                        "started": started.strftime("%Y-%m-%d %H:%M:%S") if started else "",
                        "dataset": dataset,
                        "profile": "",
                        "status": "FAILED" if failed_desc else ("ok" if r.state_name == "Completed" else r.state_name),
                        "headline": headline(metrics_from_table(table_rows(table.data))) if table else {},
                        "path": "",
                        "source": "api",
                        "_stamp": started.strftime("%Y%m%dT%H%M%SZ") if started else "",
                    }
                )
    return rows


def _merge(api: list[dict[str, Any]], dirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """API rows completed with their run folder (path, profile, exact numbers); folder-only runs are kept too.

    A run the API still calls ``Running`` whose folder has gone quiet is shown as ``crashed?``: a killed process
    cannot tell the server it died, so its state stays ``Running`` until Prefect's own heartbeat check notices.
    """
    by_name = {(r["flow"], r["run"]): r for r in reversed(dirs)}  # reversed: the newest folder of a name wins
    out = []
    for row in api:
        local = by_name.pop((row["flow"], row["run"]), None)
        if local is not None:
            row = {
                **row,
                "path": local["path"],
                "profile": local["profile"],
                "dataset": local["dataset"] or row["dataset"],
            }
            if local["headline"]:
                row["headline"] = local["headline"]
            if row["status"] == "Running" and local["status"] == CRASHED:
                row["status"] = CRASHED
        out.append(row)
    out += by_name.values()
    out.sort(key=lambda r: (r["_stamp"], r["run"]), reverse=True)
    return out


def list_runs(
    data_root: Path, limit: int = 20, *, use_api: bool | None = None, now: float | None = None
) -> list[dict[str, Any]]:
    """Recent runs, newest first, with their headline metrics.

    With a Prefect API configured (``PREFECT_API_URL``) and reachable, the flow runs and their table artifacts
    are listed, including runs whose folders live on other machines or were pruned, and whose state
    (``Running``, ``Crashed``) the folders cannot know; local folders fill in path and profile. Otherwise, or
    when the API does not answer within 10 s, the run folders alone are listed. Without a configured API no
    temporary server is started: it would cost seconds and show the same history the folders hold. A folder
    without ``metrics.json`` is ``running?`` while written to, else ``crashed?``; the API's ``Crashed``, ``Failed``
    or ``Cancelled`` is shown as it is.

    Args:
        data_root: ``$VIGIL_DATA``.
        limit: How many rows.
        use_api: Force the API on or off; None decides by whether ``PREFECT_API_URL`` is set.
        now: The current time (epoch seconds) for telling running folders from crashed ones; default: the clock.

    Returns:
        Dicts with ``run, flow, started (UTC), dataset, profile, status, headline ({dotted name: value}), path,
        source (api|dir)``.
    """
    import httpx

    dirs = _dir_rows(data_root, now)
    if use_api is None:
        from prefect.settings import PREFECT_API_URL

        use_api = bool(PREFECT_API_URL.value())
    rows = dirs
    if use_api:
        try:
            rows = _merge(asyncio.run(asyncio.wait_for(_api_rows(limit), timeout=10)), dirs)
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            log.warning("vigil runs: Prefect API not usable (%s); listing the run folders", exc)
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows[:limit]]


def _headline_text(values: dict[str, float]) -> str:
    return " ".join(f"{METRICS_BY_NAME[k].label} {v:.3f}" for k, v in values.items()) or "-"


def format_runs(rows: list[dict[str, Any]]) -> str:
    """A plain-text table: started, flow, run, dataset, profile, status, headline numbers, path."""
    header = ("started (UTC)", "flow", "run", "dataset", "profile", "status", "headline", "path")
    table = [header] + [
        (
            r["started"],
            r["flow"],
            r["run"],
            r["dataset"],
            r["profile"],
            r["status"],
            _headline_text(r["headline"]),
            r["path"],
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(f"{str(v):<{w}}" for v, w in zip(row[:-1], widths, strict=True)) + f"  {row[-1]}" for row in table
    ]
    return "\n".join(line.rstrip() for line in lines)


def cmd_runs(args: argparse.Namespace) -> int:
    """``vigil runs [--limit N]``: recent runs with their headline metrics, newest first; ``--compare A B``: what
    differs between two runs (flows/commands/compare_runs.py)."""
    from tasks.rundir import data_root

    if getattr(args, "compare", None):
        from flows.commands.compare_runs import compare_runs, resolve_run

        try:
            run_a, run_b = (resolve_run(data_root(), ref) for ref in args.compare)
        except ValueError as exc:
            print(f"vigil runs --compare: {exc}", file=sys.stderr)
            return 2
        print(compare_runs(run_a, run_b))
        return 0
    rows = list_runs(data_root(), args.limit)
    print(format_runs(rows) if rows else f"no runs under {data_root() / 'runs'}")
    return 0
