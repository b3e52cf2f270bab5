"""The seeded sampler: a resumed fit (a fresh process, a fresh sampler) continues the uninterrupted run exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from models.training import FitConfig, fit
from tasks.sampling import SeededSampler


class _Augmented(Dataset):
    """Vectors plus noise drawn from the sampler's per-item seed, as the image and EEG datasets augment."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.y = rng.integers(0, 2, n)
        self.x = (rng.normal(size=(n, 6)) + self.y[:, None]).astype(np.float32)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item
        noise = np.random.default_rng(seed).normal(0, 0.3, 6).astype(np.float32)
        return torch.from_numpy(self.x[index] + noise), int(self.y[index])


def _loaders() -> tuple[DataLoader, DataLoader]:
    """A fresh pair, as a new process builds them: the sampler starts counting epochs at 0."""
    train = _Augmented(64)
    val = DataLoader([(torch.from_numpy(train.x[i]), int(train.y[i])) for i in range(16)], batch_size=16)
    return DataLoader(train, batch_size=8, sampler=SeededSampler(len(train), seed=5)), val


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))


def test_sampler_set_epoch_draws_that_epochs_shuffle() -> None:
    a, b = SeededSampler(10, seed=1), SeededSampler(10, seed=1)
    list(a), list(a)
    b.set_epoch(2)
    assert list(a) == list(b)
    assert list(SeededSampler(10, seed=1)) != list(b)


def test_fit_resumed_in_a_fresh_process_equals_the_uninterrupted_one(tmp_path: Path) -> None:
    config = FitConfig(epochs=5, lr=1e-2, patience=None, device="cpu", seed=0, threads=1)
    reference = _model()
    fit(reference, *_loaders(), config)

    def stop_after_epoch_2(row: dict) -> None:
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), *_loaders(), config, checkpoint_dir=tmp_path, on_epoch_end=stop_after_epoch_2)
    resumed = _model()
    result = fit(resumed, *_loaders(), config, checkpoint_dir=tmp_path)  # new loaders: a new process's sampler
    assert result.resumed_from_epoch == 2
    for a, b in zip(resumed.state_dict().values(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
