"""``vigil gc`` on a hand-built data root, and ``vigil runs`` from the run folders (no Prefect server)."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pytest

from flows.commands.gc import cmd_gc, gc, human_bytes
from flows.commands.runs import format_runs, list_runs
from tasks.cache import DONE_MARKER

NOW = time.mktime((2025, 3, 1, 12, 0, 0, 0, 0, 0))  # local time is fine: only differences matter
DAY = 86400.0


def _stamp(t: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))


def _entry(root: Path, stage: str, key: str, size: int, used: float, summary: dict | None = None) -> Path:
    """A finished cache entry: a payload of ``size`` bytes and a ``.complete`` marker last touched at ``used``."""
    e = root / "cache" / stage / key
    e.mkdir(parents=True)
    (e / "payload.bin").write_bytes(b"x" * size)
    (e / "summary.json").write_text(json.dumps(summary or {}))
    (e / DONE_MARKER).write_text("{}")
    os.utime(e / DONE_MARKER, (used, used))
    return e


def _run(root: Path, flow: str, t: float, name: str, keys: dict[str, str], size: int = 100, link: Path | None = None):
    d = root / "runs" / flow / f"{_stamp(t)}-{name}"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"flow": flow, "dataset": "elpv", "profile": "quick", "test": {}}))
    (d / "lineage.json").write_text(json.dumps({"dataset": {"ingest_key": keys.get("ingest")}, "stage_keys": keys}))
    (d / "report.html").write_bytes(b"r" * size)
    if link is not None:  # a file hard-linked from the cache, as run folders of older vigil versions have
        os.link(link, d / "splits.csv")
    return d


@pytest.fixture()
def data_root(tmp_path: Path) -> dict:
    root = tmp_path / "vd"
    old, mid, new = NOW - 30 * DAY, NOW - 10 * DAY, NOW - 1 * DAY
    e = {
        "shared": _entry(root, "ingest", "a" * 16, 1000, old),  # used by an old and a kept run
        "old_only": _entry(root, "train", "b" * 16, 2000, old),  # used only by a deleted run
        "kept_train": _entry(root, "train", "c" * 16, 3000, old),  # referenced by a kept run (as train-detection)
        "orphan_old": _entry(root, "label", "d" * 16, 4000, old),  # nobody references it
        "orphan_recent": _entry(root, "label", "e" * 16, 5000, NOW - 60),  # in use by a running flow
        "sim": _entry(root, "simulate", "f" * 16, 6000, old),  # reached through the ingest entry's summary
    }
    e["eeg_ingest"] = _entry(
        root,
        "ingest",
        "9" * 16,
        700,
        old,
        {"source": "sim", "root": str(root / "cache" / "simulate" / ("f" * 16) / "data")},
    )
    tmp_old = root / "cache" / "train" / ".tmp-deadbeef-1234"
    tmp_old.mkdir()
    (tmp_old / "partial.bin").write_bytes(b"p" * 50)
    for p in (tmp_old / "partial.bin", tmp_old):
        os.utime(p, (NOW - 2 * 3600, NOW - 2 * 3600))
    tmp_new = root / "cache" / "train" / ".tmp-cafe-5678"
    tmp_new.mkdir()
    flow = "defect-detection"
    runs = {
        "oldest": _run(
            root, flow, old, "oldest", {"ingest": "a" * 16, "train": "b" * 16}, link=e["old_only"] / "payload.bin"
        ),
        "mid": _run(root, flow, mid, "mid", {"ingest": "a" * 16, "train": "b" * 16}),
        "new": _run(root, flow, new, "new", {"ingest": "a" * 16}),
        "eeg_old": _run(root, "seizure-prediction", old, "eeg-old", {"ingest": "7" * 16}),
        "eeg_new": _run(root, "seizure-prediction", mid, "eeg-new", {"ingest": "9" * 16, "train-detection": "c" * 16}),
    }
    return {"root": root, "entries": e, "runs": runs, "tmp_old": tmp_old, "tmp_new": tmp_new}


def test_gc_keeps_newest_per_flow_and_referenced_entries(data_root: dict) -> None:
    root, e, runs = data_root["root"], data_root["entries"], data_root["runs"]
    doomed = [runs["oldest"], runs["mid"], runs["eeg_old"]]
    run_bytes = sum(f.stat().st_size for d in doomed for f in d.iterdir() if f.name != "splits.csv")
    entry_bytes = sum(f.stat().st_size for k in ("old_only", "orphan_old") for f in e[k].iterdir())
    report = gc(root, keep=1, now=NOW)
    assert not runs["oldest"].exists() and not runs["mid"].exists() and not runs["eeg_old"].exists()
    assert runs["new"].exists() and runs["eeg_new"].exists()
    assert report.runs.count == 3 and report.kept_runs == 2
    # referenced by a kept run: kept even though not used for a month
    for name in ("shared", "kept_train", "eeg_ingest", "sim"):
        assert e[name].exists(), name
    assert not e["old_only"].exists() and not e["orphan_old"].exists()
    assert e["orphan_recent"].exists()  # unreferenced but touched after the newest run started
    assert report.cache.count == 2 and report.kept_cache_entries == 5
    assert not data_root["tmp_old"].exists() and data_root["tmp_new"].exists() and report.tmp.count == 1
    # the hard-linked splits.csv is freed with its cache entry, so it counts once, under "cache"
    assert report.runs.bytes == run_bytes
    assert report.cache.bytes == entry_bytes
    assert report.tmp.bytes == 50
    assert report.bytes_freed == report.runs.bytes + report.cache.bytes + report.tmp.bytes


def test_gc_keep_two_keeps_what_the_second_run_uses(data_root: dict) -> None:
    root, e, runs = data_root["root"], data_root["entries"], data_root["runs"]
    gc(root, keep=2, now=NOW)
    assert runs["mid"].exists() and runs["new"].exists() and not runs["oldest"].exists()
    assert e["old_only"].exists()  # the mid run references it
    assert not e["orphan_old"].exists()


def test_dry_run_deletes_nothing_but_reports_the_same(data_root: dict) -> None:
    root = data_root["root"]
    before = sorted(p for p in root.rglob("*"))
    dry = gc(root, keep=1, dry_run=True, now=NOW)
    assert sorted(p for p in root.rglob("*")) == before
    real = gc(root, keep=1, now=NOW)
    assert (dry.runs.count, dry.cache.count, dry.tmp.count) == (real.runs.count, real.cache.count, real.tmp.count)
    assert dry.bytes_freed == real.bytes_freed > 0


def test_running_flow_without_metrics_is_never_deleted(data_root: dict) -> None:
    root = data_root["root"]
    resumed = root / "runs" / "defect-detection" / f"{_stamp(NOW - 40 * DAY)}-resumed"
    resumed.mkdir()
    (resumed / "run.log").write_text("training...")
    os.utime(resumed / "run.log", (NOW - 60, NOW - 60))
    gc(root, keep=1, now=NOW)
    assert resumed.exists()


def test_keep_zero_is_refused(data_root: dict, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    with pytest.raises(ValueError, match="keep at least 1"):
        gc(data_root["root"], keep=0)
    monkeypatch.setenv("VIGIL_DATA", str(data_root["root"]))
    assert cmd_gc(argparse.Namespace(keep=0, dry_run=False)) == 2
    assert cmd_gc(argparse.Namespace(keep=1, dry_run=True)) == 0
    out = capsys.readouterr().out
    assert "would delete" in out and out.strip().splitlines()[-1].startswith("would free ")
    assert " 3 runs, " in out and "cache entries" in out


def test_human_bytes() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(1_234_567_890) == "1.2 GB"


def test_list_runs_from_folders_newest_first(data_root: dict) -> None:
    root, runs = data_root["root"], data_root["runs"]
    m = json.loads((runs["new"] / "metrics.json").read_text())
    m["test"] = {"accuracy": 0.91, "balanced_accuracy": 0.9}
    (runs["new"] / "metrics.json").write_text(json.dumps(m))
    (runs["mid"] / "metrics.json").write_text(json.dumps({**m, "error": "boom"}))
    rows = list_runs(root, limit=3, use_api=False)
    assert [r["run"] for r in rows] == ["new", "mid", "eeg-new"]
    assert rows[0]["headline"] == {"test.accuracy": 0.91, "test.balanced_accuracy": 0.9}
    assert rows[1]["status"] == "FAILED" and rows[0]["status"] == "ok" and rows[0]["source"] == "dir"
    text = format_runs(rows)
    assert text.splitlines()[0].startswith("started (UTC)")
    assert "acc 0.910 bacc 0.900" in text and str(runs["new"]) in text


def test_list_runs_tells_a_crashed_run_from_a_running_one(data_root: dict) -> None:
    """A folder without metrics.json that nothing has written to for an hour is a dead process, not a live run."""
    root = data_root["root"]
    flow = root / "runs" / "defect-detection"
    for name, written in (("killed", NOW - 2 * DAY), ("busy", NOW - 60)):
        d = flow / f"{_stamp(NOW - 3 * DAY)}-{name}"
        d.mkdir()
        (d / "run.log").write_text("training...")
        for p in (d / "run.log", d):
            os.utime(p, (written, written))
    rows = {r["run"]: r["status"] for r in list_runs(root, limit=20, use_api=False, now=NOW)}
    assert rows["killed"] == "crashed?" and rows["busy"] == "running?" and rows["new"] == "ok"


def test_api_running_state_of_a_quiet_folder_reads_crashed() -> None:
    from flows.commands.runs import _merge

    def row(status: str, source: str) -> dict:
        return {"run": "r", "flow": "f", "status": status, "path": "/p" if source == "dir" else "", "profile": "",
                "dataset": "", "headline": {}, "source": source, "_stamp": "20250301T000000Z"}  # fmt: skip

    assert _merge([row("Running", "api")], [row("crashed?", "dir")])[0]["status"] == "crashed?"
    assert _merge([row("Running", "api")], [row("running?", "dir")])[0]["status"] == "Running"
    assert _merge([row("Crashed", "api")], [row("crashed?", "dir")])[0]["status"] == "Crashed"
