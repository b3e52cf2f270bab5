"""Bad-input corpus, EEG and command line: hostile or odd EDF/EDF+ files, events sidecars, config YAML and CLI values.

Each case asserts its exact message (the file, the problem, what to do) and that the good files were still used.
The cases call the pure functions (discovery, :func:`~tasks.ingest.annotations.read_events_tsv`,
:func:`~tasks.edf.scan_signals`, :func:`~flows.config.resolve_config`) or the CLI's ``main`` for errors that stop
before any run, so no Prefect server starts. Unreadable inputs are read by a child process that drops to uid 65534
(CI runs as root, who reads everything).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import edfio
import numpy as np
import pytest

from flows.cli import main
from tasks.edf import scan_signals
from tasks.ingest.annotations import EventsFileError, read_events_tsv
from tasks.ingest.discovery import Discovery, discover_recordings

REPO = Path(__file__).resolve().parents[2]
SFREQ = 128.0
SECONDS = 12.0


def _edf(path: Path, signals: dict[str, np.ndarray], sfreq: float = SFREQ, annotations=()) -> Path:
    """An EDF(+) file of signals in microvolts (+-3 mV), one-second records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sigs = [edfio.EdfSignal(np.asarray(x, float), sfreq, label=name, physical_dimension="uV",
                            physical_range=(-3000.0, 3000.0)) for name, x in signals.items()]  # fmt: skip
    notes = [edfio.EdfAnnotation(on, dur, text) for on, dur, text in annotations] or None
    edfio.Edf(sigs, data_record_duration=1.0, annotations=notes).write(path)
    return path


def _noise(rng: np.random.Generator, names: str, sfreq: float = SFREQ) -> dict[str, np.ndarray]:
    return {n: rng.normal(0.0, 20.0, int(SECONDS * sfreq)) for n in names}


