"""The runtime both training loops stand on: device, CPU threads, bf16 autocast, RNG state and checkpoint files.

:func:`models.training.fit` (classifiers) and :func:`models.gan_training.fit_gan` (GANs) must agree on how a device
is chosen, when bf16 autocast is on, how a run's RNG state is saved and restored and how a checkpoint is written and
refused, or a resumed run would stop reproducing the uninterrupted one. So these live here once, with public names,
and neither loop reaches into the other's private helpers. Like the rest of ``models/`` the module imports only
torch, numpy and the standard library.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CHECKPOINT_NAME = "last.pt"
"""File name of the resumable checkpoint both loops write into their ``checkpoint_dir``."""


# --------------------------------------------------------------------------------------------- device and precision
def select_device(preference: str | None = None) -> torch.device:
    """Resolve the training device.

    Args:
        preference: ``None`` (CUDA when available, else CPU) or any string ``torch.device`` accepts.

    Returns:
        The device.

    Raises:
        ValueError: If CUDA is asked for but not available, rather than failing later at the first ``.to()``.
    """
    if preference is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={preference!r} but CUDA is not available here; use device='cpu' or None")
    return device


def model_device(model: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module without any)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """Move a batch to ``device`` without blocking the host; 4-D inputs optionally in NHWC (channels-last) layout."""
    x = x.to(device, non_blocking=True)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles), where bf16 autocast pays off."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def bf16_autocast(device: torch.device, amp: bool, amp_cpu: bool = False) -> torch.autocast:
    """bf16 autocast where it pays: on CUDA when ``amp``, on a CPU with native bf16 when ``amp_cpu``; else a no-op.

    bf16 has float32's exponent range, so unlike fp16 it needs no GradScaler; emulated bf16 on a CPU without
    bf16 units would be slower than float32, hence the :func:`cpu_bf16_native` check.
    """
    enabled = (amp and device.type == "cuda") or (amp_cpu and device.type == "cpu" and cpu_bf16_native())
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


# --------------------------------------------------------------------------------------------- CPU threads
#: torch's thread count when vigil started (``OMP_NUM_THREADS`` or the core count): the most a fit will use.
TORCH_DEFAULT_THREADS = torch.get_num_threads()
#: Seconds of CPU accounting a fit samples at its start before choosing its thread count.
LOAD_PROBE_S = 0.2


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, lowered by a cgroup v2 CPU quota when one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


@dataclass(frozen=True)
class CpuSample:
    """A moment's CPU accounting: busy seconds of the usable cores (all processes), this process's own CPU
    seconds (all its threads) and the wall clock."""

    busy_s: float
    self_s: float
    wall_s: float


def cpu_sample() -> CpuSample | None:
    """Read ``/proc/stat`` (busy = all but idle and iowait, over the CPUs in this process's affinity) and this
    process's ``getrusage``; None where there is no ``/proc/stat``."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
        cpus = os.sched_getaffinity(0)
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, ValueError):
        return None
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            values = [int(v) for v in fields]
            busy += sum(values) - values[3] - (values[4] if len(values) > 4 else 0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return CpuSample(busy / tick, usage.ru_utime + usage.ru_stime, time.monotonic())


def others_busy_cores(before: CpuSample, after: CpuSample) -> float:
    """Cores that other processes kept busy between two samples (the machine's busy time less this process's)."""
    wall = after.wall_s - before.wall_s
    if wall <= 0:
        return 0.0
    return max(0.0, ((after.busy_s - before.busy_s) - (after.self_s - before.self_s)) / wall)


def threads_for_load(others_busy: float, cores: int, cap: int) -> int:
    """Threads to train with: the cores other processes leave free (a core counts as taken from half a core of use
    on), at least one, at most ``cap``.

    OpenMP threads spin-wait for each other at every parallel region, so one thread more than the free cores does
    not add a little speed, it loses most of it: measured here, a quick defect epoch took 6-10x longer beside one
    busy process with 2 threads on 2 cores.
    """
    return max(1, min(cap, cores - round(others_busy)))


class LoadAwareThreads:
    """torch's CPU thread count for one fit: fixed when asked for, else chosen from the free cores at the start
    and re-checked after every epoch (from the CPU accounting over that epoch, so a re-check costs no waiting).

    Every choice is a different split of the same sums, so on CPU a fit's numbers can differ in the last bits from
    one thread count to another: set the count (``train.threads``) where reruns must agree bit for bit. A count the
    caller set with ``torch.set_num_threads`` before the fit (away from torch's default) counts as fixed.
    """

    def __init__(self, fixed: int | None, active: bool = True) -> None:
        self.previous = torch.get_num_threads()
        if fixed is None and self.previous != TORCH_DEFAULT_THREADS:
            fixed = self.previous  # the caller chose a count (torch.set_num_threads) before the fit: keep it
        self.fixed, self.active = fixed, active
        self.sample: CpuSample | None = None
        self.chosen: list[int] = []

    def _set(self, n: int) -> int:
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        self.chosen.append(n)
        return n

    def _choose(self, before: CpuSample | None) -> int:
        self.sample = cpu_sample()
        if before is None or self.sample is None:
            return self._set(min(TORCH_DEFAULT_THREADS, usable_cores()))
        cores = usable_cores()
        return self._set(threads_for_load(others_busy_cores(before, self.sample), cores, TORCH_DEFAULT_THREADS))

    def start(self) -> int:
        """Set the thread count for the first epoch (sampling the load for :data:`LOAD_PROBE_S` when choosing)."""
        if not self.active:
            return torch.get_num_threads()
        if self.fixed is not None:
            return self._set(self.fixed)
        before = cpu_sample()
        time.sleep(LOAD_PROBE_S)
        return self._choose(before)

    def recheck(self) -> int:
        """Choose again from the load measured since the last choice."""
        if not self.active:
            return torch.get_num_threads()
        if self.fixed is not None:
            return self._set(self.fixed)
        return self._choose(self.sample)

    def before_epoch(self) -> int:
        """:meth:`start` before the first epoch, :meth:`recheck` before every later one."""
        return self.recheck() if self.chosen else self.start()

    def restore(self) -> None:
        """Give back the thread count found at construction."""
        if self.active and torch.get_num_threads() != self.previous:
            torch.set_num_threads(self.previous)


# --------------------------------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """The global RNG states of torch (CPU and every CUDA device), Python's ``random`` and numpy's legacy RNG.

    numpy's key array is stored as a tensor, so a checkpoint holding this dict still loads with
    ``torch.load(..., weights_only=True)``.
    """
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved, so a resumed run draws the numbers the uninterrupted one would have.

    The CUDA states are restored only when this machine has the same number of CUDA devices as the one that saved
    them (a CPU run resumed on a GPU, or vice versa, is legitimate).
    """
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuples(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": np_state["bit_generator"],
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(obj: Any) -> Any:
    """random.setstate needs tuples; a serialisation round trip may hand back lists."""
    return tuple(_as_tuples(o) for o in obj) if isinstance(obj, list | tuple) else obj


# --------------------------------------------------------------------------------------------- checkpoints
def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``model.state_dict()``: kept best weights and checkpoints cost no device memory."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def architecture_hash(model: nn.Module, *labels: Any) -> str:
    """16 hex digits of SHA-256 over ``labels`` (JSON-serialisable) and the names and shapes of ``model``'s state.

    Part of a checkpoint's fingerprint: a checkpoint of another architecture (or another width of the same one) is
    refused by :func:`load_checkpoint` instead of failing inside ``load_state_dict``.
    """
    shapes = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    return hashlib.sha256(json.dumps([*labels, shapes]).encode()).hexdigest()[:16]


def checkpoint_path(checkpoint_dir: str | Path | None) -> Path | None:
    """``checkpoint_dir / CHECKPOINT_NAME``, creating the folder; ``None`` (no checkpoints) stays ``None``."""
    if checkpoint_dir is None:
        return None
    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    return Path(checkpoint_dir) / CHECKPOINT_NAME


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename it over ``path``.

    A crash or Ctrl-C while writing leaves the previous file intact instead of a truncated one that would make
    the next resume fail; the rename is atomic on POSIX and Windows.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, fingerprint: dict[str, Any], version: int, setup: str = "training") -> dict[str, Any]:
    """Load a checkpoint and refuse it, naming what differs, unless it was written for exactly this setup.

    ``fingerprint`` is a dict whose ``config`` entry (a dict of fields) is compared field by field and whose other
    entries (batch count, model hash, data shape, ...) are compared as wholes. Shared by
    :func:`models.training.fit` and :func:`models.gan_training.fit_gan`, so both say the same thing about a stale
    checkpoint.

    Args:
        path: The checkpoint file.
        fingerprint: What the checkpoint must have been written for.
        version: The checkpoint format version the caller writes.
        setup: Names the loop in the error message, e.g. ``"training"`` or ``"GAN training"``.

    Raises:
        ValueError: If the file cannot be read, or its version or fingerprint differ (the message names the fields).
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read the checkpoint ({exc}); delete it to start a fresh run") from exc
    if ckpt.get("version") != version or ckpt.get("fingerprint") != fingerprint:
        old = ckpt.get("fingerprint") or {}
        config = fingerprint.get("config", {})
        diff = sorted(
            [f"config.{k}" for k in config if old.get("config", {}).get(k) != config[k]]
            + [k for k in fingerprint if k != "config" and old.get(k) != fingerprint[k]]
        )
        raise ValueError(
            f"{path}: checkpoint was written by a different {setup} setup (differs in: "
            f"{', '.join(diff) or 'checkpoint version'}); start a fresh run by deleting it or using another "
            "checkpoint_dir"
        )
    return ckpt
