"""Assemble the seizure-prediction run directory, report.html and Prefect artifacts.

Besides the headline numbers an EEG reader wants to see the signal: snippets around each test seizure with the
detector's probability under them, and per-patient alarm timelines with the seizure onsets marked.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from prefect import get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from tasks.cache import StageResult, code_version  # noqa: E402
from tasks.compare import comparison_markdown, comparison_rows, regression_check  # noqa: E402
from tasks.eeg_windows import (  # noqa: E402
    ARRAY,
    read_synthetic,
    read_windows,  # noqa: E402
    synthetic_selection,
)
from tasks.report.common import (
    dataset_slug,
    fig_to_png,
    html_table,
    img_tag,
    markdown_table,
    png_data_uri,
    publish_report_link,  # noqa: E402
    render_html,
    synthetic_section,
    vigil_version,
    write_json,
)
from tasks.rundir import RunContext, git_commit, hardware, link_or_copy, package_versions  # noqa: E402

FLOW = "seizure-prediction"


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def detection_rows(det: dict[str, Any]) -> list[dict[str, str]]:
    w, e = det["window"], det["event"]
    return [
        {"metric": "event sensitivity", "value": _f(e.get("sensitivity"))},
        {"metric": "event precision", "value": _f(e.get("precision"))},
        {"metric": "event F1", "value": _f(e.get("f1"))},
        {"metric": "false positives / 24 h", "value": _f(e.get("fp_per_24h"), 2)},
        {"metric": "window ROC AUC", "value": _f(w.get("roc_auc"))},
        {"metric": "window balanced accuracy", "value": _f(w.get("balanced_accuracy"))},
        {"metric": "threshold (chosen on val)", "value": _f(det.get("threshold"))},
    ]


def prediction_rows(pred: dict[str, Any]) -> list[dict[str, str]]:
    if not pred.get("feasible"):
        return [{"metric": "feasible", "value": f"no: {pred.get('reason', '')}"}]
    return [
        {"metric": "sensitivity", "value": _f(pred.get("sensitivity"))},
        {"metric": "false predictions / h", "value": _f(pred.get("fpr_per_h"))},
        {"metric": "time in warning", "value": _f(pred.get("time_in_warning"))},
        {"metric": "window ROC AUC", "value": _f(pred.get("roc_auc"))},
        {"metric": "p-value vs random predictor", "value": _f(pred.get("p_value"), 4)},
        {"metric": "random predictor sensitivity (α)", "value": _f(pred.get("random_predictor_sensitivity"))},
        {"metric": "SOP / SPH (s)", "value": f"{pred.get('sop_s'):.0f} / {pred.get('sph_s'):.0f}"},
    ]


def plot_snippets(
    scored: pd.DataFrame,
    seizures: pd.DataFrame,
    signals_dir: Path,
    channels: list[str],
    sfreq: float,
    threshold: float,
    max_plots: int = 6,
    pad_s: float = 60.0,
) -> list[bytes]:
    """EEG around each test seizure (a few channels) with the detector's probability underneath."""
    out = []
    for _, sz in seizures[seizures["recording_id"].isin(scored["recording_id"])].head(max_plots).iterrows():
        rec = str(sz["recording_id"])
        data = np.load(signals_dir / f"{rec}.npy", mmap_mode="r")
        t0 = max(0.0, float(sz["onset_s"]) - pad_s)
        t1 = min(data.shape[1] / sfreq, float(sz["offset_s"]) + pad_s)
        a, b = int(t0 * sfreq), int(t1 * sfreq)
        picks = np.argsort(-np.asarray(data[:, int(sz["onset_s"] * sfreq) : int(sz["offset_s"] * sfreq)]).std(axis=1))[
            :4
        ]
        t = np.arange(a, b) / sfreq
        fig, (ax, axp) = plt.subplots(2, 1, figsize=(9, 3.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        traces = np.asarray(data[np.sort(picks), a:b]) * 1e6  # (4, T) in microvolts
        step = 2.2 * float(np.percentile(np.abs(traces), 99.5)) + 1e-9  # seizures fit without overlapping
        for i, c in enumerate(np.sort(picks)):
            ax.plot(t, traces[i] - i * step, lw=0.4, color="k")
            ax.text(t[0], -i * step, channels[c], fontsize=7, ha="right", va="center")
        ax.text(t[-1], step / 2, f"{step / 2.2:.0f} µV", fontsize=7, ha="right")
        ax.axvspan(float(sz["onset_s"]), float(sz["offset_s"]), color="tab:red", alpha=0.15)
        ax.set(yticks=[], title=f"{rec}: seizure {sz['seizure_id']} ({sz['onset_s']:.0f}-{sz['offset_s']:.0f} s)")
        w = scored[(scored["recording_id"] == rec) & (scored["end_s"] >= t0) & (scored["start_s"] <= t1)]
        axp.plot((w["start_s"] + w["end_s"]) / 2, w["score"], color="tab:blue")
        axp.axhline(threshold, color="tab:orange", ls="--", lw=0.8)
        axp.set(ylim=(0, 1), ylabel="p(ictal)", xlabel="time in recording (s)")
        out.append(fig_to_png(fig))
    return out


def plot_alarm_timelines(oof: pd.DataFrame, leading: pd.DataFrame, sph_s: float, sop_s: float) -> list[bytes]:
    """Per patient: out-of-fold preictal probability over the patient timeline, thresholds and onsets."""
    out = []
    for patient, part in oof.groupby("patient"):
        part = part.sort_values("t_start_s")
        fig, ax = plt.subplots(figsize=(9, 2.4))
        hours = part["t_start_s"] / 3600
        ax.scatter(hours, part["score"], s=2, c=np.where(part["pred_label"] == 1, "tab:red", "tab:blue"))
        ax.plot(hours, part["threshold"], color="tab:orange", lw=0.8, label="fold threshold")
        for _, sz in leading[leading["seizure_id"].isin(part["lead_seizure_id"])].iterrows():
            ax.axvline(float(sz["t_onset_s"]) / 3600, color="k", lw=1)
            ax.axvspan(
                (sz["t_onset_s"] - sph_s - sop_s) / 3600, (sz["t_onset_s"] - sph_s) / 3600, color="tab:red", alpha=0.08
            )
        ax.set(
            ylim=(0, 1),
            xlabel="hours on the patient timeline",
            ylabel="p(preictal)",
            title=f"{patient}: out-of-fold scores (red: preictal windows; shaded: SOP; black: onset)",
        )
        out.append(fig_to_png(fig))
    return out


def plot_rocs(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes | None:
    from sklearn.metrics import roc_auc_score, roc_curve

    curves = {k: v for k, v in curves.items() if len(np.unique(v[0])) == 2}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(4, 4))
    for name, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Window ROC")
    ax.legend(loc="lower right", fontsize=8)
    return fig_to_png(fig)


def _per_patient_rows(section: dict[str, Any], kind: str) -> list[dict[str, str]]:
    rows = []
    for patient, m in section.get("by_patient", {}).items():
        if kind == "detection":
            rows.append(
                {
                    "patient": patient,
                    "sensitivity": _f(m["event"].get("sensitivity")),
                    "precision": _f(m["event"].get("precision")),
                    "fp/24h": _f(m["event"].get("fp_per_24h"), 2),
                    "window AUC": _f(m["window"].get("roc_auc")),
                }
            )
        else:
            rows.append(
                {
                    "patient": patient,
                    "seizures": _f(m.get("n_seizures")),
                    "sensitivity": _f(m.get("sensitivity")),
                    "FP/h": _f(m.get("fpr_per_h")),
                    "time in warning": _f(m.get("time_in_warning")),
                }
            )
    return rows


def splits_table(windows: pd.DataFrame, recordings: pd.DataFrame) -> pd.DataFrame:
    """splits.csv for EEG: the common columns plus patient, recording, start/end, seizure and fold."""
    paths = dict(zip(recordings["recording_id"], recordings["path"], strict=True))
    label = windows["ictal"]
    return pd.DataFrame(
        {
            "sample_id": windows["window_id"],
            "path": windows["recording_id"].map(paths),
            "label": label,
            "split": windows["split"],
            "stratum": windows["patient"],
            "group": windows["recording_id"],
            "synthetic": False,
            "patient": windows["patient"],
            "recording": windows["recording_id"],
            "start_s": windows["start_s"],
            "end_s": windows["end_s"],
            "seizure_id": windows["seizure_id"],
            "fold": windows["fold"] if "fold" in windows else "",
            "pred_label": windows.get("pred_label", ""),
        }
    )


def plot_spectra(spectra: dict[str, Any]) -> bytes | None:
    """Mean log power spectrum per class, real vs synthetic windows (Welch, averaged over channels)."""
    if not spectra:
        return None
    fig, axes = plt.subplots(1, len(spectra), figsize=(4.2 * len(spectra), 3.0), squeeze=False)
    for ax, (name, sp) in zip(axes[0], spectra.items(), strict=True):
        ax.plot(sp["freqs"], sp["real"], label="real")
        ax.plot(sp["freqs"], sp["synthetic"], label="synthetic", linestyle="--")
        ax.set(xlabel="Hz", ylabel="log10 power (normalised units)", title=name)
        ax.legend(fontsize=8)
    return fig_to_png(fig)


def synthetic_splits(synth: StageResult, windows: pd.DataFrame, classes: str) -> pd.DataFrame:
    """splits.csv rows for the synthetic windows the detector trained on (path: the stage's windows.npy)."""
    _, manifest = read_synthetic(synth.dir)
    rows = manifest.iloc[synthetic_selection(manifest, classes, windows)]
    return pd.DataFrame(
        {
            "sample_id": rows["window_id"],
            "path": str(synth.dir / ARRAY) + "#" + rows["index"].astype(str),
            "label": rows["label"],
            "split": "train",
            "stratum": "",
            "group": "synthetic",
            "synthetic": True,
        }
    )


@task(name="report", cache_policy=NO_CACHE)
def report_eeg_task(
    config: BaseModel,
    ctx: RunContext,
    stages: dict[str, StageResult],
    total_s: float,
    error: str | None = None,
) -> dict[str, Any]:
    """Write metrics.json, report.html, model.pt per task and the rest of the run directory; publish artifacts."""
    logger = get_run_logger()
    run_dir = Path(ctx.run_dir)
    ingest = stages.get("ingest")
    ok = {k: v for k, v in stages.items() if v is not None and not v.error}
    source = ingest.summary.get("source", "edf") if ingest and not ingest.error else "edf"
    dataset = dataset_slug("sim" if source == "sim" else "folder", config.ingest.path)
    cfg = config.model_dump(mode="json")
    metrics: dict[str, Any] = {
        "flow": FLOW,
        "dataset": dataset,
        "profile": cfg["profile"],
        "seed": cfg["seed"],
        "task": cfg["task"],
        "vigil_version": vigil_version(),
        "timing_s": {k: round(v.seconds, 3) for k, v in stages.items() if v is not None},
        "cached": {k: v.cached for k, v in stages.items() if v is not None},
    }
    metrics["timing_s"]["total"] = round(total_s, 3)
    sections: list[tuple[str, str]] = []
    md = [f"# {FLOW} on {dataset}"]
    if error:
        metrics["error"] = error
        sections.append(("Run failed", f"<div class='err'>{html.escape(error)}</div>"))
        md.append(f"**Run failed:** {error}")
    quarantine = pd.DataFrame(columns=["path", "stage", "reason"])
    if "ingest" in ok:
        s = ingest.summary
        metrics["n"] = {k: s[k] for k in ("n_recordings", "n_patients", "n_seizures", "n_quarantined")}
        metrics["n"]["hours"] = round(s["hours"], 3)
        quarantine = pd.read_csv(ingest.dir / "quarantine.csv", dtype=str, keep_default_na=False)
        sections.append(
            (
                "Data",
                f"<p>{s['n_recordings']} recordings of {s['n_patients']} patients, {s['hours']:.1f} h, "
                f"{s['n_seizures']} seizures, {len(s['channels'])} channels at {s['sfreq']:.0f} Hz "
                f"(source: {html.escape(source)}).</p>",
            )
        )
    quarantine.to_csv(run_dir / "quarantine.csv", index=False)
    evaluation: dict[str, Any] = {}
    if "evaluate" in ok:
        evaluation = json.loads((ok["evaluate"].dir / "evaluation.json").read_text())
    if "label" in ok:
        label = ok["label"]
        windows = read_windows(label.dir)
        recordings = pd.read_csv(ingest.dir / "recordings.csv", dtype={"recording_id": str, "patient": str})
        splits = splits_table(windows, recordings)
        if "synth" in ok:
            synthetic = synthetic_splits(ok["synth"], windows, config.synth.classes)
            splits = pd.concat([splits, synthetic], ignore_index=True)
        splits.to_csv(run_dir / "splits.csv", index=False)
        for part in ("train", "val", "test"):
            metrics.setdefault("n", {})[part] = int((windows["split"] == part).sum())
    if "augment" in ok:
        link_or_copy(ok["augment"].dir / "augment.json", run_dir / "augment.json")
    rocs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    det = evaluation.get("detection")
    if det:
        metrics["detection"] = {k: v for k, v in det.items() if k != "by_patient"}
        metrics["detection"]["by_patient"] = det.get("by_patient", {})
        rows = detection_rows(det)
        sections.append(("Detection (test recordings)", html_table(rows)))
        md += ["## Detection (test recordings)", markdown_table(rows)]
        pp = _per_patient_rows(det, "detection")
        if pp:
            sections.append(("Detection per patient", html_table(pp)))
        scored = pd.read_csv(
            ok["evaluate"].dir / "detection_scored.csv",
            dtype={"recording_id": str, "patient": str, "seizure_id": str},
            keep_default_na=False,
        )
        rocs["detection"] = (scored["ictal"].to_numpy(), scored["score"].to_numpy())
        seizures = pd.read_csv(ingest.dir / "seizures.csv", dtype={"recording_id": str})
        snippets = plot_snippets(
            scored,
            seizures,
            ingest.dir / "signals",
            ingest.summary["channels"],
            float(ingest.summary["sfreq"]),
            det["threshold"],
        )
        if snippets:
            sections.append(
                ("Test seizures with the detector's probability", " ".join(img_tag(p, "snippet") for p in snippets))
            )
            md.append(f"![seizure]({png_data_uri(snippets[0])})")
        d_train = ok.get("train-detection")
        if d_train:
            (run_dir / "detection").mkdir(exist_ok=True)
            record = torch.load(d_train.dir / "weights.pt", map_location="cpu", weights_only=True)
            record["threshold"] = det["threshold"]
            torch.save(record, run_dir / "detection" / "model.pt")
    if evaluation.get("models"):
        metrics["models"] = evaluation["models"]
        rows = [
            {
                "model": name,
                "event sensitivity": _f(m["detection"]["event"].get("sensitivity")),
                "fp/24h": _f(m["detection"]["event"].get("fp_per_24h"), 2),
                "window AUC": _f(m["detection"]["window"].get("roc_auc")),
            }
            for name, m in evaluation["models"].items()
        ]
        if det:
            rows.insert(
                0,
                {
                    "model": f"{config.train.model} (primary)",
                    "event sensitivity": _f(det["event"].get("sensitivity")),
                    "fp/24h": _f(det["event"].get("fp_per_24h"), 2),
                    "window AUC": _f(det["window"].get("roc_auc")),
                },
            )
        sections.append(("Model comparison (detection)", html_table(rows)))
        md += ["## Model comparison (detection)", markdown_table(rows)]
    pred = evaluation.get("prediction")
    if pred:
        metrics["prediction"] = pred
        rows = prediction_rows(pred)
        sections.append(
            (
                "Prediction (leave-one-seizure-out, pooled)",
                html_table(rows)
                + (
                    "<p>Context: Truong et al. 2018 on CHB-MIT report 81.2% sensitivity at 0.16 false alarms/h "
                    "with SOP 30 min, SPH 5 min, leave-one-seizure-out. Profiles may scale SOP/SPH down for short "
                    "simulated recordings; the values used are in the table.</p>"
                ),
            )
        )
        md += ["## Prediction", markdown_table(rows)]
        if pred.get("feasible"):
            pp = _per_patient_rows(pred, "prediction")
            if pp:
                sections.append(("Prediction per patient", html_table(pp)))
            oof = pd.read_csv(
                ok["evaluate"].dir / "prediction_scored.csv",
                dtype={"patient": str, "lead_seizure_id": str},
                keep_default_na=False,
            )
            rocs["prediction"] = (oof["pred_label"].to_numpy(), oof["score"].to_numpy())
            leading = pd.read_csv(ok["label"].dir / "leading.csv", dtype={"seizure_id": str})
            timelines = plot_alarm_timelines(oof, leading, pred["sph_s"], pred["sop_s"])
            sections.append(("Alarm timelines", " ".join(img_tag(p, "timeline") for p in timelines)))
            if timelines:
                md.append(f"![timeline]({png_data_uri(timelines[0])})")
            p_train = ok.get("train-prediction")
            if p_train:
                (run_dir / "prediction").mkdir(exist_ok=True)
                record = torch.load(p_train.dir / "weights.pt", map_location="cpu", weights_only=True)
                record["threshold"] = pred["threshold"]
                record["sop_s"], record["sph_s"] = pred["sop_s"], pred["sph_s"]
                torch.save(record, run_dir / "prediction" / "model.pt")
    comparison = regression_check(
        metrics, run_dir, config.report.regression_tolerance, rate_tolerance=config.report.regression_rate_tolerance
    )
    if comparison is not None:
        metrics["regression"] = comparison.to_dict()
        sections.append(
            (
                "Compared with the previous run",
                html_table(comparison_rows(comparison)) + f"<p>{html.escape(comparison.summary())}</p>",
            )
        )
        md += ["## Compared with the previous run", comparison_markdown(comparison)]
        if comparison.regressed and config.report.fail_on_regression:
            metrics["error"] = comparison.flag()
            sections.insert(0, ("Run failed", f"<div class='err'>{html.escape(metrics['error'])}</div>"))
            md.insert(1, f"**Run failed:** {metrics['error']}")
    roc = plot_rocs(rocs)
    if roc:
        sections.append(("ROC curves (windows)", img_tag(roc, "roc")))
        md.append(f"![roc]({png_data_uri(roc)})")
    if "evaluate-synthetic" in ok:
        metrics["synthetic"] = json.loads((ok["evaluate-synthetic"].dir / "synthetic.json").read_text())
        if "synth" in ok:
            metrics["synthetic"]["gan"] = dict(ok["synth"].summary)
        spectra = plot_spectra(json.loads((ok["synth"].dir / "spectra.json").read_text()))
        extra = "<p>Power spectra of real vs synthetic training windows, per class.</p>" + img_tag(spectra, "spectra")
        extra += (
            "<p>Prediction trains on real windows only: its leave-one-seizure-out folds would need one GAN per "
            "fold to keep every test seizure out of GAN training.</p>"
        )
        title, body, synth_md = synthetic_section(metrics["synthetic"], extra)
        sections.append((title, body))
        md += synth_md
        if spectra:
            md.append(f"![spectra]({png_data_uri(spectra)})")
    if "augment" in ok and (ok["augment"].dir / "examples.png").is_file():
        sections.append(("Augmentation", img_tag((ok["augment"].dir / "examples.png").read_bytes(), "augment")))
    sections.append((f"Left out ({len(quarantine)})", html_table(quarantine.to_dict("records")[:200])))
    md.append(f"**Left out:** {len(quarantine)} file(s) (see quarantine.csv)")
    timing = [
        {"stage": k, "seconds": f"{v:.1f}", "cached": metrics["cached"].get(k, "")}
        for k, v in metrics["timing_s"].items()
    ]
    sections.append(("Stage timings", html_table(timing)))
    sections.append(("Configuration", f"<pre>{html.escape((run_dir / 'config.yaml').read_text())}</pre>"))
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True) if not error else None
    write_json(run_dir / "metrics.json", metrics)
    (run_dir / "report.html").write_text(render_html(f"{FLOW} — {dataset}", sections))
    write_json(
        run_dir / "lineage.json",
        {
            "dataset": {"slug": dataset, "source": source, "ingest_key": ingest.key if ingest else None},
            "stage_keys": {k: v.key for k, v in stages.items() if v is not None},
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
    create_markdown_artifact("\n\n".join(md), key=f"{FLOW}-{dataset}-report", description=description)
    table = []
    if det:
        table += [{"task": "detection", **r} for r in detection_rows(det)]
    if pred:
        table += [{"task": "prediction", **r} for r in prediction_rows(pred)]
    if table:
        create_table_artifact(table, key=f"{FLOW}-{dataset}-metrics", description=description)
    publish_report_link(ctx.report_url, f"{ctx.flow}-{dataset}-report-link", description)
    logger.info("report: %s", description)
    return metrics


def describe(metrics: dict[str, Any]) -> str:
    if "error" in metrics:
        return f"FAILED: {metrics['error'][:200]}"
    parts = [metrics["dataset"] + ":"]
    det = metrics.get("detection")
    if det:
        e = det["event"]
        parts.append(f"detection sensitivity {_f(e.get('sensitivity'))} at {_f(e.get('fp_per_24h'), 1)} FP/24h;")
    pred = metrics.get("prediction")
    if pred and pred.get("feasible"):
        parts.append(
            f"prediction sensitivity {_f(pred.get('sensitivity'))}, {_f(pred.get('fpr_per_h'))} FP/h, "
            f"p={_f(pred.get('p_value'), 4)}"
        )
    elif pred:
        parts.append("prediction not feasible")
    return " ".join(parts)
