"""Assemble the seizure-prediction run directory, report.html and Prefect artifacts from the stage records.

Everything comes from the records the flow hands over (their summaries and the files in their folders), plus
the report's own config section and the run's profile, seed and task: the report reads no other stage's config.
Besides the headline numbers it shows the signal (:mod:`tasks.report.eeg_plots`).
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageResult
from tasks.compare import Comparison, regression_check
from tasks.config import ReportConfig
from tasks.eeg_windows import read_windows
from tasks.quarantine import collect_quarantine
from tasks.report.common import (
    ReportDoc,
    card_description,
    dataset_slug,
    html_table,
    img_tag,
    ingest_source,
    markdown_table,
    png_data_uri,
    publish_report_link,
    regression_failure,
    render_html,
    run_metrics,
    succeeded,
    write_json,
    write_lineage,
)
from tasks.report.compress import compress_metrics, compress_section, copy_models, read_compress
from tasks.report.eeg_plots import plot_alarm_timelines, plot_rocs, plot_snippets, plot_spectra
from tasks.report.eeg_tables import (
    describe,
    detection_rows,
    model_rows,
    per_patient_rows,
    prediction_rows,
    splits_table,
    synthetic_splits,
)
from tasks.report.explain import explain_metrics, explain_section, publish_explain
from tasks.report.synthetic import USEFULNESS, synthetic_metrics, synthetic_section
from tasks.rundir import RunContext, copy_file

FLOW = "seizure-prediction"
_PREDICTION_CONTEXT = (
    "<p>Context: Truong et al. 2018 on CHB-MIT report 81.2% sensitivity at 0.16 false alarms/h "
    "with SOP 30 min, SPH 5 min, leave-one-seizure-out. Profiles may scale SOP/SPH down for short "
    "simulated recordings; the values used are in the table. Scoring is pseudo-prospective: every recording is "
    "scored once, whole and in time order, by the fold model that never saw it, with causal smoothing and the "
    "fold's threshold chosen on its validation recordings; false alarms are counted over interictal time only. "
    "On simulated data these numbers show that the pipeline works, not clinical performance.</p>"
)
_SYNTHETIC_NOTE = (
    "<p>Prediction trains on real windows only: its leave-one-seizure-out folds would need one GAN per "
    "fold to keep every test seizure out of GAN training.</p>"
)
Roc = tuple[np.ndarray, np.ndarray]  # (labels, scores) of scored windows


def build_metrics(
    stages: dict[str, StageResult | None],
    evaluation: dict[str, Any],
    windows: pd.DataFrame | None,
    *,
    dataset: str,
    profile: str,
    seed: int,
    task: str,
    elapsed_s: float,
    error: str | None,
) -> dict[str, Any]:
    """metrics.json up to the prediction section (the comparison with the previous run and the synthetic-data
    section follow, in that order).

    Args:
        stages: The stage records, in run order.
        evaluation: The evaluate stage's ``evaluation.json`` ({} when it did not run).
        windows: The label stage's windows (None when labelling did not run): split sizes.
    """
    metrics = run_metrics(FLOW, dataset, stages, elapsed_s, profile=profile, seed=seed, task=task)
    if error:
        metrics["error"] = error
    ok = succeeded(stages)
    if "ingest" in ok:
        s = ok["ingest"].summary
        metrics["n"] = {k: s[k] for k in ("n_recordings", "n_patients", "n_seizures", "n_quarantined")}
        metrics["n"]["hours"] = round(s["hours"], 3)
    if windows is not None:
        for part in ("train", "val", "test"):
            metrics.setdefault("n", {})[part] = int((windows["split"] == part).sum())
    if det := evaluation.get("detection"):
        metrics["detection"] = {k: v for k, v in det.items() if k != "by_patient"}
        metrics["detection"]["by_patient"] = det.get("by_patient", {})
    if evaluation.get("models"):
        metrics["models"] = evaluation["models"]
    if pred := evaluation.get("prediction"):
        metrics["prediction"] = pred
    return metrics


# ------------------------------------------------------------------------------------------- run-directory files


def write_run_files(
    run_dir: Path,
    ok: dict[str, StageResult],
    evaluation: dict[str, Any],
    windows: pd.DataFrame | None,
    error: str | None,
    stages: dict[str, StageResult | None] | None = None,
) -> pd.DataFrame:
    """quarantine.csv, splits.csv, augment.json and a model.pt per task; returns the quarantine table.

    ``ok`` holds the succeeded stage records; quarantine.csv gathers ingest's and label's rows from ``stages``
    (every record, so a stage that left out every input still lists them). Training checkpoints are removed unless
    the flow failed (a rerun resumes from them).
    """
    quarantine = collect_quarantine(ok if stages is None else stages)
    quarantine.to_csv(run_dir / "quarantine.csv", index=False)
    if windows is not None:
        _write_splits(run_dir, ok, windows)
    if "augment" in ok:
        copy_file(ok["augment"].dir / "augment.json", run_dir / "augment.json")
    det, pred = evaluation.get("detection"), evaluation.get("prediction")
    if det and "train-detection" in ok:
        _write_model(run_dir / "detection", ok["train-detection"], threshold=det["threshold"])
    if pred and pred.get("feasible") and "train-prediction" in ok:
        extra = {"threshold": pred["threshold"], "sop_s": pred["sop_s"], "sph_s": pred["sph_s"]}
        _write_model(run_dir / "prediction", ok["train-prediction"], **extra)
    if not error:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return quarantine


def _write_splits(run_dir: Path, ok: dict[str, StageResult], windows: pd.DataFrame) -> None:
    recordings = pd.read_csv(ok["ingest"].dir / "recordings.csv", dtype={"recording_id": str, "patient": str})
    splits = splits_table(windows, recordings)
    synth = ok.get("synth")
    classes = synth.summary.get("classes") if synth else None
    if synth and classes is not None:
        splits = pd.concat([splits, synthetic_splits(synth.dir, windows, classes)], ignore_index=True)
    elif synth:
        get_run_logger().warning("report: the synth record states no 'classes'; splits.csv lists no synthetic rows")
    splits.to_csv(run_dir / "splits.csv", index=False)


def _write_model(folder: Path, train: StageResult, **extra: Any) -> None:
    """``<task>/model.pt``: the trained weights plus what prediction needs (threshold; SOP/SPH for prediction)."""
    folder.mkdir(exist_ok=True)
    record = torch.load(train.dir / "weights.pt", map_location="cpu", weights_only=True)
    record.update(extra)
    torch.save(record, folder / "model.pt")


# ------------------------------------------------------------------------------------------------ report sections


def _data_section(doc: ReportDoc, ingest: StageResult) -> None:
    s = ingest.summary
    doc.add(
        "Data",
        f"<p>{s['n_recordings']} recordings of {s['n_patients']} patients, {s['hours']:.1f} h, "
        f"{s['n_seizures']} seizures, {len(s['channels'])} channels at {s['sfreq']:.0f} Hz "
        f"(source: {html.escape(s.get('source', 'edf'))}).</p>",
    )


def _detection_sections(doc: ReportDoc, det: dict[str, Any], ok: dict[str, StageResult]) -> Roc:
    """Detection headline and per-patient tables, and test seizures with the detector's probability."""
    rows = detection_rows(det)
    doc.add("Detection (test recordings)", html_table(rows), "## Detection (test recordings)", markdown_table(rows))
    if pp := per_patient_rows(det, "detection"):
        doc.add("Detection per patient", html_table(pp))
    scored = pd.read_csv(
        ok["evaluate"].dir / "detection_scored.csv",
        dtype={"recording_id": str, "patient": str, "seizure_id": str},
        keep_default_na=False,
    )
    ingest = ok["ingest"]
    seizures = pd.read_csv(ingest.dir / "seizures.csv", dtype={"recording_id": str})
    channels, sfreq = ingest.summary["channels"], float(ingest.summary["sfreq"])
    snippets = plot_snippets(scored, seizures, ingest.dir / "signals", channels, sfreq, det["threshold"])
    if snippets:
        doc.add(
            "Test seizures with the detector's probability",
            " ".join(img_tag(p, "snippet") for p in snippets),
            f"![seizure]({png_data_uri(snippets[0])})",
        )
    return scored["ictal"].to_numpy(), scored["score"].to_numpy()


