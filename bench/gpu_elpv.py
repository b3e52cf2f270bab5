"""One prepared GPU run on ELPV: loop overhead, then the best recipe, all within a time budget.

Runs on a machine with only torch + numpy (no prefect, albumentations or scikit-learn). The data stays on the GPU
as tensors and is served by :class:`models.training.TensorBatches`; augmentation runs on the GPU batch through
``fit``'s ``batch_transform``. Steps:

1. images/s of a plain PyTorch loop vs ``models.training.fit`` on the recipe's model and data, once in float32
   NCHW and once in bf16 channels-last (both loops with the same numerics, so the ratio is the loop's cost);
2. the recipe: class-balanced loss, OneCycle, bf16 autocast, channels-last, GPU flips / 90-degree rotations /
   brightness-contrast jitter; the number of epochs is cut to fit ``--time-budget-s``;
3. the decision threshold that maximises validation accuracy, applied to the test set, with and without
   test-time augmentation over the 8 flips/rotations.

Input ``--npz`` holds ``x_train, y_train, x_val, y_val, x_test, y_test`` (uint8 ``(N, H, W)`` grey images, int64
labels 0/1) and optionally ``w_train`` (float sample weights). All numbers go to ``--out`` as JSON.

    python -m bench.gpu_elpv --npz elpv150.npz --out bench/out/gpu_elpv.json
    python -m bench.gpu_elpv --smoke --out /tmp/smoke.json        # CPU, synthetic data, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import models  # noqa: E402,F401  (registers the models)
from bench.fit_loop import fit_rates, plain_loop  # noqa: E402
from models.registry import create_model  # noqa: E402
from models.runtime import CHECKPOINT_NAME, select_device  # noqa: E402
from models.training import (  # noqa: E402
    FitConfig,
    FitResult,
    TensorBatches,
    count_parameters,
    fit,
    predict_proba,
)

SPLITS = ("train", "val", "test")


class OutOfTime(Exception):
    """Raised from ``on_epoch_end`` when the time budget is spent; the checkpoint then supplies the best weights."""


class GpuAugment:
    """Random flips, 90-degree rotations and brightness/contrast jitter applied per sample on the device.

    Solar cells look alike under the dihedral group (a crack is a crack in any orientation), so these are label
    preserving; the jitter imitates exposure differences between EL cameras. Randomness comes from torch's global
    RNG on the batch's device, which ``fit`` seeds and checkpoints.

    Args:
        brightness: Max additive shift, in units of the normalised image (train-set standard deviations).
        contrast: Max relative change of each image's contrast around its own mean.
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2) -> None:
        self.brightness = brightness
        self.contrast = contrast

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()

        def pick(p: float) -> torch.Tensor:
            return (torch.rand(b, device=x.device) < p)[:, None, None, None]  # (B, 1, 1, 1)

        x = torch.where(pick(0.5), x.flip(3), x)
        x = torch.where(pick(0.5), x.flip(2), x)
        if x.shape[2] == x.shape[3]:
            x = torch.where(pick(0.5), x.transpose(2, 3), x)  # with the flips: all 8 rotations/reflections
        mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
        c = 1.0 + self.contrast * (2 * torch.rand(b, 1, 1, 1, device=x.device) - 1)
        shift = self.brightness * (2 * torch.rand(b, 1, 1, 1, device=x.device) - 1)
        x = (x - mean) * c + mean + shift
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 flips/rotations of a square batch ``(B, C, H, W)`` (k = 0 is the identity)."""
    if k & 4:
        x = x.transpose(2, 3)
    if k & 2:
        x = x.flip(2)
    if k & 1:
        x = x.flip(3)
    return x


def load_npz(path: Path, device: torch.device) -> dict[str, dict[str, torch.Tensor]]:
    """Read the splits, normalise with the training set's mean/std, and move everything to ``device``."""
    with np.load(path) as data:
        missing = [f"{a}_{s}" for s in SPLITS for a in "xy" if f"{a}_{s}" not in data]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}; expected x_/y_ train, val and test")
        arrays = {k: data[k] for k in data.files}
    for s in SPLITS:
        x = arrays[f"x_{s}"]
        if x.ndim != 3 or len(x) != len(arrays[f"y_{s}"]):
            raise ValueError(f"{path}: x_{s} has shape {x.shape} for {len(arrays[f'y_{s}'])} labels; need (N, H, W)")
    x_train = arrays["x_train"].astype(np.float32) / 255.0
    mean, std = float(x_train.mean()), float(x_train.std()) or 1.0
    out: dict[str, dict[str, torch.Tensor]] = {}
    for s in SPLITS:
        x = torch.from_numpy(arrays[f"x_{s}"].astype(np.float32) / 255.0)
        out[s] = {
            "x": ((x - mean) / std)[:, None].to(device),  # (N, 1, H, W)
            "y": torch.from_numpy(arrays[f"y_{s}"].astype(np.int64)).to(device),
        }
    if "w_train" in arrays:
        out["train"]["w"] = torch.from_numpy(arrays["w_train"].astype(np.float32)).to(device)
    return out


