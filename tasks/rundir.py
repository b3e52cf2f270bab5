"""The run directory contract (docs/architecture.md): where a run's outputs live and how a named run is resumed."""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import unicodedata
from calendar import timegm
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.cache import DiskFullError, disk_full_message, is_disk_full
from tasks.compare import run_stamp

LINEAGE_PACKAGES = (
    "vigil",
    "torch",
    "prefect",
    "numpy",
    "pandas",
    "scikit-learn",
    "scikit-image",
    "opencv-python-headless",
    "albumentations",
    "mne",
    "elpv-dataset",
)


class RunContext(BaseModel):
    """Small, serialisable facts every stage needs; passed between tasks instead of state."""

    model_config = ConfigDict(frozen=True)

    flow: str
    data_root: str
    run_dir: str
    seed: int
    refresh: tuple[str, ...] = ()
    resumed: bool = False
    runs_url: str | None = None  # http root of $VIGIL_DATA/runs when a `vigil server` serves it

    @property
    def report_url(self) -> str | None:
        """``report.html`` over http (a file:// link is dead in browsers), when the runs folder is served."""
        if not self.runs_url:
            return None
        return f"{self.runs_url.rstrip('/')}/{self.flow}/{Path(self.run_dir).name}/report.html"

    @property
    def cache_root(self) -> Path:
        return Path(self.data_root) / "cache"

    def refreshes(self, stage: str) -> bool:
        return "all" in self.refresh or stage in self.refresh


def data_root() -> Path:
    """``$VIGIL_DATA``, else ``./data`` under the current directory."""
    return Path(os.environ.get("VIGIL_DATA", "data")).expanduser().resolve()


#: A run name as ``--name`` takes it: it becomes a folder name and part of the report's URL, so ASCII only.
RUN_NAME_PATTERN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?")
RUN_NAME_MAX_CHARS = 100
STAMP_CHARS = 16  # YYYYmmddTHHMMSSZ


def safe_name(name: str) -> str:
    """``name`` in ASCII (accents dropped), other unusable characters replaced by ``-`` (Prefect's generated names
    pass unchanged)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", ascii_name).strip("-.")[:RUN_NAME_MAX_CHARS]
    if not cleaned:
        raise ValueError(f"run name {name!r} has no usable characters (letters, digits, '-', '_', '.')")
    return cleaned


def run_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a run to resume, or None.

    A name the user chose must be usable as it is: silently cleaning ``my run`` to ``my-run`` would make the
    Prefect run and its folder disagree, and could resume another run that already has the cleaned name.
    """
    if RUN_NAME_PATTERN.fullmatch(name) and len(name) <= RUN_NAME_MAX_CHARS:
        return None
    try:
        hint = f"; for example {safe_name(name)!r}"
    except ValueError:
        hint = ""
    return (
        f"run name {name!r} is not usable: use up to {RUN_NAME_MAX_CHARS} ASCII letters, digits, '-', '_' and '.', "
        f"starting and ending with a letter or digit (it becomes a folder name and part of the report's URL){hint}"
    )


def run_name_of(run_dir: Path) -> str | None:
    """The run name of a run folder ``<UTC stamp>-<run name>``, or None when the folder is not a run."""
    return run_dir.name[STAMP_CHARS + 1 :] if run_stamp(run_dir) else None


def find_run_dir(root: Path, flow: str, name: str) -> Path | None:
    """The newest run folder of ``flow`` whose run name is exactly ``name`` (``pronghorn`` never finds a run
    named ``mahogany-pronghorn``), or None."""
    base = root / "runs" / flow
    if not base.is_dir():
        return None
    found = sorted(p for p in base.iterdir() if p.is_dir() and run_name_of(p) == name)
    return found[-1] if found else None


def open_run_dir(root: Path, flow: str, run_name: str, reuse: bool) -> tuple[Path, bool]:
    """Create ``runs/<flow>/<UTC timestamp>-<name>/``; with ``reuse`` the newest run folder of exactly that run
    name is reused instead.

    Returns (path, resumed). Reuse is what makes ``--name`` resume a killed training run from its checkpoint; the
    caller decides whether the existing run may be resumed (``flows/lifecycle.py`` requires the same config).
    """
    name = safe_name(run_name)
    if reuse and (existing := find_run_dir(root, flow, name)) is not None:
        return existing, True
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = root / "runs" / flow / f"{stamp}-{name}"
    path.mkdir(parents=True, exist_ok=True)
    return path, False


def copy_file(src: Path, dst: Path) -> None:
    """Copy a cache file into the run directory: a real copy (``shutil.copy2``), never a hard link, so editing the
    run's ``splits.csv`` cannot change the cache entry that later runs reuse.

    An existing ``dst`` is removed first: a run folder of an older vigil may hold a hard link into the cache, and
    copying onto it would write through the link into the cache file. A full disk raises ``DiskFullError``.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        shutil.copy2(src, dst)
    except OSError as exc:
        dst.unlink(missing_ok=True)
        if not is_disk_full(exc, dst.parent):
            raise
        raise DiskFullError(disk_full_message(dst.parent, needed=src.stat().st_size)) from exc


def attach_run_log(run_dir: Path) -> logging.Handler:
    """Copy Prefect's and vigil's log records into ``run.log`` for people without a server."""
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s | %(message)s"))
    handler.setLevel(logging.INFO)
    for name in ("prefect", "vigil"):
        logging.getLogger(name).addHandler(handler)
    return handler


def detach_run_log(handler: logging.Handler) -> None:
    for name in ("prefect", "vigil"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def git_commit(path: Path | None = None) -> str | None:
    here = path or Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_versions() -> dict[str, str]:
    out = {}
    for name in LINEAGE_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def hardware() -> dict[str, object]:
    info: dict[str, object] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        info["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


FLOW_NAMES = ("defect-detection", "seizure-prediction")


@dataclass(frozen=True)
class RunFolder:
    """One run directory ``runs/<flow>/<UTC stamp>-<run name>/``, as gc and the runs index see it."""

    path: Path
    flow: str
    stamp: str

    @property
    def started(self) -> float:
        """Start time in epoch seconds (the folder's UTC timestamp prefix)."""
        return float(timegm(time.strptime(self.stamp, "%Y%m%dT%H%M%SZ")))


def runs_by_flow(runs_root: Path) -> dict[str, list[RunFolder]]:
    """Run folders per flow, oldest first; folders without a ``<stamp>-<name>`` shape are not runs and are left."""
    out: dict[str, list[RunFolder]] = {}
    if not runs_root.is_dir():
        return out
    for flow_dir in sorted(p for p in runs_root.iterdir() if p.is_dir()):
        runs = [RunFolder(p, flow_dir.name, s) for p in flow_dir.iterdir() if p.is_dir() and (s := run_stamp(p))]
        out[flow_dir.name] = sorted(runs, key=lambda r: (r.stamp, r.path.name))
    return out
