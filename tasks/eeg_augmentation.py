"""Seeded, label-preserving augmentations for EEG windows, and a small pipeline that composes them.

Windows are float32 numpy arrays ``(n_chans, n_times)``. The transforms are the ones that helped or at least did
not hurt in Rommel et al. 2022 ("Data augmentation for learning predictive models on EEG: a systematic
comparison", J. Neural Eng. 19 066020; braindecode's ``augmentation`` module): time shift, amplitude scaling,
Gaussian noise, channel dropout, frequency shift, time masking and sign flip. Each keeps the clinical label of a
window: a seizure stays a seizure when it starts 0.3 s later, is 10 % louder, its rhythm is 1 Hz faster, an
electrode is lost, or the polarity of the montage is reversed.

Layout (albumentations' "pure core, thin classes"):

- pure functions (:func:`time_shift`, :func:`amplitude_scale`, ...) take the window and *explicit* parameters and
  return a new array; the only one that needs randomness, :func:`gaussian_noise`, takes a ``numpy`` Generator;
- one frozen dataclass per transform (:class:`TimeShift`, ...) holds its probability and ranges, draws the
  parameters from the caller's Generator and calls the pure function;
- :class:`EEGAugment` composes them in a fixed order, is called as ``aug(x, rng)``, and round-trips through
  :meth:`EEGAugment.to_dict` / :meth:`EEGAugment.from_dict` so the run folder records exactly what was applied.

Determinism: the output depends only on ``x`` and the Generator's state, so a training sampler that seeds one
Generator per sample (``np.random.default_rng([seed, epoch, index])``) gets the same augmented window whatever the
number of DataLoader workers. Nothing here imports Prefect: the augment stage (:mod:`tasks.augment.eeg`) saves the
pipeline and its section in its record, and training rebuilds it with :func:`eeg_augment_from_record`; both stages
import it from here, never from each other.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from scipy import fft as sp_fft
from scipy import signal

from tasks.cache import StageResult

ShiftMode = Literal["roll", "pad"]


def _check_window(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"an EEG window must be 2-D (n_chans, n_times); got shape {x.shape}")
    return x.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------- pure functions
def time_shift(x: np.ndarray, shift: int, mode: ShiftMode = "roll") -> np.ndarray:
    """Move the window's content ``shift`` samples later in time (earlier if negative).

    Args:
        x: Window ``(n_chans, n_times)``.
        shift: Samples to move by.
        mode: ``"roll"`` (circular: what leaves one end re-enters at the other, so every sample is kept and the
            label stays valid, at the price of one discontinuity at the wrap point) or ``"pad"`` (the vacated end
            is zero-filled and the content shifted past the other end is lost; no discontinuity inside the
            signal, but a window that only grazes a seizure may lose it).

    Returns:
        The shifted window, float32, same shape.
    """
    x = _check_window(x)
    if mode == "roll":
        return np.roll(x, shift, axis=1)
    if mode != "pad":
        raise ValueError(f"unknown time shift mode {mode!r}; use 'roll' or 'pad'")
    out = np.zeros_like(x)
    n = x.shape[1]
    if shift >= 0:
        out[:, shift:] = x[:, : max(n - shift, 0)]
    else:
        out[:, : max(n + shift, 0)] = x[:, -shift:]
    return out


def amplitude_scale(x: np.ndarray, factor: float | np.ndarray) -> np.ndarray:
    """Multiply the window by ``factor`` (a scalar, or one factor per channel of shape ``(n_chans,)``).

    Electrode impedance and skull thickness change amplitudes between sessions and patients by tens of percent;
    scaling teaches the net to look at shape and rhythm rather than absolute microvolts.
    """
    x = _check_window(x)
    factor = np.asarray(factor, dtype=np.float32)
    if factor.ndim == 1:
        factor = factor[:, None]  # (n_chans, 1)
    return (x * factor).astype(np.float32, copy=False)


def gaussian_noise(x: np.ndarray, rel_std: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise whose std is ``rel_std`` times each channel's own std.

    Relative rather than absolute, so the signal-to-noise ratio is the same whatever the units (µV or V) and
    whatever a channel's amplitude; a flat (dead) channel stays flat.
    """
    x = _check_window(x)
    scale = rel_std * x.std(axis=1, keepdims=True)  # (n_chans, 1)
    return (x + rng.standard_normal(x.shape, dtype=np.float32) * scale).astype(np.float32, copy=False)


