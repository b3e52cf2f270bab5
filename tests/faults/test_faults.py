"""Faults against real ``vigil run`` processes (issue #14): killed anywhere then rerun with the same ``--name``, a
full disk, the Prefect API going away, two runs racing for one cache entry. The runs share one ``vigil server``
where the fault allows it (each test has its own data root, so its caches start empty)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_part_folder
from fault_runs import (
    REPO,
    VigilProcess,
    checkpoint_epoch,
    kill_leftovers,
    run_args,
    run_folders,
    stable_metrics,
    vigil_env,
)

from flows.commands.server import start_server

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_run_left_behind():
    yield
    kill_leftovers()


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_part_folder(tmp_path_factory.mktemp("faults") / "parts", n_per_class=24, size=40)


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory):
    """One ``vigil server`` for the module's runs (its database in its own data root)."""
    root = tmp_path_factory.mktemp("faults-server")
    handle = start_server(root, port=0, runs_port=0, log_path=root / "server.log", timeout_s=600)
    yield handle.api_url
    handle.stop()


@pytest.fixture(scope="module")
def reference(parts: Path, api_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted run's metrics."""
    root = tmp_path_factory.mktemp("faults-reference") / "vd"
    run = VigilProcess(run_args(parts, "ref"), vigil_env(root, api_url))
    assert run.wait(timeout=600) == 0, run.stderr[-3000:]
    return stable_metrics(run.run_dir)


def test_killed_in_ingest_mid_epoch_and_in_report_then_rerun_equals_uninterrupted(
    parts: Path, api_url: str, reference: dict, tmp_path: Path
) -> None:
    root, name = tmp_path / "vd", "killed"
    env, args = vigil_env(root, api_url), run_args(parts, name)

    def report_started() -> bool:  # the report copies the stage outputs into the run folder first
        return any((folder / "splits.csv").exists() for folder in run_folders(root, name))

    moments = {
        # config.yaml is written right before ingest starts (a folder without one is never resumed)
        "ingest": lambda: any((folder / "config.yaml").exists() for folder in run_folders(root, name)),
        "mid-epoch": lambda: checkpoint_epoch(root, name) >= 2,
        "report": report_started,
    }
    for moment, ready in moments.items():
        run = VigilProcess(args, env)
        run.kill_when(ready, signal.SIGKILL)
        run.wait(timeout=60)
        assert not (run_folders(root, name)[0] / "metrics.json").exists(), moment
    final = VigilProcess(args, env)
    assert final.wait(timeout=600) == 0, final.stderr[-3000:]
    assert "resumed from the checkpoint of epoch" not in final.stderr  # the report kill came after training
    assert len(run_folders(root, name)) == 1 and final.run_dir == run_folders(root, name)[0]
    assert stable_metrics(final.run_dir) == reference


def test_two_runs_racing_for_one_cache_entry_both_complete(parts: Path, api_url: str, tmp_path: Path) -> None:
    root = tmp_path / "vd"
    runs = [VigilProcess(run_args(parts, name), vigil_env(root, api_url)) for name in ("racer-a", "racer-b")]
    codes = [run.wait(timeout=600) for run in runs]
    assert codes == [0, 0], [run.stderr[-2000:] for run in runs]
    assert stable_metrics(runs[0].run_dir) == stable_metrics(runs[1].run_dir)
    for stage in ("ingest", "quality", "label", "augment", "train", "evaluate"):
        entries = [p for p in (root / "cache" / stage).iterdir() if not p.name.startswith(".")]
        assert len(entries) == 1, (stage, entries)  # computed once: the other run waited or reused it


def test_api_going_away_mid_run_stops_with_a_sentence(parts: Path, tmp_path: Path) -> None:
    server_root, root, name = tmp_path / "server", tmp_path / "vd", "orphan"
    handle = start_server(server_root, port=0, runs_port=0, log_path=tmp_path / "server.log", timeout_s=600)
    try:
        # One client retry: the lost API is noticed in seconds, not after minutes of backoff (the other fault runs
        # keep Prefect's default retries, which ride out a busy shared server's 503s).
        env = {**vigil_env(root, handle.api_url), "PREFECT_CLIENT_MAX_RETRIES": "1"}
        run = VigilProcess(run_args(parts, name, epochs=40), env)
        run.kill_when(lambda: checkpoint_epoch(root, name) >= 1, 0)  # signal 0: only the moment
    finally:
        handle.stop()
    code = run.wait(timeout=600)
    run_dir = run_folders(root, name)[0]
    if code == 0:  # finished locally
        assert (run_dir / "metrics.json").is_file()
        return
    sentences = [line for line in run.err if line.startswith("vigil: ")]
    assert code == 1 and sentences, run.stderr[-3000:]
    assert "Prefect API stopped answering" in sentences[-1], sentences
    metrics = run_dir / "metrics.json"
    if metrics.is_file():  # the loss noticed inside a stage: the report names it (else Prefect's bookkeeping saw it)
        error = json.loads(metrics.read_text())["error"]
        assert error.startswith("the Prefect API stopped answering during"), error


def _mount_namespace() -> list[str] | None:
    """``unshare`` arguments that give a process its own mount namespace here (root, or a user namespace)."""
    if shutil.which("unshare") is None or os.environ.get("VIGIL_FAULTS_NO_MOUNT"):
        return None
    for cmd in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        probe = [*cmd, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || mount -t tmpfs tmpfs /tmp"]
        if subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0:
            return cmd
    return None


_ON_TMPFS = """
mount -t tmpfs -o size=$VIGIL_TMPFS_SIZE tmpfs "$VIGIL_DATA" || exit 97
"$0" -m flows.cli "$@" > "$FAULT_OUT/1.out" 2> "$FAULT_OUT/1.err"; echo $? > "$FAULT_OUT/1.rc"
find "$VIGIL_DATA" -name '.tmp-*' -o -name '*.tmp' > "$FAULT_OUT/leftovers"
mount -o remount,size=64m "$VIGIL_DATA"
"$0" -m flows.cli "$@" > "$FAULT_OUT/2.out" 2> "$FAULT_OUT/2.err"; echo $? > "$FAULT_OUT/2.rc"
"""


def test_disk_full_is_one_sentence_naming_the_folder_and_the_rerun_completes(
    parts: Path, api_url: str, tmp_path: Path
) -> None:
    root, out = tmp_path / "vd", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    env = {**vigil_env(root, api_url), "FAULT_OUT": str(out), "VIGIL_TMPFS_SIZE": "200k"}
    args = run_args(parts, "full")
    namespace = _mount_namespace()
    if namespace is not None:  # a real full disk: a 200 kB tmpfs as the data root, then 64 MB for the rerun
        cmd = [*namespace, "sh", "-c", _ON_TMPFS, sys.executable, *args]
        assert subprocess.run(cmd, cwd=REPO, env=env, timeout=900, check=False).returncode == 0
        codes = [int((out / f"{i}.rc").read_text()) for i in (1, 2)]
        first_err = (out / "1.err").read_text()
        leftovers = (out / "leftovers").read_text().split()
        second_err = (out / "2.err").read_text()
    else:  # no mounting here: ENOSPC injected into the cache's atomic marker write of the train stage
        env["VIGIL_FAULT_ENOSPC_STAGE"] = "train"
        first = VigilProcess(args, env, command=[sys.executable, str(Path(__file__).with_name("enospc_vigil.py"))])
        codes = [first.wait(timeout=600)]
        first_err = first.stderr
        leftovers = [str(p) for p in root.rglob("*") if p.name.startswith(".tmp-") or p.name.endswith(".tmp")]
        env.pop("VIGIL_FAULT_ENOSPC_STAGE")
        second = VigilProcess(args, env)
        codes.append(second.wait(timeout=600))
        second_err = second.stderr
    sentence = first_err.strip().splitlines()[-1]
    assert codes[0] == 1 and "no space left on device under " in sentence and str(root) in sentence, first_err[-3000:]
    assert leftovers == []
    assert codes[1] == 0, second_err[-3000:]
