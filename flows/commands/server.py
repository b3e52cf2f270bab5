"""``vigil server``: a local Prefect server plus read-only http access to the runs folder.

Why a wrapper around ``prefect server start``: vigil wants the server's SQLite database under ``$VIGIL_DATA/prefect``
(so ``vigil run``, ``vigil runs`` and the UI share one history), analytics off (they caused "database is locked"
errors with local SQLite), ``PREFECT_UI_API_URL`` matching the chosen port (``--port`` alone leaves the UI calling
port 4200), and an http address for ``report.html`` (browsers refuse ``file://`` links from the UI). A small state
file, ``$VIGIL_DATA/prefect/server.json``, lets other vigil commands find the running server for the same data root.

Only the standard library is imported at module level, so ``vigil --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from flows.prefect_api import (
    LOOPBACK,
    api_healthy,
    api_url_for,
    die_with_parent,
    prefect_dir,
    remove_state,
    running_server,
    write_state,
)

DEFAULT_PORT = 4200
DEFAULT_RUNS_PORT = 4201
HEALTH_TIMEOUT_S = 120.0


# ------------------------------------------------------------------------------------------------ pure helpers


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (the OS picks it); for tests and ``--port 0``.

    There is a small race between closing the probe socket and the caller binding the port; on a test machine that
    is acceptable, and ``start_server`` reports a clear error if it is lost.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """True when ``host:port`` cannot be bound right now (another server, or a previous ``vigil server``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def server_env(data_root: Path, host: str, port: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ``prefect server start``: vigil's database, analytics off, a UI that calls this port.

    A database URL the user set (e.g. PostgreSQL) is kept; so is an explicit ``PREFECT_UI_API_URL`` (a reverse
    proxy knows its public address better than we do). ``PREFECT_API_URL`` is dropped: the server does not need it
    and a stale value would only confuse its own client calls.
    """
    env = dict(os.environ if base is None else base)
    env.pop("PREFECT_API_URL", None)
    db_dir = prefect_dir(data_root)
    env.setdefault("PREFECT_SERVER_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{db_dir / 'prefect.db'}")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_SERVER_API_HOST"] = host
    env["PREFECT_SERVER_API_PORT"] = str(port)
    env.setdefault("PREFECT_UI_API_URL", api_url_for(host, port))
    return env


def server_command(host: str, port: int) -> list[str]:
    """``prefect server start`` through this interpreter: the venv's Prefect, even without ``prefect`` on PATH."""
    return [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]


# ------------------------------------------------------------------------------------ the runs folder over http


#: Host names the runs server answers to. A browser tricked by DNS rebinding sends the attacker's name instead.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def host_is_loopback(host_header: str | None) -> bool:
    """Whether an HTTP ``Host`` header names this machine's loopback (with or without a port).

    Binding to 127.0.0.1 keeps other machines out, but not a web page in the user's own browser whose domain was
    re-pointed at 127.0.0.1 (DNS rebinding): its requests carry that domain in ``Host``, so anything else is refused.
    """
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:4201
        return host.split("]", 1)[0] + "]" in LOOPBACK_NAMES
    return host.rsplit(":", 1)[0] in LOOPBACK_NAMES if host.count(":") <= 1 else host in LOOPBACK_NAMES


def inside(path: Path, root: Path) -> bool:
    """Whether ``path``, with every symlink resolved, is ``root`` or lies under it."""
    real, base = path.resolve(), root.resolve()
    return real == base or base in real.parents


class _ReadOnlyRunsHandler(SimpleHTTPRequestHandler):
    """GET and HEAD only (the base class answers 501 to anything else); no caching, so a rerun shows fresh files.

    A request whose ``Host`` is not a loopback name gets 403, and a path that leaves the runs folder once its
    symlinks are resolved gets 404, as if it were not there.
    """

    server_version = "vigil-runs"

    def _refused(self) -> bool:
        if not host_is_loopback(self.headers.get("Host")):
            self.send_error(403, "the runs folder answers only to 127.0.0.1 and localhost")
            return True
        if not inside(Path(self.translate_path(self.path)), Path(self.directory)):
            self.send_error(404, "File not found")
            return True
        return False

    def do_GET(self) -> None:
        if not self._refused():
            super().do_GET()

    def do_HEAD(self) -> None:
        if not self._refused():
            super().do_HEAD()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: every UI click would otherwise print a line between the Prefect server's logs."""


class RunsHTTPServer(ThreadingHTTPServer):
    """Serves ``$VIGIL_DATA/runs`` read-only on loopback, with directory listings.

    Bound to 127.0.0.1 only: run folders hold models and data paths, and nothing here authenticates a caller.
    """

    daemon_threads = True

    def __init__(self, runs_dir: Path, port: int = 0) -> None:
        runs_dir.mkdir(parents=True, exist_ok=True)
        self.runs_dir = runs_dir
        handler = functools.partial(_ReadOnlyRunsHandler, directory=str(runs_dir))
        super().__init__((LOOPBACK, port), handler)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}/"

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="vigil-runs-http", daemon=True)
        thread.start()
        return thread


