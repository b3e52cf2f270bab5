"""The ``vigil`` command (docs/architecture.md, "Command line"): run flows, list runs, serve, gc.

``vigil run`` prints the absolute run directory as the last line of standard output; everything else (Prefect's
logs, progress bars) goes to standard error, so scripts can do ``dir=$(vigil run defect | tail -1)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.commands.gc import cmd_gc
from flows.commands.runs import cmd_runs
from flows.config import gpu_available
from flows.prefect_api import prefect_api

FLOWS = ("defect", "eeg")


def cmd_run(args: argparse.Namespace) -> int:
    from flows.config import resolve_config
    from tasks.rundir import data_root

    sets = list(args.set or [])
    if args.data is not None:
        sets.append(f"ingest.path={Path(args.data).expanduser().resolve()}")
    try:
        config = resolve_config(
            args.flow,
            profile=args.profile,
            config_file=args.config,
            sets=sets,
            default_profile="full" if gpu_available() else "quick",
        )
    except ValueError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 2
    if args.data is not None and not Path(args.data).expanduser().exists():
        print(f"vigil: --data {args.data}: no such file or folder", file=sys.stderr)
        return 2
    root = data_root()
    from flows.lifecycle import expand_refresh

    if args.flow == "defect":
        from flows.defect_detection import STAGES
        from flows.defect_detection import defect_detection as flow_fn
    else:
        from flows.seizure_prediction import STAGES
        from flows.seizure_prediction import seizure_prediction as flow_fn
    try:
        expand_refresh(args.refresh, STAGES)
    except ValueError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 2
    options = {"flow_run_name": args.name} if args.name else {}
    with prefect_api(root):
        state = flow_fn.with_options(**options)(
            config=config, refresh=args.refresh, resume=bool(args.name), return_state=True
        )
    run_dir = state.result(raise_on_failure=False) if state.is_completed() or state.is_failed() else None
    if isinstance(run_dir, BaseException):
        run_dir = None
    if not state.is_completed():
        print(f"vigil: run {state.name.lower()}: {state.message}", file=sys.stderr)
    if run_dir:
        print(Path(str(run_dir)).resolve())
    return 0 if state.is_completed() else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a flow and print its run directory")
    run.add_argument("flow", choices=FLOWS)
    run.add_argument(
        "--data",
        help="defect: image folder ROOT/<class>/* or CSV manifest (default: ELPV); "
        "eeg: CHB-MIT layout or a folder of EDF/EDF+ files (default: the simulator)",
    )
    run.add_argument("--profile", choices=("test", "quick", "full"), help="default: quick without a GPU, full with")
    run.add_argument("--config", help="YAML file with config sections (a run's config.yaml works)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one value, e.g. train.epochs=5")
    run.add_argument("--name", help="run name; an existing run of that name is resumed from its checkpoint")
    run.add_argument("--refresh", nargs="*", metavar="STAGE", help="recompute cached stages (all when none named)")
    run.set_defaults(func=cmd_run)
    runs = sub.add_parser("runs", help="recent runs with their headline metrics, newest first")
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(func=cmd_runs)
    from flows.commands.serve import add_parser as add_serve_parser
    from flows.commands.server import add_parser as add_server_parser

    add_server_parser(sub)
    add_serve_parser(sub)
    gc = sub.add_parser("gc", help="prune old run directories and unused cache entries")
    gc.add_argument("--keep", type=int, required=True, metavar="N", help="run directories to keep per flow, newest")
    gc.add_argument("--dry-run", action="store_true", help="list what would be deleted and how much; delete nothing")
    gc.set_defaults(func=cmd_gc)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
