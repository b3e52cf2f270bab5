"""The frame around a flow: which named runs may be resumed, refusals before any folder is touched, a full disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import write_part_folder

from flows.config import config_to_yaml, resolve_config
from flows.lifecycle import config_difference, resume_problem

FLOW = "defect-detection"


def _config(*sets: str):
    return resolve_config("defect", profile="test", sets=list(sets))


def _existing_run(root: Path, name: str, config) -> Path:
    d = root / "runs" / FLOW / f"20250301T120000Z-{name}"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(config_to_yaml(config))
    return d


def test_same_config_resumes(tmp_path: Path) -> None:
    _existing_run(tmp_path, "nightly", _config("ingest.path=/data/a"))
    assert resume_problem(tmp_path, FLOW, "nightly", _config("ingest.path=/data/a")) is None
    assert resume_problem(tmp_path, FLOW, "fresh-name", _config("ingest.path=/data/b")) is None


def test_another_data_set_is_refused(tmp_path: Path) -> None:
    d = _existing_run(tmp_path, "nightly", _config("ingest.path=/data/a"))
    assert resume_problem(tmp_path, FLOW, "nightly", _config("ingest.path=/data/b")) == (
        f"run name 'nightly' is taken by {d}, and it was made with another data set (/data/a); "
        f"choose another run name, or resume that run with its own config (--config {d / 'config.yaml'})"
    )


def test_another_config_is_refused_naming_the_keys(tmp_path: Path) -> None:
    d = _existing_run(tmp_path, "nightly", _config("ingest.path=/data/a"))
    difference = config_difference(d, _config("ingest.path=/data/a", "train.epochs=7", "seed=3"))
    assert difference == "it was made with another config (seed, train.epochs differ)"


def test_a_run_without_config_yaml_is_not_resumed(tmp_path: Path) -> None:
    d = tmp_path / "runs" / FLOW / "20250301T120000Z-nightly"
    d.mkdir(parents=True)
    assert config_difference(d, _config()) == "it has no config.yaml"
    (d / "config.yaml").write_text("train: {epochz: 3}\n")
    assert config_difference(d, _config()) == "its config.yaml is not a valid config of this flow (ValidationError)"


def _snapshot(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.slow
def test_named_runs_truncated_cache_and_copies_end_to_end(prefect_harness, tmp_path, monkeypatch) -> None:
    """`--name pronghorn` leaves "…-mahogany-pronghorn" untouched; a truncated cached weights.pt is rebuilt; the
    run's splits.csv is a copy; resuming with another config is refused without touching the run."""
    from flows.defect_detection import defect_detection

    monkeypatch.setenv("VIGIL_DATA", str(tmp_path / "vd"))
    config = _config(f"ingest.path={write_part_folder(tmp_path / 'parts', n_per_class=16)}", "train.epochs=1")

    def run(name: str, cfg=config):
        state = defect_detection.with_options(flow_run_name=name)(config=cfg, resume=True, return_state=True)
        result = state.result(raise_on_failure=False)
        return state, Path(result) if isinstance(result, str) else None

    s1, first = run("mahogany-pronghorn")
    assert s1.is_completed(), s1.message
    before = _snapshot(first)
    (weights,) = (tmp_path / "vd" / "cache" / "train").glob("*/weights.pt")
    weights.write_bytes(weights.read_bytes()[:100])

    s2, second = run("pronghorn")
    assert s2.is_completed(), s2.message
    assert second != first and _snapshot(first) == before
    log = (second / "run.log").read_text()
    assert f"cache: entry train/{weights.parent.name} is not usable: weights.pt has 100 bytes where" in log
    assert json.loads((second / "metrics.json").read_text())["cached"]["train"] is False
    cached_splits = [p.read_bytes() for p in (tmp_path / "vd" / "cache").glob("*/*/splits.csv")]
    (second / "splits.csv").write_text("edited\n")
    assert [p.read_bytes() for p in (tmp_path / "vd" / "cache").glob("*/*/splits.csv")] == cached_splits

    after_second = _snapshot(second)
    s3, third = run("pronghorn", config.model_copy(update={"seed": config.seed + 1}))
    assert s3.is_failed() and third is None
    assert s3.message.startswith(f"run name 'pronghorn' is taken by {second}, and it was made with another config")
    assert _snapshot(second) == after_second
    assert len(list((tmp_path / "vd" / "runs" / FLOW).iterdir())) == 2


def _stage_ok(*, ctx, **kwargs):
    from tasks.cache import StageResult

    return StageResult(stage="ingest", key="k", path="", cached=False, seconds=0.0)


def test_a_full_disk_while_writing_the_report_ends_failed_with_one_sentence(tmp_path: Path, monkeypatch) -> None:
    import errno

    import tasks.cache as cache_mod
    from flows.lifecycle import flow_run

    monkeypatch.setenv("VIGIL_DATA", str(tmp_path / "vd"))
    monkeypatch.setattr(cache_mod, "free_bytes", lambda folder: 0)

    def report(**kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with flow_run(FLOW, _config(), None, ("ingest",), False, report) as run:
        run.stage("ingest", _stage_ok)
    assert run.state.is_failed()
    assert run.state.message == (
        f"no space left on device under {run.run_dir} (0 B free); free space or set VIGIL_DATA to a larger disk"
    )


def test_a_refused_run_touches_nothing_and_runs_no_stage(tmp_path: Path, monkeypatch) -> None:
    from flows.lifecycle import flow_run

    monkeypatch.setenv("VIGIL_DATA", str(tmp_path / "vd"))
    old = _existing_run(tmp_path / "vd", "local", _config("seed=5"))
    monkeypatch.setattr("flows.lifecycle.runtime.flow_run.get_name", lambda: "local")
    ran: list[str] = []

    def report(**kwargs):
        ran.append("report")
        return {}

    with flow_run(FLOW, _config(), None, ("ingest",), True, report) as run:
        ran.append(run.stage("ingest", _stage_ok).stage)
    assert ran == [] and run.state.is_failed() and run.state.message.startswith("run name 'local' is taken by")
    assert [p.name for p in old.iterdir()] == ["config.yaml"] and len(list(old.parent.iterdir())) == 1


def test_a_crashed_run_is_reported_and_says_where_its_run_directory_is(tmp_path: Path, monkeypatch) -> None:
    """A bug in a stage propagates (Prefect records the crash), after the report; the exception names the run
    directory so ``vigil run`` still prints it as its last line."""
    from flows.lifecycle import flow_run, run_dir_of

    monkeypatch.setenv("VIGIL_DATA", str(tmp_path / "vd"))
    reported: list[str | None] = []

    def report(**kwargs):
        reported.append(kwargs["error"])
        return {}

    def stage_bug(*, ctx, **kwargs):
        raise RuntimeError("n_splits=4 greater than the number of groups: 3")

    with pytest.raises(RuntimeError) as info:
        with flow_run(FLOW, _config(), None, ("ingest",), False, report) as run:
            run.stage("ingest", stage_bug)
    assert reported == ["RuntimeError: n_splits=4 greater than the number of groups: 3"]
    assert run.state.is_failed()
    assert run_dir_of(info.value) == run.run_dir and run.run_dir.is_dir()
    assert run_dir_of(str(run.run_dir)) == run.run_dir and run_dir_of(ValueError("x")) is None
