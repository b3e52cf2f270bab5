"""``torchrun`` entry point: train a classifier on an in-memory ``.npz`` data set with DDP, one process per GPU.

::

    torchrun --standalone --nproc_per_node=4 -m bench.ddp.entry --npz data.npz --out run/ --model resnet_small \\
        --epochs 20 --batch-size 256

The same command without ``torchrun`` (``python -m bench.ddp.entry ...``) trains in one process, which is the
reference a DDP run must match. ``--batch-size`` is the *global* batch (all ranks together), so changing the
number of processes does not change the optimisation, only its speed.

The ``.npz`` holds ``x`` (``(N, C, H, W)`` images, ``(N, C, T)`` EEG windows or ``(N, F)`` features, float),
``y`` (``(N,)`` integer labels), optionally ``w`` (``(N,)`` sample weights) and a validation set ``x_val``,
``y_val`` (every rank scores all of it). Rank 0 prints one JSON line per epoch on standard output and writes
``metrics.json`` and ``model.pt`` to ``--out``; with ``--checkpoint`` also ``checkpoints/last.pt`` (an
interrupted run started again with the same arguments resumes there).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.ddp.distributed import DistContext, ShardedTensorBatches, barrier, distributed, fit_distributed, unwrap
from models.registry import create_model, list_models, model_family
from models.runtime import save_atomic
from models.training import MONITORS, SCHEDULES, FitConfig, TensorBatches

#: A model without BatchNorm or dropout: on CPU (no SyncBatchNorm) DDP is then step for step the
#: single-process run, which makes it the reference model of the equivalence test and of smoke runs.
MLP = "mlp"


def build_model(name: str, input_shape: Sequence[int], num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    """Build ``name`` (the registry's image or EEG models, or :data:`MLP`) for inputs of ``input_shape``.

    Args:
        name: ``"mlp"`` or a registered model name.
        input_shape: One sample's shape, without the batch dimension.
        num_classes: Output logits.
        kwargs: Extra factory arguments (``"hidden"`` for the MLP).

    Raises:
        ValueError: If the input's rank does not fit the model family.
    """
    if name == MLP:
        hidden = int(kwargs.get("hidden", 32))
        return nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )
    family = model_family(name)
    if family == "image":
        if len(input_shape) != 3:
            raise ValueError(f"image model {name!r} needs x of shape (N, C, H, W); one sample is {tuple(input_shape)}")
        return create_model(name, in_chans=input_shape[0], num_classes=num_classes, **kwargs)
    if family == "eeg":
        if len(input_shape) != 2:
            raise ValueError(f"EEG model {name!r} needs x of shape (N, C, T); one sample is {tuple(input_shape)}")
        return create_model(name, n_chans=input_shape[0], n_times=input_shape[1], n_outputs=num_classes, **kwargs)
    raise ValueError(f"model {name!r} is a {family!r} model; bench.ddp.entry trains image and EEG classifiers or 'mlp'")


def balanced_class_weights(y: np.ndarray, num_classes: int) -> torch.Tensor:
    """``N / (C * count_c)``: each class contributes equally to the loss (an absent class gets weight 0)."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.as_tensor(weights, dtype=torch.float32)


def _load(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; --npz takes an .npz with arrays x and y")
    with np.load(path) as npz:
        data = {k: npz[k] for k in npz.files}
    missing = {"x", "y"} - set(data)
    if missing:
        raise ValueError(f"{path}: missing array(s) {', '.join(sorted(missing))}; save x and y (and x_val, y_val)")
    if ("x_val" in data) != ("y_val" in data):
        raise ValueError(f"{path}: x_val and y_val come together; found only one of them")
    return data


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ddp.entry", description=__doc__.splitlines()[0])
    parser.add_argument("--npz", required=True, type=Path, help="x, y[, w][, x_val, y_val]")
    parser.add_argument("--out", required=True, type=Path, help="folder for metrics.json, model.pt (rank 0)")
    parser.add_argument("--model", default=MLP, help=f"'{MLP}' or one of: {', '.join(list_models())}")
    parser.add_argument("--model-kwargs", default="{}", type=json.loads, help="JSON object of factory arguments")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch: all ranks together")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--schedule", choices=SCHEDULES, default="onecycle")
    parser.add_argument("--monitor", choices=MONITORS, default="balanced_accuracy")
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--class-weights", choices=("none", "balanced"), default="none")
    parser.add_argument("--drop-last", action="store_true")
    parser.add_argument("--no-shuffle", action="store_true")
    parser.add_argument("--no-amp", action="store_true", help="train in float32 on CUDA (bf16 autocast otherwise)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu to force gloo on a GPU machine; default: GPU if any")
    parser.add_argument("--checkpoint", action="store_true", help="write/resume OUT/checkpoints/last.pt")
    return parser.parse_args(argv)


def train(args: argparse.Namespace, ctx: DistContext) -> dict[str, Any]:
    """Train on this rank's shares; returns the metrics (the same dict on every rank)."""
    data = _load(args.npz)
    x = torch.as_tensor(data["x"], dtype=torch.float32)
    y = torch.as_tensor(data["y"], dtype=torch.int64)
    w = torch.as_tensor(data["w"], dtype=torch.float32) if "w" in data else None
    num_classes = int(max(int(y.max()), int(data["y_val"].max()) if "y_val" in data else 0) + 1)
    torch.manual_seed(args.seed)  # DDP broadcasts rank 0's initial weights anyway; this makes rank 0 reproducible
    model = build_model(args.model, tuple(x.shape[1:]), num_classes, args.model_kwargs)
    dev = ctx.device
    train_batches = ShardedTensorBatches(
        x.to(dev),
        y.to(dev),
        None if w is None else w.to(dev),
        batch_size=args.batch_size,
        rank=ctx.rank,
        world_size=ctx.world_size,
        shuffle=not args.no_shuffle,
        drop_last=args.drop_last,
        seed=args.seed,
    )
    val = None
    if "x_val" in data:
        x_val = torch.as_tensor(data["x_val"], dtype=torch.float32).to(dev)
        y_val = torch.as_tensor(data["y_val"], dtype=torch.int64).to(dev)
        val = TensorBatches(x_val, y_val, batch_size=max(args.batch_size, 256))
    config = FitConfig(
        epochs=args.epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        patience=args.patience,
        monitor=args.monitor,
        amp=not args.no_amp,
        grad_clip=args.grad_clip,
        seed=args.seed,
    )
    cw = balanced_class_weights(data["y"], num_classes) if args.class_weights == "balanced" else None

    def report(row: dict) -> None:
        print(json.dumps({"event": "epoch", **row}), flush=True)

    start = time.perf_counter()
    result = fit_distributed(
        model,
        train_batches,
        val,
        config,
        ctx,
        class_weights=cw,
        checkpoint_dir=args.out / "checkpoints" if args.checkpoint else None,
        on_epoch_end=report,
    )
    return {
        "world_size": ctx.world_size,
        "backend": ctx.backend,
        "device": str(ctx.device),
        "model": args.model,
        "global_batch_size": args.batch_size,
        "steps_per_epoch": len(train_batches),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_metric": None if math.isnan(result.best_metric) else result.best_metric,
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "train_loss": [r["train_loss"] for r in result.history],
        "val_loss": [r["val_loss"] for r in result.history],
        "history": result.history,
        "seconds": time.perf_counter() - start,
        "_model": unwrap(model),
        "_num_classes": num_classes,
        "_input_shape": list(x.shape[1:]),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse, train, and let rank 0 write ``metrics.json`` and ``model.pt``; returns the metrics."""
    args = parse_args(argv)
    with distributed(args.device) as ctx:
        if ctx.is_main:
            args.out.mkdir(parents=True, exist_ok=True)
            print(json.dumps({"event": "start", "world_size": ctx.world_size, "device": str(ctx.device)}), flush=True)
        metrics = train(args, ctx)
        model, num_classes, input_shape = (metrics.pop(k) for k in ("_model", "_num_classes", "_input_shape"))
        if ctx.is_main:
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            save_atomic(
                {
                    "state_dict": state,
                    "model": args.model,
                    "model_kwargs": args.model_kwargs,
                    "num_classes": num_classes,
                    "input_shape": input_shape,
                },
                args.out / "model.pt",
            )
            (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1))
            print(json.dumps({"event": "done", "out": str(args.out)}), flush=True)
        barrier(ctx)  # nobody leaves the process group while rank 0 still writes
    return metrics


if __name__ == "__main__":
    main()
