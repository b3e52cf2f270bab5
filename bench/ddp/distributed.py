"""Data-parallel training (DDP) on top of the one fit loop, for ``torchrun`` on a multi-GPU node.

Each of the ``W`` processes that ``torchrun`` starts holds a replica of the model and trains on its share of
every *global* batch; DistributedDataParallel averages the gradients, so every replica takes the same optimizer
step. The shares are cut so that one DDP step is the single-process step on the whole global batch:

- all ranks draw the same epoch permutation (``torch.randperm`` seeded with ``seed + epoch``, the formula of
  ``torch.utils.data.DistributedSampler``) and cut the same global batches from it; rank ``r`` takes every
  ``W``-th sample of each (``batch[r::W]``);
- the loss is a weighted mean (:func:`models.training.weighted_cross_entropy`), so the plain DDP average of the
  ranks' gradients is the full batch's gradient only when every share carries the same total weight. For
  :class:`ShardedTensorBatches` a DDP communication hook rescales each rank's gradient by its share of the
  batch's weight before summing, which makes the step exact for class weights, sample weights and a last
  batch that does not split evenly.

What still differs from one process, and why results match to ~1e-6 rather than bit for bit: float sums are
reduced in another order (per rank, then across ranks); BatchNorm normalises with per-rank statistics unless
the model is converted to SyncBatchNorm (done on CUDA; PyTorch's SyncBatchNorm has no CPU kernel); dropout
draws different masks per rank.

Parked in ``bench/ddp/`` (see its README): no flow and no config key reaches it yet. It imports only torch, numpy,
the standard library and ``models``, so it would move back under ``models/`` unchanged once a stage launches it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from models.runtime import CHECKPOINT_NAME, select_device
from models.training import Batch, FitConfig, FitResult, TensorBatches, fit, improved

#: Written by rank 0 next to ``last.pt``: the epochs' rows with train loss and throughput reduced over all ranks
#: (``fit`` checkpoints rank 0's own rows, whose train loss covers only rank 0's shares).
GLOBAL_HISTORY_NAME = "history_global.json"


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job.

    Attributes:
        rank: Global rank, 0 .. ``world_size`` - 1; rank 0 writes checkpoints and metrics.
        local_rank: Rank on this node; picks the GPU (``cuda:<local_rank>``).
        world_size: Number of processes in the job.
        device: This process's training device.
        backend: ``"nccl"`` (CUDA) or ``"gloo"`` (CPU) when a process group is initialised; ``None`` in a plain,
            single process (no ``torchrun``).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and reports."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """More than one process: gradients must be synchronised."""
        return self.world_size > 1


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={value!r} is not an integer; launch with torchrun") from exc


def init_distributed(device: str | None = None, timeout_s: float = 1800.0) -> DistContext:
    """Join the process group described by torchrun's environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``).

    Without those variables (a plain ``python -m ...``) nothing is initialised and the context describes one
    process, so the same entry point runs with and without torchrun.

    Args:
        device: ``None`` or ``"cuda"``: one GPU per process, ``cuda:<LOCAL_RANK>``, with NCCL, when CUDA is
            available, else the CPU with gloo. ``"cpu"`` forces CPU/gloo (tests, debugging).
        timeout_s: How long collectives wait for a missing rank before failing (instead of hanging forever).

    Returns:
        The process's :class:`DistContext`.

    Raises:
        ValueError: If the launcher's variables are inconsistent, or more processes than GPUs are asked for.
    """
    if "WORLD_SIZE" not in os.environ:
        return DistContext(device=select_device(device))
    rank, local_rank, world_size = _env_int("RANK"), _env_int("LOCAL_RANK"), _env_int("WORLD_SIZE")
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside 0..WORLD_SIZE-1={world_size - 1}")
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='cpu'")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} GPU(s); "
                "lower --nproc_per_node to the number of GPUs"
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(
            backend,
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
            device_id=dev if use_cuda else None,  # lets NCCL connect eagerly, and barriers use the right GPU
        )
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=dev, backend=backend)


def destroy_distributed() -> None:
    """Leave the process group (if one was joined), so the job exits without NCCL's "not destroyed" warning."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed(device: str | None = None, timeout_s: float = 1800.0) -> Iterator[DistContext]:
    """:func:`init_distributed` on entry and :func:`destroy_distributed` on exit, also after an error."""
    ctx = init_distributed(device, timeout_s)
    try:
        yield ctx
    finally:
        destroy_distributed()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank; a no-op in a single process."""
    if ctx.backend is not None:
        dist.barrier()


def wrap_ddp(
    model: nn.Module, ctx: DistContext, *, sync_batchnorm: bool | None = None, find_unused_parameters: bool = False
) -> nn.Module:
    """Move ``model`` to the context's device and wrap it in DistributedDataParallel.

    DDP broadcasts rank 0's parameters and buffers when it is built, so the replicas start identical whatever
    each process initialised.

    Args:
        model: The plain module (not yet wrapped).
        ctx: From :func:`init_distributed`; a single-process context returns the model itself, moved.
        sync_batchnorm: Convert BatchNorm layers to SyncBatchNorm, which normalises with the statistics of the
            whole global batch (as one process would). ``None``: on CUDA only (SyncBatchNorm has no CPU kernel).
            The conversion happens in place, so ``model`` stays the module to save and predict with.
        find_unused_parameters: Needed only for models whose forward skips parameters; costs a graph traversal.

    Returns:
        The module to hand to :func:`models.training.fit`.

    Raises:
        ValueError: If ``model`` is itself a BatchNorm layer (the in-place conversion cannot replace the root).
    """
    model.to(ctx.device)
    if not ctx.is_distributed:
        return model
    if sync_batchnorm is None:
        sync_batchnorm = ctx.device.type == "cuda"
    if sync_batchnorm:
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if converted is not model:
            raise ValueError("wrap_ddp cannot convert a bare BatchNorm module in place; wrap it in a container")
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (what to save, export or predict with)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


# ---------------------------------------------------------------------------------------------------- sharding


def epoch_order(n: int, epoch: int, *, seed: int = 0, shuffle: bool = True) -> torch.Tensor:
    """The epoch's sample order, identical on every rank: ``DistributedSampler``'s ``randperm(seed + epoch)``.

    A private generator (not torch's global one) keeps the ranks in step even when their other random draws
    (dropout on shares of different sizes) differ.
    """
    if not shuffle:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed + epoch)
    return torch.randperm(n, generator=generator)


def global_batches(order: torch.Tensor, batch_size: int, world_size: int, *, drop_last: bool) -> list[torch.Tensor]:
    """Cut an epoch order into global batches; a last batch with fewer samples than ranks is dropped.

    Every rank needs at least one sample per step (an empty share has no loss to normalise and would leave its
    gradient undefined), so a remainder smaller than ``world_size`` is skipped, like ``drop_last`` does for a
    whole incomplete batch.
    """
    n = len(order)
    stop = n - n % batch_size if drop_last else n
    batches = [order[i : min(i + batch_size, stop)] for i in range(0, stop, batch_size)]
    return [b for b in batches if len(b) >= world_size]


def local_share(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s share of a global batch: every ``world_size``-th sample, as ``DistributedSampler`` deals."""
    return batch[rank::world_size]


class ShardedTensorBatches:
    """:class:`models.training.TensorBatches` for one rank of a DDP job: its share of each global batch.

    Every rank holds the whole (small) data set on its device and draws the same global batches (see
    :func:`epoch_order`), so no sampler state has to be communicated, and with one rank it yields exactly the
    global batches. ``len()`` is the number of optimizer steps, the same on every rank, which ``fit`` needs for
    the LR schedule and the checkpoint fingerprint.

    The epoch advances by one at each iteration (``fit`` never calls ``set_epoch``); :func:`fit_distributed`
    sets it when resuming so the resumed epochs see the orders an uninterrupted run would have seen.

    Args:
        x: Inputs ``(N, ...)``.
        y: Integer labels ``(N,)``; ``None`` for prediction only.
        w: Optional float per-sample weights ``(N,)`` (needs ``y``).
        batch_size: *Global* batch size (samples per optimizer step over all ranks); at least ``world_size``.
        rank: This process's rank.
        world_size: Number of ranks.
        shuffle: New order each epoch (from ``seed + epoch``).
        drop_last: Skip an incomplete last global batch.
        seed: Base seed of the epoch orders.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        w: torch.Tensor | None = None,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        n = len(x)
        if w is not None and y is None:
            raise ValueError("ShardedTensorBatches got sample weights w without labels y")
        if any(t is not None and len(t) != n for t in (y, w)):
            raise ValueError(f"ShardedTensorBatches needs tensors of equal length, got x={n}, y, w of other lengths")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} is outside 0..world_size-1={world_size - 1}")
        if batch_size < world_size:
            raise ValueError(f"global batch_size={batch_size} < world_size={world_size}: some ranks would get nothing")
        self.x, self.y, self.w = x, y, w
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.epoch = 0
        #: (global batch indices, this rank's indices) of the batch yielded last; read by the gradient hook
        self.current: tuple[torch.Tensor, torch.Tensor] | None = None
        if len(self) == 0:
            raise ValueError(f"{n} samples give no global batch of {batch_size}; lower batch_size or drop_last")

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use epoch ``epoch``'s order (0-based)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(
            global_batches(torch.arange(len(self.x)), self.batch_size, self.world_size, drop_last=self.drop_last)
        )

    def __iter__(self) -> Iterator[Batch]:
        order = epoch_order(len(self.x), self.epoch, seed=self.seed, shuffle=self.shuffle)
        self.epoch += 1
        tensors = tuple(t for t in (self.x, self.y, self.w) if t is not None)
        for batch in global_batches(order, self.batch_size, self.world_size, drop_last=self.drop_last):
            share = local_share(batch, self.rank, self.world_size).to(self.x.device)
            self.current = (batch.to(self.x.device), share)
            yield tuple(t[share] for t in tensors)


class EpochLoader:
    """A DataLoader whose ``DistributedSampler`` moves to the next epoch at every iteration.

    ``fit`` iterates its loader once per epoch without calling ``sampler.set_epoch``; without this wrapper every
    epoch would repeat the first epoch's order.
    """

    def __init__(self, loader: DataLoader, sampler: DistributedSampler) -> None:
        self.loader, self.sampler, self.epoch = loader, sampler, 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use epoch ``epoch``'s order (0-based)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)


def shard_loader(
    loader: DataLoader, ctx: DistContext, *, shuffle: bool, seed: int = 0, drop_last: bool = False
) -> EpochLoader:
    """Rebuild a DataLoader so each rank loads only its share of every global batch.

    ``loader.batch_size`` is taken as the global batch size; each rank gets ``batch_size // world_size`` samples
    per step from a ``DistributedSampler``, whose interleaved deal makes step ``k`` over all ranks the ``k``-th
    global batch of the permutation. Unlike :class:`ShardedTensorBatches`, each rank decodes only its own
    samples (what matters when a DataLoader reads and augments images). Gradients are then averaged by plain
    DDP, exact when the shares carry equal weight; ``DistributedSampler`` pads the epoch with repeated samples
    to a multiple of ``world_size`` unless ``drop_last``.

    Args:
        loader: A map-style DataLoader built with ``batch_size`` (not a custom ``batch_sampler``).
        ctx: This process's context.
        shuffle: Shuffle per epoch (``seed + epoch``).
        seed: Base seed of the permutation, the same on every rank.
        drop_last: Drop the tail that does not divide evenly over the ranks, and incomplete per-rank batches.

    Returns:
        An :class:`EpochLoader` to pass to :func:`fit_distributed`.

    Raises:
        ValueError: If the loader has no ``batch_size`` or it does not divide by the world size.
    """
    if loader.batch_size is None:
        raise ValueError("shard_loader needs a DataLoader built with batch_size, not a custom batch_sampler")
    if loader.batch_size % ctx.world_size:
        raise ValueError(
            f"global batch_size={loader.batch_size} does not divide over world_size={ctx.world_size}; "
            f"use a multiple of {ctx.world_size}"
        )
    sampler = DistributedSampler(
        loader.dataset,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )
    workers = loader.num_workers
    sharded = DataLoader(
        loader.dataset,
        batch_size=loader.batch_size // ctx.world_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=drop_last,
        worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers if workers else False,
        prefetch_factor=loader.prefetch_factor if workers else None,
    )
    return EpochLoader(sharded, sampler)


# ----------------------------------------------------------------------------------------------- gradient sync


class _WeightShare:
    """State of the gradient hook: this rank's share of the current global batch's loss weight."""

    def __init__(self, batches: ShardedTensorBatches, class_weights: torch.Tensor | None) -> None:
        self.batches = batches
        self.class_weights = None if class_weights is None else class_weights.to(batches.x.device, torch.float32)
        self._for: tuple[torch.Tensor, torch.Tensor] | None = None
        self._fraction = torch.ones(())

    def _weights(self, idx: torch.Tensor) -> torch.Tensor:
        b = self.batches
        weights = torch.ones(len(idx), device=b.x.device)
        if self.class_weights is not None and b.y is not None:
            weights = weights * self.class_weights[b.y[idx]]
        if b.w is not None:
            weights = weights * b.w[idx].float()
        return weights

    def fraction(self) -> torch.Tensor:
        """``W_rank / W_batch`` for the batch being trained on, computed once per step, on the device (no sync)."""
        current = self.batches.current
        if current is None:
            raise RuntimeError("the DDP gradient hook ran before the sharded batches yielded a batch")
        if self._for is not current:
            batch, share = current
            total = self._weights(batch).sum().clamp_min(torch.finfo(torch.float32).tiny)
            self._fraction = self._weights(share).sum() / total
            self._for = current
        return self._fraction


def _weighted_allreduce(state: _WeightShare, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Sum the ranks' gradients weighted by their share of the batch's loss weight.

    Each rank's loss is its share's weighted mean, ``L_r = S_r / W_r``; the single-process loss is
    ``S / W = sum_r (W_r / W) L_r``, so its gradient is ``sum_r (W_r / W) grad L_r``: scale, then sum.
    """
    buffer = bucket.buffer()
    buffer.mul_(state.fraction().to(buffer.dtype))
    future = dist.all_reduce(buffer, op=dist.ReduceOp.SUM, async_op=True).get_future()
    return future.then(lambda f: f.value()[0])


# DDP compares the hook's annotations with the real types; ``from __future__ import annotations`` made them strings
_weighted_allreduce.__annotations__.update({"bucket": dist.GradBucket, "return": torch.futures.Future[torch.Tensor]})


# ---------------------------------------------------------------------------------------------- checkpoints


def _broadcast_bytes(data: bytes | None, ctx: DistContext) -> bytes | None:
    """Rank 0's bytes on every rank (works across nodes that do not share a file system)."""
    if not ctx.is_distributed:
        return data
    box = [data if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0, device=ctx.device if ctx.backend == "nccl" else None)
    return box[0]


def _read_bytes(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None and path.is_file() else None


class _CountingLoader:
    """Counts the samples this rank trained on in the current epoch (``fit`` reports a per-sample mean)."""

    def __init__(self, loader: Iterable) -> None:
        if not isinstance(loader, Sized):
            raise TypeError(f"fit_distributed needs a train loader with len(); got {type(loader).__name__}")
        self.loader, self.seen = loader, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        self.seen = 0
        for batch in self.loader:
            y = batch[1] if isinstance(batch, list | tuple) and len(batch) > 1 else batch
            self.seen += len(y)
            yield batch


def fit_distributed(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None,
    config: FitConfig,
    ctx: DistContext,
    *,
    class_weights: torch.Tensor | None = None,
    checkpoint_dir: str | Path | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
    on_batch_end: Callable[[int, int], None] | None = None,
    batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    sync_batchnorm: bool | None = None,
    find_unused_parameters: bool = False,
) -> FitResult:
    """:func:`models.training.fit` on every rank of a DDP job, with rank-0-only files and job-wide metrics.

    What ``fit`` does unchanged on each rank: the AdamW step, LR schedule, gradient clipping (on the already
    synchronised gradient, so it equals the single-process clip), validation, early stopping and the best-epoch
    weights. What this wrapper adds:

    - the model is wrapped with :func:`wrap_ddp`; with :class:`ShardedTensorBatches` the gradient hook makes
      each step the exact full-batch step (see the module docstring);
    - ``last.pt`` is written by rank 0 only. To resume, rank 0's checkpoint is sent to the other ranks, which
      resume from a private temporary copy (they then write their own copy there, which is thrown away);
    - each epoch's ``train_loss`` (a per-sample mean) and ``images_per_s`` are reduced over all ranks; the
      returned history and ``on_epoch_end`` see those job-wide values;
    - validation runs on every rank over the *whole* ``val_loader`` (do not shard it): the ranks then take the
      same early-stopping decisions. Each epoch the ranks compare whether the monitored metric improved and
      stop with an error if they disagree, instead of deadlocking at the next collective.

    With one process (no torchrun) this is ``fit`` on ``ctx.device``.

    Args:
        model: The plain module; it holds the best weights afterwards (save ``model``, not the DDP wrapper).
        train_loader: :class:`ShardedTensorBatches` or :func:`shard_loader`'s loader, built for this rank.
        val_loader: The whole validation set, the same on every rank, or ``None``.
        config: As for ``fit``; ``config.device`` is replaced by ``ctx.device``.
        ctx: From :func:`init_distributed`.
        class_weights: As for ``fit``.
        checkpoint_dir: Folder of rank 0's ``last.pt``; must be readable by rank 0 (only).
        on_epoch_end: Called on rank 0 with the job-wide row.
        on_batch_end: Called on rank 0 only.
        batch_transform: As for ``fit`` (each rank transforms its own share).
        sync_batchnorm: See :func:`wrap_ddp`.
        find_unused_parameters: See :func:`wrap_ddp`.

    Returns:
        ``fit``'s :class:`~models.training.FitResult`, the same on every rank, with the job-wide history.

    Raises:
        RuntimeError: If the ranks' validation decisions disagree (non-deterministic validation).
    """
    config = dataclasses.replace(config, device=str(ctx.device))
    hooks: dict[str, Any] = dict(on_epoch_end=on_epoch_end, on_batch_end=on_batch_end, batch_transform=batch_transform)
    if not ctx.is_distributed:
        return fit(
            model, train_loader, val_loader, config, class_weights=class_weights, checkpoint_dir=checkpoint_dir, **hooks
        )
    if isinstance(train_loader, TensorBatches):
        raise ValueError(
            "fit_distributed got a TensorBatches: every rank would train on the whole data set; "
            "use ShardedTensorBatches(..., rank=ctx.rank, world_size=ctx.world_size) or shard_loader()"
        )
    if config.channels_last:  # before wrapping: DDP's gradient buckets follow the parameters' layout
        model.to(memory_format=torch.channels_last)
    ddp = wrap_ddp(model, ctx, sync_batchnorm=sync_batchnorm, find_unused_parameters=find_unused_parameters)
    cw = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    if isinstance(train_loader, ShardedTensorBatches):
        ddp.register_comm_hook(_WeightShare(train_loader, cw), _weighted_allreduce)

    main_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    ckpt_bytes, global_rows, best = _rank0_progress(main_dir, train_loader, ctx)
    counting = _CountingLoader(train_loader)
    epoch_end = _JobWideRows(config, ctx, counting, best, global_rows, main_dir, on_epoch_end)
    with _rank_checkpoint_dir(main_dir, ckpt_bytes, ctx) as rank_dir:
        hooks.update(on_epoch_end=epoch_end, on_batch_end=on_batch_end if ctx.is_main else None)
        result = fit(ddp, counting, val_loader, config, class_weights=cw, checkpoint_dir=rank_dir, **hooks)
    result.history = [global_rows.get(r["epoch"], r) for r in result.history]
    return result


def _rank0_progress(
    main_dir: Path | None, train_loader: Iterable, ctx: DistContext
) -> tuple[bytes | None, dict[int, dict], float]:
    """Rank 0's checkpoint bytes, job-wide history rows and best metric, on every rank; sets the loader's epoch."""
    ckpt_bytes = _broadcast_bytes(_read_bytes(main_dir / CHECKPOINT_NAME if main_dir else None), ctx)
    history_bytes = _broadcast_bytes(_read_bytes(main_dir / GLOBAL_HISTORY_NAME if main_dir else None), ctx)
    global_rows: dict[int, dict] = {r["epoch"]: r for r in json.loads(history_bytes)} if history_bytes else {}
    best = math.nan
    if ckpt_bytes is not None:
        ckpt = torch.load(io.BytesIO(ckpt_bytes), map_location="cpu", weights_only=True)
        best, resumed_epoch = float(ckpt["best_metric"]), int(ckpt["epoch"])
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(resumed_epoch)  # epochs are 1-based in fit, orders 0-based here
    return ckpt_bytes, global_rows, best


@contextmanager
def _rank_checkpoint_dir(main_dir: Path | None, ckpt_bytes: bytes | None, ctx: DistContext) -> Iterator[Path | None]:
    """Where this rank's ``fit`` checkpoints: rank 0 in ``main_dir``; the others in a private temporary copy of
    rank 0's checkpoint when resuming (thrown away afterwards), else nowhere."""
    if ctx.is_main:
        yield main_dir
    elif ckpt_bytes is None:
        yield None
    else:
        with tempfile.TemporaryDirectory(prefix=f"vigil-ddp-rank{ctx.rank}-") as scratch:
            (Path(scratch) / CHECKPOINT_NAME).write_bytes(ckpt_bytes)
            yield Path(scratch)


class _JobWideRows:
    """``fit``'s ``on_epoch_end`` on every rank: reduces train loss and throughput over the ranks, checks that they
    agree on the early-stopping decision, keeps the job-wide rows and writes them (rank 0)."""

    def __init__(
        self,
        config: FitConfig,
        ctx: DistContext,
        counting: _CountingLoader,
        best: float,
        global_rows: dict[int, dict],
        main_dir: Path | None,
        on_epoch_end: Callable[[dict], None] | None,
    ) -> None:
        self.config, self.ctx, self.counting, self.best = config, ctx, counting, best
        self.global_rows, self.main_dir, self.on_epoch_end = global_rows, main_dir, on_epoch_end

    def __call__(self, row: dict) -> None:
        config, ctx, seen = self.config, self.ctx, self.counting.seen
        value = row.get(f"val_{config.monitor}")
        better = value is None or improved(float(value), self.best, config.monitor)
        local = torch.tensor(
            [row["train_loss"] * seen, seen, row["images_per_s"], float(better)],
            dtype=torch.float64,
            device=ctx.device,
        )
        gathered = [torch.empty_like(local) for _ in range(ctx.world_size)]
        dist.all_gather(gathered, local)
        stats = torch.stack(gathered).cpu()  # (world_size, 4)
        if len(set(stats[:, 3].tolist())) > 1:
            raise RuntimeError(
                f"epoch {row['epoch']}: ranks disagree on whether val_{config.monitor} improved (rank {ctx.rank}: "
                f"{value}); validation must give the same numbers on every rank: pass the whole, unsharded "
                "validation set to every rank and keep dropout/augmentation out of evaluation"
            )
        if better and value is not None:
            self.best = float(value)
        row = {
            **row,
            "train_loss": float(stats[:, 0].sum() / stats[:, 1].sum().clamp_min(1)),
            "images_per_s": float(stats[:, 2].sum()),
        }
        self.global_rows[row["epoch"]] = row
        if ctx.is_main and self.main_dir is not None:
            rows = sorted(self.global_rows.values(), key=lambda r: r["epoch"])
            _write_json_atomic(self.main_dir / GLOBAL_HISTORY_NAME, rows)
        if ctx.is_main and self.on_epoch_end is not None:
            self.on_epoch_end(dict(row))


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)
