"""A seeded simulated scalp-EEG data set, written as EDF+ files in the CHB-MIT layout.

Why a simulator: the EEG flow must run end to end without downloading 40 GB of CHB-MIT, and its tests need
recordings whose seizures and preictal periods are known exactly. This module plans the data set (patients,
recordings, where each seizure falls, with enough seizure-free lead time before it) and writes it the way CHB-MIT
is laid out: ``root/chbNN/chbNN_MM.edf`` (EDF+, seizures as ``seizure`` annotations) and a
``chbNN-summary.txt`` in CHB-MIT's text format, quirks included, so the ingest code meets what the real data
holds. The signals themselves, and the physiology behind them, come from :mod:`tasks.ingest.simulate_signals`.

Randomness comes only from explicit generators: a patient's profile and seizure placement from
``SeedSequence([seed, patient])`` and each recording from ``SeedSequence([seed, patient, recording])``, so the
same spec gives identical arrays, and adding patients does not change the existing ones.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import edfio
import numpy as np

from tasks.ingest.simulate_signals import (
    CHANNELS,
    PHYSICAL_RANGE_UV,
    VOLTS_PER_UV,
    PatientProfile,
    RecordingPlan,
    make_patient_profile,
    simulate_recording,
)

_TAIL_S = 30  # seconds of recording kept after the last seizure's end
_LEAD_MARGIN_S = 300.0  # "leading" seizure: no other seizure in preictal_s + 5 min before it


# --------------------------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class SimulationSpec:
    """What to simulate: a dataset of ``n_patients`` x ``recordings_per_patient`` EDF files.

    Attributes:
        n_patients: Patients, written as ``chb01``, ``chb02``, ...
        recordings_per_patient: One-file recordings per patient, consecutive in (clock) time.
        recording_s: Length of each recording in seconds.
        seizures_per_patient: Seizures per patient, spread over its recordings (a recording holds 0..k).
        sfreq: Sampling rate in Hz (CHB-MIT: 256).
        seizure_duration_s: Range (min, max) of seizure durations in seconds; drawn as whole seconds.
        preictal_s: Length of the preictal build-up before each onset, in seconds.
        min_lead_s: Seizure-free recording before every onset, in seconds (and between one seizure's end and
            the next onset in the same file). ``None`` means ``preictal_s + 300``: every seizure is then
            "leading" (no other seizure in the preictal period plus 5 min before it) and its whole preictal
            period lies inside its file, so the first ``preictal_s`` of a file never needs to hold a seizure.
        seed: Seed of every random choice.
        profile: ``"default"`` (above) or ``"hard"``, a data set that does not agree with the labeller by
            construction (:func:`place_seizures_hard`); ``seizures_per_patient`` then counts leading seizures.
    """

    n_patients: int = 3
    recordings_per_patient: int = 3
    recording_s: float = 3600.0
    seizures_per_patient: int = 3
    sfreq: float = 256.0
    seizure_duration_s: tuple[float, float] = (40.0, 90.0)
    preictal_s: float = 1800.0
    min_lead_s: float | None = None
    seed: int = 0
    profile: str = "default"

    def __post_init__(self) -> None:
        if self.n_patients < 1 or self.n_patients > 99:
            raise ValueError(f"n_patients={self.n_patients}: must be 1..99 (folders are named chbNN)")
        if self.recordings_per_patient < 1 or self.recordings_per_patient > 99:
            raise ValueError(f"recordings_per_patient={self.recordings_per_patient}: must be 1..99 (chbNN_MM.edf)")
        if self.seizures_per_patient < 0:
            raise ValueError(f"seizures_per_patient={self.seizures_per_patient}: must be >= 0")
        if self.sfreq < 100:
            raise ValueError(f"sfreq={self.sfreq} Hz: must be >= 100 Hz so muscle and gamma bands exist")
        lo, hi = self.seizure_duration_s
        if not 5 <= lo <= hi:
            raise ValueError(f"seizure_duration_s={self.seizure_duration_s}: need 5 <= min <= max seconds")
        if self.preictal_s < 0 or self.lead_s < 0:
            raise ValueError(f"preictal_s={self.preictal_s}, min_lead_s={self.min_lead_s}: must be >= 0")
        if self.recording_s < 10:
            raise ValueError(f"recording_s={self.recording_s}: must be >= 10 s")
        if self.profile not in ("default", "hard"):
            raise ValueError(f"profile={self.profile!r}: use 'default' or 'hard'")
        capacity = self.seizures_per_recording_capacity
        if self.profile == "default" and self.seizures_per_patient > capacity * self.recordings_per_patient:
            need = math.ceil(self.lead_s) + math.ceil(hi) + _TAIL_S
            raise ValueError(
                f"{self.seizures_per_patient} seizures per patient do not fit in {self.recordings_per_patient} "
                f"recordings of {self.recording_s:g} s: each seizure needs {need} s (min_lead_s "
                f"{self.lead_s:g} + longest seizure {hi:g} + {_TAIL_S} s tail); raise recording_s or "
                f"recordings_per_patient, or lower preictal_s / min_lead_s / seizures_per_patient"
            )

    @property
    def lead_s(self) -> float:
        """Seizure-free seconds required before each onset (``min_lead_s`` resolved)."""
        return self.preictal_s + _LEAD_MARGIN_S if self.min_lead_s is None else self.min_lead_s

    @property
    def seizures_per_recording_capacity(self) -> int:
        """How many seizures with their lead time fit in one recording."""
        per = math.ceil(self.lead_s) + math.ceil(self.seizure_duration_s[1])
        return max(0, int((math.floor(self.recording_s) - _TAIL_S) // per))


@dataclass(frozen=True)
class PatientPlan:
    """One patient's profile and the seizures of each of its recordings."""

    code: str  # "chb01"
    profile: PatientProfile
    recordings: tuple[tuple[tuple[float, float], ...], ...] = field(default_factory=tuple)
    build_ups: tuple[tuple[tuple[float, float, float], ...], ...] | None = None  # hard profile, per recording
    drift: tuple[float, float] | None = None  # hard profile: (depth, period_s); phase = the file's start


