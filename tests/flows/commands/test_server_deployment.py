"""``vigil server`` + ``vigil serve`` against a real ``prefect server start``: run a deployment, read it back.

The slow tests share one real server (module fixture) on free loopback ports, with a temporary ``VIGIL_DATA`` and
``PREFECT_HOME``. ``vigil serve`` blocks, so it runs in a subprocess (``python -m flows.commands.serve``) that finds the
server through ``$VIGIL_DATA/prefect/server.json``, exactly as a user's second terminal would. Every subprocess is
stopped in a ``finally``; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import write_part_folder

from flows.commands.server import RunsHTTPServer, free_port, stop_process_group
from flows.config import CONFIG_MODELS, resolve_config
from flows.prefect_api import api_healthy, running_server, write_state

REPO = Path(__file__).resolve().parents[3]
WAIT_S = 120.0
DEPLOYMENT = "defect-detection/test"


# ------------------------------------------------------------------------------------------------ fast tests


def test_prefect_yaml_matches_the_quick_profile_and_the_flows() -> None:
    """prefect.yaml copies the quick profile by hand: fail when flows/config.py moves on without it."""
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    by_entry = {d["entrypoint"]: d for d in spec["deployments"]}
    expected = {
        "flows/defect_detection.py:defect_detection": "defect",
        "flows/seizure_prediction.py:seizure_prediction": "eeg",
    }
    inference = by_entry.pop("flows/batch_inference.py:batch_inference")  # scores new data: no config, no schedule
    assert inference["work_pool"]["name"] == "vigil-pool" and not inference.get("schedules")
    assert set(by_entry) == set(expected)
    for entry, key in expected.items():
        d = by_entry[entry]
        config = CONFIG_MODELS[key].model_validate(d["parameters"]["config"])
        assert config == resolve_config(key, profile="quick"), entry
        assert d["work_pool"]["name"] == "vigil-pool"
        assert d["schedules"][0]["cron"]
    pull = spec["pull"][0]["prefect.deployments.steps.set_working_directory"]
    assert pull["directory"] == "{{ checkout.stdout }}"


def test_running_server_ignores_a_state_file_whose_server_is_gone(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/api"
    write_state(tmp_path, {"api_url": dead, "runs_url": "http://127.0.0.1:1/", "pid": 1})
    assert running_server(tmp_path) is None
    (tmp_path / "prefect" / "server.json").write_text("{not json")
    assert running_server(tmp_path) is None


def test_runs_folder_is_served_read_only_on_loopback(tmp_path: Path) -> None:
    (tmp_path / "runs" / "f" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "f" / "r" / "report.html").write_text("<html>ok</html>")
    server = RunsHTTPServer(tmp_path / "runs", 0)
    server.start_in_thread()
    try:
        assert server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(server.url + "f/r/report.html", timeout=5) as resp:
            assert resp.status == 200 and resp.read() == b"<html>ok</html>"
        with urllib.request.urlopen(server.url + "f/", timeout=5) as resp:
            assert b"r/" in resp.read()  # directory listing
        for method in ("PUT", "POST", "DELETE"):
            req = urllib.request.Request(server.url + "f/r/x.html", data=b"x", method=method)
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=5)
            assert err.value.code == 501
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url + "../prefect/server.json", timeout=5)
        assert err.value.code == 404
        assert not (tmp_path / "runs" / "f" / "r" / "x.html").exists()
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------------ slow tests


@dataclass
class Served:
    server: dict[str, Any]
    data_root: Path
    parts: Path
    serve_log: Path
    env: dict[str, str]
    tmp: Path


def _tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.is_file() else ""


def _start(args: list[str], log: Path, env: dict[str, str], cwd: Path = REPO) -> subprocess.Popen[Any]:
    """A subprocess in its own session (so one killpg stops all it started), output to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for_server(root: Path, proc: subprocess.Popen[Any], log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"vigil server exited with {proc.returncode}:\n{_tail(log)}"
        found = running_server(root)
        if found is not None:
            return found
        time.sleep(0.5)
    pytest.fail(f"vigil server was not healthy within {WAIT_S:.0f} s:\n{_tail(log)}")


def _wait_for_deployment(name: str, proc: subprocess.Popen[Any], log: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + WAIT_S
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"vigil serve exited with {proc.returncode}:\n{_tail(log)}"
            try:
                client.read_deployment_by_name(name)
                return
            except ObjectNotFound:
                time.sleep(0.5)
    pytest.fail(f"deployment {name} did not appear within {WAIT_S:.0f} s:\n{_tail(log)}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``vigil server`` and ``vigil serve`` as a user runs them (two processes), shared by the slow tests.

    Both find each other through the state file only: neither gets PREFECT_API_URL. At teardown the server gets
    SIGTERM (what Ctrl-C does too) and must exit 0, remove its state file and take the Prefect server with it.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    tmp = tmp_path_factory.mktemp("served")
    root = tmp / "vd"
    parts = write_part_folder(tmp / "parts", n_per_class=16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        VIGIL_DATA=str(root),
        PREFECT_HOME=str(tmp / "prefect-home"),
        PREFECT_LOGGING_TO_API_BATCH_INTERVAL="0.5",
        PREFECT_WORKER_QUERY_SECONDS="2",
    )
    server_log, serve_log = tmp / "server.log", tmp / "serve.log"
    server_proc = serve_proc = None
    info: dict[str, Any] | None = None
    try:
        server_proc = _start(
            [
                sys.executable,
                "-m",
                "flows.commands.server",
                "--port",
                str(free_port()),
                "--runs-port",
                str(free_port()),
            ],
            server_log,
            env,
        )
        info = _wait_for_server(root, server_proc, server_log)
        serve_proc = _start(
            [sys.executable, "-m", "flows.commands.serve", "--profile", "test", "--defect-data", str(parts)]
            + ["--defect-cron", "", "--eeg-cron", "", "--name", "test"],
            serve_log,
            env,
        )
        with temporary_settings({PREFECT_API_URL: info["api_url"]}):
            _wait_for_deployment(DEPLOYMENT, serve_proc, serve_log)
            yield Served(server=info, data_root=root, parts=parts, serve_log=serve_log, env=env, tmp=tmp)
    finally:
        if serve_proc is not None:
            stop_process_group(serve_proc, timeout_s=20)
        if server_proc is not None:
            server_proc.send_signal(signal.SIGTERM)
            try:
                code = server_proc.wait(timeout=40)
            finally:
                stop_process_group(server_proc, timeout_s=5)
                if info is not None:  # the Prefect server runs in its own session: make sure it is gone
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(info["prefect_pid"], signal.SIGKILL)
    assert code == 0, _tail(server_log)
    assert not (root / "prefect" / "server.json").exists(), "vigil server left its state file behind"
    assert not api_healthy(info["api_url"]), "the Prefect server outlived vigil server"


def _run_dirs(root: Path) -> set[Path]:
    return set((root / "runs" / "defect-detection").glob("*"))


def _test_config(parts: Path) -> dict[str, Any]:
    return resolve_config("defect", profile="test", sets=[f"ingest.path={parts}"]).model_dump(mode="json")


@pytest.mark.slow
def test_served_deployment_runs_and_reports_through_the_api(served: Served) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment

    flow_run = run_deployment(name=DEPLOYMENT, timeout=WAIT_S, poll_interval=1)
    assert flow_run.state is not None and flow_run.state.is_completed(), f"{flow_run.state}\n{_tail(served.serve_log)}"
    assert flow_run.parameters["config"] == _test_config(served.parts)
    run_dir = Path(flow_run.state.message)
    assert run_dir.parent == served.data_root / "runs" / "defect-detection"
    assert run_dir.name.endswith(f"-{flow_run.name}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["profile"] == "test" and metrics["n"]["train"] + metrics["n"]["val"] + metrics["n"]["test"] == 32

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
        )
    by_key = {a.key: a for a in artifacts}
    table = by_key[f"defect-detection-{metrics['dataset']}-metrics"]
    assert table.type == "table"
    assert f"test accuracy {metrics['test']['accuracy']:.3f}" in table.description
    assert f"SVM baseline {metrics['baseline']['accuracy']:.3f}" in table.description

    found = running_server(served.data_root)
    assert found is not None and found == served.server
    url = f"{found['runs_url']}defect-detection/{run_dir.name}/report.html"
    link = by_key[f"defect-detection-{metrics['dataset']}-report-link"]
    assert url in str(link.data)  # the run links its report over http (Prefect stores links as markdown)
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200 and resp.headers.get_content_type() == "text/html"
        assert "data:image/png;base64," in resp.read().decode()


@pytest.mark.slow
def test_invalid_config_is_rejected_before_the_run_starts(served: Served) -> None:
    """Two layers, measured: the server checks the config's JSON schema and creates no run (unknown key, range);
    a check only pydantic can make (a model name against the registry) fails the run at its start, before the
    flow body, so no run directory either. Each message names the key."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.deployments import run_deployment
    from prefect.exceptions import PrefectHTTPStatusError

    good = _test_config(served.parts)
    unknown_key = copy.deepcopy(good)
    unknown_key["train"]["epochz"] = 3
    bad_value = copy.deepcopy(good)
    bad_value["train"]["epochs"] = 0
    bad_model = copy.deepcopy(good)
    bad_model["train"]["model"] = "resnet_nope"

    def n_runs() -> int:
        with get_client(sync_client=True) as client:
            deployments = DeploymentFilter(name=DeploymentFilterName(any_=["test"]))
            return len(client.read_flow_runs(deployment_filter=deployments, limit=200))

    before_runs, before_dirs = n_runs(), _run_dirs(served.data_root)
    for config, names in (
        (unknown_key, ("config.train", "'epochz' was unexpected")),
        (bad_value, ("config.train.epochs", "minimum of 1")),
    ):
        with pytest.raises(PrefectHTTPStatusError) as err:
            run_deployment(name=DEPLOYMENT, parameters={"config": config}, timeout=0)
        message = str(err.value)
        assert "409 Conflict" in message, message
        for name in names:
            assert name in message, message
    assert n_runs() == before_runs

    flow_run = run_deployment(name=DEPLOYMENT, parameters={"config": bad_model}, timeout=WAIT_S, poll_interval=1)
    assert flow_run.state is not None and flow_run.state.is_failed(), flow_run.state
    assert "config.train.model" in flow_run.state.message and "resnet_nope" in flow_run.state.message
    assert _run_dirs(served.data_root) == before_dirs

    # Prefect merges run parameters over the deployment's one top-level key at a time: a partial config replaces
    # the whole one (here it would drop ingest.path and the test profile). Scheduled a day ahead, then deleted.
    later = datetime.now(UTC) + timedelta(days=1)
    partial = run_deployment(
        name=DEPLOYMENT, parameters={"config": {"train": {"epochs": 1}}}, timeout=0, scheduled_time=later
    )
    with get_client(sync_client=True) as client:
        client.delete_flow_run(partial.id)
    assert partial.parameters == {"config": {"train": {"epochs": 1}}}


@pytest.mark.slow
def test_prefect_yaml_deploys_to_a_process_pool_and_a_worker_runs_it(served: Served) -> None:
    """The documented route: work pool, ``prefect --no-prompt deploy --all``, a worker started outside the checkout."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    env = dict(served.env, PREFECT_API_URL=served.server["api_url"])
    for args in (["work-pool", "create", "vigil-pool", "--type", "process"], ["--no-prompt", "deploy", "--all"]):
        r = subprocess.run(
            [sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=WAIT_S
        )
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    with get_client(sync_client=True) as client:
        for name, entrypoint, cron in (
            ("defect-detection/nightly", "flows/defect_detection.py:defect_detection", "0 2 * * *"),
            ("seizure-prediction/nightly", "flows/seizure_prediction.py:seizure_prediction", "0 3 * * *"),
        ):
            d = client.read_deployment_by_name(name)
            assert d.entrypoint == entrypoint and d.work_pool_name == "vigil-pool"
            assert d.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
            assert [s.schedule.cron for s in d.schedules] == [cron]

    worker_log = served.tmp / "worker.log"
    worker = _start(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "vigil-pool"], worker_log, env, served.tmp
    )
    try:
        flow_run = run_deployment(
            name="defect-detection/nightly",
            parameters={"config": _test_config(served.parts)},
            timeout=WAIT_S,
            poll_interval=1,
        )
    finally:
        stop_process_group(worker, timeout_s=20)
    assert flow_run.state is not None and flow_run.state.is_completed(), f"{flow_run.state}\n{_tail(worker_log)}"
    run_dir = Path(flow_run.state.message)
    assert run_dir.parent == served.data_root / "runs" / "defect-detection" and (run_dir / "metrics.json").is_file()
