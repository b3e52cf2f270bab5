"""The synth stage for EEG: a 1-D conditional WGAN-GP over the detection task's training windows.

Which windows: the detection task's clean training windows (ictal, or far from any seizure), of the recordings in
the ``train`` part of the recording split only, so no validation or test recording reaches the GAN. The GAN is
conditioned on ictal vs interictal; the real + synthetic arm adds synthetic windows of ``synth.classes``
(``minority``: ictal only), while train-on-synthetic uses both classes.

Why detection only: prediction is evaluated by leave-one-seizure-out folds, where every seizure is a test item
once; one GAN for all folds would have seen each fold's test seizure, and one GAN per fold is beyond a 2-core
budget. Prediction therefore trains on real windows only and the report says so.

Windows enter the GAN in the classifier's own normalisation (``train.normalize``), scaled per channel by the
99th percentile of the absolute value into the generator's tanh range; samples are scaled back, so synthetic
windows go straight into training next to real ones. They are stored as one ``windows.npy`` plus a manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from scipy.signal import welch

from models.gan_training import fit_gan, sample_gan
from models.registry import create_model
from models.runtime import select_device
from tasks.cache import StageCache, StageError, StageResult, run_stage, stage_key
from tasks.config import EegSynthConfig
from tasks.eeg_windows import ARRAY, MANIFEST, detection_training_windows, load_windows, read_windows
from tasks.rundir import RunContext
from tasks.synth.training import GAN_FIELDS, GanProgress, gan_config

CLASS_NAMES = ("interictal", "ictal")
#: Cap on the windows a GAN trains on (the sampler draws classes evenly, so more majority windows add little).
MAX_GAN_WINDOWS = 4096


def channel_scale(x: np.ndarray) -> np.ndarray:
    """Per-channel 99th percentile of ``|x|`` ``(C, 1)``: maps the bulk of the signal into [-1, 1]."""
    return np.maximum(np.percentile(np.abs(x), 99, axis=(0, 2)), 1e-6).astype(np.float32)[:, None]


def mean_log_psd(x: np.ndarray, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """Welch spectrum averaged over windows and channels, in log10 power: ``(freqs, log_psd)``."""
    nper = min(x.shape[-1], max(16, int(2 * sfreq)))
    freqs, psd = welch(x, fs=sfreq, nperseg=nper, axis=-1)
    return freqs, np.log10(np.maximum(psd.mean(axis=(0, 1)), 1e-12))


def spectra(
    real: np.ndarray, real_y: np.ndarray, synth: np.ndarray, synth_y: np.ndarray, sfreq: float, limit: int = 500
) -> dict[str, Any]:
    """Real vs synthetic mean log power spectra per class (at most ``limit`` windows each), for the report."""
    out: dict[str, Any] = {}
    for c, name in enumerate(CLASS_NAMES):
        r, s = real[real_y == c][:limit], synth[synth_y == c][:limit]
        if len(r) == 0 or len(s) == 0:
            continue
        freqs, pr = mean_log_psd(r, sfreq)
        _, ps = mean_log_psd(s, sfreq)
        out[name] = {"freqs": freqs.tolist(), "real": pr.tolist(), "synthetic": ps.tolist()}
    return out


def synthesize_eeg(
    windows: pd.DataFrame,
    signals_dir: Path,
    n_samples: int,
    sfreq: float,
    cfg: EegSynthConfig,
    normalize: str,
    seed: int,
    out_dir: Path,
    checkpoint_dir: Path | None,
    on_step_end: Callable[[int, int, dict], None] | None = None,
) -> dict[str, Any]:
    """Train the GAN on the detection training windows and write ``ratio`` x (ictal count) windows per class."""
    pool = detection_training_windows(windows)
    n_ictal = int(pool["ictal"].sum())
    if n_ictal == 0 or n_ictal == len(pool):
        raise StageError(
            "synth: the detection training recordings need both ictal and interictal windows for a conditional "
            f"GAN; they have {n_ictal} ictal of {len(pool)} (turn synth off, or add training recordings)"
        )
    # keep every ictal window, and a seeded sample of interictal ones up to the cap
    n_inter = min(len(pool) - n_ictal, max(MAX_GAN_WINDOWS - n_ictal, n_ictal))
    inter = pool[pool["ictal"] == 0].sample(n=n_inter, random_state=seed)
    rows = pd.concat([pool[pool["ictal"] == 1], inter]).sort_index()
    x = load_windows(rows, signals_dir, n_samples, normalize)
    y = rows["ictal"].to_numpy().astype(np.int64)
    scale = channel_scale(x)
    device = select_device(cfg.device)
    torch.manual_seed(seed)
    gan = create_model(cfg.model, n_chans=x.shape[1], n_times=n_samples, num_classes=2, **cfg.model_kwargs)
    result = fit_gan(
        gan,
        torch.from_numpy(np.clip(x / scale, -1.0, 1.0)),
        torch.from_numpy(y),
        gan_config(cfg, seed, device),
        checkpoint_dir=checkpoint_dir,
        on_step_end=on_step_end,
    )
    n_each = max(1, int(round(cfg.ratio * n_ictal)))
    labels = np.repeat(np.arange(2, dtype=np.int64), n_each)
    samples = sample_gan(gan, labels, seed=seed + 1, device=device) * scale  # (N, C, T), classifier scale
    np.save(out_dir / ARRAY, samples.astype(np.float32))
    manifest = pd.DataFrame(
        {
            "window_id": [f"synth-{i:06d}" for i in range(len(labels))],
            "label": labels,
            "class_name": [CLASS_NAMES[k] for k in labels],
            "split": "train",
            "synthetic": True,
            "index": np.arange(len(labels)),
        }
    )
    manifest.to_csv(out_dir / MANIFEST, index=False)
    (out_dir / "spectra.json").write_text(json.dumps(spectra(x, y, samples, labels, sfreq)))
    (out_dir / "gan_history.json").write_text(json.dumps(result.history, indent=2))
    np.save(out_dir / "channel_scale.npy", scale)
    return {
        "model": cfg.model,
        "device": result.device,
        "gan_train_windows": int(len(rows)),
        "gan_train_by_class": {"interictal": int((y == 0).sum()), "ictal": int((y == 1).sum())},
        "generated_by_class": {name: n_each for name in CLASS_NAMES},
        "n_generated": int(len(labels)),
        "steps": result.steps_run,
        "resumed_from_step": result.resumed_from_step,
        "gan_seconds": result.seconds,
        "task": "detection",
        "ratio": cfg.ratio,
    }


@task(name="synth", cache_policy=NO_CACHE)
def synth_eeg_task(
    *, cfg: EegSynthConfig, ctx: RunContext, ingest: StageResult, label: StageResult, normalize: str
) -> StageResult:
    """Train the EEG GAN on the detection training windows and write its windows; cached like any stage.

    Args:
        cfg: The synth section.
        ctx: The run.
        ingest: The ingest stage's record (signals, channels).
        label: The label stage's record (windows, split).
        normalize: The classifier's window normalisation (``train.normalize``), passed by the flow because it is
            part of the model-input contract: the GAN learns and writes windows in that normalisation, so they go
            straight into training next to real ones.

    Returns:
        The record; besides what the GAN made, its summary says how training uses the windows: ``classes`` (the
        classes the real + synthetic arm adds) and ``synthetic_weight`` (a synthetic window's loss weight). Those
        two do not change the GAN's output, so they are not in its key and are set on every return, cached or not.
    """
    logger = get_run_logger()
    gan_fields = cfg.model_dump(include=set(GAN_FIELDS))
    key = stage_key("synth", label.key, gan_fields, normalize, ctx.seed)

    def build(out: Path) -> dict:
        progress = GanProgress(cfg.steps, logger, "EEG GAN")
        return synthesize_eeg(
            read_windows(label.dir),
            ingest.dir / "signals",
            int(label.summary["window_samples"]),
            float(label.summary["sfreq"]),
            cfg,
            normalize,
            ctx.seed,
            out,
            Path(ctx.run_dir) / "checkpoints" / "gan",
            on_step_end=progress.on_step_end,
        )

    result = run_stage(StageCache(ctx.cache_root), "synth", key, build, ctx.refreshes("synth"))
    if not result.error:
        result.summary.update(classes=cfg.classes, synthetic_weight=cfg.synthetic_weight)
        s = result.summary
        logger.info(
            "synth: %d synthetic windows from %d GAN steps on %d training windows%s",
            s["n_generated"],
            s["steps"],
            s["gan_train_windows"],
            " (cached)" if result.cached else "",
        )
    return result
