"""Training and sampling of the class-conditional GANs of :mod:`models.gan`.

:func:`fit_gan` trains a :class:`~models.gan.ConditionalGAN` with class-balanced batches, so that a rare class gets
as many generator updates as a common one: the hinge loss (Lim & Ye, 2017) for the spectral-norm image GAN, WGAN-GP
(Gulrajani et al., 2017) for the EEG GAN, with an exponential moving average of the generator (Yazici et al., 2019).
It checkpoints and resumes exactly like :func:`models.training.fit`, through the same runtime
(:mod:`models.runtime`: device, bf16 autocast, RNG state, atomic checkpoints). :func:`sample_gan` draws
deterministic samples for a seed.

Data range: real samples must lie in ``[-1, 1]`` (the generator ends in ``tanh``); see :mod:`models.gan` for the
scaling of images and EEG. Shapes in comments: B = batch, Z = noise dimension.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.gan import ConditionalGAN
from models.runtime import (
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
)

DEFAULT_N_CRITIC = {"hinge": 1, "wgan-gp": 5}
"""Discriminator steps per generator step when :attr:`GanConfig.n_critic` is ``None`` (SAGAN's 1 for hinge with
spectral norm, Gulrajani et al.'s 5 for WGAN-GP)."""
_CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class GanConfig:
    """Hyper-parameters of :func:`fit_gan`; everything except ``device`` is part of the checkpoint fingerprint.

    Attributes:
        steps: Generator updates.
        batch_size: Real (and fake) samples per discriminator batch and fake samples per generator batch.
        lr_g: Adam learning rate of the generator.
        lr_d: Adam learning rate of the discriminator; twice ``lr_g`` by default (the two time-scale update rule,
            Heusel et al., 2017), which lets one discriminator step per generator step suffice with the hinge loss.
        betas: Adam's betas; ``(0.0, 0.9)`` (no momentum) is the usual choice for GANs since WGAN-GP and SAGAN.
        n_critic: Discriminator steps per generator step; ``None`` picks :data:`DEFAULT_N_CRITIC` for the GAN's
            loss (1 for hinge, 5 for WGAN-GP).
        gp_weight: Gradient-penalty weight lambda (WGAN-GP only; 10 in Gulrajani et al.).
        ema_decay: Decay of the generator EMA; ``None`` keeps ``generator_ema`` equal to ``generator``. Early on
            the decay is ``min(ema_decay, (1 + step) / (10 + step))`` so the average forgets the random init.
        device: ``"cuda"``, ``"cpu"``, ...; ``None`` picks CUDA when available.
        amp: bf16 autocast on CUDA; ignored on other devices. The gradient penalty is always computed in float32.
        amp_cpu: bf16 autocast on a CPU with native bf16 (see :func:`models.runtime.cpu_bf16_native`): measured
            1.34x more image-GAN steps per second on a 2-core AMX VM; ignored elsewhere.
        seed: Seeds the batch sampler, the noise and torch's global RNG at a fresh start; the same seed on CPU
            gives identical results.
        checkpoint_every: Generator steps between checkpoints (one is always written at the end).
        log_every: Generator steps per history row (a row is also written at the last step).
    """

    steps: int = 1500
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.9)
    n_critic: int | None = None
    gp_weight: float = 10.0
    ema_decay: float | None = 0.999
    device: str | None = None
    amp: bool = True
    amp_cpu: bool = False
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps={self.steps}; train for at least 1 generator step")
        if self.batch_size < 2:
            raise ValueError(f"batch_size={self.batch_size}; the generator's BatchNorm needs at least 2, e.g. 64")
        for name in ("lr_g", "lr_d"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value}; use a positive learning rate, e.g. 2e-4")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas={self.betas}; use two values in [0, 1), e.g. (0.0, 0.9)")
        if self.n_critic is not None and self.n_critic < 1:
            raise ValueError(f"n_critic={self.n_critic}; use >= 1, or None for the loss's default")
        if not (math.isfinite(self.gp_weight) and self.gp_weight >= 0):
            raise ValueError(f"gp_weight={self.gp_weight}; use a non-negative penalty weight, e.g. 10")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay={self.ema_decay} must be in [0, 1), e.g. 0.999, or None to disable the EMA")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every={self.checkpoint_every}; use a positive number of steps")
        if self.log_every < 1:
            raise ValueError(f"log_every={self.log_every}; use a positive number of steps")


