"""``make check-ui``: look at what people look at, in a real browser (issue #14, item 6).

Starts a ``vigil server`` on free ports with a throw-away data root, runs ``vigil run defect --profile test`` against
it, then opens in headless Chromium (Debian's package, driven over the DevTools protocol with the ``websockets``
client Prefect already installs; no browser download, no selenium) the run's ``report.html`` from the runs server
and the Prefect UI's page of the flow run with its Artifacts tab. Saves a screenshot of each in the run directory
and fails on a broken image, an artifact card without content, or a console error from vigil's own content (the
report page; on the UI page only errors that name an artifact or an image count, the UI's own noise is listed).

    make check-ui            # or: .venv/bin/python tests/ui/check_ui.py

Not a pytest module: it needs a browser, which CI machines may not have.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from flows.commands.server import free_port, start_server  # noqa: E402

BROKEN_IMAGES_JS = "[...document.images].filter(i => i.complete && i.naturalWidth === 0).map(i => i.src.slice(0, 80))"
#: Artifact cards (the element with the ``artifact-card`` class, not the page's other ``*artifact*`` containers such
#: as its empty button groups) whose description, the part vigil writes, is missing or blank: their titles.
CARDS_JS = """[...document.querySelectorAll('.artifact-card')].filter(e => e.offsetParent !== null)
  .filter(e => { const d = e.querySelector('[class*="artifact-card__description"]');
                 return !d || d.innerText.trim().length < 2; })
  .map(e => { const t = e.querySelector('[class*="artifact-card__title"]'); return t ? t.innerText.trim() : ''; })"""
#: How many artifact cards the page shows: none at all is a failure too (the tab would look "clean" while empty).
N_CARDS_JS = """[...document.querySelectorAll('.artifact-card')].filter(e => e.offsetParent !== null).length"""
CLICK_TAB_JS = """(() => { const tab = [...document.querySelectorAll('*')]
  .find(e => e.children.length === 0 && e.textContent.trim() === 'Artifacts');
  if (tab) { (tab.closest('button, a, [role="tab"]') || tab).click(); return true; } return false; })()"""
CARD_TEXTS_JS = """[...document.querySelectorAll('[class*="artifact" i]')].filter(e => e.offsetParent !== null)
  .map(e => e.className.toString().slice(0, 60) + ' | ' + e.innerText.trim().slice(0, 80))"""
#: What browsers ask for by themselves: not vigil's content.
NOISE = ("favicon.ico",)


def chromium() -> str:
    """The Chromium binary, installed from Debian's archive with apt when missing (never a browser download)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit("check-ui: Chromium is missing; install Debian's chromium package (apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            sys.exit(f"check-ui: `{' '.join(cmd)}` failed (is the Debian archive reachable?)")
    return shutil.which("chromium") or sys.exit("check-ui: apt installed no chromium binary")


class Browser:
    """One headless Chromium page driven over the DevTools protocol."""

    def __init__(self, binary: str, profile: Path) -> None:
        from websockets.sync.client import connect

        port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--remote-debugging-port={port}", f"--user-data-dir={profile}", "--window-size=1400,1800",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as resp:
                    pages = [t for t in json.load(resp) if t["type"] == "page"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=64 << 20)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(method)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def settle(self, seconds: float) -> None:
        """Collect events for ``seconds`` (the UI is a single-page app that keeps loading after ``load``)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self.events.append(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                break

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def visit(self, url: str, seconds: float) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.settle(seconds)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def console_errors(self) -> list[str]:
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(params["exceptionDetails"].get("exception", {}).get("description", "exception")[:300])
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])[:300])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                out.append(f"{entry.get('text', '')} {entry.get('url', '')}"[:300])
        return out

    def close(self) -> None:
        self.ws.close()
        self.proc.kill()
        self.proc.wait()


def latest_flow_run_id(api_url: str) -> str:
    body = json.dumps({"limit": 1, "sort": "EXPECTED_START_TIME_DESC"}).encode()
    req = urllib.request.Request(f"{api_url}/flow_runs/filter", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)[0]["id"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    binary = chromium()
    from conftest import write_part_folder

    root = Path(tempfile.mkdtemp(prefix="vigil-check-ui-"))  # kept: the screenshots are in its run directory
    handle = start_server(root / "vd", port=0, runs_port=0, log_path=root / "server.log")
    problems: list[str] = []
    try:
        parts = write_part_folder(root / "parts", n_per_class=16)
        env = {**os.environ, "VIGIL_DATA": str(root / "vd"), "PREFECT_API_URL": handle.api_url}
        cmd = [sys.executable, "-m", "flows.cli", "run", "defect", "--profile", "test", "--data", str(parts)]
        run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            print(run.stderr[-3000:], file=sys.stderr)
            return 1
        run_dir = Path(run.stdout.strip().splitlines()[-1])
        report_url = handle.runs_url + run_dir.relative_to(root / "vd" / "runs").as_posix() + "/report.html"
        flow_run_url = f"{handle.ui_url}/runs/flow-run/{latest_flow_run_id(handle.api_url)}"
        browser = Browser(binary, root / "chromium-profile")
        try:
            browser.visit(report_url, 5)
            browser.screenshot(run_dir / "ui-report.png")
            broken = browser.evaluate(BROKEN_IMAGES_JS) or []
            problems += [f"report.html: broken image {src}" for src in broken]
            errors = [e for e in browser.console_errors() if not any(n in e for n in NOISE)]
            problems += [f"report.html: console error: {e}" for e in errors]
            browser.visit(flow_run_url + "?tab=Artifacts", 12)
            clicked = browser.evaluate(CLICK_TAB_JS)
            browser.settle(5)
            browser.screenshot(run_dir / "ui-flow-run-artifacts.png")
            if not clicked:
                problems.append(f"{flow_run_url}: no Artifacts tab found")
            problems += [f"UI: empty artifact card {t!r}" for t in browser.evaluate(CARDS_JS) or []]
            n_cards = browser.evaluate(N_CARDS_JS) or 0
            print(f"check-ui: {n_cards} artifact cards on the flow run's Artifacts tab")
            if not n_cards:
                problems.append(f"{flow_run_url}: the Artifacts tab shows no artifact card")
            for text in browser.evaluate(CARD_TEXTS_JS) or []:
                print(f"check-ui: artifact element: {text}")
            problems += [f"UI: broken image {src}" for src in browser.evaluate(BROKEN_IMAGES_JS) or []]
            errors = browser.console_errors()
            ours = [e for e in errors if "artifact" in e.lower() or "image" in e.lower() or "data:" in e]
            problems += [f"UI: console error: {e}" for e in ours]
            for e in sorted(set(errors) - set(ours)):
                print(f"check-ui: UI noise (allowed): {e}")
        finally:
            browser.close()
        print(f"check-ui: screenshots in {run_dir} (ui-report.png, ui-flow-run-artifacts.png)")
    finally:
        handle.stop()
    for p in problems:
        print(f"check-ui: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
