"""The runs folder over http (``vigil server``): loopback Host names only, nothing outside the folder."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest

from flows.commands.server import RunsHTTPServer, host_is_loopback


@pytest.fixture()
def runs_server(tmp_path: Path):
    run = tmp_path / "runs" / "f" / "r"
    run.mkdir(parents=True)
    (run / "report.html").write_text("<html>ok</html>")
    (tmp_path / "secret.txt").write_text("private key")
    (run / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (run / "leakdir").symlink_to(tmp_path)
    (run / "same.html").symlink_to(run / "report.html")  # a link that stays inside is fine
    server = RunsHTTPServer(tmp_path / "runs", 0)
    server.start_in_thread()
    yield server
    server.shutdown()
    server.server_close()


def _get(server: RunsHTTPServer, path: str, host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host if host is not None else f"127.0.0.1:{server.server_address[1]}")
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_a_foreign_host_header_is_refused(runs_server: RunsHTTPServer) -> None:
    port = runs_server.server_address[1]
    assert _get(runs_server, "/f/r/report.html") == (200, b"<html>ok</html>")
    assert _get(runs_server, "/f/r/report.html", f"localhost:{port}")[0] == 200
    for host in (f"evil.example:{port}", "evil.example", "127.0.0.1.evil.example", ""):
        status, body = _get(runs_server, "/f/r/report.html", host)
        assert status == 403 and b"<html>ok" not in body, host


def test_symlinks_out_of_the_runs_folder_and_traversal_are_not_followed(runs_server: RunsHTTPServer) -> None:
    assert _get(runs_server, "/f/r/same.html") == (200, b"<html>ok</html>")
    for path in ("/f/r/leak.txt", "/f/r/leakdir/secret.txt", "/f/r/leakdir/", "/../secret.txt", "/%2e%2e/secret.txt"):
        status, body = _get(runs_server, path)
        assert status == 404 and b"private key" not in body, path


def test_host_names() -> None:
    assert host_is_loopback("127.0.0.1:4201") and host_is_loopback("LOCALHOST") and host_is_loopback("[::1]:4201")
    assert not host_is_loopback(None) and not host_is_loopback("localhost.evil:80") and not host_is_loopback("[::2]")
