"""EDF reading: header facts and truncation from real EDF files (written with edfio), and the chunked signal scan."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import edfio
import numpy as np
import pytest

from tasks.edf import EdfHeaderError, header_secrets, read_edf_header, scan_signals, scrub


def write_edf(path: Path, signals: dict[str, np.ndarray], sfreq: float) -> Path:
    """An EDF+ file with signals given in microvolts (+-3 mV range), one-second data records."""
    sigs = [
        edfio.EdfSignal(np.asarray(x, dtype=float), sfreq, label=name, physical_dimension="uV",
                        physical_range=(-3000.0, 3000.0))
        for name, x in signals.items()
    ]  # fmt: skip
    edfio.Edf(sigs, data_record_duration=1.0).write(path)
    return path


def noise(rng: np.random.Generator, names: str, seconds: float, sfreq: float) -> dict[str, np.ndarray]:
    return {name: rng.normal(0.0, 20.0, int(seconds * sfreq)) for name in names}


def test_read_edf_header_facts_and_truncation(tmp_path):
    path = write_edf(tmp_path / "h.edf", noise(np.random.default_rng(0), "AB", 5.0, 128.0), sfreq=128.0)
    header = read_edf_header(path)
    assert header.labels[:2] == ("A", "B") and header.n_records == 5 and header.record_duration_s == 1.0
    assert header.expected_bytes == header.file_bytes and header.duration_s == 5.0
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(EdfHeaderError, match="truncated"):
        read_edf_header(path)


def test_nan_samples_are_caught_by_the_signal_scan():
    data = np.random.default_rng(0).normal(0, 1e-5, (3, 1000))
    data[1, 500] = np.nan
    scan = scan_signals(Path("p/rec.edf"), [data[:, :400], data[:, 400:]], ["A", "B", "C"])
    assert scan.non_finite == {"B": 1} and scan.n_samples == 1000
    assert scan.error == "p/rec.edf: NaN or infinite samples after reading, in channel(s) B (1 of 1000)"
    clean = scan_signals(Path("p/rec.edf"), [data[:, :400]], ["A", "B", "C"])
    assert clean.error is None and clean.flat == []


def test_signal_scan_statistics_survive_a_large_offset():
    rng = np.random.default_rng(0)
    data = np.stack([1.0 + rng.normal(0, 1e-6, 20000), np.full(20000, 0.25), rng.normal(0, 3e-5, 20000)])
    scan = scan_signals(Path("x.edf"), np.array_split(data, 7, axis=1), ["A", "B", "C"])
    assert scan.std_v["A"] == pytest.approx(np.std(data[0]), rel=1e-6)
    assert scan.std_v["C"] == pytest.approx(np.std(data[2]), rel=1e-9)
    assert scan.flat == ["B"]


# ---------------------------------------------------------------------------------------------- de-identification
def test_a_text_file_named_edf_has_no_secrets_and_its_message_stays_readable(tmp_path):
    """The probe's garbled "p01/[redacted].edf: [redacted] an EDF file": a non-EDF file's words are not a header."""
    from tasks.ingest.discovery import discover_recordings

    rng = np.random.default_rng(0)
    (tmp_path / "p01").mkdir()
    write_edf(tmp_path / "p01" / "good.edf", noise(rng, "AB", 10.0, 128.0), sfreq=128.0)
    fake = tmp_path / "p01" / "rec1.edf"
    fake.write_text("These notes on rec1 are not an EDF file; p01 slept well. " * 8)
    assert header_secrets(fake) == frozenset()
    found = discover_recordings(tmp_path)
    assert [r.recording_id for r in found.recordings] == ["p01__good"]
    assert [q["reason"] for q in found.quarantine] == [
        "p01/rec1.edf: not an EDF file (its version field is not '0'; BDF is not supported)"
    ]


def _edf_plus(path: Path, patient: edfio.Patient, recording: edfio.Recording) -> Path:
    signal = edfio.EdfSignal(np.zeros(256), 128.0, label="A", physical_range=(-3000.0, 3000.0))
    edfio.Edf([signal], patient=patient, recording=recording, starttime=dt.time(9, 30, 5)).write(path)
    return path


def test_header_secrets_are_identifiers_only(tmp_path):
    path = _edf_plus(
        tmp_path / "p.edf",
        edfio.Patient(code="MRN-884422", sex="F", birthdate=dt.date(1980, 5, 17), name="Li_Wei_Stone"),
        edfio.Recording(startdate=dt.date(2019, 6, 23), hospital_administration_code="ADM-7731",
                        investigator_technician_code="Dr_Secretive", equipment_code="Nicolet"),
    )  # fmt: skip
    secrets = header_secrets(path)
    for expected in ("MRN-884422", "17-MAY-1980", "1980-05-17", "Li_Wei_Stone", "Stone", "23-JUN-2019",
                     "2019-06-23", "ADM-7731", "Dr_Secretive", "Secretive", "09.30.05", "09:30:05"):  # fmt: skip
        assert expected in secrets, expected
    # Short tokens (sex, "Li", "Wei", "Dr"), EDF+ keywords and the equipment identify no one.
    assert not {"F", "Li", "Wei", "Dr", "Startdate", "Nicolet"} & secrets
    message = "p/p.edf: MNE cannot read it (ValueError: name Li_Wei_Stone born 1980-05-17, Nicolet amplifier)"
    assert scrub(message, secrets) == (
        "p/p.edf: MNE cannot read it (ValueError: name [redacted] born [redacted], Nicolet amplifier)"
    )


def test_scrub_leaves_ordinary_words_and_the_users_file_names_alone(tmp_path):
    path = tmp_path / "plain.edf"
    _edf_plus(path, edfio.Patient(), edfio.Recording())
    raw = bytearray(path.read_bytes())
    raw[8:88] = b"Patient 7 routine recording Jane_Smith".ljust(80)  # a plain EDF's free text
    raw[192:236] = b" " * 44  # plain EDF, not EDF+
    path.write_bytes(bytes(raw))
    secrets = header_secrets(path)
    assert {"Jane_Smith", "Jane", "Smith"} <= secrets
    assert not {"Patient", "routine", "recording", "7"} & secrets
    text = "smith/Jane_Smith.edf: the recording of patient Jane_Smith has 2 s of data (routine)"
    assert scrub(text, secrets, keep=["smith/Jane_Smith.edf"]) == (
        "smith/Jane_Smith.edf: the recording of patient [redacted] has 2 s of data (routine)"
    )