# ---------------------------------------------------------------------------------------------------- EDF / EDF+
@pytest.fixture(scope="module")
def edf_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Discovery]:
    """One data folder holding good recordings beside every bad or odd one; discovered once."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("eeg_corpus")
    p = root / "p1"
    _edf(p / "good1.edf", _noise(rng, "AB"))
    (p / "good1_events.tsv").write_bytes("\ufeffonset\tduration\ttrial_type\r\n2\t3\tseizure\r\n".encode())
    _edf(p / "good2.edf", _noise(rng, "AB", sfreq=256.0), sfreq=256.0)  # another sampling rate
    _edf(p / "good3.edf", _noise(rng, "AB"))
    cut = _edf(p / "truncated.edf", _noise(rng, "AB"))
    cut.write_bytes(cut.read_bytes()[:-1500])
    lie = _edf(p / "header_lie.edf", _noise(rng, "AB"))
    raw = bytearray(lie.read_bytes())
    raw[184:192] = b"1024    "  # two signals need 768 header bytes
    lie.write_bytes(bytes(raw))
    _edf(p / "flat.edf", _noise(rng, "A") | {"B": np.full(int(SECONDS * SFREQ), 12.5)})
    _edf(p / "one_channel.edf", _noise(rng, "A"))
    (p / "notes.edf").write_text("Night notes for p1: slept well, no events. This is not an EDF file.\n" * 5)
    _edf(p / "late.edf", _noise(rng, "AB"), annotations=((8.0, 10.0, "seizure"), (20.0, 2.0, "sz")))
    for name, text in {
        "neg": "onset\tduration\ttrial_type\n-1.5\t4\tseizure\n",
        "cols": "onset\ttype\n3\tseizure\n",
        "semi": "onset;duration;trial_type\n3;4;seizure\n",
    }.items():
        _edf(p / f"{name}.edf", _noise(rng, "AB"))
        (p / f"{name}_events.tsv").write_text(text)
    _edf(p / ".ipynb_checkpoints" / "good1-checkpoint.edf", _noise(rng, "AB"))
    (p / "gone.edf").symlink_to(root / "deleted.edf")
    return root, discover_recordings(root)


def test_good_recordings_are_used_beside_the_bad_ones(edf_corpus: tuple[Path, Discovery]) -> None:
    _, found = edf_corpus
    assert [r.recording_id for r in found.recordings] == ["p1__good1", "p1__good2", "p1__good3", "p1__late"]
    assert found.channels == ["A", "B"]


BAD_EDF = {
    "truncated.edf": "p1/truncated.edf: truncated: the header promises 12 data records of 512 bytes (6912 bytes, 12 s) "
    "but the file has 5412 bytes (9 complete records, 9 s)",
    "header_lie.edf": "p1/header_lie.edf: the header says it is 1024 bytes long but 2 signals need 256 x 3 = 768 "
    "bytes: corrupt header",
    "flat.edf": "p1/flat.edf: has flat channel(s) B (constant over the recording): common channel(s) that 4 of 6 "
    "recordings have usable",
    "one_channel.edf": "p1/one_channel.edf: lacks channel(s) B that 4 of 6 recordings have",
    "notes.edf": "p1/notes.edf: not an EDF file (its version field is not '0'; BDF is not supported)",
    "neg.edf": "p1/neg_events.tsv: row 1 (line 2): onset -1.5 is negative or not finite; onsets count from the "
    "file's start",
    "cols.edf": "p1/cols_events.tsv: no duration, trial_type or eventType column (it has onset, type)",
    "semi.edf": "p1/semi_events.tsv: its header 'onset;duration;trial_type' is separated by ';', not tabs; an events "
    "file is tab-separated (BIDS): save it with tabs between the columns",
}


@pytest.mark.parametrize("name", list(BAD_EDF))
def test_bad_file_is_quarantined_with_its_reason(edf_corpus: tuple[Path, Discovery], name: str) -> None:
    root, found = edf_corpus
    rows = [q for q in found.quarantine if q["path"] == str(root / "p1" / name)]
    assert [(q["stage"], q["reason"]) for q in rows] == [("ingest", BAD_EDF[name])]


def test_broken_link_is_quarantined_and_hidden_folder_counted(edf_corpus: tuple[Path, Discovery]) -> None:
    root, found = edf_corpus
    (row,) = [q for q in found.quarantine if q["path"].endswith("gone.edf")]
    assert row["reason"] == (
        f"p1/gone.edf: a broken link (its target {root / 'deleted.edf'} does not exist); fix the link or remove it"
    )
    assert "1 hidden file(s)/folder(s) skipped (p1/.ipynb_checkpoints/): names starting with '.' are editor, " \
           "notebook or OS files, not data" in found.notes  # fmt: skip
    assert len(found.quarantine) == len(BAD_EDF) + 1  # nothing else left out, nothing left out unsaid


def test_mixed_sampling_rates_are_noted_and_both_used(edf_corpus: tuple[Path, Discovery]) -> None:
    _, found = edf_corpus
    assert sorted(r.sfreq for r in found.recordings) == [128.0, 128.0, 128.0, 256.0]
    assert "recordings have different sampling rates (128, 256 Hz); preprocessing resamples them to one" in found.notes


def test_crlf_bom_sidecar_gives_its_seizure(edf_corpus: tuple[Path, Discovery]) -> None:
    _, found = edf_corpus
    good1 = found.recordings[0]
    assert (good1.source, good1.seizures) == ("events-tsv", [(2.0, 5.0)])


def test_seizures_past_the_end_are_clipped_or_left_out_and_listed(edf_corpus: tuple[Path, Discovery]) -> None:
    root, found = edf_corpus
    late = next(r for r in found.recordings if r.recording_id == "p1__late")
    assert late.seizures == [(8.0, 12.0)]  # its 4 in-file ictal seconds stay ictal
    assert found.seizures_past_data == [
        {"path": str(root / "p1" / "late.edf"), "stage": "ingest",
         "reason": "p1/late.edf: seizure 1 (8-18 s) ends after the end of the data (the file holds 12 s): clipped to "
                   "8-12 s, the 4 s of it in the file"},
        {"path": str(root / "p1" / "late.edf"), "stage": "ingest",
         "reason": "p1/late.edf: seizure 2 (20-22 s) starts after the end of the data (the file holds 12 s): left out, "
                   "none of it is in the file"},
    ]  # fmt: skip


def test_one_channel_recordings_alone_are_a_data_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(2):
        _edf(tmp_path / "solo" / f"r{i}.edf", _noise(rng, "A"))
    found = discover_recordings(tmp_path)
    assert found.channels == ["A"] and len(found.recordings) == 2 and found.quarantine == []


def test_nan_samples_quarantine_the_recording() -> None:
    data = np.random.default_rng(0).normal(0, 1e-5, (2, 600))
    data[0, 10] = np.nan
    data[1, 20:22] = np.inf
    scan = scan_signals(Path("p1/nan.edf"), [data[:, :300], data[:, 300:]], ["A", "B"])
    assert scan.error == "p1/nan.edf: NaN or infinite samples after reading, in channel(s) A (1 of 600), B (2 of 600)"


# ---------------------------------------------------------------------------------------------------- events.tsv
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("onset\tduration\ttrial_type\n-3\t2\tseizure\n",
         "row 1 (line 2): onset -3 is negative or not finite; onsets count from the file's start"),
        ("onset\tduration\n3\t2\n", "no trial_type or eventType column (it has onset, duration)"),
        ("onset,duration,trial_type\n3,2,seizure\n",
         "its header 'onset,duration,trial_type' is separated by ',', not tabs; an events file is tab-separated "
         "(BIDS): save it with tabs between the columns"),
        ("onset\tduration\ttrial_type\n3\t0\tseizure\n",
         "row 1 (line 2): duration 0 of a seizure must be a number > 0"),
        ("onset\tduration\ttrial_type\n3\t2\n", "row 1 (line 2) has 2 columns but the header has 3"),
        ("", "empty; expected a header with onset, duration and trial_type or eventType"),
    ],
    ids=["negative-onset", "missing-column", "comma-delimiter", "zero-duration", "short-row", "empty"],
)  # fmt: skip
def test_bad_events_tsv_names_the_file_row_and_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "rec_events.tsv"
    path.write_text(content)
    with pytest.raises(EventsFileError) as info:
        read_events_tsv(path)
    assert str(info.value) == f"{path}: {message}"


def test_events_tsv_in_utf16_is_named(tmp_path: Path) -> None:
    path = tmp_path / "rec_events.tsv"
    path.write_text("onset\tduration\ttrial_type\n3\t2\tseizure\n", encoding="utf-16")
    with pytest.raises(EventsFileError) as info:
        read_events_tsv(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 0); save it as UTF-8 (tab-separated)"


def test_crlf_bom_events_tsv_reads() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rec_events.tsv"
        path.write_bytes(b"\xef\xbb\xbfonset\tduration\teventType\r\n1.5\t2\tsz_foc\r\n10\tn/a\tbckg\r\n")
        assert read_events_tsv(path) == [(1.5, 3.5)]


# ------------------------------------------------------------------------------------------- unreadable, dropped uid
_AS_NOBODY = """
import json, os, sys
from pathlib import Path
from tasks.ingest.discovery import discover_recordings
root = Path(sys.argv[1])
discover_recordings(root / "p")  # load every module while still allowed to read the interpreter's files
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
found = discover_recordings(root)
print(json.dumps({"uid": os.geteuid(), "ids": [r.recording_id for r in found.recordings],
                  "quarantine": found.quarantine}))
