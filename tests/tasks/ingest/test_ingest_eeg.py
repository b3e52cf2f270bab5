"""EEG ingestion: discovery and validation on real EDF files (the CHB-MIT fixture, simulated and hand-made ones),
the channel policy, de-identification, and chunked preprocessing."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import shutil
from pathlib import Path

import edfio
import mne
import numpy as np
import pytest
from scipy import signal

from tasks.edf import EdfHeaderError
from tasks.ingest import inspection, preprocess
from tasks.ingest.discovery import Discovery, discover_recordings
from tasks.ingest.eeg import RECORDINGS_COLUMNS, SEIZURES_COLUMNS, seizure_rows, write_tables
from tasks.ingest.inspection import RecordingInfo
from tasks.ingest.preprocess import filter_resample_stream, line_frequency, preprocess_recording, signal_path
from tasks.ingest.simulate import SimulationSpec, plan_patients, simulate_dataset
from tasks.ingest.simulate_signals import CHANNELS

FIXTURE = Path(__file__).parents[2] / "fixtures" / "chbmit"
CHB05_SEIZURE_FILES = ("chb05_06.edf", "chb05_13.edf", "chb05_16.edf", "chb05_17.edf", "chb05_22.edf")
SIM_SPEC = SimulationSpec(
    n_patients=2,
    recordings_per_patient=2,
    recording_s=300.0,
    seizures_per_patient=2,
    seizure_duration_s=(10.0, 20.0),
    preictal_s=60.0,
    min_lead_s=90.0,
    seed=2,
)


def write_edf(
    path: Path,
    signals: dict[str, np.ndarray],
    sfreq: float = 256.0,
    annotations: tuple[tuple[float, float, str], ...] = (),
    patient: edfio.Patient | None = None,
    recording: edfio.Recording | None = None,
    starttime: dt.time | None = None,
) -> Path:
    """An EDF(+) file with signals given in microvolts (+-3 mV range)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sigs = [
        edfio.EdfSignal(np.asarray(x, dtype=float), sfreq, label=name, physical_dimension="uV",
                        physical_range=(-3000.0, 3000.0))
        for name, x in signals.items()
    ]  # fmt: skip
    edf = edfio.Edf(
        sigs,
        patient=patient,
        recording=recording,
        starttime=starttime,
        data_record_duration=1.0,
        annotations=[edfio.EdfAnnotation(on, dur, text) for on, dur, text in annotations] or None,
    )
    edf.write(path)
    return path


def noise(rng: np.random.Generator, names: str | list[str], seconds: float = 10.0, sfreq: float = 256.0) -> dict:
    return {n: rng.normal(0.0, 20.0, int(seconds * sfreq)) for n in names}


def patch_header(path: Path, offset: int, width: int, text: str) -> None:
    """Overwrite one ASCII header field in place."""
    data = bytearray(path.read_bytes())
    data[offset : offset + width] = text.ljust(width).encode("ascii")
    path.write_bytes(bytes(data))


def spr_offset(n_signals: int, signal_index: int) -> int:
    """Byte offset of 'samples per data record' of a signal: 256 + ns x (16+80+8+8+8+8+8+80) + 8 i."""
    return 256 + n_signals * 216 + 8 * signal_index


def reasons(discovery: Discovery) -> str:
    return "\n".join(q["reason"] for q in discovery.quarantine)


# ----------------------------------------------------------------------------------------------- CHB-MIT fixture
@pytest.fixture(scope="module")
def chb05() -> Discovery:
    return discover_recordings(FIXTURE, min_duration_s=1.0)


