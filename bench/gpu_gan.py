"""One prepared GPU run of issue 5: the image GAN on ELPV, and a classifier with and without its samples.

Runs on a machine with only torch + numpy (``models/`` and ``bench/gpu_elpv.py``'s helpers). Steps:

1. train ``gan_image`` (class-conditional, hinge + spectral norm) on the **train split only**, at ``--gan-size``;
2. sample ``--ratio`` synthetic images per real training image of each class, upscale them to the data's size;
3. per seed: the same classifier recipe on real images only and on real + synthetic (GPU flips/rotations and
   brightness/contrast in both arms), threshold on validation, accuracy and balanced accuracy on test;
4. train-on-synthetic-only, test on real (TSTR).

The data are the flow's seed-0 ELPV split as ``.npz`` (``python bench/make_elpv_npz.py --size 150``). Every
number goes to ``--out`` as JSON.

    python -m bench.gpu_gan --npz .devcarry/elpv150.npz --out $OUT/gpu_gan.json
    python -m bench.gpu_gan --smoke --out /tmp/gan_smoke.json        # CPU, synthetic data, seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import models  # noqa: E402,F401  (registers the models)
from bench.gpu_elpv import GpuAugment, best_threshold, binary_metrics, load_npz, proba, synthetic  # noqa: E402
from models.gan_training import GanConfig, fit_gan, sample_gan  # noqa: E402
from models.registry import create_model  # noqa: E402
from models.runtime import select_device  # noqa: E402
from models.training import FitConfig, TensorBatches, fit  # noqa: E402


def to_gan_range(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[float, float]]:
    """Normalised images -> ``size`` px in [-1, 1] (robust min/max), and the (lo, hi) to map samples back."""
    lo, hi = (float(v) for v in torch.quantile(x.flatten()[:1_000_000].float(), torch.tensor([0.005, 0.995])))
    small = F.interpolate(x, size=(size, size), mode="area")
    return ((small - lo) / (hi - lo) * 2 - 1).clamp(-1, 1), (lo, hi)


def from_gan_range(s: torch.Tensor, lohi: tuple[float, float], size: int) -> torch.Tensor:
    lo, hi = lohi
    return F.interpolate((s + 1) / 2 * (hi - lo) + lo, size=(size, size), mode="bilinear", align_corners=False)


def train_arm(
    args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor, data: dict, device: torch.device, seed: int
) -> dict:
    """The classifier recipe on ``(x, y)``; test metrics at the validation threshold."""
    counts = torch.bincount(y, minlength=2).float()
    class_weights = (counts.sum() / (2 * counts.clamp_min(1))).cpu()
    train = TensorBatches(x, y, batch_size=args.batch_size, shuffle=True, drop_last=True)
    val = TensorBatches(data["val"]["x"], data["val"]["y"], batch_size=256)
    config = FitConfig(
        epochs=args.epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule="onecycle",
        patience=None,
        monitor="balanced_accuracy",
        amp=True,
        device=str(device),
        channels_last=device.type == "cuda",
        seed=seed,
    )
    torch.manual_seed(seed)
    model = create_model(args.model, in_chans=1, num_classes=2, drop_rate=0.1)
    t0 = time.perf_counter()
    result = fit(model, train, val, config, class_weights=class_weights, batch_transform=GpuAugment())
    p_val = proba(model, data["val"]["x"], 256, False)
    p_test = proba(model, data["test"]["x"], 256, False)
    y_val, y_test = data["val"]["y"].cpu().numpy(), data["test"]["y"].cpu().numpy()
    t = best_threshold(p_val, y_val)
    return {
        "seed": seed,
        "n_train": len(y),
        "best_epoch": result.best_epoch,
        "seconds": time.perf_counter() - t0,
        "test": binary_metrics(p_test, y_test, t),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--npz", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default=None)
    parser.add_argument("--gan-size", type=int, default=64)
    parser.add_argument("--gan-width", type=int, default=32)
    parser.add_argument("--gan-steps", type=int, default=4000)
    parser.add_argument("--gan-batch", type=int, default=128)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--model", default="resnet_small")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny settings on synthetic data")
    args = parser.parse_args(argv)
    if args.smoke:
        args.gan_size, args.gan_width, args.gan_steps, args.gan_batch = 16, 4, 20, 16
        args.model, args.epochs, args.seeds, args.batch_size = "resnet_tiny", 1, 2, 8
    device = select_device(args.device)
    data = load_npz(args.npz, device) if args.npz else synthetic(64, 32, device)
    out: dict = {"device": str(device), "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()}}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)

    x, y = data["train"]["x"], data["train"]["y"]
    size = x.shape[-1]
    x_gan, lohi = to_gan_range(x, args.gan_size)
    torch.manual_seed(0)
    gan = create_model("gan_image", in_chans=1, img_size=args.gan_size, num_classes=2, width=args.gan_width)
    t0 = time.perf_counter()
    gan_result = fit_gan(
        gan, x_gan, y, GanConfig(steps=args.gan_steps, batch_size=args.gan_batch, device=str(device), seed=0)
    )
    out["gan"] = {
        "seconds": time.perf_counter() - t0,
        "steps_per_s": args.gan_steps / (time.perf_counter() - t0),
        "final": gan_result.history[-1] if gan_result.history else {},
    }
    counts = torch.bincount(y, minlength=2).tolist()
    labels = np.concatenate([np.full(max(1, round(args.ratio * n)), c) for c, n in enumerate(counts)])
    samples = torch.from_numpy(sample_gan(gan, labels, seed=1, device=device)).to(device)
    x_syn = from_gan_range(samples, lohi, size)
    y_syn = torch.as_tensor(labels, dtype=torch.int64, device=device)
    out["n_synthetic"] = len(labels)

    arms: dict[str, list] = {"real_only": [], "real_plus_synthetic": []}
    for i in range(args.seeds):
        arms["real_only"].append(train_arm(args, x, y, data, device, i))
        arms["real_plus_synthetic"].append(
            train_arm(args, torch.cat([x, x_syn]), torch.cat([y, y_syn]), data, device, i)
        )
        print(json.dumps({k: v[-1]["test"] for k, v in arms.items()}), flush=True)
    out["arms"] = arms
    gains = [
        w["test"]["balanced_accuracy"] - r["test"]["balanced_accuracy"]
        for r, w in zip(arms["real_only"], arms["real_plus_synthetic"], strict=True)
    ]
    out["gain_mean"] = float(np.mean(gains))
    out["gain_sd"] = float(np.std(gains, ddof=1)) if len(gains) > 1 else 0.0
    out["tstr"] = train_arm(args, x_syn, y_syn, data, device, 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps({k: out[k] for k in ("gain_mean", "gain_sd")} | {"tstr": out["tstr"]["test"]}), flush=True)
    return out


if __name__ == "__main__":
    main()