# ---------------------------------------------------------------------------------------- the running server


@dataclass
class ServerHandle:
    """A started ``vigil server``: the Prefect subprocess, the runs http server and the state file."""

    data_root: Path
    api_url: str
    runs_url: str
    process: subprocess.Popen[bytes]
    runs_server: RunsHTTPServer
    pid: int = field(default_factory=os.getpid)

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """Remove the state file, stop the http server, then SIGTERM the Prefect server's process group.

        The state file goes first so no vigil command picks a server that is shutting down. The process group (the
        server runs in its own session) makes sure nothing Prefect started is left behind; SIGKILL after
        ``timeout_s``. Returns the server's exit code.
        """
        remove_state(self.data_root, self.pid)
        self.runs_server.shutdown()
        self.runs_server.server_close()
        return stop_process_group(self.process, timeout_s)


def stop_process_group(process: subprocess.Popen[Any], timeout_s: float = 20.0) -> int | None:
    """SIGTERM a process started with ``start_new_session=True`` and its children; SIGKILL if it does not exit."""
    if process.poll() is not None:
        return process.returncode
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            return process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    return process.poll()


def wait_for_health(
    api_url: str, process: subprocess.Popen[Any], timeout_s: float = HEALTH_TIMEOUT_S, log_path: Path | None = None
) -> float:
    """Poll ``/api/health`` until it answers; returns the seconds it took.

    Raises:
        RuntimeError: the server exited first, or did not answer within ``timeout_s`` (the message carries the
            last lines of its log when there is one, which usually names the cause, e.g. a database URL typo).
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if api_healthy(api_url, timeout_s=2.0):
            return time.monotonic() - start
        if process.poll() is not None:
            raise RuntimeError(
                f"prefect server exited with code {process.returncode} before {api_url}/health answered"
                + _log_tail(log_path)
            )
        time.sleep(0.25)
    raise RuntimeError(
        f"prefect server did not answer {api_url}/health within {timeout_s:.0f} s; on a busy machine raise the "
        "timeout, else check the server's log" + _log_tail(log_path)
    )


def _log_tail(log_path: Path | None, n_lines: int = 20) -> str:
    if log_path is None or not log_path.is_file():
        return ""
    lines = log_path.read_text(errors="replace").splitlines()[-n_lines:]
    return "\nlast lines of the server log:\n" + "\n".join(lines)


def start_server(
    data_root: Path,
    *,
    host: str = LOOPBACK,
    port: int = DEFAULT_PORT,
    runs_port: int = DEFAULT_RUNS_PORT,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    timeout_s: float = HEALTH_TIMEOUT_S,
    output: IO[Any] | None = None,
) -> ServerHandle:
    """Start ``prefect server start`` and the runs http server, wait until healthy, write the state file.

    Args:
        data_root: ``$VIGIL_DATA``; the database and state file go under ``data_root/prefect``.
        host: interface for the Prefect server (the runs folder is always served on 127.0.0.1 only).
        port: Prefect API/UI port; 0 picks a free one.
        runs_port: port for the runs folder; 0 picks a free one.
        env: base environment for the server (default: this process's).
        log_path: write the server's output there (tests); else it goes to ``output`` (default: standard error,
            keeping standard output for vigil's own lines).
        timeout_s: how long to wait for ``/api/health``.

    Raises:
        RuntimeError: a server for this data root is already running, a port is taken, or the server did not
            become healthy. Nothing is left running in that case.
    """
    data_root = Path(data_root).resolve()
    existing = running_server(data_root)
    if existing is not None:
        raise RuntimeError(
            f"a vigil server is already running for {data_root}: {existing['api_url']} (pid {existing.get('pid')}); "
            "use it (vigil commands find it), stop it, or set VIGIL_DATA to another folder"
        )
    port = port or free_port(host)
    if port_in_use(host, port):
        raise RuntimeError(f"port {port} on {host} is already in use; pick another with --port")
    prefect_dir(data_root).mkdir(parents=True, exist_ok=True)
    try:
        runs_server = RunsHTTPServer(data_root / "runs", runs_port)
    except OSError as exc:
        raise RuntimeError(
            f"cannot serve the runs folder on {LOOPBACK}:{runs_port} ({exc}); pick another with --runs-port"
        ) from exc
    runs_server.start_in_thread()
    api_url = api_url_for(host, port)
    log_file = open(log_path, "ab") if log_path is not None else None  # closed below; the child keeps its own copy
    try:
        process = subprocess.Popen(
            server_command(host, port),
            env=server_env(data_root, host, port, env),
            stdin=subprocess.DEVNULL,
            stdout=log_file or output or sys.stderr,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches vigil only; vigil then stops the whole group in order
            preexec_fn=die_with_parent(),  # and a `kill -9` of vigil takes the server with it
        )
    except BaseException:
        runs_server.shutdown()
        runs_server.server_close()
        raise
    finally:
        if log_file is not None:
            log_file.close()  # the child holds its own descriptor
    try:
        wait_for_health(api_url, process, timeout_s, log_path)
    except BaseException:
        stop_process_group(process)
        runs_server.shutdown()
        runs_server.server_close()
        raise
    handle = ServerHandle(
        data_root=data_root, api_url=api_url, runs_url=runs_server.url, process=process, runs_server=runs_server
    )
    write_state(
        data_root,
        {"api_url": handle.api_url, "runs_url": handle.runs_url, "pid": handle.pid, "prefect_pid": process.pid},
    )
    return handle


# ------------------------------------------------------------------------------------------------ the command


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vigil server`` on the CLI's subparsers."""
    p = sub.add_parser(
        "server",
        help="a local Prefect server (database under $VIGIL_DATA/prefect) plus read-only http access to the runs",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--host", default=LOOPBACK, help="interface for the Prefect API and UI (default: %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="Prefect API/UI port (default: %(default)s)")
    p.add_argument(
        "--runs-port",
        type=int,
        default=DEFAULT_RUNS_PORT,
        help="port for the runs folder, always on 127.0.0.1 (default: %(default)s; 0 = any free port)",
    )
    p.add_argument(
        "--timeout", type=float, default=HEALTH_TIMEOUT_S, help="seconds to wait for the server to become healthy"
    )
    p.set_defaults(func=cmd_server)
    return p


class _Stop(Exception):
    """Raised from the SIGINT/SIGTERM handler so the ``finally`` that stops the server runs."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def cmd_server(args: argparse.Namespace) -> int:
    """Run the server in the foreground until Ctrl-C or SIGTERM; print the addresses on standard output."""
    from tasks.rundir import data_root

    root = data_root()
    try:
        handle = start_server(root, host=args.host, port=args.port, runs_port=args.runs_port, timeout_s=args.timeout)
    except RuntimeError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 1
    # Both signals explicitly: a shell starts background jobs with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt, so `kill -INT` would leave the server running.
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"Prefect UI:   {handle.ui_url}", flush=True)
    print(f"Prefect API:  {handle.api_url}   (export PREFECT_API_URL={handle.api_url} for other tools)", flush=True)
    print(f"Runs folder:  {handle.runs_url}   (read-only: {root / 'runs'})", flush=True)
    print(f"Data root:    {root}; stop with Ctrl-C", flush=True)
    code = 0
    try:
        while handle.process.poll() is None:
            time.sleep(0.5)
        print(f"vigil: the Prefect server exited with code {handle.process.returncode}", file=sys.stderr)
        code = 1
    except (KeyboardInterrupt, _Stop):
        print("vigil: stopping the server", file=sys.stderr)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        handle.stop()
    return code


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="vigil")
    add_parser(_parser.add_subparsers(dest="command", required=True))
    _args = _parser.parse_args(["server", *sys.argv[1:]])
    sys.exit(_args.func(_args))
