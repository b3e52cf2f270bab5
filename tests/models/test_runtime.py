"""The runtime both training loops share: device choice, bf16 autocast, RNG state, checkpoint files."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models.runtime import (
    CHECKPOINT_NAME,
    CpuSample,
    LoadAwareThreads,
    architecture_hash,
    bf16_autocast,
    checkpoint_path,
    cpu_bf16_native,
    cpu_sample,
    cpu_state_dict,
    load_checkpoint,
    model_device,
    others_busy_cores,
    rng_state,
    save_atomic,
    select_device,
    set_rng_state,
    threads_for_load,
    to_device,
    usable_cores,
)


def test_select_device() -> None:
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert select_device(None) == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")


def test_model_device_and_to_device() -> None:
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")  # no parameters: CPU
    x = to_device(torch.randn(2, 3, 4, 5), torch.device("cpu"), channels_last=True)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert to_device(torch.randn(2, 3, 4), torch.device("cpu"), channels_last=True).is_contiguous()


def test_bf16_autocast_is_off_on_cpu_unless_asked_for_on_native_bf16() -> None:
    cpu = torch.device("cpu")
    with bf16_autocast(cpu, amp=True):  # amp is for CUDA only
        assert not torch.is_autocast_enabled("cpu")
    with bf16_autocast(cpu, amp=False, amp_cpu=True):
        assert torch.is_autocast_enabled("cpu") == cpu_bf16_native()


def test_rng_state_round_trip_restores_every_generator() -> None:
    state = rng_state()
    first = (torch.rand(3), random.random(), np.random.rand(3))
    set_rng_state(state)
    again = (torch.rand(3), random.random(), np.random.rand(3))
    torch.testing.assert_close(first[0], again[0], rtol=0, atol=0)
    assert first[1] == again[1]
    np.testing.assert_array_equal(first[2], again[2])


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "rng.pt"
    save_atomic({"rng": rng_state()}, path)
    expected = (torch.rand(2), random.random(), np.random.rand(2))
    set_rng_state(torch.load(path, weights_only=True)["rng"])
    torch.testing.assert_close(torch.rand(2), expected[0], rtol=0, atol=0)
    assert random.random() == expected[1]
    np.testing.assert_array_equal(np.random.rand(2), expected[2])


def test_save_atomic_keeps_the_old_file_when_interrupted(tmp_path: Path) -> None:
    class Explodes:
        def __reduce__(self):
            raise KeyboardInterrupt

    path = tmp_path / "last.pt"
    save_atomic({"epoch": 1}, path)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"epoch": 2, "bad": Explodes()}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_checkpoint_path_creates_the_folder(tmp_path: Path) -> None:
    assert checkpoint_path(None) is None
    path = checkpoint_path(tmp_path / "a" / "b")
    assert path == tmp_path / "a" / "b" / CHECKPOINT_NAME and path.parent.is_dir() and not path.exists()


def test_cpu_state_dict_is_a_detached_copy() -> None:
    model = nn.Linear(2, 1)
    state = cpu_state_dict(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not torch.equal(state["weight"], model.weight)
    assert not state["weight"].requires_grad


def test_architecture_hash_follows_shapes_and_labels() -> None:
    a = architecture_hash(nn.Linear(3, 2), "Linear")
    assert a == architecture_hash(nn.Linear(3, 2), "Linear")  # weights do not matter, shapes do
    assert a != architecture_hash(nn.Linear(4, 2), "Linear")
    assert a != architecture_hash(nn.Linear(3, 2), "Other")
    assert len(a) == 16


def test_load_checkpoint_names_what_differs(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    fingerprint = {"config": {"lr": 0.1, "epochs": 3}, "model": "abc"}
    save_atomic({"version": 1, "fingerprint": fingerprint, "epoch": 2}, path)
    assert load_checkpoint(path, fingerprint, 1)["epoch"] == 2
    changed = {"config": {"lr": 0.2, "epochs": 3}, "model": "abd"}
    with pytest.raises(ValueError, match=r"different GAN training setup \(differs in: config\.lr, model\)"):
        load_checkpoint(path, changed, 1, setup="GAN training")
    with pytest.raises(ValueError, match="checkpoint version"):
        load_checkpoint(path, fingerprint, 2)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read the checkpoint"):
        load_checkpoint(tmp_path / "bad.pt", fingerprint, 1)


def test_threads_for_load_leaves_busy_cores_to_their_owners() -> None:
    assert threads_for_load(0.0, cores=2, cap=2) == 2
    assert threads_for_load(0.3, cores=2, cap=2) == 2  # background noise takes no core
    assert threads_for_load(1.0, cores=2, cap=2) == 1  # one busy process: one thread
    assert threads_for_load(2.7, cores=2, cap=2) == 1  # never fewer than one
    assert threads_for_load(1.0, cores=16, cap=8) == 8  # never more than torch's own default


def test_others_busy_cores_subtracts_this_process() -> None:
    before = CpuSample(busy_s=10.0, self_s=5.0, wall_s=100.0)
    after = CpuSample(busy_s=13.0, self_s=6.0, wall_s=101.0)  # 3 core-seconds busy in 1 s, 1 of them ours
    assert others_busy_cores(before, after) == pytest.approx(2.0)
    assert others_busy_cores(after, after) == 0.0


def test_load_aware_threads_measure_a_busy_process_and_restore_the_count() -> None:
    sample = cpu_sample()
    assert sample is not None and sample.busy_s > 0 and usable_cores() >= 1
    previous = torch.get_num_threads()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        threads = LoadAwareThreads(None)
        before = cpu_sample()
        time.sleep(0.4)
        assert others_busy_cores(before, cpu_sample()) > 0.6  # the spinning process shows
        chosen = threads.start()
        assert chosen <= max(1, usable_cores() - 1) and torch.get_num_threads() == chosen
    finally:
        busy.kill()
        busy.wait()
    threads.restore()
    assert torch.get_num_threads() == previous
    fixed = LoadAwareThreads(1)
    assert fixed.start() == 1 and fixed.recheck() == 1 and fixed.chosen == [1, 1]
    fixed.restore()
    assert torch.get_num_threads() == previous