def test_chbmit_fixture_ingests_with_stub_seizures_left_out(chb05):
    assert len(chb05.recordings) == 39 and chb05.quarantine == []
    assert [r.recording_id for r in chb05.recordings] == [f"chb05_{i:02d}" for i in range(1, 40)]
    assert {r.patient for r in chb05.recordings} == {"chb05"}
    assert all(r.seizures == [] and r.duration_s == 2.0 and r.sfreq == 256.0 for r in chb05.recordings)
    assert all(r.source == "chbmit-summary" for r in chb05.recordings)
    for name in CHB05_SEIZURE_FILES:
        (note,) = [n for n in chb05.notes if n.startswith(f"chb05/{name}:")]
        assert "starts after the end of the data (the file holds 2 s; the summary gives the file 3600 s)" in note
        assert note.endswith(": left out, none of it is in the file")
    # Every seizure left out is listed beside the quarantined files (quarantine.csv, the report), not only logged.
    past = {Path(row["path"]).name: row["reason"] for row in chb05.seizures_past_data}
    assert sorted(past) == sorted(CHB05_SEIZURE_FILES) and all(r.startswith("chb05/") for r in past.values())
    # Clock times: chb05_08 starts at 00:21:39 the day after chb05_01's 17:20:05.
    by_id = {r.recording_id: r for r in chb05.recordings}
    assert by_id["chb05_01"].start_offset_s == 0.0 and by_id["chb05_08"].start_offset_s == 7 * 3600 + 94


def test_chbmit_fixture_repeated_t8p8_is_kept_once(chb05):
    assert len(chb05.channels) == 22 and chb05.channels.count("T8-P8") == 1
    assert chb05.channels[:18] == list(CHANNELS)
    assert any("'T8-P8' appears as signals 15 and 23 in 39 file(s)" in n for n in chb05.notes)
    assert all(r.channels.count("T8-P8") == 1 for r in chb05.recordings)


def test_chbmit_fixture_preprocess_uses_the_first_t8p8(chb05, tmp_path):
    rec = chb05.recordings[0]
    meta = preprocess_recording(rec.path, chb05.channels, tmp_path / "a.npy", notch=None)
    out = np.load(meta.out_path)
    assert out.shape == (22, 512) and out.dtype == np.float32
    raw = mne.io.read_raw_edf(rec.path, verbose="error")
    first, repeat = raw.get_data(picks=["T8-P8-0", "T8-P8-1"])
    row = out[chb05.channels.index("T8-P8")]
    # Independent white noise, so compare with each signal put through a similar causal band-pass (white noise
    # decorrelates within one sample of filter delay): the output follows the first signal, not the repeat.
    sos = signal.butter(4, [0.5, 70.0], btype="bandpass", fs=256.0, output="sos")
    first, repeat = (signal.sosfilt(sos, x - x[:256].mean()) for x in (first, repeat))
    assert np.corrcoef(row, first)[0, 1] > 0.9 and abs(np.corrcoef(row, repeat)[0, 1]) < 0.3


def test_chbmit_fixture_too_short_for_the_default_minimum():
    found = discover_recordings(FIXTURE)
    assert found.recordings == [] and len(found.quarantine) == 39
    assert "chb05/chb05_01.edf: 2 s of data, shorter than the minimum of 4 s" in found.quarantine[0]["reason"]


