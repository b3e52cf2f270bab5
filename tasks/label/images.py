"""Turn raw labels into training targets and a leakage-free, seeded train/val/test split.

ELPV follows Deitsch et al. 2019 (Solar Energy 185): defective iff the annotated defect probability is >= 0.5,
a 75/25 split stratified by label and module type (mono/poly), and sample weights from annotation confidence.
Folders and manifests: the negative class against all others (binary) or every class (multiclass); a ``group``
(e.g. a wafer, a part serial) never lands in both train and test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from tasks.cache import StageCache, StageError, StageResult, run_stage, stage_key
from tasks.config import LabelConfig
from tasks.label.class_names import fold, merge_spellings, typo_error
from tasks.quarantine import collect_quarantine, rejection_summary
from tasks.rundir import RunContext

NEGATIVE_NAMES = ("good", "ok", "normal", "non_defective")
SPLIT_COLUMNS = ["sample_id", "path", "label", "split", "stratum", "group", "synthetic", "class_name", "weight"]
ELPV_CLASS_VALUES = (0.0, 1 / 3, 2 / 3, 1.0)


class LabelError(ValueError):
    """The data cannot be labelled or split as asked; the message says what to change."""


@dataclass
class Labelled:
    table: pd.DataFrame  # SPLIT_COLUMNS
    class_names: list[str]
    notes: list[str]


def label_elpv(records: pd.DataFrame, cfg: LabelConfig) -> tuple[pd.DataFrame, list[str]]:
    """Binary (p >= threshold) or the four ELPV probability classes; weight = annotation confidence |2p - 1|.

    The raters' 1/3 and 2/3 grades mean "possibly defective": they still train, with a third of the weight,
    rather than being thrown away (floored at 1/3 so p = 0.5 never gets zero weight).
    """
    prob = records["label_raw"].astype(float).to_numpy()
    if cfg.mode == "binary":
        label = (prob >= cfg.defect_threshold).astype(int)
        names = ["functional", "defective"]
    else:
        label = np.abs(prob[:, None] - np.array(ELPV_CLASS_VALUES)[None, :]).argmin(axis=1)
        names = ["p000", "p033", "p067", "p100"]
    weight = np.maximum(np.abs(2 * prob - 1), 1 / 3) if cfg.confidence_weights else np.ones_like(prob)
    out = records.copy()
    out["label"] = label
    out["weight"] = weight
    return out, names


def label_named_classes(records: pd.DataFrame, cfg: LabelConfig) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Folder/manifest labels: binary is the negative class vs everything else, multiclass keeps each class.

    Spellings of one class that differ only in case or surrounding spaces are merged first, and a name that looks
    like a typo of another stops the run (see :mod:`tasks.label.class_names`); returns (table, class names, notes).
    """
    spelled = merge_spellings(records["label_raw"].astype(str).tolist())
    raw = records["label_raw"].astype(str).map(spelled.mapping)
    classes = sorted(spelled.counts)
    by_key = {fold(c): c for c in classes}
    negative = cfg.negative
    if negative is None:
        negative = next((c for c in classes if fold(c) in NEGATIVE_NAMES), None)
    elif fold(negative) in by_key:
        negative = by_key[fold(negative)]
    else:
        raise LabelError(f"label.negative={negative!r} is not one of the classes found: {', '.join(classes)}")
    if problem := typo_error(spelled.counts, negative if cfg.mode == "binary" else None):
        raise LabelError(problem)
    out = records.copy()
    out["weight"] = 1.0
    if cfg.mode == "binary":
        if negative is None:
            raise LabelError(
                f"binary mode needs a negative (no-defect) class, but the classes are {', '.join(classes)}; "
                f"name one with --set label.negative=CLASS, call its folder good/ok/normal/non_defective, "
                f"or use --set label.mode=multiclass"
            )
        positives = [c for c in classes if c != negative]
        out["label"] = (raw != negative).astype(int).to_numpy()
        names = [negative, positives[0] if len(positives) == 1 else "defective"]
        return out, names, spelled.notes
    names = ([negative] if negative else []) + [c for c in classes if c != negative]
    out["label"] = raw.map({c: i for i, c in enumerate(names)}).astype(int).to_numpy()
    return out, names, spelled.notes


