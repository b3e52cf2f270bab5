"""The image classifier's fit and load: real PNGs in, weights and predictions out, torch's thread count left alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import part_image, split_table

import tasks.image_classifier as classifier
from tasks.config import AugmentConfig, TrainConfig
from tasks.image_augmentation import build_pipeline


def _table(root: Path, n_per_class: int = 8) -> pd.DataFrame:
    """Real 40 px PNGs in a split table."""
    return split_table(root, lambda rng, defect: part_image(rng, 40, defect=defect), n_per_class)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(model="resnet_tiny", image_size=32, epochs=1, batch_size=8, patience=None, **kw)


def test_train_load_and_embed_round_trip(tmp_path: Path) -> None:
    table = _table(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    result = classifier.train_classifier(
        table, ["good", "crack"], _cfg(), build_pipeline(AugmentConfig(), 0), 0, out, None
    )
    predictions = pd.read_csv(result.predictions_path)
    assert sorted(predictions["split"].unique()) == ["test", "val"] and len(predictions) == 8
    assert np.allclose(predictions[["prob_0", "prob_1"]].sum(axis=1), 1.0, atol=1e-5)
    assert not (out / "images.npy").exists()
    model, meta = classifier.load_model(result.weights_path)
    assert meta["class_names"] == ["good", "crack"] and meta["in_chans"] == 1 and meta["image_size"] == 32
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 2)
    feats = classifier.embed_images(result.weights_path, table["path"].tolist()[:5], batch_size=2)
    assert feats.shape[0] == 5 and feats.ndim == 2 and np.isfinite(feats).all()


@pytest.mark.parametrize("fails", [False, True])
def test_threads_are_restored_after_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: bool) -> None:
    before = torch.get_num_threads()
    wanted = 2 if before != 2 else 1
    during: list[int] = []
    real_fit = classifier.fit

    def spy_fit(*args, **kwargs):
        during.append(torch.get_num_threads())
        if fails:
            raise RuntimeError("fit failed")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(classifier, "fit", spy_fit)
    table = _table(tmp_path, n_per_class=4)
    pipeline = build_pipeline(AugmentConfig(), 0)
    try:
        if fails:
            with pytest.raises(RuntimeError, match="fit failed"):
                classifier.train_classifier(table, ["good", "crack"], _cfg(threads=wanted), pipeline, 0, tmp_path, None)
        else:
            classifier.train_classifier(table, ["good", "crack"], _cfg(threads=wanted), pipeline, 0, tmp_path, None)
        assert during == [wanted]
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("pretrained", [True, False])
def test_a_backbone_with_shipped_weights_starts_from_them(tmp_path: Path, pretrained: bool) -> None:
    """efficientnet_lite0 starts from the ImageNet weights (grey stem = the RGB stem summed) and normalises inputs
    the way they expect; with ``pretrained=False`` it starts from scratch with the data's channel statistics."""
    from tasks.pretrained import pretrained_weights_path

    table = _table(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    cfg = TrainConfig(
        model="efficientnet_lite0", image_size=32, epochs=1, batch_size=8, patience=None, lr=1e-9, pretrained=pretrained
    )
    result = classifier.train_classifier(
        table, ["good", "crack"], cfg, build_pipeline(AugmentConfig(), 0), 0, out, None
    )
    meta = torch.load(result.weights_path, map_location="cpu", weights_only=True)
    shipped = torch.load(pretrained_weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    stem = meta["state_dict"]["_conv_stem.weight"]
    close = torch.allclose(stem, shipped["_conv_stem.weight"].sum(dim=1, keepdim=True), atol=1e-5)
    assert close is pretrained
    assert (meta["normalization"]["mean"] == [127 / 255]) is pretrained
    assert meta["pretrained"] == ("efficientnet_lite0" if pretrained else None)
