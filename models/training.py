"""The one fit loop for classifiers: LR schedules, weighted losses, early stopping, checkpoints and resume.

Every model family (image, EEG, GAN feature extractors) trains through :func:`fit`, so the behaviour users rely on
(resume after a crash, best-epoch weights, identical results for the same seed on CPU) is written once. Device
choice, bf16 autocast, RNG state and checkpoint files come from :mod:`models.runtime`, which the GAN loop
(:mod:`models.gan_training`) shares. The module imports only torch, numpy and the standard library so it runs on a
bare GPU machine.

Batches are ``(x, y)`` or ``(x, y, w)`` with ``w`` a float per-sample weight. Progress is reported only through
the ``on_batch_end`` / ``on_epoch_end`` hooks; the module never prints or logs.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.runtime import (
    LoadAwareThreads,
    architecture_hash,
    bf16_autocast,
    checkpoint_path,
    cpu_state_dict,
    load_checkpoint,
    model_device,
    rng_state,
    save_atomic,
    select_device,
    set_rng_state,
    to_device,
)

SCHEDULES = ("onecycle", "cosine", "constant")
MONITORS = ("loss", "accuracy", "balanced_accuracy")
_CHECKPOINT_VERSION = 1

Batch = tuple[torch.Tensor, ...]
_ROW_KEYS = (
    "epoch",
    "lr",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_balanced_accuracy",
    "seconds",
    "images_per_s",
)


@dataclass(frozen=True)
class FitConfig:
    """Hyper-parameters of :func:`fit`; everything except ``device`` is part of the checkpoint fingerprint.

    Attributes:
        epochs: Maximum number of passes over the training loader.
        lr: Peak learning rate of AdamW.
        weight_decay: Decoupled weight decay of AdamW (Loshchilov & Hutter, 2019).
        schedule: ``"onecycle"`` (Smith & Topin, 2019; also cycles Adam's beta1), ``"cosine"`` (linear warmup
            then cosine decay to 0) or ``"constant"``; all are stepped once per batch.
        warmup_frac: Fraction of all steps spent warming up (OneCycle's ``pct_start``; cosine's linear warmup).
        patience: Epochs without improvement of ``monitor`` before stopping; ``None`` disables early stopping.
        monitor: Validation metric that picks the best epoch: ``"loss"`` (lower is better), ``"accuracy"`` or
            ``"balanced_accuracy"`` (higher is better).
        amp: bf16 autocast on CUDA (no loss scaling needed for bf16); ignored on other devices.
        amp_cpu: bf16 autocast on a CPU with native bf16 units (AVX512-BF16 / AMX, see
            :func:`models.runtime.cpu_bf16_native`): measured 1.5x faster convolutions on such a 2-core VM; ignored on
            CPUs without them (emulated bf16 would be slower than float32) and on CUDA (``amp`` decides there).
        device: ``"cuda"``, ``"cuda:1"``, ``"cpu"``, ...; ``None`` picks CUDA when available.
        grad_clip: Max global gradient norm; ``None`` disables clipping.
        label_smoothing: Cross-entropy label smoothing (training loss only).
        channels_last: Use the NHWC memory format for 4-D inputs (faster convs on recent GPUs).
        seed: Seeds torch's global RNG at a fresh start, so the same seed on CPU gives identical results.
        backbone_lr_scale: Discriminative learning rates for fine-tuning (Howard & Ruder, 2018): parameters outside
            the head (names not starting with ``head_prefix``) get ``lr * backbone_lr_scale``, so a pre-trained
            backbone moves less than a freshly initialised head. 1.0 trains everything at ``lr``.
        freeze_epochs: Epochs at the start during which only the head trains (the backbone's parameters get no
            gradient), then everything trains: the frozen-then-unfrozen schedule, which keeps a random head's first
            large gradients out of pre-trained features.
        head_prefix: Parameter-name prefix of the classifier head (vigil's image and EEG models use ``head.``).
        threads: torch CPU threads; ``None`` chooses them from the cores other processes leave free, at the start
            and after every epoch (:class:`models.runtime.LoadAwareThreads`), unless the caller has already set
            torch's count away from its default. Not part of the fingerprint.
    """

    epochs: int = 10
    lr: float = 3e-3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    warmup_frac: float = 0.1
    patience: int | None = 5
    monitor: str = "balanced_accuracy"
    amp: bool = True
    amp_cpu: bool = False
    device: str | None = None
    grad_clip: float | None = 1.0
    label_smoothing: float = 0.0
    channels_last: bool = False
    seed: int = 0
    backbone_lr_scale: float = 1.0
    freeze_epochs: int = 0
    head_prefix: str = "head."
    threads: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.backbone_lr_scale:
            raise ValueError(f"backbone_lr_scale={self.backbone_lr_scale} must be >= 0")
        if not 0 <= self.freeze_epochs < self.epochs:
            raise ValueError(f"freeze_epochs={self.freeze_epochs} must be >= 0 and below epochs={self.epochs}")
        if self.epochs < 1:
            raise ValueError(f"epochs={self.epochs}; train for at least 1 epoch")
        if not self.lr > 0 and self.schedule != "constant":
            raise ValueError(f"lr={self.lr} must be > 0 for schedule={self.schedule!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise ValueError(f"warmup_frac={self.warmup_frac} must be in [0, 1)")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience={self.patience}; use >= 1, or None to disable early stopping")
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor={self.monitor!r}; use one of {', '.join(MONITORS)}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip={self.grad_clip}; use a positive norm, or None to disable clipping")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={self.label_smoothing} must be in [0, 1)")


@dataclass
class FitResult:
    """What :func:`fit` did; the model itself holds the best epoch's weights.

    Attributes:
        history: One dict per epoch with ``epoch`` (1-based), ``lr`` (used by the epoch's last step), ``train_loss``,
            ``val_loss``, ``val_accuracy``, ``val_balanced_accuracy`` (``None`` without a validation loader),
            ``seconds`` (whole epoch: training + validation) and ``images_per_s`` (training phase only).
        best_epoch: 1-based epoch whose weights the model holds.
        best_metric: The monitored validation metric at ``best_epoch`` (NaN without a validation loader).
        epochs_run: Epochs completed, including those before a resume.
        resumed_from_epoch: Epoch of the checkpoint this call resumed from; ``None`` for a fresh start.
        stopped_early: Whether early stopping ended training before ``config.epochs``.
        device: The device trained on, e.g. ``"cpu"`` or ``"cuda:0"``.
    """

    history: list[dict]
    best_epoch: int
    best_metric: float
    epochs_run: int
    resumed_from_epoch: int | None
    stopped_early: bool
    device: str
    threads: list[int] = field(default_factory=list)  # torch CPU threads of each epoch this call trained


class TensorBatches:
    """Mini-batches sliced from tensors that already live on the training device.

    When a whole data set fits in GPU memory, slicing it there avoids DataLoader workers, host-to-device copies and
    collation. It behaves like a DataLoader for :func:`fit` and :func:`predict_proba` (``len()`` is the number of
    batches; iterating yields ``(x,)``, ``(x, y)`` or ``(x, y, w)``). Shuffling draws from torch's global RNG on
    the tensors' device, like a DataLoader without a generator, so :func:`fit`'s seeding and checkpointed RNG
    state cover it.

    Args:
        x: Inputs ``(N, ...)``.
        y: Integer labels ``(N,)``; ``None`` for prediction only.
        w: Optional float per-sample weights ``(N,)`` (needs ``y``).
        batch_size: Samples per batch.
        shuffle: Draw a new random order at each iteration.
        drop_last: Skip the last incomplete batch (keeps BatchNorm away from tiny batches during training).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        w: torch.Tensor | None = None,
        *,
        batch_size: int = 64,
        shuffle: bool = False,
        drop_last: bool = False,
    ) -> None:
        n = len(x)
        if w is not None and y is None:
            raise ValueError("TensorBatches got sample weights w without labels y")
        given = {"x": x, "y": y, "w": w}
        if any(t is not None and len(t) != n for t in given.values()):
            lens = ", ".join(f"{k}={len(t)}" for k, t in given.items() if t is not None)
            raise ValueError(f"TensorBatches needs tensors of equal length, got {lens}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if drop_last and n < batch_size:
            raise ValueError(f"drop_last with {n} samples < batch_size={batch_size} gives no batch; lower batch_size")
        self.tensors = tuple(t for t in (x, y, w) if t is not None)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        x = self.tensors[0]
        n = len(x)
        order = torch.randperm(n, device=x.device) if self.shuffle else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, min((i + 1) * self.batch_size, n))
            if order is None:
                yield tuple(t[sl] for t in self.tensors)
            else:
                idx = order[sl]
                yield tuple(t[idx] for t in self.tensors)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (a model-size figure for reports and the compression stage)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def weighted_cross_entropy(
    logits: torch.Tensor,
    y: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    sample_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy weighted per class and per sample, normalised by the total weight.

    Each sample counts ``class_weights[y] * sample_weights``; the sum of weighted losses is divided by the sum of
    those weights. Without sample weights this equals PyTorch's ``cross_entropy(weight=...)`` with mean
    reduction; class weights ~ 1 / class frequency give the class-balanced loss that keeps a rare defect class
    from being ignored, and sample weights let synthetic or uncertain samples count less.

    Args:
        logits: ``(B, C)``.
        y: Integer labels ``(B,)``.
        class_weights: ``(C,)`` or ``None``.
        sample_weights: ``(B,)`` or ``None``.
        label_smoothing: Passed to ``cross_entropy``.

    Returns:
        Scalar loss.
    """
    logits = logits.float()
    losses = F.cross_entropy(logits, y, reduction="none", label_smoothing=label_smoothing)  # (B,)
    weights = torch.ones_like(losses)
    if class_weights is not None:
        weights = weights * class_weights.to(losses)[y]
    if sample_weights is not None:
        weights = weights * sample_weights.to(losses)
    return (losses * weights).sum() / weights.sum().clamp_min(torch.finfo(losses.dtype).tiny)


def classification_metrics(
    logits: np.ndarray,
    y: np.ndarray,
    class_weights: np.ndarray | None = None,
    sample_weights: np.ndarray | None = None,
) -> dict[str, float]:
    """Loss, accuracy and balanced accuracy of a whole validation set, in numpy.

    Args:
        logits: ``(N, C)``.
        y: Integer labels ``(N,)``.
        class_weights: ``(C,)``; weights the loss the same way as training (see :func:`weighted_cross_entropy`).
        sample_weights: ``(N,)``; weights the loss only.

    Returns:
        ``loss`` (weighted cross-entropy without label smoothing), ``accuracy`` and ``balanced_accuracy`` (mean
        recall over the classes present in ``y``, as scikit-learn defines it).
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, C)
    nll = -log_probs[np.arange(len(y)), y]
    weights = np.ones_like(nll)
    if class_weights is not None:
        weights = weights * np.asarray(class_weights, dtype=np.float64)[y]
    if sample_weights is not None:
        weights = weights * np.asarray(sample_weights, dtype=np.float64)
    pred = logits.argmax(axis=1)
    correct = pred == y
    recalls = [correct[y == c].mean() for c in np.unique(y)]
    return {
        "loss": float((nll * weights).sum() / max(weights.sum(), np.finfo(np.float64).tiny)),
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float(np.mean(recalls)),
    }


def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    if isinstance(batch, torch.Tensor):
        return batch, None, None
    if isinstance(batch, list | tuple) and 1 <= len(batch) <= 3:
        x, y, w = (*batch, None, None)[:3]
        return x, y, w
    raise ValueError(f"a batch must be x, (x,), (x, y) or (x, y, w); got {type(batch).__name__}: {batch!r:.80}")


def _infer(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    amp: bool,
    channels_last: bool = False,
    amp_cpu: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Logits (float32, CPU) plus labels and weights when the batches carry them; restores train/eval mode."""
    was_training = model.training
    model.eval()
    logits, ys, ws = [], [], []
    try:
        with torch.inference_mode(), bf16_autocast(device, amp, amp_cpu):
            for batch in loader:
                x, y, w = _split_batch(batch)
                logits.append(model(to_device(x, device, channels_last)).float())  # (B, C), stays on device
                if y is not None:
                    ys.append(y)
                if w is not None:
                    ws.append(w)
    finally:
        model.train(was_training)
    if not logits:
        raise ValueError("the loader yielded no batches; check the data split is not empty")
    out = torch.cat(logits).cpu()  # one device sync for the whole set
    y_all = torch.cat([y.cpu() for y in ys]) if ys else None
    w_all = torch.cat([w.cpu() for w in ws]) if ws else None
    return out, y_all, w_all


def predict_proba(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str | None = None,
    amp: bool = True,
    amp_cpu: bool = False,
) -> np.ndarray:
    """Softmax class probabilities for every sample, in loader order.

    Args:
        model: A classifier returning logits ``(B, C)``.
        loader: Yields ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, w)``; labels and weights are ignored.
        device: Where to run; ``None`` uses the device the model's parameters are on (so a model returned by
            :func:`fit` predicts where it was trained). The model is moved there.
        amp: bf16 autocast on CUDA; ignored elsewhere. Probabilities are computed in float32 either way.
        amp_cpu: bf16 autocast on a CPU with native bf16 (see :class:`FitConfig`).

    Returns:
        ``(N, C)`` float32 array whose rows sum to 1.
    """
    dev = model_device(model) if device is None else torch.device(device)
    model.to(dev)
    logits, _, _ = _infer(model, loader, dev, amp, amp_cpu=amp_cpu)
    return torch.softmax(logits, dim=1).numpy()


def _num_batches(loader: Iterable) -> int:
    if not isinstance(loader, Sized):
        raise TypeError(
            f"fit needs a train loader with len() (the LR schedule is stepped per batch); got {type(loader).__name__}"
        )
    n = len(loader)
    if n == 0:
        raise ValueError("the train loader has no batches; check the training split and batch_size/drop_last")
    return n


def _make_scheduler(
    optimizer: torch.optim.Optimizer, config: FitConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "onecycle" and total_steps >= 4:
        # OneCycleLR divides by the warm-up length in steps: keep it at >= 2 steps (tiny runs crashed otherwise).
        pct = min(0.5, max(config.warmup_frac, 2.0 / total_steps))
        max_lr = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct)
    if config.schedule == "cosine":
        warmup = int(round(config.warmup_frac * total_steps))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def _fingerprint(
    config: FitConfig, n_batches: int, model: nn.Module, class_weights: torch.Tensor | None
) -> dict[str, Any]:
    """The things a checkpoint must agree on to be resumed; stored readable so a mismatch can name them."""
    fields = asdict(config)
    fields.pop("device")  # resuming a CPU run on a GPU (or vice versa) is legitimate
    fields.pop("threads")  # and so is resuming with another thread count
    return {
        "config": fields,
        "n_batches": n_batches,
        "model": architecture_hash(model, type(model).__name__),
        "class_weights": None if class_weights is None else [float(v) for v in class_weights.flatten()],
    }


def improved(value: float, best: float, monitor: str) -> bool:
    """Whether ``value`` of the validation metric ``monitor`` beats ``best`` (lower loss, higher accuracy).

    A NaN ``best`` (no epoch scored yet) is beaten by any number; a NaN ``value`` never improves.
    """
    if math.isnan(best):
        return not math.isnan(value)
    return value < best if monitor == "loss" else value > best


@dataclass
class _FitState:
    """What :func:`fit` carries from epoch to epoch; its checkpoint stores it and a resume restores it."""

    history: list[dict] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_metric: float = math.nan
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    finished: bool = False
    epoch: int = 0  # the last completed epoch
    resumed_from: int | None = None

    def record(self, row: dict, value: float, model: nn.Module, config: FitConfig, validated: bool) -> None:
        """Append an epoch's row, keep the model's weights if they are the best so far, decide whether to stop."""
        epoch = row["epoch"]
        self.history.append(row)
        if not validated or improved(value, self.best_metric, config.monitor):
            self.best_metric, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.best_state = cpu_state_dict(model)
        else:
            self.bad_epochs += 1
        patience = config.patience
        self.stopped_early = patience is not None and self.bad_epochs >= patience and epoch < config.epochs
        self.finished = self.stopped_early or epoch == config.epochs
        self.epoch = epoch

    def checkpoint(
        self,
        fingerprint: dict[str, Any],
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
    ) -> dict[str, Any]:
        """Everything a resume needs to continue exactly, RNG states included."""
        return {
            "version": _CHECKPOINT_VERSION,
            "fingerprint": fingerprint,
            "epoch": self.epoch,
            "finished": self.finished,
            "model": cpu_state_dict(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "history": self.history,
            "best_state": self.best_state,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early,
            "rng": rng_state(),
        }

    def result(self, device: torch.device) -> FitResult:
        return FitResult(
            history=copy.deepcopy(self.history),
            best_epoch=self.best_epoch,
            best_metric=float(self.best_metric),
            epochs_run=len(self.history),
            resumed_from_epoch=self.resumed_from,
            stopped_early=self.stopped_early,
            device=str(device),
        )


def _resume_or_seed(
    ckpt_path: Path | None,
    fingerprint: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    seed: int,
) -> _FitState:
    """Restore model, optimizer, scheduler, progress and RNG states from ``ckpt_path`` if it exists, else seed."""
    if ckpt_path is None or not ckpt_path.exists():
        torch.manual_seed(seed)
        return _FitState()
    ckpt = load_checkpoint(ckpt_path, fingerprint, _CHECKPOINT_VERSION)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    state = _FitState(
        history=ckpt["history"],
        best_state=ckpt["best_state"],
        best_metric=ckpt["best_metric"],
        best_epoch=ckpt["best_epoch"],
        bad_epochs=ckpt["bad_epochs"],
        stopped_early=ckpt["stopped_early"],
        finished=ckpt["finished"],
        epoch=ckpt["epoch"],
        resumed_from=ckpt["epoch"],
    )
    set_rng_state(ckpt["rng"])
    return state


def _prepare(
    model: nn.Module, config: FitConfig, device: torch.device, n_batches: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Move the model to the device (and layout) and build its AdamW optimizer and per-batch LR schedule."""
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    fused = device.type == "cuda"  # the fused CUDA kernel is one launch instead of one per tensor
    groups = param_groups(model, config)
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return optimizer, _make_scheduler(optimizer, config, config.epochs * n_batches)


