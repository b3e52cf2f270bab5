"""Benchmark: one EfficientNet-Lite0 training step (forward, backward, AdamW) on the CPU, fp32 vs bf16, NCHW vs NHWC.

Why: the `quick` defect profile fine-tunes Lite0 on 2 cores, where depthwise convolutions under bf16 autocast
turned out slower than fp32; this is the rerunnable source of that choice (BENCHMARKS.md, issue 11).

    python -m bench.lite0_step --size 160 --threads 2        # prints one line per setting
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from models.registry import create_model
from models.runtime import cpu_bf16_native


def step_seconds(size: int, channels_last: bool, bf16: bool, batch: int, steps: int) -> list[float]:
    """Wall seconds of ``steps`` training steps after two warm-up steps (grey input, 2 classes)."""
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", in_chans=1, num_classes=2)
    x, y = torch.randn(batch, 1, size, size), torch.randint(0, 2, (batch,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return times[2:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"cpu bf16 native: {cpu_bf16_native()}; {args.threads} threads; batch {args.batch}; {args.size} px")
    for channels_last in (True, False):
        for bf16 in (False, True):
            t = step_seconds(args.size, channels_last, bf16, args.batch, args.steps)
            layout = "NHWC" if channels_last else "NCHW"
            print(f"{layout} {'bf16' if bf16 else 'fp32'}: median {statistics.median(t):.3f} s/step ({t})")


if __name__ == "__main__":
    main()
