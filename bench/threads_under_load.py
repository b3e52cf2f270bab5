"""Seconds per training epoch of ``models.training.fit`` with load-aware threads against fixed counts, on a quiet
machine and beside busy processes (issue #14: OpenMP threads spin-wait for cores another process holds).

Each variant trains a fresh copy of the same model on the same random images (``FitConfig.threads``: ``auto`` is
``None``, chosen from the free cores at the start and after every epoch); the first epoch is a warm-up and is not
counted. ``--busy K`` starts K single-core busy loops (``python -c 'while True: pass'``) for the whole run and
stops them at the end, whatever happens.

Run on demand (not a test); needs only torch and numpy::

    python bench/threads_under_load.py --busy 0 --busy 1 --threads auto --threads 2 --threads 1

The machine's load average before the run is printed: on a shared machine the numbers are only comparable
within one invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import models  # noqa: E402,F401  (registers the models)
from models.registry import create_model  # noqa: E402
from models.training import FitConfig, fit  # noqa: E402


def epoch_seconds(model_name: str, size: int, n: int, epochs: int, threads: int | None) -> tuple[float, list[int]]:
    """Median seconds of the epochs after the first, and the thread count ``fit`` used for each epoch."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, size, size, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(x[: n // 4], y[: n // 4]), batch_size=64)
    torch.manual_seed(0)
    model = create_model(model_name, in_chans=1, num_classes=2)
    config = FitConfig(epochs=epochs, lr=1e-3, patience=None, device="cpu", threads=threads)
    result = fit(model, train, val, config)
    return statistics.median(row["seconds"] for row in result.history[1:]), result.threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet_small")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--n", type=int, default=384)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--busy", type=int, action="append", help="busy loops beside the fit (repeatable)")
    parser.add_argument("--threads", action="append", help="'auto' or a count (repeatable)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}, torch threads by default: {torch.get_num_threads()}", flush=True)
    rows = []
    for busy in args.busy or [0, 1]:
        loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            time.sleep(1.0 if busy else 0.0)
            for spec in args.threads or ["auto", "2", "1"]:
                threads = None if spec == "auto" else int(spec)
                seconds, used = epoch_seconds(args.model, args.size, args.n, args.epochs, threads)
                row = {"busy": busy, "threads": spec, "epoch_s": round(seconds, 3), "threads_used": used}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            for loop in loops:
                loop.kill()
                loop.wait()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