def test_chbmit_fixture_tables(chb05, tmp_path):
    paths = write_tables(chb05, tmp_path)
    with paths["recordings"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == RECORDINGS_COLUMNS and len(rows) == 39
    assert rows[7]["recording_id"] == "chb05_08" and float(rows[7]["start_offset_s"]) == 25294.0
    assert paths["seizures"].read_text().strip() == ",".join(SEIZURES_COLUMNS)
    assert json.loads(paths["channels"].read_text())["channels"] == chb05.channels


# ------------------------------------------------------------------------------------------- simulated dataset
@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> tuple[Path, Discovery]:
    root = tmp_path_factory.mktemp("sim")
    simulate_dataset(root, SIM_SPEC)
    return root, discover_recordings(root)


def test_simulated_dataset_ingests_with_its_seizures(sim):
    _, found = sim
    assert found.quarantine == [] and found.channels == list(CHANNELS)
    assert [r.recording_id for r in found.recordings] == ["chb01_01", "chb01_02", "chb02_01", "chb02_02"]
    plans = plan_patients(SIM_SPEC)
    expected = [list(s) for plan in plans for s in plan.recordings]
    assert [r.seizures for r in found.recordings] == expected
    assert sum(len(s) for s in expected) == 4
    for rec in found.recordings:
        assert rec.duration_s == 300.0 and rec.channels == list(CHANNELS) and rec.source == "chbmit-summary"
    # Consecutive files with a 5-15 s gap.
    assert found.recordings[0].start_offset_s == 0.0 and 305 <= found.recordings[1].start_offset_s <= 315


def test_simulated_tables_number_seizures_per_patient(sim, tmp_path):
    _, found = sim
    write_tables(found, tmp_path)
    with (tmp_path / "seizures.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == SEIZURES_COLUMNS
    assert [r["seizure_id"] for r in rows] == ["chb01_s1", "chb01_s2", "chb02_s1", "chb02_s2"]
    by_rec = {r.recording_id: r.seizures for r in found.recordings}
    for row in rows:
        assert (float(row["onset_s"]), float(row["offset_s"])) in by_rec[row["recording_id"]]


def test_preprocess_shapes_at_256_and_128_hz(sim, tmp_path):
    _, found = sim
    rec = found.recordings[1]
    meta = preprocess_recording(rec.path, found.channels, signal_path(tmp_path, rec.recording_id))
    out = np.load(meta.out_path, mmap_mode="r")
    assert meta.out_path == tmp_path / "signals" / "chb01_02.npy"
    assert out.shape == (18, 300 * 256) and out.dtype == np.float32 and np.isfinite(out).all()
    assert meta.sfreq_out == 256.0 and meta.h_freq == 70.0 and meta.notch_hz == 60.0  # the simulator's mains
    assert 1e-6 < float(np.std(out)) < 1e-3  # volts
    half = preprocess_recording(rec.path, found.channels, tmp_path / "half.npy", sfreq_out=128.0, chunk_s=7.0)
    assert np.load(half.out_path, mmap_mode="r").shape == (18, 300 * 128)
    assert half.h_freq == pytest.approx(57.6) and "256 -> 128 Hz" in half.filter
    assert not list(tmp_path.rglob("*.partial"))


# ---------------------------------------------------------------------------------------------- preprocessing
def _amplitude(x: np.ndarray, f: float, sfreq: float) -> float:
    """Amplitude of the f-Hz component (least-squares projection on sine and cosine)."""
    t = np.arange(len(x)) / sfreq
    basis = np.stack([np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    return float(np.hypot(*coef))


@pytest.fixture(scope="module")
def mains_edf(tmp_path_factory) -> Path:
    """60 s: 'A' = 300 uV DC + 20 uV at 10 Hz + 30 uV of 50-Hz mains + noise; 'B' = noise."""
    sfreq = 256.0
    t = np.arange(int(60 * sfreq)) / sfreq
    rng = np.random.default_rng(0)
    a = 300.0 + 20.0 * np.sin(2 * np.pi * 10 * t) + 30.0 * np.sin(2 * np.pi * 50 * t + 1.0) + rng.normal(0, 2, t.size)
    return write_edf(tmp_path_factory.mktemp("mains") / "mains.edf", {"A": a, "B": rng.normal(0, 10, t.size)})


def test_band_pass_and_notch_remove_dc_and_mains(mains_edf, tmp_path):
    meta = preprocess_recording(mains_edf, ["a", " B "], tmp_path / "f.npy")  # names match ignoring case/spaces
    assert meta.notch_hz == 50.0 and meta.channels == ["a", "B"]
    a = np.load(meta.out_path)[0, 10 * 256 :].astype(float) * 1e6  # uV, after the filters settle
    assert abs(a.mean()) < 1.0  # the 300-uV offset is gone
    assert _amplitude(a, 50.0, 256.0) < 1.0  # 30 uV of mains down by > 30 dB
    assert _amplitude(a, 10.0, 256.0) == pytest.approx(20.0, rel=0.05)  # EEG band untouched
    # Without the notch the mains stays, without the high-pass the offset stays: the filters do the work.
    kept = np.load(preprocess_recording(mains_edf, ["A"], tmp_path / "n.npy", notch=None).out_path)[0] * 1e6
    assert _amplitude(kept[10 * 256 :].astype(float), 50.0, 256.0) > 25.0
    dc = np.load(preprocess_recording(mains_edf, ["A"], tmp_path / "d.npy", l_freq=None).out_path)[0] * 1e6
    assert dc[10 * 256 :].mean() == pytest.approx(300.0, abs=2.0)


def test_chunked_preprocessing_equals_one_pass(mains_edf, tmp_path):
    small = preprocess_recording(mains_edf, ["A", "B"], tmp_path / "s.npy", sfreq_out=200.0, chunk_s=1.3)
    whole = preprocess_recording(mains_edf, ["A", "B"], tmp_path / "w.npy", sfreq_out=200.0, chunk_s=1000.0)
    assert small.n_samples == whole.n_samples == 60 * 200
    np.testing.assert_array_equal(np.load(small.out_path), np.load(whole.out_path))


@pytest.mark.parametrize(("up", "down"), [(1, 1), (1, 2), (25, 32), (2, 1)])
def test_filter_resample_stream_matches_scipy_on_the_whole_signal(up, down):
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 1.0, (3, 5003))
    sos = signal.butter(4, [0.5, 40.0], btype="bandpass", fs=256.0, output="sos")
    blocks = list(filter_resample_stream(lambda a, b: x[:, a:b], x.shape[1], sos, up, down, chunk=97))
    assert len(blocks) > 10 and [o for o, _ in blocks] == sorted(o for o, _ in blocks)
    got = np.concatenate([b for _, b in blocks], axis=1)
    level = x[:, :256].mean(axis=1)  # the default init_samples
    ref = signal.sosfilt(sos, x, axis=1, zi=signal.sosfilt_zi(sos)[:, None, :] * level[None, :, None])[0]
    if up != down:
        ref = signal.resample_poly(ref, up, down, axis=1)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_line_frequency():
    sfreq = 256.0
    t = np.arange(int(30 * sfreq)) / sfreq
    rng = np.random.default_rng(2)
    background = rng.normal(0, 1, (2, t.size))
    assert line_frequency(background + 0.5 * np.sin(2 * np.pi * 60 * t), sfreq) == 60.0
    assert line_frequency(background + 0.5 * np.sin(2 * np.pi * 50 * t), sfreq) == 50.0
    assert line_frequency(background, sfreq) is None


def test_preprocess_errors_name_the_file_or_setting(mains_edf, tmp_path):
    with pytest.raises(ValueError, match=r"mains\.edf: lacks channel\(s\) C"):
        preprocess_recording(mains_edf, ["A", "C"], tmp_path / "x.npy")
    with pytest.raises(ValueError, match=r"h_freq=200 Hz: must be below the output Nyquist"):
        preprocess_recording(mains_edf, ["A"], tmp_path / "x.npy", h_freq=200.0)
    cut = tmp_path / "cut.edf"
    cut.write_bytes(mains_edf.read_bytes()[:-5000])
    with pytest.raises(EdfHeaderError, match=r"cut\.edf: truncated"):
        preprocess_recording(cut, ["A"], tmp_path / "x.npy")
    assert not (tmp_path / "x.npy").exists()


# ------------------------------------------------------------------------------------------------- bad inputs
def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-3000])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncate, r"bad\.edf: truncated: the header promises 10 data records .* but the file has \d+ bytes "
                    r"\(8 complete records, 8 s\)"),
        (lambda p: patch_header(p, spr_offset(3, 1), 8, "0"),
         r"bad\.edf: signal 2 \('B'\) has 0 samples per data record, i\.e\. a sampling rate of 0 Hz"),
        (lambda p: patch_header(p, 244, 8, "0"), r"bad\.edf: data record duration is 0 s"),
        (lambda p: patch_header(p, 236, 8, "-1"), r"bad\.edf: the header says -1 data records \(-1: the writer"),
        (lambda p: patch_header(p, 236, 8, "ten"),
         r"bad\.edf: header field 'number of data records' \(bytes 236-243\) is 'ten', not a number"),
        (lambda p: p.write_bytes(b"0  short"), r"bad\.edf: only 8 bytes"),
    ],
    ids=["truncated", "zero-sampling-rate", "zero-record-duration", "records-minus-one", "unparsable", "tiny"],
)  # fmt: skip
def test_bad_edf_is_quarantined_with_a_reason_naming_it(tmp_path, damage, message):
    rng = np.random.default_rng(0)
    for name in ("good1", "good2", "bad"):
        write_edf(tmp_path / "p1" / f"{name}.edf", noise(rng, "ABC"))
    damage(tmp_path / "p1" / "bad.edf")
    found = discover_recordings(tmp_path)
    assert [r.recording_id for r in found.recordings] == ["p1__good1", "p1__good2"]
    (row,) = found.quarantine
    assert row["path"] == str(tmp_path / "p1" / "bad.edf") and row["stage"] == "ingest"
    assert re.search(message, row["reason"]), row["reason"]
    assert row["reason"].startswith("p1/bad.edf: ")


