"""Which Prefect API a vigil command talks to, and how a running ``vigil server`` is found.

Order: a configured ``PREFECT_API_URL``; else the ``vigil server`` running for this data root (its state file,
``$VIGIL_DATA/prefect/server.json``, plus a live ``/api/health``); else a temporary local server whose SQLite
database lives under ``$VIGIL_DATA/prefect``, so ``vigil run``, ``vigil runs`` and ``vigil server`` share one history.
Only the standard library is imported at module level, so ``vigil --help`` stays fast.

The temporary server is vigil's own, not the one Prefect would start lazily from whichever thread first needs an API:
started from the main thread in its own session (a Ctrl-C or a ``timeout`` that signals the whole process group
reaches vigil only, so vigil can still record the run's end state before it stops the server), and marked to die
with vigil (Linux's parent-death signal), so even ``kill -9`` of vigil leaves no server listening. On the way out,
Prefect's log and event workers are drained with a time limit before the server stops: left to the interpreter's
exit, they retried a stopped server's events websocket every 7 s for minutes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


STATE_FILE_NAME = "server.json"

#: Seconds vigil waits for Prefect's log and event workers to deliver what they hold before a command ends.
DRAIN_TIMEOUT_S = 5.0


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


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT reached vigil; a ``KeyboardInterrupt`` so every layer treats it as the user stopping it.

    Prefect's own SIGTERM bridge is active while a flow runs: it records the run as Crashed (the flow writes its
    report first) and then sends the signal again, which lands here and unwinds the command.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


#: The stop signals received inside the current :func:`stop_on_signals` block, most recent last.
_RECEIVED: list[RunInterrupted] = []


def _raise_interrupted(signum: int, frame: object) -> None:
    _RECEIVED.append(RunInterrupted(signum))
    raise _RECEIVED[-1]


def signal_received() -> RunInterrupted | None:
    """The stop signal received in the current :func:`stop_on_signals` block, if any: the interrupt can surface as
    another exception (raised inside ``torch.save``, it leaves the zip writer to fail with a ``RuntimeError``), and
    the command must still end as stopped, not as failed."""
    return _RECEIVED[-1] if _RECEIVED else None


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`RunInterrupted` in the main thread for the duration of the block.

    Both explicitly: a shell starts background jobs with SIGINT ignored, and a Prefect worker or ``timeout`` cancels
    with SIGTERM, whose default action would end vigil before it stops its temporary server. Elsewhere than in the
    main thread (a test calling the CLI from a thread) nothing is installed.
    """
    _RECEIVED.clear()
    try:
        previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _prctl_pdeathsig(sig: int) -> bool:
    """Ask Linux to send this process ``sig`` when the thread that started it exits (``PR_SET_PDEATHSIG``)."""
    if not sys.platform.startswith("linux"):
        return False
    pr_set_pdeathsig = 1
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int | None = None) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets SIGKILL when its parent dies, even by ``kill -9``.

    Linux only (``None`` elsewhere, where the caller's own ``finally`` is the only cleanup). The signal follows
    the *thread* that forked the child, so start the child from the main thread. If the parent is already gone by
    the time the child runs this, the child exits at once.
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid() if parent_pid is None else parent_pid

    def preexec() -> None:
        if _prctl_pdeathsig(signal.SIGKILL) and os.getppid() != parent:
            os._exit(1)

    return preexec


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _owned_server(port: int) -> Any:
    """A Prefect ``SubprocessASGIServer`` on ``port`` that lives in its own session and dies with vigil."""
    import prefect
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    class OwnedServer(SubprocessASGIServer):
        def _run_uvicorn_command(self) -> Any:  # Prefect's own command, plus start_new_session and preexec_fn
            import subprocess

            command = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent)]
            command += ["--factory", "prefect.server.api.server:create_app", "--host", LOOPBACK]
            command += ["--port", str(self.port), "--log-level", "error", "--lifespan", "on"]
            env = {
                **os.environ,
                "PREFECT_UI_ENABLED": "0",
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
                **get_current_settings().to_environment_variables(exclude_unset=True),
            }
            return subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=die_with_parent())

    return OwnedServer(port=port)


def drain_prefect_workers(timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Let Prefect's log and event workers deliver what they hold, for at most about ``timeout_s`` each.

    Called while the API is still up; a worker that cannot deliver (the API went away) is abandoned after the
    timeout rather than retried at interpreter exit.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(RuntimeError):
            worker.drain_all(timeout=timeout_s)


def _stop_quickly(process: Any, grace_s: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``: uvicorn's graceful stop waits for open websockets (Prefect's event
    client keeps one), and nothing is left to deliver once the command is done (SQLite commits are atomic)."""
    import subprocess

    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def temporary_server(db_dir: Path) -> Iterator[str]:
    """vigil's own temporary Prefect server (see the module docstring), stopped when the block ends, however."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    db_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{db_dir / 'prefect.db'}")
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(db_dir / "storage"))
    os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.5")
    # Prefect gives its temporary server 20 s; on 2 busy cores it can need more, and a timeout loses the run.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    server = _owned_server(_free_port())
    previous_default = SubprocessASGIServer._instances.get(None)
    try:
        with temporary_settings():  # the settings read from the variables set above
            server.start()
            # Prefect code that asks for "the" temporary server gets this one instead of starting another.
            SubprocessASGIServer._instances[None] = server
            with temporary_settings({PREFECT_API_URL: server.api_url}):
                try:
                    yield server.api_url
                finally:
                    drain_prefect_workers()
    finally:
        _stop_quickly(server.server_process)
        server.stop()
        if previous_default is not None:
            SubprocessASGIServer._instances[None] = previous_default
        else:
            SubprocessASGIServer._instances.pop(None, None)


@contextmanager
def prefect_api(data_root: Path) -> Iterator[str]:
    """Use the configured Prefect API if there is one, else a temporary server whose database is under the data root.

    Keeping the database under ``$VIGIL_DATA/prefect`` means ``vigil run`` and ``vigil runs`` share one history.
    Analytics off: with local SQLite they caused "database is locked" errors here (Prefect issue #18934). SIGTERM
    and SIGINT raise :class:`RunInterrupted` inside the block (:func:`stop_on_signals`), so the temporary server is
    always stopped and Prefect's workers are drained before the command ends.

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
        with stop_on_signals():
            try:
                yield str(configured)
            finally:
                drain_prefect_workers()
        return
    found = running_server(data_root)
    with stop_on_signals():
        if found is not None:
            with temporary_settings({PREFECT_API_URL: found["api_url"]}):
                try:
                    yield found["api_url"]
                finally:
                    drain_prefect_workers()
            return
        with temporary_server(prefect_dir(data_root)) as api_url:
            yield api_url
