"""Sample variety of the image GAN on a run's real training images: does it collapse to a few look-alikes?

    python -m bench.gan_diversity --splits data/runs/defect-detection/<run>/splits.csv [--width 8 --steps 1500
        --n-critic 2 --size 64]

Trains ``gan_image`` on the real train-split rows only (the synth stage's rule), with bf16 on CPUs that have it,
then prints, per class, the mean pairwise L2 distance between 64 samples (pixels in [-1, 1]) for the EMA and the
raw generator, beside the same number for 64 real images. Collapse shows as a sample value far below the real one.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from models.gan_training import GanConfig, fit_gan, sample_gan
from models.registry import create_model
from tasks.synth.images import gan_inputs
from tasks.synthetic_samples import gan_training_rows


def diversity(x: np.ndarray, n: int = 64) -> float:
    a = x.reshape(len(x), -1)[:n].astype(np.float64)
    d = np.sqrt(((a[:, None] - a[None]) ** 2).sum(-1))
    return float(d[np.triu_indices(len(a), 1)].mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--splits", required=True, help="a run's splits.csv (real rows of the train split are used)")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--n-critic", type=int, default=2)
    p.add_argument("--size", type=int, default=64)
    a = p.parse_args()
    rows = gan_training_rows(pd.read_csv(a.splits, keep_default_na=False))
    x, y = gan_inputs(rows, a.size, 1)
    torch.manual_seed(0)
    gan = create_model("gan_image", in_chans=1, img_size=a.size, num_classes=int(y.max()) + 1, width=a.width)
    cfg = GanConfig(steps=a.steps, batch_size=64, device="cpu", seed=0, amp_cpu=True, n_critic=a.n_critic)
    t0 = time.perf_counter()
    fit_gan(gan, x, y, cfg)
    print(f"width {a.width}, n_critic {a.n_critic}, {a.steps} steps: {time.perf_counter() - t0:.0f} s")
    for c in sorted(set(y.tolist())):
        real = diversity(x[y == c].numpy())
        ema = diversity(sample_gan(gan, np.full(64, c), seed=1, use_ema=True))
        raw = diversity(sample_gan(gan, np.full(64, c), seed=1, use_ema=False))
        print(f"class {c}: real {real:.2f}, EMA generator {ema:.2f}, raw generator {raw:.2f}")


if __name__ == "__main__":
    main()