@dataclass
class GanResult:
    """What :func:`fit_gan` did; the GAN itself holds the final weights.

    Attributes:
        history: One dict per logged step: ``step`` (1-based generator step), ``d_loss`` and ``g_loss`` (means
            over the steps since the previous row), ``gp`` (mean gradient penalty, WGAN-GP only, included in
            ``d_loss``) and ``seconds`` (wall time since the previous row).
        steps_run: Generator steps completed, including those before a resume.
        resumed_from_step: Step of the checkpoint this call resumed from; ``None`` for a fresh start.
        device: The device trained on, e.g. ``"cpu"`` or ``"cuda:0"``.
        seconds: Wall time of this call.
    """

    history: list[dict]
    steps_run: int
    resumed_from_step: int | None
    device: str
    seconds: float


class ClassBalancedSampler:
    """Draws labels and sample indices so that every class present in ``y`` is equally likely.

    Each draw first picks a class uniformly among the classes present, then an item of that class uniformly, so a
    class with 5 % of the data still fills about half of a two-class batch and the GAN learns it. All randomness
    comes from the ``torch.Generator`` passed in, on the CPU.

    Args:
        y: Integer labels ``(N,)``.
    """

    def __init__(self, y: torch.Tensor) -> None:
        y = y.detach().to("cpu", torch.long)
        if y.ndim != 1 or len(y) == 0:
            raise ValueError(f"ClassBalancedSampler needs a non-empty 1-D label tensor, got shape {tuple(y.shape)}")
        self.classes, self.counts = torch.unique(y, sorted=True, return_counts=True)  # (K,), (K,)
        self.order = torch.argsort(y, stable=True)  # items grouped by class, in class order
        self.offsets = torch.cumsum(self.counts, 0) - self.counts  # (K,) where each class starts in `order`

    def labels(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` labels drawn uniformly from the classes present: ``(n,)`` long."""
        return self.classes[torch.randint(len(self.classes), (n,), generator=generator)]

    def indices(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` item indices into ``y`` and their labels, each ``(n,)`` long."""
        k = torch.randint(len(self.classes), (n,), generator=generator)  # (n,) class slots
        counts = self.counts[k]
        within = (torch.rand(n, generator=generator, dtype=torch.float64) * counts).long().clamp_max(counts - 1)
        return self.order[self.offsets[k] + within], self.classes[k]


def _check_data(gan: ConditionalGAN, x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor in [-1, 1], got {type(x).__name__} {getattr(x, 'dtype', '')}")
    if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool or y.ndim != 1:
        raise ValueError(f"y must be a 1-D integer (long) label tensor, got {getattr(y, 'dtype', type(y).__name__)}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels; pass one label per sample")
    if len(x) == 0:
        raise ValueError("fit_gan got no samples; check the class filter and the training split")
    if tuple(x.shape[1:]) != gan.sample_shape:
        raise ValueError(
            f"x has samples of shape {tuple(x.shape[1:])} but the GAN makes {gan.sample_shape}; build the GAN for "
            "this data (in_chans/img_size or n_chans/n_times) or resize the data"
        )
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= gan.num_classes:
        raise ValueError(f"labels span [{lo}, {hi}] but the GAN has num_classes={gan.num_classes}; use 0..C-1")
    lo_x, hi_x = (float(v) for v in torch.aminmax(x))  # one pass, no full-size temporary; NaN propagates
    if not (math.isfinite(lo_x) and math.isfinite(hi_x)):
        raise ValueError("x contains NaN or infinite values; fix or drop those samples first")
    peak = max(-lo_x, hi_x)
    if peak > 1.0 + 1e-3:
        raise ValueError(
            f"x reaches |{peak:.3g}| but the generator's tanh output is limited to [-1, 1]; scale the data first "
            "(images: x / 127.5 - 1; EEG: per-channel z-scores / 4, clipped to [-1, 1])"
        )


def _fingerprint(config: GanConfig, gan: ConditionalGAN, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed; stored readable (json types) so a mismatch can name it."""
    fields = asdict(config)
    fields.pop("device")  # resuming a CPU run on a GPU (or vice versa) is legitimate
    labels = (type(gan.generator).__name__, type(gan.discriminator).__name__, gan.kind, gan.loss)
    fingerprint = {
        "config": fields,
        "data_shape": list(x.shape),
        "class_counts": torch.bincount(y.detach().cpu().long(), minlength=gan.num_classes).tolist(),
        "model": architecture_hash(gan, *labels),
    }
    return json.loads(json.dumps(fingerprint))  # tuples -> lists, as a checkpoint round trip would


@torch.no_grad()
def _update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)  # BatchNorm statistics of the live generator, the usual practice for EMA generators


