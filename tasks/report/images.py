"""Assemble the defect-detection run directory, report.html and Prefect artifacts from the stage records.

Everything comes from the records the flow hands over (their summaries and the files in their folders), plus
the report's own config section and the run's profile and seed: the report reads no other stage's config.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageResult
from tasks.compare import Comparison, regression_check
from tasks.config import ReportConfig
from tasks.image_training import chosen_arm
from tasks.quarantine import collect_quarantine
from tasks.report.common import (
    ReportDoc,
    card_description,
    dataset_slug,
    fmt,
    grid_png,
    html_table,
    img_tag,
    ingest_source,
    markdown_table,
    png_data_uri,
    publish_report_link,
    regression_failure,
    render_html,
    run_metrics,
    write_json,
    write_lineage,
)
from tasks.report.compress import compress_metrics, compress_section, copy_models, read_compress
from tasks.report.explain import explain_metrics, explain_section, publish_explain
from tasks.report.plots import plot_confusion, plot_learning_curves, plot_roc, plot_worst
from tasks.report.synthetic import USEFULNESS, synthetic_metrics, synthetic_section
from tasks.rundir import RunContext, copy_file

FLOW = "defect-detection"
HEADLINE_KEYS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "threshold")


def _ok(stages: dict[str, StageResult], name: str) -> StageResult | None:
    st = stages.get(name)
    return st if st is not None and not st.error else None


def _chosen(evaluation: dict[str, Any] | None) -> str | None:
    """The candidate the evaluate stage chose on validation, if it chose among several."""
    return ((evaluation or {}).get("selection") or {}).get("model")


def read_evaluation(stages: dict[str, StageResult]) -> dict[str, Any]:
    """The evaluate stage's ``evaluation.json`` (test and baseline metrics, ROC points, worst errors), or {}."""
    evaluate = _ok(stages, "evaluate")
    return json.loads((evaluate.dir / "evaluation.json").read_text()) if evaluate else {}


def build_metrics(
    stages: dict[str, StageResult],
    evaluation: dict[str, Any],
    *,
    dataset: str,
    profile: str,
    seed: int,
    elapsed_s: float,
    error: str | None,
) -> dict[str, Any]:
    """metrics.json as docs/architecture.md fixes it (nested; proportions as fractions), before the comparison
    with the previous run."""
    metrics = run_metrics(FLOW, dataset, stages, elapsed_s, profile=profile, seed=seed)
    n: dict[str, int] = {}
    if label := _ok(stages, "label"):
        for part, counts in label.summary["counts"].items():
            n[part] = int(sum(counts.values()))
        metrics["class_names"] = label.summary["class_names"]
    if quality := _ok(stages, "quality"):
        n["checked"] = quality.summary["n_checked"]
    n["quarantined"] = int(len(collect_quarantine(stages)))
    metrics["n"] = n
    if train := _ok(stages, "train"):
        s, _ = chosen_arm(train, _chosen(evaluation))
        metrics["train"] = {k: s.get(k) for k in ("model", "device", "best_epoch", "epochs_run", "n_parameters")}
    if evaluation:
        metrics["test"] = evaluation["test"]
        if "models" in evaluation:
            metrics["models"] = evaluation["models"]
            metrics["selection"] = evaluation["selection"]
            metrics.setdefault("train", {})["model"] = evaluation["selection"]["model"]
        if "baseline" in evaluation:
            metrics["baseline"] = evaluation["baseline"]
            if note := baseline_beats_chosen(evaluation):
                metrics["baseline_note"] = note
    if explain := _ok(stages, "explain"):
        metrics["explain"] = explain_metrics(explain)
    if compress := _ok(stages, "compress"):
        metrics["compress"] = compress_metrics(read_compress(compress))
    if usefulness := _ok(stages, USEFULNESS):
        metrics["synthetic"] = synthetic_metrics(usefulness, stages.get("synth"))
    if error:
        metrics["error"] = error
    return metrics


def baseline_beats_chosen(evaluation: dict[str, Any]) -> str | None:
    """A sentence when the classical baseline beat the chosen model on validation (by the selection metric): the
    baseline does not ship (it does not export), so a person must know the shipped model is the weaker one."""
    selection, base_val = evaluation.get("selection"), evaluation.get("baseline", {}).get("val", {})
    if not selection or selection.get("value") is None or base_val.get(selection["metric"]) is None:
        return None
    margin = float(base_val[selection["metric"]]) - float(selection["value"])
    if margin <= 0:
        return None
    return (
        f"The HOG/LBP + SVM baseline beat the chosen model {selection['model']} on validation "
        f"{selection['metric']} by {margin:.3f} ({base_val[selection['metric']]:.3f} vs {selection['value']:.3f}); "
        "the shipped model.pt is the network. Consider a pre-trained candidate or more training."
    )