def param_groups(model: nn.Module, config: FitConfig) -> list[dict[str, Any]]:
    """The optimizer's groups: the head at ``lr``, the rest at ``lr * backbone_lr_scale`` (one group when 1.0).

    Group order is fixed (head first) so a checkpoint's optimizer state loads back into the same groups.
    """
    named = list(model.named_parameters())
    if config.backbone_lr_scale == 1.0 and config.freeze_epochs == 0:
        return [{"params": [p for _, p in named], "lr": config.lr, "name": "all"}]
    head = [p for n, p in named if n.startswith(config.head_prefix)]
    if not head:
        raise ValueError(
            f"backbone_lr_scale/freeze_epochs need a classifier head named {config.head_prefix!r}*; "
            f"{type(model).__name__} has none"
        )
    body = [p for n, p in named if not n.startswith(config.head_prefix)]
    return [
        {"params": head, "lr": config.lr, "name": "head"},
        {"params": body, "lr": config.lr * config.backbone_lr_scale, "name": "backbone"},
    ]


def _freeze_backbone(optimizer: torch.optim.Optimizer, frozen: bool) -> None:
    """Turn the backbone group's gradients off (or back on); AdamW skips parameters without a gradient."""
    for group in optimizer.param_groups:
        if group.get("name") == "backbone":
            for p in group["params"]:
                p.requires_grad_(not frozen)


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None,
    config: FitConfig,
    *,
    class_weights: torch.Tensor | None = None,
    checkpoint_dir: str | Path | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
    on_batch_end: Callable[[int, int], None] | None = None,
    batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> FitResult:
    """Train a classifier with AdamW and keep the best epoch's weights.

    The loss is :func:`weighted_cross_entropy` with ``class_weights`` and the batches' sample weights. After each
    epoch the model is scored on ``val_loader`` (the validation loss uses the same weights, without label
    smoothing, so a class-balanced run monitors a class-balanced loss); the epoch with the best ``config.monitor``
    wins, training stops after ``config.patience`` epochs without improvement, and at the end the model holds the
    best weights (a CPU copy is kept, so this costs no device memory).

    With ``checkpoint_dir``, ``last.pt`` there is rewritten atomically after every epoch with everything needed to
    continue exactly (model, optimizer, scheduler, history, best weights, early-stopping counter, RNG states). If it
    exists when ``fit`` starts, training resumes at the next epoch; a checkpoint of a finished run returns its
    result without training. On CPU, a resumed run reproduces the uninterrupted one.

    Args:
        model: Returns logits ``(B, C)``; moved to the training device (and to channels-last if configured).
        train_loader: Yields ``(x, y)`` or ``(x, y, w)``; must have ``len()``. Shuffling is the loader's job.
        val_loader: Same batch format, or ``None`` to train without validation (no early stopping; the last
            epoch is kept).
        config: Hyper-parameters; see :class:`FitConfig`.
        class_weights: ``(C,)`` loss weight per class, e.g. ``N / (C * count_c)`` for a class-balanced loss.
        checkpoint_dir: Folder for ``last.pt``; created if missing. ``None`` disables checkpoints.
        on_epoch_end: Called with each epoch's history row, after its checkpoint is written (so raising from it,
            e.g. ``KeyboardInterrupt``, loses no work).
        on_batch_end: Called as ``on_batch_end(batch_idx, n_batches)`` after each optimizer step, ``batch_idx``
            counting from 0.
        batch_transform: Applied to ``x`` on the device, training batches only (GPU-side augmentation).

    Returns:
        The :class:`FitResult`.

    Raises:
        ValueError: If ``last.pt`` was written with another config, batch count, model or class weights (start
            a fresh run), or a loader is empty.
        FloatingPointError: If the training loss becomes NaN or infinite.
    """
    device = select_device(config.device)
    n_batches = _num_batches(train_loader)
    optimizer, scheduler = _prepare(model, config, device, n_batches)
    cw = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    cw_device = None if cw is None else cw.to(device)
    fingerprint = _fingerprint(config, n_batches, model, cw)
    ckpt_path = checkpoint_path(checkpoint_dir)
    state = _resume_or_seed(ckpt_path, fingerprint, model, optimizer, scheduler, config.seed)
    threads = LoadAwareThreads(config.threads, active=device.type == "cpu" or config.threads is not None)
    try:
        for epoch in range(state.epoch + 1, config.epochs + 1):
            if state.finished:  # a finished checkpoint trains no further epoch
                break
            threads.before_epoch()
            _freeze_backbone(optimizer, frozen=epoch <= config.freeze_epochs)
            set_sampler_epoch(train_loader, epoch - 1)
            row = _train_epoch(
                model, train_loader, optimizer, scheduler, config, device, cw_device, n_batches, on_batch_end,
                batch_transform,
            )  # fmt: skip
            row, value = _validate(model, val_loader, {**row, "epoch": epoch}, config, device, cw)
            state.record(row, value, model, config, validated=val_loader is not None)
            if ckpt_path is not None:
                save_atomic(state.checkpoint(fingerprint, model, optimizer, scheduler), ckpt_path)
            if on_epoch_end is not None:
                on_epoch_end(dict(row))
    finally:
        threads.restore()
    _freeze_backbone(optimizer, frozen=False)
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return dataclasses.replace(state.result(device), threads=threads.chosen)