def synthetic(n: int, size: int, device: torch.device, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Smoke-test data: noise images, class 1 with a dark line ('crack')."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for s, m in zip(SPLITS, (n, n // 2, n // 2), strict=True):
        y = torch.arange(m) % 2
        x = torch.randn(m, 1, size, size, generator=g)
        for i in torch.nonzero(y).flatten().tolist():
            r = int(torch.randint(2, size - 2, (1,), generator=g))
            x[i, 0, r - 1 : r + 1, size // 4 : 3 * size // 4] -= 3.0
        out[s] = {"x": x.to(device), "y": y.to(device)}
    return out


def best_threshold(p1: np.ndarray, y: np.ndarray) -> float:
    """Threshold on P(class 1) with the highest accuracy; ties go to the one closest to 0.5 (least tuned)."""
    candidates = np.unique(np.concatenate([[0.5], (np.sort(p1)[1:] + np.sort(p1)[:-1]) / 2]))
    accs = np.array([((p1 >= t) == y).mean() for t in candidates])
    best = np.flatnonzero(accs == accs.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def binary_metrics(p1: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean per-class recall), precision and recall of class 1 at ``threshold``."""
    pred = p1 >= threshold
    pos = y == 1
    tp, fp, fn = int((pred & pos).sum()), int((pred & ~pos).sum()), int((~pred & pos).sum())
    recalls = [float((pred[y == c] == (c == 1)).mean()) for c in np.unique(y)]
    return {
        "accuracy": float((pred == pos).mean()),
        "balanced_accuracy": float(np.mean(recalls)),
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "threshold": threshold,
    }


def proba(model: torch.nn.Module, x: torch.Tensor, batch_size: int, tta: bool) -> np.ndarray:
    """P(class 1) per image; with ``tta`` the mean over the 8 flips/rotations."""
    views = range(8) if tta and x.shape[2] == x.shape[3] else range(1)
    p = [predict_proba(model, TensorBatches(dihedral(x, k), batch_size=batch_size)) for k in views]
    return np.mean(p, axis=0)[:, 1]


def evaluate(model: torch.nn.Module, data: dict, batch_size: int) -> dict:
    """Pick the threshold on validation, report test metrics at it and at 0.5, with and without TTA."""
    out = {}
    for tta in (False, True):
        p_val = proba(model, data["val"]["x"], batch_size, tta)
        p_test = proba(model, data["test"]["x"], batch_size, tta)
        y_val, y_test = data["val"]["y"].cpu().numpy(), data["test"]["y"].cpu().numpy()
        t = best_threshold(p_val, y_val)
        out["tta" if tta else "plain"] = {
            "val": binary_metrics(p_val, y_val, t),
            "test": binary_metrics(p_test, y_test, t),
            "test_at_0.5": binary_metrics(p_test, y_test, 0.5),
        }
    return out


def measure_overhead(
    args: argparse.Namespace, data: dict, device: torch.device, epochs: int, stop_after: float
) -> dict:
    """Plain loop vs fit (with and without checkpoints) on the recipe's model, in fp32 and in bf16 + NHWC.

    A numerics setting that would start after ``stop_after`` (a ``perf_counter`` time) is skipped, so a slow
    device still leaves the budget to the recipe.
    """
    train = TensorBatches(
        data["train"]["x"], data["train"]["y"], batch_size=args.batch_size, shuffle=True, drop_last=True
    )
    val = TensorBatches(data["val"]["x"], data["val"]["y"], batch_size=args.eval_batch_size)
    out = {}
    for name, amp, cl in (("bf16_channels_last", True, True), ("fp32", False, False)):
        if time.perf_counter() > stop_after:
            out[name] = "skipped: time budget"
            continue
        config = FitConfig(
            epochs=epochs + 1, lr=args.lr, patience=None, device=str(device), amp=amp, channels_last=cl, seed=args.seed
        )
        rates: dict[str, list[float]] = {}
        for variant in ("plain", "fit", "fit_checkpoint", "plain_again"):  # plain twice: drift check
            torch.manual_seed(args.seed)
            model = create_model(args.model, in_chans=1, num_classes=2)
            if variant.startswith("plain"):
                rates[variant] = plain_loop(model, train, epochs + 1, device, args.lr, amp, cl)[1:]
            else:
                train_r, epoch_r = fit_rates(model, train, val, config, checkpoint=variant == "fit_checkpoint")
                rates[variant] = train_r[1:]
                rates[variant + "_whole_epoch"] = epoch_r
        med = {k: float(np.median(v)) for k, v in rates.items()}
        plain = (med["plain"] + med["plain_again"]) / 2
        out[name] = {
            "images_per_s": med,
            "fit_vs_plain": med["fit"] / plain,
            "fit_checkpoint_whole_epoch_vs_plain": med["fit_checkpoint_whole_epoch"] / plain,
        }
    return out


def train_recipe(
    args: argparse.Namespace, data: dict, device: torch.device, deadline: float
) -> tuple[torch.nn.Module, FitResult, FitConfig, dict]:
    """Train the recipe for as many epochs as the deadline allows; return (model, result, config, timings)."""
    y = data["train"]["y"]
    counts = torch.bincount(y, minlength=2).float()
    class_weights = (counts.sum() / (2 * counts.clamp_min(1))).cpu()  # N / (C * n_c): class-balanced loss
    train = TensorBatches(
        data["train"]["x"], y, data["train"].get("w"), batch_size=args.batch_size, shuffle=True, drop_last=True
    )
    val = TensorBatches(data["val"]["x"], data["val"]["y"], batch_size=args.eval_batch_size)
    augment = GpuAugment(args.brightness, args.contrast)

    # one calibration epoch (also warms up cuDNN autotuning) sets how many epochs fit in the budget
    torch.manual_seed(args.seed)
    probe = create_model(args.model, in_chans=1, num_classes=2, drop_rate=args.drop_rate)
    t0 = time.perf_counter()
    fit(probe, train, val, FitConfig(epochs=1, device=str(device), channels_last=True), batch_transform=augment)
    epoch_s = time.perf_counter() - t0
    del probe
    reserve = 20.0 + 0.1 * max(0.0, deadline - time.perf_counter())  # evaluation + safety margin
    affordable = int((deadline - time.perf_counter() - reserve) / max(epoch_s, 1e-3))
    epochs = max(1, min(args.epochs, affordable))

    config = FitConfig(
        epochs=epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule="onecycle",
        warmup_frac=0.15,
        patience=None,  # OneCycle anneals to ~0; the best epoch is still kept
        monitor="balanced_accuracy",
        amp=True,
        device=str(device),
        label_smoothing=args.label_smoothing,
        channels_last=True,
        seed=args.seed,
    )
    torch.manual_seed(args.seed)
    model = create_model(args.model, in_chans=1, num_classes=2, drop_rate=args.drop_rate)

    def guard(row: dict) -> None:
        if time.perf_counter() > deadline - 10.0:
            raise OutOfTime(f"time budget reached after epoch {row['epoch']}")

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="elpv-ckpt-") as tmp:
        try:
            result = fit(
                model,
                train,
                val,
                config,
                class_weights=class_weights,
                checkpoint_dir=tmp,
                on_epoch_end=guard,
                batch_transform=augment,
            )
            cut = False
        except OutOfTime:
            cut = True
            ckpt = torch.load(Path(tmp) / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
            model.load_state_dict(ckpt["best_state"])
            result = FitResult(
                history=ckpt["history"],
                best_epoch=ckpt["best_epoch"],
                best_metric=ckpt["best_metric"],
                epochs_run=ckpt["epoch"],
                resumed_from_epoch=None,
                stopped_early=True,
                device=str(device),
            )
    info = {
        "class_weights": class_weights.tolist(),
        "calibration_epoch_s": epoch_s,
        "cut_by_time_budget": cut,
        "seconds": time.perf_counter() - t0,
    }
    return model, result, config, info


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--npz", type=Path, default=None, help="the ELPV splits; --smoke without it: synthetic data")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for all numbers")
    parser.add_argument("--device", default=None)
    parser.add_argument("--model", default="resnet_medium")
    parser.add_argument("--epochs", type=int, default=60, help="upper bound; cut to fit the time budget")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--eval-batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--label-smoothing", type=float, default=0.05)
    parser.add_argument("--drop-rate", type=float, default=0.2)
    parser.add_argument("--brightness", type=float, default=0.2)
    parser.add_argument("--contrast", type=float, default=0.2)
    parser.add_argument("--bench-epochs", type=int, default=3, help="timed epochs per overhead run (+1 warm-up)")
    parser.add_argument("--time-budget-s", type=float, default=420.0, help="the whole script ends within this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny model and settings to check the script runs")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    deadline = t_start + args.time_budget_s
    if args.smoke:
        args.model, args.epochs, args.bench_epochs, args.batch_size = "resnet_tiny", min(args.epochs, 3), 1, 16
    device = select_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest conv algorithms
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.npz is not None:
        data = load_npz(args.npz, device)
    elif args.smoke:
        data = synthetic(64, 48, device, args.seed)
    else:
        parser.error("--npz is required unless --smoke")

    report: dict = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "n": {s: len(data[s]["y"]) for s in SPLITS},
        "image_size": list(data["train"]["x"].shape[2:]),
        "positives": {s: int(data[s]["y"].sum()) for s in SPLITS},
        "parameters": count_parameters(create_model(args.model, in_chans=1, num_classes=2)),
    }

    t0 = time.perf_counter()
    overhead_until = t_start + 0.2 * args.time_budget_s
    report["overhead"] = measure_overhead(args, data, device, args.bench_epochs, overhead_until)
    report["overhead"]["seconds"] = time.perf_counter() - t0

    model, result, config, info = train_recipe(args, data, device, deadline)
    rates = [row["images_per_s"] for row in result.history[1:]] or [result.history[0]["images_per_s"]]
    report["recipe"] = {
        "config": asdict(config),
        "augment": {"flips_and_rot90": True, "brightness": args.brightness, "contrast": args.contrast},
        **info,
        "epochs_planned": config.epochs,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_balanced_accuracy": result.best_metric,
        "train_images_per_s": float(np.median(rates)),
        "history": result.history,
    }
    t0 = time.perf_counter()
    report["evaluation"] = evaluate(model, data, args.eval_batch_size)
    report["evaluation"]["seconds"] = time.perf_counter() - t0
    report["total_seconds"] = time.perf_counter() - t_start

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, allow_nan=True))
    ev = report["evaluation"]
    for name, o in report["overhead"].items():
        if isinstance(o, dict):
            print(f"overhead {name}: fit/plain = {o['fit_vs_plain']:.3f}  ({o['images_per_s']})")
    print(
        f"recipe {args.model}: {result.epochs_run}/{config.epochs} epochs, best {result.best_epoch}, "
        f"{report['recipe']['train_images_per_s']:.0f} img/s"
    )
    for name in ("plain", "tta"):
        test = ev[name]["test"]
        print(
            f"test ({name}): accuracy {test['accuracy']:.4f}  balanced {test['balanced_accuracy']:.4f}  "
            f"threshold {test['threshold']:.3f}  (at 0.5: {ev[name]['test_at_0.5']['accuracy']:.4f})"
        )
    print(f"total {report['total_seconds']:.1f} s -> {args.out}")
    if not math.isfinite(report["total_seconds"]) or report["total_seconds"] > args.time_budget_s:
        print(f"warning: exceeded the time budget of {args.time_budget_s} s", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
