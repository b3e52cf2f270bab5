"""The explain stage on a finished defect run's shipped model, outside the flow (same code, a profile's settings).

    python -m bench.explain_run RUN_DIR [--profile quick] [--out DIR] [--threads 2] [--seed 0]

Reads ``RUN_DIR/model.pt`` (weights, preprocessing, decision threshold) and ``RUN_DIR/splits.csv`` (the test
images), scores the test images with the model, runs :func:`tasks.explain.images.explain_images` with the profile's
``explain`` section, writes ``explain.json``, ``overlays.png`` and ``deletion.png`` to ``--out`` (default: a
temporary folder) and prints the checks as JSON with the wall time: the numbers a run's explain stage reports, for
a run made before the stage existed or to re-measure on a quieter machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from flows.config import resolve_config  # noqa: E402
from tasks.explain.images import explain_images, load_batch  # noqa: E402
from tasks.image_classifier import load_model  # noqa: E402


def test_rows(run_dir: Path, batch_size: int = 64) -> tuple[pd.DataFrame, dict]:
    """The run's test rows (``sample_id, path, label``) with the shipped model's ``prob_*``, and the model file."""
    model, meta = load_model(run_dir / "model.pt")
    splits = pd.read_csv(run_dir / "splits.csv", dtype={"sample_id": str}, keep_default_na=False)
    test = splits[(splits["split"] == "test") & ~splits["synthetic"].astype(bool)].reset_index(drop=True)
    probs = []
    with torch.inference_mode():
        for i in range(0, len(test), batch_size):
            _, x = load_batch(test["path"].iloc[i : i + batch_size].tolist(), meta)
            probs.append(torch.softmax(model(x).float(), dim=1).numpy())
    p = np.concatenate(probs)
    return test.assign(**{f"prob_{k}": p[:, k] for k in range(p.shape[1])}), meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="explain-"))
    out.mkdir(parents=True, exist_ok=True)
    cfg = resolve_config("defect", profile=args.profile).explain
    test, meta = test_rows(args.run_dir)
    start = time.perf_counter()
    result = explain_images(args.run_dir / "model.pt", test, meta.get("threshold"), cfg, args.seed, out)
    seconds = time.perf_counter() - start
    keys = ("model", "n_images", "randomisation_rank_corr", "randomisation_rank_corr_signed", "deletion_auc")
    keys += ("deletion_auc_random", "gradcam_layer", "randomised_layers")
    report = {k: result.get(k) for k in keys}
    report |= {"explain_seconds": round(seconds, 1), "torch_threads": torch.get_num_threads(), "out": str(out)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