def test_flat_common_channel_quarantines_flat_other_channel_is_noted(tmp_path):
    rng = np.random.default_rng(0)
    write_edf(tmp_path / "p" / "r1.edf", noise(rng, "ABC"))
    write_edf(tmp_path / "p" / "r2.edf", noise(rng, "ABC"))
    flat_c = noise(rng, "ABC")
    flat_c["C"] = np.full(2560, 12.5)
    write_edf(tmp_path / "p" / "r3.edf", flat_c)
    flat_d = noise(rng, "ABC") | {"D": np.zeros(2560)}
    write_edf(tmp_path / "p" / "r4.edf", flat_d)
    found = discover_recordings(tmp_path)
    assert found.channels == ["A", "B", "C"]
    assert [r.recording_id for r in found.recordings] == ["p__r1", "p__r2", "p__r4"]
    (row,) = found.quarantine
    assert row["reason"].startswith("p/r3.edf: has flat channel(s) C (constant over the recording)")
    assert "that 3 of 4 recordings have usable" in row["reason"]
    assert any(n.startswith("p/r4.edf: channel D is flat") and "recording is kept" in n for n in found.notes)


def test_recording_lacking_a_common_channel_is_quarantined(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        write_edf(tmp_path / "p" / f"r{i}.edf", noise(rng, ["Fp1", "Fp2 ", "Cz"]))
    write_edf(tmp_path / "p" / "short_montage.edf", noise(rng, ["FP1", "fp2"]))
    found = discover_recordings(tmp_path)
    assert found.channels == ["Fp1", "Fp2", "Cz"]  # case and padding ignored, first spelling kept
    (row,) = found.quarantine
    assert row["reason"] == "p/short_montage.edf: lacks channel(s) Cz that 3 of 4 recordings have"
    assert any("1 recording(s) quarantined for lacking common channels" in n for n in found.notes)
    forced = discover_recordings(tmp_path, channels=["fp2", "FP1"])
    assert forced.channels == ["fp2", "FP1"] and len(forced.recordings) == 4 and forced.quarantine == []


def test_channel_held_by_only_half_shrinks_the_set(tmp_path):
    rng = np.random.default_rng(0)
    write_edf(tmp_path / "a.edf", noise(rng, "AB"))
    write_edf(tmp_path / "b.edf", noise(rng, "AC"))
    found = discover_recordings(tmp_path)
    assert found.channels == ["A"] and len(found.recordings) == 2 and found.quarantine == []
    assert any("left out of the common set" in n and "B (1 of 2)" in n and "C (1 of 2)" in n for n in found.notes)


def test_repeated_channel_keeps_the_first_and_short_recording_is_quarantined(tmp_path):
    rng = np.random.default_rng(0)
    sigs = noise(rng, "AB")
    # edfio takes a list of signals, so a repeated label needs the low-level call.
    edfio.Edf(
        [edfio.EdfSignal(x, 256.0, label=n, physical_range=(-3000, 3000))
         for n, x in [("A", sigs["A"]), ("B", sigs["B"]), ("a ", np.zeros(2560))]],
        data_record_duration=1.0,
    ).write(tmp_path / "rep.edf")  # fmt: skip
    write_edf(tmp_path / "short.edf", noise(rng, "AB", seconds=3.0))
    found = discover_recordings(tmp_path, min_duration_s=5.0)
    (rec,) = found.recordings
    assert rec.channels == ["A", "B"] and found.channels == ["A", "B"]
    assert any("channel 3 'a' repeats channel 1; keeping channel 1" in n for n in rec.notes)
    (row,) = found.quarantine
    assert row["reason"] == (
        "short.edf: 3 s of data, shorter than the minimum of 5 s; lower ingest.min_duration_s to use it"
    )


# ---------------------------------------------------------------------------------- summaries, sidecars, layout
def test_summary_naming_a_missing_file_and_a_file_missing_from_the_summary(sim, tmp_path):
    root, _ = sim
    shutil.copytree(root / "chb01", tmp_path / "chb01")
    shutil.copy(tmp_path / "chb01" / "chb01_02.edf", tmp_path / "chb01" / "chb01_99.edf")
    (tmp_path / "chb01" / "chb01_02.edf").unlink()
    found = discover_recordings(tmp_path)
    (row,) = found.quarantine
    assert row["path"] == str(tmp_path / "chb01" / "chb01_02.edf")
    assert re.fullmatch(
        r"chb01/chb01-summary\.txt line \d+ lists chb01_02\.edf but chb01/chb01_02\.edf does not exist; "
        r"its 1 seizure\(s\) are lost",
        row["reason"],
    ), row["reason"]
    extra = next(r for r in found.recordings if r.recording_id == "chb01_99")
    # Not in the summary: its own EDF+ annotations (the simulator writes them) give its seizures.
    assert extra.source == "edf-annotations" and extra.seizures == list(plan_patients(SIM_SPEC)[0].recordings[1])
    assert extra.start_offset_s is None
    assert any(n.startswith("chb01/chb01_99.edf: not listed in its folder's summary") for n in found.notes)


def test_events_tsv_seizures_and_bad_rows(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "carol"
    write_edf(folder / "good.edf", noise(rng, "AB", seconds=60.0))
    (folder / "good_events.tsv").write_text(
        "onset\tduration\ttrial_type\n5.0\tn/a\tartifact\n10\t5.5\tSeizure\n12.5\t10\tsz_foc\n50\t20\tseizure\n"
    )
    write_edf(folder / "neg.edf", noise(rng, "AB", seconds=60.0))
    (folder / "neg_events.tsv").write_text("onset\tduration\teventType\n3\t2\tbckg\n-5.0\t10\tsz\n")
    write_edf(folder / "text.edf", noise(rng, "AB", seconds=60.0))
    (folder / "text_events.tsv").write_text("onset\tduration\teventType\n3\tlong\tseizure\n")
    found = discover_recordings(tmp_path)
    (good,) = found.recordings
    # 10-15.5 and 12.5-22.5 overlap and merge; 50-70 runs past the 60 s of data: clipped to it, and listed.
    assert good.source == "events-tsv" and good.seizures == [(10.0, 22.5), (50.0, 60.0)]
    clipped = ("carol/good.edf: seizure 2 (50-70 s) ends after the end of the data (the file holds 60 s): "
               "clipped to 50-60 s, the 10 s of it in the file")  # fmt: skip
    assert clipped in good.notes and good.seizures_past_data == [clipped]
    assert found.seizures_past_data == [{"path": str(folder / "good.edf"), "stage": "ingest", "reason": clipped}]
    bad = {Path(q["path"]).name: q["reason"] for q in found.quarantine}
    assert bad["neg.edf"] == (
        "carol/neg_events.tsv: row 2 (line 3): onset -5.0 is negative or not finite; onsets count from the file's start"
    )
    assert bad["text.edf"] == "carol/text_events.tsv: row 1 (line 2): duration 'long' is not a number of seconds"


def test_patients_from_bids_folders_plain_folders_and_root(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "site_a"
    bids = root / "sub-07" / "ses-01" / "eeg"
    write_edf(bids / "sub-07_ses-01_task-szMonitoring_run-01_eeg.edf", noise(rng, "AB", seconds=30.0))
    (bids / "sub-07_ses-01_task-szMonitoring_run-01_events.tsv").write_text(
        "onset\tduration\teventType\n4\t6\tsz_foc_ia\n"
    )
    write_edf(root / "alice" / "night1" / "rec.edf", noise(rng, "AB", seconds=30.0))
    write_edf(root / "alice" / "night2" / "rec.edf", noise(rng, "AB", seconds=30.0))
    write_edf(root / "bob" / "Session 1.EDF", noise(rng, "AB", seconds=30.0),
              annotations=((2.0, 3.0, "SZ onset"), (20.0, 0.0, "eyes closed")))  # fmt: skip
    write_edf(root / "loose.edf", noise(rng, "AB", seconds=30.0))
    found = discover_recordings(root)
    got = {r.recording_id: (r.patient, r.source, r.seizures) for r in found.recordings}
    assert got == {
        "alice__night1__rec": ("alice", "none", []),
        "alice__night2__rec": ("alice", "none", []),
        "bob__Session_1": ("bob", "edf-annotations", [(2.0, 5.0)]),
        "site_a__loose": ("site_a", "none", []),
        "sub-07_ses-01_task-szMonitoring_run-01_eeg": ("sub-07", "events-tsv", [(4.0, 10.0)]),
    }
    assert found.quarantine == []


def test_no_edf_files_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .edf files below it"):
        discover_recordings(tmp_path)


def test_seizure_ids_follow_clock_time_not_file_order():
    def rec(rid: str, offset: float | None, seizures: list[tuple[float, float]]) -> RecordingInfo:
        return RecordingInfo(rid, "p", Path(f"{rid}.edf"), seizures, "chbmit-summary", 3600.0, 256.0, ["A"], offset)

    found = Discovery(
        [rec("p_01", 7200.0, [(10.0, 20.0)]), rec("p_02", 0.0, [(50.0, 60.0), (5.0, 8.0)])], [], [], ["A"]
    )
    rows = seizure_rows(found)
    assert [(r["recording_id"], r["seizure_id"], r["onset_s"]) for r in rows] == [
        ("p_02", "p_s1", 5.0), ("p_02", "p_s2", 50.0), ("p_01", "p_s3", 10.0),
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------- de-identification
SECRETS = ("Jane_Doe_Secret", "Jane", "Secret", "MRN-884422", "17-MAY-1980", "1980-05-17", "ADM-7731",
           "Dr_Secretive", "Secretive", "23.06.19", "23-JUN-2019", "2019-06-23", "13.14.15", "13:14:15")  # fmt: skip


def test_header_identifiers_appear_in_nothing_returned(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    kwargs = {
        "patient": edfio.Patient(code="MRN-884422", sex="F", birthdate=dt.date(1980, 5, 17), name="Jane_Doe_Secret"),
        "recording": edfio.Recording(
            startdate=dt.date(2019, 6, 23),
            hospital_administration_code="ADM-7731",
            investigator_technician_code="Dr_Secretive",
            equipment_code="AmpZ",
        ),  # fmt: skip
        "starttime": dt.time(13, 14, 15),
    }
    root = tmp_path / "data"
    good = write_edf(root / "p" / "rec.edf", noise(rng, "AB", seconds=20.0), annotations=((2.0, 4.0, "seizure"),),
                     **kwargs)  # fmt: skip
    header = good.read_bytes()[:256].decode("latin-1")
    assert "Jane_Doe_Secret" in header and "MRN-884422" in header and "ADM-7731" in header  # the test means it
    cut = write_edf(root / "p" / "cut.edf", noise(rng, "AB", seconds=20.0), **kwargs)
    cut.write_bytes(cut.read_bytes()[:-2000])
    flat = write_edf(root / "p" / "flat.edf", {"A": rng.normal(0, 20, 5120), "B": np.zeros(5120)}, **kwargs)
    long_seizure = write_edf(root / "p" / "late.edf", noise(rng, "AB", seconds=20.0),
                             annotations=((15.0, 30.0, "seizure"),), **kwargs)  # fmt: skip
    assert flat.exists() and long_seizure.exists()

    found = discover_recordings(root)
    meta = preprocess_recording(good, found.channels, tmp_path / "out" / "signals" / "x.npy")
    write_tables(found, tmp_path / "out")
    assert len(found.quarantine) == 2 and len(found.recordings) == 2  # cut, flat; rec, late
    returned = (
        repr(found)
        + repr(meta)
        + "".join(p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*.*") if p.suffix != ".npy")
    )
    returned += meta.out_path.read_bytes()[:128].decode("latin-1")  # the .npy header
    for secret in SECRETS:
        assert secret.lower() not in returned.lower(), secret

    # Text that comes from MNE is scrubbed too: make MNE fail with a message quoting the header.
    def failing_open(path: Path):
        raise RuntimeError(f"cannot parse patient field {Path(path).read_bytes()[8:88].decode('latin-1')!r}")

    monkeypatch.setattr(inspection, "open_raw", failing_open)
    monkeypatch.setattr(preprocess, "open_raw", failing_open)
    broken = discover_recordings(root)
    assert len(broken.quarantine) == 4
    text = repr(broken)
    assert "MNE cannot read it (RuntimeError: cannot parse patient field" in text and "[redacted]" in text
    for secret in SECRETS:
        assert secret.lower() not in text.lower(), secret
    with pytest.raises(ValueError) as info:
        preprocess_recording(good, ["A"], tmp_path / "y.npy")
    assert "Jane" not in str(info.value) and info.value.__cause__ is None


# ------------------------------------------------------------------------------------ seizures past the data's end
def test_edf_annotation_past_the_end_is_clipped_and_one_after_it_listed(tmp_path):
    """MNE crops annotations to the data silently; the file's own annotations show what was written, so a seizure
    running past the end keeps its in-file seconds as ictal, and one starting after the end is named."""
    rng = np.random.default_rng(0)
    write_edf(tmp_path / "p" / "late.edf", noise(rng, "AB", seconds=20.0),
              annotations=((15.0, 8.0, "seizure"), (25.0, 5.0, "sz 2"), (3.0, 0.0, "eyes open")))  # fmt: skip
    write_edf(tmp_path / "p" / "clean.edf", noise(rng, "AB", seconds=20.0), annotations=((2.0, 4.0, "seizure"),))
    found = discover_recordings(tmp_path)
    by_id = {r.recording_id: r for r in found.recordings}
    assert by_id["p__late"].seizures == [(15.0, 20.0)] and by_id["p__clean"].seizures == [(2.0, 6.0)]
    assert [row["reason"] for row in found.seizures_past_data] == [
        "p/late.edf: seizure 1 (15-23 s) ends after the end of the data (the file holds 20 s): clipped to 15-20 s, "
        "the 5 s of it in the file",
        "p/late.edf: seizure 2 (25-30 s) starts after the end of the data (the file holds 20 s): left out, none of "
        "it is in the file",
    ]
    assert found.quarantine == []  # both files are used


def test_read_edf_annotations_are_not_cropped_to_the_data(tmp_path):
    from tasks.edf import read_edf_annotations, read_edf_header

    path = write_edf(tmp_path / "a.edf", noise(np.random.default_rng(0), "A", seconds=10.0),
                     annotations=((1.5, 2.0, "sz"), (8.0, 30.0, "Seizure ónset"), (40.0, 0.0, "end")))  # fmt: skip
    got = read_edf_annotations(read_edf_header(path))
    assert [(a.onset_s, a.duration_s, a.description) for a in got] == [
        (1.5, 2.0, "sz"), (8.0, 30.0, "Seizure ónset".encode().decode("latin-1")), (40.0, 0.0, "end"),
    ]  # fmt: skip
    assert read_edf_annotations(read_edf_header(write_edf(tmp_path / "b.edf", {"A": np.zeros(2560)}))) == []


# ------------------------------------------------------------------------------------------------ skipped entries
def test_hidden_entries_are_counted_and_links_are_quarantined(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    write_edf(root / "p" / "rec.edf", noise(rng, "AB"))
    write_edf(root / "p" / ".ipynb_checkpoints" / "rec-checkpoint.edf", noise(rng, "AB"))
    write_edf(root / "p" / "._rec.edf", noise(rng, "AB"))
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "p" / "gone.edf").symlink_to(tmp_path / "deleted.edf")
    write_edf(tmp_path / "elsewhere" / "other.edf", noise(rng, "AB"))
    (root / "q").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (root / "p" / "alias.edf").symlink_to(root / "p" / "rec.edf")  # a link to a file is read through
    found = discover_recordings(root)
    assert [r.recording_id for r in found.recordings] == ["p__alias", "p__rec"]
    assert [(Path(q["path"]).name, q["reason"]) for q in found.quarantine] == [
        ("q", f"q/: a link to a folder ({tmp_path / 'elsewhere'}); links to folders are not followed: pass that "
              "folder itself, or copy it in"),
        ("gone.edf", f"p/gone.edf: a broken link (its target {tmp_path / 'deleted.edf'} does not exist); fix the "
                     "link or remove it"),
    ]  # fmt: skip
    assert (
        "3 hidden file(s)/folder(s) skipped (.DS_Store, p/.ipynb_checkpoints/, p/._rec.edf): names starting with "
        "'.' are editor, notebook or OS files, not data"
    ) in found.notes
    only_hidden = tmp_path / "only_hidden"
    write_edf(only_hidden / ".ipynb_checkpoints" / "x.edf", noise(rng, "AB"))
    with pytest.raises(FileNotFoundError, match=r"only_hidden: no \.edf files below it \(1 hidden entries skipped\)"):
        discover_recordings(only_hidden)
