"""``vigil gc``: prune old run directories and the cache entries no kept run uses.

Run folders and the stage cache grow with every run (a full EEG run caches gigabytes of preprocessed signals).
``gc`` keeps the newest runs per flow and the cache entries those runs were built from, and deletes the rest. It is
deliberately conservative around running flows: a cache entry is only deleted when it is unreferenced *and* its
``.complete`` marker (touched on every use) is older than the start of the newest kept run, so an entry that a
running flow has used, or just built, survives even before that run has written its ``lineage.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.cache import DONE_MARKER, human_bytes
from tasks.rundir import RunFolder, runs_by_flow

log = logging.getLogger("vigil")

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

    Bytes are apparent file sizes (as ``du --apparent-size``) of files whose *last* hard link goes. Run folders
    made by vigil since the cache-trust change hold copies; older ones hard-linked their files from the cache, and
    for those deleting a run alone frees nothing. A file's bytes are credited to the category whose deletion
    removes its last link.
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


def _is_active(run: RunFolder, now: float) -> bool:
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

    kept: list[RunFolder] = []
    doomed_runs: list[RunFolder] = []
    for runs in runs_by_flow(data_root / "runs").values():
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
