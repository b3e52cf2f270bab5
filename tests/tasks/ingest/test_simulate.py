"""The EEG simulator: files MNE can read, labels that agree, determinism, and physiology white noise lacks."""

from __future__ import annotations

import dataclasses

import edfio
import mne
import numpy as np
import pytest
from scipy import signal

from tasks.ingest.chbmit import parse_chbmit_summary
from tasks.ingest.simulate import SimulationSpec, plan_patients, simulate_dataset
from tasks.ingest.simulate_signals import (
    CHANNELS,
    PREICTAL_BANDS,
    RecordingPlan,
    make_patient_profile,
    simulate_recording,
)

SPEC = SimulationSpec(
    n_patients=2, recordings_per_patient=2, recording_s=600.0, seizures_per_patient=2, preictal_s=120.0, seed=0
)
SFREQ = 256


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    return root, simulate_dataset(root, SPEC)


@pytest.fixture(scope="module")
def recordings():
    """Every recording of SPEC regenerated in memory: (profile, data in uV, seizures)."""
    out = []
    for p, plan in enumerate(plan_patients(SPEC), start=1):
        for r, seizures in enumerate(plan.recordings, start=1):
            rec = RecordingPlan(SPEC.recording_s, seizures, plan.profile, SPEC.sfreq, SPEC.preictal_s)
            data, sz = simulate_recording(rec, np.random.default_rng(np.random.SeedSequence([SPEC.seed, p, r])))
            out.append((plan.profile, data * 1e6, sz))
    return out


def test_layout_and_edf_read_back(dataset, recordings):
    root, paths = dataset
    assert [p.relative_to(root).as_posix() for p in paths] == [
        "chb01/chb01_01.edf", "chb01/chb01_02.edf", "chb02/chb02_01.edf", "chb02/chb02_02.edf",
    ]  # fmt: skip
    for path, (_, data_uv, seizures) in zip(paths, recordings, strict=True):
        raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
        assert raw.ch_names == list(CHANNELS)
        assert raw.info["sfreq"] == SFREQ
        assert raw.n_times == SPEC.recording_s * SFREQ
        assert set(raw.get_channel_types()) == {"eeg"}
        onsets = [(a["onset"], a["onset"] + a["duration"]) for a in raw.annotations if a["description"] == "seizure"]
        assert onsets == seizures
        # The file holds what simulate_recording returns with the same seed, to EDF's 16-bit resolution.
        assert np.max(np.abs(raw.get_data() * 1e6 - data_uv)) < 0.1


def test_edf_header_is_anonymous(dataset):
    _, paths = dataset
    edf = edfio.read_edf(paths[0])
    assert (edf.patient.code, edf.patient.sex, edf.patient.name) == ("X", "X", "X")
    assert edf.patient.additional == ("simulated",)
    assert edf.recording.equipment_code == "vigil-simulator"
    raw = mne.io.read_raw_edf(paths[0], preload=False, verbose="error")
    assert raw.info["subject_info"]["his_id"] == raw.info["subject_info"]["last_name"] == "X"


def test_summary_round_trips_and_agrees_with_annotations(dataset):
    root, paths = dataset
    for patient in ("chb01", "chb02"):
        summary = parse_chbmit_summary(root / patient / f"{patient}-summary.txt")
        assert summary.sfreq == SFREQ
        assert summary.channel_lists[0].channels == CHANNELS
        assert [f.name for f in summary.files] == [f"{patient}_01.edf", f"{patient}_02.edf"]
        assert sum(f.n_seizures for f in summary.files) == SPEC.seizures_per_patient
        assert summary.files[1].start_s > summary.files[0].end_s  # consecutive recordings with a gap
        for record in summary.files:
            assert record.duration_s == SPEC.recording_s
            raw = mne.io.read_raw_edf(root / patient / record.name, preload=False, verbose="error")
            annotated = tuple((a["onset"], a["onset"] + a["duration"]) for a in raw.annotations)
            assert annotated == record.seizures
            # EDF start times follow the summary's clock (dates differ by whole days after midnight).
            clock = raw.info["meas_date"]
            assert f"{clock:%H:%M:%S}" == record.start_clock


def test_seizures_are_leading_and_fit(recordings):
    lo, hi = SPEC.seizure_duration_s
    for _, _, seizures in recordings:
        previous_end = 0.0
        for onset, end in seizures:
            assert onset == int(onset) and end == int(end)
            assert lo <= end - onset <= hi
            assert onset - previous_end >= SPEC.lead_s == SPEC.preictal_s + 300
            assert end <= SPEC.recording_s
            previous_end = end


def test_same_seed_same_data_other_seed_other_data():
    profile = make_patient_profile(np.random.default_rng(3))
    plan = RecordingPlan(60.0, ((30.0, 45.0),), profile, 256.0, 20.0)
    a, sa = simulate_recording(plan, np.random.default_rng(7))
    b, sb = simulate_recording(plan, np.random.default_rng(7))
    c, _ = simulate_recording(plan, np.random.default_rng(8))
    assert a.shape == (18, 60 * 256) and a.dtype == np.float64
    assert np.array_equal(a, b) and sa == sb == [(30.0, 45.0)]
    assert not np.allclose(a, c)
    assert plan_patients(SPEC) == plan_patients(SPEC)
    assert plan_patients(SPEC) != plan_patients(dataclasses.replace(SPEC, seed=1))


def test_amplitudes_are_realistic(recordings):
    for _, data_uv, seizures in recordings:
        background = data_uv[:, : int((seizures[0][0] - SPEC.preictal_s) * SFREQ)]
        rms = background.std(axis=1)
        assert np.all((rms > 8) & (rms < 50)), rms
        assert np.abs(data_uv).max() < 1000


