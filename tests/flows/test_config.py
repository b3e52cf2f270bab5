from __future__ import annotations

from pathlib import Path

import pytest

from flows.config import config_to_yaml, resolve_config


def test_precedence_profile_then_file_then_set(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("profile: test\ntrain:\n  epochs: 4\n  lr: 0.01\n")
    cfg = resolve_config("defect", config_file=cfg_file, sets=["train.epochs=5"])
    assert cfg.profile == "test" and cfg.train.model == "resnet_tiny"  # from the file's profile
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 5
    assert resolve_config("defect", profile="quick", config_file=cfg_file).profile == "quick"
    assert resolve_config("defect").profile == "quick"
    assert resolve_config("defect", default_profile="full").train.model == "resnet_medium"


def test_resolved_config_reruns_through_config(tmp_path: Path) -> None:
    cfg = resolve_config("defect", profile="test", sets=["seed=7", "evaluate.baseline_c=[2, 20]"])
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(cfg))
    assert resolve_config("defect", config_file=path) == cfg


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("train.epoch=3", "unknown key 'epoch' under train"),
        ("train.epochs=0", "train.epochs"),
        ("train.schedule=linear", "train.schedule"),
        ("nosuch.key=1", "unknown key 'nosuch'"),
        ("train", "expected KEY=VALUE"),
        ("train=3", "is a section"),
    ],
)
def test_bad_overrides_name_the_key(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_config("defect", sets=[expr])


def test_dask_address_implies_dask_runner() -> None:
    assert resolve_config("defect", sets=["runner.dask_address=tcp://127.0.0.1:8786"]).runner.kind == "dask"


def test_bad_config_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        resolve_config("defect", config_file=bad)
    with pytest.raises(ValueError, match="not found"):
        resolve_config("defect", config_file=tmp_path / "missing.yaml")
