"""``vigil serve``: both flows as scheduled deployments, served from one long-running process.

The deployments carry the fully resolved config (profile < ``--*-config`` file < ``--*-data``) as the flow's
``config`` parameter, so a scheduled run, a run started from the UI form and ``run_deployment(...)`` all go through
the same pydantic model: the Prefect server checks a run's parameters against the model's JSON schema (unknown keys,
out-of-range values) before it creates the run, and the flow validates them again when it starts.

``prefect.yaml`` at the repository root is the other route (a ``process`` work pool and ``prefect worker start``);
README.md has both, step by step.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.prefect_api import running_server

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from pydantic import BaseModel

DEPLOYMENT_NAME = "nightly"
DEFAULT_CRONS = {"defect": "0 2 * * *", "eeg": "0 3 * * *"}


def deployment_parameters(config: BaseModel) -> dict[str, Any]:
    """The deployment's parameters: the whole resolved config as JSON-compatible data (tuples become lists).

    Prefect merges a run's parameters over these one top-level key at a time, so a run that passes ``config``
    replaces the whole config: pass a complete one (``model_dump(mode="json")`` of a resolved config).
    """
    return {"config": config.model_dump(mode="json")}


def build_deployment(
    flow_key: str,
    config: BaseModel,
    *,
    name: str = DEPLOYMENT_NAME,
    cron: str | None = None,
    timezone: str = "UTC",
) -> RunnerDeployment:
    """One flow as a deployment for ``prefect.serve``.

    The entrypoint is the module path (``flows.defect_detection.defect_detection``), not a file path relative to
    the current directory: the package is installed, so the served runs import it the same way from any folder,
    and the flow's module keeps its real name (a Dataset or DataLoader worker defined in a file loaded by path
    failed in served runs: Prefect issues #9329, #17449).
    """
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    if flow_key == "defect":
        from flows.defect_detection import defect_detection as flow_fn
    elif flow_key == "eeg":
        from flows.seizure_prediction import seizure_prediction as flow_fn
    else:
        raise ValueError(f"unknown flow {flow_key!r}; choose defect or eeg")
    return flow_fn.to_deployment(
        name=name,
        schedule=Cron(cron, timezone=timezone) if cron else None,
        parameters=deployment_parameters(config),
        tags=["vigil", str(getattr(config, "profile", ""))],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def resolve_api_url(data_root: Path) -> str:
    """The Prefect API to serve against: ``PREFECT_API_URL`` if set, else the ``vigil server`` for this data root.

    No temporary server here (unlike ``vigil run``): schedules need a server that outlives this process.

    Raises:
        RuntimeError: neither is available; the message says how to get one.
    """
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        return str(configured)
    found = running_server(data_root)
    if found is not None:
        return str(found["api_url"])
    raise RuntimeError(
        f"no Prefect API to serve against: start `vigil server` in another terminal (same VIGIL_DATA={data_root}) "
        "or set PREFECT_API_URL=http://HOST:PORT/api"
    )


def resolve_serve_configs(args: argparse.Namespace, default_profile: str) -> dict[str, BaseModel]:
    """Resolve each flow's config the way ``vigil run`` does (profile < config file < data path).

    Raises:
        ValueError: a bad profile, config file, key or value, or a data path that does not exist; names it.
    """
    from flows.config import resolve_config

    configs: dict[str, BaseModel] = {}
    for key in ("defect", "eeg"):
        data = getattr(args, f"{key}_data", None)
        sets = []
        if data is not None:
            path = Path(data).expanduser().resolve()
            if not path.exists():
                raise ValueError(f"--{key}-data {data}: no such file or folder")
            sets.append(f"ingest.path={path}")
        configs[key] = resolve_config(
            key,
            profile=args.profile,
            config_file=getattr(args, f"{key}_config", None),
            sets=sets,
            default_profile=default_profile,
        )
    return configs


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vigil serve`` on the CLI's subparsers."""
    p = sub.add_parser(
        "serve",
        help="both flows as scheduled deployments, against the configured Prefect API (or a running vigil server)",
        description=__doc__.splitlines()[0],
    )
    for key, flow_name in (("defect", "defect-detection"), ("eeg", "seizure-prediction")):
        p.add_argument(
            f"--{key}-cron",
            default=DEFAULT_CRONS[key],
            help=f"schedule of {flow_name} (default: %(default)r; '' = no schedule, runs only when triggered)",
        )
        p.add_argument(f"--{key}-data", help=f"input of {flow_name}, as `vigil run {key} --data` (default: built-in)")
        p.add_argument(f"--{key}-config", help=f"YAML config file for {flow_name} (a run's config.yaml works)")
    p.add_argument("--timezone", default="UTC", help="time zone of the cron schedules (default: %(default)s)")
    p.add_argument("--profile", choices=("test", "quick", "full"), help="default: quick without a GPU, full with")
    p.add_argument("--name", default=DEPLOYMENT_NAME, help="deployment name (default: %(default)s)")
    p.add_argument("--limit", type=int, default=1, help="runs at the same time (default: %(default)s; one machine)")
    p.set_defaults(func=cmd_serve)
    return p


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve both deployments until Ctrl-C; their schedules are paused when this process stops."""
    from flows.config import gpu_available
    from tasks.rundir import data_root

    try:
        configs = resolve_serve_configs(args, default_profile="full" if gpu_available() else "quick")
    except ValueError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 2
    root = data_root()
    try:
        api_url = resolve_api_url(root)
    except RuntimeError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 1
    # Environment first: the runner starts each flow run in a subprocess that inherits it, so served runs record to
    # the same API and write to the same data root as this process.
    os.environ["PREFECT_API_URL"] = api_url
    os.environ["VIGIL_DATA"] = str(root)
    from prefect import serve
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        deployments = [
            build_deployment(
                key, configs[key], name=args.name, cron=getattr(args, f"{key}_cron") or None, timezone=args.timezone
            )
            for key in ("defect", "eeg")
        ]
        print(f"vigil: serving against {api_url}; data root {root}; stop with Ctrl-C", file=sys.stderr)
        serve(*deployments, limit=args.limit)
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="vigil")
    add_parser(_parser.add_subparsers(dest="command", required=True))
    _args = _parser.parse_args(["serve", *sys.argv[1:]])
    sys.exit(_args.func(_args))