def channel_dropout(x: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """Zero the channels where the boolean mask ``drop`` ``(n_chans,)`` is true, as a lost or bridged electrode
    would; the net learns not to rely on any single electrode (Saeed et al. 2021, braindecode's
    ``ChannelsDropout``)."""
    x = _check_window(x)
    drop = np.asarray(drop, dtype=bool)
    if drop.shape != (x.shape[0],):
        raise ValueError(f"channel mask has shape {drop.shape}; need one flag per channel ({x.shape[0]},)")
    out = x.copy()
    out[drop] = 0.0
    return out


def frequency_shift(x: np.ndarray, delta_hz: float, sfreq: float) -> np.ndarray:
    """Shift every frequency component of the window by ``delta_hz`` (single-sideband modulation).

    The analytic signal ``x + i H(x)`` (Hilbert transform) has only positive frequencies, so multiplying it by
    ``exp(2 pi i delta t)`` moves the whole spectrum by ``delta`` Hz and its real part is the shifted signal: a
    10 Hz rhythm becomes a 12 Hz rhythm with ``delta_hz=2``, with its envelope unchanged. Seizure rhythms vary
    by a few Hz between patients and seizures, which is the variation this mimics (Rommel et al. 2022, where it
    was among the best transforms for sleep staging). The signal is zero-padded to at least twice its length
    before the FFT, so the shift does not wrap the end of the window onto its start.

    Args:
        x: Window ``(n_chans, n_times)``.
        delta_hz: Shift in Hz (negative: lower frequencies).
        sfreq: Sampling rate in Hz.

    Returns:
        The shifted window, float32, same shape.
    """
    x = _check_window(x)
    n = x.shape[1]
    n_fft = sp_fft.next_fast_len(2 * n, real=True)
    analytic = signal.hilbert(x.astype(np.float64), N=n_fft, axis=1)[:, :n]  # (n_chans, n_times) complex
    t = np.arange(n) / sfreq
    return np.real(analytic * np.exp(2j * np.pi * delta_hz * t)).astype(np.float32)


def time_mask(x: np.ndarray, start: int, length: int) -> np.ndarray:
    """Zero ``length`` samples from ``start`` on every channel, so the net cannot hinge on one moment of the
    window (SpecAugment's time masking, Park et al. 2019; braindecode's ``SmoothTimeMask`` without the smooth
    edges)."""
    x = _check_window(x)
    out = x.copy()
    out[:, max(start, 0) : max(start + length, 0)] = 0.0
    return out


def sign_flip(x: np.ndarray) -> np.ndarray:
    """Negate the window. EEG polarity depends on the reference and the order of a bipolar pair, so it carries no
    label information (Rommel et al. 2022)."""
    return np.negative(_check_window(x))


# --------------------------------------------------------------------------------------------- transforms
@dataclass(frozen=True)
class EEGTransform:
    """One augmentation applied with probability ``p``; subclasses draw their parameters in :meth:`apply`.

    The gate draws one uniform number from the caller's Generator even for ``p`` of 0 or 1, and a firing transform
    draws its parameters from the same Generator, so the output is a function of the window and the seed alone.
    A transform that does not fire returns its input unchanged (the same array).
    """

    name: ClassVar[str] = ""
    p: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"{self.name}.p={self.p} must be a probability in [0, 1]")

    def apply(self, x: np.ndarray, rng: np.random.Generator, sfreq: float) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - every subclass overrides

    def __call__(self, x: np.ndarray, rng: np.random.Generator, sfreq: float) -> np.ndarray:
        if rng.random() < self.p:
            return self.apply(x, rng, sfreq)
        return x

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "p": ..., <parameters>}``, plain JSON types."""
        return {"name": self.name, **dataclasses.asdict(self)}


def _non_negative(owner: str, **values: float) -> None:
    for key, value in values.items():
        if not value >= 0 or not math.isfinite(value):
            raise ValueError(f"{owner}.{key}={value} must be a finite number >= 0")


@dataclass(frozen=True)
class TimeShift(EEGTransform):
    """Shift by a uniform whole number of samples in ``[-max_shift_s, max_shift_s]`` seconds; see
    :func:`time_shift` for ``mode``."""

    name: ClassVar[str] = "time_shift"
    max_shift_s: float = 0.5
    mode: ShiftMode = "roll"

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_negative(self.name, max_shift_s=self.max_shift_s)
        if self.mode not in ("roll", "pad"):
            raise ValueError(f"time_shift.mode={self.mode!r}; use 'roll' or 'pad'")

    def apply(self, x: np.ndarray, rng: np.random.Generator, sfreq: float) -> np.ndarray:
        limit = int(round(self.max_shift_s * sfreq))
        return time_shift(x, int(rng.integers(-limit, limit + 1)), self.mode)


@dataclass(frozen=True)
class AmplitudeScale(EEGTransform):
    """Scale by a log-uniform factor in ``[1 / max_factor, max_factor]`` (equally likely louder or quieter),
    one factor for the window or one per channel."""

    name: ClassVar[str] = "amplitude_scale"
    max_factor: float = 1.25
    per_channel: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.max_factor >= 1.0:
            raise ValueError(f"amplitude_scale.max_factor={self.max_factor} must be >= 1 (1: no scaling)")

    def apply(self, x: np.ndarray, rng: np.random.Generator, sfreq: float) -> np.ndarray:
        size = x.shape[0] if self.per_channel else None
        log_max = math.log(self.max_factor)
        return amplitude_scale(x, np.exp(rng.uniform(-log_max, log_max, size=size)))


@dataclass(frozen=True)
class GaussianNoise(EEGTransform):
    """Add white noise with std ``rel_std`` times each channel's std; see :func:`gaussian_noise`."""

    name: ClassVar[str] = "gaussian_noise"
    rel_std: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_negative(self.name, rel_std=self.rel_std)

    def apply(self, x: np.ndarray, rng: np.random.Generator, sfreq: float) -> np.ndarray:
        return gaussian_noise(x, self.rel_std, rng)


