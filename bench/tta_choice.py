"""Should the shipped image model average its scores over flipped views (test-time augmentation)? Decided on
validation, over several seeds' saved models.

For each run directory given, the script loads the run's ``model.pt`` and ``splits.csv``, scores the validation
and test images under each view set (``none``; ``hflip``: the image and its mirror; ``flip4``: identity, both
mirrors and the 180-degree turn; ``d8``: those and the four transposed views), averages the class log-probabilities
over the views, and scores them as the evaluate stage does (:func:`tasks.image_scoring.evaluate_classifier` with the
run's ``evaluate.threshold_metric``: the threshold is chosen on validation and frozen for test).

The rule, fixed before any number was seen: the view set with the highest **mean validation balanced accuracy**
over the runs wins; it replaces ``none`` only if its mean gain is larger than the standard deviation of the gain
over the runs (a gain inside the seed-to-seed noise is no reason to pay several times the inference cost). Test
numbers are printed beside, never used to choose.

    python bench/tta_choice.py --run RUN [--run RUN ...] --out bench/results/tta_choice.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from tasks.image_classifier import load_model  # noqa: E402
from tasks.image_io import load_image  # noqa: E402
from tasks.image_scoring import evaluate_classifier, validation_metrics  # noqa: E402


def _views(x: torch.Tensor, name: str) -> list[torch.Tensor]:
    """The views of an ``(N, C, H, W)`` batch a view set averages over (square inputs: transposes keep the size);
    only the set's own views are computed."""
    if name == "none":
        return [x]
    views = [x, x.flip(-1)]
    if name == "hflip":
        return views
    views += [x.flip(-2), x.flip(-1).flip(-2)]
    return views if name == "flip4" else views + [v.transpose(-1, -2) for v in views]


VIEW_SETS = ("none", "hflip", "flip4", "d8")


def _probabilities(model: torch.nn.Module, images: np.ndarray, view_set: str, batch: int = 64) -> np.ndarray:
    """Class probabilities ``(N, classes)`` of the views' mean log-probabilities (a normalised geometric mean: what a
    module that averages its views' log-softmax outputs would give, so it exports as one graph)."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch].transpose(0, 3, 1, 2)))
            logp = torch.stack([torch.log_softmax(model(v).float(), dim=1) for v in _views(x, view_set)]).mean(0)
            out.append(torch.softmax(logp, dim=1).numpy())
    return np.concatenate(out)


def score_run(run: Path) -> dict[str, dict[str, float]]:
    """Validation and test metrics of one run's shipped model under every view set."""
    model, meta = load_model(run / "model.pt")
    if meta.get("geometry") == "tile":
        raise SystemExit(f"{run}: a tiled model; this script compares views of whole images only")
    size, chans, geometry = int(meta["image_size"]), int(meta["in_chans"]), meta.get("geometry", "squash")
    mean = np.asarray(meta["normalization"]["mean"], dtype=np.float32)
    std = np.asarray(meta["normalization"]["std"], dtype=np.float32)
    config = yaml.safe_load((run / "config.yaml").read_text())
    threshold_metric = config["evaluate"]["threshold_metric"]
    table = pd.read_csv(run / "splits.csv", keep_default_na=False, dtype={"sample_id": str})
    rows = table[table["split"].isin(("val", "test"))].reset_index(drop=True)
    images = np.stack([(load_image(p, size, chans, geometry) - mean) / std for p in rows["path"]]).astype(np.float32)
    class_names = list(json.loads((run / "metrics.json").read_text())["class_names"])
    result = {}
    for view_set in VIEW_SETS:
        proba = _probabilities(model, images, view_set)
        predictions = rows[["sample_id", "split", "label"]].copy()
        for k in range(proba.shape[1]):
            predictions[f"prob_{k}"] = proba[:, k]
        test, _, _ = evaluate_classifier(predictions, table, class_names, threshold_metric=threshold_metric, worst_k=0)
        val = validation_metrics(predictions, class_names, test["threshold"])
        result[view_set] = {
            "val_balanced_accuracy": float(val["balanced_accuracy"]),
            "test_accuracy": float(test["accuracy"]),
            "test_balanced_accuracy": float(test["balanced_accuracy"]),
        }
        print(f"{run.name} {view_set:6s} " + " ".join(f"{k} {v:.4f}" for k, v in result[view_set].items()), flush=True)
    return result


def choose(per_run: dict[str, dict[str, dict[str, float]]]) -> dict[str, object]:
    """Apply the module docstring's rule to the validation numbers."""
    val = {v: np.array([r[v]["val_balanced_accuracy"] for r in per_run.values()]) for v in VIEW_SETS}
    best = max(VIEW_SETS, key=lambda v: (val[v].mean(), -VIEW_SETS.index(v)))
    gain = val[best] - val["none"]
    sd = float(gain.std(ddof=1)) if len(gain) > 1 else float("inf")
    adopted = best if best != "none" and gain.mean() > sd else "none"
    summary = {
        v: {
            key: [float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0]
            for key in ("val_balanced_accuracy", "test_accuracy", "test_balanced_accuracy")
            for vals in [[r[v][key] for r in per_run.values()]]
        }
        for v in VIEW_SETS
    }
    return {"best_on_val": best, "val_gain_mean": float(gain.mean()), "val_gain_sd": sd, "adopted": adopted,
            "mean_sd": summary}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, type=Path, help="a defect run directory")
    parser.add_argument("--out", type=Path, help="write the numbers here as JSON")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    per_run = {str(run): score_run(run) for run in args.run}
    decision = choose(per_run)
    for v, stats in decision["mean_sd"].items():
        print(f"{v:6s} " + "  ".join(f"{k} {m:.4f} ± {s:.4f}" for k, (m, s) in stats.items()))
    print(f"best on validation: {decision['best_on_val']} (gain {decision['val_gain_mean']:+.4f} ± "
          f"{decision['val_gain_sd']:.4f}); adopted: {decision['adopted']}")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"runs": per_run, **decision}, indent=2) + "\n")


if __name__ == "__main__":
    main()
