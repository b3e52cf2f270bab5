"""Helpers of the fault suite: start ``vigil run`` as a real process, wait for a moment to hit it, compare metrics.

Every run is tiny (48 part images, 40 px, a few epochs, one thread so reruns agree bit for bit) and the stages the
faults are not about (baseline, explanations, compression) are off where the config has them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FLOW_DIR = "defect-detection"
#: metrics.json keys that legitimately differ between a resumed and an uninterrupted run (timings, latencies,
#: lineage, which stages came from the cache) or between two run folders (the regression block compares with whichever
#: run of the flow finished before, so two racing runs see different predecessors).
VOLATILE = ("timing", "seconds", "latency", "latencies", "lineage", "per_s", "run_dir", "started", "resumed", "_ms",
            "cached", "regression")  # fmt: skip


def vigil_env(data_root: Path, api_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(
        VIGIL_DATA=str(data_root),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_HOME=str(data_root.parent / f"{data_root.name}-prefect-home"),
        OMP_NUM_THREADS="1",
    )
    return env


def run_args(parts: Path, name: str, epochs: int = 6) -> list[str]:
    from flows.config import DefectConfig

    sets = [f"train.epochs={epochs}", "train.image_size=40", "train.threads=1", "evaluate.baseline=false"]
    sets += [f"{section}.enabled=false" for section in ("explain", "compress") if section in DefectConfig.model_fields]
    args = ["run", "defect", "--profile", "test", "--data", str(parts), "--name", name]
    for s in sets:
        args += ["--set", s]
    return args


class VigilProcess:
    """``python -m flows.cli ...`` in its own session, its standard error collected by a thread."""

    started: list[VigilProcess] = []  # every one, so a failed test leaves none running (:func:`kill_leftovers`)

    def __init__(self, args: list[str], env: dict[str, str], command: list[str] | None = None) -> None:
        cmd = [*(command or [sys.executable, "-m", "flows.cli"]), *args]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        VigilProcess.started.append(self)
        self.err: list[str] = []
        self.out: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    @property
    def run_dir(self) -> Path:
        return Path(self.out[-1].strip())

    def kill_when(self, ready: Callable[[], bool], sig: int, timeout: float = 240) -> float:
        """Send ``sig`` as soon as ``ready()`` holds; returns the time it was sent. Fails if the run ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the run ended (code {self.proc.returncode}) before the moment to hit it:\n"
                                     + self.stderr[-3000:])  # fmt: skip
            if ready():
                os.kill(self.proc.pid, sig)
                return time.monotonic()
            time.sleep(0.02)
        self.proc.kill()
        raise AssertionError("the moment to hit the run never came:\n" + self.stderr[-3000:])


def kill_leftovers() -> None:
    """Kill every run a test started that still runs (a test that failed half-way)."""
    for run in VigilProcess.started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(10)
    VigilProcess.started.clear()


def run_folders(data_root: Path, name: str) -> list[Path]:
    return sorted((data_root / "runs" / FLOW_DIR).glob(f"*-{name}"))


def checkpoint_epoch(data_root: Path, name: str) -> int:
    """Epoch of the newest ``last.pt`` of run ``name`` (0 while there is none or it is being replaced)."""
    import torch

    for path in (data_root / "runs" / FLOW_DIR).glob(f"*-{name}/checkpoints/**/last.pt"):
        try:
            return int(torch.load(path, weights_only=True)["epoch"])
        except Exception:  # replaced atomically, but it may vanish between glob and load
            return 0
    return 0


def stable_metrics(run_dir: Path) -> dict[str, Any]:
    """metrics.json without what may differ between a resumed and an uninterrupted run."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if not any(mark in k for mark in VOLATILE)}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(json.loads((run_dir / "metrics.json").read_text()))


def processes_of(data_root: Path) -> list[str]:
    """Processes whose environment names ``data_root`` (a vigil run, its temporary server), as ``pid command``."""
    marker = f"VIGIL_DATA={data_root}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker + b"\0" in (proc / "environ").read_bytes() + b"\0":
                found.append(f"{proc.name} {(proc / 'cmdline').read_bytes().replace(bytes(1), b' ')[:120].decode()}")
        except OSError:
            continue
    return found
