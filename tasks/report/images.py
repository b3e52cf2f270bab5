"""Assemble the defect-detection run directory, report.html and Prefect artifacts from the stage outputs."""

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
from pydantic import BaseModel

from tasks.cache import StageResult, code_version
from tasks.compare import comparison_markdown, comparison_rows, regression_check
from tasks.report.common import (
    dataset_slug,
    grid_png,
    headline_rows,
    html_table,
    img_tag,
    markdown_table,
    plot_confusion,
    plot_learning_curves,
    plot_roc,
    plot_worst,
    png_data_uri,
    publish_report_link,
    render_html,
    synthetic_section,
    vigil_version,
    write_json,
)
from tasks.rundir import RunContext, git_commit, hardware, link_or_copy, package_versions

STAGES = ("ingest", "quality", "label", "augment", "synth", "train", "evaluate")


def collect_quarantine(stages: dict[str, StageResult]) -> pd.DataFrame:
    frames = []
    for name in ("ingest", "quality"):
        st = stages.get(name)
        if st is not None and st.path and (st.dir / "quarantine.csv").is_file():
            frames.append(pd.read_csv(st.dir / "quarantine.csv", dtype=str, keep_default_na=False))
    if not frames:
        return pd.DataFrame(columns=["path", "stage", "reason"])
    return pd.concat(frames, ignore_index=True)


def build_metrics(
    config: BaseModel, stages: dict[str, StageResult], dataset: str, total_s: float, error: str | None
) -> dict[str, Any]:
    """metrics.json as ARCHITECTURE.md fixes it (nested; proportions as fractions)."""
    cfg = config.model_dump(mode="json")
    metrics: dict[str, Any] = {
        "flow": "defect-detection",
        "dataset": dataset,
        "profile": cfg["profile"],
        "seed": cfg["seed"],
        "vigil_version": vigil_version(),
        "timing_s": {name: round(st.seconds, 3) for name, st in stages.items()},
        "cached": {name: st.cached for name, st in stages.items()},
    }
    metrics["timing_s"]["total"] = round(total_s, 3)
    n: dict[str, int] = {}
    if "label" in stages and not stages["label"].error:
        for part, counts in stages["label"].summary["counts"].items():
            n[part] = int(sum(counts.values()))
        metrics["class_names"] = stages["label"].summary["class_names"]
    if "quality" in stages and not stages["quality"].error:
        n["checked"] = stages["quality"].summary["n_checked"]
    n["quarantined"] = int(len(collect_quarantine(stages)))
    metrics["n"] = n
    if "train" in stages and not stages["train"].error:
        s = stages["train"].summary
        metrics["train"] = {k: s.get(k) for k in ("model", "device", "best_epoch", "epochs_run", "n_parameters")}
    if "evaluate" in stages and not stages["evaluate"].error:
        ev = json.loads((stages["evaluate"].dir / "evaluation.json").read_text())
        metrics["test"] = ev["test"]
        if "baseline" in ev:
            metrics["baseline"] = ev["baseline"]
    synthetic = stages.get("evaluate-synthetic")
    if synthetic is not None and not synthetic.error:
        metrics["synthetic"] = json.loads((synthetic.dir / "synthetic.json").read_text())
        gan = stages.get("synth")
        if gan is not None and not gan.error:
            metrics["synthetic"]["gan"] = {k: v for k, v in gan.summary.items() if k != "final_losses"}
    if error:
        metrics["error"] = error
    return metrics


def _fmt_acc(m: dict[str, Any] | None) -> str:
    return f"{m['accuracy']:.4f}" if m else "n/a"


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


