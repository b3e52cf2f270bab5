"""The stage cache: the completion marker records every file's checksum, is written last, and reuse verifies it."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import tasks.cache as cache_mod
from tasks.cache import (
    DONE_MARKER,
    HASH_ON_REUSE_MAX_BYTES,
    MARKER_FORMAT,
    DiskFullError,
    StageCache,
    entry_problem,
    is_disk_full,
    run_stage,
)


class Builder:
    """A tiny stage: writes ``files`` and counts how often it ran."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.calls = 0

    def __call__(self, out: Path) -> dict:
        self.calls += 1
        for rel, data in self.files.items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(data)
        return {"n": len(self.files)}


def test_marker_records_every_file_and_the_final_summary(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    build = Builder({"a.csv": b"x,y\n1,2\n", "signals/r1.npy": b"\0" * 4096})
    result = run_stage(cache, "ingest", "k1", build)
    marker = json.loads((result.dir / DONE_MARKER).read_text())
    assert marker["format"] == MARKER_FORMAT
    assert sorted(marker["files"]) == ["a.csv", "signals/r1.npy", "summary.json"]
    summary_bytes = (result.dir / "summary.json").read_bytes()
    # summary.json, seconds included, was final before the marker: never rewritten after the entry was complete
    assert marker["files"]["summary.json"]["sha256"] == hashlib.sha256(summary_bytes).hexdigest()
    assert json.loads(summary_bytes) == result.summary and result.summary["seconds"] == result.seconds > 0
    assert marker["files"]["signals/r1.npy"]["size"] == 4096
    assert not list(tmp_path.glob("ingest/.tmp-*")) and not (result.dir / f"{DONE_MARKER}.tmp").exists()


def test_intact_entry_is_reused_without_building(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    build = Builder({"a.csv": b"1\n"})
    first = run_stage(cache, "label", "k", build)
    again = run_stage(cache, "label", "k", build)
    assert build.calls == 1 and again.cached and again.summary == first.summary


def test_refresh_replaces_an_intact_entry_with_the_new_outputs(tmp_path: Path) -> None:
    # --refresh asks for new outputs, which may differ (another thread count changes float sums): they must land
    cache = StageCache(tmp_path)
    run_stage(cache, "train", "k", Builder({"weights.pt": b"old"}))
    fresh = Builder({"weights.pt": b"new", "extra.txt": b"1"})
    result = run_stage(cache, "train", "k", fresh, refresh=True)
    assert fresh.calls == 1 and not result.cached
    assert (result.dir / "weights.pt").read_bytes() == b"new" and (result.dir / "extra.txt").exists()
    assert entry_problem(result.dir) is None
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["k"]  # no .tmp-/.old- folder left


def test_a_large_file_rewritten_with_the_same_size_is_caught_by_its_new_mtime(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    big = HASH_ON_REUSE_MAX_BYTES + 1
    build = Builder({"weights.pt": b"a" * big})
    entry = run_stage(cache, "train", "k", build).dir
    (entry / "weights.pt").write_bytes(b"b" * big)
    assert entry_problem(entry) == (
        "weights.pt differs from the checksum recorded when the entry was written (changed since)"
    )
    assert not run_stage(cache, "train", "k", build).cached and build.calls == 2


def test_a_large_file_with_its_size_and_mtime_is_not_rehashed(tmp_path: Path, monkeypatch) -> None:
    """The documented cost trade-off: big files are verified by size and mtime, small ones by hash."""
    cache = StageCache(tmp_path)
    build = Builder({"weights.pt": b"a" * (HASH_ON_REUSE_MAX_BYTES + 1), "small.csv": b"1\n"})
    entry = run_stage(cache, "train", "k", build).dir
    hashed: list[str] = []
    real = cache_mod.file_sha256
    monkeypatch.setattr(cache_mod, "file_sha256", lambda p: hashed.append(p.name) or real(p))
    assert entry_problem(entry) is None
    assert sorted(hashed) == ["small.csv", "summary.json"]


def test_a_failed_build_leaves_no_entry_and_no_temporary_folder(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)

    def boom(out: Path) -> dict:
        (out / "half.csv").write_text("1\n")
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        run_stage(cache, "label", "k", boom)
    assert not cache.has("label", "k") and not list((tmp_path / "label").iterdir())


def test_disk_full_is_one_sentence_and_the_entry_is_not_kept(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache_mod, "free_bytes", lambda folder: 0)
    cache = StageCache(tmp_path)

    def fills_the_disk(out: Path) -> dict:
        (out / "part.npy").write_bytes(b"\0" * 2_000_000)
        raise OSError(errno.ENOSPC, "No space left on device")

    result = run_stage(cache, "ingest", "k", fills_the_disk)
    assert result.error == (
        f"no space left on device under {tmp_path / 'ingest'} (2.0 MB written there before it filled; 0 B free); "
        "free space or set VIGIL_DATA to a larger disk"
    )
    assert not cache.has("ingest", "k") and not list((tmp_path / "ingest").iterdir())


def test_numpy_short_write_counts_as_disk_full_only_on_a_nearly_full_disk(tmp_path: Path, monkeypatch) -> None:
    short = OSError("5544000 requested and 4357120 written")  # what np.save says on a full disk: no errno
    monkeypatch.setattr(cache_mod, "free_bytes", lambda folder: 4096)
    assert is_disk_full(short, tmp_path)
    assert is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"), tmp_path)
    assert not is_disk_full(RuntimeError("mat1 and mat2 shapes cannot be multiplied"), tmp_path)
    monkeypatch.setattr(cache_mod, "free_bytes", lambda folder: 10 << 30)
    assert not is_disk_full(short, tmp_path)


def test_numpy_save_on_a_full_disk_gives_the_sentence(tmp_path: Path, monkeypatch) -> None:
    """The real numpy error text, through the real build path."""
    monkeypatch.setattr(cache_mod, "free_bytes", lambda folder: 0)

    def save(out: Path) -> dict:
        def short_write(*args, **kwargs):
            raise OSError("5544000 requested and 4357120 written")

        monkeypatch.setattr(np, "save", short_write)
        np.save(out / "x.npy", np.zeros(3))
        return {}

    result = run_stage(StageCache(tmp_path), "train", "k", save)
    assert result.error is not None and result.error.startswith(f"no space left on device under {tmp_path / 'train'}")
    assert isinstance(DiskFullError(result.error), ValueError)


def test_marker_is_replaced_atomically(tmp_path: Path, monkeypatch) -> None:
    """The marker appears by os.replace of a finished temporary file, never by writing the marker in place."""
    replaced: list[tuple[str, str]] = []
    real = os.replace

    def recording_replace(src: Path, dst: Path) -> None:
        replaced.append((Path(src).name, Path(dst).name))
        real(src, dst)

    monkeypatch.setattr(cache_mod.os, "replace", recording_replace)
    run_stage(StageCache(tmp_path), "label", "k", Builder({"a.csv": b"1\n"}))
    assert replaced[0] == (f"{DONE_MARKER}.tmp", DONE_MARKER) and replaced[1][1] == "k"


def test_two_builders_of_one_entry_compute_it_once(tmp_path: Path) -> None:
    """Two runs needing the same entry at once: one builds, the other waits and reuses (issue #14)."""
    import threading

    cache, calls, results = StageCache(tmp_path), [], []

    def slow(out: Path) -> dict:
        calls.append(1)
        time.sleep(0.5)
        (out / "data.csv").write_text("x\n1\n")
        return {"n": 1}

    workers = [threading.Thread(target=lambda: results.append(run_stage(cache, "label", "k", slow))) for _ in "ab"]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    assert len(calls) == 1 and len(results) == 2
    assert {r.path for r in results} == {str(cache.path("label", "k"))} and sorted(r.cached for r in results) == [
        False,
        True,
    ]
