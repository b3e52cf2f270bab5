"""How both synth stages drive :mod:`models.gan`: the ``GanConfig`` a config section means, progress for people.

The stage-specific parts (which rows a GAN may see, how samples are stored) live in ``images.py`` / ``eeg.py``;
this is what they share, so the two GANs checkpoint, log and report progress the same way.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from models.gan_training import GanConfig
from tasks.config import EegSynthConfig, SynthConfig

#: Generator steps between checkpoints: at ~10 steps/s on 2 CPU cores, a kill loses at most ~20 s of GAN work.
CHECKPOINT_EVERY = 200
LOG_EVERY = 50

#: The synth section fields a GAN's output depends on (part of the stage's cache key).
GAN_FIELDS = ("model", "model_kwargs", "steps", "batch_size", "lr_g", "lr_d", "n_critic", "ratio", "device", "amp_cpu")


def gan_config(cfg: SynthConfig | EegSynthConfig, seed: int, device: torch.device) -> GanConfig:
    """The :class:`models.gan_training.GanConfig` of a synth section (``n_critic=None`` keeps the loss's default)."""
    kwargs: dict[str, Any] = {
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "lr_g": cfg.lr_g,
        "lr_d": cfg.lr_d,
        "device": str(device),
        "seed": seed,
        "amp_cpu": cfg.amp_cpu,
        "checkpoint_every": max(1, min(CHECKPOINT_EVERY, cfg.steps)),
        "log_every": max(1, min(LOG_EVERY, cfg.steps)),
    }
    if cfg.n_critic is not None:
        kwargs["n_critic"] = cfg.n_critic
    return GanConfig(**kwargs)


class GanProgress:
    """A Prefect progress artifact and a log line every ~10 % of the GAN's steps."""

    def __init__(self, steps: int, logger: logging.Logger, what: str = "GAN") -> None:
        self.logger = logger
        self.what = what
        self.every = max(1, math.ceil(steps / 10))
        self.artifact_id = create_progress_artifact(progress=0.0, description=f"{what}: 0/{steps} steps")

    def on_step_end(self, step: int, n_steps: int, losses: dict) -> None:
        if step % self.every and step != n_steps:
            return
        text = ", ".join(f"{k} {v:.3f}" for k, v in losses.items() if isinstance(v, float))
        self.logger.info("synth: %s step %d/%d %s", self.what, step, n_steps, text)
        update_progress_artifact(
            self.artifact_id, progress=100.0 * step / n_steps, description=f"{self.what}: {step}/{n_steps} steps"
        )
