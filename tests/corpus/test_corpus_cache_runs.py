"""Bad-input corpus: damaged cache entries, run names and full disks (issue 10).

Each case damages what a careless operator or a crash would, asserts the exact sentence vigil says, and that the
rerun recomputes and succeeds. Cache cases drive ``run_stage`` with a tiny build function; run-name cases drive
``open_run_dir`` and the ``vigil`` command in-process (which must answer before any Prefect server starts).
"""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import pytest

import flows.cli
import tasks.cache as cache_mod
from flows.cli import main
from flows.config import config_to_yaml, resolve_config
from tasks.cache import DONE_MARKER, StageCache, run_stage
from tasks.rundir import open_run_dir

USABLE = "path,label\n" + "".join(f"img_{i:03d}.png,good\n" for i in range(60))


class Stage:
    """A tiny stage that writes ``files`` and counts its builds."""

    def __init__(self, **files: bytes) -> None:
        self.files = files
        self.builds = 0

    def __call__(self, out: Path) -> dict:
        self.builds += 1
        for name, data in self.files.items():
            (out / name).write_bytes(data)
        return {"n_usable": 60}


def _built(tmp_path: Path, stage: str, **files: bytes) -> tuple[StageCache, Stage, Path]:
    cache, build = StageCache(tmp_path / "cache"), Stage(**files)
    entry = run_stage(cache, stage, "0123456789abcdef", build).dir
    return cache, build, entry


