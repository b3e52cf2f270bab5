"""The signals of one simulated scalp-EEG recording: a patient's physiology, rhythms, artefacts and seizures.

:mod:`tasks.ingest.simulate` plans a data set and writes it as EDF+ files in the CHB-MIT layout; this module makes
the signals. White noise would let a pipeline "work" while learning nothing, so the generator reproduces the
structure a detector or predictor has to cope with:

* **Spatial structure.** Signals are generated at the 19 scalp electrodes of the 10-20 system that the CHB-MIT
  double-banana montage uses, then derived into its 18 bipolar channels (``FP1-F7``, ``F7-T7``, ...). Sources are
  mixed with a Gaussian kernel of inter-electrode distance, so neighbouring electrodes are correlated and the
  bipolar derivation cancels part of the common signal, as on a real montage; focal events show phase reversal
  across the two derivations that share their electrode.
* **Background.** 1/f (pink) noise (Kellet's 3-pole filter), steepened above ~20 Hz (skull and scalp low-pass
  the cortex) and lifted below ~1 Hz (delta); 11-18 uV RMS per bipolar channel (peaks 20-50 uV) before
  rhythms and artefacts, scaled analytically from the filters' and montage's gains.
* **Posterior alpha.** Two narrow-band resonators (left/right, partly shared) at a patient-specific 8.5-11 Hz,
  strongest at O1/O2 and fading forwards, with a slow waxing/waning envelope (vigilance).
* **Artefacts.** Eye blinks (slow 100-250 uV positive deflections at FP1/FP2 that fade over the frontal
  electrodes), muscle bursts (band-limited >20 Hz noise over one or both temporal chains for 0.5-4 s), electrode
  pops (a step with exponential decay on a single electrode) and a little 60 Hz mains pickup.
* **Interictal spikes.** Spike-and-slow-wave complexes in the patient's focus, at a low background rate.
* **Seizures** start focally at the patient's focus electrode with low-voltage fast activity, then a rhythmic
  discharge that slows (patient-specific ~6-10 Hz down to ~2.5-4 Hz) while its waveform turns from sinusoidal to
  spike-and-wave, its amplitude grows (to 150-400 uV at the focus) and it recruits neighbouring electrodes with a
  delay proportional to distance (spread over ~5-20 s). Alpha is suppressed during the seizure.
* **Postictal state** for a few minutes after each seizure: background suppression, delta slowing (stronger over
  the focus hemisphere), reduced alpha, all decaying exponentially.
* **Preictal state** over ``preictal_s`` before each onset: the interictal spike rate rises (power law in time
  to the onset) and a patient-specific band (theta, beta or low gamma) gains power in the focus electrodes. Both
  changes are small next to the background and artefacts, so prediction is possible but not trivial.

The model is phenomenological (filtered noise plus event templates) rather than a neural-mass model such as
Jansen & Rit (1995) or Wendling et al. (2002): it is much faster (one hour of 18 channels in 1-2 s on one CPU core),
gives direct control over each feature, and is enough for pipeline tests and demos. Signals are generated in
chunks of ``_CHUNK_S`` seconds with filter states carried across chunks, so no hour-long temporaries are needed
besides the output itself. Randomness comes only from the generator passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal

# The 19 scalp electrodes of the CHB-MIT double banana and their positions on a flattened head (x: left -1 to
# right +1, y: back -1 to front +1). Only relative distances matter.
ELECTRODES: tuple[str, ...] = (
    "FP1", "FP2", "F7", "F3", "FZ", "F4", "F8", "T7", "C3", "CZ",
    "C4", "T8", "P7", "P3", "PZ", "P4", "P8", "O1", "O2",
)  # fmt: skip
_POSITIONS = np.array(
    [
        [-0.31, 0.95], [0.31, 0.95], [-0.81, 0.59], [-0.40, 0.50], [0.0, 0.45], [0.40, 0.50], [0.81, 0.59],
        [-1.0, 0.0], [-0.50, 0.0], [0.0, 0.0], [0.50, 0.0], [1.0, 0.0], [-0.81, -0.59], [-0.40, -0.50],
        [0.0, -0.45], [0.40, -0.50], [0.81, -0.59], [-0.31, -0.95], [0.31, -0.95],
    ]
)  # fmt: skip
#: The 18 bipolar channels of the CHB-MIT double-banana montage, in the order the CHB-MIT EDF files use.
CHANNELS: tuple[str, ...] = (
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4",
    "F4-C4", "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2", "FZ-CZ", "CZ-PZ",
)  # fmt: skip
#: Electrodes a seizure focus can sit on (temporal foci are the most common in CHB-MIT's paediatric cohort).
FOCUS_ELECTRODES: tuple[str, ...] = ("T7", "T8", "F7", "F8", "P7", "P8", "F3", "F4", "C3", "C4")
#: Bands in which the preictal power change can happen (Hz).
PREICTAL_BANDS: dict[str, tuple[float, float]] = {"theta": (4.0, 7.0), "beta": (14.0, 24.0), "gamma": (30.0, 45.0)}

_N_ELEC = len(ELECTRODES)
_EIDX = {name: i for i, name in enumerate(ELECTRODES)}
_DIST = np.linalg.norm(_POSITIONS[:, None, :] - _POSITIONS[None, :, :], axis=-1)  # (E, E)
# (C, E): channel "A-B" = electrode A - electrode B.
_MONTAGE = np.zeros((len(CHANNELS), _N_ELEC))
for _c, _name in enumerate(CHANNELS):
    _a, _b = _name.split("-")
    _MONTAGE[_c, _EIDX[_a]] = 1.0
    _MONTAGE[_c, _EIDX[_b]] = -1.0

#: Volts per microvolt (the generator works in uV; recordings are returned in volts).
VOLTS_PER_UV = 1e-6
#: EDF physical range +-2 mV (in uV); the simulated amplifier saturates there.
PHYSICAL_RANGE_UV = 2000.0
_CHUNK_S = 10.0  # seconds generated at a time
# Pink-noise IIR (Paul Kellet's economy filter, ~ -10 dB/decade over three decades).
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


# ---------------------------------------------------------------------------------------------------- patients
@dataclass(frozen=True)
class PatientProfile:
    """Patient-specific physiology: what makes one simulated patient's EEG and seizures their own.

    Amplitudes are in microvolts (monopolar, at the electrode where they peak), rates per minute, frequencies in
    Hz, durations in seconds.
    """

    focus: str  # electrode at the centre of the seizure-onset zone
    background_uv: float  # target RMS of the bipolar background
    alpha_hz: float
    alpha_uv: float  # RMS of the alpha generators
    blink_rate_per_min: float
    muscle_rate_per_min: float
    pop_rate_per_min: float
    spike_uv: float
    spike_rate_per_min: float  # far from seizures
    preictal_spike_rate_per_min: float  # reached at the onset
    preictal_band: str  # key of PREICTAL_BANDS
    preictal_band_uv: float  # RMS of the added band activity at the focus, reached at the onset
    preictal_exponent: float  # shape of the ramp: (fraction of preictal period elapsed) ** exponent
    seizure_uv: float
    seizure_start_hz: float
    seizure_end_hz: float
    spread_s_per_unit: float  # recruitment delay per unit of head distance
    postictal_tau_s: float
    postictal_delta_uv: float

    @property
    def focus_channels(self) -> tuple[str, ...]:
        """The bipolar channels that contain the focus electrode (where focal activity shows first)."""
        return tuple(c for c in CHANNELS if self.focus in c.split("-"))


@dataclass(frozen=True)
class RecordingPlan:
    """Everything that fixes one simulated file except its random stream.

    Attributes:
        duration_s: Length in seconds.
        seizures: (onset_s, end_s) of each seizure in the file, in seconds from the file's start.
        patient: The patient's profile.
        sfreq: Sampling rate in Hz.
        preictal_s: Length of the preictal build-up before each onset, in seconds.
        build_ups: Instead of one ``preictal_s`` for every seizure of the file: ``(onset_s, end_s, length_s)`` per
            build-up, in seconds from the file's start, which may lie outside the file (a seizure early in the next
            file ramps up at the end of this one; a file may start inside a build-up); length 0 is no build-up.
        drift: ``(depth, period_s, phase_s)``: slow background non-stationarity, a gain
            ``exp(depth * sin(2 pi (t + phase_s) / period_s))`` over the whole signal.
    """

    duration_s: float
    seizures: tuple[tuple[float, float], ...]
    patient: PatientProfile
    sfreq: float = 256.0
    preictal_s: float = 1800.0
    build_ups: tuple[tuple[float, float, float], ...] | None = None
    drift: tuple[float, float, float] | None = None


def make_patient_profile(rng: np.random.Generator) -> PatientProfile:
    """Draw one patient's physiology.

    Args:
        rng: Source of randomness.

    Returns:
        A profile with a focus electrode, rhythms, artefact rates and seizure/preictal signatures.
    """
    start_hz = float(rng.uniform(6.5, 10.0))
    return PatientProfile(
        focus=str(rng.choice(FOCUS_ELECTRODES)),
        background_uv=float(rng.uniform(11.0, 18.0)),
        alpha_hz=float(rng.uniform(8.5, 11.0)),
        alpha_uv=float(rng.uniform(14.0, 26.0)),
        blink_rate_per_min=float(rng.uniform(4.0, 12.0)),
        muscle_rate_per_min=float(rng.uniform(0.5, 2.0)),
        pop_rate_per_min=float(rng.uniform(0.05, 0.3)),
        spike_uv=float(rng.uniform(90.0, 160.0)),
        spike_rate_per_min=float(rng.uniform(0.3, 1.5)),
        preictal_spike_rate_per_min=float(rng.uniform(10.0, 20.0)),
        preictal_band=str(rng.choice(list(PREICTAL_BANDS))),
        preictal_band_uv=float(rng.uniform(2.5, 4.5)),
        preictal_exponent=float(rng.uniform(1.0, 2.0)),
        seizure_uv=float(rng.uniform(150.0, 400.0)),
        seizure_start_hz=start_hz,
        seizure_end_hz=float(rng.uniform(2.5, 4.0)),
        spread_s_per_unit=float(rng.uniform(4.0, 10.0)),
        postictal_tau_s=float(rng.uniform(40.0, 90.0)),
        postictal_delta_uv=float(rng.uniform(20.0, 40.0)),
    )


# ------------------------------------------------------------------------------------------ signal building
def _unit_gain(sos: np.ndarray, n: int = 16384) -> float:
    """1 / RMS of the filter's output for unit white noise (from the impulse response energy)."""
    impulse = np.zeros(n)
    impulse[0] = 1.0
    return float(1.0 / np.sqrt(np.sum(signal.sosfilt(sos, impulse) ** 2)))