@dataclass(frozen=True)
class ChannelDropout(EEGTransform):
    """Zero each channel independently with probability ``drop_prob``, always keeping at least one (an all-zero
    window carries no label information)."""

    name: ClassVar[str] = "channel_dropout"
    drop_prob: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.drop_prob <= 1.0:
            raise ValueError(f"channel_dropout.drop_prob={self.drop_prob} must be a probability in [0, 1]")

    def apply(self, x: np.ndarray, rng: np.random.Generator, sfreq: float) -> np.ndarray:
        drop = rng.random(x.shape[0]) < self.drop_prob
        keep = int(rng.integers(x.shape[0]))  # drawn every time so the stream does not depend on the mask
        if drop.all():
            drop[keep] = False
        return channel_dropout(x, drop)


@dataclass(frozen=True)
class FrequencyShift(EEGTransform):
    """Shift the spectrum by a uniform ``[-max_delta_hz, max_delta_hz]`` Hz; see :func:`frequency_shift`.

    The default of 2 Hz is braindecode's and Rommel et al.'s: large enough to vary a rhythm, small enough to keep
    it in its band.
    """

    name: ClassVar[str] = "frequency_shift"
    max_delta_hz: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_negative(self.name, max_delta_hz=self.max_delta_hz)

    def apply(self, x: np.ndarray, rng: np.random.Generator, sfreq: float) -> np.ndarray:
        return frequency_shift(x, float(rng.uniform(-self.max_delta_hz, self.max_delta_hz)), sfreq)


@dataclass(frozen=True)
class TimeMask(EEGTransform):
    """Zero one span of uniform length in ``[0, max_mask_s]`` seconds at a uniform position; see :func:`time_mask`."""

    name: ClassVar[str] = "time_mask"
    max_mask_s: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_negative(self.name, max_mask_s=self.max_mask_s)

    def apply(self, x: np.ndarray, rng: np.random.Generator, sfreq: float) -> np.ndarray:
        n = x.shape[1]
        length = int(rng.integers(0, min(int(round(self.max_mask_s * sfreq)), n) + 1))
        start = int(rng.integers(0, n - length + 1))
        return time_mask(x, start, length)


@dataclass(frozen=True)
class SignFlip(EEGTransform):
    """Negate the window; see :func:`sign_flip`."""

    name: ClassVar[str] = "sign_flip"

    def apply(self, x: np.ndarray, rng: np.random.Generator, sfreq: float) -> np.ndarray:
        return sign_flip(x)


TRANSFORMS: dict[str, type[EEGTransform]] = {
    t.name: t for t in (TimeShift, FrequencyShift, AmplitudeScale, SignFlip, GaussianNoise, ChannelDropout, TimeMask)
}
"""Every transform by name, in the order :func:`build_eeg_augment` applies them: the signal-changing transforms
first, noise next, and the zeroing ones last so that dropped channels and masked spans stay exactly zero."""