@task(name="report", cache_policy=NO_CACHE)
def report_images_task(
    config: BaseModel,
    ctx: RunContext,
    stages: dict[str, StageResult],
    total_s: float,
    error: str | None = None,
) -> dict[str, Any]:
    """Write the run directory's files and publish the artifacts; works on partial results after a failure."""
    logger = get_run_logger()
    run_dir = Path(ctx.run_dir)
    ingest = stages.get("ingest")
    source = ingest.summary.get("source", "data") if ingest and not ingest.error else "data"
    root = ingest.summary.get("root") if ingest and not ingest.error else config.ingest.path
    dataset = dataset_slug(source, root)
    metrics = build_metrics(config, stages, dataset, total_s, error)
    comparison = regression_check(
        metrics, run_dir, config.report.regression_tolerance, rate_tolerance=config.report.regression_rate_tolerance
    )
    if comparison is not None:
        metrics["regression"] = comparison.to_dict()
        if comparison.regressed and config.report.fail_on_regression:
            error = metrics["error"] = comparison.flag()
    sections: list[tuple[str, str]] = []
    md: list[str] = [f"# defect-detection on {dataset}"]
    if error:
        sections.append(("Run failed", f"<div class='err'>{html.escape(error)}</div>"))
        md.append(f"**Run failed:** {error}")

    quarantine = collect_quarantine(stages)
    quarantine.to_csv(run_dir / "quarantine.csv", index=False)
    label = stages.get("label")
    train = stages.get("train")
    if train and not train.error and (train.dir / "splits.csv").is_file():
        link_or_copy(train.dir / "splits.csv", run_dir / "splits.csv")  # real rows + the synthetic rows it used
    elif label and not label.error:
        link_or_copy(label.dir / "splits.csv", run_dir / "splits.csv")
    augment = stages.get("augment")
    if augment and not augment.error:
        link_or_copy(augment.dir / "augment.json", run_dir / "augment.json")

    evaluation: dict[str, Any] = {}
    evaluate = stages.get("evaluate")
    if evaluate and not evaluate.error:
        evaluation = json.loads((evaluate.dir / "evaluation.json").read_text())
    if train and not train.error and evaluation:
        meta = torch.load(train.dir / "weights.pt", map_location="cpu", weights_only=True)
        meta["threshold"] = evaluation["test"].get("threshold")
        meta["threshold_metric"] = config.evaluate.threshold_metric
        meta["positive_class"] = meta["class_names"][1] if len(meta["class_names"]) == 2 else None
        meta["test_metrics"] = {k: evaluation["test"].get(k) for k in ("accuracy", "balanced_accuracy", "roc_auc")}
        torch.save(meta, run_dir / "model.pt")
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)

    if "test" in metrics:
        rows = headline_rows(metrics)
        sections.append(("Headline (test split)", html_table(rows) + f"<p>{html.escape(describe(metrics))}</p>"))
        md += ["## Headline (test split)", markdown_table(rows)]
        if comparison is not None:
            sections.append(
                (
                    "Compared with the previous run",
                    html_table(comparison_rows(comparison)) + f"<p>{html.escape(comparison.summary())}</p>",
                )
            )
            md += ["## Compared with the previous run", comparison_markdown(comparison)]
        by_group = metrics["test"].get("by_group")
        if by_group:
            base_groups = metrics.get("baseline", {}).get("by_group", {})
            group_rows = [
                {
                    "stratum": g,
                    "model accuracy": f"{m['accuracy']:.4f}",
                    "baseline accuracy": _fmt_acc(base_groups.get(g)),
                    "model balanced": f"{m['balanced_accuracy']:.4f}",
                    "n": m.get("n", ""),
                }
                for g, m in by_group.items()
            ]
            sections.append(("Per stratum", html_table(group_rows)))
            md += ["## Per stratum", markdown_table(group_rows)]
        class_names = metrics.get("class_names", [])
        cm = plot_confusion(metrics["test"]["confusion_matrix"], class_names, "network")
        plots = [img_tag(cm, "confusion matrix")]
        if "baseline" in metrics:
            plots.append(img_tag(plot_confusion(metrics["baseline"]["confusion_matrix"], class_names, "SVM"), "svm"))
        roc = plot_roc({"network": evaluation["roc"].get("cnn"), "SVM baseline": evaluation["roc"].get("baseline")})
        plots.append(img_tag(roc, "ROC"))
        sections.append(("Confusion matrices and ROC", " ".join(plots)))
        md += ["## Confusion matrix and ROC", f"![confusion]({png_data_uri(cm)})"]
        if roc:
            md.append(f"![roc]({png_data_uri(roc)})")
        thr = metrics["test"].get("threshold")
        if thr is not None:
            sections.append(
                (
                    "Decision threshold",
                    f"<p>{thr:.4f} on the positive-class probability, chosen on the validation split to maximise "
                    f"{html.escape(config.evaluate.threshold_metric)}; stored in model.pt.</p>",
                )
            )
        worst = plot_worst(evaluation.get("worst_errors", []))
        if worst:
            sections.append(("Most confident errors (test)", img_tag(worst, "worst errors")))
    if train and not train.error:
        history = json.loads((train.dir / "history.json").read_text())
        if history:
            curves = plot_learning_curves(history)
            s = train.summary
            sections.append(
                (
                    "Training",
                    f"<p>{html.escape(str(s['model']))} ({s['n_parameters']:,} parameters) on {s['device']}; "
                    f"best epoch {s['best_epoch']} of {s['epochs_run']}.</p>" + img_tag(curves, "learning curves"),
                )
            )
            md += ["## Learning curves", f"![curves]({png_data_uri(curves)})"]
    if "synthetic" in metrics:
        synth = stages["synth"]
        grid = grid_png(synth.dir / "grid.png")
        names = ", ".join(metrics.get("class_names", []))
        extra = f"<p>GAN samples, one row per class ({html.escape(names)}).</p>" + img_tag(grid, "synthetic grid")
        title, body, synth_md = synthetic_section(metrics["synthetic"], extra)
        sections.append((title, body))
        md += synth_md
        if grid:
            md.append(f"![synthetic samples]({png_data_uri(grid)})")
    if augment and not augment.error:
        grid = grid_png(augment.dir / "augment_grid.png")
        sections.append(
            (
                "Augmentation",
                f"<p>{html.escape(', '.join(augment.summary['transforms']))}. Each row: the original, then "
                f"augmented copies.</p>" + img_tag(grid, "augmentation grid"),
            )
        )
    qrows = quarantine.to_dict("records")
    sections.append((f"Quarantined inputs ({len(qrows)})", html_table(qrows[:200])))
    md.append(f"**Quarantined inputs:** {len(qrows)} (see quarantine.csv)")
    timing_rows = [
        {"stage": k, "seconds": f"{v:.1f}", "cached": metrics["cached"].get(k, "")}
        for k, v in metrics["timing_s"].items()
    ]
    sections.append(("Stage timings", html_table(timing_rows)))
    sections.append(("Configuration", f"<pre>{html.escape((run_dir / 'config.yaml').read_text())}</pre>"))

    write_json(run_dir / "metrics.json", metrics)
    (run_dir / "report.html").write_text(render_html(f"defect-detection — {dataset}", sections))
    write_json(
        run_dir / "lineage.json",
        {
            "dataset": {"slug": dataset, "source": source, "root": root, "ingest_key": ingest.key if ingest else None},
            "stage_keys": {k: v.key for k, v in stages.items()},
            "code_version": code_version(),
            "git_commit": git_commit(),
            "packages": package_versions(),
            "hardware": hardware(),
            "timing_s": metrics["timing_s"],
        },
    )
    description = describe(metrics)
    if comparison is not None and comparison.regressed and "error" not in metrics:
        description = f"{comparison.flag()}; {description}"
    key = f"defect-detection-{dataset}"
    create_markdown_artifact("\n\n".join(md), key=f"{key}-report", description=description)
    table = [{"metric": r["metric"], "model": r["model"], "baseline": r["baseline"]} for r in headline_rows(metrics)]
    create_table_artifact(table, key=f"{key}-metrics", description=description)
    publish_report_link(ctx.report_url, f"{ctx.flow}-{dataset}-report-link", description)
    logger.info("report: %s", description)
    return metrics
