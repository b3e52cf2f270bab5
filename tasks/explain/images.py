"""The explain stage for inspection images: Grad-CAM and LIME overlays, and whether the maps mean anything.

The model explained is the one the run ships (the evaluate stage's choice on validation), on test images: for each
class the most confident correct and the most confident wrong predictions (an inspector learns most from those),
each explained for the class the model predicted. Two numbers say whether the Grad-CAM maps track the model
(:mod:`tasks.explain.attribution`): ``randomisation_rank_corr`` (should be low) and ``deletion_auc`` against
``deletion_auc_random`` (the map's order should destroy the score faster than a random one), averaged over a seeded
sample of test images. A tiled model (``geometry=tile``) is explained on each image's most defective tile: the tile
whose probabilities the run reported for that image (:func:`tasks.image_io.aggregate_tiles`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageCache, StageResult, run_stage, stage_key
from tasks.config import ExplainConfig
from tasks.explain.attribution import (
    class_probability,
    curve_auc,
    deletion_curve,
    gradcam,
    gradcam_layer,
    lime,
    module_name,
    randomised_copy,
    rank_correlation,
    removal_order,
    superpixels,
    upsample,
)
from tasks.explain.plots import plot_deletion, plot_overlays
from tasks.image_classifier import load_model
from tasks.image_io import load_views, most_defective_tiles
from tasks.image_training import chosen_arm
from tasks.rundir import RunContext


def predicted_classes(probs: np.ndarray, threshold: float | None) -> np.ndarray:
    """The class each row is called: positive-class probability against ``threshold`` for two classes (the run's
    decision rule), else the most probable class."""
    if probs.shape[1] == 2 and threshold is not None:
        return (probs[:, 1] >= threshold).astype(np.int64)
    return probs.argmax(axis=1)


def choose_examples(test: pd.DataFrame, n_classes: int, threshold: float | None, per_class: int) -> pd.DataFrame:
    """Per true class, the ``per_class`` most confident correct and most confident wrong test rows.

    ``test`` has ``label`` and ``prob_0 .. prob_{C-1}``; the result adds ``predicted``, ``confidence`` (the
    probability of the predicted class) and ``kind`` (``correct``/``wrong``), ordered class by class.
    """
    probs = test[[f"prob_{k}" for k in range(n_classes)]].to_numpy(dtype=float)
    pred = predicted_classes(probs, threshold)
    rows = test.assign(predicted=pred, confidence=probs[np.arange(len(pred)), pred])
    rows["kind"] = np.where(rows["predicted"] == rows["label"], "correct", "wrong")
    picked = [
        rows[(rows["label"] == c) & (rows["kind"] == kind)].nlargest(per_class, "confidence", keep="first")
        for c in range(n_classes)
        for kind in ("correct", "wrong")
    ]
    return pd.concat(picked, ignore_index=True) if picked else rows.iloc[:0]


def load_batch(
    paths: list[str], meta: dict[str, Any], model: torch.nn.Module | None = None
) -> tuple[np.ndarray, torch.Tensor]:
    """Images ``(N, H, W, C)`` in [0, 1] and the normalised model input ``(N, C, H, W)``, preprocessed as in
    training (the model file's size, channels, geometry and normalisation); for a tiled model, each image's most
    defective tile under ``model`` (required then)."""
    size, chans = int(meta["image_size"]), int(meta["in_chans"])
    geometry = meta.get("geometry", "squash")  # models saved before the choice existed squashed
    views = [load_views(p, size, chans, geometry, meta.get("tile_px")) for p in paths]
    images = np.concatenate(views).astype(np.float32) if views else np.zeros((0, size, size, chans), np.float32)
    mean = np.asarray(meta["normalization"]["mean"], dtype=np.float32)
    std = np.asarray(meta["normalization"]["std"], dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(((images - mean) / std).transpose(0, 3, 1, 2)))
    if len(images) > len(paths):  # tiles: keep the one that decided each image's score
        if model is None:
            raise ValueError("a tiled model (geometry=tile) needs `model` to pick each image's most defective tile")
        with torch.inference_mode():
            proba = torch.cat([torch.softmax(model(b).float(), dim=1) for b in x.split(64)]).numpy()
        keep = most_defective_tiles(proba, [len(v) for v in views])
        images, x = images[keep], x[keep]
    return images, x


def faithfulness(
    model: torch.nn.Module, x: torch.Tensor, targets: np.ndarray, cfg: ExplainConfig, seed: int
) -> dict[str, Any]:
    """The randomisation and deletion checks over the images ``x`` (each explained for its ``targets`` class).

    Returns the means (``randomisation_rank_corr`` over the images whose maps are not constant), the signed-map
    variant, the deletion areas and mean curves, and what was re-initialised.
    """
    rng = np.random.default_rng(seed)
    twin, reset = randomised_copy(model, seed)
    layer, twin_layer = gradcam_layer(model), gradcam_layer(twin)
    corr, signed, deleted, random = [], [], [], []
    for start in range(0, len(x), cfg.batch_size):
        xb, tb = x[start : start + cfg.batch_size], torch.tensor(targets[start : start + cfg.batch_size])
        maps, twin_maps = gradcam(model, layer, xb, tb, relu=False), gradcam(twin, twin_layer, xb, tb, relu=False)
        corr += [rank_correlation(a, b) for a, b in zip(maps, twin_maps, strict=True)]
        signed += [rank_correlation(a, b, absolute=False) for a, b in zip(maps, twin_maps, strict=True)]
        saliency = upsample(np.maximum(maps, 0.0), tuple(xb.shape[-2:]))
        for i in range(len(xb)):
            score = class_probability(model, int(tb[i]))
            deleted.append(deletion_curve(score, xb[i], removal_order(saliency[i], rng), cfg.deletion_steps))
            shuffled = rng.permutation(saliency[i].size)
            random.append(deletion_curve(score, xb[i], shuffled, cfg.deletion_steps))
    corr_arr = np.asarray(corr)
    return {
        "randomisation_rank_corr": float(np.nanmean(corr_arr)) if np.isfinite(corr_arr).any() else None,
        "randomisation_rank_corr_signed": float(np.nanmean(signed)) if np.isfinite(signed).any() else None,
        "randomisation_n_constant": int(np.isnan(corr_arr).sum()),
        "deletion_auc": float(np.mean([curve_auc(c) for c in deleted])),
        "deletion_auc_random": float(np.mean([curve_auc(c) for c in random])),
        "deletion_curve": np.mean(deleted, axis=0).round(4).tolist(),
        "deletion_curve_random": np.mean(random, axis=0).round(4).tolist(),
        "randomised_layers": reset,
        "gradcam_layer": module_name(model, layer),
    }


def _overlays(
    model: torch.nn.Module, meta: dict[str, Any], examples: pd.DataFrame, cfg: ExplainConfig, seed: int
) -> bytes:
    """Grad-CAM and LIME of the chosen examples, drawn as one PNG."""
    images, x = load_batch(examples["path"].tolist(), meta, model)
    targets = torch.tensor(examples["predicted"].to_numpy(dtype=np.int64))
    cams = upsample(gradcam(model, gradcam_layer(model), x, targets, relu=True), tuple(x.shape[-2:]))
    limes = []
    for i in range(len(x)):
        segments = superpixels(images[i], cfg.lime_segments)
        weights = lime(model, x[i : i + 1], int(targets[i]), segments, cfg.lime_samples, seed + i, cfg.batch_size)
        limes.append(weights)
    names = meta["class_names"]
    titles = [
        f"{r.kind}: true {names[int(r.label)]}\ncalled {names[int(r.predicted)]} ({r.confidence:.2f})"
        for r in examples.itertuples()
    ]
    return plot_overlays(images, cams, np.stack(limes), titles, examples["kind"].tolist())


def explain_images(
    weights_path: Path, test: pd.DataFrame, threshold: float | None, cfg: ExplainConfig, seed: int, out: Path
) -> dict[str, Any]:
    """Explain the model in ``weights_path`` on the ``test`` rows (``sample_id, path, label, prob_*``); write
    ``explain.json``, ``overlays.png`` and ``deletion.png`` into ``out`` and return ``explain.json``'s content."""
    model, meta = load_model(weights_path)
    model.eval()
    n_classes = len(meta["class_names"])
    examples = choose_examples(test, n_classes, threshold, cfg.per_class)
    result: dict[str, Any] = {"model": meta.get("candidate") or meta["arch"], "n_test": len(test)}
    if len(examples):
        (out / "overlays.png").write_bytes(_overlays(model, meta, examples, cfg, seed))
    result["examples"] = [
        {"sample_id": str(r.sample_id), "label": int(r.label), "predicted": int(r.predicted)}
        | {"confidence": float(r.confidence), "kind": r.kind}
        for r in examples.itertuples()
    ]
    sample = test.sample(n=min(cfg.metric_images, len(test)), random_state=seed) if len(test) else test
    if len(sample):
        probs = sample[[f"prob_{k}" for k in range(n_classes)]].to_numpy(dtype=float)
        _, x = load_batch(sample["path"].tolist(), meta, model)
        checks = faithfulness(model, x, predicted_classes(probs, threshold), cfg, seed)
        curves = {"Grad-CAM order": checks["deletion_curve"], "random order": checks["deletion_curve_random"]}
        (out / "deletion.png").write_bytes(plot_deletion({k: np.asarray(v) for k, v in curves.items()}))
        result |= checks | {"n_images": len(sample)}
    result["settings"] = cfg.model_dump(mode="json")
    (out / "explain.json").write_text(json.dumps(result, indent=2))
    return result


def explained_test_rows(label: StageResult, train: StageResult, chosen: str | None) -> tuple[pd.DataFrame, Path]:
    """The chosen candidate's test predictions joined with their paths, and its ``weights.pt``."""
    _, folder = chosen_arm(train, chosen)
    predictions = pd.read_csv(folder / "predictions.csv", dtype={"sample_id": str})
    splits = pd.read_csv(label.dir / "splits.csv", dtype={"sample_id": str}, keep_default_na=False)
    test = predictions[predictions["split"] == "test"].merge(splits[["sample_id", "path"]], on="sample_id")
    return test.reset_index(drop=True), folder / "weights.pt"


@task(name="explain", cache_policy=NO_CACHE)
def explain_images_task(
    *, cfg: ExplainConfig, ctx: RunContext, label: StageResult, train: StageResult, evaluate: StageResult
) -> StageResult:
    """Grad-CAM and LIME overlays and the two faithfulness checks of the shipped model; cached.

    Args:
        cfg: The explain section (how many images, LIME's samples, the checks' sample size).
        ctx: The run's context.
        label: The label stage's record (``splits.csv``: the test images' paths).
        train: The train stage's record (each candidate's ``weights.pt`` and ``predictions.csv``).
        evaluate: The evaluate stage's record: which candidate ships (``selection``) and ``evaluation.json``'s
            decision threshold.
    """
    logger = get_run_logger()
    key = stage_key("explain", label.key, train.key, evaluate.key, cfg, ctx.seed)

    def build(out: Path) -> dict[str, Any]:
        evaluation = json.loads((evaluate.dir / "evaluation.json").read_text())
        chosen = evaluation.get("selection", {}).get("model")
        test, weights = explained_test_rows(label, train, chosen)
        result = explain_images(weights, test, evaluation["test"].get("threshold"), cfg, ctx.seed, out)
        keys = ("model", "n_images", "randomisation_rank_corr", "deletion_auc", "deletion_auc_random")
        return {k: result.get(k) for k in keys} | {"n_examples": len(result["examples"])}

    result = run_stage(StageCache(ctx.cache_root), "explain", key, build, ctx.refreshes("explain"))
    logger.info("explain: %s%s", result.summary, " (cached)" if result.cached else "")
    return result