def describe(metrics: dict[str, Any]) -> str:
    """One line of headline numbers for artifact cards (the UI shows descriptions without a click)."""
    if "error" in metrics:
        return f"FAILED: {metrics['error'][:200]}"
    t = metrics.get("test", {})
    b = metrics.get("baseline", {})
    parts = [f"test accuracy {t.get('accuracy', float('nan')):.3f}"]
    if "balanced_accuracy" in t:
        parts.append(f"balanced {t['balanced_accuracy']:.3f}")
    if b:
        parts.append(f"SVM baseline {b['accuracy']:.3f}")
    return f"{metrics['dataset']}: " + ", ".join(parts) + f" (n_test={metrics['n'].get('test', 0)})"


def headline_rows(metrics: dict[str, Any]) -> list[dict[str, str]]:
    """Rows ``metric | model | baseline`` for the headline table (markdown, HTML and the table artifact)."""
    test = metrics.get("test", {})
    base = metrics.get("baseline", {})
    return [{"metric": k, "model": fmt(test.get(k)), "baseline": fmt(base.get(k))} for k in HEADLINE_KEYS]


# ------------------------------------------------------------------------------------------- run-directory files


def write_run_files(
    run_dir: Path, stages: dict[str, StageResult], evaluation: dict[str, Any], threshold_metric: str | None
) -> pd.DataFrame:
    """quarantine.csv, splits.csv, augment.json and model.pt in the run folder; returns the quarantine table."""
    quarantine = collect_quarantine(stages)
    quarantine.to_csv(run_dir / "quarantine.csv", index=False)
    label, train, augment = _ok(stages, "label"), _ok(stages, "train"), _ok(stages, "augment")
    if train and (train.dir / "splits.csv").is_file():
        copy_file(train.dir / "splits.csv", run_dir / "splits.csv")  # real rows + the synthetic rows it used
    elif label:
        copy_file(label.dir / "splits.csv", run_dir / "splits.csv")
    if augment:
        copy_file(augment.dir / "augment.json", run_dir / "augment.json")
    if train and evaluation:
        _write_model(run_dir, train, evaluation, threshold_metric)
    if compress := _ok(stages, "compress"):
        copy_models(compress, run_dir)
    return quarantine


def _write_model(run_dir: Path, train: StageResult, evaluation: dict[str, Any], threshold_metric: str | None) -> None:
    """model.pt: the trained weights plus what prediction needs (decision threshold, positive class, test scores)."""
    chosen = evaluation.get("selection", {}).get("model")
    entry = train.summary.get("candidates", {}).get(chosen, {"path": train.path})
    meta = torch.load(Path(entry["path"]) / "weights.pt", map_location="cpu", weights_only=True)
    meta["threshold"] = evaluation["test"].get("threshold")
    meta["threshold_metric"] = threshold_metric
    meta["positive_class"] = meta["class_names"][1] if len(meta["class_names"]) == 2 else None
    meta["test_metrics"] = {k: evaluation["test"].get(k) for k in ("accuracy", "balanced_accuracy", "roc_auc")}
    torch.save(meta, run_dir / "model.pt")
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


# ------------------------------------------------------------------------------------------------ report sections


def _stratum_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    base_groups = metrics.get("baseline", {}).get("by_group", {})
    return [
        {
            "stratum": g,
            "model accuracy": f"{m['accuracy']:.4f}",
            "baseline accuracy": f"{base_groups[g]['accuracy']:.4f}" if base_groups.get(g) else "n/a",
            "model balanced": f"{m['balanced_accuracy']:.4f}",
            "n": m.get("n", ""),
        }
        for g, m in (metrics["test"].get("by_group") or {}).items()
    ]


