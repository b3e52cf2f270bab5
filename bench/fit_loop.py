"""Throughput of ``models.training.fit`` against a plain PyTorch loop on the same model and data.

``fit`` adds class/sample weighting, gradient clipping, a per-batch LR schedule, validation, best-weight copies
and checkpoints; this benchmark shows what those cost. Both loops train a fresh copy of the same model (same
seed) on the same random tensors; the first epoch of every run is a warm-up and is not counted, and the runs
alternate order across repeats so neither side always runs on a warmer machine.

Run on demand (not a test); needs only torch and numpy::

    python -m bench.fit_loop --device cpu --size 64 --n 512 --epochs 2 --repeats 2 --json bench/out/fit_loop.json

Reported per variant: ``train_images_per_s`` (training phase only; for ``fit`` the ``images_per_s`` history
column) and ``epoch_images_per_s`` (whole epochs: for ``fit`` including validation and the checkpoint write).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import models  # noqa: E402,F401  (registers the models)
from models.registry import create_model  # noqa: E402
from models.runtime import select_device  # noqa: E402
from models.training import FitConfig, fit  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(
    model: nn.Module,
    loader: Iterable,
    epochs: int,
    device: torch.device,
    lr: float = 3e-3,
    amp: bool = False,
    channels_last: bool = False,
) -> list[float]:
    """Train with the minimal loop (AdamW, mean cross-entropy, nothing else); return images/s per epoch.

    ``amp`` and ``channels_last`` mirror ``FitConfig`` so a comparison measures the loop, not the numerics.
    """
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    rates = []
    for _ in range(epochs):
        _sync(device)
        t0 = time.perf_counter()
        n = 0
        for x, y, *_ in loader:
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n += len(y)
        _sync(device)
        rates.append(n / (time.perf_counter() - t0))
    return rates


def images_per_epoch(loader: Iterable) -> int:
    """Images one pass over a DataLoader or :class:`~models.training.TensorBatches` trains on."""
    if getattr(loader, "drop_last", False):
        return len(loader) * loader.batch_size
    if hasattr(loader, "dataset"):
        return len(loader.dataset)
    return len(loader.tensors[0])


def fit_rates(
    model: nn.Module,
    train: Iterable,
    val: Iterable,
    config: FitConfig,
    checkpoint: bool,
) -> tuple[list[float], list[float]]:
    """Train with :func:`models.training.fit`; return (training-phase, whole-epoch) images/s per epoch.

    Whole-epoch rates come from the gaps between ``on_epoch_end`` calls, which follow validation and the checkpoint
    write, so they include both; the first epoch has no previous call and is only in the training-phase list.
    """
    stamps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fit-bench-") as tmp:
        result = fit(
            model,
            train,
            val,
            config,
            checkpoint_dir=tmp if checkpoint else None,
            on_epoch_end=lambda row: stamps.append(time.perf_counter()),
        )
    train_rates = [row["images_per_s"] for row in result.history]
    n_train = images_per_epoch(train)
    epoch_rates = [n_train / (b - a) for a, b in zip(stamps, stamps[1:], strict=False)]
    return train_rates, epoch_rates


def compare(
    model_name: str,
    train: Iterable,
    val: Iterable,
    *,
    in_chans: int,
    epochs: int,
    repeats: int,
    device: torch.device,
    lr: float = 3e-3,
    amp: bool = False,
    channels_last: bool = False,
    seed: int = 0,
) -> dict:
    """Alternate plain / fit / fit+checkpoint runs ``repeats`` times, excluding each run's warm-up epoch.

    Returns:
        ``{"plain": {...}, "fit": {...}, "fit_checkpoint": {...}, "ratio": {...}}`` with images/s medians, bests
        (the fastest epoch: least disturbed by other processes) and raw per-epoch numbers; ratios are
        fit / plain (1.0 = no overhead).
    """
    config = FitConfig(
        epochs=epochs + 1,
        lr=lr,
        patience=None,
        device=str(device),
        amp=amp,
        channels_last=channels_last,
        seed=seed,
    )
    raw: dict[str, dict[str, list[float]]] = {k: {"train": [], "epoch": []} for k in ("plain", "fit", "fit_checkpoint")}
    order = ["plain", "fit", "fit_checkpoint"]
    for r in range(repeats):
        for variant in order if r % 2 == 0 else order[::-1]:
            torch.manual_seed(seed)
            model = create_model(model_name, in_chans=in_chans, num_classes=2)
            if variant == "plain":
                rates = plain_loop(model, train, epochs + 1, device, lr, amp, channels_last)[1:]
                raw[variant]["train"] += rates
                raw[variant]["epoch"] += rates
            else:
                train_rates, epoch_rates = fit_rates(model, train, val, config, checkpoint=variant == "fit_checkpoint")
                raw[variant]["train"] += train_rates[1:]
                raw[variant]["epoch"] += epoch_rates  # gaps start after epoch 1, so the warm-up is excluded
    out: dict = {}
    for variant, lists in raw.items():
        out[variant] = {
            "train_images_per_s": statistics.median(lists["train"]),
            "epoch_images_per_s": statistics.median(lists["epoch"]),
            "train_images_per_s_best": max(lists["train"]),
            "epoch_images_per_s_best": max(lists["epoch"]),
            "train_images_per_s_all": [round(v, 1) for v in lists["train"]],
            "epoch_images_per_s_all": [round(v, 1) for v in lists["epoch"]],
        }
    out["ratio"] = {}
    for stat in ("", "_best"):  # best = least disturbed epoch, the robust figure on a shared machine
        base = out["plain"][f"train_images_per_s{stat}"]
        out["ratio"][f"fit_train_vs_plain{stat}"] = out["fit"][f"train_images_per_s{stat}"] / base
        out["ratio"][f"fit_epoch_vs_plain{stat}"] = out["fit"][f"epoch_images_per_s{stat}"] / base
        out["ratio"][f"fit_checkpoint_epoch_vs_plain{stat}"] = out["fit_checkpoint"][f"epoch_images_per_s{stat}"] / base
    return out


def random_loaders(
    n: int, size: int, batch_size: int, in_chans: int = 1, seed: int = 0
) -> tuple[DataLoader, DataLoader]:
    """Random images with random binary labels: the loops' speed does not depend on what is learnt."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_chans, size, size, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    n_val = max(batch_size, n // 8)
    xv = torch.randn(n_val, in_chans, size, size, generator=g)
    yv = torch.randint(0, 2, (n_val,), generator=g)
    train = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, drop_last=True)
    val = DataLoader(TensorDataset(xv, yv), batch_size=batch_size)
    return train, val


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cpu, cuda, ...; default: cuda if available")
    parser.add_argument("--model", default="resnet_small")
    parser.add_argument("--size", type=int, default=96, help="image height and width in pixels")
    parser.add_argument("--n", type=int, default=1024, help="training images")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run (plus one warm-up)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA) in both loops")
    parser.add_argument("--channels-last", action="store_true", help="NHWC in both loops")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    train, val = random_loaders(args.n, args.size, args.batch_size)
    t0 = time.perf_counter()
    result = compare(
        args.model,
        train,
        val,
        in_chans=1,
        epochs=args.epochs,
        repeats=args.repeats,
        device=device,
        amp=args.amp,
        channels_last=args.channels_last,
    )
    result["settings"] = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "device": str(device),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - t0,
    }
    for variant in ("plain", "fit", "fit_checkpoint"):
        v = result[variant]
        print(
            f"{variant:>15}: train {v['train_images_per_s']:7.1f} img/s (best {v['train_images_per_s_best']:7.1f})"
            f"   whole epoch {v['epoch_images_per_s']:7.1f} img/s (best {v['epoch_images_per_s_best']:7.1f})"
        )
    for k, v in result["ratio"].items():
        print(f"{k:>36}: {v:.3f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
