"""The ``vigil`` command end to end in a subprocess: stdout contract, argument errors, kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_part_folder


def _env(data_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env["VIGIL_DATA"] = str(data_root)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_HOME"] = str(data_root / "prefect-home")
    return env


def _vigil(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "flows.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_bad_arguments_exit_2_naming_the_problem(tmp_path: Path) -> None:
    env = _env(tmp_path / "vd")
    r = _vigil("run", "defect", "--set", "train.epochz=3", env=env)
    assert r.returncode == 2 and "unknown key 'epochz' under train" in r.stderr
    r = _vigil("run", "defect", "--data", str(tmp_path / "missing"), env=env)
    assert r.returncode == 2 and "missing" in r.stderr
    r = _vigil("run", "defect", "--refresh", "trian", env=env)
    assert r.returncode == 2 and "unknown stage(s) trian" in r.stderr
    assert r.stdout == ""


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint_with_the_same_name(tmp_path: Path) -> None:
    """SIGKILL during training, rerun with --name: training continues from the last checkpoint, not from zero."""
    root = write_part_folder(tmp_path / "parts", n_per_class=40, size=48)
    env = _env(tmp_path / "vd")
    args = [
        "run",
        "defect",
        "--profile",
        "test",
        "--data",
        str(root),
        "--name",
        "resume-me",
        "--set",
        "train.epochs=8",
        "--set",
        "evaluate.baseline=false",
        "--set",
        "train.image_size=48",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    checkpoint = None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "vd" / "runs" / "defect-detection").glob("*-resume-me/checkpoints/last.pt"))
        if found:
            import torch

            try:
                epoch = torch.load(found[0], weights_only=False)["epoch"]
            except Exception:  # the checkpoint is replaced atomically, but may vanish between glob and load
                epoch = 0
            if epoch >= 2:
                checkpoint = found[0]
                break
        time.sleep(0.2)
    assert checkpoint is not None, "no checkpoint of epoch >= 2 appeared"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    r = _vigil(*args, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = Path(r.stdout.strip().splitlines()[-1])
    assert run_dir == checkpoint.parent.parent
    assert "resumed from the checkpoint of epoch" in r.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["epochs_run"] == 8
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.slow
def test_run_prints_run_dir_last_and_runs_lists_it(tmp_path: Path) -> None:
    root = write_part_folder(tmp_path / "parts", n_per_class=16)
    env = _env(tmp_path / "vd")
    r = _vigil("run", "defect", "--profile", "test", "--data", str(root), "--name", "cli", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    run_dir = Path(lines[-1])
    assert run_dir.is_absolute() and (run_dir / "metrics.json").is_file() and run_dir.name.endswith("-cli")
    assert "Task run" in r.stderr  # logs go to stderr, not stdout
    listing = _vigil("runs", env=env)
    assert run_dir.name in listing.stdout


def test_debug_flag_is_read_before_or_after_run() -> None:
    from flows.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["run", "eeg"]).debug is False
    assert parser.parse_args(["--debug", "run", "eeg"]).debug is True
    assert parser.parse_args(["run", "eeg", "--debug"]).debug is True
    assert parser.parse_args(["runs"]).debug is False
