"""``vigil gc`` and ``vigil runs``: prune old runs and unused cache entries; list recent runs with their numbers.

Run folders and the stage cache grow with every run (a full EEG run caches gigabytes of preprocessed signals).
``gc`` keeps the newest runs per flow and the cache entries those runs were built from, and deletes the rest. It is
deliberately conservative around running flows: a cache entry is only deleted when it is unreferenced *and* its
``.complete`` marker (touched on every use) is older than the start of the newest kept run, so an entry that a
running flow has used, or just built, survives even before that run has written its ``lineage.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import time
from calendar import timegm
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.cache import DONE_MARKER
from tasks.compare import METRICS_BY_NAME, headline, is_failed, metrics_from_table, read_metrics, run_stamp, table_rows

log = logging.getLogger("vigil")

FLOW_NAMES = ("defect-detection", "seizure-prediction")
TMP_MAX_AGE_S = 3600.0  # a cache build that wrote nothing for an hour is dead (a killed run); see StageCache.build
ACTIVE_RUN_S = 3600.0  # a run folder without metrics.json touched this recently is a run still going


# ------------------------------------------------------------------------------------------------------------- gc


@dataclass
class GcCategory:
    """What gc removed (or, with ``dry_run``, would remove) of one kind."""

    count: int = 0
    bytes: int = 0
    paths: list[Path] = field(default_factory=list)


@dataclass
class GcReport:
    """Counts and bytes freed per category, plus what was kept.

    Bytes are apparent file sizes (as ``du --apparent-size``) of files whose *last* hard link goes: run folders
    hard-link their files from the cache, so deleting a run alone frees nothing for those files. A file's bytes
    are credited to the category whose deletion removes its last link.
    """

    runs: GcCategory = field(default_factory=GcCategory)
    cache: GcCategory = field(default_factory=GcCategory)
    tmp: GcCategory = field(default_factory=GcCategory)
    kept_runs: int = 0
    kept_cache_entries: int = 0
    dry_run: bool = False

    @property
    def bytes_freed(self) -> int:
        return self.runs.bytes + self.cache.bytes + self.tmp.bytes


@dataclass(frozen=True)
class _Run:
    path: Path
    flow: str
    stamp: str

    @property
    def started(self) -> float:
        """Start time in epoch seconds (the folder's UTC timestamp prefix)."""
        return float(timegm(time.strptime(self.stamp, "%Y%m%dT%H%M%SZ")))


def _walk_files(root: Path) -> Iterator[os.stat_result]:
    """lstat of every file under ``root`` without following symlinks (a link into the inputs is not ours)."""
    for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames:
            try:
                yield os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue


def _newest_mtime(root: Path) -> float:
    """The newest modification time of ``root`` or anything under it: a build writing deep inside counts."""
    newest = root.lstat().st_mtime
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except FileNotFoundError:
                continue
    return newest


def _runs_by_flow(runs_root: Path) -> dict[str, list[_Run]]:
    """Run folders per flow, oldest first; folders without a ``<stamp>-<name>`` shape are not runs and are left."""
    out: dict[str, list[_Run]] = {}
    if not runs_root.is_dir():
        return out
    for flow_dir in sorted(p for p in runs_root.iterdir() if p.is_dir()):
        runs = [_Run(p, flow_dir.name, s) for p in flow_dir.iterdir() if p.is_dir() and (s := run_stamp(p))]
        out[flow_dir.name] = sorted(runs, key=lambda r: (r.stamp, r.path.name))
    return out


def _is_active(run: _Run, now: float) -> bool:
    """No metrics.json yet and written to recently: a flow still going (possibly a resumed, older-named one)."""
    return not (run.path / "metrics.json").is_file() and now - _newest_mtime(run.path) < ACTIVE_RUN_S


def _cache_ref(value: str, cache_root: Path) -> tuple[str, str] | None:
    """``(stage, key)`` when ``value`` is a path inside ``cache/<stage>/<key>/``."""
    try:
        rel = Path(value).relative_to(cache_root)
    except ValueError:
        return None
    return (rel.parts[0], rel.parts[1]) if len(rel.parts) >= 2 else None


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def referenced_keys(run_dirs: list[Path], cache_root: Path) -> set[str]:
    """Cache keys the given runs were built from.

    From each run's ``lineage.json``: the ``stage_keys`` values, ``dataset.ingest_key`` and ``dataset.simulate_key``
    (when present), and any path inside the cache. Then, transitively, any cache path inside a referenced entry's
    ``summary.json``: the EEG ingest entry records its input root, which for simulated data is
    ``cache/simulate/<key>/data``, so the simulator's output stays with the runs that used it.

    Keys are matched without their stage on purpose: lineage names some stages by task (``train-detection``)
    while the cache folder is ``train``; keys are 16 hex characters of a hash that includes the stage name.
    """
    keys: set[str] = set()
    for run_dir in run_dirs:
        lineage = _read_json(run_dir / "lineage.json")
        if not isinstance(lineage, dict):
            continue
        keys.update(str(v) for v in (lineage.get("stage_keys") or {}).values() if v)
        dataset = lineage.get("dataset") or {}
        keys.update(str(dataset[k]) for k in ("ingest_key", "simulate_key") if dataset.get(k))
        keys.update(ref[1] for s in _strings(lineage) if (ref := _cache_ref(s, cache_root)))
    pending = set(keys)
    seen: set[str] = set()
    while pending:
        key = pending.pop()
        seen.add(key)
        for summary in cache_root.glob(f"*/{key}/summary.json"):
            for s in _strings(_read_json(summary)):
                ref = _cache_ref(s, cache_root)
                if ref and ref[1] not in seen:
                    keys.add(ref[1])
                    pending.add(ref[1])
    return keys


def _entry_last_used(entry: Path) -> float:
    """When a cache entry was last built or reused (its marker's mtime); a marker-less leftover by its contents."""
    marker = entry / DONE_MARKER
    return marker.stat().st_mtime if marker.is_file() else _newest_mtime(entry)


def gc(data_root: Path, keep: int, dry_run: bool = False, *, now: float | None = None) -> GcReport:
    """Keep the newest ``keep`` run folders per flow and the cache entries they use; delete the rest.

    Args:
        data_root: ``$VIGIL_DATA`` (holds ``runs/`` and ``cache/``).
        keep: Run folders to keep per flow, newest by the timestamp prefix of the folder name. At least 1: the
            newest run may still be running.
        dry_run: Work out and report everything, delete nothing.
        now: The current time in epoch seconds (tests pass it to age ``.tmp-*`` folders).

    A cache entry ``cache/<stage>/<key>/`` is deleted only when no kept run's lineage references it **and** its
    ``.complete`` marker is older than the newest kept run's start. A run folder without metrics.json that was
    written to in the last hour is a flow still going and is never deleted. ``.tmp-*`` build folders in which
    nothing changed for an hour are leftovers of killed runs and are deleted.

    Raises:
        ValueError: When ``keep`` is below 1.
    """
    if keep < 1:
        raise ValueError(f"--keep {keep}: keep at least 1 run per flow (the newest one may still be running)")
    now = time.time() if now is None else now
    report = GcReport(dry_run=dry_run)
    cache_root = data_root / "cache"

    kept: list[_Run] = []
    doomed_runs: list[_Run] = []
    for runs in _runs_by_flow(data_root / "runs").values():
        old, new = runs[:-keep], runs[-keep:]
        kept += new
        for run in old:
            (kept if _is_active(run, now) else doomed_runs).append(run)
    report.kept_runs = len(kept)
    cutoff = max((r.started for r in kept), default=now)
    keys = referenced_keys([r.path for r in kept], cache_root)

    doomed_entries: list[Path] = []
    doomed_tmp: list[Path] = []
    if cache_root.is_dir():
        for stage_dir in sorted(p for p in cache_root.iterdir() if p.is_dir()):
            for entry in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
                if entry.name.startswith(".tmp-"):
                    if now - _newest_mtime(entry) > TMP_MAX_AGE_S:
                        doomed_tmp.append(entry)
                elif entry.name in keys or _entry_last_used(entry) >= cutoff:
                    report.kept_cache_entries += 1
                else:
                    doomed_entries.append(entry)

    # Only the removal of a file's last link frees its bytes; count links inside everything that goes.
    plan = [
        (report.runs, [r.path for r in doomed_runs]),
        (report.cache, doomed_entries),
        (report.tmp, doomed_tmp),
    ]
    links: dict[tuple[int, int], int] = {}
    for category, paths in plan:
        for path in paths:
            for st in _walk_files(path):
                inode = (st.st_dev, st.st_ino)
                links[inode] = links.get(inode, 0) + 1
                if links[inode] == st.st_nlink:
                    category.bytes += st.st_size
            category.count += 1
            category.paths.append(path)
    if not dry_run:
        for _category, paths in plan:
            for path in paths:
                shutil.rmtree(path, ignore_errors=True)
    return report


def human_bytes(n: int) -> str:
    """``1.2 GB`` (decimal units, like ``df -H``)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def format_gc(report: GcReport) -> str:
    """``freed 1.2 GB: 14 runs, 37 cache entries, 2 temporary folders`` (``would free`` for a dry run)."""
    verb = "would free" if report.dry_run else "freed"
    parts = [f"{report.runs.count} runs", f"{report.cache.count} cache entries"]
    if report.tmp.count:
        parts.append(f"{report.tmp.count} temporary folders")
    kept = f"kept {report.kept_runs} runs and {report.kept_cache_entries} cache entries"
    return f"{verb} {human_bytes(report.bytes_freed)}: {', '.join(parts)}; {kept}"


def cmd_gc(args: argparse.Namespace) -> int:
    """``vigil gc --keep N [--dry-run]``: prune and print one summary line (a dry run also lists the paths)."""
    from tasks.rundir import data_root

    try:
        report = gc(data_root(), args.keep, dry_run=args.dry_run)
    except ValueError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 2
    if report.dry_run:
        for category in (report.runs, report.cache, report.tmp):
            for path in category.paths:
                print(f"would delete {path}")
    print(format_gc(report))
    return 0


# ----------------------------------------------------------------------------------------------------------- runs


def _dir_rows(data_root: Path) -> list[dict[str, Any]]:
    """One row per run folder (newest first), from its metrics.json; a folder without one is running or killed."""
    rows = []
    for flow, runs in _runs_by_flow(data_root / "runs").items():
        for run in runs:
            metrics = read_metrics(run.path)
            status = "running?" if metrics is None else "FAILED" if is_failed(metrics) else "ok"
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
    """API rows completed with their run folder (path, profile, exact numbers); folder-only runs are kept too."""
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
        out.append(row)
    out += by_name.values()
    out.sort(key=lambda r: (r["_stamp"], r["run"]), reverse=True)
    return out


def list_runs(data_root: Path, limit: int = 20, *, use_api: bool | None = None) -> list[dict[str, Any]]:
    """Recent runs, newest first, with their headline metrics.

    With a Prefect API configured (``PREFECT_API_URL``) and reachable, the flow runs and their table artifacts
    are listed, including runs whose folders live on other machines or were pruned, and whose state
    (``Running``, ``Crashed``) the folders cannot know; local folders fill in path and profile. Otherwise, or
    when the API does not answer within 10 s, the run folders alone are listed. Without a configured API no
    temporary server is started: it would cost seconds and show the same history the folders hold.

    Args:
        data_root: ``$VIGIL_DATA``.
        limit: How many rows.
        use_api: Force the API on or off; None decides by whether ``PREFECT_API_URL`` is set.

    Returns:
        Dicts with ``run, flow, started (UTC), dataset, profile, status, headline ({dotted name: value}), path,
        source (api|dir)``.
    """
    import httpx

    dirs = _dir_rows(data_root)
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
    """``vigil runs [--limit N]``: recent runs with their headline metrics, newest first."""
    from tasks.rundir import data_root

    rows = list_runs(data_root(), args.limit)
    print(format_runs(rows) if rows else f"no runs under {data_root() / 'runs'}")
    return 0
