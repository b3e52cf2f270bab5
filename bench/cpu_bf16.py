"""Training-step time of an image model on CPU, float32 vs bf16 autocast (what ``train.amp_cpu`` switches).

    python -m bench.cpu_bf16 [--model resnet_fast --size 128 --batch 32 --steps 15 --repeats 2]

Median of the steps after 3 warm-up steps; the two settings alternate so a drifting machine affects both.
On a CPU without native bf16 (see ``models.runtime.cpu_bf16_native``) the flow keeps float32 and so should you.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import models  # noqa: E402,F401
from models.registry import create_model  # noqa: E402
from models.runtime import cpu_bf16_native  # noqa: E402


def step_ms(model_name: str, size: int, batch: int, steps: int, bf16: bool) -> float:
    torch.manual_seed(0)
    x, y = torch.randn(batch, 1, size, size), torch.randint(0, 2, (batch,))
    model = create_model(model_name, in_chans=1, num_classes=2)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    rest = sorted(times[3:])
    return 1000 * rest[len(rest) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet_fast")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    print(f"native bf16: {cpu_bf16_native()}, threads: {torch.get_num_threads()}")
    for r in range(a.repeats):
        for bf16 in (False, True):
            ms = step_ms(a.model, a.size, a.batch, a.steps, bf16)
            print(f"repeat {r} {'bf16' if bf16 else 'fp32'}: {ms:.1f} ms/step")


if __name__ == "__main__":
    main()