# --------------------------------------------------------------------------------------------- pipeline
class EEGAugment:
    """A sequence of :class:`EEGTransform` s, applied as a whole with probability ``p``.

    Args:
        transforms: Applied in the given order.
        sfreq: Sampling rate in Hz of the windows it will see (seconds and Hz parameters are converted with it).
        p: Probability of applying the pipeline at all (then each transform still rolls its own ``p``).

    Example:
        >>> aug = build_eeg_augment(256.0, time_shift=0.5, sign_flip={"p": 0.2})
        >>> out = aug(window, np.random.default_rng([seed, epoch, index]))
    """

    def __init__(self, transforms: Sequence[EEGTransform], sfreq: float, p: float = 1.0) -> None:
        if not sfreq > 0:
            raise ValueError(f"sfreq={sfreq}; give the windows' sampling rate in Hz")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p={p} must be a probability in [0, 1]")
        self.transforms = tuple(transforms)
        self.sfreq = float(sfreq)
        self.p = float(p)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return an augmented float32 copy of ``x`` ``(n_chans, n_times)``; ``x`` itself is never modified."""
        out = _check_window(x).copy()
        if rng.random() >= self.p:
            return out
        for transform in self.transforms:
            out = transform(out, rng, self.sfreq)
        return out.astype(np.float32, copy=False)

    def __repr__(self) -> str:
        names = ", ".join(f"{t.name}(p={t.p:g})" for t in self.transforms)
        return f"EEGAugment([{names}], sfreq={self.sfreq:g}, p={self.p:g})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (saved with the run as ``augment.json``); :meth:`from_dict` rebuilds it."""
        return {"sfreq": self.sfreq, "p": self.p, "transforms": [t.to_dict() for t in self.transforms]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EEGAugment:
        """Rebuild a pipeline from :meth:`to_dict`'s output, keeping its transform order."""
        transforms = []
        for item in data.get("transforms", []):
            params = dict(item)
            transforms.append(_make(str(params.pop("name")), params))
        return cls(transforms, sfreq=data["sfreq"], p=data.get("p", 1.0))


def _make(name: str, params: Mapping[str, Any]) -> EEGTransform:
    try:
        cls = TRANSFORMS[name]
    except KeyError:
        raise ValueError(f"unknown EEG augmentation {name!r}; known: {', '.join(TRANSFORMS)}") from None
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(params) - known
    if unknown:
        raise ValueError(
            f"{name}: unknown parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
        )
    return cls(**params)


def build_eeg_augment(sfreq: float, p: float = 1.0, **transforms: float | Mapping[str, Any] | None) -> EEGAugment:
    """Build a pipeline from a config-like mapping, in the fixed order of :data:`TRANSFORMS`.

    Each keyword names a transform; its value is either its probability (``time_shift=0.5``), a mapping of its
    parameters (``time_shift={"p": 0.5, "max_shift_s": 1.0, "mode": "pad"}``), or ``None`` to leave it out. The
    order of the keywords does not matter, so two configs with the same content give the same pipeline.

    Args:
        sfreq: Sampling rate in Hz of the windows.
        p: Probability of applying the pipeline at all.
        **transforms: Per transform, a probability, a parameter mapping or ``None``.

    Returns:
        The pipeline; transforms not named are left out.

    Raises:
        ValueError: On an unknown transform or parameter name (the message lists the known ones) or a value out
            of range.
    """
    unknown = set(transforms) - set(TRANSFORMS)
    if unknown:
        raise ValueError(f"unknown EEG augmentation(s) {', '.join(sorted(unknown))}; known: {', '.join(TRANSFORMS)}")
    chosen = []
    for name in TRANSFORMS:
        value = transforms.get(name)
        if value is None:
            continue
        params = dict(value) if isinstance(value, Mapping) else {"p": float(value)}
        chosen.append(_make(name, params))
    return EEGAugment(chosen, sfreq=sfreq, p=p)


def augmentation_examples(x: np.ndarray, aug: EEGAugment, seeds: Iterable[int]) -> list[np.ndarray]:
    """One augmented copy of ``x`` per seed, for the report's "what the net saw" plot.

    Each copy uses its own ``np.random.default_rng(seed)``, so the plot is reproducible and independent of how
    many copies are drawn. The original is not included; plot it beside them.
    """
    return [aug(x, np.random.default_rng(seed)) for seed in seeds]


# --------------------------------------------------------------------------------------------- from a record
def build_eeg_augment_from_config(config: Mapping[str, float], sfreq: float) -> EEGAugment:
    """The pipeline of an ``augment`` config section (as a mapping): each field is a transform's probability, 0
    leaves it out.

    Args:
        config: ``EegAugmentConfig.model_dump()``, e.g. the ``config`` the augment stage keeps in its record.
        sfreq: Sampling rate in Hz of the windows.
    """
    return build_eeg_augment(sfreq, **{k: v for k, v in config.items() if v})


def eeg_augment_from_record(augment: StageResult, sfreq: float) -> EEGAugment:
    """Rebuild the augment stage's pipeline from its record, so training applies exactly what that stage saved.

    Args:
        augment: The augment stage's record; its summary carries the section as ``config``.
        sfreq: Sampling rate in Hz of the windows (the label stage's ``sfreq``).
    """
    return build_eeg_augment_from_config(augment.summary["config"], sfreq)