def _line_length(x: np.ndarray) -> np.ndarray:
    return np.mean(np.abs(np.diff(x, axis=-1)), axis=-1)


def test_seizures_stand_out_in_the_focus_channels(recordings):
    """Line length (Esteller et al. 2001) in the focus channels: far above background during seizures."""
    for profile, data_uv, seizures in recordings:
        focus = [CHANNELS.index(c) for c in profile.focus_channels]
        (onset, end), far = seizures[0], slice(0, int((seizures[0][0] - SPEC.preictal_s - 60) * SFREQ))
        ictal = data_uv[focus, int(onset * SFREQ) : int(end * SFREQ)]
        ratio = _line_length(ictal).mean() / _line_length(data_uv[focus, far]).mean()
        power = (ictal**2).mean() / (data_uv[focus, far] ** 2).mean()
        assert ratio > 2.5, (profile.focus, ratio)
        assert power > 10, (profile.focus, power)


def test_background_has_eeg_spectrum(recordings):
    """1/f-like fall-off and a posterior alpha peak: both absent from white noise."""
    _, data_uv, seizures = recordings[0]
    x = data_uv[:, : int((seizures[0][0] - SPEC.preictal_s) * SFREQ)]
    f, psd = signal.welch(x, fs=SFREQ, nperseg=4 * SFREQ)

    def band(lo: float, hi: float, ch: str) -> float:
        return float(psd[CHANNELS.index(ch), (f >= lo) & (f < hi)].mean())

    for ch in CHANNELS:
        assert band(1, 4, ch) > 20 * band(25, 35, ch), ch
    # Alpha (8-12 Hz) relative to its flanks is stronger in occipital than in frontal derivations.
    occipital = np.mean([band(8, 12, c) / band(13, 18, c) for c in ("P7-O1", "P8-O2", "P3-O1", "P4-O2")])
    frontal = np.mean([band(8, 12, c) / band(13, 18, c) for c in ("FP1-F3", "FP2-F4", "F3-C3", "F4-C4")])
    assert occipital > 2 and occipital > 1.5 * frontal


def test_preictal_differs_from_far_interictal(recordings):
    """More interictal spikes and more power in the patient's preictal band just before onsets."""
    far_rate, pre_rate, power_ratios = [], [], []
    for profile, data_uv, seizures in recordings:
        focus = data_uv[[CHANNELS.index(c) for c in profile.focus_channels]]
        onset = seizures[0][0]
        far = (0.0, onset - SPEC.preictal_s - 120)  # > 2 min before the preictal period starts
        pre = (onset - 60, onset)
        # Spikes: peaks of the 4-20 Hz band over the focus channels above 6 robust SDs of the far period.
        x = signal.sosfiltfilt(signal.butter(4, [4, 20], "bandpass", fs=SFREQ, output="sos"), focus, axis=1)
        peak = np.abs(x).max(axis=0)
        sd = np.median(np.abs(x[:, int(far[0] * SFREQ) : int(far[1] * SFREQ)])) / 0.6745

        def rate(a: float, b: float, peak=peak, sd=sd) -> float:
            found, _ = signal.find_peaks(peak[int(a * SFREQ) : int(b * SFREQ)], height=6 * sd, distance=SFREQ // 3)
            return len(found) / (b - a) * 60

        far_rate.append(rate(*far))
        pre_rate.append(rate(*pre))
        lo, hi = PREICTAL_BANDS[profile.preictal_band]
        xb = signal.sosfiltfilt(signal.butter(4, [lo, hi], "bandpass", fs=SFREQ, output="sos"), focus, axis=1)
        power = [np.mean(xb[:, int(a * SFREQ) : int(b * SFREQ)] ** 2) for a, b in (far, pre)]
        power_ratios.append(power[1] / power[0])
    assert np.mean(pre_rate) > 3 * np.mean(far_rate) + 2, (pre_rate, far_rate)
    assert min(power_ratios) > 1.3, power_ratios


def test_spec_that_cannot_fit_says_how_to_fix():
    with pytest.raises(ValueError, match="raise recording_s"):
        SimulationSpec(recording_s=600.0, preictal_s=1800.0)
    with pytest.raises(ValueError, match="seizure_duration_s"):
        SimulationSpec(seizure_duration_s=(90.0, 40.0))


def test_hard_profile_does_not_agree_with_the_labeller_by_construction():
    """``ingest.simulate.profile=hard``: clustered (non-leading) seizures, seizures without a build-up, build-ups of
    varying length, files that start inside a build-up, and a slow drift; the default profile is unchanged."""
    spec = SimulationSpec(n_patients=6, recordings_per_patient=4, recording_s=2400.0, preictal_s=900.0, sfreq=128.0)
    hard = plan_patients(dataclasses.replace(spec, profile="hard"))
    assert plan_patients(spec)[0].build_ups is None
    build_ups = [b for p in hard for rec in p.build_ups for b in rec]
    lengths = {round(b[2]) for b in build_ups}
    assert 0 in lengths and len(lengths - {0}) >= 3  # some without, the others of varying length
    gaps = [b[0] - a[1] for p in hard for rec in p.recordings for a, b in zip(rec[:-1], rec[1:], strict=False)]
    assert any(g < 600 for g in gaps)  # a seizure minutes after another: not leading
    # a file that starts inside a build-up: a seizure in its first minutes whose build-up began before the file
    assert any(on - ln < 0 < on for p in hard for rec in p.build_ups for on, _, ln in rec if ln > 0)
    assert all(p.drift is not None and 0 < p.drift[0] < 0.5 for p in hard)