"""


@pytest.fixture()
def world_readable_tmp() -> Iterator[Path]:
    """A folder uid 65534 can reach (pytest's tmp_path sits under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="vigil-corpus-"))
    path.chmod(0o755)
    yield path
    for p in [path, *path.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    shutil.rmtree(path)


def test_unreadable_folder_and_file_are_quarantined_under_a_dropped_uid(world_readable_tmp: Path) -> None:
    rng = np.random.default_rng(3)
    root = world_readable_tmp
    for name in ("good1", "good2", "secret"):
        _edf(root / "p" / f"{name}.edf", _noise(rng, "AB"))
    _edf(root / "locked" / "hidden_away.edf", _noise(rng, "AB"))
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    (root / "p" / "secret.edf").chmod(0)
    (root / "locked").chmod(0)
    env = {**os.environ, "HOME": str(root), "PYTHONPATH": str(REPO), "MPLCONFIGDIR": str(root)}
    done = subprocess.run([sys.executable, "-c", _AS_NOBODY, str(root)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["uid"] != 0  # the case really ran without root's powers
    assert out["ids"] == ["p__good1", "p__good2"]
    assert out["quarantine"] == [
        {"path": str(root / "locked"), "stage": "ingest",
         "reason": "locked/: folder cannot be read (Permission denied), so its files are not ingested; give read "
                   "access (chmod -R u+rX) or move it out"},
        {"path": str(root / "p" / "secret.edf"), "stage": "ingest",
         "reason": "p/secret.edf: cannot be opened: Permission denied"},
    ]  # fmt: skip
    assert stat.S_IMODE((root / "locked").stat().st_mode) == 0  # the inputs were left as they were


# ------------------------------------------------------------------------------------------ config YAML, CLI values
def _vigil(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing on stdout: a script reading the run directory gets nothing wrong
    return code, captured.err


@pytest.fixture()
def configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VIGIL_DATA", str(tmp_path / "vd"))
    (tmp_path / "broken.yaml").write_text("train:\n  epochs: [1,\n")
    (tmp_path / "list.yaml").write_text("- train\n- epochs\n")
    (tmp_path / "folder").mkdir()
    return tmp_path


CLI_CASES = {
    "set-bad-yaml": (["--set", "train.epochs=[1,"],
                     "--set train.epochs=[1,: not valid YAML (expected the node content, but found '<stream end>' at "
                     "column 4); close the value's brackets or quotes, or quote it whole to pass it as text"),
    "set-unknown-key": (["--set", "x=[1,"],
                        "--set x: unknown key 'x' under the top level; known keys: augment, compress, evaluate, "
                        "explain, ingest, label, profile, report, runner, seed, synth, task, train"),
    "set-out-of-range": (["--set", "train.epochs=0"],
                         "config: train.epochs: Input should be greater than or equal to 1 (got 0)"),
    "config-folder": (["--config", "{tmp}/folder/"],
                      "--config {tmp}/folder: is a folder; pass a YAML file inside it, e.g. {tmp}/folder/config.yaml"),
    "config-missing": (["--config", "{tmp}/nope.yaml"],
                       "--config {tmp}/nope.yaml: file not found; pass a YAML file (a run's config.yaml works)"),
    "config-invalid-yaml": (["--config", "{tmp}/broken.yaml"],
                            "--config {tmp}/broken.yaml: not valid YAML (expected the node content, but found "
                            "'<stream end>' at line 3, column 1)"),
    "config-list": (["--config", "{tmp}/list.yaml"],
                    "--config {tmp}/list.yaml: holds a list, not a mapping of sections; write e.g. 'train:' then "
                    "'  epochs: 5' below it"),
    "data-missing": (["--data", "{tmp}/no_such_folder"], "--data {tmp}/no_such_folder: no such file or folder"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_argument_is_one_sentence_and_exit_2(configs: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    args, message = CLI_CASES[case]
    argv = ["run", "eeg", *(a.format(tmp=configs) for a in args)]
    assert _vigil(argv, capsys) == (2, f"vigil: {message.format(tmp=configs)}\n")


def test_dead_prefect_api_is_named_with_what_to_do(
    configs: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    with temporary_settings({PREFECT_API_URL: url}):
        code, err = _vigil(["run", "eeg", "--profile", "test"], capsys)
    assert (code, err) == (
        1,
        f"vigil: the Prefect API at {url} does not answer; start it (`vigil server` / `prefect server start`) or "
        "unset PREFECT_API_URL\n",
    )


def test_unexpected_error_is_one_line_and_debug_shows_the_traceback(
    configs: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.config

    def broken(*args, **kwargs):
        raise RuntimeError("the disk answered nonsense\n  (and a second line of detail)")

    monkeypatch.setattr(flows.config, "resolve_config", broken)
    assert _vigil(["run", "eeg"], capsys) == (
        1,
        "vigil: run stopped on an unexpected RuntimeError: the disk answered nonsense; rerun with --debug to see the "
        "traceback\n",
    )
    for argv in (["--debug", "run", "eeg"], ["run", "eeg", "--debug"]):
        with pytest.raises(RuntimeError, match="the disk answered nonsense"):
            main(argv)
