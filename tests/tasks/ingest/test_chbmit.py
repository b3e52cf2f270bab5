"""The CHB-MIT summary parser against the real chb05 summary (with its stub EDFs) and hand-made edge cases."""

from __future__ import annotations

from pathlib import Path

import mne
import pytest

from tasks.ingest.chbmit import (
    ChbmitSummaryError,
    attach_seizures,
    parse_chbmit_summary,
    parse_clock,
    resolve_mne_channels,
)

CHB05 = Path(__file__).parents[2] / "fixtures" / "chbmit" / "chb05"
SUMMARY = CHB05 / "chb05-summary.txt"
# Read off chb05-summary.txt: file -> (start s, end s).
CHB05_SEIZURES = {
    "chb05_06.edf": (417.0, 532.0),
    "chb05_13.edf": (1086.0, 1196.0),
    "chb05_16.edf": (2317.0, 2413.0),
    "chb05_17.edf": (2451.0, 2571.0),
    "chb05_22.edf": (2348.0, 2465.0),
}
DOUBLE_BANANA = (
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4",
    "F4-C4", "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2", "FZ-CZ", "CZ-PZ",
)  # fmt: skip


@pytest.fixture(scope="module")
def chb05():
    return parse_chbmit_summary(SUMMARY)


def test_chb05_has_its_five_seizures(chb05):
    found = {f.name: f.seizures for f in chb05.files if f.seizures}
    assert found == {name: (times,) for name, times in CHB05_SEIZURES.items()}
    assert sum(f.n_seizures for f in chb05.files) == 5


def test_chb05_files_and_rate(chb05):
    assert chb05.sfreq == 256.0
    assert len(chb05.files) == 39
    assert [f.name for f in chb05.files] == [f"chb05_{i:02d}.edf" for i in range(1, 40)]
    assert all(f.channel_list == 0 for f in chb05.files)


def test_chb05_duplicated_channel_is_reported_and_kept_once(chb05):
    (channels,) = chb05.channel_lists
    assert len(channels.listed) == 23 and channels.listed[14] == channels.listed[22] == "T8-P8"
    assert channels.duplicates == (("T8-P8", 23, 15),)
    assert len(channels.channels) == 22 and channels.channels.count("T8-P8") == 1
    assert channels.channels[:18] == DOUBLE_BANANA
    assert any("channel 23 'T8-P8' duplicates channel 15" in note for note in chb05.notes)


def test_chb05_clock_times_cross_midnight(chb05):
    f07, f08 = chb05.file("chb05_07.edf"), chb05.file("chb05_08.edf")
    assert (f07.start_clock, f07.end_clock) == ("23:21:32", "24:21:32")
    assert (f08.start_clock, f08.end_clock) == ("00:21:39", "1:21:39")
    # 17:20:05 is the origin; 00:21:39 on the next day is 7 h 1 min 34 s later.
    assert f08.start_s == 7 * 3600 + 1 * 60 + 34
    assert f08.start_s - f07.end_s == 7  # a 7-s gap, not a day backwards
    assert chb05.file("chb05_01.edf").duration_s == 3610
    assert all(f.duration_s == 3600 for f in chb05.files[1:])
    starts = [f.start_s for f in chb05.files]
    assert starts == sorted(starts)
    # Two midnights (after chb05_07 and chb05_31): 07:25:17 two days after 17:20:05.
    assert chb05.file("chb05_39.edf").start_s == 2 * 86400 + (7 * 3600 + 25 * 60 + 17) - (17 * 3600 + 20 * 60 + 5)


def test_stub_edfs_drop_the_seizures_with_a_reason(chb05):
    """The fixture EDFs hold 2 s of noise: every summary seizure lies past their end and must be left out."""
    for name, (start, end) in CHB05_SEIZURES.items():
        # MNE renames the duplicated T8-P8 to T8-P8-0 / T8-P8-1 and warns.
        with pytest.warns(RuntimeWarning, match="Channel names are not unique"):
            raw = mne.io.read_raw_edf(CHB05 / name, preload=False, verbose="warning")
        assert raw.info["sfreq"] == 256.0 and len(raw.ch_names) == 23
        assert "T8-P8-0" in raw.ch_names and "T8-P8-1" in raw.ch_names and "T8-P8" not in raw.ch_names
        n_seconds = raw.n_times / raw.info["sfreq"]
        assert n_seconds == 2.0
        kept, past = attach_seizures(chb05.file(name), n_seconds)
        assert kept == []
        assert len(past) == 1
        assert (past[0].start_s, past[0].end_s, past[0].clipped_end_s) == (start, end, None)
        assert name in past[0].reason and "left out" in past[0].reason and "2 s" in past[0].reason
        picks = resolve_mne_channels(raw.ch_names, chb05.channels_for(chb05.file(name)).channels)
        assert len(picks) == 22 and picks[14] == "T8-P8-0"


