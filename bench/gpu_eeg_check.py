"""GPU check of the EEG models (torch + numpy only): bf16 train-step speed and a short fit through the fit loop.

Runs on a bare GPU machine: every registered full-size EEG model takes timed AdamW steps under bf16 autocast on
random 18-channel 4-s windows at 256 Hz, then ``models.training.fit`` trains it for a few epochs on a synthetic
task (10 Hz bursts vs pink-ish noise) held on the GPU, to show the cuDNN bf16 LSTM and attention paths train.

    python -m bench.gpu_eeg_check --out results.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from models.registry import create_model, list_models
from models.training import FitConfig, TensorBatches, fit, predict_proba


def burst_data(n: int, n_chans: int, n_times: int, sfreq: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=(n, n_chans, n_times)), axis=2)
    x -= x.mean(axis=2, keepdims=True)
    x /= x.std(axis=2, keepdims=True)
    y = rng.integers(0, 2, size=n)
    t = np.arange(n_times) / sfreq
    burst = np.sin(2 * np.pi * 10 * t) * np.exp(-(((t - t.mean()) / (0.2 * t[-1])) ** 2))
    x[y == 1, : n_chans // 3] += 1.5 * burst
    return x.astype(np.float32), y.astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_chans, sfreq, n_times = 18, 256.0, 1024
    results: dict = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
    }
    x_tr, y_tr = burst_data(4096, n_chans, n_times, sfreq, 0)
    x_te, y_te = burst_data(1024, n_chans, n_times, sfreq, 1)
    for name in [m for m in list_models("eeg") if not m.endswith("_tiny")]:
        torch.manual_seed(0)
        model = create_model(name, n_chans=n_chans, n_times=n_times, sfreq=sfreq).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        xb = torch.randn(args.batch_size, n_chans, n_times, device=device)
        yb = torch.randint(0, 2, (args.batch_size,), device=device)
        times = []
        for step in range(args.steps + 5):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= 5:
                times.append(time.perf_counter() - t0)
        speed = args.batch_size / float(np.median(times))
        torch.manual_seed(0)
        model = create_model(name, n_chans=n_chans, n_times=n_times, sfreq=sfreq).to(device)
        xt, yt = torch.from_numpy(x_tr).to(device), torch.from_numpy(y_tr).to(device)
        train = TensorBatches(xt, yt, batch_size=128, shuffle=True)
        val = TensorBatches(torch.from_numpy(x_te).to(device), torch.from_numpy(y_te).to(device), batch_size=512)
        t0 = time.perf_counter()
        res = fit(model, train, val, FitConfig(epochs=5, lr=2e-3, patience=None, device=str(device)))
        proba = predict_proba(model, val)
        acc = float((proba.argmax(1) == y_te).mean())
        results[name] = {
            "train_windows_per_s_bf16": speed,
            "loss_finite": bool(torch.isfinite(loss).item()),
            "fit_seconds_5_epochs": time.perf_counter() - t0,
            "fit_best_val_balanced_accuracy": res.best_metric,
            "test_accuracy_burst_task": acc,
        }
        print(name, json.dumps(results[name]), flush=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
