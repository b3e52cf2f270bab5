"""Write ELPV with the flow's own split as one compressed ``.npz`` for GPU benchmarks on a bare machine.

The GPU machine has torch and numpy only, so the data travel pre-decoded: uint8 grey images at ``--size`` px and
the exact train/val/test split of ``vigil run defect`` (label stage, same seed), so bench accuracies compare with
the flow's.

    python bench/make_elpv_npz.py --size 150 --out .devcarry/elpv150.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tasks.config import LabelConfig
from tasks.image_io import load_image
from tasks.ingest.images import read_elpv
from tasks.label.images import make_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    table = make_splits(read_elpv().records, "elpv", LabelConfig(), args.seed).table
    arrays: dict[str, np.ndarray] = {}
    for part in ("train", "val", "test"):
        sub = table[table["split"] == part]
        images = [load_image(p, args.size, 1)[:, :, 0] for p in sub["path"]]
        arrays[f"x_{part}"] = np.round(np.stack(images) * 255).astype(np.uint8)
        arrays[f"y_{part}"] = sub["label"].to_numpy().astype(np.int64)
        arrays[f"w_{part}"] = sub["weight"].to_numpy().astype(np.float32)
        arrays[f"stratum_{part}"] = sub["stratum"].to_numpy().astype("U4")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    sizes = {k: v.shape for k, v in arrays.items() if k.startswith("x_")}
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): {sizes}")


if __name__ == "__main__":
    main()
