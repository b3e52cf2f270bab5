"""How much the stage cache saves: the same ``vigil run`` twice, then once with one training parameter changed.

Runs the real CLI in subprocesses against a fresh ``VIGIL_DATA``, so Prefect's temporary server start is counted
in every wall time, and reads each run's ``metrics.json`` for which stages were reused.

    python bench/cache_reuse.py --flow defect --profile quick --change train.epochs=41 --out bench/results/cache.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], env: dict[str, str]) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"vigil {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    return wall, json.loads((run_dir / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", default="defect", choices=("defect", "eeg"))
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--change", default="train.epochs=41", help="the --set of the third run")
    parser.add_argument("--set", action="append", default=[], help="extra --set for all three runs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="vigil-cache-bench-"))
    env = dict(os.environ, VIGIL_DATA=str(data), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    base = ["run", args.flow, "--profile", args.profile, *[x for s in args.set for x in ("--set", s)]]
    rows = []
    for label, extra in (("first", []), ("identical", []), (f"changed {args.change}", ["--set", args.change])):
        wall, metrics = run(base + extra, env)
        rows.append(
            {
                "run": label,
                "wall_s": round(wall, 1),
                "cached": metrics.get("cached", {}),
                "timing_s": metrics.get("timing_s", {}),
            }
        )
        print(f"{label:<28} {wall:7.1f} s   cached: {metrics.get('cached')}", flush=True)
    ratio = rows[1]["wall_s"] / rows[0]["wall_s"]
    print(f"identical rerun / first = {ratio:.3f}")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "identical_over_first": ratio}, indent=2))


if __name__ == "__main__":
    main()
