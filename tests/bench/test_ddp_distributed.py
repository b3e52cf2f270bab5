"""DistributedDataParallel over 2 CPU processes (gloo) takes the single-process steps on the same global batches.

Why the two runs can still differ slightly: each rank sums its share's losses and the gradients are then summed
across ranks, a different float reduction order than one sum over the whole batch; matmuls split over other
thread counts round differently. Everything else is the same by construction: the same epoch permutation
(``seed + epoch``), the same global batches, rank 0's initial weights, and a gradient hook that weights each
rank by its share of the batch's loss weight. So the tolerance is tight (1e-4 relative on losses).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from bench.ddp.distributed import (
    DistContext,
    ShardedTensorBatches,
    epoch_order,
    global_batches,
    local_share,
    shard_loader,
)
from bench.ddp.entry import main as train_entry

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dataset(path: Path, *, weighted: bool, n: int = 101, n_val: int = 48, features: int = 12) -> Path:
    """Three imbalanced Gaussian classes; ``weighted`` adds sample weights (and the run adds class weights)."""
    rng = np.random.default_rng(7)
    centres = rng.normal(0.0, 1.0, (3, features))

    def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.choice(3, size=m, p=[0.6, 0.3, 0.1])
        return (centres[y] + rng.normal(0.0, 1.0, (m, features))).astype(np.float32), y.astype(np.int64)

    x, y = draw(n)
    x_val, y_val = draw(n_val)
    arrays = {"x": x, "y": y, "x_val": x_val, "y_val": y_val}
    if weighted:
        arrays["w"] = rng.uniform(0.2, 2.0, n).astype(np.float32)
    np.savez(path, **arrays)
    return path


def _options(weighted: bool) -> list[str]:
    # 101 samples in global batches of 16: 6 full batches and one of 5, which splits 3/2 over the two ranks
    opts = ["--model", "mlp", "--epochs", "2", "--batch-size", "16", "--lr", "0.02", "--seed", "3"]
    return opts + (["--class-weights", "balanced"] if weighted else [])


def _torchrun(npz: Path, out: Path, options: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1"]
    cmd += ["--master_addr=127.0.0.1", f"--master_port={_free_port()}"]
    cmd += ["-m", "bench.ddp.entry", "--npz", str(npz), "--out", str(out), "--device", "cpu", *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.mark.slow
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "class-and-sample-weights"])
def test_ddp_two_cpu_ranks_match_one_process(tmp_path, monkeypatch, weighted) -> None:
    npz = _dataset(tmp_path / "data.npz", weighted=weighted)
    done = _torchrun(npz, tmp_path / "ddp", _options(weighted))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    epochs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"event": "epoch"')]
    assert [e["epoch"] for e in epochs] == [1, 2]  # rank 0 alone reports, once per epoch

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    single = train_entry(["--npz", str(npz), "--out", str(tmp_path / "one"), "--device", "cpu", *_options(weighted)])
    assert single["world_size"] == 1 and single["steps_per_epoch"] == ddp["steps_per_epoch"] == 7

    np.testing.assert_allclose(ddp["val_loss"], single["val_loss"], rtol=1e-4)
    if not weighted:  # with weights, the job-wide train loss is a per-sample mean of per-rank weighted means
        np.testing.assert_allclose(ddp["train_loss"], single["train_loss"], rtol=1e-4)
    a = torch.load(tmp_path / "ddp" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "one" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()  # saved unwrapped: no "module." prefix
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_rank0_alone_writes_checkpoints_and_a_rerun_resumes_from_them(tmp_path) -> None:
    npz = _dataset(tmp_path / "data.npz", weighted=False)
    first = _torchrun(npz, tmp_path / "ddp", [*_options(False), "--checkpoint"])
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "ddp").rglob("*")) == [
        "checkpoints",
        "history_global.json",
        "last.pt",
        "metrics.json",
        "model.pt",
    ]
    trained = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    # the same command again: rank 1 resumes from rank 0's checkpoint too, so both see a finished run
    again = _torchrun(npz, tmp_path / "ddp", [*_options(False), "--checkpoint"])
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    resumed = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert resumed["resumed_from_epoch"] == 2 and resumed["epochs_run"] == 2
    assert resumed["train_loss"] == trained["train_loss"]  # job-wide values, not rank 0's own from last.pt


def test_shares_of_a_global_batch_partition_it() -> None:
    order = epoch_order(23, epoch=4, seed=1)
    assert torch.equal(order, epoch_order(23, epoch=4, seed=1))  # every rank computes the same order
    assert not torch.equal(order, epoch_order(23, epoch=5, seed=1))
    batches = global_batches(order, 8, world_size=3, drop_last=False)
    assert [len(b) for b in batches] == [8, 8, 7]
    for batch in batches:
        shares = [local_share(batch, r, 3) for r in range(3)]
        assert sorted(torch.cat(shares).tolist()) == sorted(batch.tolist())
    # a remainder smaller than the world size would leave a rank without samples: dropped
    assert [len(b) for b in global_batches(torch.arange(17), 8, world_size=2, drop_last=False)] == [8, 8]
    assert [len(b) for b in global_batches(torch.arange(23), 8, world_size=2, drop_last=True)] == [8, 8]


def test_sharded_batches_deal_every_sample_once_per_epoch() -> None:
    x = torch.arange(30, dtype=torch.float32)[:, None]
    y = torch.zeros(30, dtype=torch.int64)
    ranks = [ShardedTensorBatches(x, y, batch_size=8, rank=r, world_size=2, shuffle=True, seed=5) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 4
    for _ in range(2):  # two epochs: the order changes, the coverage does not
        seen = [int(v) for r in ranks for batch in r for v in batch[0].flatten()]
        assert sorted(seen) == list(range(30))
    one = ShardedTensorBatches(x, y, batch_size=8, shuffle=True, seed=5)
    one.set_epoch(1)
    ranks[0].set_epoch(1)
    ranks[1].set_epoch(1)
    for full, a, b in zip(one, ranks[0], ranks[1], strict=True):  # step k on all ranks = global batch k
        assert sorted(full[0].flatten().tolist()) == sorted(torch.cat([a[0], b[0]]).flatten().tolist())
    with pytest.raises(ValueError, match="world_size"):
        ShardedTensorBatches(x, y, batch_size=1, rank=0, world_size=2)


def test_sharded_dataloaders_step_through_the_same_global_batches() -> None:
    data = TensorDataset(torch.arange(24, dtype=torch.float32)[:, None], torch.zeros(24, dtype=torch.int64))
    loaders = [
        shard_loader(DataLoader(data, batch_size=6), DistContext(rank=r, world_size=2), shuffle=True, seed=9)
        for r in range(2)
    ]
    assert [len(loader) for loader in loaders] == [4, 4]  # optimizer steps, the same on both ranks
    for epoch in range(2):  # fit never calls set_epoch: each iteration must move on by itself
        order = epoch_order(24, epoch, seed=9)
        for k, (a, b) in enumerate(zip(*loaders, strict=True)):
            assert len(a[0]) == len(b[0]) == 3
            step = sorted(torch.cat([a[0], b[0]]).flatten().long().tolist())
            assert step == sorted(order[k * 6 : (k + 1) * 6].tolist())
    with pytest.raises(ValueError, match="multiple of 4"):
        shard_loader(DataLoader(data, batch_size=6), DistContext(rank=0, world_size=4), shuffle=False)
