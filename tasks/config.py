"""Per-stage configuration sections (one frozen pydantic model per stage).

They live in ``tasks/`` so a stage can take its own section as a typed argument without importing the flow
layer; ``flows/config.py`` composes them per flow and holds the profiles.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.registry import list_models


class _Section(BaseModel):
    """Frozen, strict: an unknown key is an error that names it, not a silently ignored typo."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class IngestConfig(_Section):
    """Where the images come from (ARCHITECTURE.md, "Inputs vigil accepts")."""

    path: str | None = Field(
        None, description="Image folder ROOT/<class>/*, a CSV manifest path,label[,group], or None for ELPV."
    )
    limit: int | None = Field(
        None, ge=4, description="Use a seeded, class-stratified subset of this many images (for fast profiles)."
    )


class QualityConfig(_Section):
    min_std: float = Field(1e-6, ge=0, description="Images whose pixel standard deviation is at most this are blank.")
    min_side_px: int = Field(8, ge=1, description="Images smaller than this on either side are rejected.")
    drop_duplicates: bool = Field(True, description="Keep only the first copy of byte-identical files.")


class LabelConfig(_Section):
    mode: Literal["binary", "multiclass"] = "binary"
    negative: str | None = Field(None, description="Class folder/label that means 'no defect' (binary mode).")
    defect_threshold: float = Field(0.5, gt=0, le=1, description="ELPV: defective iff probability >= this.")
    confidence_weights: bool = Field(True, description="Weight samples by annotation confidence (ELPV).")
    test_fraction: float = Field(0.25, gt=0, lt=1)
    val_fraction: float = Field(0.15, gt=0, lt=1, description="Fraction of the training part held out for validation.")


class AugmentConfig(_Section):
    """Label-preserving augmentations for inspection images (applied on the fly while training)."""

    hflip: float = Field(0.5, ge=0, le=1)
    vflip: float = Field(0.5, ge=0, le=1)
    rot90: float = Field(0.5, ge=0, le=1)
    affine: float = Field(0.3, ge=0, le=1)
    rotate_deg: float = Field(3.0, ge=0, le=45)
    scale: float = Field(0.05, ge=0, le=0.5, description="Relative zoom range (+/-).")
    translate: float = Field(0.03, ge=0, le=0.3, description="Shift as a fraction of the image side.")
    brightness_contrast: float = Field(0.5, ge=0, le=1)
    brightness: float = Field(0.15, ge=0, le=1)
    contrast: float = Field(0.15, ge=0, le=1)
    blur: float = Field(0.1, ge=0, le=1)
    noise: float = Field(0.1, ge=0, le=1)
    grid_samples: int = Field(8, ge=1, le=64, description="Augmented examples shown in the report.")


class TrainConfig(_Section):
    model: str = "resnet_small"
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for the model factory, e.g. {stem_stride: 4}."
    )
    image_size: int = Field(96, ge=32, le=1024)
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(12, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    patience: int | None = Field(6, ge=1)
    monitor: Literal["loss", "accuracy", "balanced_accuracy"] = "balanced_accuracy"
    class_balanced: bool = Field(True, description="Weight the loss by inverse class frequency.")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    drop_rate: float = Field(0.1, ge=0, lt=1)
    device: str | None = Field(None, description="cpu, cuda, cuda:1 ...; None picks CUDA when present.")
    amp: bool = True
    num_workers: int | None = Field(None, ge=0, description="DataLoader workers; None: 0 on CPU, up to 8 on GPU.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None keeps torch's default.")

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        known = list_models("image")
        if name not in known:
            raise ValueError(f"unknown image model {name!r}; known: {', '.join(known)}")
        return name


class EvaluateConfig(_Section):
    threshold_metric: Literal["accuracy", "balanced_accuracy", "f1", "youden"] = "accuracy"
    baseline: bool = Field(True, description="Also fit the classical HOG/LBP/intensity + SVM baseline.")
    baseline_cv: int = Field(3, ge=2)
    baseline_c: tuple[float, ...] = (1.0, 10.0)
    worst_k: int = Field(8, ge=0, le=64)


class ReportConfig(_Section):
    title: str | None = None


class RunnerConfig(_Section):
    kind: Literal["local", "dask"] = "local"
    dask_address: str | None = None

    @model_validator(mode="after")
    def _address_implies_dask(self) -> RunnerConfig:
        if self.dask_address and self.kind != "dask":
            return self.model_copy(update={"kind": "dask"})
        return self
