"""The run directory: whole run names only, usable names, and copies (never hard links) of cache files."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

import tasks.cache as cache_mod
from tasks.cache import DiskFullError
from tasks.rundir import copy_file, find_run_dir, open_run_dir, run_name_of, run_name_problem, safe_name

FLOW = "defect-detection"


def _run_folder(root: Path, stamp: str, name: str) -> Path:
    d = root / "runs" / FLOW / f"{stamp}-{name}"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text('{"flow": "defect-detection"}')
    return d


def test_name_matches_the_whole_run_name_only(tmp_path: Path) -> None:
    other = _run_folder(tmp_path, "20250301T120000Z", "mahogany-pronghorn")
    path, resumed = open_run_dir(tmp_path, FLOW, "pronghorn", reuse=True)
    assert not resumed and path != other and run_name_of(path) == "pronghorn"
    assert sorted(p.name for p in other.iterdir()) == ["metrics.json"]


def test_the_newest_run_of_exactly_that_name_is_resumed(tmp_path: Path) -> None:
    _run_folder(tmp_path, "20250301T120000Z", "nightly")
    newer = _run_folder(tmp_path, "20250302T120000Z", "nightly")
    _run_folder(tmp_path, "20250303T120000Z", "pre-nightly")
    (tmp_path / "runs" / FLOW / "notes-nightly").mkdir()  # not a run folder
    assert find_run_dir(tmp_path, FLOW, "nightly") == newer
    assert open_run_dir(tmp_path, FLOW, "nightly", reuse=True) == (newer, True)
    assert find_run_dir(tmp_path, "seizure-prediction", "nightly") is None


@pytest.mark.parametrize("name", ["mahogany-pronghorn", "run_7", "v1.2", "A" * 100])
def test_usable_names(name: str) -> None:
    assert run_name_problem(name) is None and safe_name(name) == name


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("..", ""),
        ("", ""),
        ("my run", "; for example 'my-run'"),
        ("-x", "; for example 'x'"),
        ("nightly.", "; for example 'nightly'"),
        ("a/../b", "; for example 'a-..-b'"),
        ("café", "; for example 'cafe'"),
        ("A" * 101, f"; for example {'A' * 100!r}"),
    ],
)
def test_unusable_names_say_what_is_allowed(name: str, hint: str) -> None:
    assert run_name_problem(name) == (
        f"run name {name!r} is not usable: use up to 100 ASCII letters, digits, '-', '_' and '.', starting and "
        f"ending with a letter or digit (it becomes a folder name and part of the report's URL){hint}"
    )


def test_copy_file_is_a_copy_so_editing_the_run_leaves_the_cache_unchanged(tmp_path: Path) -> None:
    src = tmp_path / "cache" / "label" / "k" / "splits.csv"
    src.parent.mkdir(parents=True)
    src.write_text("path,label,split\na.png,good,train\n")
    dst = tmp_path / "run" / "splits.csv"
    copy_file(src, dst)
    assert dst.read_text() == src.read_text() and dst.stat().st_ino != src.stat().st_ino
    dst.write_text("edited by hand\n")
    assert src.read_text() == "path,label,split\na.png,good,train\n"


def test_copy_file_over_an_old_hard_link_does_not_write_through_it(tmp_path: Path) -> None:
    """A run folder of an older vigil holds a hard link into the cache; resuming it must not edit the cache."""
    src = tmp_path / "cache" / "splits.csv"
    src.parent.mkdir()
    src.write_text("cached\n")
    new = tmp_path / "new.csv"
    new.write_text("fresh rows\n")
    dst = tmp_path / "run" / "splits.csv"
    dst.parent.mkdir()
    os.link(src, dst)
    copy_file(new, dst)
    assert dst.read_text() == "fresh rows\n" and src.read_text() == "cached\n" and src.stat().st_nlink == 1


def test_copy_file_on_a_full_disk_names_the_folder_and_the_size(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(b"\0" * 5_500_000)
    monkeypatch.setattr(cache_mod, "free_bytes", lambda folder: 12_000)

    def full(a, b, **kw):
        Path(b).write_bytes(b"\0" * 100)  # a partial copy, as a real full disk leaves one
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copy2", full)
    with pytest.raises(DiskFullError) as err:
        copy_file(src, tmp_path / "run" / "model.bin")
    assert str(err.value) == (
        f"no space left on device under {tmp_path / 'run'} (needed ~5.5 MB more; 12.0 kB free); "
        "free space or set VIGIL_DATA to a larger disk"
    )
    assert not (tmp_path / "run" / "model.bin").exists()