def _resonator(f0: float, bandwidth: float, sfreq: float) -> np.ndarray:
    """Two-pole resonator (a narrow-band oscillation around ``f0`` Hz, ``bandwidth`` Hz wide) as SOS."""
    r = math.exp(-math.pi * bandwidth / sfreq)
    return signal.tf2sos([1.0, 0.0, -1.0], [1.0, -2 * r * math.cos(2 * math.pi * f0 / sfreq), r * r])


class _Noise:
    """Unit-RMS filtered Gaussian noise from ``n`` parallel sources, continuous across chunks.

    The filter state is carried from chunk to chunk, so chunks join without seams. A source that is not needed
    for a while is not generated (saving time); when it is needed again it is first run for ``warmup``
    samples, so it restarts in its stationary state rather than from rest.
    """

    def __init__(self, sos: np.ndarray, n: int, rng: np.random.Generator, warmup: int) -> None:
        self.sos = sos.copy()
        self.sos[0, :3] *= _unit_gain(sos)
        self.n, self.rng, self.warmup = n, rng, warmup
        self.zi: np.ndarray | None = None

    def __call__(self, n_samples: int) -> np.ndarray:
        if self.zi is None:
            self.zi = np.zeros((self.sos.shape[0], self.n, 2))
            self(self.warmup)
        y, self.zi = signal.sosfilt(self.sos, self.rng.standard_normal((self.n, n_samples)), axis=1, zi=self.zi)
        return y

    def pause(self) -> None:
        """Forget the state: the next call restarts (warmed up) instead of continuing."""
        self.zi = None