def set_sampler_epoch(loader: Iterable, epoch: int) -> None:
    """Tell the loader's sampler which epoch (0-based) comes next, when it has ``set_epoch`` (as
    ``DistributedSampler`` and vigil's ``SeededSampler`` do).

    A sampler that counted its own passes would start again at its first shuffle after a resume, so the resumed
    run would see other batches than the uninterrupted one (and pick another best epoch).
    """
    sampler = getattr(loader, "sampler", None)
    if callable(getattr(sampler, "set_epoch", None)):
        sampler.set_epoch(epoch)


def _validate(
    model: nn.Module,
    val_loader: Iterable | None,
    row: dict[str, Any],
    config: FitConfig,
    device: torch.device,
    class_weights: torch.Tensor | None,
) -> tuple[dict[str, Any], float]:
    """Score the epoch on ``val_loader`` and complete its history row; returns the row and the monitored value."""
    t_val = time.perf_counter()
    if val_loader is not None:
        logits, y, w = _infer(model, val_loader, device, config.amp, config.channels_last, config.amp_cpu)
        if y is None:
            raise ValueError("the validation loader yields no labels; batches must be (x, y) or (x, y, w)")
        cw = None if class_weights is None else class_weights.numpy()
        metrics = classification_metrics(logits.numpy(), y.numpy(), cw, None if w is None else w.numpy())
        row.update({f"val_{k}": v for k, v in metrics.items()})
        value = metrics[config.monitor]
    else:
        row.update(val_loss=None, val_accuracy=None, val_balanced_accuracy=None)
        value = math.nan
    row["seconds"] = row.pop("_train_seconds") + time.perf_counter() - t_val
    return {k: row[k] for k in _ROW_KEYS}, value


