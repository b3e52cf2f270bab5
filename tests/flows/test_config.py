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


def test_config_file_problems_are_one_line_naming_the_file(tmp_path: Path) -> None:
    """PyYAML's own text spans five lines with a caret; a folder or a binary file used to raise a traceback."""
    (tmp_path / "bad.yaml").write_text("train:\n  lr: 0.1\n   epochs: 3\n")
    (tmp_path / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n")
    cases = {
        tmp_path: f"--config {tmp_path}: is a folder; pass a YAML file inside it, e.g. {tmp_path / 'config.yaml'}",
        tmp_path / "bad.yaml": f"--config {tmp_path / 'bad.yaml'}: not valid YAML (mapping values are not allowed "
        "here at line 3, column 10)",
        tmp_path / "binary.yaml": f"--config {tmp_path / 'binary.yaml'}: not UTF-8 text (byte 0); is it a YAML file?",
    }
    for path, message in cases.items():
        with pytest.raises(ValueError) as info:
            resolve_config("defect", config_file=path)
        assert str(info.value) == message


def test_set_value_that_is_not_yaml_is_named() -> None:
    with pytest.raises(ValueError) as info:
        resolve_config("defect", sets=["evaluate.baseline_c=[1, 10"])
    assert str(info.value) == (
        "--set evaluate.baseline_c=[1, 10: not valid YAML (expected ',' or ']', but got '<stream end>' at column 7); "
        "close the value's brackets or quotes, or quote it whole to pass it as text"
    )


def test_set_reaches_into_candidate_overrides_and_merges_with_the_profile() -> None:
    sets = ["train.candidate_overrides.efficientnet_lite0.image_size=160"]
    cfg = resolve_config("defect", profile="quick", sets=sets)
    override = cfg.train.candidate_overrides["efficientnet_lite0"]
    assert override["image_size"] == 160 and override["epochs"] == 6  # the profile's other overrides stay


def test_a_train_key_set_by_the_user_reaches_every_candidate_over_the_profiles_overrides(tmp_path: Path) -> None:
    quick = resolve_config("defect", profile="quick")
    assert quick.train.candidate_recipe("efficientnet_lite0").epochs == 6  # the profile's per-candidate recipe
    cfg = resolve_config("defect", profile="quick", sets=["train.epochs=3"])
    lite0 = cfg.train.candidate_recipe("efficientnet_lite0")
    assert lite0.epochs == 3 and lite0.image_size == 128 and lite0.lr == 1e-3  # only the key the user set moved
    # a config file's train key counts the same, and a --set candidate override still beats it
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 4\n")
    cfg = resolve_config(
        "defect", profile="quick", config_file=path, sets=["train.candidate_overrides.efficientnet_lite0.epochs=5"]
    )
    assert cfg.train.candidate_recipe("efficientnet_lite0").epochs == 5
    assert (
        resolve_config("defect", profile="quick", config_file=path).train.candidate_recipe("efficientnet_lite0").epochs
        == 4
    )
    # a run's own config.yaml (every key written out) reproduces that run's recipe
    path.write_text(config_to_yaml(quick))
    again = resolve_config("defect", config_file=path).train.candidate_recipe("efficientnet_lite0")
    assert again.epochs == 6 and again.image_size == 128


def test_narrowing_the_profiles_candidates_drops_their_profile_overrides_but_not_the_users() -> None:
    sets = ["train.candidates=[efficientnet_lite0+svm, efficientnet_lite0]"]
    cfg = resolve_config("defect", profile="full", sets=sets)
    assert set(cfg.train.candidate_overrides) == {"efficientnet_lite0"}
    assert cfg.train.candidate_recipe("efficientnet_lite0").epochs == 20  # the kept candidate's profile recipe
    with pytest.raises(ValueError, match="candidate_overrides for resnet_medium, which is not a candidate"):
        resolve_config("defect", profile="full", sets=[*sets, "train.candidate_overrides.resnet_medium.epochs=3"])
