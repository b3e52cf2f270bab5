"""``vigil sweep``: a grid × seeds as subflow runs, summarised as mean ± sd with the best chosen on validation."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_part_folder

from flows.cli import main
from flows.commands.sweep import grid_points, point_sets, read_grid
from flows.commands.sweep_report import summarise


def test_grid_file_expands_in_order_and_bad_files_are_named(tmp_path: Path) -> None:
    grid = tmp_path / "g.yaml"
    grid.write_text("train.lr: [0.001, 0.003]\ntrain.epochs: [1, 2]\n")
    points = grid_points(read_grid(grid))
    assert points[0] == {"train.lr": 0.001, "train.epochs": 1} and len(points) == 4
    assert point_sets(points[3]) == ["train.lr=0.003", "train.epochs=2"]
    grid.write_text("train.lr: 0.001\n")
    with pytest.raises(ValueError, match=r"train.lr must map to a non-empty list of values, got 0.001"):
        read_grid(grid)
    grid.write_text("- a\n")
    with pytest.raises(ValueError, match="expected a mapping of config keys to value lists"):
        read_grid(grid)


def test_summary_is_mean_and_sd_over_seeds_and_the_best_is_chosen_on_validation() -> None:
    rows = pd.DataFrame(
        [
            {"config": 0, "train.lr": 0.1, "seed": 0, "status": "ok", "selection.value": 0.6, "test.accuracy": 0.9},
            {"config": 0, "train.lr": 0.1, "seed": 1, "status": "ok", "selection.value": 0.8, "test.accuracy": 0.9},
            {"config": 1, "train.lr": 0.2, "seed": 0, "status": "ok", "selection.value": 0.75, "test.accuracy": 0.5},
            {"config": 1, "train.lr": 0.2, "seed": 1, "status": "failed", "selection.value": None},
        ]
    )
    summary, best = summarise(rows, ["train.lr"], "selection.value")
    first = summary.iloc[0]
    assert first["selection.value mean"] == pytest.approx(0.7) and first["selection.value sd"] == pytest.approx(
        0.1414, 1e-3
    )
    assert summary.iloc[1]["n_seeds"] == 1 and pd.isna(summary.iloc[1]["selection.value sd"])
    assert best == 1  # 0.75 > 0.70 on validation, although config 0 is far better on test
    assert summarise(rows, ["train.lr"], None)[1] is None


def test_a_bad_key_stops_the_sweep_before_any_run(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("VIGIL_DATA", str(tmp_path / "vd"))
    grid = tmp_path / "g.yaml"
    grid.write_text("train.lrr: [0.1]\n")
    assert main(["sweep", "defect", "--grid", str(grid), "--profile", "test"]) == 2
    assert "unknown key 'lrr' under train" in capsys.readouterr().err
    assert not (tmp_path / "vd" / "runs").exists()


@pytest.mark.slow
def test_a_four_configuration_grid_with_two_seeds_runs_end_to_end(prefect_harness, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIGIL_DATA", str(tmp_path / "vd"))
    root = write_part_folder(tmp_path / "parts", n_per_class=16)
    grid = tmp_path / "g.yaml"
    grid.write_text("train.lr: [0.001, 0.003]\ntrain.epochs: [1, 2]\n")
    argv = ["sweep", "defect", "--grid", str(grid), "--seeds", "2", "--profile", "test", "--data", str(root)]
    assert main(argv) == 0
    out = Path(capsys.readouterr().out.strip().splitlines()[-1])
    rows = pd.read_csv(out / "sweep.csv")
    assert len(rows) == 8 and (rows["status"] == "ok").all() and sorted(set(rows["seed"])) == [0, 1]
    assert all((Path(d) / "metrics.json").is_file() for d in rows["run_dir"])
    seeds = [json.loads((Path(d) / "metrics.json").read_text())["seed"] for d in rows["run_dir"]]
    assert seeds == [0, 1] * 4
    page = (out / "sweep.html").read_text()
    assert "★" in page and "±" in page and "data:image/png" in page
    assert out.parent == tmp_path / "vd" / "sweeps" / "defect"
