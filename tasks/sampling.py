"""Which samples a training epoch sees, in which order, and how much each class counts.

Shared by the image and EEG fits and by the synthetic-data experiment's arms: one seeded sampler makes every run
repeat exactly whatever the number of DataLoader workers, and one class-weight rule keeps a rare class from being
drowned by the common one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class SeededSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, augmentation_seed)``; a fresh seeded shuffle every epoch."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n = n
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s (0-based) shuffle next: ``models.training.fit`` calls it before every epoch, so a
        run resumed from a checkpoint continues the uninterrupted run's sequence instead of starting it again."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        seeds = rng.integers(0, 2**31 - 1, size=self.n)
        self.epoch += 1
        yield from zip(order.tolist(), seeds.tolist(), strict=True)


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1, so a rare defect class counts as much as the common one."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0)
    return torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)


def default_workers(device: torch.device, requested: int | None) -> int:
    """No workers on CPU (they would fight the model for 2 cores); several on GPU so loading never starves it."""
    if requested is not None:
        return requested
    if device.type == "cuda":
        return min(8, os.cpu_count() or 1)
    return 0