# ----------------------------------------------------------------------------------------------- random draws
def _patient_rng(spec: SimulationSpec, patient: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([spec.seed, patient]))


def _recording_rng(spec: SimulationSpec, patient: int, recording: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([spec.seed, patient, recording]))


def place_seizures(spec: SimulationSpec, rng: np.random.Generator) -> list[tuple[tuple[float, float], ...]]:
    """Spread one patient's seizures over its recordings, each with ``spec.lead_s`` seizure-free seconds before.

    Onsets and ends are whole seconds (CHB-MIT summaries give whole seconds, so the summary, the EDF+
    annotations and the signal agree exactly).

    Args:
        spec: The simulation spec (validated: the seizures fit).
        rng: Source of randomness.

    Returns:
        For each recording, its seizures as (onset_s, end_s), sorted.
    """
    capacity = spec.seizures_per_recording_capacity
    counts = [0] * spec.recordings_per_patient
    for _ in range(spec.seizures_per_patient):
        free = [i for i, c in enumerate(counts) if c < capacity]
        counts[int(rng.choice(free))] += 1
    lo, hi = math.ceil(spec.seizure_duration_s[0]), math.floor(spec.seizure_duration_s[1])
    lead = math.ceil(spec.lead_s)
    out: list[tuple[tuple[float, float], ...]] = []
    for k in counts:
        durations = [int(rng.integers(lo, max(lo, hi) + 1)) for _ in range(k)]
        slack = math.floor(spec.recording_s) - _TAIL_S - sum(durations) - k * lead
        # Split the slack at k sorted random points: extra gap before each seizure.
        cuts = np.sort(rng.integers(0, slack + 1, size=k)) if k else np.zeros(0, int)
        gaps = np.diff(np.concatenate([[0], cuts])).astype(int)
        t, seizures = 0, []
        for d, g in zip(durations, gaps, strict=True):
            onset = t + lead + int(g)
            seizures.append((float(onset), float(onset + d)))
            t = onset + d
        out.append(tuple(seizures))
    return out


def _hard_onsets(spec: SimulationSpec, rng: np.random.Generator, total_s: float) -> np.ndarray:
    """Leading onsets on the patient's (gapless) timeline: anywhere a seizure fits in a file, files' first
    seconds included, at least ``1.5 preictal_s + 300`` s apart; redrawn until they fit (at most 1,000 draws)."""
    rec_s = float(spec.recording_s)
    fit_hi = rec_s - _TAIL_S - 2 * spec.seizure_duration_s[1] - 0.6 * spec.preictal_s  # room for a follower
    if fit_hi <= 5.0:
        raise ValueError(f"recording_s={rec_s:g}: too short for the hard profile's clustered seizures")
    sep = 1.5 * spec.preictal_s + _LEAD_MARGIN_S
    n_files = spec.recordings_per_patient
    for _ in range(1000):
        onsets = np.sort(
            rng.integers(0, n_files, spec.seizures_per_patient) * rec_s
            + rng.uniform(5.0, fit_hi, spec.seizures_per_patient)
        )
        if spec.seizures_per_patient < 2 or np.min(np.diff(onsets)) >= sep:
            return np.floor(onsets)
    raise ValueError(
        f"{spec.seizures_per_patient} leading seizures {sep:g} s apart do not fit in {total_s:g} s of recording; "
        "raise recording_s or recordings_per_patient, or lower seizures_per_patient"
    )


