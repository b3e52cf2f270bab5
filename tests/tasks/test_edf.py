"""EDF reading: header facts and truncation from real EDF files (written with edfio), and the chunked signal scan."""

from __future__ import annotations

from pathlib import Path

import edfio
import numpy as np
import pytest

from tasks.edf import EdfHeaderError, read_edf_header, scan_signals


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
