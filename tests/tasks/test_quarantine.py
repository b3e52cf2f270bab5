"""The quarantine list's summary sentence: the most common reason and the setting that changes it."""

from __future__ import annotations

import pandas as pd

from tasks.cache import StageResult
from tasks.quarantine import collect_quarantine, most_common_reason, rejection_summary


def _row(path: str, reason: str, stage: str = "ingest") -> dict[str, str]:
    return {"path": path, "stage": stage, "reason": reason}


def test_reasons_that_differ_in_file_names_numbers_and_paths_are_one_reason() -> None:
    rows = [
        _row("/d/a.edf", "a.edf: cannot be opened: Permission denied"),
        _row("/d/p1/b.edf", "p1/b.edf: 10 s of data, shorter than the minimum of 30 s; lower ingest.min_duration_s"),
        _row("/d/c.edf", "c.edf: 23.6 s of data, shorter than the minimum of 30 s; lower ingest.min_duration_s"),
        _row("x.csv:2", "file not found: /d/x/1.png"),
    ]
    example, count, setting = most_common_reason(rows)
    assert (example, count, setting) == (
        "10 s of data, shorter than the minimum of 30 s; lower ingest.min_duration_s",
        2,
        "ingest.min_duration_s",
    )
    assert most_common_reason([*rows, _row("x.csv:3", "file not found: /d/y/2.png")])[1] == 2  # a tie: the first
    text = rejection_summary("no usable EDF recordings under /d", rows)
    assert text == (
        'no usable EDF recordings under /d (4 left out); most common reason (2 of 4): "10 s of data, shorter than '
        'the minimum of 30 s; lower ingest.min_duration_s"; the setting that changes it: ingest.min_duration_s; '
        "quarantine.csv lists each"
    )
    assert "setting" not in rejection_summary("nothing", rows[:1])


def test_collect_quarantine_reads_failed_stages_that_kept_their_entry(tmp_path) -> None:
    """A stage that left out every input fails but keeps quarantine.csv; the run's list must still show it."""
    pd.DataFrame([_row("/d/a.edf", "a.edf: bad")]).to_csv(tmp_path / "quarantine.csv", index=False)
    failed = StageResult(stage="ingest", key="k", path=str(tmp_path), cached=False, seconds=0.0, error="nothing")
    nothing = StageResult(stage="label", key="", path="", cached=False, seconds=0.0, error="no data")
    table = collect_quarantine({"ingest": failed, "label": nothing, "augment": None})
    assert table.to_dict("records") == [_row("/d/a.edf", "a.edf: bad")]
    assert list(collect_quarantine({}).columns) == ["path", "stage", "reason"]
