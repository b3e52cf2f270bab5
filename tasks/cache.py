"""Content-addressed stage outputs under ``$VIGIL_DATA/cache/<stage>/<key>/``.

A key hashes what a stage's output depends on: the upstream keys (which hash the input content), the stage's
config section, the seed and the code version. Prefect's own result cache keys on task source text only
(Prefect issue #23062), so vigil keys on a hash of all of its source files instead: any code change reruns.
An entry is written into a temporary folder and renamed into place when complete, so a killed run never
leaves a half-written entry that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

_PACKAGES = ("flows", "tasks", "models")
DONE_MARKER = ".complete"
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


@dataclass(frozen=True)
class StageCache:
    root: Path

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def has(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / DONE_MARKER).is_file()

    @contextmanager
    def build(self, stage: str, key: str) -> Iterator[Path]:
        """Yield an empty temporary folder; on success it becomes the entry, on failure it is removed."""
        final = self.path(stage, key)
        tmp = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            yield tmp
            (tmp / DONE_MARKER).write_text(json.dumps({"created": time.time(), "stage": stage, "key": key}))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def touch(self, stage: str, key: str) -> None:
        """Record a use, so ``vigil gc`` can keep recently used entries."""
        marker = self.path(stage, key) / DONE_MARKER
        if marker.exists():
            os.utime(marker)


class StageError(ValueError):
    """A problem with the user's data or settings: reported as one sentence, never as a traceback."""


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


def run_stage(
    cache: StageCache,
    stage: str,
    key: str,
    build: Callable[[Path], dict[str, Any]],
    refresh: bool = False,
) -> StageResult:
    """Reuse ``cache/<stage>/<key>`` when complete (unless ``refresh``), else build it with ``build(tmp_dir)``.

    ``build`` returns a JSON-able summary that is stored with the entry, so a cache hit reports the same facts.
    A ``StageError`` becomes ``StageResult.error`` so the flow can stop with the message and still write its
    report; any other exception is a bug and propagates with its traceback.
    """
    start = time.perf_counter()
    final = cache.path(stage, key)
    if not refresh and cache.has(stage, key):
        cache.touch(stage, key)
        summary = json.loads((final / "summary.json").read_text())
        return StageResult(stage=stage, key=key, path=str(final), cached=True, seconds=0.0, summary=summary)
    try:
        with cache.build(stage, key) as tmp:
            summary = build(tmp)
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    except StageError as exc:
        return StageResult(
            stage=stage, key=key, path="", cached=False, seconds=time.perf_counter() - start, error=str(exc)
        )
    seconds = time.perf_counter() - start
    summary["seconds"] = seconds
    (final / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return StageResult(stage=stage, key=key, path=str(final), cached=False, seconds=seconds, summary=summary)