def _prediction_sections(doc: ReportDoc, pred: dict[str, Any], ok: dict[str, StageResult]) -> Roc | None:
    """Prediction headline and per-patient tables, and the per-patient alarm timelines (when feasible)."""
    rows = prediction_rows(pred)
    doc.add(
        "Prediction (leave-one-seizure-out, pooled)",
        html_table(rows) + _PREDICTION_CONTEXT,
        "## Prediction",
        markdown_table(rows),
    )
    if not pred.get("feasible"):
        return None
    if pp := per_patient_rows(pred, "prediction"):
        doc.add("Prediction per patient", html_table(pp))
    oof = pd.read_csv(
        ok["evaluate"].dir / "prediction_scored.csv",
        dtype={"patient": str, "lead_seizure_id": str, "recording_id": str, "timeline": str},
        keep_default_na=False,
    )
    leading = pd.read_csv(ok["label"].dir / "leading.csv", dtype={"seizure_id": str, "timeline": str})
    timelines = plot_alarm_timelines(oof, leading, pred["sph_s"], pred["sop_s"])
    md = [f"![timeline]({png_data_uri(timelines[0])})"] if timelines else []
    doc.add("Alarm timelines (per test recording)", " ".join(img_tag(p, "timeline") for p in timelines), *md)
    labelled = oof[oof["pred_label"] >= 0]  # the window ROC is over preictal vs interictal windows only
    return labelled["pred_label"].to_numpy(), labelled["score"].to_numpy()


