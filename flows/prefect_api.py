"""Which Prefect API a vigil command talks to, and how a running ``vigil server`` is found.

Order: a configured ``PREFECT_API_URL``; else the ``vigil server`` running for this data root (its state file,
``$VIGIL_DATA/prefect/server.json``, plus a live ``/api/health``); else a temporary local server whose SQLite
database lives under ``$VIGIL_DATA/prefect``, so ``vigil run``, ``vigil runs`` and ``vigil server`` share one history.
Only the standard library is imported at module level, so ``vigil --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


STATE_FILE_NAME = "server.json"


def prefect_dir(data_root: Path) -> Path:
    """Where vigil keeps Prefect's database, result storage and the server state file."""
    return data_root / "prefect"


def state_file(data_root: Path) -> Path:
    """The state file a running ``vigil server`` writes for this data root."""
    return prefect_dir(data_root) / STATE_FILE_NAME


def url_host(host: str) -> str:
    """The host to put in URLs: a wildcard bind address is not something a browser or client can call."""
    if host in ("0.0.0.0", "", "::"):
        return LOOPBACK
    return f"[{host}]" if ":" in host else host


def api_url_for(host: str, port: int) -> str:
    """``http://HOST:PORT/api``, the value for ``PREFECT_API_URL`` and ``PREFECT_UI_API_URL``."""
    return f"http://{url_host(host)}:{port}/api"


def api_healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    """``GET {api_url}/health`` answers 200: the server is up and its database reachable."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ApiUnreachableError(RuntimeError):
    """The configured ``PREFECT_API_URL`` does not answer; the message names the URL and what to start or unset."""


def api_answers(api_url: str, timeout_s: float = 5.0) -> bool:
    """Whether anything answers HTTP at ``{api_url}/health`` within ``timeout_s``.

    Any HTTP status counts (a Prefect Cloud workspace answers 401 without its key, and the run itself will then say
    why); only a refused connection, an unknown host or a timeout mean nobody is there.
    """
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout_s):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def read_state(data_root: Path) -> dict[str, Any] | None:
    """The state file's content, or None when it is missing or unreadable (a crash mid-write, a manual edit)."""
    try:
        data = json.loads(state_file(data_root).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("api_url"), str):
        return None
    return data


def write_state(data_root: Path, info: dict[str, Any]) -> Path:
    """Write the state file atomically, so a reader never sees half a JSON document."""
    path = state_file(data_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def remove_state(data_root: Path, pid: int) -> None:
    """Remove the state file if it is ours (``pid``); another server's file for the same root is left alone."""
    current = read_state(data_root)
    if current is not None and current.get("pid") != pid:
        return
    with contextlib.suppress(FileNotFoundError):
        state_file(data_root).unlink()


def running_server(data_root: Path) -> dict[str, Any] | None:
    """The ``vigil server`` running for this data root, as ``{api_url, runs_url, pid, prefect_pid}``, or None.

    Both the state file and a live ``/api/health`` are required: a file left behind by a killed server must not send
    runs to a dead address.
    """
    info = read_state(data_root)
    if info is None or not api_healthy(info["api_url"]):
        return None
    return info


@contextmanager
def prefect_api(data_root: Path) -> Iterator[str]:
    """Use the configured Prefect API if there is one, else a temporary server whose database is under the data root.

    Keeping the database under ``$VIGIL_DATA/prefect`` means ``vigil run`` and ``vigil runs`` share one history.
    Analytics off: with local SQLite they caused "database is locked" errors here (Prefect issue #18934).

    Raises:
        ApiUnreachableError: If ``PREFECT_API_URL`` is set but nothing answers there.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        # Checked here, in a second: Prefect itself retries for a minute and ends in a 110-line traceback.
        if not api_answers(str(configured)):
            raise ApiUnreachableError(
                f"the Prefect API at {configured} does not answer; start it (`vigil server` / `prefect server start`) "
                "or unset PREFECT_API_URL"
            )
        yield str(configured)
        return
    found = running_server(data_root)
    if found is not None:
        with temporary_settings({PREFECT_API_URL: found["api_url"]}):
            yield found["api_url"]
        return
    db_dir = data_root / "prefect"
    db_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{db_dir / 'prefect.db'}")
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(db_dir / "storage"))
    os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.5")
    # Prefect gives its temporary server 20 s; on 2 busy cores it can need more, and a timeout loses the run.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    with temporary_settings():
        yield "temporary local server"
