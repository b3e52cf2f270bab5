"""Re-time a run's model files on this machine: model.pt (fp32 torch), model.onnx and model.int8.onnx.

    python -m bench.compress_latency RUN_DIR [--threads 2] [--repeats 50] [--rounds 3]

The compress stage measures once, inside the run, on whatever else the machine is doing; this reruns the latency
part alone (random inputs of the model's input shape, sizes of the three files), alternating the variants round by
round so a drifting load affects all three alike, and prints one JSON line per round plus the median of rounds.
EEG runs: pass ``RUN_DIR/detection`` or ``RUN_DIR/prediction``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tasks.compress.variants import median_latency_ms  # noqa: E402
from tasks.predict.model import open_predictor  # noqa: E402


def one_round(folder: Path, threads: int, repeats: int) -> dict[str, float]:
    """Median batch-1 and batch-32 latency (ms) of each file's probabilities, same threads for all."""
    torch.set_num_threads(threads)
    names = {"fp32_torch": "model.pt", "fp32_onnx": "model.onnx", "int8_onnx": "model.int8.onnx"}
    predictors = {key: open_predictor(folder / name, threads) for key, name in names.items()}
    shape = predictors["fp32_onnx"].meta["input_shape"][1:]
    out: dict[str, float] = {}
    for batch in (1, 32):
        x = np.random.default_rng(0).normal(size=(batch, *shape)).astype(np.float32)
        reps = repeats if batch == 1 else max(3, repeats // 10)
        for key, predictor in predictors.items():
            out[f"{key}_b{batch}_ms"] = median_latency_ms(predictor.probabilities, x, reps)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = {n: (args.folder / n).stat().st_size for n in ("model.pt", "model.onnx", "model.int8.onnx")}
    print(json.dumps({"threads": args.threads, "sizes_bytes": sizes}))
    rounds = [one_round(args.folder, args.threads, args.repeats) for _ in range(args.rounds)]
    for r in rounds:
        print(json.dumps({k: round(v, 3) for k, v in r.items()}))
    print(json.dumps({"median": {k: round(float(np.median([r[k] for r in rounds])), 3) for k in rounds[0]}}))


if __name__ == "__main__":
    main()
