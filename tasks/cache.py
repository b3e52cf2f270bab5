"""Content-addressed stage outputs under ``$VIGIL_DATA/cache/<stage>/<key>/``.

A key hashes what a stage's output depends on: the upstream keys (which hash the input content), the stage's
config section, the seed and the code version. Prefect's own result cache keys on task source text only
(Prefect issue #23062), so vigil keys on a hash of all of its source files instead: any code change reruns.

An entry is written into a temporary folder and renamed into place when complete, so a killed run never leaves a
half-written entry that a later run would trust. The last file written is the completion marker (``.complete``,
itself written to a temporary name and renamed): it records the size and sha256 of every file of the entry, so a
file truncated, emptied or edited later (a full disk, a careless ``rm``, a hand edit) is noticed on reuse and the
entry is recomputed instead of silently feeding the next stage or crashing every rerun.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from pydantic import BaseModel

_PACKAGES = ("flows", "tasks", "models")
DONE_MARKER = ".complete"
#: Version of the marker's content; a marker without it (or older) records no checksums and is not trusted.
MARKER_FORMAT = 2
#: Files up to this size are hashed on every reuse (summaries, tables: microseconds). Larger ones (signals, weights,
#: arrays) are checked by size, and hashed only when their modification time differs from the one recorded, so a
#: 1 GB entry is verified in milliseconds while a truncated or rewritten file is still caught.
HASH_ON_REUSE_MAX_BYTES = 1 << 20
#: Stages that read user files retry twice and give up after this long, so a hung network share fails the run
#: (with its report) instead of blocking a scheduled flow forever. Generous: 8 h of EEG preprocess in seconds.
FILE_STAGE_TIMEOUT_S = 4 * 3600


@lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 over vigil's own Python sources (path + bytes), 12 hex characters."""
    here = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in _PACKAGES:
        for path in sorted((here / pkg).rglob("*.py")):
            h.update(path.relative_to(here).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    return value


def stage_key(stage: str, *parts: Any) -> str:
    """Hash ``parts`` (configs, upstream keys, seed, fingerprints) with the stage name and code version."""
    payload = json.dumps([stage, code_version(), *[_jsonable(p) for p in parts]], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- entry checksums


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def entry_files(folder: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {size, mtime_ns, sha256}}`` of every file under ``folder`` but the completion marker."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel == DONE_MARKER:
            continue
        st = path.stat()
        out[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(path)}
    return out


def write_marker(folder: Path, stage: str, key: str) -> None:
    """Write ``folder/.complete`` last, atomically (temporary name + ``os.replace``), with every file's checksum."""
    marker = {
        "format": MARKER_FORMAT,
        "created": time.time(),
        "stage": stage,
        "key": key,
        "files": entry_files(folder),
    }
    tmp = folder / f"{DONE_MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=1))
    os.replace(tmp, folder / DONE_MARKER)


def _file_problem(folder: Path, rel: str, recorded: dict[str, Any]) -> str | None:
    path = folder / rel
    try:
        st = path.stat()
    except OSError:
        return f"{rel} is missing"
    if st.st_size != recorded.get("size"):
        return f"{rel} has {st.st_size} bytes where {recorded.get('size')} were written (truncated or changed)"
    small = st.st_size <= HASH_ON_REUSE_MAX_BYTES
    if (small or st.st_mtime_ns != recorded.get("mtime_ns")) and file_sha256(path) != recorded.get("sha256"):
        return f"{rel} differs from the checksum recorded when the entry was written (changed since)"
    return None


def entry_problem(folder: Path) -> str | None:
    """Why the entry in ``folder`` cannot be trusted, naming the file, or None when it is intact.

    Every recorded file must exist with its recorded size; files up to ``HASH_ON_REUSE_MAX_BYTES``, and larger files
    whose modification time changed, must also match their sha256. ``summary.json`` must be recorded and hold a
    JSON object. A marker without checksums (written by vigil before checksums) is not trusted.
    """
    try:
        marker = json.loads((folder / DONE_MARKER).read_text())
    except (OSError, ValueError):
        return f"its completion marker {DONE_MARKER} is unreadable or not JSON"
    files = marker.get("files") if isinstance(marker, dict) else None
    if not isinstance(files, dict) or marker.get("format") != MARKER_FORMAT:
        return f"its completion marker {DONE_MARKER} records no file checksums (an entry of an older vigil)"
    if "summary.json" not in files:
        return "summary.json is missing"
    for rel, recorded in files.items():
        if problem := _file_problem(folder, rel, recorded if isinstance(recorded, dict) else {}):
            return problem
    return None


# ------------------------------------------------------------------------------------ one-sentence errors, disk full


class StageError(ValueError):
    """A problem with the user's data or settings: reported as one sentence, never as a traceback."""


#: What numpy (``ndarray.tofile``, ``np.save``) and torch.save raise on a full disk: no errno, so they count as a
#: full disk only when the disk has under ``NEARLY_FULL_BYTES`` left.
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written|inline_container|PytorchStreamWriter|file write failed")
NEARLY_FULL_BYTES = 64 << 20


class DiskFullError(StageError):
    """A write ran out of disk space (or quota): one sentence naming the folder, never a traceback."""


def human_bytes(n: float) -> str:
    """``5.5 MB`` (decimal units, like ``df -H``)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def free_bytes(folder: Path) -> int | None:
    """Bytes free to this user on the disk holding ``folder`` (or its nearest existing parent)."""
    for candidate in (folder, *folder.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def is_disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether ``exc``, raised while writing under ``folder``, means that its disk (or quota) is full.

    ``OSError`` ENOSPC or EDQUOT says so. numpy reports a short write as ``"N requested and M written"`` and
    torch.save as an ``inline_container`` RuntimeError, both without an errno: those count when the disk has under
    ``NEARLY_FULL_BYTES`` left (measured before the failed write is cleaned up).
    """
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, OSError | RuntimeError) and _SHORT_WRITE.search(str(exc)):
        free = free_bytes(folder)
        return free is not None and free < NEARLY_FULL_BYTES
    return False


def disk_full_message(folder: Path, *, needed: int | None = None, written: int | None = None) -> str:
    """One sentence for a full disk: the folder, what more was needed (``needed`` bytes in all, less what is free) or
    written when known, what is free, what to do."""
    facts = []
    free = free_bytes(folder)
    if needed is not None and needed > (free or 0):
        facts.append(f"needed ~{human_bytes(needed - (free or 0))} more")
    if written:
        facts.append(f"{human_bytes(written)} written there before it filled")
    if free is not None:
        facts.append(f"{human_bytes(free)} free")
    detail = f" ({'; '.join(facts)})" if facts else ""
    return f"no space left on device under {folder}{detail}; free space or set VIGIL_DATA to a larger disk"


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


# ----------------------------------------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class StageCache:
    root: Path

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def has(self, stage: str, key: str) -> bool:
        """Whether the entry was completed (its marker exists); :meth:`problem` says whether it is still intact."""
        return (self.path(stage, key) / DONE_MARKER).is_file()

    def problem(self, stage: str, key: str) -> str | None:
        """Why the completed entry cannot be reused (see :func:`entry_problem`), or None."""
        return entry_problem(self.path(stage, key))

    @contextmanager
    def build(self, stage: str, key: str, *, replace: bool = False) -> Iterator[Path]:
        """Yield an empty temporary folder; on success it becomes the entry, on failure it is removed.

        The completion marker with every file's checksum is written last, so whatever the caller writes into the
        folder (``summary.json`` included) must be complete when the ``with`` block ends. A full disk, in the
        caller's writes or in the marker's, raises ``DiskFullError`` naming ``cache/<stage>``. An intact entry that
        another run completed meanwhile is kept (same key, same content) unless ``replace`` (``--refresh``: the
        user asked for new outputs, which may differ, e.g. trained with another thread count).
        """
        final = self.path(stage, key)
        tmp = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        old = final.parent / f".old-{key}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir(parents=True)
            yield tmp
            write_marker(tmp, stage, key)
            if not replace and final.exists() and entry_problem(final) is None:
                return
            if final.exists():
                os.replace(final, old)  # out of the way in one step; removed below
            os.replace(tmp, final)
        except (OSError, RuntimeError) as exc:
            if not is_disk_full(exc, final.parent):
                raise
            raise DiskFullError(disk_full_message(final.parent, written=_folder_bytes(tmp))) from exc
        finally:
            for leftover in (tmp, old):
                if leftover.exists():
                    shutil.rmtree(leftover, ignore_errors=True)

    @contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        """Hold ``cache/.locks/<stage>-<key>`` (an exclusive ``flock``) while building that entry.

        Two runs that need the same entry at once (a sweep, two users on one data root) then compute it once: the
        second waits, with a log line, and reuses what the first wrote. The kernel releases the lock when its holder
        exits, so a killed run never leaves the entry locked.
        """
        path = self.root / ".locks" / f"{stage}-{key}"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                _logger().info("cache: another run is building %s/%s; waiting for it", stage, key)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def touch(self, stage: str, key: str) -> None:
        """Record a use, so ``vigil gc`` can keep recently used entries."""
        marker = self.path(stage, key) / DONE_MARKER
        if marker.exists():
            os.utime(marker)


class StageResult(BaseModel):
    """What a stage hands to the next: where its outputs are, and a small summary for the report."""

    stage: str
    key: str
    path: str
    cached: bool
    seconds: float
    summary: dict[str, Any] = {}
    error: str | None = None

    @property
    def dir(self) -> Path:
        return Path(self.path)


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run (the UI and run.log show it), else the ``vigil`` logger."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("vigil")


def _reuse(cache: StageCache, stage: str, key: str) -> StageResult | None:
    """The record of an intact entry; None, with a warning naming the entry and the file, when it is damaged."""
    final = cache.path(stage, key)
    problem = cache.problem(stage, key)
    if problem is None:
        try:
            summary = json.loads((final / "summary.json").read_text())
        except (OSError, ValueError):
            summary = None
        if isinstance(summary, dict):
            cache.touch(stage, key)
            return StageResult(stage=stage, key=key, path=str(final), cached=True, seconds=0.0, summary=summary)
        problem = "summary.json is empty or not a JSON object"
    _logger().warning("cache: entry %s/%s is not usable: %s; recomputing it", stage, key, problem)
    return None


def run_stage(
    cache: StageCache,
    stage: str,
    key: str,
    build: Callable[[Path], dict[str, Any]],
    refresh: bool = False,
) -> StageResult:
    """Reuse ``cache/<stage>/<key>`` when complete and intact (unless ``refresh``), else build it with ``build(tmp)``.

    ``build`` returns a JSON-able summary, stored with the entry together with ``seconds`` (the build time) before
    the entry is marked complete, so a cache hit reports the same facts. An entry whose files no longer match
    their checksums is rebuilt, with a warning naming the entry and the file. A ``StageError`` becomes
    ``StageResult.error`` so the flow can stop with the message and still write its report; a full disk is one
    (``DiskFullError``). Any other exception is a bug and propagates with its traceback.
    """
    start = time.perf_counter()
    if not refresh and cache.has(stage, key) and (hit := _reuse(cache, stage, key)) is not None:
        return hit
    try:
        with cache.lock(stage, key):
            # Another run may have finished the entry since the check above (whether we waited or it ended just
            # before we locked); a damaged entry was warned about above and is rebuilt without a second warning.
            if not refresh and cache.has(stage, key) and cache.problem(stage, key) is None:
                hit = _reuse(cache, stage, key)
                if hit is not None:
                    return hit
            with cache.build(stage, key, replace=refresh) as tmp:
                summary = build(tmp)
                summary["seconds"] = time.perf_counter() - start
                (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    except StageError as exc:
        return StageResult(
            stage=stage, key=key, path="", cached=False, seconds=time.perf_counter() - start, error=str(exc)
        )
    final = cache.path(stage, key)
    return StageResult(stage=stage, key=key, path=str(final), cached=False, seconds=summary["seconds"], summary=summary)