def _test_sections(
    doc: ReportDoc,
    metrics: dict[str, Any],
    evaluation: dict[str, Any],
    comparison: Comparison | None,
    threshold_metric: str | None,
) -> None:
    """Headline table, comparison with the previous run, per-stratum table, confusion matrices, ROC, threshold and
    the most confident errors."""
    rows = headline_rows(metrics)
    body = html_table(rows) + f"<p>{html.escape(describe(metrics))}</p>"
    doc.add("Headline (test split)", body, "## Headline (test split)", markdown_table(rows))
    if comparison is not None:
        doc.comparison(comparison)
    if group_rows := _stratum_rows(metrics):
        doc.add("Per stratum", html_table(group_rows), "## Per stratum", markdown_table(group_rows))
    class_names = metrics.get("class_names", [])
    cm = plot_confusion(metrics["test"]["confusion_matrix"], class_names, "network")
    plots = [img_tag(cm, "confusion matrix")]
    if "baseline" in metrics:
        plots.append(img_tag(plot_confusion(metrics["baseline"]["confusion_matrix"], class_names, "SVM"), "svm"))
    roc = plot_roc({"network": evaluation["roc"].get("cnn"), "SVM baseline": evaluation["roc"].get("baseline")})
    plots.append(img_tag(roc, "ROC"))
    md = ["## Confusion matrix and ROC", f"![confusion]({png_data_uri(cm)})"]
    doc.add("Confusion matrices and ROC", " ".join(plots), *md, *([f"![roc]({png_data_uri(roc)})"] if roc else []))
    thr = metrics["test"].get("threshold")
    if thr is not None:
        doc.add(
            "Decision threshold",
            f"<p>{thr:.4f} on the positive-class probability, chosen on the validation split to maximise "
            f"{html.escape(str(threshold_metric))}; stored in model.pt.</p>",
        )
    if worst := plot_worst(evaluation.get("worst_errors", [])):
        doc.add("Most confident errors (test)", img_tag(worst, "worst errors"))


def _training_section(doc: ReportDoc, train: StageResult, evaluation: dict[str, Any]) -> None:
    s, folder = chosen_arm(train, _chosen(evaluation))
    history = json.loads((folder / "history.json").read_text())
    if not history or all(h.get("train_loss") is None for h in history):  # a linear probe has no epochs
        return
    curves = plot_learning_curves(history)
    doc.add(
        "Training",
        f"<p>{html.escape(str(s['model']))} ({s['n_parameters']:,} parameters) on {s['device']}; "
        f"best epoch {s['best_epoch']} of {s['epochs_run']}.</p>" + img_tag(curves, "learning curves"),
        "## Learning curves",
        f"![curves]({png_data_uri(curves)})",
    )


def _synthetic_section(doc: ReportDoc, metrics: dict[str, Any], synth: StageResult) -> None:
    grid = grid_png(synth.dir / "grid.png")
    names = ", ".join(metrics.get("class_names", []))
    extra = f"<p>GAN samples, one row per class ({html.escape(names)}).</p>" + img_tag(grid, "synthetic grid")
    title, body, synth_md = synthetic_section(metrics["synthetic"], extra)
    doc.add(title, body, *synth_md, *([f"![synthetic samples]({png_data_uri(grid)})"] if grid else []))


def _augment_section(doc: ReportDoc, augment: StageResult) -> None:
    grid = grid_png(augment.dir / "augment_grid.png")
    doc.add(
        "Augmentation",
        f"<p>{html.escape(', '.join(augment.summary['transforms']))}. Each row: the original, then "
        f"augmented copies.</p>" + img_tag(grid, "augmentation grid"),
    )


def data_notes(stages: dict[str, StageResult]) -> list[str]:
    """What ingest and label said about the data (merged class spellings, skipped hidden files, paths outside the
    manifest's folder, how few groups were split), so the report shows what the log warned about."""
    return [
        f"{name}: {note}"
        for name in ("ingest", "label")
        if (st := stages.get(name)) is not None
        for note in st.summary.get("notes", [])
    ]


def candidate_rows(metrics: dict[str, Any]) -> list[dict[str, str]]:
    """One row per trained candidate: validation score it was chosen by, test accuracy and balanced accuracy."""
    selection = metrics["selection"]
    rows = []
    for name, m in metrics["models"].items():
        test = m["test"]
        ci = test.get("balanced_accuracy_ci95")
        rows.append(
            {
                "candidate": name + (" (chosen)" if name == selection["model"] else ""),
                f"val {selection['metric']}": fmt(m["val"].get(selection["metric"])),
                "test accuracy": fmt(test.get("accuracy")),
                "test balanced accuracy": fmt(test.get("balanced_accuracy"))
                + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""),
            }
        )
    return rows


def _candidates_section(doc: ReportDoc, metrics: dict[str, Any]) -> None:
    rows = candidate_rows(metrics)
    sel = metrics["selection"]
    text = f"Chosen on the validation split by {sel['metric']}: {sel['model']}; test numbers never chose anything."
    doc.add(
        "Candidates",
        f"<p>{html.escape(text)}</p>" + html_table(rows),
        f"## Candidates\n{text}\n\n" + markdown_table(rows),
    )


