"""The report stage's shared parts: metrics.json, a self-contained report.html, and Prefect artifacts.

People read runs in two places: a browser opening ``report.html`` (no server needed: every plot is an inlined PNG)
and the Prefect UI (markdown with ``data:`` PNGs renders there, ``file://`` links do not). Both are built here from
the same numbers, side by side in one :class:`ReportDoc`, so they can never disagree.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
from prefect.artifacts import create_link_artifact

from tasks.cache import StageResult, code_version
from tasks.compare import Comparison, comparison_markdown, comparison_rows
from tasks.rundir import git_commit, hardware, package_versions


def vigil_version() -> str:
    try:
        return metadata.version("vigil")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def dataset_slug(source: str, root: str | None) -> str:
    """``elpv``, ``sim``, or the data folder's name plus a 6-character hash of its absolute path."""
    if source in ("elpv", "sim"):
        return source
    path = Path(root or "data").resolve()
    name = path.stem if path.is_file() else path.name
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:6]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "data"
    return f"{slug}-{digest}"


def ingest_source(ingest: StageResult | None, default: str) -> tuple[str, str | None]:
    """(source, data root) from the ingest stage's record.

    The source is the record's only when ingest succeeded (``default`` otherwise); the root is read even from a
    failed record, so a run that failed on its data is still filed under that data set.
    """
    source = ingest.summary.get("source", default) if ingest is not None and not ingest.error else default
    root = ingest.summary.get("root") if ingest is not None else None
    return source, root


def succeeded(stages: dict[str, StageResult | None]) -> dict[str, StageResult]:
    """The records of the stages that ran and succeeded, in run order."""
    return {k: v for k, v in stages.items() if v is not None and not v.error}


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def fmt(v: Any) -> str:
    """A table cell: ``n/a`` for missing, 4 decimals for floats."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def grid_png(path: Path) -> bytes | None:
    """Re-encode the augmentation grid (it may be 16-bit or grey) as a plain 8-bit PNG."""
    if not path.is_file():
        return None
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    ok, buf = cv2.imencode(".png", img)
    return buf.tobytes() if ok else None


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.err{background:#fee;border:1px solid #c33;padding:.8em}.warn{color:#a60}
img{max-width:100%}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
"""


def render_html(title: str, sections: list[tuple[str, str]]) -> str:
    """A single self-contained HTML file; ``sections`` are (heading, HTML body) pairs."""
    parts = [f"<h2>{html.escape(h)}</h2>\n{body}" for h, body in sections]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>\n" + "\n".join(parts) + "</body></html>"
    )


def img_tag(png: bytes | None, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='{png_data_uri(png)}'>" if png else ""


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))


@dataclass
class ReportDoc:
    """report.html's (heading, HTML body) sections and the markdown artifact's blocks, built side by side."""

    sections: list[tuple[str, str]] = field(default_factory=list)
    md: list[str] = field(default_factory=list)

    def add(self, heading: str, body: str, *md: str) -> None:
        """One HTML section, and the markdown blocks (if any) that say the same in the artifact."""
        self.sections.append((heading, body))
        self.md.extend(md)

    def failure(self, error: str) -> None:
        """The red "Run failed" box (the flow's error, or the regression that failed the run)."""
        self.add("Run failed", f"<div class='err'>{html.escape(error)}</div>", f"**Run failed:** {error}")

    def comparison(self, comparison: Comparison) -> None:
        """The table of headline metrics against the previous comparable run, and its verdict."""
        self.add(
            "Compared with the previous run",
            html_table(comparison_rows(comparison)) + f"<p>{html.escape(comparison.summary())}</p>",
            "## Compared with the previous run",
            comparison_markdown(comparison),
        )

    def closing(self, metrics: dict[str, Any], run_dir: Path) -> None:
        """The last two sections of every report: stage timings and the run's configuration as written."""
        timing_rows = [
            {"stage": k, "seconds": f"{v:.1f}", "cached": metrics["cached"].get(k, "")}
            for k, v in metrics["timing_s"].items()
        ]
        self.add("Stage timings", html_table(timing_rows))
        self.add("Configuration", f"<pre>{html.escape((run_dir / 'config.yaml').read_text())}</pre>")


def run_metrics(
    flow: str, dataset: str, stages: dict[str, StageResult | None], elapsed_s: float, **run: Any
) -> dict[str, Any]:
    """metrics.json's opening keys: flow, dataset, ``run`` (profile, seed, ...), version, per-stage timing and
    cache hits (in the ``stages`` dict's order, which is the order the stages ran), and the total time."""
    ran = {k: v for k, v in stages.items() if v is not None}
    metrics: dict[str, Any] = {
        "flow": flow,
        "dataset": dataset,
        **run,
        "vigil_version": vigil_version(),
        "timing_s": {name: round(st.seconds, 3) for name, st in ran.items()},
        "cached": {name: st.cached for name, st in ran.items()},
    }
    metrics["timing_s"]["total"] = round(elapsed_s, 3)
    return metrics


def regression_failure(metrics: dict[str, Any], comparison: Comparison | None, fail_on_regression: bool) -> str | None:
    """Add the ``regression`` section to ``metrics``; when the run must fail for a regression, also its ``error``.

    Returns the failure message, or None when the run stands.
    """
    if comparison is None:
        return None
    metrics["regression"] = comparison.to_dict()
    if comparison.regressed and fail_on_regression:
        metrics["error"] = comparison.flag()
        return metrics["error"]
    return None


def card_description(description: str, comparison: Comparison | None, metrics: dict[str, Any]) -> str:
    """The artifact cards' one line, led by the regression flag when the run regressed without failing for it."""
    if comparison is not None and comparison.regressed and "error" not in metrics:
        return f"{comparison.flag()}; {description}"
    return description


def write_lineage(
    run_dir: Path, dataset: dict[str, Any], stages: dict[str, StageResult | None], timing_s: dict[str, float]
) -> None:
    """lineage.json: what the run's numbers came from (data set, stage cache keys, code, packages, hardware)."""
    write_json(
        run_dir / "lineage.json",
        {
            "dataset": dataset,
            "stage_keys": {k: v.key for k, v in stages.items() if v is not None},
            "code_version": code_version(),
            "git_commit": git_commit(),
            "packages": package_versions(),
            "hardware": hardware(),
            "timing_s": timing_s,
        },
    )


def publish_report_link(report_url: str | None, key: str, description: str) -> None:
    """A link artifact to the served ``report.html``; only when a ``vigil server`` serves the runs folder."""
    if report_url:
        create_link_artifact(link=report_url, link_text="report.html", key=key, description=description)