def _gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor, eps: torch.Tensor
) -> torch.Tensor:
    """``E[(||grad_x D(x_hat, y)|| - 1)^2]`` at ``x_hat = eps * real + (1 - eps) * fake`` (Gulrajani et al., 2017).

    Always in float32: the penalty differentiates a gradient, and bf16's 8-bit mantissa makes that second-order
    term noisy enough to destabilise the critic.
    """
    x_hat = (eps * real.float() + (1.0 - eps) * fake.float()).requires_grad_(True)  # (B, *sample_shape)
    with torch.autocast(real.device.type, enabled=False):
        out = critic(x_hat, y).float()  # (B,)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def _d_loss(
    gan: ConditionalGAN,
    real: torch.Tensor,
    fake: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor | None,
    gp_weight: float,
    amp: bool,
    amp_cpu: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Discriminator loss on a real and a fake batch of the same labels, plus the gradient penalty (WGAN-GP)."""
    with bf16_autocast(real.device, amp, amp_cpu):
        # one forward for both halves: one spectral-norm power iteration per step, as in the reference code
        scores = gan.discriminator(torch.cat([real, fake]), torch.cat([y, y])).float()  # (2B,)
    d_real, d_fake = scores.chunk(2)
    if gan.loss == "hinge":
        return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean(), None
    loss = d_fake.mean() - d_real.mean()  # minus the critic's Wasserstein estimate
    if eps is None:
        return loss, torch.zeros((), device=real.device)
    gp = _gradient_penalty(gan.discriminator, real, fake, y, eps)
    return loss + gp_weight * gp, gp


def _check_finite(values: dict[str, float], step: int, config: GanConfig) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        raise FloatingPointError(
            f"GAN training diverged by step {step}: {', '.join(f'{k}={v}' for k, v in bad.items())}; lower "
            f"GanConfig.lr_d/lr_g (now {config.lr_d:g}/{config.lr_g:g}) or check the data for outliers"
        )


class _GanRun:
    """One call of :func:`fit_gan`: the GAN on its device, its optimizers, the sampler, history and running sums.

    Every random draw (batches, labels, noise, WGAN-GP interpolation weights) comes from ``self.rng``, one CPU
    ``torch.Generator``, so a run does not depend on the device's RNG.
    """

    def __init__(self, gan: ConditionalGAN, x: torch.Tensor, y: torch.Tensor, config: GanConfig) -> None:
        self.gan, self.x, self.config = gan, x, config
        self.device = device = select_device(config.device)
        self.amp = config.amp and device.type == "cuda"
        self.n_critic = config.n_critic or DEFAULT_N_CRITIC[gan.loss]
        self.wgan = gan.loss == "wgan-gp"
        self.use_gp = self.wgan and config.gp_weight > 0
        gan.to(device).train()
        gan.generator.requires_grad_(True)
        gan.discriminator.requires_grad_(True)  # in case an interrupted call left it frozen mid generator step
        self.sampler = ClassBalancedSampler(y)
        fused = device.type == "cuda"  # one kernel launch for the whole update instead of one per tensor
        self.opt_g = torch.optim.Adam(gan.generator.parameters(), lr=config.lr_g, betas=config.betas, fused=fused)
        self.opt_d = torch.optim.Adam(gan.discriminator.parameters(), lr=config.lr_d, betas=config.betas, fused=fused)
        self.rng = torch.Generator()  # CPU: the same draws whatever the training device
        self.history: list[dict] = []

    def resume_or_seed(self, ckpt_path: Path | None, fingerprint: dict[str, Any]) -> int | None:
        """Restore everything from ``ckpt_path`` if it exists (returns its step), else seed both RNGs (``None``)."""
        window = {"d_loss": 0.0, "g_loss": 0.0, "gp": 0.0, "n": 0}  # sums since the last history row
        resumed_from = None
        if ckpt_path is not None and ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path, fingerprint, _CHECKPOINT_VERSION, setup="GAN training")
            self.gan.load_state_dict(ckpt["model"])
            self.opt_g.load_state_dict(ckpt["opt_g"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
            self.history, window = ckpt["history"], ckpt["window"]
            self.rng.set_state(ckpt["sampler_rng"])
            set_rng_state(ckpt["rng"])
            resumed_from = ckpt["step"]
        else:
            torch.manual_seed(self.config.seed)
            self.rng.manual_seed(self.config.seed)
        # running sums stay on the device so CUDA never waits for them between reads
        keys = ("d_loss", "g_loss", "gp")
        self.sums = {k: torch.tensor(window[k], dtype=torch.float32, device=self.device) for k in keys}
        self.n_window = int(window["n"])
        self.t_row = time.perf_counter()
        return resumed_from

    def critic_steps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``n_critic`` discriminator updates on class-balanced real batches and fakes of the same labels.

        Returns the mean discriminator loss and mean gradient penalty (zero without one), still on the device.
        """
        gan, device, batch = self.gan, self.device, self.config.batch_size
        eps_shape = (batch,) + (1,) * len(gan.sample_shape)
        d_step = torch.zeros((), device=device)
        gp_step = torch.zeros((), device=device)
        for _ in range(self.n_critic):
            idx, labels = self.sampler.indices(batch, self.rng)
            z = torch.randn(batch, gan.z_dim, generator=self.rng)
            eps = torch.rand(eps_shape, generator=self.rng).to(device) if self.use_gp else None
            real = self.x[idx.to(self.x.device)].to(device, non_blocking=True)  # (B, *sample_shape)
            yb = labels.to(device, non_blocking=True)
            with torch.no_grad(), bf16_autocast(device, self.amp, self.config.amp_cpu):
                fake = gan.generator(z.to(device), yb)
            d_loss, gp = _d_loss(gan, real, fake, yb, eps, self.config.gp_weight, self.amp, self.config.amp_cpu)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            d_step += d_loss.detach()
            if gp is not None:
                gp_step += gp.detach()
        return d_step / self.n_critic, gp_step / self.n_critic

    def generator_step(self, step: int) -> torch.Tensor:
        """One generator update on fresh class-balanced labels, then the EMA update; returns the loss (on device)."""
        gan, device, batch = self.gan, self.device, self.config.batch_size
        labels = self.sampler.labels(batch, self.rng).to(device, non_blocking=True)
        z = torch.randn(batch, gan.z_dim, generator=self.rng).to(device)
        gan.discriminator.requires_grad_(False)  # the generator step needs gradients w.r.t. inputs only
        with bf16_autocast(device, self.amp, self.config.amp_cpu):
            g_loss = -gan.discriminator(gan.generator(z, labels), labels).float().mean()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        gan.discriminator.requires_grad_(True)
        ema_decay = self.config.ema_decay
        decay = 0.0 if ema_decay is None else min(ema_decay, (1.0 + step) / (10.0 + step))
        _update_ema(gan.generator_ema, gan.generator, decay)
        return g_loss.detach()

    def accumulate(self, step_losses: dict[str, torch.Tensor]) -> None:
        for k, v in step_losses.items():
            self.sums[k] += v
        self.n_window += 1

    def log_row(self, step: int) -> None:
        """Append the means since the previous row to the history (reads the device) and restart the sums."""
        now = time.perf_counter()
        row: dict[str, Any] = {"step": step, **{k: float(v) / self.n_window for k, v in self.sums.items()}}
        _check_finite({k: v for k, v in row.items() if k != "step"}, step, self.config)
        if not self.wgan:
            row.pop("gp")
        row["seconds"] = now - self.t_row
        self.history.append(row)
        for v in self.sums.values():
            v.zero_()
        self.n_window, self.t_row = 0, now

    def checkpoint(self, step: int, finished: bool, fingerprint: dict[str, Any]) -> dict[str, Any]:
        """Everything a resume needs to continue exactly; refuses (raises) to store a NaN or infinite loss."""
        window = {k: float(v) for k, v in self.sums.items()} | {"n": self.n_window}
        _check_finite({k: v for k, v in window.items() if k != "n"}, step, self.config)
        return {
            "version": _CHECKPOINT_VERSION,
            "fingerprint": fingerprint,
            "step": step,
            "finished": finished,
            "model": cpu_state_dict(self.gan),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "history": self.history,
            "window": window,
            "sampler_rng": self.rng.get_state(),
            "rng": rng_state(),
        }