def place_seizures_hard(spec: SimulationSpec, rng: np.random.Generator) -> tuple[list, list]:
    """The ``hard`` profile: seizures that do not agree with the labeller by construction.

    * Leading seizures anywhere in a file, also in its first minutes, so a file may start inside a build-up whose
      beginning lies in the previous file (or was never recorded).
    * Build-up lengths vary around ``preictal_s`` (x U(0.5, 1.5)), and a quarter of the seizures have none.
    * Clusters: 40 % of the leading seizures are followed ``0.2-0.6 preictal_s`` after their end (3-9 min for
      the default 15 min) by a second, non-leading seizure (no build-up of its own) in the same file.

    Returns:
        Per recording, its seizures ``(onset_s, end_s)`` and its build-ups ``(onset_s, end_s, length_s)`` (file
        seconds; a build-up of a seizure in a neighbouring file included where it reaches into this file).
    """
    rec_s = float(spec.recording_s)
    lo, hi = math.ceil(spec.seizure_duration_s[0]), math.floor(spec.seizure_duration_s[1])
    events = []  # (onset, end, build-up length) on the patient timeline
    for onset in _hard_onsets(spec, rng, rec_s * spec.recordings_per_patient):
        onset = float(onset)
        end = onset + int(rng.integers(lo, max(lo, hi) + 1))
        length = 0.0 if rng.random() < 0.25 else float(spec.preictal_s * rng.uniform(0.5, 1.5))
        events.append((float(onset), float(end), length))
        if rng.random() < 0.4:
            follow = end + float(np.floor(rng.uniform(0.2, 0.6) * spec.preictal_s))
            events.append((follow, follow + int(rng.integers(lo, max(lo, hi) + 1)), 0.0))
    seizures, build_ups = [], []
    for r in range(spec.recordings_per_patient):
        a, b = r * rec_s, (r + 1) * rec_s
        seizures.append(tuple((on - a, off - a) for on, off, _ in events if a <= on and off <= b))
        build_ups.append(tuple((on - a, off - a, ln) for on, off, ln in events if on - ln < b and off > a))
    return seizures, build_ups


def plan_patients(spec: SimulationSpec) -> list[PatientPlan]:
    """Draw every patient's profile and seizure placement (deterministic in ``spec``).

    Args:
        spec: The simulation spec.

    Returns:
        One plan per patient, ``chb01`` first.
    """
    plans = []
    for p in range(1, spec.n_patients + 1):
        rng = _patient_rng(spec, p)
        profile = make_patient_profile(rng)
        if spec.profile == "hard":
            seizures, build_ups = place_seizures_hard(spec, rng)
            drift = (float(rng.uniform(0.15, 0.35)), float(rng.uniform(2.0, 5.0) * 3600.0))
            plans.append(PatientPlan(f"chb{p:02d}", profile, tuple(seizures), tuple(build_ups), drift))
            continue
        plans.append(PatientPlan(code=f"chb{p:02d}", profile=profile, recordings=tuple(place_seizures(spec, rng))))
    return plans


# ------------------------------------------------------------------------------------------------- writing
def format_clock(seconds: int, *, pad: bool) -> str:
    """Clock time ``H:MM:SS`` from seconds since midnight of the first day; hours may exceed 23.

    CHB-MIT writes start times zero-padded and modulo 24 (``00:21:39``) but end times from the start's day,
    unpadded (``24:21:32``, ``1:21:39``); the simulator reproduces both quirks so the parser meets them.
    """
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}" if pad else f"{h}:{m:02d}:{s:02d}"


def write_edf(
    path: Path,
    data: np.ndarray,
    sfreq: float,
    seizures: Sequence[tuple[float, float]],
    start: dt.datetime,
    channels: Sequence[str] = CHANNELS,
) -> None:
    """Write bipolar EEG as EDF+ with ``seizure`` annotations and an anonymous header.

    Args:
        path: Output ``.edf`` path.
        data: (n_channels, n_samples) in volts.
        sfreq: Sampling rate in Hz.
        seizures: (onset_s, end_s) pairs, written as EDF+ annotations with text ``seizure``.
        start: Recording start (anonymised date and clock time).
        channels: Channel labels.
    """
    signals = [
        edfio.EdfSignal(
            data[i] / VOLTS_PER_UV,
            sfreq,
            label=name,
            physical_dimension="uV",
            physical_range=(-PHYSICAL_RANGE_UV, PHYSICAL_RANGE_UV),
            transducer_type="simulated",
        )
        for i, name in enumerate(channels)
    ]
    edf = edfio.Edf(
        signals,
        patient=edfio.Patient(code="X", sex="X", name="X", additional=("simulated",)),
        recording=edfio.Recording(startdate=start.date(), equipment_code="vigil-simulator"),
        starttime=start.time(),
        data_record_duration=1.0,
        annotations=[edfio.EdfAnnotation(float(a), float(b - a), "seizure") for a, b in seizures],
    )
    edf.write(path)