def _split_indices(
    labels: np.ndarray, strata: np.ndarray, groups: np.ndarray, fraction: float, seed: int, part: str, min_groups: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Split positions into (keep, held_out) of about ``fraction``, stratified, groups kept whole; plus notes.

    With groups, the held-out part is one fold of a ``StratifiedGroupKFold`` with ``round(1 / fraction)`` folds.
    With fewer groups than that (but at least ``min_groups``) it uses one fold per group, so the held-out part
    is one whole group and larger than ``fraction``; below ``min_groups`` the split cannot keep groups apart and is
    a plain stratified one. Both say so in a note. A row without a group is a group of its own.
    """
    idx = np.arange(len(labels))
    notes: list[str] = []
    if (groups != "").any():
        units = np.array([g if g else f"\x1frow {i}" for i, g in enumerate(groups)], dtype=object)
        n_groups = len(np.unique(units))
        wanted = max(2, round(1 / fraction))
        if n_groups >= min_groups:
            n_splits = min(wanted, n_groups)
            sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            keep, held = next(sgkf.split(idx, labels, groups=units))
            if n_splits < wanted:
                share = len(held) / len(idx)
                notes.append(
                    f"only {n_groups} groups for the {part} split, so it holds one whole group ({share:.0%} of "
                    f"{len(idx)} images instead of {fraction:.0%}): no group is in two splits"
                )
            return keep, held, notes
        notes.append(
            f"only {n_groups} group(s) left for the {part} split, so it is drawn from the same groups as training "
            f"(a plain stratified {fraction:.0%} split); add groups for a {part} split that keeps them apart"
        )
    key = np.char.add(labels.astype(str), np.char.add("|", strata.astype(str)))
    _, counts = np.unique(key, return_counts=True)
    stratify = key if counts.min() >= 2 else labels
    keep, held = train_test_split(idx, test_size=fraction, stratify=stratify, random_state=seed)
    return np.sort(keep), np.sort(held), notes


def make_splits(records: pd.DataFrame, source: str, cfg: LabelConfig, seed: int) -> Labelled:
    """Label the usable records and assign ``split`` in {train, val, test}; raises LabelError with a hint."""
    if records.empty:
        raise LabelError("no usable images are left after the quality checks; see quarantine.csv for why")
    notes: list[str] = []
    if source == "elpv":
        table, names = label_elpv(records, cfg)
    else:
        table, names, notes = label_named_classes(records, cfg)
    counts = np.bincount(table["label"].to_numpy(), minlength=len(names))
    missing = [names[i] for i, n in enumerate(counts) if n < 3]
    if missing:
        have = ", ".join(f"{n}: {c}" for n, c in zip(names, counts, strict=True))
        raise LabelError(
            f"class {', '.join(missing)} has fewer than 3 usable images ({have}); a train/val/test split "
            f"needs at least 3 per class; add images or merge classes"
        )
    labels = table["label"].to_numpy()
    strata = table["stratum"].fillna("").astype(str).to_numpy()
    groups = table["group"].fillna("").astype(str).to_numpy()
    # test keeps groups apart from 2 groups on; validation (early stopping, threshold) only from 3, so training
    # is not left with a single group
    train_idx, test_idx, test_notes = _split_indices(labels, strata, groups, cfg.test_fraction, seed, "test", 2)
    sub_train, sub_val, val_notes = _split_indices(
        labels[train_idx], strata[train_idx], groups[train_idx], cfg.val_fraction, seed + 1, "validation", 3
    )
    notes += test_notes + val_notes
    split = np.empty(len(table), dtype=object)
    split[train_idx[sub_train]] = "train"
    split[train_idx[sub_val]] = "val"
    split[test_idx] = "test"
    table["split"] = split
    table["synthetic"] = False
    table["class_name"] = [names[i] for i in labels]
    for part in ("train", "val", "test"):
        present = set(table.loc[table["split"] == part, "label"])
        if len(present) < len(names):
            lacking = ", ".join(names[i] for i in sorted(set(range(len(names))) - present))
            notes.append(f"the {part} split lacks class(es) {lacking}")
    return Labelled(table[SPLIT_COLUMNS].reset_index(drop=True), names, notes)


@task(name="label", cache_policy=NO_CACHE)
def label_images_task(*, cfg: LabelConfig, ctx: RunContext, ingest: StageResult, quality: StageResult) -> StageResult:
    """Label and split the usable images; a data set that cannot be split stops the run with a hint.

    ``ingest``'s summary says the source (ELPV or a folder/manifest), which decides how labels are read;
    ``quality``'s ``usable.csv`` lists the images.
    """
    logger = get_run_logger()
    key = stage_key("label", quality.key, cfg, ctx.seed)

    def build(out: Path) -> dict:
        usable = pd.read_csv(quality.dir / "usable.csv", dtype={"label_raw": str, "stratum": str, "group": str})
        usable[["stratum", "group"]] = usable[["stratum", "group"]].fillna("")
        if usable.empty:  # say why: the most common reason every image was left out, and its setting
            rows = collect_quarantine({"ingest": ingest, "quality": quality}).to_dict("records")
            raise StageError(rejection_summary("no usable images are left after ingest and the quality checks", rows))
        try:
            labelled = make_splits(usable, ingest.summary["source"], cfg, ctx.seed)
        except LabelError as exc:
            raise StageError(str(exc)) from exc
        table = labelled.table.merge(usable[["sample_id", "grey", "height", "width"]], on="sample_id", how="left")
        table.to_csv(out / "splits.csv", index=False)
        counts = {
            part: {
                name: int(((table["split"] == part) & (table["class_name"] == name)).sum())
                for name in labelled.class_names
            }
            for part in ("train", "val", "test")
        }
        return {"class_names": labelled.class_names, "counts": counts, "notes": labelled.notes, "mode": cfg.mode}

    result = run_stage(StageCache(ctx.cache_root), "label", key, build, ctx.refreshes("label"))
    if result.error is None:
        for part, c in result.summary["counts"].items():
            logger.info("label: %s %s", part, ", ".join(f"{k}={v}" for k, v in c.items()))
        for note in result.summary["notes"]:
            logger.warning("label: %s", note)
    return result