def fit_gan(
    gan: ConditionalGAN,
    x: torch.Tensor,
    y: torch.Tensor,
    config: GanConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    on_step_end: Callable[[int, int, dict[str, float]], None] | None = None,
) -> GanResult:
    """Train a :class:`ConditionalGAN` with Adam on class-balanced batches.

    Each generator step is preceded by ``n_critic`` discriminator steps. A discriminator step draws a real batch
    with :class:`ClassBalancedSampler` and fakes for the same labels; the generator step draws fresh class-balanced
    labels. Every random draw (batches, labels, noise, WGAN-GP interpolation weights) comes from one CPU
    ``torch.Generator`` seeded with ``config.seed``, so a run does not depend on the device's RNG. After each
    generator step ``generator_ema`` moves towards ``generator``.

    With ``checkpoint_dir``, ``last.pt`` there is rewritten atomically every ``config.checkpoint_every`` steps and
    at the end with everything needed to continue exactly (GAN incl. EMA, optimizers, history, RNG states). If it
    exists when ``fit_gan`` starts, training resumes at the next step; a finished checkpoint returns its result
    without training. On CPU a resumed run reproduces the uninterrupted one bit for bit.

    Losses are read from the device (which makes CUDA wait) only for history rows, checkpoints and
    ``on_step_end``; a NaN or infinite loss is therefore caught by the next of those, and never checkpointed.

    Args:
        gan: The GAN; moved to the training device and left in training mode.
        x: Real samples ``(N, *gan.sample_shape)``, float in [-1, 1] (see the module docstring for scaling). Pass
            it on the training device to save a host-to-device copy per batch.
        y: Labels ``(N,)`` in ``[0, gan.num_classes)``; only classes present are generated during training.
        config: Hyper-parameters; see :class:`GanConfig`.
        checkpoint_dir: Folder for ``last.pt``; created if missing. ``None`` disables checkpoints.
        on_step_end: Called as ``on_step_end(step, n_steps, losses)`` after each generator step (``step`` counts
            from 1) and after that step's checkpoint, so raising from it loses no checkpointed work; ``losses`` has
            ``d_loss``, ``g_loss`` and, for WGAN-GP, ``gp`` of that step.

    Returns:
        The :class:`GanResult`.

    Raises:
        ValueError: If the data do not fit the GAN (shape, labels, range, lengths) or ``last.pt`` was written by
            another setup (config, data shape, class counts or architecture; start a fresh run).
        FloatingPointError: If a loss becomes NaN or infinite.
    """
    t_start = time.perf_counter()
    _check_data(gan, x, y)
    run = _GanRun(gan, x, y, config)
    fingerprint = _fingerprint(config, gan, x, y)
    ckpt_path = checkpoint_path(checkpoint_dir)
    resumed_from = run.resume_or_seed(ckpt_path, fingerprint)
    step = resumed_from or 0  # steps_run if the loop below is empty
    for step in range((resumed_from or 0) + 1, config.steps + 1):  # empty for a finished checkpoint
        d_loss, gp = run.critic_steps()
        g_loss = run.generator_step(step)
        step_losses = {"d_loss": d_loss, "g_loss": g_loss, "gp": gp}
        run.accumulate(step_losses)
        if step % config.log_every == 0 or step == config.steps:
            run.log_row(step)
        finished = step == config.steps
        if ckpt_path is not None and (step % config.checkpoint_every == 0 or finished):
            save_atomic(run.checkpoint(step, finished, fingerprint), ckpt_path)
        if on_step_end is not None:
            losses = {k: float(v) for k, v in step_losses.items() if run.wgan or k != "gp"}
            _check_finite(losses, step, config)
            on_step_end(step, config.steps, losses)
    return GanResult(
        history=copy.deepcopy(run.history),
        steps_run=step,
        resumed_from_step=resumed_from,
        device=str(run.device),
        seconds=time.perf_counter() - t_start,
    )


