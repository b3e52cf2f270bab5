"""The ``vigil`` command (docs/architecture.md, "Command line"): run flows, list runs, serve, gc.

``vigil run`` prints the absolute run directory as the last line of standard output; everything else (Prefect's
logs, progress bars) goes to standard error, so scripts can do ``dir=$(vigil run defect | tail -1)``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from pathlib import Path

from flows.commands.gc import cmd_gc
from flows.commands.runs import cmd_runs
from flows.config import gpu_available
from flows.lifecycle import api_lost
from flows.prefect_api import ApiUnreachableError, prefect_api, signal_received

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
    if args.name is not None:  # before the Prefect server starts: a bad or taken name is a bad argument
        from flows.lifecycle import resume_problem

        if problem := resume_problem(root, flow_fn.name, args.name, config):
            print(f"vigil: --name: {problem}", file=sys.stderr)
            return 2
    options = {"flow_run_name": args.name} if args.name else {}
    with prefect_api(root):
        state = flow_fn.with_options(**options)(
            config=config, refresh=args.refresh, resume=bool(args.name), return_state=True
        )
    from flows.lifecycle import run_dir_of

    run_dir = run_dir_of(state.result(raise_on_failure=False)) if state.is_completed() or state.is_failed() else None
    if not state.is_final():  # the API went away: Prefect could not record how the run ended
        from tasks.rundir import find_run_dir

        run_dir = find_run_dir(root, flow_fn.name, args.name) if args.name else None
        print("vigil: run ended while the Prefect API was not answering, so its end state is not recorded there; "
              "the run's report says what was done", file=sys.stderr)  # fmt: skip
    elif not state.is_completed():
        print(f"vigil: run {state.name.lower()}: {state.message}", file=sys.stderr)
    if run_dir:
        print(Path(str(run_dir)).resolve())
    return 0 if state.is_completed() else 1


def interrupted_exit(exc: KeyboardInterrupt, command: str, raised: BaseException | None = None) -> int:
    """One sentence for a stopped command, the run directory (which holds the report) last on standard output, and
    the shell's exit status for the signal (130 for SIGINT, 143 for SIGTERM)."""
    from flows.lifecycle import run_dir_of

    signum = getattr(exc, "signum", 2)
    print(f"vigil: {command} {exc or 'stopped by SIGINT'}; the run's report says what was done", file=sys.stderr)
    cause: BaseException | None = raised or exc  # what actually unwound the command carries the run directory
    while cause is not None:  # Prefect's TerminationSignal, carrying the run directory's note, is in the chain
        if (run_dir := run_dir_of(cause)) is not None:
            print(Path(str(run_dir)).resolve())
            break
        cause = cause.__context__
    return 128 + int(signum)


#: Seconds the interpreter may spend exiting after the command is done (see :func:`_bound_exit`).
EXIT_GRACE_S = 10.0


def _bound_exit(exit_status: int, grace_s: float) -> None:
    """Give the interpreter ``grace_s`` seconds to exit, then end the process with ``exit_status``.

    Armed by :func:`main` when the command is done (a daemon timer). Prefect's log and event workers deliver what
    they hold at exit and retry an API that went away for minutes; vigil has already drained them with a time limit
    (``flows.prefect_api.drain_prefect_workers``), so anything still waiting then is lost either way.
    """

    def force() -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(exit_status)

    if grace_s <= 0:
        force()
    timer = threading.Timer(grace_s, force)
    timer.daemon = True
    timer.start()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a flow and print its run directory")
    run.add_argument("flow", choices=FLOWS)
    # SUPPRESS: without it the sub-command's default (False) would overwrite ``vigil --debug run``'s True.
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="as vigil --debug")
    run.add_argument(
        "--data",
        help="defect: image folder ROOT/<class>/* or CSV manifest (default: ELPV); "
        "eeg: CHB-MIT layout or a folder of EDF/EDF+ files (default: the simulator)",
    )
    run.add_argument("--profile", choices=("test", "quick", "full"), help="default: quick without a GPU, full with")
    run.add_argument("--config", help="YAML file with config sections (a run's config.yaml works)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one value, e.g. train.epochs=5")
    run.add_argument(
        "--name", help="run name; the run of exactly that name and the same config is resumed from its checkpoint"
    )
    run.add_argument("--refresh", nargs="*", metavar="STAGE", help="recompute cached stages (all when none named)")
    run.set_defaults(func=cmd_run)
    runs = sub.add_parser("runs", help="recent runs with their headline metrics, newest first")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument(
        "--compare", nargs=2, metavar="RUN", help="two run folders or run names: their config and metric differences"
    )
    runs.set_defaults(func=cmd_runs)
    from flows.commands.predict import add_parser as add_predict_parser
    from flows.commands.serve import add_parser as add_serve_parser
    from flows.commands.server import add_parser as add_server_parser
    from flows.commands.sweep import add_parser as add_sweep_parser

    add_server_parser(sub)
    add_serve_parser(sub)
    add_sweep_parser(sub)
    add_predict_parser(sub)
    gc = sub.add_parser("gc", help="prune old run directories and unused cache entries")
    gc.add_argument("--keep", type=int, required=True, metavar="N", help="run directories to keep per flow, newest")
    gc.add_argument("--dry-run", action="store_true", help="list what would be deleted and how much; delete nothing")
    gc.set_defaults(func=cmd_gc)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``vigil`` command; its exit status (README): 0 done, 1 the run failed, 2 bad arguments or config.

    A failure the user can fix ends in one sentence on standard error, never a traceback; an unexpected error is
    named in one line that points to ``--debug``, which shows the traceback instead.
    """
    args = build_parser().parse_args(argv)
    code = _run_command(args)
    if argv is None:  # the real command line (tests call main with arguments and must not be cut short)
        # A stopped command has recorded what it could and stopped its server: nothing is left to deliver, and
        # tearing the interpreter down (torch, Prefect's workers) took 4-20 s here, holding the GIL.
        _bound_exit(code, 0.0 if code in (128 + 2, 128 + 15) else EXIT_GRACE_S)
    return code


def _run_command(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGINT as RunInterrupted (flows.prefect_api)
        if args.debug:
            raise
        return interrupted_exit(exc, args.command)
    except ApiUnreachableError as exc:
        if args.debug:
            raise
        print(f"vigil: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the command's last word: one line instead of a traceback (--debug shows it)
        if args.debug:
            raise
        if (stop := signal_received()) is not None:  # a stop that surfaced as another error (mid torch.save)
            return interrupted_exit(stop, args.command, raised=exc)
        if api_lost(exc):  # the API went away outside a stage (Prefect's own bookkeeping): say so, not "unexpected"
            print(f"\nvigil: {args.command} stopped: the Prefect API stopped answering ({type(exc).__name__}: {exc}); "
                  "start it again (`vigil server`, or unset PREFECT_API_URL) and rerun with the same --name to go on "
                  "from what was done", file=sys.stderr)  # fmt: skip
            return 1
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"vigil: {args.command} stopped on an unexpected {type(exc).__name__}"
              f"{': ' + first if first else ''}; rerun with --debug to see the traceback", file=sys.stderr)  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
