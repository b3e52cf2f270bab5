"""Typed run configuration: one frozen pydantic model per stage, composed per flow.

The composed model is the flow's only parameter, so the CLI, deployments and the Prefect UI form all validate
through the same schema. Profiles are plain instances; precedence is profile < ``--config`` file < ``--set``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from tasks.config import (
    AugmentConfig,
    CompressConfig,
    EegAugmentConfig,
    EegEvaluateConfig,
    EegExplainConfig,
    EegIngestConfig,
    EegLabelConfig,
    EegSynthConfig,
    EegTrainConfig,
    EvaluateConfig,
    ExplainConfig,
    IngestConfig,
    LabelConfig,
    QualityConfig,
    ReportConfig,
    RunnerConfig,
    SynthConfig,
    TrainConfig,
    _Section,
)

PROFILES = ("test", "quick", "full")
Profile = Literal["test", "quick", "full"]


class DefectConfig(_Section):
    """The resolved configuration of the ``defect-detection`` flow."""

    profile: Profile = "quick"
    seed: int = 0
    ingest: IngestConfig = IngestConfig()
    quality: QualityConfig = QualityConfig()
    label: LabelConfig = LabelConfig()
    augment: AugmentConfig = AugmentConfig()
    synth: SynthConfig = SynthConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    explain: ExplainConfig = ExplainConfig()
    compress: CompressConfig = CompressConfig()
    report: ReportConfig = ReportConfig()
    runner: RunnerConfig = RunnerConfig()


class SeizureConfig(_Section):
    """The resolved configuration of the ``seizure-prediction`` flow (detection and prediction)."""

    profile: Profile = "quick"
    seed: int = 0
    task: Literal["detection", "prediction", "both"] = "both"
    ingest: EegIngestConfig = EegIngestConfig()
    label: EegLabelConfig = EegLabelConfig()
    augment: EegAugmentConfig = EegAugmentConfig()
    synth: EegSynthConfig = EegSynthConfig()
    train: EegTrainConfig = EegTrainConfig()
    evaluate: EegEvaluateConfig = EegEvaluateConfig()
    explain: EegExplainConfig = EegExplainConfig()
    compress: CompressConfig = CompressConfig()
    report: ReportConfig = ReportConfig()
    runner: RunnerConfig = RunnerConfig()


#: The compress stage in the test profile: few calibration inputs and timed passes (its defaults are the quick
#: profile's, so prefect.yaml's quick deployments need no compress section).
_TEST_COMPRESS: dict[str, Any] = {"calibration_samples": 8, "max_test_samples": 64, "latency_repeats": 3,
                                  "latency_repeats_b32": 1, "prune_samples": 32}  # fmt: skip


_SEIZURE_PROFILES: dict[str, dict[str, Any]] = {
    # Seconds: 2 patients x 3 short recordings, tiny net; SOP/SPH scaled to the recording length.
    "test": {
        "ingest": {
            "sfreq": 128.0,
            "simulate": {
                "n_patients": 2,
                "recordings_per_patient": 3,
                "recording_s": 600.0,
                "seizures_per_patient": 2,
                "preictal_s": 150.0,
            },
        },
        "label": {
            "window_s": 4.0,
            "step_s": 4.0,
            "sop_s": 120.0,
            "sph_s": 20.0,
            "interictal_gap_s": 180.0,
            "postictal_s": 60.0,
        },
        "train": {"model": "eeg_cnn_tiny", "epochs": 2, "patience": None, "batch_size": 32},
        "evaluate": {"prediction_smooth_windows": 3},
        "explain": {"max_windows": 1, "ig_steps": 8},
        "synth": {"model": "gan_eeg_tiny", "steps": 20, "batch_size": 16, "gain_epochs": 1},
        "compress": _TEST_COMPRESS,
    },
    # Minutes on 2 CPU cores: 3 patients x 4 x 40 min, 9 leading seizures; SOP 10 min, SPH 2 min.
    "quick": {
        "ingest": {"sfreq": 128.0},
        "label": {"sop_s": 600.0, "sph_s": 120.0, "interictal_gap_s": 900.0, "postictal_s": 300.0},
        "train": {"epochs": 6, "patience": 3},
    },
    # A GPU: hours per patient, the field's SOP 30 min / SPH 5 min.
    "full": {
        "ingest": {
            "simulate": {
                "n_patients": 5,
                "recordings_per_patient": 6,
                "recording_s": 3600.0,
                "seizures_per_patient": 4,
                "preictal_s": 2400.0,
            }
        },
        "label": {"step_s": 2.0, "sop_s": 1800.0, "sph_s": 300.0, "interictal_gap_s": 2400.0},
        "train": {"epochs": 30, "patience": 8, "compare": ["eeg_cnn_lstm", "eeg_transformer"]},
        "explain": {"max_windows": 6, "ig_steps": 64},
        "synth": {"enabled": True, "steps": 5000, "n_critic": None, "model_kwargs": {"width": 16}},
    },
}


_DEFECT_PROFILES: dict[str, dict[str, Any]] = {
    # Seconds: for the test suite. Tiny net, tiny images, a couple of epochs.
    "test": {
        "ingest": {"limit": 160},
        "train": {"model": "resnet_tiny", "image_size": 32, "epochs": 2, "batch_size": 16, "patience": None},
        "evaluate": {"baseline_c": (1.0,), "worst_k": 4},
        "explain": {"lime_samples": 30, "lime_segments": 16, "metric_images": 8, "deletion_steps": 8},
        "augment": {"grid_samples": 4},
        "synth": {"model": "gan_image_tiny", "image_size": 16, "steps": 20, "batch_size": 16, "gain_epochs": 1},
        "compress": _TEST_COMPRESS,
    },
    # Minutes on 2 CPU cores. With synth on, the seed comparison trains the frozen-feature probe at 64 px (below).
    # Two pre-trained candidates, chosen between on validation: frozen EfficientNet-Lite0 features + an SVM (kernel
    # and C cross-validated on train) at 160 px (cheap: one forward pass per image), and Lite0 fine-tuned at 128 px
    # for 6 epochs (fp32 NHWC: bf16 autocast made its depthwise convolutions slower on this CPU, 1.8 vs 1.35 s per
    # batch at 160 px).
    # The from-scratch resnet_fast alone took ~4.5 min here and reached 0.80 accuracy: it is the `full` profile's.
    "quick": {
        "train": {
            "candidates": ["efficientnet_lite0+svm", "efficientnet_lite0"],
            "image_size": 160,
            "candidate_overrides": {
                "efficientnet_lite0": {
                    "image_size": 128,
                    "lr": 1e-3,
                    "epochs": 6,
                    "patience": None,
                    "amp_cpu": False,
                    "channels_last": True,
                }
            },
        },
        # With synth on, the headline candidates already train on real + synthetic images (~6.5 min here); a
        # real-only copy of the Lite0 fine-tune would add ~4.7 min and six 64 px fine-tunes ~20 min more. The seed
        # comparison and TSTR train the frozen-feature probe at the GAN's 64 px instead (seconds each), and the
        # paired arms, not a one-seed real-only copy, answer whether the samples help.
        "synth": {
            "gain_model": "efficientnet_lite0+svm",
            "gain_image_size": 64,
            "gain_epochs": 1,
            "real_only_headline": False,
        },
    },
    # A GPU: the quick profile's candidates at ImageNet resolution with longer schedules, plus Lite2 at its native
    # 260 px and the from-scratch resnet_medium, chosen on validation; synthetic data on, GAN at 128 px. Not measured
    # on a GPU (none lent yet); its two Lite0 candidates alone took 43 min on the 2-core CPU (BENCHMARKS.md).
    "full": {
        "train": {
            "model": "resnet_medium",
            "candidates": ["efficientnet_lite0+svm", "efficientnet_lite0", "efficientnet_lite2", "resnet_medium"],
            "image_size": 224,
            "epochs": 60,
            "batch_size": 64,
            "patience": 15,
            "candidate_overrides": {
                # amp_cpu only acts on a CPU, where bf16 slows Lite's depthwise convolutions (quick, above)
                "efficientnet_lite0": {
                    "lr": 1e-3,
                    "epochs": 20,
                    "patience": 6,
                    "channels_last": True,
                    "amp_cpu": False,
                },
                "efficientnet_lite2": {
                    "lr": 1e-3,
                    "epochs": 20,
                    "patience": 6,
                    "image_size": 260,
                    "channels_last": True,
                    "amp_cpu": False,
                },
                "resnet_medium": {"image_size": 160},
            },
        },
        "evaluate": {"baseline_c": (0.3, 1.0, 3.0, 10.0)},
        "explain": {
            "per_class": 3,
            "lime_samples": 1000,
            "lime_segments": 60,
            "metric_images": 256,
            "deletion_steps": 32,
        },
        "synth": {"enabled": True, "image_size": 128, "steps": 10000, "model_kwargs": {"width": 32}},
    },
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def profile_overrides(flow: str, profile: str) -> dict[str, Any]:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    table = {"defect": _DEFECT_PROFILES, "eeg": _SEIZURE_PROFILES}[flow]
    return deep_merge(table[profile], {"profile": profile})


CONFIG_MODELS: dict[str, type[BaseModel]] = {"defect": DefectConfig, "eeg": SeizureConfig}


def parse_set(expr: str, model: type[BaseModel]) -> dict[str, Any]:
    """Turn ``a.b=value`` into ``{"a": {"b": value}}``, checking the path against ``model``.

    The value is parsed as YAML so numbers, booleans, null and lists work (``train.epochs=3``,
    ``evaluate.baseline_c=[1,10]``); pydantic then validates it against the field's type.
    """
    if "=" not in expr:
        raise ValueError(f"--set {expr!r}: expected KEY=VALUE, e.g. train.epochs=5")
    key, raw = expr.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ValueError(f"--set {expr!r}: empty key")
    current: type[BaseModel] | None = model
    for i, part in enumerate(parts):
        if current is None or part not in current.model_fields:
            where = ".".join(parts[:i]) or "the top level"
            known = ", ".join(sorted(current.model_fields)) if current is not None else "(no sub-keys)"
            raise ValueError(f"--set {key}: unknown key {part!r} under {where}; known keys: {known}")
        annotation = current.model_fields[part].annotation
        if get_origin(annotation) is dict:  # a free mapping (train.candidate_overrides.NAME.KEY): pydantic checks it
            current = None
            break
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    if current is not None:
        example = next(iter(current.model_fields))
        raise ValueError(f"--set {key}: {key} is a section; set one of its keys, e.g. {key}.{example}")
    try:
        value: Any = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(
            f"--set {expr}: not valid YAML ({yaml_problem(exc, with_line=False)}); close the value's brackets or "
            "quotes, or quote it whole to pass it as text"
        ) from exc
    out: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out


def yaml_problem(exc: yaml.YAMLError, *, with_line: bool = True) -> str:
    """PyYAML's error in one line: what it found and where (PyYAML's own text spans five lines with a caret)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return problem
    where = f"line {mark.line + 1}, column {mark.column + 1}" if with_line else f"column {mark.column + 1}"
    return f"{problem} at {where}"


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The sections of a ``--config`` YAML file; a ``ValueError`` of one sentence naming the file and the fix.

    Raises:
        ValueError: If the file is missing, a folder, unreadable, not UTF-8 text, not valid YAML, or not a mapping.
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValueError(f"--config {p}: file not found; pass a YAML file (a run's config.yaml works)") from exc
    except IsADirectoryError as exc:
        raise ValueError(f"--config {p}: is a folder; pass a YAML file inside it, e.g. {p / 'config.yaml'}") from exc
    except PermissionError as exc:
        raise ValueError(f"--config {p}: cannot be read (permission denied)") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"--config {p}: not UTF-8 text (byte {exc.start}); is it a YAML file?") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"--config {p}: not valid YAML ({yaml_problem(exc)})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        kind = {"list": "a list", "str": "a single string"}.get(type(data).__name__, type(data).__name__)
        raise ValueError(
            f"--config {p}: holds {kind}, not a mapping of sections; write e.g. 'train:' then '  epochs: 5' below it"
        )
    return data


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        lines.append(f"{source}: {loc}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def _yield_to(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """``base`` without the per-candidate values that ``layer`` sets for every candidate.

    ``--set train.epochs=3`` (or ``epochs: 3`` in a config file) means every deep candidate trains 3 epochs; left
    alone, a profile's ``train.candidate_overrides.<name>.epochs`` would silently win, being more specific. So a
    later layer's ``train.<key>`` drops ``<key>`` from the earlier layers' candidate overrides; the later layer's
    own ``candidate_overrides`` still apply on top.

    Likewise a later layer's ``train.candidates`` drops the earlier layers' overrides for the candidates it leaves
    out (``--set 'train.candidates=[efficientnet_lite0]'`` on the ``full`` profile): those came with the profile's
    list, not from the user, so they are no reason to refuse the config.
    """
    train, overrides = layer.get("train"), (base.get("train") or {}).get("candidate_overrides")
    if not isinstance(train, dict) or not isinstance(overrides, dict):
        return base
    keys = set(train) - {"candidates", "candidate_overrides", "model"}
    kept = train.get("candidates")
    pruned = {
        name: {k: v for k, v in (o or {}).items() if k not in keys}
        for name, o in overrides.items()
        if not isinstance(kept, list) or name in kept
    }
    return {**base, "train": {**base["train"], "candidate_overrides": pruned}}


def resolve_config(
    flow: str,
    *,
    profile: str | None = None,
    config_file: str | Path | None = None,
    sets: list[str] | None = None,
    default_profile: str = "quick",
) -> BaseModel:
    """Resolve profile < config file < --set into one validated config.

    A layer's ``train.<key>`` applies to every candidate: it replaces that key in the earlier layers'
    ``train.candidate_overrides`` (:func:`_yield_to`).

    Without an explicit ``profile``, a ``profile:`` key in the config file decides, then ``default_profile``
    (the CLI passes ``quick`` without a GPU and ``full`` with one).
    """
    model = CONFIG_MODELS[flow]
    file_data = load_config_file(config_file) if config_file else {}
    set_data: dict[str, Any] = {}
    for expr in sets or []:
        set_data = deep_merge(set_data, parse_set(expr, model))
    chosen = profile or set_data.get("profile") or file_data.get("profile") or default_profile
    merged = deep_merge(_yield_to(profile_overrides(flow, chosen), file_data), file_data)
    merged = deep_merge(_yield_to(merged, set_data), set_data)
    merged["profile"] = chosen
    try:
        return model.model_validate(merged)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc, "config")) from exc


def config_to_yaml(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def gpu_available() -> bool:
    """Whether CUDA is usable: without ``--profile``, the CLI and ``vigil serve`` pick ``full`` with a GPU, else
    ``quick``.

    torch is imported only here, so building the CLI's parser and the config stays fast.
    """
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False