def sample_gan(
    gan: ConditionalGAN,
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    seed: int,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    use_ema: bool = True,
) -> np.ndarray:
    """Generate one sample per label, deterministically for a seed.

    The noise for all samples is drawn at once from a CPU generator seeded with ``seed``, and the generator runs in
    eval mode (BatchNorm uses its running statistics, so each sample depends only on its own noise and label):
    the same seed gives the same samples whatever ``batch_size``, up to float rounding across devices.

    Args:
        gan: A trained :class:`ConditionalGAN`; moved to ``device``. Its training/eval mode is restored.
        labels: Class label per sample ``(n,)``, each in ``[0, gan.num_classes)``.
        seed: Seeds the noise.
        batch_size: Samples per forward pass (memory only; results do not depend on it).
        device: Where to run; ``None`` uses the device the GAN's parameters are on.
        use_ema: Sample from ``generator_ema`` (smoother, usually better) instead of ``generator``.

    Returns:
        ``(n, *gan.sample_shape)`` float32 array in [-1, 1].

    Raises:
        ValueError: If a label is out of range or ``batch_size < 1``.
    """
    y = labels.detach().cpu() if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
    if y.numel() == 0:
        return np.zeros((0, *gan.sample_shape), dtype=np.float32)
    if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"labels must be a 1-D sequence of integer class labels, got {y.dtype} of shape {y.shape}")
    y = y.long()
    if int(y.min()) < 0 or int(y.max()) >= gan.num_classes:
        raise ValueError(
            f"labels span [{int(y.min())}, {int(y.max())}] but the GAN has num_classes={gan.num_classes}; use 0..C-1"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    dev = model_device(gan) if device is None else torch.device(device)
    gan.to(dev)
    z = torch.randn(len(y), gan.z_dim, generator=torch.Generator().manual_seed(seed))  # (n, Z)
    net = gan.generator_ema if use_ema else gan.generator
    was_training = net.training
    net.eval()
    out: list[torch.Tensor] = []
    try:
        with torch.inference_mode():
            for i in range(0, len(y), batch_size):
                out.append(net(z[i : i + batch_size].to(dev), y[i : i + batch_size].to(dev)).float().cpu())
    finally:
        net.train(was_training)
    return torch.cat(out).numpy()