def _spatial_kernel(sigma: float) -> np.ndarray:
    """(E, E) mixing matrix: each electrode sees nearby sources, weighted by a Gaussian of distance."""
    k = np.exp(-0.5 * (_DIST / sigma) ** 2)
    return k / np.sqrt(np.sum(k**2, axis=1, keepdims=True))  # unit gain per electrode for independent sources


def _bipolar_rms(electrode_cov: np.ndarray) -> float:
    """Mean RMS over the bipolar channels for electrode signals of covariance ``electrode_cov``."""
    return float(np.sqrt(np.mean(np.diag(_MONTAGE @ electrode_cov @ _MONTAGE.T))))


def _poisson_times(rate_per_min: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    n = rng.poisson(rate_per_min * duration_s / 60.0)
    return np.sort(rng.uniform(0.0, duration_s, size=n))


def _ramp(t: np.ndarray, seizures: Sequence[tuple[float, float]], preictal_s: float, exponent: float) -> np.ndarray:
    """Preictal build-up in [0, 1]: ((t - (onset - preictal_s)) / preictal_s) ** exponent before each onset, 1
    during the seizure, 0 elsewhere; the maximum over seizures."""
    out = np.zeros_like(t)
    for onset, end in seizures:
        if preictal_s > 0:
            frac = np.clip((t - (onset - preictal_s)) / preictal_s, 0.0, 1.0) ** exponent
            frac[t >= end] = 0.0
        else:
            frac = ((t >= onset) & (t < end)).astype(float)
        np.maximum(out, frac, out=out)
    return out


def _plan_ramp(t: np.ndarray, plan: RecordingPlan, seizures: Sequence[tuple[float, float]]) -> np.ndarray:
    """The build-up of :func:`_ramp`, or with ``plan.build_ups`` each seizure's own length (hard profile)."""
    exponent = plan.patient.preictal_exponent
    if plan.build_ups is None:
        return _ramp(t, seizures, plan.preictal_s, exponent)
    out = np.zeros_like(t)
    for onset, end, length in plan.build_ups:
        np.maximum(out, _ramp(t, [(onset, end)], length, exponent), out=out)
    return out


def _postictal(t: np.ndarray, seizures: Sequence[tuple[float, float]], tau: float) -> np.ndarray:
    """Postictal state in [0, 1]: exp(-(t - end) / tau) after each seizure (cut after 5 tau), 0 elsewhere."""
    out = np.zeros_like(t)
    for _, end in seizures:
        dt_ = t - end
        inside = (dt_ >= 0) & (dt_ < 5 * tau)
        out[inside] = np.maximum(out[inside], np.exp(-dt_[inside] / tau))
    return out


def _ictal(t: np.ndarray, seizures: Sequence[tuple[float, float]]) -> np.ndarray:
    out = np.zeros_like(t)
    for onset, end in seizures:
        out[(t >= onset) & (t < end)] = 1.0
    return out


def _spike_template(sfreq: float) -> np.ndarray:
    """Spike-and-slow-wave complex (surface negative, peak -1): ~70 ms spike, ~250 ms after-going slow wave."""
    t = np.arange(int(-0.1 * sfreq), int(0.5 * sfreq)) / sfreq
    w = np.exp(-0.5 * (t / 0.014) ** 2) - 0.3 * np.exp(-0.5 * ((t - 0.05) / 0.02) ** 2)
    w += 0.45 * np.exp(-0.5 * ((t - 0.21) / 0.07) ** 2)
    return -w * np.hanning(len(t)) ** 0.25


def _blink_template(sfreq: float, rng: np.random.Generator) -> np.ndarray:
    """Asymmetric positive bump (fast rise ~100 ms, slower fall ~200 ms), peak 1."""
    rise, fall = rng.uniform(0.05, 0.08), rng.uniform(0.09, 0.15)
    t = np.arange(int((3 * rise + 4 * fall) * sfreq)) / sfreq - 3 * rise
    return np.where(t < 0, np.exp(-0.5 * (t / rise) ** 2), np.exp(-0.5 * (t / fall) ** 2))


def _seizure_waveform(duration_s: float, profile: PatientProfile, sfreq: float, rng: np.random.Generator) -> np.ndarray:
    """(E, n) electrode signals of one seizure, in microvolts.

    A phase-continuous rhythm whose frequency slows exponentially from ``seizure_start_hz`` to
    ``seizure_end_hz`` and whose waveform morphs from a sinusoid to spike-and-wave; amplitude grows over ~10 s
    and fades in the last ~15%; each electrode is recruited after a delay proportional to its distance from the
    focus, with a small phase lag, and a gain that falls with distance. The first seconds add low-voltage fast
    activity (~20-30 Hz) at the focus, the classic focal-onset pattern.
    """
    n = int(round(duration_s * sfreq))
    t = np.arange(n) / sfreq
    f0 = profile.seizure_start_hz * rng.uniform(0.9, 1.1)
    f1 = profile.seizure_end_hz * rng.uniform(0.9, 1.1)
    tau_f = duration_s * rng.uniform(0.25, 0.4)
    jitter = signal.lfilter([0.02], [1, -0.98], rng.standard_normal(n))  # slow frequency wander
    freq = np.maximum(f1 + (f0 - f1) * np.exp(-t / tau_f) + jitter, 1.0)
    phase = 2 * np.pi * np.cumsum(freq) / sfreq
    morph = np.clip((f0 - freq) / (f0 - f1), 0.0, 1.0) ** 1.5  # 0: sinusoid, 1: spike-and-wave
    envelope = 0.12 + 0.88 * (1 - np.exp(-t / rng.uniform(4.0, 10.0)))
    fade = np.clip((duration_s - t) / (0.15 * duration_s), 0.0, 1.0) ** 0.5
    envelope *= fade * profile.seizure_uv * rng.uniform(0.8, 1.2)

    dist = _DIST[_EIDX[profile.focus]]
    delay = dist * profile.spread_s_per_unit * rng.uniform(0.7, 1.3, size=_N_ELEC)  # recruitment (s)
    gain = 0.15 + 0.85 * np.exp(-dist / rng.uniform(0.5, 0.8))
    lag = dist * rng.uniform(0.3, 0.8)  # radians of phase lag with distance

    out = np.empty((_N_ELEC, n))
    for e in range(_N_ELEC):
        psi = np.mod(phase - lag[e], 2 * np.pi)
        spike_wave = np.exp(-0.5 * ((psi - 0.6) / 0.22) ** 2) - 0.5 * np.exp(-0.5 * ((psi - 3.6) / 0.9) ** 2)
        shape = (1 - morph) * np.sin(psi) + morph * 1.3 * spike_wave
        recruited = 1.0 / (1.0 + np.exp(-(t - delay[e]) / 1.5))
        out[e] = -gain[e] * envelope * recruited * shape
    # Low-voltage fast activity at onset, at the focus only.
    fast_hz = rng.uniform(20.0, 30.0)
    lvfa = np.sin(2 * np.pi * fast_hz * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t / 2.0) * 0.15 * profile.seizure_uv
    out += np.outer(np.exp(-dist / 0.3), lvfa)
    return out


def _add_rank1(out: np.ndarray, start: int, spatial_e: np.ndarray, waveform: np.ndarray) -> None:
    """Add an electrode-space event (E,) x (n,) into the bipolar output (C, N) at ``start``, cropped."""
    lo, hi = max(start, 0), min(start + len(waveform), out.shape[1])
    if hi <= lo:
        return
    out[:, lo:hi] += np.outer(_MONTAGE @ spatial_e, waveform[lo - start : hi - start])


def _fill_continuous(
    out: np.ndarray, plan: RecordingPlan, seizures: list[tuple[float, float]], rng: np.random.Generator
) -> None:
    """Write the continuous sources into ``out`` (C, N) chunk by chunk: background, alpha with its vigilance
    envelope, preictal band activity, postictal delta and mains pickup."""
    p, sfreq = plan.patient, plan.sfreq
    n_total = out.shape[1]
    warm = int(10 * sfreq)
    # Background: one filter per electrode source, pink noise steepened above ~20 Hz (scalp EEG falls faster
    # than 1/f there) with a low shelf that lifts delta below ~1 Hz; mixed spatially and scaled to the target
    # bipolar RMS.
    kernel = _spatial_kernel(0.35)
    bg_scale = p.background_uv / _bipolar_rms(kernel @ kernel.T)
    shelf = signal.tf2sos([1.0, -math.exp(-2 * math.pi * 1.0 / sfreq)], [1.0, -math.exp(-2 * math.pi * 0.4 / sfreq)])
    bg_sos = np.vstack([signal.tf2sos(_PINK_B, _PINK_A), signal.butter(1, 20.0, fs=sfreq, output="sos"), shelf])
    background = _Noise(bg_sos, _N_ELEC, rng, warm)
    # Alpha: a shared generator plus one per hemisphere, strongest at O1/O2.
    alpha = _Noise(_resonator(p.alpha_hz, 1.2, sfreq), 3, rng, warm)
    w_left = np.exp(-_DIST[_EIDX["O1"]] / 0.45)
    w_right = np.exp(-_DIST[_EIDX["O2"]] / 0.45)
    alpha_mix = np.stack([0.6 * (w_left + w_right) / 2, 0.8 * w_left, 0.8 * w_right], axis=1)  # (E, 3)
    # Preictal band activity: independent sources at the focus electrode and its neighbours.
    w_focus = np.exp(-_DIST[_EIDX[p.focus]] / 0.35)
    near = np.flatnonzero(w_focus > 0.05)
    band_sos = signal.butter(2, PREICTAL_BANDS[p.preictal_band], btype="bandpass", fs=sfreq, output="sos")
    band = _Noise(band_sos, len(near), rng, warm)
    # Postictal delta: 0.8-3 Hz noise mixed spatially, stronger over the focus hemisphere.
    delta = _Noise(signal.butter(2, [0.8, 3.0], btype="bandpass", fs=sfreq, output="sos"), _N_ELEC, rng, warm)
    same_side = np.sign(_POSITIONS[:, 0]) == np.sign(_POSITIONS[_EIDX[p.focus], 0])
    w_delta = np.where(same_side, 1.0, 0.5)
    # Slow vigilance envelope of alpha: AR(1) knots every 2 s, log-normal.
    n_knots = int(plan.duration_s // 2) + 2
    z = signal.lfilter([math.sqrt(1 - 0.95**2)], [1, -0.95], rng.standard_normal(n_knots))
    knots_t = np.arange(n_knots) * 2.0
    vigilance = np.exp(0.35 * z - 0.06)
    mains_uv = rng.uniform(0.1, 2.0)
    mains_phase = rng.uniform(0, 2 * np.pi)

    # Project every source straight onto the bipolar channels: (C, sources) matrices, no electrode temporaries.
    to_bg = _MONTAGE @ kernel * bg_scale
    to_alpha = _MONTAGE @ alpha_mix
    to_band = _MONTAGE[:, near] * w_focus[near] * p.preictal_band_uv
    to_delta = _MONTAGE @ (w_delta[:, None] * kernel) * p.postictal_delta_uv
    chunk = int(round(_CHUNK_S * sfreq))
    for s0 in range(0, n_total, chunk):
        n = min(chunk, n_total - s0)
        t = (s0 + np.arange(n)) / sfreq
        ictal = _ictal(t, seizures)
        post = _postictal(t, seizures, p.postictal_tau_s)
        view = out[:, s0 : s0 + n]  # (C, n)
        np.matmul(to_bg, background(n), out=view)
        view *= 1 - 0.5 * post**4  # brief postictal suppression (decays with tau / 4)
        alpha_gain = p.alpha_uv * np.interp(t, knots_t, vigilance) * (1 - ictal) * (1 - 0.85 * post)
        view += to_alpha @ (alpha(n) * alpha_gain)
        ramp = _plan_ramp(t, plan, seizures)
        if ramp.any():
            view += to_band @ (band(n) * ramp)
        else:
            band.pause()
        if post.any():
            view += to_delta @ (delta(n) * post)
        else:
            delta.pause()
        view += mains_uv * np.sin(2 * np.pi * 60.0 * t + mains_phase)


def _add_blinks(out: np.ndarray, p: PatientProfile, duration_s: float, sfreq: float, rng: np.random.Generator) -> None:
    """Eye blinks: FP1/FP2, fading over the frontal electrodes."""
    w_blink = np.exp(-np.minimum(_DIST[_EIDX["FP1"]], _DIST[_EIDX["FP2"]]) / 0.25)
    for t0 in _poisson_times(p.blink_rate_per_min, duration_s, rng):
        tmpl = _blink_template(sfreq, rng) * rng.uniform(80.0, 250.0)
        _add_rank1(out, int(t0 * sfreq), w_blink * rng.uniform(0.85, 1.15, size=_N_ELEC), tmpl)


def _add_muscle(out: np.ndarray, p: PatientProfile, duration_s: float, sfreq: float, rng: np.random.Generator) -> None:
    """Muscle: high-pass noise over one or both temporal chains."""
    n_total = out.shape[1]
    sos_muscle = signal.butter(4, 20.0, btype="highpass", fs=sfreq, output="sos")
    muscle_rms = math.sqrt(1 - 20.0 / (sfreq / 2))  # RMS of unit white noise above 20 Hz
    chains = {"left": ["F7", "T7", "P7"], "right": ["F8", "T8", "P8"]}
    for t0 in _poisson_times(p.muscle_rate_per_min, duration_s, rng):
        side = rng.choice(["left", "right", "both"])
        elecs = chains["left"] + chains["right"] if side == "both" else chains[str(side)]
        idx = np.array([_EIDX[e] for e in elecs])
        n = int(rng.uniform(0.5, 4.0) * sfreq)
        noise = signal.sosfilt(sos_muscle, rng.standard_normal((len(idx), n + 64)), axis=1)[:, 64:]
        env = np.hanning(n) ** 0.3 * rng.uniform(10.0, 40.0) / muscle_rms
        start = int(t0 * sfreq)
        lo, hi = start, min(start + n, n_total)
        weights = rng.uniform(0.5, 1.0, size=len(idx))[:, None]
        out[:, lo:hi] += (_MONTAGE[:, idx] @ (weights * noise * env))[:, : hi - lo]


def _add_pops(out: np.ndarray, p: PatientProfile, duration_s: float, sfreq: float, rng: np.random.Generator) -> None:
    """Electrode pops: step + exponential decay on one electrode."""
    for t0 in _poisson_times(p.pop_rate_per_min, duration_s, rng):
        tau = rng.uniform(0.1, 0.5)
        tmpl = np.exp(-np.arange(int(5 * tau * sfreq)) / (tau * sfreq)) * rng.uniform(60, 200) * rng.choice([-1, 1])
        spatial = np.zeros(_N_ELEC)
        spatial[rng.integers(_N_ELEC)] = 1.0
        _add_rank1(out, int(t0 * sfreq), spatial, tmpl)


def _add_spikes(
    out: np.ndarray, plan: RecordingPlan, seizures: list[tuple[float, float]], rng: np.random.Generator
) -> None:
    """Interictal spikes at the focus: inhomogeneous Poisson process (thinning), rate rising before onsets."""
    p, sfreq = plan.patient, plan.sfreq
    rate_max = max(p.spike_rate_per_min, p.preictal_spike_rate_per_min)
    candidates = _poisson_times(rate_max, plan.duration_s, rng)
    ramp_c = _plan_ramp(candidates, plan, seizures)
    rate = p.spike_rate_per_min + (p.preictal_spike_rate_per_min - p.spike_rate_per_min) * ramp_c
    keep = rng.uniform(0, rate_max, size=len(candidates)) < rate
    keep &= _ictal(candidates, seizures) == 0
    spike = _spike_template(sfreq)
    offset = int(0.1 * sfreq)
    for t0 in candidates[keep]:
        spatial = np.exp(-_DIST[_EIDX[p.focus]] / rng.uniform(0.3, 0.45))
        _add_rank1(out, int(t0 * sfreq) - offset, spatial, spike * p.spike_uv * rng.uniform(0.7, 1.3))


def _add_seizures(
    out: np.ndarray, p: PatientProfile, seizures: list[tuple[float, float]], sfreq: float, rng: np.random.Generator
) -> None:
    """Each seizure's electrode-space discharge (:func:`_seizure_waveform`), projected onto the montage."""
    n_total = out.shape[1]
    for onset, end in seizures:
        wave = _seizure_waveform(end - onset, p, sfreq, rng)  # (E, n)
        s0 = int(round(onset * sfreq))
        s1 = min(s0 + wave.shape[1], n_total)
        out[:, s0:s1] += _MONTAGE @ wave[:, : s1 - s0]


def simulate_recording(plan: RecordingPlan, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Simulate one bipolar 18-channel recording.

    Args:
        plan: Length, seizures (onset_s, end_s), patient profile, sampling rate and preictal length.
        rng: Source of all randomness for this recording.

    Returns:
        ``(data, seizures)``: data of shape (18, n_samples) in volts, channels in ``CHANNELS`` order, clipped to
        the +-2 mV EDF range (an amplifier saturates too); seizures as (onset_s, end_s) in seconds.
    """
    p, sfreq = plan.patient, plan.sfreq
    n_total = int(round(plan.duration_s * sfreq))
    seizures = sorted(plan.seizures)
    for onset, end in seizures:
        if not 0 <= onset < end <= plan.duration_s:
            raise ValueError(f"seizure ({onset:g}, {end:g}) s does not lie inside the {plan.duration_s:g}-s recording")
    out = np.empty((len(CHANNELS), n_total))
    # The random stream is drawn in this order; keep it so a seed gives the same recording.
    _fill_continuous(out, plan, seizures, rng)
    _add_blinks(out, p, plan.duration_s, sfreq, rng)
    _add_muscle(out, p, plan.duration_s, sfreq, rng)
    _add_pops(out, p, plan.duration_s, sfreq, rng)
    _add_spikes(out, plan, seizures, rng)
    _add_seizures(out, p, seizures, sfreq, rng)
    if plan.drift is not None:  # slow non-stationarity of the whole signal (no random draw: streams unchanged)
        depth, period_s, phase_s = plan.drift
        t = np.arange(n_total) / sfreq
        out *= np.exp(depth * np.sin(2 * np.pi * (t + phase_s) / period_s))

    np.clip(out, -PHYSICAL_RANGE_UV, PHYSICAL_RANGE_UV, out=out)
    out *= VOLTS_PER_UV
    return out, [(float(a), float(b)) for a, b in seizures]