def _train_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: FitConfig,
    device: torch.device,
    class_weights: torch.Tensor | None,
    n_batches: int,
    on_batch_end: Callable[[int, int], None] | None,
    batch_transform: Callable[[torch.Tensor], torch.Tensor] | None,
) -> dict[str, Any]:
    """One pass over ``loader``; the loss is summed on the device and read once, so CUDA never waits per batch."""
    model.train()
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    n_seen = 0
    lr = math.nan
    for i, batch in enumerate(loader):
        if i >= n_batches:
            raise ValueError(f"the train loader yielded more than its len()={n_batches} batches")
        x, y, w = _split_batch(batch)
        if y is None:
            raise ValueError("training batches must be (x, y) or (x, y, w); got inputs without labels")
        x = to_device(x, device, config.channels_last)
        y = y.to(device, non_blocking=True)
        w = None if w is None else w.to(device, non_blocking=True)
        if batch_transform is not None:
            x = batch_transform(x)
        with bf16_autocast(device, config.amp, config.amp_cpu):
            logits = model(x)  # (B, C)
        loss = weighted_cross_entropy(logits, y, class_weights, w, config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]  # the rate this step used; the scheduler moves it on below
        scheduler.step()
        loss_sum += loss.detach() * len(y)
        n_seen += len(y)
        if on_batch_end is not None:
            on_batch_end(i, n_batches)
    train_loss = float(loss_sum)  # syncs the device; the epoch's timing therefore includes all its GPU work
    seconds = time.perf_counter() - t0
    if not math.isfinite(train_loss):
        raise FloatingPointError(
            f"training loss became {train_loss}; lower FitConfig.lr (now {config.lr}) or keep grad_clip on"
        )
    return {
        "lr": float(lr),
        "train_loss": train_loss / max(n_seen, 1),
        "images_per_s": n_seen / seconds if seconds > 0 else math.inf,
        "_train_seconds": seconds,
    }