def _rerun_recomputes(cache: StageCache, stage: str, build: Stage, caplog, reason: str) -> None:
    """The rerun warns with exactly this reason, rebuilds once, and the entry is intact afterwards."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vigil"):
        result = run_stage(cache, stage, "0123456789abcdef", build)
    assert [r.getMessage() for r in caplog.records] == [
        f"cache: entry {stage}/0123456789abcdef is not usable: {reason}; recomputing it"
    ]
    assert result.error is None and not result.cached and build.builds == 2
    assert result.summary["n_usable"] == 60
    for name, data in build.files.items():
        assert (result.dir / name).read_bytes() == data
    again = run_stage(cache, stage, "0123456789abcdef", build)
    assert again.cached and build.builds == 2


# ------------------------------------------------------------------------------------------------ cache entries


def test_truncated_cached_weights_are_rebuilt(tmp_path: Path, caplog) -> None:
    cache, build, entry = _built(tmp_path, "train", **{"weights.pt": b"w" * 5000})
    (entry / "weights.pt").write_bytes(b"w" * 1000)
    reason = "weights.pt has 1000 bytes where 5000 were written (truncated or changed)"
    _rerun_recomputes(cache, "train", build, caplog, reason)


def test_empty_summary_json_is_rebuilt(tmp_path: Path, caplog) -> None:
    cache, build, entry = _built(tmp_path, "quality", **{"usable.csv": USABLE.encode()})
    size = (entry / "summary.json").stat().st_size
    (entry / "summary.json").write_text("")
    _rerun_recomputes(
        cache, "quality", build, caplog, f"summary.json has 0 bytes where {size} were written (truncated or changed)"
    )


def test_half_deleted_usable_csv_is_rebuilt_not_trained_on(tmp_path: Path, caplog) -> None:
    cache, build, entry = _built(tmp_path, "quality", **{"usable.csv": USABLE.encode()})
    lines = USABLE.splitlines(keepends=True)
    (entry / "usable.csv").write_text("".join(lines[:31]))
    reason = f"usable.csv has {len(''.join(lines[:31]))} bytes where {len(USABLE)} were written (truncated or changed)"
    _rerun_recomputes(cache, "quality", build, caplog, reason)


def test_a_file_edited_in_place_with_the_same_size_is_rebuilt(tmp_path: Path, caplog) -> None:
    cache, build, entry = _built(tmp_path, "label", **{"splits.csv": b"a.png,good,train\n"})
    (entry / "splits.csv").write_bytes(b"a.png,good,test!\n")
    reason = "splits.csv differs from the checksum recorded when the entry was written (changed since)"
    _rerun_recomputes(cache, "label", build, caplog, reason)


def test_a_deleted_file_is_rebuilt(tmp_path: Path, caplog) -> None:
    cache, build, entry = _built(tmp_path, "augment", **{"augment.json": b"{}", "examples.png": b"png"})
    (entry / "examples.png").unlink()
    _rerun_recomputes(cache, "augment", build, caplog, "examples.png is missing")


def test_marker_without_checksums_from_an_older_vigil_is_rebuilt(tmp_path: Path, caplog) -> None:
    cache, build, entry = _built(tmp_path, "ingest", **{"records.csv": b"path\n"})
    (entry / DONE_MARKER).write_text(json.dumps({"created": 0, "stage": "ingest", "key": "0123456789abcdef"}))
    reason = "its completion marker .complete records no file checksums (an entry of an older vigil)"
    _rerun_recomputes(cache, "ingest", build, caplog, reason)


def test_garbled_marker_is_rebuilt(tmp_path: Path, caplog) -> None:
    cache, build, entry = _built(tmp_path, "ingest", **{"records.csv": b"path\n"})
    (entry / DONE_MARKER).write_bytes(b"\0\0\0")
    _rerun_recomputes(cache, "ingest", build, caplog, "its completion marker .complete is unreadable or not JSON")


def test_stray_tmp_folder_of_a_killed_build_is_never_trusted(tmp_path: Path, caplog) -> None:
    cache, build = StageCache(tmp_path / "cache"), Stage(**{"weights.pt": b"w" * 64})
    stray = tmp_path / "cache" / "train" / ".tmp-0123456789abcdef-deadbeef"
    stray.mkdir(parents=True)
    (stray / "weights.pt").write_bytes(b"w" * 10)  # half written when the run was killed
    with caplog.at_level(logging.WARNING, logger="vigil"):
        result = run_stage(cache, "train", "0123456789abcdef", build)
    assert not caplog.records and result.error is None and not result.cached and build.builds == 1
    assert (result.dir / "weights.pt").read_bytes() == b"w" * 64
    assert stray.is_dir()  # left for `vigil gc`, which removes .tmp-* folders idle for an hour


def test_disk_full_while_building_is_one_sentence_and_the_rerun_succeeds(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache_mod, "free_bytes", lambda folder: 12_000)
    cache, calls = StageCache(tmp_path / "cache"), []

    def build(out: Path) -> dict:
        calls.append(out)
        (out / "signals.npy").write_bytes(b"\0" * 4_400_000)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return {"n_usable": 60}

    failed = run_stage(cache, "ingest", "0123456789abcdef", build)
    assert failed.error == (
        f"no space left on device under {tmp_path / 'cache' / 'ingest'} (4.4 MB written there before it filled; "
        "12.0 kB free); free space or set VIGIL_DATA to a larger disk"
    )
    assert not list((tmp_path / "cache" / "ingest").iterdir())  # the partial entry is gone, space given back
    ok = run_stage(cache, "ingest", "0123456789abcdef", build)
    assert ok.error is None and not ok.cached and (ok.dir / "signals.npy").stat().st_size == 4_400_000


# -------------------------------------------------------------------------------------------------- run names


def test_name_pronghorn_leaves_mahogany_pronghorn_untouched(tmp_path: Path) -> None:
    other = tmp_path / "runs" / "defect-detection" / "20250301T120000Z-mahogany-pronghorn"
    other.mkdir(parents=True)
    (other / "metrics.json").write_text('{"test": {"accuracy": 0.93}}')
    path, resumed = open_run_dir(tmp_path, "defect-detection", "pronghorn", reuse=True)
    assert not resumed and path.name.endswith("Z-pronghorn") and path.parent == other.parent
    assert [p.name for p in other.iterdir()] == ["metrics.json"]
    assert (other / "metrics.json").read_text() == '{"test": {"accuracy": 0.93}}'


@pytest.fixture()
def cli(tmp_path: Path, monkeypatch):
    """``vigil run defect --profile test ...`` in-process; starting a Prefect server fails the test."""
    monkeypatch.setenv("VIGIL_DATA", str(tmp_path / "vd"))

    def no_server(root):
        raise AssertionError("the Prefect server was started for a run that should have been refused")

    monkeypatch.setattr(flows.cli, "prefect_api", no_server)
    return lambda *args: main(["run", "defect", "--profile", "test", *args])


def _rule(name: str) -> str:
    return (
        f"vigil: --name: run name {name!r} is not usable: use up to 100 ASCII letters, digits, '-', '_' and '.', "
        "starting and ending with a letter or digit (it becomes a folder name and part of the report's URL)"
    )


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("..", ""),
        ("my run", "; for example 'my-run'"),
        ("nuit-étoilée", "; for example 'nuit-etoilee'"),
        ("../../etc", "; for example 'etc'"),
    ],
)
def test_unusable_run_names_exit_2_before_the_server_starts(cli, capsys, tmp_path: Path, name: str, hint: str):
    assert cli("--name", name) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == _rule(name) + hint and captured.out == ""
    assert not (tmp_path / "vd" / "runs").exists()


def test_name_of_a_run_with_another_data_set_exits_2_and_leaves_it(cli, capsys, tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    old = tmp_path / "vd" / "runs" / "defect-detection" / "20250301T120000Z-pronghorn"
    old.mkdir(parents=True)
    (old / "config.yaml").write_text(config_to_yaml(resolve_config("defect", profile="test")))
    assert cli("--name", "pronghorn", "--data", str(parts)) == 2
    assert capsys.readouterr().err.strip() == (
        f"vigil: --name: run name 'pronghorn' is taken by {old}, and it was made with another data set "
        f"(the default data set); choose another run name, or resume that run with its own config "
        f"(--config {old / 'config.yaml'})"
    )
    assert [p.name for p in old.iterdir()] == ["config.yaml"]