def test_attach_keeps_inside_and_clips_a_seizure_past_the_end(chb05):
    """A seizure running past the data is clipped to it (its in-file seconds stay ictal) and listed."""
    record = chb05.file("chb05_06.edf")
    kept, past = attach_seizures(record, 3600.0)
    assert kept == [(417.0, 532.0)] and past == []
    kept, past = attach_seizures(record, 500.0)
    assert kept == [(417.0, 500.0)] and past[0].clipped_end_s == 500.0
    assert past[0].reason == (
        "chb05_06.edf: seizure 1 (417-532 s) ends after the end of the data (the file holds 500 s; the summary gives "
        "the file 3600 s): clipped to 417-500 s, the 83 s of it in the file"
    )


def test_resolve_mne_channels_names_the_missing():
    with pytest.raises(KeyError, match="FZ-CZ"):
        resolve_mne_channels(["FP1-F7", "T8-P8-0", "T8-P8-1"], ["T8-P8", "FZ-CZ"])
    assert resolve_mne_channels(["T8-P8-1", "T8-P8-0", "FP1-F7"], ["FP1-F7", "T8-P8"]) == ["FP1-F7", "T8-P8-0"]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chb99-summary.txt"
    path.write_text(text)
    return path


GOOD = """Data Sampling Rate: 256 Hz
*************************

Channels in EDF Files:
**********************
Channel 1: FP1-F7
Channel 2: -
Channel 3: F7-T7

File Name: chb99_01.edf
File Start Time: 23:59:00
File End Time: 24:59:00
Number of Seizures in File: 2
Seizure 1 Start Time: 10 seconds
Seizure 1 End Time: 20 seconds
Seizure 2 Start Time:  30 seconds
Seizure 2 End Time: 45 seconds

Channels changed:
*****************
Channel 1: FP1-F7
Channel 2: F7-T7

File Name: chb99_02.edf
File Start Time: 25:10:05
File End Time: 26:10:05
Number of Seizures in File: 1
Seizure Start Time: 100 seconds
Seizure End Time: 160 seconds

File Name: chb99_03.edf
File Start Time: 03:00:00
File End Time: 4:00:00
Number of Seizures in File: 0
"""


def test_numbered_seizures_channel_changes_and_hours_past_24(tmp_path):
    summary = parse_chbmit_summary(_write(tmp_path, GOOD))
    f1, f2, f3 = summary.files
    assert f1.seizures == ((10.0, 20.0), (30.0, 45.0)) and f1.n_seizures == 2
    assert f2.seizures == ((100.0, 160.0),)
    assert [f.channel_list for f in summary.files] == [0, 1, 1]
    assert summary.channel_lists[0].listed == ("FP1-F7", "-", "F7-T7")
    assert summary.channel_lists[0].channels == ("FP1-F7", "F7-T7")
    assert summary.channel_lists[0].placeholders == (2,)
    assert summary.channels_for(f3).channels == ("FP1-F7", "F7-T7")
    assert (f1.start_s, f1.end_s) == (0.0, 3600.0)
    assert f2.start_clock == "25:10:05" and f2.start_s == 3600 + 11 * 60 + 5  # 01:10:05 the next day
    assert f2.duration_s == 3600
    assert f3.start_s == 3 * 3600 + 60  # 03:00:00 after 02:10:05, same day
    assert f3.duration_s == 3600


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("Seizure 2 End Time: 45 seconds", "Seizure 2 End Time: 25 seconds",
         r"chb99-summary\.txt line 17: seizure 2 has an end time before its start"),
        ("Number of Seizures in File: 2", "Number of Seizures in File: 3",
         r"chb99-summary\.txt line 13: chb99_01\.edf says 3 seizures but lists 2"),
        ("Seizure 1 Start Time: 10 seconds\n", "",
         r"line 14: seizure 1 has an end time but no start time"),
        ("File Start Time: 25:10:05", "File Start Time: 25:61:05", r"line 25: bad clock time"),
        ("Seizure End Time: 160 seconds", "Seizure End Time: soon", r"line 29: .*'soon' is not a number of seconds"),
        ("Seizure End Time: 160 seconds\n", "", r"line 28: seizure 1 of chb99_02\.edf has a start time but no end"),
    ],
)  # fmt: skip
def test_errors_name_file_and_line(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(ChbmitSummaryError, match=message):
        parse_chbmit_summary(_write(tmp_path, GOOD.replace(old, new)))


def test_parse_clock():
    assert parse_clock("1:21:39") == 4899
    assert parse_clock("24:21:32") == 24 * 3600 + 21 * 60 + 32
    with pytest.raises(ValueError, match="not a clock time"):
        parse_clock("12:30")
