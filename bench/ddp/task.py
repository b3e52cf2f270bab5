"""Multi-GPU training as one Prefect task that runs ``torchrun`` (DistributedDataParallel) as a subprocess.

Prefect has no DDP integration, and the ranks must not be Prefect tasks: they are one job that lives and dies
together (a rank that fails or is retried alone deadlocks the others). So one task starts
``python -m torch.distributed.run --nproc_per_node N -m bench.ddp.entry ...`` on the machine it runs on,
streams the ranks' output into the task's log, and turns rank 0's ``metrics.json`` into its result.

Running it on a multi-GPU node: the flow that calls :func:`train_ddp_task` is deployed to a work pool whose
worker runs on that node, e.g. a process pool::

    # on the GPU node (a checkout of the repository, data reachable)
    prefect work-pool create gpu-node --type process
    prefect worker start --pool gpu-node

    # anywhere, against the same Prefect API
    my_training_flow.deploy(name="ddp", work_pool_name="gpu-node")    # or `prefect deploy` with prefect.yaml
    prefect deployment run 'my-training-flow/ddp' --param npz=/data/train.npz

``nproc_per_node=None`` starts one process per visible GPU (``CUDA_VISIBLE_DEVICES`` limits them); the worker's
``--limit 1`` (or a work-queue concurrency limit of 1) keeps two DDP jobs from sharing the GPUs. Without a GPU
the ranks use gloo on the CPU, which is how the tests run it.

Parked in ``bench/ddp/`` (see its README): no flow calls this task and no config key reaches it yet; the worker
then needs a checkout of the repository (``bench`` is not part of the installed package).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

#: The repository root (it holds ``bench`` and ``models``): put on the ranks' PYTHONPATH so ``-m bench.ddp.entry``
#: imports the same code as the task even when the interpreter was started elsewhere.
_CODE_ROOT = Path(__file__).resolve().parents[2]


#: torch prefixes an uncaught exception's traceback in a rank with ``[rank<N>]:``
_RANK_LINE = re.compile(r"^(\[rank\d+\]:)")


def torchrun_command(
    entry_args: Sequence[str],
    nproc_per_node: int,
    *,
    master_port: int | None = None,
    module: str = "bench.ddp.entry",
) -> list[str]:
    """The command line that starts ``nproc_per_node`` ranks of ``module`` on this machine.

    Args:
        entry_args: Arguments for the entry module (see :func:`entry_args`).
        nproc_per_node: Processes to start; one per GPU.
        master_port: A fixed rendezvous port on 127.0.0.1. ``None`` uses ``--standalone``, which picks a free
            port itself, so two jobs on one node cannot collide.
        module: The ``-m`` module each rank runs.

    Returns:
        ``[sys.executable, "-m", "torch.distributed.run", ...]``: the current interpreter, so the ranks see the
        same environment as the task.
    """
    if nproc_per_node < 1:
        raise ValueError(f"nproc_per_node={nproc_per_node}; start at least one process")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}"]
    if master_port is None:
        cmd.append("--standalone")
    else:
        cmd += ["--nnodes=1", "--master_addr=127.0.0.1", f"--master_port={master_port}"]
    return [*cmd, "-m", module, *entry_args]


def entry_args(npz: str | Path, out_dir: str | Path, options: Mapping[str, Any] | None = None) -> list[str]:
    """``--npz``, ``--out`` and one ``--key value`` per option (``True`` -> a bare flag, ``False``/``None`` -> left
    out, dicts -> JSON), with ``_`` in keys written as ``-``: ``{"batch_size": 64}`` -> ``--batch-size 64``."""
    args = ["--npz", str(npz), "--out", str(out_dir)]
    for key, value in (options or {}).items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        else:
            args += [flag, json.dumps(value) if isinstance(value, dict) else str(value)]
    return args


def run_streaming(cmd: Sequence[str], env: Mapping[str, str], on_line: Callable[[str], None]) -> int:
    """Run ``cmd``, handing each line of its merged stdout/stderr to ``on_line`` as it arrives; returns the exit code.

    Streaming (instead of ``capture_output``) shows a long training run's progress while it happens and does not
    hold hours of output in memory.
    """
    with subprocess.Popen(
        list(cmd), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
        return proc.wait()


def read_metrics(out_dir: str | Path) -> dict[str, Any]:
    """Rank 0's ``metrics.json``.

    Raises:
        FileNotFoundError: If rank 0 wrote none (the job failed before the end), naming the folder.
    """
    path = Path(out_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: rank 0 wrote no metrics; see the torchrun output above for the error")
    return json.loads(path.read_text())


def _rank_env(threads_per_rank: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_CODE_ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # the ranks' lines reach the log when printed, not when a buffer fills
    if threads_per_rank is not None:
        env["OMP_NUM_THREADS"] = str(threads_per_rank)
    return env


def _default_nproc() -> int:
    import torch

    return max(1, torch.cuda.device_count())


@task(name="train-ddp", cache_policy=NO_CACHE)
def train_ddp_task(
    npz: str,
    out_dir: str,
    nproc_per_node: int | None = None,
    options: dict[str, Any] | None = None,
    master_port: int | None = None,
    threads_per_rank: int | None = None,
) -> dict[str, Any]:
    """Train with ``torchrun`` on this machine and return rank 0's metrics.

    Args:
        npz: Data set for :mod:`bench.ddp.entry` (``x``, ``y``[, ``w``][, ``x_val``, ``y_val``]).
        out_dir: Where rank 0 writes ``metrics.json``, ``model.pt`` (and ``checkpoints/`` with
            ``{"checkpoint": True}``: a retry of this task then resumes instead of starting over).
        nproc_per_node: Ranks; ``None``: one per visible GPU (1 without a GPU).
        options: Entry-point options, e.g. ``{"model": "resnet_small", "epochs": 20, "batch_size": 256}``.
        master_port: Fixed rendezvous port; ``None`` lets torchrun pick a free one.
        threads_per_rank: ``OMP_NUM_THREADS`` of each rank; ``None`` keeps torchrun's default (1 when several
            ranks share a machine).

    Returns:
        The metrics dict (``train_loss`` and ``val_loss`` per epoch, ``history``, ``world_size``, ``seconds``...)
        plus ``out_dir``.

    Raises:
        RuntimeError: If torchrun exits with an error; the message ends with the ranks' last output lines.
    """
    logger = get_run_logger()
    nproc = nproc_per_node or _default_nproc()
    cmd = torchrun_command(entry_args(npz, out_dir, options), nproc, master_port=master_port)
    logger.info("train-ddp: %s", " ".join(cmd))
    tail: deque[str] = deque(maxlen=15)
    first_failure: list[str] = []  # the traceback of the first rank that raised: the cause, not the fallout

    def on_line(line: str) -> None:
        tail.append(line)
        if match := _RANK_LINE.match(line):
            if not first_failure or first_failure[0].startswith(match.group(1)):
                first_failure.append(line)
        logger.info("torchrun: %s", line)

    code = run_streaming(cmd, _rank_env(threads_per_rank), on_line)
    if code != 0:
        last = "\n".join(first_failure[-15:] or tail)
        raise RuntimeError(f"torchrun with {nproc} process(es) exited with code {code}; output:\n{last}")
    metrics = read_metrics(out_dir)
    logger.info(
        "train-ddp: %d rank(s), %d epoch(s), train loss %s",
        metrics["world_size"],
        metrics["epochs_run"],
        ", ".join(f"{v:.4f}" for v in metrics["train_loss"]),
    )
    return {**metrics, "out_dir": str(out_dir)}