def _synthetic_section(doc: ReportDoc, synthetic: dict[str, Any], synth: StageResult) -> None:
    spectra = plot_spectra(json.loads((synth.dir / "spectra.json").read_text()))
    extra = "<p>Power spectra of real vs synthetic training windows, per class.</p>" + img_tag(spectra, "spectra")
    title, body, synth_md = synthetic_section(synthetic, extra + _SYNTHETIC_NOTE)
    doc.add(title, body, *synth_md, *([f"![spectra]({png_data_uri(spectra)})"] if spectra else []))


def _primary_model(train: StageResult | None) -> str | None:
    """The detector's architecture: the train record's recipe names it (and it leads the record's ``models``)."""
    if train is None:
        return None
    recipe = train.summary.get("recipe") or {}
    return recipe.get("model") or next(iter(train.summary.get("models", {})), None)


def report_body(
    metrics: dict[str, Any],
    ok: dict[str, StageResult],
    evaluation: dict[str, Any],
    comparison: Comparison | None,
    quarantine: pd.DataFrame,
    run_dir: Path,
    error: str | None,
) -> ReportDoc:
    """report.html's sections and the markdown artifact, in reading order (``ok``: the succeeded records)."""
    doc = ReportDoc(md=[f"# {FLOW} on {metrics['dataset']}"])
    if error:
        doc.failure(error)
    if "ingest" in ok:
        _data_section(doc, ok["ingest"])
    rocs: dict[str, Roc] = {}
    if det := evaluation.get("detection"):
        rocs["detection"] = _detection_sections(doc, det, ok)
    if models := evaluation.get("models"):
        rows = model_rows(models, det, _primary_model(ok.get("train-detection")))
        title = "Model comparison (detection)"
        doc.add(title, html_table(rows), f"## {title}", markdown_table(rows))
    if (pred := evaluation.get("prediction")) and (roc := _prediction_sections(doc, pred, ok)) is not None:
        rocs["prediction"] = roc
    if comparison is not None:
        doc.comparison(comparison)
    if roc_png := plot_rocs(rocs):
        doc.add("ROC curves (windows)", img_tag(roc_png, "roc"), f"![roc]({png_data_uri(roc_png)})")
    if "synthetic" in metrics:
        _synthetic_section(doc, metrics["synthetic"], ok["synth"])
    if "explain" in metrics:
        title, body, md = explain_section(ok["explain"], metrics["explain"])
        doc.add(title, body, *md)
    if metrics.get("compress"):
        compress_section(doc, metrics["compress"])
    if "augment" in ok and (ok["augment"].dir / "examples.png").is_file():
        doc.add("Augmentation", img_tag((ok["augment"].dir / "examples.png").read_bytes(), "augment"))
    n_left = len(quarantine)
    left_out = html_table(quarantine.to_dict("records")[:200])
    doc.add(f"Left out ({n_left})", left_out, f"**Left out:** {n_left} file(s) (see quarantine.csv)")
    doc.closing(metrics, run_dir)
    return doc


