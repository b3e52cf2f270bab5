"""``vigil sweep defect|eeg --grid FILE.yaml [--seeds N]``: configurations × seeds, summarised as mean ± sd.

The grid file maps dotted config keys to value lists (``train.lr: [0.001, 0.003]``); the sweep runs their Cartesian
product for seeds ``seed, seed+1, ...`` as subflow runs of one ``sweep`` flow (``flows/sweep.py``) and writes
``$VIGIL_DATA/sweeps/<flow>/<UTC stamp>-<name>/`` with ``sweep.csv`` (one row per run: parameters, seed, status,
metrics, run directory) and ``sweep.html`` (mean ± sd per configuration, the best configuration **on validation**
marked, a metric-vs-parameter plot). The best is chosen by a validation score only (defect: ``selection.value``,
the chosen candidate's validation metric); a flow whose metrics carry no validation score (EEG today) gets no
"best" mark rather than one chosen on test. Seed-to-seed spread is what the report's ± shows.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml


def read_grid(path: str | Path) -> dict[str, list[Any]]:
    """The grid file as ``{dotted key: [values]}``; ValueError naming the file and the problem."""
    p = Path(path).expanduser()
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"--grid {path}: cannot read it as YAML ({exc})") from exc
    if not isinstance(data, dict) or not data:
        raise ValueError(f"--grid {path}: expected a mapping of config keys to value lists, e.g. 'train.lr: [0.001]'")
    grid: dict[str, list[Any]] = {}
    for key, values in data.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"--grid {path}: {key} must map to a non-empty list of values, got {values!r}")
        grid[str(key)] = values
    return grid


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product, keys in file order, values in list order."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def point_sets(point: dict[str, Any]) -> list[str]:
    """``--set`` expressions for one grid point (JSON is valid YAML, so every value type survives)."""
    return [f"{key}={json.dumps(value)}" for key, value in point.items()]


def sweep_dir(data_root: Path, flow: str, name: str | None) -> Path:
    """``sweeps/<flow>/<UTC stamp>-<name>/``, created."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = data_root / "sweeps" / flow / f"{stamp}-{name or 'sweep'}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def cmd_sweep(args: argparse.Namespace) -> int:
    """Resolve every configuration first (a bad key stops the sweep before any run, exit 2), then run them."""
    from flows.config import gpu_available, resolve_config
    from flows.prefect_api import prefect_api
    from tasks.rundir import data_root

    try:
        grid = read_grid(args.grid)
        points = grid_points(grid)
        base = list(args.set or []) + ([f"ingest.path={Path(args.data).expanduser().resolve()}"] if args.data else [])
        first = resolve_config(
            args.flow,
            profile=args.profile,
            config_file=args.config,
            sets=base,
            default_profile="full" if gpu_available() else "quick",
        )
        seeds = [first.seed + i for i in range(args.seeds)]
        configs = [
            resolve_config(
                args.flow,
                profile=first.profile,
                config_file=args.config,
                sets=[*base, *point_sets(point), f"seed={seed}"],
            )
            for point in points
            for seed in seeds
        ]
    except ValueError as exc:
        print(f"vigil sweep: {exc}", file=sys.stderr)
        return 2
    root = data_root()
    out = sweep_dir(root, args.flow, args.name)
    from flows.sweep import sweep

    with prefect_api(root):
        command = "vigil sweep " + " ".join(sys.argv[2:] if len(sys.argv) > 2 else [args.flow])
        sweep(args.flow, configs, points, seeds, str(out), command)
    print(out.resolve())
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a flow over a grid of configurations x seeds; print the sweep folder")
    p.add_argument("flow", choices=("defect", "eeg"))
    p.add_argument("--grid", required=True, help="YAML mapping of dotted config keys to value lists")
    p.add_argument("--seeds", type=int, default=1, help="seeds per configuration: seed, seed+1, ... (default 1)")
    p.add_argument("--profile", choices=("test", "quick", "full"))
    p.add_argument("--config", help="YAML file with config sections, the base of every run")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one value in every run")
    p.add_argument("--data", help="the data folder or manifest of every run")
    p.add_argument("--name", help="name of the sweep folder (default: sweep)")
    p.set_defaults(func=cmd_sweep)
