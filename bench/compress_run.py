"""The compress stage on a finished defect run's shipped model, outside the flow (same code, same defaults).

    python -m bench.compress_run RUN_DIR [--out DIR] [--threads 2] [--max-test N]

Reads ``RUN_DIR/model.pt`` (its threshold) and ``RUN_DIR/splits.csv`` (test images; train images for calibration),
writes ``model.onnx``, ``model.int8.onnx`` and ``compress.json`` to ``--out`` (default: a temporary folder) and
prints the variants as JSON with the stage's wall time: the numbers a quick run's compress stage reports, for a run
made before the stage existed or to re-measure on a quieter machine.
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

import pandas as pd  # noqa: E402

from tasks.compress.images import compress_images  # noqa: E402
from tasks.config import CompressConfig  # noqa: E402
from tasks.model_file import read_model_file  # noqa: E402
from tasks.report.compress import verdict  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-test", type=int)
    args = parser.parse_args()
    cfg = CompressConfig(threads=args.threads, max_test_samples=args.max_test)
    table = pd.read_csv(args.run_dir / "splits.csv", keep_default_na=False)
    threshold = read_model_file(args.run_dir / "model.pt").get("threshold")
    out = args.out or Path(tempfile.mkdtemp(prefix="vigil-compress-"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    document = compress_images(args.run_dir / "model.pt", threshold, table, cfg, seed=0, out=out)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": round(seconds, 1), "n_test": document["n_test"], "out": str(out),
                      "variants": document["variants"]}, indent=1))  # fmt: skip
    print(verdict(document["variants"], cfg.parity_tolerance))


if __name__ == "__main__":
    main()
