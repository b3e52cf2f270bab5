"""Benchmark: EfficientNet-Lite0 training steps beside a busy core, by thread count and OpenMP wait policy.

Why: issue #14 asks the quick defect run's train stage to stay within 1.5x of its quiet time beside one busy loop.
With one thread (what load-aware threads pick beside a busy process) a step cannot be faster than one core's
speed; two threads that *sleep* at OpenMP barriers (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning might share the
cores with the busy loop. The policy is read once when the OpenMP runtime starts, so every setting runs in its own
process. Steps as in the quick recipe: NHWC fp32, 128 px, batch 32, grey input, AdamW.

    python bench/omp_wait_policy.py --steps 6          # one line per (busy loops, threads, policy)
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

_CHILD = """
import json, sys, time, torch
sys.path.insert(0, {root!r})
from models.registry import create_model
torch.set_num_threads({threads})
torch.manual_seed(0)
model = create_model("efficientnet_lite0", in_chans=1, num_classes=2).to(memory_format=torch.channels_last)
x = torch.randn({batch}, 1, {size}, {size}).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 2, ({batch},))
opt = torch.optim.AdamW(model.parameters(), 1e-3)
times = []
for _ in range({steps} + 2):
    start = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    times.append(time.perf_counter() - start)
print(json.dumps(times[2:]))
"""


def run(threads: int, policy: str | None, busy: int, args: argparse.Namespace) -> list[float]:
    """Step seconds of one child process with ``busy`` single-core busy loops running beside it."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    code = _CHILD.format(root=str(Path(__file__).resolve().parents[1]), threads=threads, batch=args.batch,
                         size=args.size, steps=args.steps)  # fmt: skip
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f}; Lite0 NHWC fp32, {args.size} px, batch {args.batch}")
    rows = []
    for busy in (0, 1):
        for threads, policy in ((2, None), (2, "PASSIVE"), (1, None)):
            times = run(threads, policy, busy, args)
            row = {"busy": busy, "threads": threads, "policy": policy or "default"}
            row["median_s"] = statistics.median(times)
            rows.append(row | {"steps_s": times})
            print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
