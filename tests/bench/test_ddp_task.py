"""The parked train-ddp task (bench/ddp/task.py): torchrun as a subprocess, its output in the task log, rank 0's
metrics as the result."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from prefect import flow

from bench.ddp.task import entry_args, torchrun_command, train_ddp_task


def test_command_line() -> None:
    args = entry_args("d.npz", "out", {"batch_size": 64, "checkpoint": True, "drop_last": False, "patience": None})
    assert args == ["--npz", "d.npz", "--out", "out", "--batch-size", "64", "--checkpoint"]
    assert entry_args("d.npz", "o", {"model_kwargs": {"hidden": 8}})[-2:] == ["--model-kwargs", '{"hidden": 8}']
    cmd = torchrun_command(["--npz", "d.npz"], 4)
    assert cmd[:4] == [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=4"]
    assert "--standalone" in cmd and cmd[-4:] == ["-m", "bench.ddp.entry", "--npz", "d.npz"]
    assert "--master_port=29533" in torchrun_command([], 2, master_port=29533)
    with pytest.raises(ValueError, match="nproc_per_node"):
        torchrun_command([], 0)


@flow(name="ddp-task-test")
def _train(npz: str, out_dir: str, nproc: int) -> dict:
    options = {"model": "mlp", "epochs": 2, "batch_size": 8, "schedule": "constant", "device": "cpu"}
    return train_ddp_task(npz, out_dir, nproc_per_node=nproc, options=options, threads_per_rank=1)


@pytest.mark.slow
def test_train_ddp_task_returns_rank0_metrics(prefect_harness, tmp_path, caplog) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(40, 6)).astype(np.float32), y=rng.integers(0, 2, 40))
    caplog.set_level("INFO")
    metrics = _train(str(tmp_path / "d.npz"), str(tmp_path / "out"), 2)
    assert metrics["world_size"] == 2 and metrics["epochs_run"] == 2 and len(metrics["train_loss"]) == 2
    assert Path(metrics["out_dir"], "model.pt").is_file()
    assert '"event": "epoch"' in caplog.text  # the ranks' output was streamed into the run log

    state = _train(str(tmp_path / "missing.npz"), str(tmp_path / "bad"), 1, return_state=True)
    assert state.is_failed()
    with pytest.raises(RuntimeError, match=r"(?s)exited with code 1; output:\n.*missing\.npz: no such file"):
        state.result()