def format_summary(
    sfreq: float,
    channels: Sequence[str],
    files: Sequence[tuple[str, int, int, Sequence[tuple[float, float]]]],
) -> str:
    """The text of a CHB-MIT ``chbNN-summary.txt``.

    Args:
        sfreq: Sampling rate in Hz.
        channels: Channel labels, listed once under "Channels in EDF Files:".
        files: (file name, start clock seconds, end clock seconds, seizures) per file; clock seconds count from
            midnight of the first file's day.

    Returns:
        The summary text. A file with one seizure uses CHB-MIT's unnumbered ``Seizure Start Time:`` form, a file
        with several the numbered ``Seizure 1 Start Time:`` form (both occur in the real database).
    """
    lines = [f"Data Sampling Rate: {sfreq:g} Hz", "*************************", "", "Channels in EDF Files:"]
    lines.append("**********************")
    lines += [f"Channel {i}: {name}" for i, name in enumerate(channels, start=1)]
    lines.append("")
    for name, start, end, seizures in files:
        day = start // 86400 * 86400
        lines += [
            f"File Name: {name}",
            f"File Start Time: {format_clock(start % 86400, pad=True)}",
            f"File End Time: {format_clock(end - day, pad=False)}",
            f"Number of Seizures in File: {len(seizures)}",
        ]
        for i, (onset, stop) in enumerate(seizures, start=1):
            num = "" if len(seizures) == 1 else f" {i}"
            lines.append(f"Seizure{num} Start Time: {onset:g} seconds")
            lines.append(f"Seizure{num} End Time: {stop:g} seconds")
        lines.append("")
    return "\n".join(lines)


def simulate_dataset(root: Path, spec: SimulationSpec) -> list[Path]:
    """Simulate a dataset and write it in the CHB-MIT layout.

    Writes ``root/chbNN/chbNN_MM.edf`` (EDF+, seizures as ``seizure`` annotations) and
    ``root/chbNN/chbNN-summary.txt`` (the same seizures in CHB-MIT's text format). A patient's recordings follow
    each other with 5-15 s gaps, starting at a random clock time, so some cross midnight as in CHB-MIT.

    Args:
        root: Output folder (created if missing); existing files of the same names are overwritten.
        spec: What to simulate.

    Returns:
        The EDF paths, patient by patient, recording by recording.
    """
    root = Path(root)
    paths: list[Path] = []
    base_date = dt.date(2001, 1, 1)  # anonymised, inside EDF+'s 1985-2084 window
    for p, plan in enumerate(plan_patients(spec), start=1):
        folder = root / plan.code
        folder.mkdir(parents=True, exist_ok=True)
        clock_rng = np.random.default_rng(np.random.SeedSequence([spec.seed, p, 0, 1]))
        clock = int(clock_rng.integers(8 * 3600, 23 * 3600))
        records = []
        for r, seizures in enumerate(plan.recordings, start=1):
            rec_plan = RecordingPlan(spec.recording_s, seizures, plan.profile, spec.sfreq, spec.preictal_s)
            if plan.build_ups is not None and plan.drift is not None:  # hard profile
                drift = (*plan.drift, (r - 1) * spec.recording_s)
                rec_plan = replace(rec_plan, build_ups=plan.build_ups[r - 1], drift=drift)
            data, sz = simulate_recording(rec_plan, _recording_rng(spec, p, r))
            name = f"{plan.code}_{r:02d}.edf"
            start = dt.datetime.combine(base_date, dt.time()) + dt.timedelta(seconds=clock)
            write_edf(folder / name, data, spec.sfreq, sz, start)
            del data
            end = clock + int(round(spec.recording_s))
            records.append((name, clock, end, sz))
            paths.append(folder / name)
            clock = end + int(clock_rng.integers(5, 16))
        text = format_summary(spec.sfreq, CHANNELS, records)
        (folder / f"{plan.code}-summary.txt").write_text(text + "\n", encoding="ascii")
    return paths
