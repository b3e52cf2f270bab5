"""The explain part of a report: its metrics.json section, its HTML / markdown section, and its own artifact.

The explain stage leaves ``explain.json`` and its pictures in its record's folder; both flows' reports read them
from there (the report never imports the explain stage). Images: ``explain.{randomisation_rank_corr,
deletion_auc, deletion_auc_random, ...}``; EEG: ``explain.{method, channel_importance, top_channels,
scalp_map_skipped, ...}``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact

from tasks.cache import StageResult
from tasks.report.common import fmt, html_table, img_tag, markdown_table, png_data_uri

#: explain.json keys that are pictures' data or settings, not metrics.
_NOT_METRICS = ("deletion_curve", "deletion_curve_random", "settings", "examples", "windows")

_MEANING = {
    "randomisation_rank_corr": "Grad-CAM vs the map after re-initialising the last block (Spearman of |map|); "
    "low = the map depends on what the model learned",
    "randomisation_rank_corr_signed": "the same without absolute values",
    "deletion_auc": "class probability as the map's top pixels are removed (area; lower = more faithful)",
    "deletion_auc_random": "the same, pixels removed in random order (the map should beat this)",
}


def explain_metrics(explain: StageResult) -> dict[str, Any]:
    """metrics.json's ``explain`` section: ``explain.json`` without curves, settings and per-item lists."""
    data = json.loads((explain.dir / "explain.json").read_text())
    return {k: v for k, v in data.items() if k not in _NOT_METRICS}


def _png(folder: Path, name: str) -> bytes | None:
    path = folder / name
    return path.read_bytes() if path.is_file() else None


def _verdict(m: dict[str, Any]) -> str:
    """One sentence on whether the Grad-CAM maps passed both checks."""
    corr, dele, rand = m.get("randomisation_rank_corr"), m.get("deletion_auc"), m.get("deletion_auc_random")
    if corr is None or dele is None or rand is None:
        return "The faithfulness checks did not run (no test images)."
    ok_rand, ok_del = corr <= 0.5, dele < rand
    if ok_rand and ok_del:
        return (
            "The Grad-CAM maps pass both checks: they change when the last block is randomised, and removing "
            "their top pixels lowers the score faster than removing random pixels."
        )
    failed = [name for name, ok in (("randomisation", ok_rand), ("deletion", ok_del)) if not ok]
    return f"Caution: the Grad-CAM maps fail the {' and '.join(failed)} check(s); read the overlays with care."


def image_section(explain: StageResult, m: dict[str, Any]) -> tuple[str, str, list[str]]:
    """Heading, HTML and markdown of the image explanations: verdict, the numbers, overlays, deletion curves."""
    rows = [{"check": k, "value": fmt(m.get(k)), "meaning": v} for k, v in _MEANING.items()]
    layers = ", ".join(m.get("randomised_layers", []))
    verdict = _verdict(m)
    note = (
        f"{html.escape(verdict)} Model {html.escape(str(m.get('model')))}; Grad-CAM at "
        f"<code>{html.escape(str(m.get('gradcam_layer')))}</code>; re-initialised for the check: "
        f"<code>{html.escape(layers)}</code>; {m.get('n_images', 0)} test images."
    )
    overlays, deletion = _png(explain.dir, "overlays.png"), _png(explain.dir, "deletion.png")
    caption = (
        "<p>Per class, the most confident correct and wrong test images, each explained for the class the model "
        "called (red title: wrong). Grad-CAM: where the last feature map spoke for that class; LIME: superpixels "
        "for (red) and against (blue) it.</p>"
    )
    body = f"<p>{note}</p>" + html_table(rows) + caption + img_tag(overlays, "overlays") + img_tag(deletion, "deletion")
    md = ["## Explanations (Grad-CAM, LIME)", verdict, markdown_table(rows)]
    md += [f"![{alt}]({png_data_uri(png)})" for alt, png in (("overlays", overlays), ("deletion", deletion)) if png]
    return "Explanations (Grad-CAM, LIME)", body, md


def eeg_section(explain: StageResult, m: dict[str, Any]) -> tuple[str, str, list[str]]:
    """Heading, HTML and markdown of the EEG explanations: attribution under the trace and the scalp map."""
    method = {"integrated_gradients": "integrated gradients", "occlusion": "occlusion"}.get(m.get("method"), "")
    n = m.get("n_windows", 0)
    text = f"Attribution toward 'seizure' by {method} on {n} test window(s): {m.get('windows_from')}."
    windows = [_png(explain.dir, f"window_{i}.png") for i in range(int(m.get("n_windows") or 0))]
    scalp = _png(explain.dir, "scalp.png")
    top = ", ".join(m.get("top_channels", []))
    scalp_text = m.get("scalp_map_skipped") or f"Channels with the largest share of the attribution: {top}."
    body = f"<p>{html.escape(text)}</p>" + " ".join(img_tag(w, "attribution") for w in windows if w)
    body += f"<p>{html.escape(scalp_text)}</p>" + img_tag(scalp, "scalp map")
    md = ["## Explanations (attribution)", text, scalp_text]
    md += [f"![window]({png_data_uri(w)})" for w in windows[:1] if w]
    if scalp:
        md.append(f"![scalp map]({png_data_uri(scalp)})")
    return "Explanations (attribution)", body, md


def explain_section(explain: StageResult, m: dict[str, Any]) -> tuple[str, str, list[str]]:
    """The section of either flow (images have Grad-CAM checks, EEG has channel attribution)."""
    return eeg_section(explain, m) if "method" in m else image_section(explain, m)


def publish_explain(explain: StageResult, metrics: dict[str, Any], key: str) -> None:
    """The explain section as its own markdown artifact (``key``), its headline numbers in the card's description."""
    m = metrics.get("explain", {})
    _, _, md = explain_section(explain, m)
    if "randomisation_rank_corr" in m:
        description = (
            f"randomisation rank corr {fmt(m.get('randomisation_rank_corr'))}, deletion AUC "
            f"{fmt(m.get('deletion_auc'))} vs random {fmt(m.get('deletion_auc_random'))}"
        )
    else:
        description = f"top channels {', '.join(m.get('top_channels', [])) or 'n/a'}"
    create_markdown_artifact("\n\n".join(md), key=key, description=description)