# ------------------------------------------------------------------------------------------------------ the task


def _publish(doc: ReportDoc, metrics: dict[str, Any], dataset: str, description: str, ctx: RunContext) -> None:
    """The markdown report and the headline table as Prefect artifacts, and the link to the served report.html."""
    create_markdown_artifact("\n\n".join(doc.md), key=f"{FLOW}-{dataset}-report", description=description)
    table = []
    if det := metrics.get("detection"):
        table += [{"task": "detection", **r} for r in detection_rows(det)]
    if pred := metrics.get("prediction"):
        table += [{"task": "prediction", **r} for r in prediction_rows(pred)]
    if table:
        create_table_artifact(table, key=f"{FLOW}-{dataset}-metrics", description=description)
    publish_report_link(ctx.report_url, f"{ctx.flow}-{dataset}-report-link", description)


@task(name="report", cache_policy=NO_CACHE)
def report_eeg_task(
    *,
    cfg: ReportConfig,
    ctx: RunContext,
    stages: dict[str, StageResult | None],
    profile: str,
    seed: int,
    task: str,
    elapsed_s: float,
    error: str | None = None,
) -> dict[str, Any]:
    """Write metrics.json, report.html, model.pt per task and the rest of the run directory; publish artifacts.

    Args:
        cfg: The report section (regression tolerances, whether a regression fails the run).
        ctx: The run's context (run folder, flow name, served report URL).
        stages: Every stage record so far, keyed by stage name in the order the stages ran (a failed flow hands
            over what it has).
        profile: The run's profile name (metrics.json; only runs of one profile are compared).
        seed: The run's seed (metrics.json).
        task: ``detection``, ``prediction`` or ``both`` (metrics.json).
        elapsed_s: Seconds the flow has run so far (``timing_s.total``).
        error: The error the flow stops with, if any.

    Returns:
        The metrics written to metrics.json (with ``error`` when the run failed, or failed for a regression).
    """
    logger = get_run_logger()
    run_dir = Path(ctx.run_dir)
    ok = succeeded(stages)
    ingest = stages.get("ingest")
    source, root = ingest_source(ingest, "edf")
    dataset = dataset_slug("sim" if source == "sim" else "folder", root)
    evaluation = json.loads((ok["evaluate"].dir / "evaluation.json").read_text()) if "evaluate" in ok else {}
    windows = read_windows(ok["label"].dir) if "label" in ok else None
    metrics = build_metrics(
        stages,
        evaluation,
        windows,
        dataset=dataset,
        profile=profile,
        seed=seed,
        task=task,
        elapsed_s=elapsed_s,
        error=error,
    )
    comparison = regression_check(
        metrics, run_dir, cfg.regression_tolerance, rate_tolerance=cfg.regression_rate_tolerance
    )
    regression_error = regression_failure(metrics, comparison, cfg.fail_on_regression)
    if USEFULNESS in ok:
        metrics["synthetic"] = synthetic_metrics(ok[USEFULNESS], ok.get("synth"))
    if "explain" in ok:
        metrics["explain"] = explain_metrics(ok["explain"])
    if "compress" in ok:
        per_task = {t: compress_metrics(read_compress(ok["compress"], t)) for t in ("detection", "prediction")}
        metrics["compress"] = {t: v for t, v in per_task.items() if v}
        for t in metrics["compress"]:
            copy_models(ok["compress"], run_dir, t)
    quarantine = write_run_files(run_dir, ok, evaluation, windows, error, stages=stages)
    doc = report_body(metrics, ok, evaluation, comparison, quarantine, run_dir, regression_error or error)

    write_json(run_dir / "metrics.json", metrics)
    (run_dir / "report.html").write_text(render_html(f"{FLOW} — {dataset}", doc.sections))
    lineage = {"slug": dataset, "source": source, "ingest_key": ingest.key if ingest else None}
    write_lineage(run_dir, lineage, stages, metrics["timing_s"])
    description = card_description(describe(metrics), comparison, metrics)
    _publish(doc, metrics, dataset, description, ctx)
    if "explain" in ok:
        publish_explain(ok["explain"], metrics, f"{FLOW}-{dataset}-explain")
    logger.info("report: %s", description)
    return metrics