def report_body(
    metrics: dict[str, Any],
    stages: dict[str, StageResult],
    evaluation: dict[str, Any],
    comparison: Comparison | None,
    quarantine: pd.DataFrame,
    run_dir: Path,
    error: str | None,
    threshold_metric: str | None,
) -> ReportDoc:
    """report.html's sections and the markdown artifact, in reading order."""
    doc = ReportDoc(md=[f"# {FLOW} on {metrics['dataset']}"])
    if error:
        doc.failure(error)
    if note := metrics.get("baseline_note"):
        doc.add("The baseline beat the chosen model", f"<p><b>{html.escape(note)}</b></p>", f"**{note}**")
    if "models" in metrics:
        _candidates_section(doc, metrics)
    if notes := data_notes(stages):
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        doc.add("Data notes", f"<ul>{items}</ul>", "## Data notes\n" + "\n".join(f"- {n}" for n in notes))
    if "test" in metrics:
        _test_sections(doc, metrics, evaluation, comparison, threshold_metric)
    if train := _ok(stages, "train"):
        _training_section(doc, train, evaluation or {})
    if "synthetic" in metrics:
        _synthetic_section(doc, metrics, stages["synth"])
    if "explain" in metrics:
        title, body, md = explain_section(stages["explain"], metrics["explain"])
        doc.add(title, body, *md)
    if metrics.get("compress"):
        compress_section(doc, {"": metrics["compress"]})
    if augment := _ok(stages, "augment"):
        _augment_section(doc, augment)
    qrows = quarantine.to_dict("records")
    doc.add(
        f"Quarantined inputs ({len(qrows)})",
        html_table(qrows[:200]),
        f"**Quarantined inputs:** {len(qrows)} (see quarantine.csv)",
    )
    doc.closing(metrics, run_dir)
    return doc


# ------------------------------------------------------------------------------------------------------ the task


@task(name="report", cache_policy=NO_CACHE)
def report_images_task(
    *,
    cfg: ReportConfig,
    ctx: RunContext,
    stages: dict[str, StageResult],
    profile: str,
    seed: int,
    elapsed_s: float,
    error: str | None = None,
) -> dict[str, Any]:
    """Write the run directory's files and publish the artifacts; works on partial results after a failure.

    Args:
        cfg: The report section (regression tolerances, whether a regression fails the run).
        ctx: The run's context (run folder, flow name, served report URL).
        stages: Every stage record so far, keyed by stage name in the order the stages ran (a failed flow hands
            over what it has).
        profile: The run's profile name (metrics.json; only runs of one profile are compared).
        seed: The run's seed (metrics.json).
        elapsed_s: Seconds the flow has run so far (``timing_s.total``).
        error: The error the flow stops with, if any.

    Returns:
        The metrics written to metrics.json (with ``error`` when the run failed, or failed for a regression).
    """
    logger = get_run_logger()
    run_dir = Path(ctx.run_dir)
    ingest = stages.get("ingest")
    source, root = ingest_source(ingest, "data")
    dataset = dataset_slug(source, root)
    evaluation = read_evaluation(stages)
    evaluate = _ok(stages, "evaluate")
    threshold_metric = evaluate.summary.get("threshold_metric") if evaluate else None
    metrics = build_metrics(
        stages, evaluation, dataset=dataset, profile=profile, seed=seed, elapsed_s=elapsed_s, error=error
    )
    comparison = regression_check(
        metrics, run_dir, cfg.regression_tolerance, rate_tolerance=cfg.regression_rate_tolerance
    )
    error = regression_failure(metrics, comparison, cfg.fail_on_regression) or error
    quarantine = write_run_files(run_dir, stages, evaluation, threshold_metric)
    doc = report_body(metrics, stages, evaluation, comparison, quarantine, run_dir, error, threshold_metric)

    write_json(run_dir / "metrics.json", metrics)
    (run_dir / "report.html").write_text(render_html(f"{FLOW} — {dataset}", doc.sections))
    lineage = {"slug": dataset, "source": source, "root": root, "ingest_key": ingest.key if ingest else None}
    write_lineage(run_dir, lineage, stages, metrics["timing_s"])
    description = card_description(describe(metrics), comparison, metrics)
    key = f"{FLOW}-{dataset}"
    create_markdown_artifact("\n\n".join(doc.md), key=f"{key}-report", description=description)
    table = [{"metric": r["metric"], "model": r["model"], "baseline": r["baseline"]} for r in headline_rows(metrics)]
    create_table_artifact(table, key=f"{key}-metrics", description=description)
    if explain := _ok(stages, "explain"):
        publish_explain(explain, metrics, f"{key}-explain")
    publish_report_link(ctx.report_url, f"{ctx.flow}-{dataset}-report-link", description)
    logger.info("report: %s", description)
    return metrics
